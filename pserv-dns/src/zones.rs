//! The zones a table makes pserv authoritative for, compiled once per table.

use std::net::{Ipv4Addr, Ipv6Addr};

use hickory_proto::rr::rdata::{NS, SOA};
use hickory_proto::rr::{Name, RData, Record};
use pserv_core::Table;

/// SOA timers: refresh, retry, expire (seconds). pserv has no secondaries; these are the
/// customary values so tools that check them are content.
const REFRESH: i32 = 3600;
const RETRY: i32 = 600;
const EXPIRE: i32 = 86400;

/// What a zone holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ZoneKind {
    /// Node names (`hostname.domain`).
    Forward,
    /// `in-addr.arpa` names for addresses within `network/prefix_len` (the zone's own span).
    Reverse4 {
        /// The zone's network.
        network: Ipv4Addr,
        /// Its prefix length (a multiple of 8).
        prefix_len: u8,
    },
    /// `ip6.arpa` names within `network/prefix_len`.
    Reverse6 {
        /// The zone's network.
        network: Ipv6Addr,
        /// Its prefix length (a multiple of 4).
        prefix_len: u8,
    },
}

/// One zone with its precompiled apex records.
#[derive(Debug, Clone)]
pub struct Zone {
    /// The apex, lower case, fully qualified.
    pub apex: Name,
    /// Forward or reverse.
    pub kind: ZoneKind,
    /// The SOA record (serial = table generation).
    pub soa: Record,
    /// The NS record at the apex.
    pub ns: Record,
    /// The apex's labels, lower case (no root label).
    labels: Vec<Box<[u8]>>,
    /// The SOA's RDATA in wire form (names uncompressed), for the UDP fast path.
    pub soa_rdata: Box<[u8]>,
}

impl Zone {
    /// How many labels the apex has.
    pub fn apex_labels(&self) -> usize {
        self.labels.len()
    }

    /// Whether a name given as labels is at or below this apex (ASCII case-insensitive).
    fn contains(&self, name: &[&[u8]]) -> bool {
        name.len() >= self.labels.len()
            && name[name.len() - self.labels.len()..]
                .iter()
                .zip(&self.labels)
                .all(|(a, b)| a.eq_ignore_ascii_case(b))
    }
}

/// Appends a name in uncompressed wire form.
pub(crate) fn push_wire_name(name: &Name, out: &mut Vec<u8>) {
    for label in name.iter() {
        out.push(label.len() as u8);
        out.extend_from_slice(label);
    }
    out.push(0);
}

/// Every zone of one table.
#[derive(Debug, Clone)]
pub struct Zones {
    table_id: u64,
    zones: Vec<Zone>,
}

/// The reverse zone apex covering `network/prefix_len`, widened to an octet boundary (RFC 2317
/// delegation is not needed: pserv is authoritative for the whole enclosing zone).
pub fn reverse4_apex(network: Ipv4Addr, prefix_len: u8) -> (Name, Ipv4Addr, u8) {
    let octets = usize::from(prefix_len / 8);
    let o = network.octets();
    let mut labels: Vec<String> = o[..octets].iter().rev().map(u8::to_string).collect();
    labels.push("in-addr".into());
    labels.push("arpa".into());
    let mut net = [0u8; 4];
    net[..octets].copy_from_slice(&o[..octets]);
    let name =
        Name::from_labels(labels.iter().map(String::as_bytes)).unwrap_or_else(|_| Name::root());
    (name, Ipv4Addr::from(net), (octets * 8) as u8)
}

/// The `ip6.arpa` zone apex covering `network/prefix_len`, widened to a nibble boundary.
pub fn reverse6_apex(network: Ipv6Addr, prefix_len: u8) -> (Name, Ipv6Addr, u8) {
    let nibbles = usize::from(prefix_len / 4);
    let bits = u128::from(network);
    let mut labels: Vec<String> = (0..nibbles)
        .rev()
        .map(|i| format!("{:x}", (bits >> (124 - 4 * i)) & 0xf))
        .collect();
    labels.push("ip6".into());
    labels.push("arpa".into());
    let kept = if nibbles == 0 {
        0
    } else {
        bits & (u128::MAX << (128 - 4 * nibbles))
    };
    let name =
        Name::from_labels(labels.iter().map(String::as_bytes)).unwrap_or_else(|_| Name::root());
    (name, Ipv6Addr::from(kept), (nibbles * 4) as u8)
}

impl Zones {
    /// Compiles the zones of a table.
    pub fn new(table: &Table) -> Self {
        let dns = table.dns();
        let mname = fqdn(&dns.soa_mname);
        let rname = fqdn(&dns.soa_rname);
        let ttl = dns.ttl;
        let mut zones: Vec<Zone> = Vec::new();
        let mut add = |apex: Name, kind: ZoneKind| {
            if zones.iter().any(|z| z.apex == apex) {
                return;
            }
            let serial = table.generation() as u32;
            let soa = SOA::new(
                mname.clone(),
                rname.clone(),
                serial,
                REFRESH,
                RETRY,
                EXPIRE,
                ttl,
            );
            let mut soa_rdata = Vec::new();
            push_wire_name(&mname, &mut soa_rdata);
            push_wire_name(&rname, &mut soa_rdata);
            for v in [serial, REFRESH as u32, RETRY as u32, EXPIRE as u32, ttl] {
                soa_rdata.extend_from_slice(&v.to_be_bytes());
            }
            zones.push(Zone {
                soa: Record::from_rdata(apex.clone(), ttl, RData::SOA(soa)),
                ns: Record::from_rdata(apex.clone(), ttl, RData::NS(NS(mname.clone()))),
                labels: apex
                    .iter()
                    .map(|l| l.to_ascii_lowercase().into_boxed_slice())
                    .collect(),
                soa_rdata: soa_rdata.into_boxed_slice(),
                apex,
                kind,
            });
        };
        for d in table.domains() {
            add(fqdn(d), ZoneKind::Forward);
        }
        for s in table.subnets() {
            let (apex, network, prefix_len) = reverse4_apex(s.network, s.prefix_len);
            add(
                apex,
                ZoneKind::Reverse4 {
                    network,
                    prefix_len,
                },
            );
        }
        for (n, len) in table.subnets_v6() {
            let (apex, network, prefix_len) = reverse6_apex(*n, *len);
            add(
                apex,
                ZoneKind::Reverse6 {
                    network,
                    prefix_len,
                },
            );
        }
        // Most specific first, so the first match is the longest.
        zones.sort_by_key(|z| std::cmp::Reverse(z.apex.num_labels()));
        Self {
            table_id: table.id(),
            zones,
        }
    }

    /// The identity ([`Table::id`]) of the table these zones were compiled from.
    pub fn compiled_from(&self) -> u64 {
        self.table_id
    }

    /// Every zone, most specific first.
    pub fn iter(&self) -> impl Iterator<Item = &Zone> {
        self.zones.iter()
    }

    /// The most specific zone containing `name`, if pserv is authoritative for it.
    pub fn find(&self, name: &Name) -> Option<&Zone> {
        self.zones.iter().find(|z| z.apex.zone_of(name))
    }

    /// [`Zones::find`] for a name given as its labels (no root label), without allocating.
    pub fn find_labels(&self, labels: &[&[u8]]) -> Option<&Zone> {
        self.zones.iter().find(|z| z.contains(labels))
    }
}

/// A normalized domain as a fully qualified [`Name`] (the root if it cannot be one: the table
/// validated it already).
pub(crate) fn fqdn(s: &str) -> Name {
    let mut n = Name::from_ascii(s).unwrap_or_else(|_| Name::root());
    n.set_fqdn(true);
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reverse_apexes() {
        let (n, net, len) = reverse4_apex(Ipv4Addr::new(10, 20, 0, 0), 16);
        assert_eq!(n.to_string(), "20.10.in-addr.arpa.");
        assert_eq!((net, len), (Ipv4Addr::new(10, 20, 0, 0), 16));
        let (n, net, len) = reverse4_apex(Ipv4Addr::new(10, 20, 4, 0), 22);
        assert_eq!(n.to_string(), "20.10.in-addr.arpa.");
        assert_eq!((net, len), (Ipv4Addr::new(10, 20, 0, 0), 16));
        let (n, _, len) = reverse6_apex("fd00:20::".parse().unwrap(), 64);
        assert_eq!(n.to_string(), "0.0.0.0.0.0.0.0.0.2.0.0.0.0.d.f.ip6.arpa.");
        assert_eq!(len, 64);
        let (n, _, len) = reverse6_apex("fd00:20::".parse().unwrap(), 62);
        assert_eq!(len, 60);
        assert_eq!(n.num_labels(), 15 + 2);
    }
}
