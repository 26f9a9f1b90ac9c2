//! The published, read-only view of the dynamic leases, and the rule that names them in DNS.
//!
//! The lease set has one owner (the DHCP service, through [`super::Leases`]); everything else
//! reads a [`LeaseView`] from a [`LeaseBoard`]: one atomic load, no lock the owner takes. A view
//! is immutable; the owner publishes a new one after each durable change and after leases end.
//! Its maps are persistent (`imbl`): a new view shares everything with the previous one except
//! the paths to what changed, so publishing costs the size of the change, not of the set.
//!
//! The naming rule for dynamic clients lives here, so every embedder gets the same answers:
//! a node's name always wins (a known node is named by the table, never by what its client
//! claims), and a client's own hostname is published only where its subnet says
//! `dynamic_dns`, in that subnet's domain.

use std::net::Ipv4Addr;
use std::sync::Arc;

use arc_swap::{ArcSwap, Guard};

use super::{Change, Lease, LeaseState};
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

/// An immutable picture of the dynamic leases at one moment. See the module docs.
#[derive(Debug, Default, Clone)]
pub struct LeaseView {
    /// Every live lease, offered or bound, by client.
    leases: imbl::HashMap<MacAddr, Lease>,
    /// Bound leases by address.
    by_ip: imbl::HashMap<Ipv4Addr, MacAddr>,
    /// Bound leases by client hostname (lower case).
    by_name: imbl::HashMap<Box<str>, MacAddr>,
    /// Quarantined addresses: end of quarantine, and who declined.
    declined: imbl::HashMap<Ipv4Addr, (u64, MacAddr)>,
    counts: LeaseCounts,
}

impl LeaseView {
    /// Counts by state.
    pub fn counts(&self) -> LeaseCounts {
        self.counts
    }

    /// Every live lease, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = &Lease> {
        self.leases.values()
    }

    /// Quarantined addresses with the end of their quarantine.
    pub fn declined(&self) -> impl Iterator<Item = (Ipv4Addr, u64)> + '_ {
        self.declined.iter().map(|(ip, (until, _))| (*ip, *until))
    }

    /// The lease of a client, offered or bound.
    pub fn lease(&self, mac: MacAddr) -> Option<&Lease> {
        self.leases.get(&mac)
    }

    /// The address of a client's bound lease (a known node without a reservation resolves to
    /// it).
    pub fn address_of(&self, mac: MacAddr) -> Option<Ipv4Addr> {
        self.leases
            .get(&mac)
            .filter(|l| l.state == LeaseState::Bound)
            .map(|l| l.ip)
    }

    /// The bound lease on `ip`.
    pub fn holder(&self, ip: Ipv4Addr) -> Option<&Lease> {
        self.leases.get(self.by_ip.get(&ip)?)
    }

    /// The address DNS gives `fqdn` (lower case, no trailing dot) from a dynamic lease: a
    /// client's own hostname, where its subnet publishes client names and in that subnet's
    /// domain, and never for a known node (the table names those).
    pub fn dns_address(&self, table: &Table, fqdn: &str) -> Option<Ipv4Addr> {
        let (host, domain) = fqdn.split_once('.')?;
        let lease = self.leases.get(self.by_name.get(host)?)?;
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

    /// The changes that recreate the durable part (bound leases and quarantines live at
    /// `now`): what a compacted journal holds.
    pub fn durable_changes(&self, now: u64) -> Vec<Change> {
        super::durable_changes(self.leases.values(), self.declined.iter(), now)
    }

    /// Brings one client up to date: `lease` is its lease now (or none).
    pub(super) fn set_lease(&mut self, mac: MacAddr, lease: Option<&Lease>) {
        if let Some(old) = self.leases.remove(&mac) {
            match old.state {
                LeaseState::Bound => self.counts.bound -= 1,
                LeaseState::Offered => self.counts.offered -= 1,
            }
            if self.by_ip.get(&old.ip) == Some(&mac) {
                self.by_ip.remove(&old.ip);
            }
            if let Some(h) = &old.hostname {
                let key = h.to_ascii_lowercase();
                if self.by_name.get(key.as_str()) == Some(&mac) {
                    self.by_name.remove(key.as_str());
                }
            }
        }
        let Some(l) = lease else {
            return;
        };
        match l.state {
            LeaseState::Bound => {
                self.counts.bound += 1;
                self.by_ip.insert(l.ip, mac);
                if let Some(h) = &l.hostname {
                    self.by_name.insert(h.to_ascii_lowercase().into(), mac);
                }
            }
            LeaseState::Offered => self.counts.offered += 1,
        }
        self.leases.insert(mac, l.clone());
    }

    /// Brings one quarantined address up to date.
    pub(super) fn set_declined(&mut self, ip: Ipv4Addr, entry: Option<(u64, MacAddr)>) {
        match entry {
            Some(e) => {
                self.declined.insert(ip, e);
            }
            None => {
                self.declined.remove(&ip);
            }
        }
        self.counts.declined = self.declined.len();
    }
}

/// Where the owner publishes [`LeaseView`]s and readers load them (one atomic load each).
#[derive(Debug, Default)]
pub struct LeaseBoard {
    current: ArcSwap<LeaseView>,
}

impl LeaseBoard {
    /// A board showing no leases until the owner publishes.
    pub fn new() -> Self {
        Self::default()
    }

    /// The current view, for one request. Do not hold it across an `.await`: use
    /// [`LeaseBoard::load_full`] there.
    pub fn load(&self) -> Guard<Arc<LeaseView>> {
        self.current.load()
    }

    /// The current view, as an owned `Arc`.
    pub fn load_full(&self) -> Arc<LeaseView> {
        self.current.load_full()
    }

    /// Replaces the view (the owner only).
    pub fn publish(&self, view: Arc<LeaseView>) {
        self.current.store(view);
    }

    /// [`LeaseView::address_of`] on the current view.
    pub fn address_of(&self, mac: MacAddr) -> Option<Ipv4Addr> {
        self.load().address_of(mac)
    }

    /// [`LeaseView::dns_address`] on the current view; no load at all when no subnet of
    /// `table` publishes client names.
    pub fn dns_address(&self, table: &Table, fqdn: &str) -> Option<Ipv4Addr> {
        if !table.subnets().iter().any(|s| s.dynamic_dns) {
            return None;
        }
        self.load().dns_address(table, fqdn)
    }

    /// [`LeaseView::dns_name`] on the current view.
    pub fn dns_name(&self, table: &Table, ip: Ipv4Addr) -> Option<String> {
        self.load().dns_name(table, ip)
    }
}
