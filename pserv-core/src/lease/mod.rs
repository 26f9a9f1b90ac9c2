//! Dynamic leases: the only state pserv owns.
//!
//! [`Leases`] is plain data plus rules, with no I/O and no clock: every call takes `now` (Unix
//! seconds). Operations that must survive a restart return a [`Change`]; the caller appends it to
//! the [`crate::journal::Journal`] and acknowledges the client only once it is durable. Replaying
//! those changes through [`Leases::apply`] rebuilds the same state.
//!
//! The set has one owner (the DHCP service). Readers elsewhere (DNS, the control API) never see
//! it: the owner publishes it to a [`LeaseBoard`] ([`Leases::publish`], which writes what
//! changed since the last publish, so publishing costs what changed, not the set's size), which
//! readers read without a lock. Leases end on time: the owner's timer asks
//! [`Leases::poll_timeout`] when the next one ends and calls [`Leases::expire`] then.
//!
//! Invariants:
//! - one address has at most one holder (offered or bound) at a time, and one client at most
//!   one lease; a client is its client identifier (option 61) when it sends one, else its
//!   hardware address ([`ClientKey`], RFC 2131 §4.2);
//! - an address is never offered or committed while another client's unexpired lease holds it, while
//!   it is quarantined after a DECLINE, or while the table reserves it for a node;
//! - dynamic addresses come only from the subnet's dynamic ranges.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::net::{Ipv4Addr, Ipv6Addr};

use serde::Serialize;

use crate::MacAddr;
use crate::table::{Range4, SubnetInfo, Table};

/// Gives a collection's room back once it holds under a quarter of it (after a flood ends).
/// One rule for the maps, sets and the timer heap: a macro, as they share no trait for it.
macro_rules! shrink {
    ($c:expr) => {
        if $c.capacity() > 1024 && $c.len() < $c.capacity() / 4 {
            let keep = $c.len() * 2;
            $c.shrink_to(keep);
        }
    };
}

mod client;
pub mod log;
pub mod owner;
mod v6;
mod view;

pub use client::{Client, ClientId, ClientKey};
pub use log::{LeaseLog, LogError, Share};
pub use owner::{Now, Owner};
pub use v6::{Duid, FULL_SCAN, Key6, Lease6, Leases6, Refusal6};
pub use view::{LeaseBoard, LeaseCounts, MAX_SIGHTINGS, SIGHTING_SECONDS};

/// How long an offered address is held for the client that was offered it.
pub const OFFER_HOLD_SECONDS: u64 = 30;

/// A lease's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LeaseState {
    /// Offered, not yet requested: held briefly, never journaled.
    Offered,
    /// Acknowledged: journaled before the ACK went out.
    Bound,
}

/// One dynamic lease.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Lease {
    /// The client's hardware address (chaddr of its latest exchange).
    pub mac: MacAddr,
    /// The client identifier it sent (option 61), if any: its identity when present.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_id: Option<ClientId>,
    /// Its address.
    pub ip: Ipv4Addr,
    /// When it was offered or committed (Unix seconds).
    pub start: u64,
    /// When it ends (Unix seconds).
    pub expires: u64,
    /// Offered or bound.
    pub state: LeaseState,
    /// The client's hostname (option 12), or the node's for a known node without a
    /// reservation.
    pub hostname: Option<Box<str>>,
}

/// A durable change to the lease set: what the journal stores and what `/v1/events` streams.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Change {
    /// A lease was committed or renewed.
    Bound {
        /// The client's hardware address.
        mac: MacAddr,
        /// Its client identifier, if it sent one.
        #[serde(skip_serializing_if = "Option::is_none")]
        client_id: Option<ClientId>,
        /// Its address.
        ip: Ipv4Addr,
        /// When it was committed (Unix seconds).
        start: u64,
        /// When it ends.
        expires: u64,
        /// Its hostname.
        hostname: Option<Box<str>>,
    },
    /// The client released its lease.
    Released {
        /// The client's hardware address.
        mac: MacAddr,
        /// Its client identifier, if it sent one.
        #[serde(skip_serializing_if = "Option::is_none")]
        client_id: Option<ClientId>,
        /// Its address.
        ip: Ipv4Addr,
    },
    /// The client declined an address (in use on the wire): quarantined until `until`.
    Declined {
        /// The client's hardware address.
        mac: MacAddr,
        /// Its client identifier, if it sent one.
        #[serde(skip_serializing_if = "Option::is_none")]
        client_id: Option<ClientId>,
        /// The address.
        ip: Ipv4Addr,
        /// End of the quarantine.
        until: u64,
    },
    /// A DHCPv6 lease (an IA_NA's address) was committed or renewed.
    #[serde(rename = "bound")]
    Bound6 {
        /// The client's DUID.
        duid: Duid,
        /// The IA's identifier.
        iaid: u32,
        /// The client's hardware address, where one is known.
        #[serde(skip_serializing_if = "Option::is_none")]
        mac: Option<MacAddr>,
        /// The address.
        ip: Ipv6Addr,
        /// When it was committed (Unix seconds).
        start: u64,
        /// When it ends (the valid lifetime).
        expires: u64,
        /// The client's name (option 39).
        hostname: Option<Box<str>>,
    },
    /// A DHCPv6 client released an address.
    #[serde(rename = "released")]
    Released6 {
        /// The client's DUID.
        duid: Duid,
        /// The IA's identifier.
        iaid: u32,
        /// The address.
        ip: Ipv6Addr,
    },
    /// A DHCPv6 client declined an address: quarantined until `until`.
    #[serde(rename = "declined")]
    Declined6 {
        /// The client's DUID.
        duid: Duid,
        /// The IA's identifier.
        iaid: u32,
        /// The address.
        ip: Ipv6Addr,
        /// End of the quarantine.
        until: u64,
    },
}

/// Something that ended on time (not journaled: replay ends it again by the clock).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Ended {
    /// A lease (bound) or an offer (offered, never requested) reached its end.
    Expired {
        /// The client's hardware address.
        mac: MacAddr,
        /// Its client identifier, if it sent one.
        #[serde(skip_serializing_if = "Option::is_none")]
        client_id: Option<ClientId>,
        /// Its address, free again.
        ip: Ipv4Addr,
        /// What it was when it ended.
        state: LeaseState,
    },
    /// A declined address left quarantine.
    QuarantineEnded {
        /// The address, free again.
        ip: Ipv4Addr,
    },
    /// A DHCPv6 lease or offer reached its end.
    #[serde(rename = "expired")]
    Expired6 {
        /// The client's DUID.
        duid: Duid,
        /// The IA's identifier.
        iaid: u32,
        /// The client's hardware address, where one is known.
        #[serde(skip_serializing_if = "Option::is_none")]
        mac: Option<MacAddr>,
        /// The address, free again.
        ip: Ipv6Addr,
        /// What it was when it ended.
        state: LeaseState,
    },
    /// A declined IPv6 address left quarantine.
    #[serde(rename = "quarantine_ended")]
    QuarantineEnded6 {
        /// The address, free again.
        ip: Ipv6Addr,
    },
}

/// What `/v1/events` streams about leases: durable changes and ends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum LeaseEvent {
    /// A journaled change, once durable.
    Changed(Change),
    /// An end on time.
    Ended(Ended),
}

impl LeaseEvent {
    /// The event's name (`bound`, `released`, `declined`, `expired`, `quarantine_ended`).
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Changed(Change::Bound { .. } | Change::Bound6 { .. }) => "bound",
            Self::Changed(Change::Released { .. } | Change::Released6 { .. }) => "released",
            Self::Changed(Change::Declined { .. } | Change::Declined6 { .. }) => "declined",
            Self::Ended(Ended::Expired { .. } | Ended::Expired6 { .. }) => "expired",
            Self::Ended(Ended::QuarantineEnded { .. } | Ended::QuarantineEnded6 { .. }) => {
                "quarantine_ended"
            }
        }
    }
}

/// Why a REQUEST cannot be acknowledged: the client gets a DHCPNAK.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Refusal {
    /// The address is not in a dynamic range of the client's subnet (any more).
    #[error("{0} is not in a dynamic range of this subnet")]
    NotInPool(Ipv4Addr),
    /// The table now reserves the address for a node.
    #[error("{0} is reserved for a node")]
    Reserved(Ipv4Addr),
    /// Another client's unexpired lease holds the address.
    #[error("{0} is held by another client")]
    HeldByOther(Ipv4Addr),
    /// The address is quarantined after a DECLINE.
    #[error("{0} was declined and is quarantined")]
    Quarantined(Ipv4Addr),
}

/// Counters of what replay found, for tests and logs.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ReplayStats {
    /// Changes applied.
    pub applied: u64,
    /// Bound changes that took an address from another MAC whose lease had not ended: a sign
    /// of an allocation bug. Always zero in a correct history.
    pub conflicts: u64,
}

/// Cached result of scanning a range and finding nothing free.
#[derive(Debug, Clone, Copy)]
struct Exhausted {
    /// `frees` when the scan ran: any address freed since invalidates the memo.
    frees: u64,
    /// The earliest time a holder in the range ends.
    until: u64,
}

/// What a timer entry ends.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Timer {
    Lease(ClientKey),
    Quarantine(Ipv4Addr),
}

impl Change {
    /// The DHCPv4 client the change is about, as its lease is filed (`None` for a DHCPv6
    /// change: see [`Change::key6`]).
    pub fn key(&self) -> Option<ClientKey> {
        match self {
            Self::Bound { mac, client_id, .. }
            | Self::Released { mac, client_id, .. }
            | Self::Declined { mac, client_id, .. } => {
                Some(ClientKey::new(*mac, client_id.as_ref()))
            }
            Self::Bound6 { .. } | Self::Released6 { .. } | Self::Declined6 { .. } => None,
        }
    }

    /// The DHCPv6 client the change is about (`None` for a DHCPv4 change).
    pub fn key6(&self) -> Option<Key6> {
        match self {
            Self::Bound6 { duid, iaid, .. }
            | Self::Released6 { duid, iaid, .. }
            | Self::Declined6 { duid, iaid, .. } => Some(Key6 {
                duid: duid.clone(),
                iaid: *iaid,
            }),
            _ => None,
        }
    }

    /// The address the change is about.
    pub fn ip(&self) -> std::net::IpAddr {
        match self {
            Self::Bound { ip, .. } | Self::Released { ip, .. } | Self::Declined { ip, .. } => {
                (*ip).into()
            }
            Self::Bound6 { ip, .. } | Self::Released6 { ip, .. } | Self::Declined6 { ip, .. } => {
                (*ip).into()
            }
        }
    }
}

impl Lease {
    /// The key it is filed under.
    pub fn key(&self) -> ClientKey {
        ClientKey::new(self.mac, self.client_id.as_ref())
    }

    /// The client holding it.
    pub fn client(&self) -> Client {
        Client {
            mac: self.mac,
            id: self.client_id.clone(),
        }
    }
}

/// The dynamic lease set. See the module docs.
#[derive(Debug, Default)]
pub struct Leases {
    by_client: HashMap<ClientKey, Lease>,
    by_ip: HashMap<Ipv4Addr, ClientKey>,
    /// Client hostname (lower case) -> the client whose lease carries it, latest wins.
    by_name: HashMap<Box<str>, ClientKey>,
    /// Quarantined addresses: end of quarantine, and who declined.
    declined: HashMap<Ipv4Addr, (u64, Client)>,
    /// Next-fit position per range (by range start).
    cursor: HashMap<Ipv4Addr, u32>,
    /// Where a range's first scan starts: part `.0` of `.1` equal parts (cluster instances
    /// start at different places, so that they rarely pick one address for two clients).
    scan_slot: (u32, u32),
    /// Which clients the set's owner answers, and whether it may commit dynamic leases
    /// ([`Share::ALL`] unless in a cluster).
    share: Share,
    exhausted: HashMap<Ipv4Addr, Exhausted>,
    /// Count of addresses freed (release, expiry, quarantine end), to invalidate `exhausted`.
    frees: u64,
    stats: ReplayStats,
    /// When things end: (time, what), earliest first. An entry whose lease was renewed or
    /// removed since is stale and skipped when it comes up.
    timers: BinaryHeap<Reverse<(u64, Timer)>>,
    /// Clients and quarantined addresses changed since the last [`Leases::publish`].
    dirty: HashSet<ClientKey>,
    dirty_declined: HashSet<Ipv4Addr>,
    /// The DHCPv6 leases.
    v6: Leases6,
}

impl Leases {
    /// An empty lease set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Rebuilds a lease set from journaled changes, dropping what has ended by `now`.
    pub fn restore<'a>(changes: impl IntoIterator<Item = &'a Change>, now: u64) -> Self {
        let mut l = Self::new();
        for c in changes {
            l.apply(c);
        }
        l.expire(now);
        l
    }

    /// Sets which clients the owner answers from now on (cluster mode: this instance's share
    /// of the clients, and whether it may commit dynamic leases); scans for a free address
    /// start at the share's slot.
    pub fn set_share(&mut self, share: Share) {
        self.share = share;
        self.set_scan_slot(share.slot.0, share.slot.1);
    }

    /// Which clients the owner answers.
    pub fn share(&self) -> Share {
        self.share
    }

    /// Makes each range's scans for a free address start at part `index` of `count` equal
    /// parts of it (instead of at its start) from now on. Setting the slot it has already
    /// changes nothing.
    pub fn set_scan_slot(&mut self, index: u32, count: u32) {
        if self.scan_slot != (index, count) {
            self.scan_slot = (index, count);
            self.cursor.clear();
        }
    }

    /// Whether anything changed since the last [`Leases::publish`].
    pub fn has_unpublished(&self) -> bool {
        !self.dirty.is_empty()
            || !self.dirty_declined.is_empty()
            || !self.v6.dirty.is_empty()
            || !self.v6.dirty_declined.is_empty()
    }

    /// The DHCPv6 leases.
    pub fn v6(&self) -> &Leases6 {
        &self.v6
    }

    /// The DHCPv6 leases, to decide on.
    pub fn v6_mut(&mut self) -> &mut Leases6 {
        &mut self.v6
    }

    /// Publishes the set as it is now to `board`, for readers: writes what changed since the
    /// last publish. Only this set's owner publishes to its board.
    pub fn publish(&mut self, board: &LeaseBoard) {
        for key in self.dirty.drain() {
            let lease = self.by_client.get(&key);
            board.set_lease(key, lease);
        }
        for ip in self.dirty_declined.drain() {
            board.set_declined(ip, self.declined.get(&ip).map(|(until, _)| *until));
        }
        for key in std::mem::take(&mut self.v6.dirty) {
            let lease = self.v6.get(&key);
            board.set_lease6(key, lease);
        }
        for ip in std::mem::take(&mut self.v6.dirty_declined) {
            board.set_declined6(ip, self.v6.quarantine(ip));
        }
        shrink!(self.dirty);
        shrink!(self.dirty_declined);
    }

    /// What replay found.
    pub fn replay_stats(&self) -> ReplayStats {
        ReplayStats {
            conflicts: self.stats.conflicts + self.v6.conflicts,
            ..self.stats
        }
    }

    /// Number of leases (offered and bound).
    pub fn len(&self) -> usize {
        self.by_client.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.by_client.is_empty()
    }

    /// Every lease, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = &Lease> {
        self.by_client.values()
    }

    /// Quarantined addresses with the end of their quarantine.
    pub fn declined(&self) -> impl Iterator<Item = (Ipv4Addr, u64)> + '_ {
        self.declined.iter().map(|(ip, (until, _))| (*ip, *until))
    }

    /// The lease of a client (a MAC stands for a client that sends no identifier), ended or
    /// not.
    pub fn lease(&self, client: impl Into<ClientKey>) -> Option<&Lease> {
        self.by_client.get(&client.into())
    }

    /// The live (unexpired) lease holding an address.
    pub fn holder(&self, ip: Ipv4Addr, now: u64) -> Option<&Lease> {
        let key = self.by_ip.get(&ip)?;
        self.by_client.get(key).filter(|l| l.expires > now)
    }

    /// The live bound lease whose client hostname is `host` (ASCII case-insensitive).
    pub fn by_hostname(&self, host: &str, now: u64) -> Option<&Lease> {
        let key = self.by_name.get(host.to_ascii_lowercase().as_str())?;
        self.by_client
            .get(key)
            .filter(|l| l.state == LeaseState::Bound && l.expires > now)
            .filter(|l| {
                l.hostname
                    .as_deref()
                    .is_some_and(|h| h.eq_ignore_ascii_case(host))
            })
    }

    /// The live bound lease of a client.
    pub fn bound(&self, client: impl Into<ClientKey>, now: u64) -> Option<&Lease> {
        self.by_client
            .get(&client.into())
            .filter(|l| l.state == LeaseState::Bound && l.expires > now)
    }

    /// Whether the client filed under `key` may take `ip` now: no other live holder, no
    /// quarantine, no reservation.
    fn check_free(
        &self,
        table: &Table,
        key: &ClientKey,
        ip: Ipv4Addr,
        now: u64,
    ) -> Result<(), Refusal> {
        if table.by_ipv4(ip).is_some() {
            return Err(Refusal::Reserved(ip));
        }
        if self
            .by_ip
            .get(&ip)
            .is_some_and(|k| k != key && self.holder(ip, now).is_some())
        {
            return Err(Refusal::HeldByOther(ip));
        }
        if self
            .declined
            .get(&ip)
            .is_some_and(|(until, _)| *until > now)
        {
            return Err(Refusal::Quarantined(ip));
        }
        Ok(())
    }

    /// Picks the address to offer `client` in `subnet` and holds it as an offer, or `None`
    /// when the subnet has no free dynamic address.
    ///
    /// Preference: the client's current lease, then the address it asks for (option 50), then
    /// the next free address after the last one handed out in a range (next fit), so freed
    /// addresses are not reused at once.
    pub fn offer(
        &mut self,
        table: &Table,
        subnet: &SubnetInfo,
        client: impl Into<Client>,
        requested: Option<Ipv4Addr>,
        hostname: Option<&str>,
        now: u64,
    ) -> Option<Ipv4Addr> {
        let client = client.into();
        let key = client.key();
        let usable = |l: &Self, ip: Ipv4Addr| {
            subnet.dynamic_range_of(ip).is_some() && l.check_free(table, &key, ip, now).is_ok()
        };
        let current = self.by_client.get(&key).map(|l| l.ip);
        let ip = current
            .filter(|ip| usable(self, *ip))
            .or_else(|| requested.filter(|ip| usable(self, *ip)))
            .or_else(|| {
                subnet
                    .dynamic
                    .iter()
                    .find_map(|r| self.scan(table, r, &key, now))
            })?;
        if let Some(l) = self.by_client.get(&key)
            && l.ip == ip
            && l.state == LeaseState::Bound
            && l.expires > now
        {
            // Already bound to it: an offer must not shorten or downgrade the lease.
            return Some(ip);
        }
        self.insert(Lease {
            mac: client.mac,
            client_id: client.id,
            ip,
            start: now,
            expires: now + OFFER_HOLD_SECONDS,
            state: LeaseState::Offered,
            hostname: hostname.map(Into::into),
        });
        Some(ip)
    }

    /// Next-fit scan of one range for a free address.
    fn scan(&mut self, table: &Table, r: &Range4, key: &ClientKey, now: u64) -> Option<Ipv4Addr> {
        if let Some(e) = self.exhausted.get(&r.start)
            && e.frees == self.frees
            && e.until > now
        {
            return None;
        }
        let (start, end) = (u32::from(r.start), u32::from(r.end));
        let from = self
            .cursor
            .get(&r.start)
            .copied()
            .filter(|c| (start..=end).contains(c))
            .unwrap_or_else(|| {
                let size = u64::from(end - start) + 1;
                let (i, n) = self.scan_slot;
                start + (size * u64::from(i) / u64::from(n.max(1))).min(size - 1) as u32
            });
        let mut earliest_end = u64::MAX;
        let candidates = (from..=end).chain(start..from);
        for a in candidates {
            let ip = Ipv4Addr::from(a);
            match self.check_free(table, key, ip, now) {
                Ok(()) => {
                    self.cursor
                        .insert(r.start, if a == end { start } else { a + 1 });
                    return Some(ip);
                }
                Err(Refusal::HeldByOther(_)) => {
                    earliest_end =
                        earliest_end.min(self.holder(ip, now).map_or(now, |h| h.expires));
                }
                Err(Refusal::Quarantined(_)) => {
                    earliest_end = earliest_end.min(self.declined.get(&ip).map_or(now, |d| d.0));
                }
                Err(_) => {}
            }
        }
        self.exhausted.insert(
            r.start,
            Exhausted {
                frees: self.frees,
                until: earliest_end,
            },
        );
        None
    }

    /// Commits `ip` to `client` for the subnet's lease time (a REQUEST in any state),
    /// returning the change to journal before the ACK, or why the client must be NAKed.
    pub fn commit(
        &mut self,
        table: &Table,
        subnet: &SubnetInfo,
        client: impl Into<Client>,
        ip: Ipv4Addr,
        hostname: Option<&str>,
        now: u64,
    ) -> Result<Change, Refusal> {
        let client = client.into();
        self.check_commit(table, subnet, client.key(), ip, now)?;
        let change = Change::Bound {
            mac: client.mac,
            client_id: client.id,
            ip,
            start: now,
            expires: now + u64::from(subnet.lease_seconds),
            hostname: hostname.map(Into::into),
        };
        self.apply(&change);
        Ok(change)
    }

    /// Whether the client may hold `ip` in `subnet` now (a renewing client
    /// whose address moved into a reservation, or out of the pool, is refused).
    pub fn check_commit(
        &self,
        table: &Table,
        subnet: &SubnetInfo,
        client: impl Into<ClientKey>,
        ip: Ipv4Addr,
        now: u64,
    ) -> Result<(), Refusal> {
        if subnet.dynamic_range_of(ip).is_none() {
            return Err(Refusal::NotInPool(ip));
        }
        self.check_free(table, &client.into(), ip, now)
    }

    /// The client gives its address back. `None` when it holds no such lease (nothing to
    /// journal): a RELEASE from the lease's chaddr with another client identifier is another
    /// client's, and releases nothing.
    pub fn release(&mut self, client: impl Into<Client>, ip: Ipv4Addr) -> Option<Change> {
        let client = client.into();
        let l = self.by_client.get(&client.key())?;
        if l.ip != ip {
            return None;
        }
        let change = Change::Released {
            mac: client.mac,
            client_id: client.id,
            ip,
        };
        self.apply(&change);
        Some(change)
    }

    /// The client found `ip` in use on the wire: quarantine it for `decline_seconds`. Only the
    /// client the address was offered or bound to may decline it.
    pub fn decline(
        &mut self,
        client: impl Into<Client>,
        ip: Ipv4Addr,
        decline_seconds: u32,
        now: u64,
    ) -> Option<Change> {
        let client = client.into();
        let l = self.by_client.get(&client.key())?;
        if l.ip != ip {
            return None;
        }
        let change = Change::Declined {
            mac: client.mac,
            client_id: client.id,
            ip,
            until: now + u64::from(decline_seconds),
        };
        self.apply(&change);
        Some(change)
    }

    /// Applies one journaled change (live operation and replay alike).
    pub fn apply(&mut self, change: &Change) {
        self.stats.applied += 1;
        let Some(key) = change.key() else {
            self.v6.apply(change);
            return;
        };
        match change {
            Change::Bound {
                mac,
                client_id,
                ip,
                start,
                expires,
                hostname,
            } => {
                // Replay keeps the later binding, as the live server did; a holder still live
                // when this one began means two clients had the address: counted, never silent.
                if let Some(holder) = self.by_ip.get(ip)
                    && *holder != key
                    && self
                        .by_client
                        .get(holder)
                        .is_some_and(|l| l.state == LeaseState::Bound && l.expires > *start)
                {
                    self.stats.conflicts += 1;
                }
                self.insert(Lease {
                    mac: *mac,
                    client_id: client_id.clone(),
                    ip: *ip,
                    start: *start,
                    expires: *expires,
                    state: LeaseState::Bound,
                    hostname: hostname.clone(),
                });
                if self.declined.remove(ip).is_some() {
                    self.dirty_declined.insert(*ip);
                }
            }
            Change::Released { ip, .. } => {
                if self.by_client.get(&key).is_some_and(|l| l.ip == *ip) {
                    self.remove(&key);
                }
            }
            Change::Declined {
                mac,
                client_id,
                ip,
                until,
            } => {
                if self.by_client.get(&key).is_some_and(|l| l.ip == *ip) {
                    self.remove(&key);
                }
                let who = Client {
                    mac: *mac,
                    id: client_id.clone(),
                };
                self.declined.insert(*ip, (*until, who));
                self.dirty_declined.insert(*ip);
                self.push_timer(*until, Timer::Quarantine(*ip));
            }
            Change::Bound6 { .. } | Change::Released6 { .. } | Change::Declined6 { .. } => {}
        }
    }

    /// Removes the leases, offers and quarantines that have ended by `now`, and returns them.
    /// Costs what ended (a timer heap), not the set's size. Memory follows: maps left mostly
    /// empty (after a flood of offers) give their room back.
    pub fn expire(&mut self, now: u64) -> Vec<Ended> {
        let mut ended = Vec::new();
        while let Some(Reverse((at, _))) = self.timers.peek() {
            if *at > now {
                break;
            }
            let Some(Reverse((at, what))) = self.timers.pop() else {
                break;
            };
            if !self.timer_is_live(at, &what) {
                continue;
            }
            match what {
                Timer::Lease(key) => {
                    if let Some(l) = self.by_client.get(&key) {
                        ended.push(Ended::Expired {
                            mac: l.mac,
                            client_id: l.client_id.clone(),
                            ip: l.ip,
                            state: l.state,
                        });
                        self.remove(&key);
                    }
                }
                Timer::Quarantine(ip) => {
                    self.declined.remove(&ip);
                    self.dirty_declined.insert(ip);
                    self.frees += 1;
                    ended.push(Ended::QuarantineEnded { ip });
                }
            }
        }
        self.v6.expire(now, &mut ended);
        if !ended.is_empty() {
            shrink!(self.by_client);
            shrink!(self.by_ip);
            shrink!(self.by_name);
            shrink!(self.declined);
            shrink!(self.timers);
        }
        ended
    }

    /// Adds a timer entry. Renewals leave the entries they replace behind (stale, skipped when
    /// they come up); when those outnumber the live ones the heap is rebuilt from the live set,
    /// so it stays within about twice the live leases and quarantines (each rebuild costs the
    /// live set once, after at least that many pushes).
    fn push_timer(&mut self, at: u64, what: Timer) {
        let live = self.by_client.len() + self.declined.len();
        if self.timers.len() >= 2 * live + 1024 {
            let leases = self
                .by_client
                .iter()
                .map(|(k, l)| Reverse((l.expires, Timer::Lease(k.clone()))));
            let quarantines = self
                .declined
                .iter()
                .map(|(ip, (until, _))| Reverse((*until, Timer::Quarantine(*ip))));
            self.timers = leases.chain(quarantines).collect();
        }
        self.timers.push(Reverse((at, what)));
    }

    /// Whether a timer entry still ends something (not renewed, released or replaced since).
    fn timer_is_live(&self, at: u64, what: &Timer) -> bool {
        match what {
            Timer::Lease(key) => self.by_client.get(key).is_some_and(|l| l.expires == at),
            Timer::Quarantine(ip) => self.declined.get(ip).is_some_and(|(u, _)| *u == at),
        }
    }

    /// The earliest time something ends (a lease, an offer or a quarantine), for the owner's
    /// timer: call [`Leases::expire`] then.
    pub fn poll_timeout(&mut self) -> Option<u64> {
        let v6 = self.v6.poll_timeout();
        while let Some(Reverse((at, what))) = self.timers.peek() {
            if self.timer_is_live(*at, what) {
                return Some(v6.map_or(*at, |t| t.min(*at)));
            }
            self.timers.pop();
        }
        v6
    }

    /// The changes that recreate this lease set's durable part (bound leases and quarantines
    /// live at `now`): what a compacted journal holds.
    pub fn durable_changes(&self, now: u64) -> Vec<Change> {
        let mut out = durable_changes(self.by_client.values(), self.declined.iter(), now);
        self.v6.durable_changes(now, &mut out);
        out
    }

    fn insert(&mut self, lease: Lease) {
        let key = lease.key();
        // The client's previous address, if different, is freed.
        if let Some(old) = self.by_client.get(&key)
            && old.ip != lease.ip
            && self.by_ip.get(&old.ip) == Some(&key)
        {
            self.by_ip.remove(&old.ip);
            self.frees += 1;
        }
        // The address's previous holder, if different, loses it.
        if let Some(prev) = self.by_ip.insert(lease.ip, key.clone())
            && prev != key
        {
            self.remove_name(&prev);
            self.by_client.remove(&prev);
            self.dirty.insert(prev);
        }
        self.remove_name(&key);
        self.push_timer(lease.expires, Timer::Lease(key.clone()));
        if let Some(h) = &lease.hostname {
            self.by_name
                .insert(h.to_ascii_lowercase().into(), key.clone());
        }
        self.dirty.insert(key.clone());
        self.by_client.insert(key, lease);
    }

    /// Drops a client's hostname from the name index (if the index still points at it).
    fn remove_name(&mut self, key: &ClientKey) {
        if let Some(h) = self.by_client.get(key).and_then(|l| l.hostname.as_deref()) {
            let name = h.to_ascii_lowercase();
            if self.by_name.get(name.as_str()) == Some(key) {
                self.by_name.remove(name.as_str());
            }
        }
    }

    fn remove(&mut self, key: &ClientKey) {
        self.remove_name(key);
        self.dirty.insert(key.clone());
        if let Some(l) = self.by_client.remove(key)
            && self.by_ip.get(&l.ip) == Some(key)
        {
            self.by_ip.remove(&l.ip);
            self.frees += 1;
        }
    }
}

/// The changes that recreate a lease set's durable part: its bound leases and quarantines live
/// at `now`.
fn durable_changes<'a>(
    leases: impl Iterator<Item = &'a Lease>,
    declined: impl Iterator<Item = (&'a Ipv4Addr, &'a (u64, Client))>,
    now: u64,
) -> Vec<Change> {
    let bound = leases
        .filter(|l| l.state == LeaseState::Bound && l.expires > now)
        .map(|l| Change::Bound {
            mac: l.mac,
            client_id: l.client_id.clone(),
            ip: l.ip,
            start: l.start,
            expires: l.expires,
            hostname: l.hostname.clone(),
        });
    let declined = declined
        .filter(|(_, (until, _))| *until > now)
        .map(|(ip, (until, who))| Change::Declined {
            mac: who.mac,
            client_id: who.id.clone(),
            ip: *ip,
            until: *until,
        });
    bound.chain(declined).collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::snapshot::Snapshot;

    /// A client renewing over and over leaves one stale timer per renewal; the heap is rebuilt
    /// before those pile up, and the lease still ends when its last renewal says.
    #[test]
    fn renewals_do_not_pile_up_timers() {
        let json = br#"{"generation": 1, "subnets": [{"cidr": "10.0.0.0/24",
            "lease_seconds": 600, "dynamic": [{"start": "10.0.0.10", "end": "10.0.0.20"}]}]}"#;
        let t = Table::compile(&Snapshot::from_json(json).unwrap(), None).unwrap();
        let s = &t.subnets()[0];
        let mut l = Leases::new();
        let (a, b) = (MacAddr([2, 0, 0, 0, 0, 1]), MacAddr([2, 0, 0, 0, 0, 2]));
        let ip_a = l.offer(&t, s, a, None, None, 0).unwrap();
        let ip_b = l.offer(&t, s, b, None, None, 0).unwrap();
        for now in 1..50_000u64 {
            l.commit(&t, s, a, ip_a, None, now).unwrap();
            l.commit(&t, s, b, ip_b, None, now).unwrap();
            assert!(
                l.timers.len() <= 2 * 2 + 1024 + 1,
                "{} timers",
                l.timers.len()
            );
        }
        assert_eq!(l.poll_timeout(), Some(49_999 + 600));
        assert!(l.expire(49_999 + 599).is_empty());
        assert_eq!(l.expire(49_999 + 600).len(), 2);
        assert_eq!(l.poll_timeout(), None);
    }
}
