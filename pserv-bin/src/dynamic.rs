//! DNS names from live leases: the glue between the DHCP leases and the DNS responder.

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;
use pserv_core::lease::LeaseState;
use pserv_core::{MacAddr, Store};
use pserv_dhcp::Server;
use pserv_dns::LeaseLookup;

/// Answers DNS's questions about dynamic leases.
pub(crate) struct LeaseNames {
    pub(crate) server: Arc<Mutex<Server>>,
    pub(crate) store: Arc<Store>,
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl LeaseLookup for LeaseNames {
    fn address_of(&self, mac: MacAddr) -> Option<Ipv4Addr> {
        self.server.lock().leases.bound(mac, now()).map(|l| l.ip)
    }

    fn by_hostname(&self, fqdn: &str) -> Option<Ipv4Addr> {
        let table = self.store.load();
        // Most snapshots publish no client names: answer without taking the lease lock.
        if !table.subnets().iter().any(|s| s.dynamic_dns) {
            return None;
        }
        let (host, domain) = fqdn.split_once('.')?;
        let server = self.server.lock();
        let lease = server.leases.by_hostname(host, now())?;
        let subnet = table.subnet_for(lease.ip)?;
        // Known nodes are named by the table, never by what their client claims.
        let unknown = table.by_mac(lease.mac).is_none();
        (unknown && subnet.dynamic_dns && subnet.domain.as_deref() == Some(domain))
            .then_some(lease.ip)
    }

    fn by_address(&self, ip: Ipv4Addr) -> Option<String> {
        let table = self.store.load();
        let server = self.server.lock();
        let lease = server
            .leases
            .holder(ip, now())
            .filter(|l| l.state == LeaseState::Bound)?;
        // A known node's lease points back at the node's own name.
        if let Some(iface) = table.by_mac(lease.mac) {
            return Some(iface.node().fqdn().to_owned());
        }
        let subnet = table.subnet_for(ip).filter(|s| s.dynamic_dns)?;
        let fqdn = format!(
            "{}.{}",
            lease.hostname.as_deref()?,
            subnet.domain.as_deref()?
        );
        // Never a name a node owns.
        table.by_name(&fqdn).is_none().then_some(fqdn)
    }
}
