//! DHCPv6 leases: an IA_NA's address (RFC 8415), held by the client's (DUID, IAID).
//!
//! [`Leases6`] is the IPv6 half of [`super::Leases`] (one owner, one journal, one board): the
//! same rules as IPv4 with the keys DHCPv6 has. An address has at most one live holder; it is
//! never handed out while another client's lease holds it, while it is quarantined after a
//! DECLINE, or while the table reserves it; dynamic addresses come only from the subnet's
//! dynamic ranges. Offers (ADVERTISE) are held briefly and never journaled; REPLY to a
//! REQUEST, RENEW or REBIND journals a [`Change::Bound6`] before it leaves.
//!
//! Address choice: the client's current address, else the one it asks for (an IAADDR hint),
//! else a probe sequence that starts where a hash of its (DUID, IAID) points in the range, so
//! that a client that comes back after its lease ended tends to get the same address and two
//! instances of a cluster rarely pick one address for two clients. A range of up to
//! [`FULL_SCAN`] addresses is scanned whole when the probes find nothing; a larger one (a
//! /64 holds 2^64) is only probed: at the occupancy a provisioning network reaches, a probe
//! finds a free address at once.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::fmt;
use std::net::Ipv6Addr;

use serde::Serialize;

use super::{Change, Ended, LeaseState, OFFER_HOLD_SECONDS};
use crate::MacAddr;
use crate::table::{Range6, SubnetInfo6, Table};

/// Ranges up to this many addresses are scanned whole when the probes find nothing free.
pub const FULL_SCAN: u128 = 1 << 16;
/// Probes into a larger range before it is taken as full.
const PROBES: u32 = 256;

/// A DHCP Unique Identifier (RFC 8415 §11): 3 to 130 bytes (a type, then up to 128).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Duid(Box<[u8]>);

impl Duid {
    /// The DUID in `bytes`, if its length is one a DUID may have.
    pub fn new(bytes: &[u8]) -> Option<Self> {
        (3..=130).contains(&bytes.len()).then(|| Self(bytes.into()))
    }

    /// Its bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The Ethernet address inside a DUID-LLT (type 1) or DUID-LL (type 3) of hardware type 1:
    /// how a node's reservation is found from the client's own identifier.
    pub fn mac(&self) -> Option<MacAddr> {
        let b = &self.0;
        let at = match (b.get(..4)?, b.len()) {
            ([0, 1, 0, 1], 14) => 8,
            ([0, 3, 0, 1], 10) => 4,
            _ => return None,
        };
        let mut m = [0u8; 6];
        m.copy_from_slice(&b[at..at + 6]);
        Some(MacAddr(m))
    }
}

impl fmt::Display for Duid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        super::client::colon_hex(&self.0, f)
    }
}

impl fmt::Debug for Duid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Duid({self})")
    }
}

impl Serialize for Duid {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// Who holds a DHCPv6 lease: the client's DUID and the IA's IAID.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Key6 {
    /// The client's DUID (option 1).
    pub duid: Duid,
    /// The IA_NA's identifier.
    pub iaid: u32,
}

/// One DHCPv6 lease.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Lease6 {
    /// The client's DUID.
    pub duid: Duid,
    /// The IA_NA's identifier.
    pub iaid: u32,
    /// The client's hardware address, where one is known (its DUID, the relay's option 79).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mac: Option<MacAddr>,
    /// The address.
    pub ip: Ipv6Addr,
    /// When it was offered or committed (Unix seconds).
    pub start: u64,
    /// When it ends (its valid lifetime).
    pub expires: u64,
    /// Offered or bound.
    pub state: LeaseState,
    /// The client's name (option 39), if it gave one.
    pub hostname: Option<Box<str>>,
}

impl Lease6 {
    /// The key it is filed under.
    pub fn key(&self) -> Key6 {
        Key6 {
            duid: self.duid.clone(),
            iaid: self.iaid,
        }
    }
}

/// Why an address cannot be committed to a client (its IA gets NoBinding or NotOnLink).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Refusal6 {
    /// Not in a dynamic range of the client's subnet.
    #[error("{0} is not in a dynamic range of this subnet")]
    NotInPool(Ipv6Addr),
    /// The table reserves it for a node.
    #[error("{0} is reserved for a node")]
    Reserved(Ipv6Addr),
    /// Another client's live lease holds it.
    #[error("{0} is held by another client")]
    HeldByOther(Ipv6Addr),
    /// Quarantined after a DECLINE.
    #[error("{0} was declined and is quarantined")]
    Quarantined(Ipv6Addr),
}

/// What a timer entry ends.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Timer6 {
    Lease(Key6),
    Quarantine(Ipv6Addr),
}

/// The DHCPv6 lease set. See the module docs.
#[derive(Debug, Default)]
pub struct Leases6 {
    by_client: HashMap<Key6, Lease6>,
    by_ip: HashMap<Ipv6Addr, Key6>,
    /// Quarantined addresses: end of quarantine, and who declined.
    declined: HashMap<Ipv6Addr, (u64, Key6)>,
    timers: BinaryHeap<Reverse<(u64, Timer6)>>,
    pub(super) dirty: HashSet<Key6>,
    pub(super) dirty_declined: HashSet<Ipv6Addr>,
    /// Bound changes that took an address from another live holder (replay): always zero in
    /// a correct history.
    pub(super) conflicts: u64,
    /// Addresses freed so far (a release, an end, a quarantine's end, a client moving).
    frees: u64,
    /// Ranges found full, by their start: (`frees` then, the table's id then). Until an
    /// address is freed or the table changes, a request for one is answered at once instead
    /// of scanning the range again (a flood of SOLICITs on a full pool).
    full: HashMap<Ipv6Addr, (u64, u64)>,
}

impl Leases6 {
    /// Number of leases (offered and bound).
    pub fn len(&self) -> usize {
        self.by_client.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.by_client.is_empty()
    }

    /// Every lease, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = &Lease6> {
        self.by_client.values()
    }

    /// Quarantined addresses with the end of their quarantine.
    pub fn declined(&self) -> impl Iterator<Item = (Ipv6Addr, u64)> + '_ {
        self.declined.iter().map(|(ip, (until, _))| (*ip, *until))
    }

    /// The lease filed under `key`, ended or not.
    pub fn lease(&self, key: &Key6) -> Option<&Lease6> {
        self.by_client.get(key)
    }

    /// The live lease holding `ip`.
    pub fn holder(&self, ip: Ipv6Addr, now: u64) -> Option<&Lease6> {
        let key = self.by_ip.get(&ip)?;
        self.by_client.get(key).filter(|l| l.expires > now)
    }

    /// The live bound lease filed under `key`.
    pub fn bound(&self, key: &Key6, now: u64) -> Option<&Lease6> {
        self.by_client
            .get(key)
            .filter(|l| l.state == LeaseState::Bound && l.expires > now)
    }

    fn check_free(
        &self,
        table: &Table,
        key: &Key6,
        ip: Ipv6Addr,
        now: u64,
    ) -> Result<(), Refusal6> {
        if table.by_ipv6(ip).is_some() {
            return Err(Refusal6::Reserved(ip));
        }
        if self
            .by_ip
            .get(&ip)
            .is_some_and(|k| k != key && self.holder(ip, now).is_some())
        {
            return Err(Refusal6::HeldByOther(ip));
        }
        if self.declined.get(&ip).is_some_and(|(u, _)| *u > now) {
            return Err(Refusal6::Quarantined(ip));
        }
        Ok(())
    }

    /// Picks the address to advertise to `key` in `subnet` and holds it as an offer, or `None`
    /// when the subnet has no free dynamic address (see the module docs for the order).
    #[allow(clippy::too_many_arguments)]
    pub fn offer(
        &mut self,
        table: &Table,
        subnet: &SubnetInfo6,
        key: &Key6,
        mac: Option<MacAddr>,
        hint: Option<Ipv6Addr>,
        hostname: Option<&str>,
        now: u64,
    ) -> Option<Ipv6Addr> {
        let usable = |l: &Self, ip: Ipv6Addr| {
            subnet.dynamic_range_of(ip).is_some() && l.check_free(table, key, ip, now).is_ok()
        };
        let current = self.by_client.get(key).map(|l| l.ip);
        let ip = current
            .filter(|ip| usable(self, *ip))
            .or_else(|| hint.filter(|ip| usable(self, *ip)))
            .or_else(|| {
                subnet
                    .dynamic
                    .iter()
                    .find_map(|r| self.pick(table, r, key, now))
            })?;
        if self
            .by_client
            .get(key)
            .is_some_and(|l| l.ip == ip && l.state == LeaseState::Bound && l.expires > now)
        {
            // Already bound to it: an offer must not shorten or downgrade the lease.
            return Some(ip);
        }
        self.insert(Lease6 {
            duid: key.duid.clone(),
            iaid: key.iaid,
            mac,
            ip,
            start: now,
            expires: now + OFFER_HOLD_SECONDS,
            state: LeaseState::Offered,
            hostname: hostname.map(Into::into),
        });
        Some(ip)
    }

    /// A free address of `r` for `key`: probes from the key's hash, then (small ranges) a
    /// whole scan.
    fn pick(&mut self, table: &Table, r: &Range6, key: &Key6, now: u64) -> Option<Ipv6Addr> {
        if self.full.get(&r.start) == Some(&(self.frees, table.id())) {
            return None;
        }
        let found = self.search(table, r, key, now);
        if found.is_none() {
            self.full.insert(r.start, (self.frees, table.id()));
        }
        found
    }

    fn search(&self, table: &Table, r: &Range6, key: &Key6, now: u64) -> Option<Ipv6Addr> {
        let span = r.span();
        let start = u128::from(r.start);
        let at = |off: u128| Ipv6Addr::from(start + off);
        let mut h = fnv(key);
        for _ in 0..PROBES {
            let off = if span == u128::MAX { h } else { h % (span + 1) };
            if self.check_free(table, key, at(off), now).is_ok() {
                return Some(at(off));
            }
            h = mix(h);
        }
        if span < FULL_SCAN {
            let from = fnv(key) % (span + 1);
            return (from..=span)
                .chain(0..from)
                .map(at)
                .find(|ip| self.check_free(table, key, *ip, now).is_ok());
        }
        None
    }

    /// Commits `ip` to `key` for the subnet's valid lifetime (REQUEST, RENEW, REBIND),
    /// returning the change to journal before the REPLY, or why the IA cannot have it.
    #[allow(clippy::too_many_arguments)]
    pub fn commit(
        &mut self,
        table: &Table,
        subnet: &SubnetInfo6,
        key: &Key6,
        mac: Option<MacAddr>,
        ip: Ipv6Addr,
        hostname: Option<&str>,
        now: u64,
    ) -> Result<Change, Refusal6> {
        self.check_commit(table, subnet, key, ip, now)?;
        let change = Change::Bound6 {
            duid: key.duid.clone(),
            iaid: key.iaid,
            mac,
            ip,
            start: now,
            expires: now + u64::from(subnet.valid_seconds),
            hostname: hostname.map(Into::into),
        };
        self.apply(&change);
        Ok(change)
    }

    /// Whether `key` may hold `ip` in `subnet` now.
    pub fn check_commit(
        &self,
        table: &Table,
        subnet: &SubnetInfo6,
        key: &Key6,
        ip: Ipv6Addr,
        now: u64,
    ) -> Result<(), Refusal6> {
        if subnet.dynamic_range_of(ip).is_none() {
            return Err(Refusal6::NotInPool(ip));
        }
        self.check_free(table, key, ip, now)
    }

    /// The client gives `ip` back; `None` when `key` holds no such lease.
    pub fn release(&mut self, key: &Key6, ip: Ipv6Addr) -> Option<Change> {
        if self.by_client.get(key)?.ip != ip {
            return None;
        }
        let change = Change::Released6 {
            duid: key.duid.clone(),
            iaid: key.iaid,
            ip,
        };
        self.apply(&change);
        Some(change)
    }

    /// The client found `ip` in use: quarantine it. Only its holder may decline it.
    pub fn decline(
        &mut self,
        key: &Key6,
        ip: Ipv6Addr,
        decline_seconds: u32,
        now: u64,
    ) -> Option<Change> {
        if self.by_client.get(key)?.ip != ip {
            return None;
        }
        let change = Change::Declined6 {
            duid: key.duid.clone(),
            iaid: key.iaid,
            ip,
            until: now + u64::from(decline_seconds),
        };
        self.apply(&change);
        Some(change)
    }

    /// Applies one journaled IPv6 change (live and replay); IPv4 changes are not its own.
    pub(super) fn apply(&mut self, change: &Change) {
        match change {
            Change::Bound6 {
                duid,
                iaid,
                mac,
                ip,
                start,
                expires,
                hostname,
            } => {
                let key = Key6 {
                    duid: duid.clone(),
                    iaid: *iaid,
                };
                if let Some(holder) = self.by_ip.get(ip)
                    && *holder != key
                    && self
                        .by_client
                        .get(holder)
                        .is_some_and(|l| l.state == LeaseState::Bound && l.expires > *start)
                {
                    self.conflicts += 1;
                }
                self.insert(Lease6 {
                    duid: duid.clone(),
                    iaid: *iaid,
                    mac: *mac,
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
            Change::Released6 { duid, iaid, ip } => {
                let key = Key6 {
                    duid: duid.clone(),
                    iaid: *iaid,
                };
                if self.by_client.get(&key).is_some_and(|l| l.ip == *ip) {
                    self.remove(&key);
                }
            }
            Change::Declined6 {
                duid,
                iaid,
                ip,
                until,
            } => {
                let key = Key6 {
                    duid: duid.clone(),
                    iaid: *iaid,
                };
                if self.by_client.get(&key).is_some_and(|l| l.ip == *ip) {
                    self.remove(&key);
                }
                self.declined.insert(*ip, (*until, key));
                self.dirty_declined.insert(*ip);
                self.push_timer(*until, Timer6::Quarantine(*ip));
            }
            Change::Bound { .. } | Change::Released { .. } | Change::Declined { .. } => {}
        }
    }

    /// Removes what has ended by `now` and returns it.
    pub(super) fn expire(&mut self, now: u64, ended: &mut Vec<Ended>) {
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
                Timer6::Lease(key) => {
                    if let Some(l) = self.by_client.get(&key) {
                        ended.push(Ended::Expired6 {
                            duid: l.duid.clone(),
                            iaid: l.iaid,
                            mac: l.mac,
                            ip: l.ip,
                            state: l.state,
                        });
                        self.remove(&key);
                    }
                }
                Timer6::Quarantine(ip) => {
                    self.declined.remove(&ip);
                    self.frees += 1;
                    self.dirty_declined.insert(ip);
                    ended.push(Ended::QuarantineEnded6 { ip });
                }
            }
        }
    }

    fn push_timer(&mut self, at: u64, what: Timer6) {
        let live = self.by_client.len() + self.declined.len();
        if self.timers.len() >= 2 * live + 1024 {
            let leases = self
                .by_client
                .iter()
                .map(|(k, l)| Reverse((l.expires, Timer6::Lease(k.clone()))));
            let quarantines = self
                .declined
                .iter()
                .map(|(ip, (until, _))| Reverse((*until, Timer6::Quarantine(*ip))));
            self.timers = leases.chain(quarantines).collect();
        }
        self.timers.push(Reverse((at, what)));
    }

    fn timer_is_live(&self, at: u64, what: &Timer6) -> bool {
        match what {
            Timer6::Lease(key) => self.by_client.get(key).is_some_and(|l| l.expires == at),
            Timer6::Quarantine(ip) => self.declined.get(ip).is_some_and(|(u, _)| *u == at),
        }
    }

    /// The earliest time something ends.
    pub(super) fn poll_timeout(&mut self) -> Option<u64> {
        while let Some(Reverse((at, what))) = self.timers.peek() {
            if self.timer_is_live(*at, what) {
                return Some(*at);
            }
            self.timers.pop();
        }
        None
    }

    /// The changes that recreate the durable part (bound leases and quarantines live at
    /// `now`).
    pub(super) fn durable_changes(&self, now: u64, out: &mut Vec<Change>) {
        let mut bound: Vec<&Lease6> = self
            .by_client
            .values()
            .filter(|l| l.state == LeaseState::Bound && l.expires > now)
            .collect();
        bound.sort_by_key(|l| (l.start, l.ip));
        out.extend(bound.into_iter().map(|l| Change::Bound6 {
            duid: l.duid.clone(),
            iaid: l.iaid,
            mac: l.mac,
            ip: l.ip,
            start: l.start,
            expires: l.expires,
            hostname: l.hostname.clone(),
        }));
        let mut q: Vec<_> = self
            .declined
            .iter()
            .filter(|(_, (u, _))| *u > now)
            .collect();
        q.sort_by_key(|(ip, _)| **ip);
        out.extend(q.into_iter().map(|(ip, (until, key))| Change::Declined6 {
            duid: key.duid.clone(),
            iaid: key.iaid,
            ip: *ip,
            until: *until,
        }));
    }

    fn insert(&mut self, lease: Lease6) {
        let key = lease.key();
        if let Some(old) = self.by_client.get(&key)
            && old.ip != lease.ip
            && self.by_ip.get(&old.ip) == Some(&key)
        {
            self.by_ip.remove(&old.ip);
            self.frees += 1;
        }
        if let Some(prev) = self.by_ip.insert(lease.ip, key.clone())
            && prev != key
        {
            self.by_client.remove(&prev);
            self.dirty.insert(prev);
        }
        self.push_timer(lease.expires, Timer6::Lease(key.clone()));
        self.dirty.insert(key.clone());
        self.by_client.insert(key, lease);
    }

    fn remove(&mut self, key: &Key6) {
        if let Some(l) = self.by_client.remove(key)
            && self.by_ip.get(&l.ip) == Some(key)
        {
            self.by_ip.remove(&l.ip);
            self.frees += 1;
        }
        self.dirty.insert(key.clone());
    }

    /// The lease now filed under `key` (for publishing).
    pub(super) fn get(&self, key: &Key6) -> Option<&Lease6> {
        self.by_client.get(key)
    }

    /// The quarantine end of `ip`, if quarantined (for publishing).
    pub(super) fn quarantine(&self, ip: Ipv6Addr) -> Option<u64> {
        self.declined.get(&ip).map(|(u, _)| *u)
    }
}

/// FNV-1a over the key: deterministic across restarts and instances.
fn fnv(key: &Key6) -> u128 {
    let mut h: u128 = 0x6c62_272e_07bb_0142_62b8_2175_6295_c58d;
    for b in key.duid.as_bytes().iter().chain(&key.iaid.to_be_bytes()) {
        h ^= u128::from(*b);
        h = h.wrapping_mul(0x0000_0000_0100_0000_0000_0000_0000_013b);
    }
    mix(h)
}

/// The next probe after `h` (a bijective mixer).
fn mix(h: u128) -> u128 {
    let mut x = h ^ (h >> 67);
    x = x.wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c835);
    x ^ (x >> 61)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::lease::{LeaseBoard, Leases};
    use crate::snapshot::Snapshot;

    fn table(range: (&str, &str)) -> Table {
        let json = format!(
            r#"{{"generation": 1, "subnets": [{{"cidr": "fd00:1::/64", "lease_seconds": 600,
            "preferred_seconds": 400, "decline_seconds": 900, "domain": "lab", "dynamic_dns": true,
            "dynamic": [{{"start": "{}", "end": "{}"}}]}}],
            "nodes": [{{"id": "n", "hostname": "node", "domain": "lab", "interfaces":
              [{{"mac": "52:54:00:00:00:01", "ipv6": "fd00:1::5"}}]}}]}}"#,
            range.0, range.1
        );
        Table::compile(&Snapshot::from_json(json.as_bytes()).unwrap(), None).unwrap()
    }

    fn key(n: u8, iaid: u32) -> Key6 {
        Key6 {
            duid: Duid::new(&[0, 3, 0, 1, 2, 0, 0, 0, 0, n]).unwrap(),
            iaid,
        }
    }

    #[test]
    fn duids_name_their_mac_and_print_in_hex() {
        let llt = Duid::new(&[0, 1, 0, 1, 0x2a, 0, 0, 1, 0x52, 0x54, 0, 0x12, 0x34, 0x56]).unwrap();
        assert_eq!(llt.mac(), Some(MacAddr([0x52, 0x54, 0, 0x12, 0x34, 0x56])));
        assert_eq!(key(7, 0).duid.mac(), Some(MacAddr([2, 0, 0, 0, 0, 7])));
        assert_eq!(Duid::new(&[0, 2, 0, 0, 0, 9, 1, 2]).unwrap().mac(), None);
        assert_eq!(Duid::new(&[0, 4, 1]).unwrap().to_string(), "00:04:01");
        assert!(Duid::new(&[0, 1]).is_none() && Duid::new(&[0; 131]).is_none());
    }

    #[test]
    fn offers_commits_renewals_releases_declines_and_ends() {
        let t = table(("fd00:1::100", "fd00:1::1ff"));
        let s = &t.subnets6()[0];
        let mut l = Leases::new();
        let (a, b) = (key(1, 1), key(2, 1));
        let ip_a = l
            .v6_mut()
            .offer(&t, s, &a, None, None, Some("web-a"), 0)
            .unwrap();
        // The same client asking again gets the same address; another client another one.
        assert_eq!(l.v6_mut().offer(&t, s, &a, None, None, None, 1), Some(ip_a));
        let ip_b = l
            .v6_mut()
            .offer(&t, s, &b, None, Some(ip_a), None, 1)
            .unwrap();
        assert_ne!(ip_a, ip_b, "a hint held by another client is not taken");
        assert!(s.dynamic_range_of(ip_b).is_some());
        // A second IA of the same client is another lease.
        let ip_a2 = l
            .v6_mut()
            .offer(&t, s, &key(1, 2), None, None, None, 1)
            .unwrap();
        assert!(ip_a2 != ip_a && ip_a2 != ip_b);
        let c = l
            .v6_mut()
            .commit(&t, s, &a, a.duid.mac(), ip_a, Some("web-a"), 10)
            .unwrap();
        assert!(matches!(c, Change::Bound6 { expires: 610, .. }));
        assert_eq!(
            l.v6_mut().commit(&t, s, &b, None, ip_a, None, 10),
            Err(Refusal6::HeldByOther(ip_a))
        );
        let reserved: Ipv6Addr = "fd00:1::5".parse().unwrap();
        assert_eq!(
            l.v6_mut().commit(&t, s, &b, None, reserved, None, 10),
            Err(Refusal6::NotInPool(reserved))
        );
        // Published: DNS finds the unknown client's own name, and its address's name.
        let board = LeaseBoard::new();
        l.publish(&board);
        assert_eq!(board.dns_address6(&t, "web-a.lab"), Some(ip_a));
        assert_eq!(board.dns_name6(&t, ip_a).as_deref(), Some("web-a.lab"));
        assert_eq!(board.counts6().bound, 1);
        assert_eq!(board.address6_of(MacAddr([2, 0, 0, 0, 0, 1])), Some(ip_a));
        // Released: free for the next client; declined: quarantined, then free again.
        let r = l.v6_mut().release(&a, ip_a).unwrap();
        assert!(l.v6_mut().release(&a, ip_a).is_none());
        l.publish(&board);
        assert_eq!(board.holder6(ip_a), None);
        assert!(l.v6_mut().commit(&t, s, &b, None, ip_a, None, 20).is_ok());
        let d = l.v6_mut().decline(&b, ip_a, 900, 30).unwrap();
        assert_eq!(
            l.v6_mut().check_commit(&t, s, &a, ip_a, 31),
            Err(Refusal6::Quarantined(ip_a))
        );
        // Replay of the journaled changes rebuilds the same durable state.
        let replayed = Leases::restore([&c, &r, &d], 31);
        assert_eq!(
            replayed.v6().declined().collect::<Vec<_>>(),
            vec![(ip_a, 930)]
        );
        assert_eq!(
            l.durable_changes(31),
            vec![Change::Declined6 {
                duid: b.duid.clone(),
                iaid: 1,
                ip: ip_a,
                until: 930
            }]
        );
        // Offers end after OFFER_HOLD_SECONDS, the quarantine at 930.
        let ended = l.expire(929);
        assert!(ended.iter().all(|e| matches!(
            e,
            Ended::Expired6 {
                state: LeaseState::Offered,
                ..
            }
        )));
        assert_eq!(l.poll_timeout(), Some(930));
        assert_eq!(l.expire(930), vec![Ended::QuarantineEnded6 { ip: ip_a }]);
        assert!(l.v6().is_empty());
    }

    #[test]
    fn small_ranges_fill_up_and_large_ones_are_probed() {
        let t = table(("fd00:1::100", "fd00:1::103"));
        let s = &t.subnets6()[0];
        let mut l = Leases6::default();
        let got: Vec<_> = (0..5)
            .map(|n| l.offer(&t, s, &key(n, 0), None, None, None, 0))
            .collect();
        assert!(got[..4].iter().all(Option::is_some));
        assert_eq!(got[4], None, "four addresses for five clients");
        // Full: answered from the memo until an address is freed.
        assert!(l.full.contains_key(&"fd00:1::100".parse().unwrap()));
        assert_eq!(l.offer(&t, s, &key(4, 0), None, None, None, 1), None);
        let freed = got[0].unwrap();
        assert!(l.release(&key(0, 0), freed).is_some());
        assert_eq!(l.offer(&t, s, &key(4, 0), None, None, None, 2), Some(freed));
        let mut distinct: Vec<_> = got[..4].iter().flatten().collect();
        distinct.sort();
        distinct.dedup();
        assert_eq!(distinct.len(), 4);

        // A /64's worth: clients spread by their key, the same key lands on the same address.
        let t = table(("fd00:1::1:0:0:0", "fd00:1::ffff:ffff:ffff:ffff"));
        let s = &t.subnets6()[0];
        let mut l = Leases6::default();
        let first = l.offer(&t, s, &key(9, 3), None, None, None, 0).unwrap();
        let mut again = Leases6::default();
        assert_eq!(
            again.offer(&t, s, &key(9, 3), None, None, None, 50),
            Some(first)
        );
        for n in 0..200 {
            assert!(l.offer(&t, s, &key(n, 0), None, None, None, 0).is_some());
        }
        assert_eq!(l.len(), 201);
    }
}
