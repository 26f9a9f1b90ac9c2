//! The pure answer function: (table, zones, leases, name, type) -> what the response holds.
//!
//! No sockets, no EDNS, no opcodes: the server layer handles those. This is where the DNS rules
//! live: REFUSED outside our zones, NXDOMAIN versus NODATA, SOA in the authority section of
//! negative answers, minimal ANY (RFC 8482), and names that follow the table and live leases.

use std::net::{Ipv4Addr, Ipv6Addr};

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::rdata::{A, AAAA, PTR};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use pserv_core::{MacAddr, Table};

use crate::zones::{Zone, ZoneKind, Zones, fqdn};

/// What pserv knows of dynamic leases, for DNS. The DHCP side implements it; its policy (which
/// subnets publish client hostnames) is its own.
pub trait LeaseLookup: Send + Sync {
    /// The live lease address of a MAC (a known node without a reservation).
    fn address_of(&self, mac: MacAddr) -> Option<Ipv4Addr>;
    /// The address of a live dynamic lease whose client hostname, in its subnet's domain, is
    /// `fqdn` (lower case, no trailing dot), where that subnet publishes client names.
    fn by_hostname(&self, fqdn: &str) -> Option<Ipv4Addr>;
    /// The published FQDN of the live dynamic lease on `ip`.
    fn by_address(&self, ip: Ipv4Addr) -> Option<String>;
}

/// No dynamic leases (DNS without DHCP).
#[derive(Debug, Clone, Copy, Default)]
pub struct NoLeases;

impl LeaseLookup for NoLeases {
    fn address_of(&self, _: MacAddr) -> Option<Ipv4Addr> {
        None
    }
    fn by_hostname(&self, _: &str) -> Option<Ipv4Addr> {
        None
    }
    fn by_address(&self, _: Ipv4Addr) -> Option<String> {
        None
    }
}

/// The content of a response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// NOERROR, NXDOMAIN or REFUSED.
    pub rcode: ResponseCode,
    /// Whether pserv is authoritative for the name (the AA bit).
    pub authoritative: bool,
    /// Answer section.
    pub answers: Vec<Record>,
    /// Authority section (the zone's SOA in negative answers).
    pub authority: Vec<Record>,
    /// Additional section (glue).
    pub additional: Vec<Record>,
}

impl Answer {
    fn refused() -> Self {
        Self {
            rcode: ResponseCode::Refused,
            authoritative: false,
            answers: Vec::new(),
            authority: Vec::new(),
            additional: Vec::new(),
        }
    }

    fn records(answers: Vec<Record>) -> Self {
        Self {
            rcode: ResponseCode::NoError,
            authoritative: true,
            answers,
            authority: Vec::new(),
            additional: Vec::new(),
        }
    }

    /// The name exists but has no record of the type: empty answer, SOA for negative caching.
    fn nodata(zone: &Zone) -> Self {
        Self {
            rcode: ResponseCode::NoError,
            authoritative: true,
            answers: Vec::new(),
            authority: vec![zone.soa.clone()],
            additional: Vec::new(),
        }
    }

    fn nxdomain(zone: &Zone) -> Self {
        Self {
            rcode: ResponseCode::NXDomain,
            ..Self::nodata(zone)
        }
    }
}

/// Answers one question. `qname` keeps the case it was asked in; answers carry it.
pub fn answer(
    table: &Table,
    zones: &Zones,
    leases: &dyn LeaseLookup,
    qname: &Name,
    qtype: RecordType,
) -> Answer {
    let Some(zone) = zones.find(qname) else {
        return Answer::refused();
    };
    let ttl = table.dns().ttl;
    if qname.num_labels() == zone.apex.num_labels() {
        return apex(table, zone, qtype);
    }
    match zone.kind {
        ZoneKind::Forward => forward(table, zone, leases, qname, qtype, ttl),
        ZoneKind::Reverse4 { .. } => match parse_v4(qname) {
            Reverse::Full(ip) => {
                let target = table
                    .by_ipv4(ip)
                    .map(|i| fqdn(i.node().fqdn()))
                    .or_else(|| leases.by_address(ip).map(|n| fqdn(&n)));
                ptr(zone, qname, qtype, ttl, target)
            }
            Reverse::Partial => Answer::nodata(zone),
            Reverse::Invalid => Answer::nxdomain(zone),
        },
        ZoneKind::Reverse6 { .. } => match parse_v6(qname) {
            Reverse::Full(ip) => {
                let target = table.by_ipv6(ip).map(|i| fqdn(i.node().fqdn()));
                ptr(zone, qname, qtype, ttl, target)
            }
            Reverse::Partial => Answer::nodata(zone),
            Reverse::Invalid => Answer::nxdomain(zone),
        },
    }
}

fn apex(table: &Table, zone: &Zone, qtype: RecordType) -> Answer {
    match qtype {
        // RFC 8482: answer ANY with one RRset rather than everything.
        RecordType::SOA | RecordType::ANY => Answer::records(vec![zone.soa.clone()]),
        RecordType::NS => {
            let mut a = Answer::records(vec![zone.ns.clone()]);
            // In-zone glue: the name server's address when the table knows it.
            if let RData::NS(ns) = &zone.ns.data
                && zone.apex.zone_of(&ns.0)
                && let Some(ip) = table.by_name(&ns.0.to_ascii()).and_then(|n| n.ipv4())
            {
                a.additional.push(Record::from_rdata(
                    ns.0.clone(),
                    zone.soa.ttl,
                    RData::A(A(ip)),
                ));
            }
            a
        }
        _ => Answer::nodata(zone),
    }
}

/// Writes the name's text form (no trailing dot) into `buf` without allocating.
fn text_form<'b>(name: &Name, buf: &'b mut [u8; 256]) -> Option<&'b [u8]> {
    let mut len = 0;
    for label in name.iter() {
        let need = label.len() + usize::from(len > 0);
        if len + need > buf.len() {
            return None;
        }
        if len > 0 {
            buf[len] = b'.';
            len += 1;
        }
        buf[len..len + label.len()].copy_from_slice(label);
        len += label.len();
    }
    Some(&buf[..len])
}

fn forward(
    table: &Table,
    zone: &Zone,
    leases: &dyn LeaseLookup,
    qname: &Name,
    qtype: RecordType,
    ttl: u32,
) -> Answer {
    let mut buf = [0u8; 256];
    let Some(text) = text_form(qname, &mut buf) else {
        return Answer::nxdomain(zone);
    };
    let owner = || qname.clone();
    if let Some(node) = table.by_name_bytes(text) {
        let v4 = node.ipv4().or_else(|| {
            // A known node without a reservation resolves to its live lease.
            node.primary()
                .filter(|p| p.ipv4().is_none())
                .and_then(|p| leases.address_of(p.mac()))
        });
        let a = v4.map(|ip| Record::from_rdata(owner(), ttl, RData::A(A(ip))));
        let aaaa = node
            .ipv6()
            .map(|ip| Record::from_rdata(owner(), ttl, RData::AAAA(AAAA(ip))));
        let records: Vec<Record> = match qtype {
            RecordType::A => a.into_iter().collect(),
            RecordType::AAAA => aaaa.into_iter().collect(),
            // RFC 8482 permits a subset; the addresses are what a client asking ANY wants.
            RecordType::ANY => a.into_iter().chain(aaaa).collect(),
            _ => Vec::new(),
        };
        return if records.is_empty() {
            Answer::nodata(zone)
        } else {
            Answer::records(records)
        };
    }
    // A dynamic client's own name, where its subnet publishes them; a node's name always wins
    // (checked above).
    let lower = String::from_utf8_lossy(text).to_ascii_lowercase();
    if let Some(ip) = leases.by_hostname(&lower) {
        return match qtype {
            RecordType::A | RecordType::ANY => {
                Answer::records(vec![Record::from_rdata(owner(), ttl, RData::A(A(ip)))])
            }
            _ => Answer::nodata(zone),
        };
    }
    Answer::nxdomain(zone)
}

fn ptr(zone: &Zone, qname: &Name, qtype: RecordType, ttl: u32, target: Option<Name>) -> Answer {
    match (target, qtype) {
        (Some(t), RecordType::PTR | RecordType::ANY) => Answer::records(vec![Record::from_rdata(
            qname.clone(),
            ttl,
            RData::PTR(PTR(t)),
        )]),
        (Some(_), _) => Answer::nodata(zone),
        (None, _) => Answer::nxdomain(zone),
    }
}

enum Reverse<T> {
    Full(T),
    /// Fewer labels than an address: an empty non-terminal inside the zone.
    Partial,
    /// Not a reverse name that can exist.
    Invalid,
}

/// `d.c.b.a.in-addr.arpa.` -> a.b.c.d.
fn parse_v4(name: &Name) -> Reverse<Ipv4Addr> {
    let labels: Vec<&[u8]> = name.iter().collect();
    let n = labels.len().saturating_sub(2);
    if n > 4 {
        return Reverse::Invalid;
    }
    let mut o = [0u8; 4];
    for (i, l) in labels[..n].iter().rev().enumerate() {
        let ok = !l.is_empty()
            && l.len() <= 3
            && l.iter().all(u8::is_ascii_digit)
            && (l.len() == 1 || l[0] != b'0');
        let v = std::str::from_utf8(l)
            .ok()
            .and_then(|s| s.parse::<u8>().ok());
        match (ok, v) {
            (true, Some(v)) => o[i] = v,
            _ => return Reverse::Invalid,
        }
    }
    if n == 4 {
        Reverse::Full(Ipv4Addr::from(o))
    } else {
        Reverse::Partial
    }
}

/// 32 nibble labels + `ip6.arpa.` -> the address.
fn parse_v6(name: &Name) -> Reverse<Ipv6Addr> {
    let labels: Vec<&[u8]> = name.iter().collect();
    let n = labels.len().saturating_sub(2);
    if n > 32 {
        return Reverse::Invalid;
    }
    let mut bits: u128 = 0;
    for (i, l) in labels[..n].iter().rev().enumerate() {
        let [c] = l else { return Reverse::Invalid };
        let Some(v) = (*c as char).to_digit(16) else {
            return Reverse::Invalid;
        };
        bits |= u128::from(v) << (124 - 4 * i);
    }
    if n == 32 {
        Reverse::Full(Ipv6Addr::from(bits))
    } else {
        Reverse::Partial
    }
}
