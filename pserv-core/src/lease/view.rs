//! The published, read-only view of the dynamic leases, and the rule that names them in DNS.
//!
//! The lease set has one owner (the DHCP service, through [`super::Leases`]); everything else
//! reads the [`LeaseBoard`] it publishes to. The board's maps are lock-free concurrent maps
//! (papaya) that only the owner writes, at its publish points ([`super::Leases::publish`]:
//! before replies whose changes became durable leave, after leases end, and at most every few
//! milliseconds for offers), with what changed since the last publish. A reader never takes a
//! lock and never waits for the owner; the owner never waits for a reader. Each lease is
//! replaced whole (an `Arc`), so a reader sees a lease as it was published or as it is now,
//! never a mix; a listing taken while the owner publishes may show some of that publish's
//! changes and not others.
//!
//! The naming rule for dynamic clients lives here, so every embedder gets the same answers:
//! a node's name always wins (a known node is named by the table, never by what its client
//! claims), and a client's own hostname is published only where its subnet says
//! `dynamic_dns`, in that subnet's domain.

use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::{ClientKey, Key6, Lease, Lease6, LeaseState};
use crate::MacAddr;
use crate::table::Table;

/// Lease counts, by state.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct LeaseCounts {
    /// Acknowledged leases.
    pub bound: usize,
    /// Offers not yet requested.
    pub offered: usize,
    /// Addresses quarantined after a DECLINE.
    pub declined: usize,
}

/// How long an address a machine showed in its PXE exchange on a proxyDHCP subnet counts as
/// its own: an hour, longer than a netboot and an installation's first files take, shorter
/// than most site servers' leases, after which the machine shows it again at its next boot.
pub const SIGHTING_SECONDS: u64 = 3600;
/// The most sightings kept (a few MiB): a flood of made-up MACs cannot grow memory past it.
pub const MAX_SIGHTINGS: usize = 65_536;

/// Where the owner publishes the leases and readers read them. See the module docs.
#[derive(Debug, Default)]
pub struct LeaseBoard {
    /// Every live lease, offered or bound, by client.
    leases: papaya::HashMap<ClientKey, Arc<Lease>>,
    /// Leases by hardware address (the latest client of each, when clients with different
    /// identifiers share one).
    by_mac: papaya::HashMap<MacAddr, ClientKey>,
    /// Bound leases by address.
    by_ip: papaya::HashMap<Ipv4Addr, ClientKey>,
    /// Bound leases by client hostname (lower case).
    by_name: papaya::HashMap<Box<str>, ClientKey>,
    /// Quarantined addresses: end of quarantine.
    declined: papaya::HashMap<Ipv4Addr, u64>,
    /// proxyDHCP (issue 23): the address each machine on a proxy subnet showed in its PXE
    /// exchange, and until when it counts. See [`LeaseBoard::sight`].
    sightings: papaya::HashMap<MacAddr, (Ipv4Addr, u64)>,
    /// The same, by address (the latest machine to show it).
    sighted_by_ip: papaya::HashMap<Ipv4Addr, MacAddr>,
    /// When expired sightings were last swept (a full table is swept at most once a second).
    sighting_sweep: std::sync::atomic::AtomicU64,
    bound: AtomicUsize,
    offered: AtomicUsize,
    /// DHCPv6 leases, offered or bound, by (DUID, IAID).
    leases6: papaya::HashMap<Key6, Arc<Lease6>>,
    /// Bound DHCPv6 leases by address.
    by_ip6: papaya::HashMap<Ipv6Addr, Key6>,
    /// Bound DHCPv6 leases by the client's name (lower case).
    by_name6: papaya::HashMap<Box<str>, Key6>,
    /// DHCPv6 leases by hardware address, where one is known.
    by_mac6: papaya::HashMap<MacAddr, Key6>,
    /// Quarantined IPv6 addresses.
    declined6: papaya::HashMap<Ipv6Addr, u64>,
    bound6: AtomicUsize,
    offered6: AtomicUsize,
}

impl LeaseBoard {
    /// A board showing no leases until the owner publishes.
    pub fn new() -> Self {
        Self::default()
    }

    /// Counts by state.
    pub fn counts(&self) -> LeaseCounts {
        LeaseCounts {
            bound: self.bound.load(Ordering::Relaxed),
            offered: self.offered.load(Ordering::Relaxed),
            declined: self.declined.pin().len(),
        }
    }

    /// DHCPv6 lease counts, by state.
    pub fn counts6(&self) -> LeaseCounts {
        LeaseCounts {
            bound: self.bound6.load(Ordering::Relaxed),
            offered: self.offered6.load(Ordering::Relaxed),
            declined: self.declined6.pin().len(),
        }
    }

    /// Every live DHCPv6 lease, in no particular order.
    pub fn leases6(&self) -> Vec<Arc<Lease6>> {
        self.leases6.pin().values().cloned().collect()
    }

    /// Quarantined IPv6 addresses with the end of their quarantine.
    pub fn declined6(&self) -> Vec<(Ipv6Addr, u64)> {
        self.declined6
            .pin()
            .iter()
            .map(|(ip, u)| (*ip, *u))
            .collect()
    }

    /// The bound DHCPv6 lease on `ip`.
    pub fn holder6(&self, ip: Ipv6Addr) -> Option<Arc<Lease6>> {
        let key = self.by_ip6.pin().get(&ip)?.clone();
        self.leases6
            .pin()
            .get(&key)
            .filter(|l| l.ip == ip && l.state == LeaseState::Bound)
            .cloned()
    }

    /// The address of the bound DHCPv6 lease of the machine with hardware address `mac`
    /// (where its DUID or its relay told it).
    pub fn address6_of(&self, mac: MacAddr) -> Option<Ipv6Addr> {
        let key = self.by_mac6.pin().get(&mac)?.clone();
        self.leases6
            .pin()
            .get(&key)
            .filter(|l| l.mac == Some(mac) && l.state == LeaseState::Bound)
            .map(|l| l.ip)
    }

    /// The IPv6 address DNS gives `fqdn` (lower case, no trailing dot) from a dynamic lease,
    /// by the same rule as [`LeaseBoard::dns_address`]: a client's own name (option 39) where
    /// its subnet publishes client names, in that subnet's domain, never a known node's.
    pub fn dns_address6(&self, table: &Table, fqdn: &str) -> Option<Ipv6Addr> {
        if !table.subnets6().iter().any(|s| s.dynamic_dns) {
            return None;
        }
        let (host, domain) = fqdn.split_once('.')?;
        let key = self.by_name6.pin().get(host)?.clone();
        let leases = self.leases6.pin();
        let lease = leases.get(&key).filter(|l| {
            l.state == LeaseState::Bound
                && l.hostname
                    .as_deref()
                    .is_some_and(|h| h.eq_ignore_ascii_case(host))
        })?;
        let subnet = table.subnet6_for(lease.ip)?;
        let unknown = lease.mac.is_none_or(|m| table.by_mac(m).is_none());
        (unknown && subnet.dynamic_dns && subnet.domain.as_deref() == Some(domain))
            .then_some(lease.ip)
    }

    /// The name DNS gives `ip` (its PTR) from a DHCPv6 lease: a known node's own name, else
    /// the client's name in its subnet's domain where the subnet publishes client names,
    /// unless a node owns that name.
    pub fn dns_name6(&self, table: &Table, ip: Ipv6Addr) -> Option<String> {
        let lease = self.holder6(ip)?;
        if let Some(iface) = lease.mac.and_then(|m| table.by_mac(m)) {
            return Some(iface.node().fqdn().to_owned());
        }
        let subnet = table.subnet6_for(ip).filter(|s| s.dynamic_dns)?;
        let fqdn = format!(
            "{}.{}",
            lease.hostname.as_deref()?,
            subnet.domain.as_deref()?
        );
        table.by_name(&fqdn).is_none().then_some(fqdn)
    }

    /// Brings one DHCPv6 client up to date: `lease` is its lease now (or none). Owner only.
    pub(super) fn set_lease6(&self, key: Key6, lease: Option<&Lease6>) {
        let leases = self.leases6.pin();
        let by_ip = self.by_ip6.pin();
        let by_name = self.by_name6.pin();
        let by_mac = self.by_mac6.pin();
        let old = match lease {
            Some(l) => leases.insert(key.clone(), Arc::new(l.clone())),
            None => leases.remove(&key),
        };
        if let Some(old) = old {
            let counter = match old.state {
                LeaseState::Bound => &self.bound6,
                LeaseState::Offered => &self.offered6,
            };
            counter.fetch_sub(1, Ordering::Relaxed);
            if old.state == LeaseState::Bound {
                by_ip.remove_if(&old.ip, |_, k| *k == key).ok();
            }
            if let Some(h) = &old.hostname {
                by_name
                    .remove_if(h.to_ascii_lowercase().as_str(), |_, k| *k == key)
                    .ok();
            }
            if let Some(m) = old.mac {
                by_mac.remove_if(&m, |_, k| *k == key).ok();
            }
        }
        let Some(l) = lease else {
            return;
        };
        if let Some(m) = l.mac {
            by_mac.insert(m, key.clone());
        }
        match l.state {
            LeaseState::Bound => {
                self.bound6.fetch_add(1, Ordering::Relaxed);
                by_ip.insert(l.ip, key.clone());
                if let Some(h) = &l.hostname {
                    by_name.insert(h.to_ascii_lowercase().into(), key);
                }
            }
            LeaseState::Offered => {
                self.offered6.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Brings one quarantined IPv6 address up to date. Owner only.
    pub(super) fn set_declined6(&self, ip: Ipv6Addr, until: Option<u64>) {
        let declined = self.declined6.pin();
        match until {
            Some(u) => {
                declined.insert(ip, u);
            }
            None => {
                declined.remove(&ip);
            }
        }
    }

    /// Every live lease, in no particular order.
    pub fn leases(&self) -> Vec<Arc<Lease>> {
        self.leases.pin().values().cloned().collect()
    }

    /// Quarantined addresses with the end of their quarantine.
    pub fn declined(&self) -> Vec<(Ipv4Addr, u64)> {
        self.declined
            .pin()
            .iter()
            .map(|(ip, u)| (*ip, *u))
            .collect()
    }

    /// The lease of the client with hardware address `mac`, offered or bound, whatever
    /// client identifier it sent.
    pub fn lease(&self, mac: MacAddr) -> Option<Arc<Lease>> {
        let key = self.by_mac.pin().get(&mac)?.clone();
        self.leases
            .pin()
            .get(&key)
            .filter(|l| l.mac == mac)
            .cloned()
    }

    /// The lease filed under `key`, offered or bound.
    pub fn lease_of(&self, key: &ClientKey) -> Option<Arc<Lease>> {
        self.leases.pin().get(key).cloned()
    }

    /// Records that the machine `mac` showed `ip` in its PXE exchange on a proxyDHCP subnet
    /// (the address another server leased it, named in its REQUEST or as its ciaddr at the
    /// boot server), for [`SIGHTING_SECONDS`] from `now`: the address its per-node
    /// configuration and files are then served to. It is the machine's word, as the MAC in a
    /// request is. At most [`MAX_SIGHTINGS`] are kept: when full, expired ones are dropped,
    /// and if none has expired the new one is not recorded (false).
    pub fn sight(&self, mac: MacAddr, ip: Ipv4Addr, now: u64) -> bool {
        let map = self.sightings.pin();
        let by_ip = self.sighted_by_ip.pin();
        if map.len() >= MAX_SIGHTINGS && !map.contains_key(&mac) {
            if self.sighting_sweep.swap(now, Ordering::Relaxed) != now {
                map.retain(|_, (_, until)| *until > now);
                by_ip.retain(|ip, m| map.get(m).is_some_and(|(at, _)| at == ip));
            }
            if map.len() >= MAX_SIGHTINGS {
                return false;
            }
        }
        // A machine that moved leaves its old address.
        if let Some((old, _)) = map.insert(mac, (ip, now.saturating_add(SIGHTING_SECONDS)))
            && *old != ip
        {
            by_ip.remove_if(old, |_, m| *m == mac).ok();
        }
        by_ip.insert(ip, mac);
        true
    }

    /// The machine that showed `ip` in its PXE exchange, if its sighting still counts.
    pub fn sighted_at(&self, ip: Ipv4Addr, now: u64) -> Option<MacAddr> {
        let mac = *self.sighted_by_ip.pin().get(&ip)?;
        (self.sighted(mac, now) == Some(ip)).then_some(mac)
    }

    /// The address `mac` showed in its PXE exchange, if it did within [`SIGHTING_SECONDS`].
    pub fn sighted(&self, mac: MacAddr, now: u64) -> Option<Ipv4Addr> {
        self.sightings
            .pin()
            .get(&mac)
            .filter(|(_, until)| *until > now)
            .map(|(ip, _)| *ip)
    }

    /// How many sightings are kept (expired ones included until a sweep).
    pub fn sightings(&self) -> usize {
        self.sightings.pin().len()
    }

    /// The address of the bound lease of the client with hardware address `mac` (a known node
    /// without a reservation resolves to it).
    pub fn address_of(&self, mac: MacAddr) -> Option<Ipv4Addr> {
        self.lease(mac)
            .filter(|l| l.state == LeaseState::Bound)
            .map(|l| l.ip)
    }

    /// The bound lease on `ip`.
    pub fn holder(&self, ip: Ipv4Addr) -> Option<Arc<Lease>> {
        let key = self.by_ip.pin().get(&ip)?.clone();
        self.leases
            .pin()
            .get(&key)
            .filter(|l| l.ip == ip && l.state == LeaseState::Bound)
            .cloned()
    }

    /// The address DNS gives `fqdn` (lower case, no trailing dot) from a dynamic lease: a
    /// client's own hostname, where its subnet publishes client names and in that subnet's
    /// domain, and never for a known node (the table names those). Looks at no lease when no
    /// subnet of `table` publishes client names.
    pub fn dns_address(&self, table: &Table, fqdn: &str) -> Option<Ipv4Addr> {
        if !table.subnets().iter().any(|s| s.dynamic_dns) {
            return None;
        }
        let (host, domain) = fqdn.split_once('.')?;
        let key = self.by_name.pin().get(host)?.clone();
        let leases = self.leases.pin();
        // The name entry and the lease are written one after the other: check they agree.
        let lease = leases.get(&key).filter(|l| {
            l.state == LeaseState::Bound
                && l.hostname
                    .as_deref()
                    .is_some_and(|h| h.eq_ignore_ascii_case(host))
        })?;
        let subnet = table.subnet_for(lease.ip)?;
        let unknown = table.by_mac(lease.mac).is_none();
        (unknown && subnet.dynamic_dns && subnet.domain.as_deref() == Some(domain))
            .then_some(lease.ip)
    }

    /// The name DNS gives `ip` (its PTR) from a dynamic lease: a known node's own name, else
    /// the client's hostname in its subnet's domain where the subnet publishes client names,
    /// unless a node owns that name.
    pub fn dns_name(&self, table: &Table, ip: Ipv4Addr) -> Option<String> {
        let lease = self.holder(ip)?;
        if let Some(iface) = table.by_mac(lease.mac) {
            return Some(iface.node().fqdn().to_owned());
        }
        let subnet = table.subnet_for(ip).filter(|s| s.dynamic_dns)?;
        let fqdn = format!(
            "{}.{}",
            lease.hostname.as_deref()?,
            subnet.domain.as_deref()?
        );
        table.by_name(&fqdn).is_none().then_some(fqdn)
    }

    /// Brings one client up to date: `lease` is its lease now (or none). Owner only.
    pub(super) fn set_lease(&self, key: ClientKey, lease: Option<&Lease>) {
        let leases = self.leases.pin();
        let by_mac = self.by_mac.pin();
        let by_ip = self.by_ip.pin();
        let by_name = self.by_name.pin();
        let old = match lease {
            Some(l) => {
                let old = leases.insert(key.clone(), Arc::new(l.clone()));
                // The indexes are written only where they change (an offer turning into a
                // lease keeps its MAC; a renewal its address): a read is cheaper than a write.
                if by_mac.get(&l.mac) != Some(&key) {
                    by_mac.insert(l.mac, key.clone());
                }
                old
            }
            None => leases.remove(&key),
        };
        if let Some(old) = old {
            let counter = match old.state {
                LeaseState::Bound => &self.bound,
                LeaseState::Offered => &self.offered,
            };
            counter.fetch_sub(1, Ordering::Relaxed);
            let still_bound = |new: &Lease| new.state == LeaseState::Bound;
            if old.state == LeaseState::Bound
                && lease.is_none_or(|l| l.ip != old.ip || !still_bound(l))
            {
                by_ip.remove_if(&old.ip, |_, k| *k == key).ok();
            }
            if lease.is_none_or(|l| l.mac != old.mac) {
                by_mac.remove_if(&old.mac, |_, k| *k == key).ok();
            }
            if let Some(h) = &old.hostname {
                let name = h.to_ascii_lowercase();
                let keep = lease.is_some_and(|l| {
                    still_bound(l)
                        && l.hostname
                            .as_deref()
                            .is_some_and(|n| n.eq_ignore_ascii_case(h))
                });
                if !keep {
                    by_name.remove_if(name.as_str(), |_, k| *k == key).ok();
                }
            }
        }
        let Some(l) = lease else {
            return;
        };
        match l.state {
            LeaseState::Bound => {
                self.bound.fetch_add(1, Ordering::Relaxed);
                if by_ip.get(&l.ip) != Some(&key) {
                    by_ip.insert(l.ip, key.clone());
                }
                if let Some(h) = &l.hostname {
                    by_name.insert(h.to_ascii_lowercase().into(), key);
                }
            }
            LeaseState::Offered => {
                self.offered.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Brings one quarantined address up to date. Owner only.
    pub(super) fn set_declined(&self, ip: Ipv4Addr, until: Option<u64>) {
        let declined = self.declined.pin();
        match until {
            Some(u) => {
                declined.insert(ip, u);
            }
            None => {
                declined.remove(&ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sightings_count_for_an_hour_and_are_bounded() {
        let b = LeaseBoard::new();
        let (m, ip) = (MacAddr([2, 0, 0, 0, 0, 1]), Ipv4Addr::new(10, 0, 0, 5));
        assert!(b.sight(m, ip, 100));
        assert_eq!(b.sighted(m, 100 + SIGHTING_SECONDS - 1), Some(ip));
        assert_eq!(b.sighted_at(ip, 101), Some(m));
        assert_eq!(b.sighted(m, 100 + SIGHTING_SECONDS), None);
        assert_eq!(b.sighted_at(ip, 100 + SIGHTING_SECONDS), None);
        // The machine moved: its old address is no longer its own.
        let moved = Ipv4Addr::new(10, 0, 0, 6);
        assert!(b.sight(m, moved, 200));
        assert_eq!(b.sighted_at(ip, 201), None);
        assert_eq!(b.sighted_at(moved, 201), Some(m));
        // Full of live sightings: a new machine is refused; once they expire, it is taken.
        for i in 1..MAX_SIGHTINGS as u32 {
            let [_, x, y, z] = i.to_be_bytes();
            assert!(b.sight(MacAddr([2, 1, 0, x, y, z]), Ipv4Addr::new(10, x, y, z), 300));
        }
        assert_eq!(b.sightings(), MAX_SIGHTINGS);
        let late = MacAddr([2, 9, 9, 9, 9, 9]);
        assert!(!b.sight(late, Ipv4Addr::new(10, 9, 9, 9), 301));
        assert!(b.sight(m, moved, 301), "one already kept is renewed");
        assert!(b.sight(late, Ipv4Addr::new(10, 9, 9, 9), 300 + SIGHTING_SECONDS));
        assert!(b.sightings() <= 2);
    }
}
