//! Dynamic leases: the only state pserv owns.
//!
//! [`Leases`] is plain data plus rules, with no I/O and no clock: every call takes `now` (Unix
//! seconds). Operations that must survive a restart return a [`Change`]; the caller appends it to
//! the [`crate::journal::Journal`] and acknowledges the client only once it is durable. Replaying
//! those changes through [`Leases::apply`] rebuilds the same state.
//!
//! Invariants:
//! - one address has at most one holder (offered or bound) at a time, and one MAC at most one
//!   lease;
//! - an address is never offered or committed while another MAC's unexpired lease holds it, while
//!   it is quarantined after a DECLINE, or while the table reserves it for a node;
//! - dynamic addresses come only from the subnet's dynamic ranges.

use std::collections::HashMap;
use std::net::Ipv4Addr;

use serde::Serialize;

use crate::MacAddr;
use crate::table::{Range4, SubnetInfo, Table};

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
    /// The client.
    pub mac: MacAddr,
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
        /// The client.
        mac: MacAddr,
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
        /// The client.
        mac: MacAddr,
        /// Its address.
        ip: Ipv4Addr,
    },
    /// The client declined an address (in use on the wire): quarantined until `until`.
    Declined {
        /// The client.
        mac: MacAddr,
        /// The address.
        ip: Ipv4Addr,
        /// End of the quarantine.
        until: u64,
    },
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

/// The dynamic lease set. See the module docs.
#[derive(Debug, Default)]
pub struct Leases {
    by_mac: HashMap<MacAddr, Lease>,
    by_ip: HashMap<Ipv4Addr, MacAddr>,
    /// Client hostname (lower case) -> the MAC whose lease carries it, latest wins.
    by_name: HashMap<Box<str>, MacAddr>,
    /// Quarantined addresses: end of quarantine, and who declined.
    declined: HashMap<Ipv4Addr, (u64, MacAddr)>,
    /// Next-fit position per range (by range start).
    cursor: HashMap<Ipv4Addr, u32>,
    exhausted: HashMap<Ipv4Addr, Exhausted>,
    /// Count of addresses freed (release, expiry, quarantine end), to invalidate `exhausted`.
    frees: u64,
    stats: ReplayStats,
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

    /// What replay found.
    pub fn replay_stats(&self) -> ReplayStats {
        self.stats
    }

    /// Number of leases (offered and bound).
    pub fn len(&self) -> usize {
        self.by_mac.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.by_mac.is_empty()
    }

    /// Every lease, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = &Lease> {
        self.by_mac.values()
    }

    /// Quarantined addresses with the end of their quarantine.
    pub fn declined(&self) -> impl Iterator<Item = (Ipv4Addr, u64)> + '_ {
        self.declined.iter().map(|(ip, (until, _))| (*ip, *until))
    }

    /// The lease of a MAC, ended or not.
    pub fn by_mac(&self, mac: MacAddr) -> Option<&Lease> {
        self.by_mac.get(&mac)
    }

    /// The live (unexpired) lease holding an address.
    pub fn holder(&self, ip: Ipv4Addr, now: u64) -> Option<&Lease> {
        let mac = self.by_ip.get(&ip)?;
        self.by_mac.get(mac).filter(|l| l.expires > now)
    }

    /// The live bound lease whose client hostname is `host` (ASCII case-insensitive).
    pub fn by_hostname(&self, host: &str, now: u64) -> Option<&Lease> {
        let mac = self.by_name.get(host.to_ascii_lowercase().as_str())?;
        self.bound(*mac, now).filter(|l| {
            l.hostname
                .as_deref()
                .is_some_and(|h| h.eq_ignore_ascii_case(host))
        })
    }

    /// The live bound lease of a MAC.
    pub fn bound(&self, mac: MacAddr, now: u64) -> Option<&Lease> {
        self.by_mac
            .get(&mac)
            .filter(|l| l.state == LeaseState::Bound && l.expires > now)
    }

    /// Whether `mac` may take `ip` now: no other live holder, no quarantine, no reservation.
    fn check_free(
        &self,
        table: &Table,
        mac: MacAddr,
        ip: Ipv4Addr,
        now: u64,
    ) -> Result<(), Refusal> {
        if table.by_ipv4(ip).is_some() {
            return Err(Refusal::Reserved(ip));
        }
        if let Some(h) = self.holder(ip, now)
            && h.mac != mac
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

    /// Picks the address to offer `mac` in `subnet` and holds it as an offer, or `None` when
    /// the subnet has no free dynamic address.
    ///
    /// Preference: the client's current lease, then the address it asks for (option 50), then
    /// the next free address after the last one handed out in a range (next fit), so freed
    /// addresses are not reused at once.
    pub fn offer(
        &mut self,
        table: &Table,
        subnet: &SubnetInfo,
        mac: MacAddr,
        requested: Option<Ipv4Addr>,
        hostname: Option<&str>,
        now: u64,
    ) -> Option<Ipv4Addr> {
        let usable = |l: &Self, ip: Ipv4Addr| {
            subnet.dynamic_range_of(ip).is_some() && l.check_free(table, mac, ip, now).is_ok()
        };
        let current = self.by_mac.get(&mac).map(|l| l.ip);
        let ip = current
            .filter(|ip| usable(self, *ip))
            .or_else(|| requested.filter(|ip| usable(self, *ip)))
            .or_else(|| {
                subnet
                    .dynamic
                    .iter()
                    .find_map(|r| self.scan(table, r, mac, now))
            })?;
        if let Some(l) = self.by_mac.get(&mac)
            && l.ip == ip
            && l.state == LeaseState::Bound
            && l.expires > now
        {
            // Already bound to it: an offer must not shorten or downgrade the lease.
            return Some(ip);
        }
        self.insert(Lease {
            mac,
            ip,
            start: now,
            expires: now + OFFER_HOLD_SECONDS,
            state: LeaseState::Offered,
            hostname: hostname.map(Into::into),
        });
        Some(ip)
    }

    /// Next-fit scan of one range for a free address.
    fn scan(&mut self, table: &Table, r: &Range4, mac: MacAddr, now: u64) -> Option<Ipv4Addr> {
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
            .unwrap_or(start);
        let mut earliest_end = u64::MAX;
        let candidates = (from..=end).chain(start..from);
        for a in candidates {
            let ip = Ipv4Addr::from(a);
            match self.check_free(table, mac, ip, now) {
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

    /// Commits `ip` to `mac` for the subnet's lease time (a REQUEST in any state), returning
    /// the change to journal before the ACK, or why the client must be NAKed.
    pub fn commit(
        &mut self,
        table: &Table,
        subnet: &SubnetInfo,
        mac: MacAddr,
        ip: Ipv4Addr,
        hostname: Option<&str>,
        now: u64,
    ) -> Result<Change, Refusal> {
        self.check_commit(table, subnet, mac, ip, now)?;
        let change = Change::Bound {
            mac,
            ip,
            start: now,
            expires: now + u64::from(subnet.lease_seconds),
            hostname: hostname.map(Into::into),
        };
        self.apply(&change);
        Ok(change)
    }

    /// Whether `mac` may hold `ip` in `subnet` now (a renewing client whose address moved into
    /// a reservation, or out of the pool, is refused).
    pub fn check_commit(
        &self,
        table: &Table,
        subnet: &SubnetInfo,
        mac: MacAddr,
        ip: Ipv4Addr,
        now: u64,
    ) -> Result<(), Refusal> {
        if subnet.dynamic_range_of(ip).is_none() {
            return Err(Refusal::NotInPool(ip));
        }
        self.check_free(table, mac, ip, now)
    }

    /// The client gives its address back. `None` when it holds no such lease (nothing to
    /// journal).
    pub fn release(&mut self, mac: MacAddr, ip: Ipv4Addr) -> Option<Change> {
        let l = self.by_mac.get(&mac)?;
        if l.ip != ip {
            return None;
        }
        let change = Change::Released { mac, ip };
        self.apply(&change);
        Some(change)
    }

    /// The client found `ip` in use on the wire: quarantine it for `decline_seconds`. Only the
    /// client the address was offered or bound to may decline it.
    pub fn decline(
        &mut self,
        mac: MacAddr,
        ip: Ipv4Addr,
        decline_seconds: u32,
        now: u64,
    ) -> Option<Change> {
        let l = self.by_mac.get(&mac)?;
        if l.ip != ip {
            return None;
        }
        let change = Change::Declined {
            mac,
            ip,
            until: now + u64::from(decline_seconds),
        };
        self.apply(&change);
        Some(change)
    }

    /// Applies one journaled change (live operation and replay alike).
    pub fn apply(&mut self, change: &Change) {
        self.stats.applied += 1;
        match change {
            Change::Bound {
                mac,
                ip,
                start,
                expires,
                hostname,
            } => {
                // Replay keeps the later binding, as the live server did; a holder still live
                // when this one began means two MACs had the address: counted, never silent.
                if let Some(holder) = self.by_ip.get(ip)
                    && holder != mac
                    && self
                        .by_mac
                        .get(holder)
                        .is_some_and(|l| l.state == LeaseState::Bound && l.expires > *start)
                {
                    self.stats.conflicts += 1;
                }
                self.insert(Lease {
                    mac: *mac,
                    ip: *ip,
                    start: *start,
                    expires: *expires,
                    state: LeaseState::Bound,
                    hostname: hostname.clone(),
                });
                self.declined.remove(ip);
            }
            Change::Released { mac, ip } => {
                if self.by_mac.get(mac).is_some_and(|l| l.ip == *ip) {
                    self.remove(*mac);
                }
            }
            Change::Declined { mac, ip, until } => {
                if self.by_mac.get(mac).is_some_and(|l| l.ip == *ip) {
                    self.remove(*mac);
                }
                self.declined.insert(*ip, (*until, *mac));
            }
        }
    }

    /// Removes ended leases and quarantines. Returns how many leases ended.
    pub fn expire(&mut self, now: u64) -> usize {
        let ended: Vec<MacAddr> = self
            .by_mac
            .values()
            .filter(|l| l.expires <= now)
            .map(|l| l.mac)
            .collect();
        for mac in &ended {
            self.remove(*mac);
        }
        let before = self.declined.len();
        self.declined.retain(|_, (until, _)| *until > now);
        self.frees += (before - self.declined.len()) as u64;
        ended.len()
    }

    /// The earliest time something ends (a lease or a quarantine), for the caller's timer.
    pub fn poll_timeout(&self) -> Option<u64> {
        let leases = self.by_mac.values().map(|l| l.expires);
        let quarantines = self.declined.values().map(|(until, _)| *until);
        leases.chain(quarantines).min()
    }

    /// The changes that recreate this lease set's durable part (bound leases and quarantines
    /// live at `now`): what a compacted journal holds.
    pub fn durable_changes(&self, now: u64) -> Vec<Change> {
        let bound = self
            .by_mac
            .values()
            .filter(|l| l.state == LeaseState::Bound && l.expires > now)
            .map(|l| Change::Bound {
                mac: l.mac,
                ip: l.ip,
                start: l.start,
                expires: l.expires,
                hostname: l.hostname.clone(),
            });
        let declined = self
            .declined
            .iter()
            .filter(|(_, (until, _))| *until > now)
            .map(|(ip, (until, mac))| Change::Declined {
                mac: *mac,
                ip: *ip,
                until: *until,
            });
        bound.chain(declined).collect()
    }

    fn insert(&mut self, lease: Lease) {
        // The MAC's previous address, if different, is freed.
        if let Some(old) = self.by_mac.get(&lease.mac)
            && old.ip != lease.ip
            && self.by_ip.get(&old.ip) == Some(&lease.mac)
        {
            self.by_ip.remove(&old.ip);
            self.frees += 1;
        }
        // The address's previous holder, if different, loses it.
        if let Some(prev) = self.by_ip.insert(lease.ip, lease.mac)
            && prev != lease.mac
        {
            self.remove_name(prev);
            self.by_mac.remove(&prev);
        }
        self.remove_name(lease.mac);
        if let Some(h) = &lease.hostname {
            self.by_name
                .insert(h.to_ascii_lowercase().into(), lease.mac);
        }
        self.by_mac.insert(lease.mac, lease);
    }

    /// Drops `mac`'s hostname from the name index (if the index still points at it).
    fn remove_name(&mut self, mac: MacAddr) {
        if let Some(h) = self.by_mac.get(&mac).and_then(|l| l.hostname.as_deref()) {
            let key = h.to_ascii_lowercase();
            if self.by_name.get(key.as_str()) == Some(&mac) {
                self.by_name.remove(key.as_str());
            }
        }
    }

    fn remove(&mut self, mac: MacAddr) {
        self.remove_name(mac);
        if let Some(l) = self.by_mac.remove(&mac)
            && self.by_ip.get(&l.ip) == Some(&mac)
        {
            self.by_ip.remove(&l.ip);
            self.frees += 1;
        }
    }
}
