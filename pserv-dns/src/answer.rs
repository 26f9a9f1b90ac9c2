//! The pure answer logic: (table, zones, leases, name, type) -> what the response holds.
//!
//! No sockets, no EDNS, no opcodes: the server layers handle those. This is where the DNS rules
//! live: REFUSED outside our zones, NXDOMAIN versus NODATA, SOA in the authority section of
//! negative answers, minimal ANY (RFC 8482), and names that follow the table and live leases.
//!
//! [`resolve`] decides, over the query name's labels, without allocating; two encoders turn its
//! [`Resolution`] into a response: [`answer`] into hickory records (TCP and the long tail), and
//! the UDP fast path ([`crate::respond`]) straight into wire bytes.

use std::borrow::Cow;
use std::net::{Ipv4Addr, Ipv6Addr};

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::rdata::{A, AAAA, PTR};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use pserv_core::Table;
use pserv_core::lease::LeaseBoard;

use crate::zones::{Zone, ZoneKind, Zones, fqdn};

/// The most labels a name can have (255 octets on the wire).
pub const MAX_LABELS: usize = 127;

/// One answer record's data (the owner is always the query name).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Data<'t> {
    /// An A record.
    A(Ipv4Addr),
    /// An AAAA record.
    Aaaa(Ipv6Addr),
    /// A PTR record to this FQDN (lower case, no trailing dot).
    Ptr(Cow<'t, str>),
}

/// The decision for one question.
#[derive(Debug, Clone)]
pub enum Resolution<'t> {
    /// Not in any of our zones.
    Refused,
    /// The zone apex itself (SOA, NS, ANY and NODATA are answered from the zone).
    Apex(&'t Zone),
    /// The name exists and has these records of the asked type (one or two).
    Records(&'t Zone, Data<'t>, Option<Data<'t>>),
    /// The name exists, without records of the asked type.
    NoData(&'t Zone),
    /// The name does not exist in the zone.
    NxDomain(&'t Zone),
}

/// Decides the answer for a name given as its labels (no root label), in the case asked.
/// Dynamic leases are looked at only where the table has no answer, through at most one load
/// of the published lease view; the naming rule is the lease view's
/// ([`pserv_core::lease::LeaseView::dns_address`]).
pub fn resolve<'t>(
    table: &'t Table,
    zones: &'t Zones,
    leases: &LeaseBoard,
    labels: &[&[u8]],
    qtype: RecordType,
) -> Resolution<'t> {
    let Some(zone) = zones.find_labels(labels) else {
        return Resolution::Refused;
    };
    if labels.len() == zone.apex_labels() {
        return Resolution::Apex(zone);
    }
    let exists = |records: Option<(Data<'t>, Option<Data<'t>>)>| match records {
        Some((first, second)) => Resolution::Records(zone, first, second),
        None => Resolution::NoData(zone),
    };
    match zone.kind {
        ZoneKind::Forward => {
            let mut buf = [0u8; 256];
            let Some(text) = text_form(labels, &mut buf) else {
                return Resolution::NxDomain(zone);
            };
            if let Some(node) = table.by_name_bytes(text) {
                let v4 = node.ipv4().or_else(|| {
                    // A known node without a reservation resolves to its live lease.
                    node.primary()
                        .filter(|p| p.ipv4().is_none())
                        .and_then(|p| leases.address_of(p.mac()))
                });
                let a = v4.map(Data::A);
                let aaaa = node
                    .ipv6()
                    .or_else(|| {
                        // Likewise its live DHCPv6 lease.
                        node.primary()
                            .filter(|p| p.ipv6().is_none())
                            .and_then(|p| leases.address6_of(p.mac()))
                    })
                    .map(Data::Aaaa);
                return exists(addresses(qtype, a, aaaa));
            }
            // A dynamic client's own name, where its subnet publishes them; a node's name
            // always wins (checked above).
            let lower = String::from_utf8_lossy(text).to_ascii_lowercase();
            let a = leases.dns_address(table, &lower).map(Data::A);
            let aaaa = leases.dns_address6(table, &lower).map(Data::Aaaa);
            if a.is_none() && aaaa.is_none() {
                return Resolution::NxDomain(zone);
            }
            exists(addresses(qtype, a, aaaa))
        }
        ZoneKind::Reverse4 { .. } => match parse_v4(labels) {
            Reverse::Full(ip) => {
                let target = table
                    .by_ipv4(ip)
                    .map(|i| Cow::Borrowed(i.node().fqdn()))
                    .or_else(|| leases.dns_name(table, ip).map(Cow::Owned));
                ptr(zone, qtype, target)
            }
            Reverse::Partial => Resolution::NoData(zone),
            Reverse::Invalid => Resolution::NxDomain(zone),
        },
        ZoneKind::Reverse6 { .. } => match parse_v6(labels) {
            Reverse::Full(ip) => {
                let target = table
                    .by_ipv6(ip)
                    .map(|i| Cow::Borrowed(i.node().fqdn()))
                    .or_else(|| leases.dns_name6(table, ip).map(Cow::Owned));
                ptr(zone, qtype, target)
            }
            Reverse::Partial => Resolution::NoData(zone),
            Reverse::Invalid => Resolution::NxDomain(zone),
        },
    }
}

/// The records a name with these addresses answers `qtype` with.
fn addresses<'t>(
    qtype: RecordType,
    a: Option<Data<'t>>,
    aaaa: Option<Data<'t>>,
) -> Option<(Data<'t>, Option<Data<'t>>)> {
    match qtype {
        RecordType::A => a.map(|a| (a, None)),
        RecordType::AAAA => aaaa.map(|a| (a, None)),
        // RFC 8482 permits a subset; the addresses are what a client asking ANY wants.
        RecordType::ANY => match (a, aaaa) {
            (Some(a), aaaa) => Some((a, aaaa)),
            (None, aaaa) => aaaa.map(|a| (a, None)),
        },
        _ => None,
    }
}

fn ptr<'t>(zone: &'t Zone, qtype: RecordType, target: Option<Cow<'t, str>>) -> Resolution<'t> {
    match (target, qtype) {
        (Some(t), RecordType::PTR | RecordType::ANY) => {
            Resolution::Records(zone, Data::Ptr(t), None)
        }
        (Some(_), _) => Resolution::NoData(zone),
        (None, _) => Resolution::NxDomain(zone),
    }
}

/// The content of a response, as hickory records.
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
    fn new(rcode: ResponseCode, authoritative: bool) -> Self {
        Self {
            rcode,
            authoritative,
            answers: Vec::new(),
            authority: Vec::new(),
            additional: Vec::new(),
        }
    }
}

/// Answers one question as hickory records. `qname` keeps the case it was asked in; answers
/// carry it.
pub fn answer(
    table: &Table,
    zones: &Zones,
    leases: &LeaseBoard,
    qname: &Name,
    qtype: RecordType,
) -> Answer {
    let labels: Vec<&[u8]> = qname.iter().collect();
    let ttl = table.dns().ttl;
    let record = |d: Data<'_>| {
        let rdata = match d {
            Data::A(ip) => RData::A(A(ip)),
            Data::Aaaa(ip) => RData::AAAA(AAAA(ip)),
            Data::Ptr(t) => RData::PTR(PTR(fqdn(&t))),
        };
        Record::from_rdata(qname.clone(), ttl, rdata)
    };
    match resolve(table, zones, leases, &labels, qtype) {
        Resolution::Refused => Answer::new(ResponseCode::Refused, false),
        Resolution::Apex(zone) => apex(table, zone, qtype),
        Resolution::Records(_, first, second) => {
            let mut a = Answer::new(ResponseCode::NoError, true);
            a.answers.push(record(first));
            a.answers.extend(second.map(record));
            a
        }
        Resolution::NoData(zone) => {
            let mut a = Answer::new(ResponseCode::NoError, true);
            a.authority.push(zone.soa.clone());
            a
        }
        Resolution::NxDomain(zone) => {
            let mut a = Answer::new(ResponseCode::NXDomain, true);
            a.authority.push(zone.soa.clone());
            a
        }
    }
}

fn apex(table: &Table, zone: &Zone, qtype: RecordType) -> Answer {
    let mut a = Answer::new(ResponseCode::NoError, true);
    match qtype {
        // RFC 8482: answer ANY with one RRset rather than everything.
        RecordType::SOA | RecordType::ANY => a.answers.push(zone.soa.clone()),
        RecordType::NS => {
            a.answers.push(zone.ns.clone());
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
        }
        _ => a.authority.push(zone.soa.clone()),
    }
    a
}

/// Writes the labels' text form (no trailing dot) into `buf` without allocating. `None` if a
/// label holds a '.' (such a name can never be a node's, and joining would make it look like
/// one) or the name is too long.
fn text_form<'b>(labels: &[&[u8]], buf: &'b mut [u8; 256]) -> Option<&'b [u8]> {
    let mut len = 0;
    for label in labels {
        if label.contains(&b'.') {
            return None;
        }
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

enum Reverse<T> {
    Full(T),
    /// Fewer labels than an address: an empty non-terminal inside the zone.
    Partial,
    /// Not a reverse name that can exist.
    Invalid,
}

/// `d.c.b.a.in-addr.arpa` -> a.b.c.d.
fn parse_v4(labels: &[&[u8]]) -> Reverse<Ipv4Addr> {
    let n = labels.len().saturating_sub(2);
    if n > 4 {
        return Reverse::Invalid;
    }
    let mut o = [0u8; 4];
    for (i, l) in labels[..n].iter().rev().enumerate() {
        let canonical = !l.is_empty()
            && l.len() <= 3
            && l.iter().all(u8::is_ascii_digit)
            && (l.len() == 1 || l[0] != b'0');
        // Only a canonical label (1-3 digits) is evaluated, so this cannot overflow.
        let value = canonical
            .then(|| l.iter().fold(0u16, |acc, d| acc * 10 + u16::from(d - b'0')))
            .and_then(|v| u8::try_from(v).ok());
        match value {
            Some(v) => o[i] = v,
            None => return Reverse::Invalid,
        }
    }
    if n == 4 {
        Reverse::Full(Ipv4Addr::from(o))
    } else {
        Reverse::Partial
    }
}

/// 32 nibble labels + `ip6.arpa` -> the address.
fn parse_v6(labels: &[&[u8]]) -> Reverse<Ipv6Addr> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use pserv_core::snapshot::{EXAMPLE_JSON, Snapshot};

    fn setup() -> (Table, Zones) {
        let t =
            Table::compile(&Snapshot::from_json(EXAMPLE_JSON.as_bytes()).unwrap(), None).unwrap();
        let z = Zones::new(&t);
        (t, z)
    }

    fn ask(t: &Table, z: &Zones, name: &str, qtype: RecordType) -> Answer {
        answer(
            t,
            z,
            &LeaseBoard::new(),
            &Name::from_ascii(name).unwrap(),
            qtype,
        )
    }

    #[test]
    fn forward_positive_negative_and_refused() {
        let (t, z) = setup();
        let a = ask(&t, &z, "AAA.maas.", RecordType::A);
        assert_eq!(a.rcode, ResponseCode::NoError);
        assert!(a.authoritative);
        assert_eq!(a.answers.len(), 1);
        assert_eq!(a.answers[0].name.to_string(), "AAA.maas.", "case preserved");
        assert_eq!(a.answers[0].data, RData::A(A(Ipv4Addr::new(10, 20, 0, 10))));
        let nodata = ask(&t, &z, "bbb.maas.", RecordType::AAAA);
        assert_eq!(
            (nodata.rcode, nodata.answers.len(), nodata.authority.len()),
            (ResponseCode::NoError, 0, 1)
        );
        let nx = ask(&t, &z, "zzz.maas.", RecordType::A);
        assert_eq!((nx.rcode, nx.authority.len()), (ResponseCode::NXDomain, 1));
        let refused = ask(&t, &z, "example.com.", RecordType::A);
        assert_eq!(
            (refused.rcode, refused.authoritative),
            (ResponseCode::Refused, false)
        );
    }

    #[test]
    fn a_label_with_a_dot_is_not_a_node_name() {
        let (t, z) = setup();
        // One label "aaa.maas" under the zone: not the node aaa.maas.
        let name = Name::from_labels([&b"aaa.maas"[..], b"maas"]).unwrap();
        let a = answer(&t, &z, &LeaseBoard::new(), &name, RecordType::A);
        assert_eq!(a.rcode, ResponseCode::NXDomain);
    }

    #[test]
    fn reverse_names() {
        let (t, z) = setup();
        let p = ask(&t, &z, "10.0.20.10.in-addr.arpa.", RecordType::PTR);
        assert_eq!(
            p.answers[0].data,
            RData::PTR(PTR(Name::from_ascii("aaa.maas.").unwrap()))
        );
        // Non-canonical octets cannot exist; nor can labels that are not numbers (found by
        // fuzzing: the value of a non-digit label overflowed before it was rejected).
        let labels: [&[u8]; 6] = [b"1", b"0", &[0xdd; 6], b"10", b"in-addr", b"arpa"];
        assert!(matches!(parse_v4(&labels), Reverse::Invalid));
        // Non-canonical octets cannot exist.
        assert_eq!(
            ask(&t, &z, "010.0.20.10.in-addr.arpa.", RecordType::PTR).rcode,
            ResponseCode::NXDomain
        );
        assert_eq!(
            ask(&t, &z, "300.0.20.10.in-addr.arpa.", RecordType::PTR).rcode,
            ResponseCode::NXDomain
        );
        // An empty non-terminal exists.
        let ent = ask(&t, &z, "0.20.10.in-addr.arpa.", RecordType::PTR);
        assert_eq!((ent.rcode, ent.answers.len()), (ResponseCode::NoError, 0));
        // PTR name, other type: NODATA.
        let nodata = ask(&t, &z, "10.0.20.10.in-addr.arpa.", RecordType::A);
        assert_eq!(
            (nodata.rcode, nodata.answers.len()),
            (ResponseCode::NoError, 0)
        );
    }

    #[test]
    fn apex_records() {
        let (t, z) = setup();
        let soa = ask(&t, &z, "maas.", RecordType::SOA);
        assert_eq!(soa.answers.len(), 1);
        assert!(matches!(&soa.answers[0].data, RData::SOA(s) if s.serial == 1));
        let any = ask(&t, &z, "maas.", RecordType::ANY);
        assert_eq!(any.answers.len(), 1, "RFC 8482: one RRset");
        let mx = ask(&t, &z, "maas.", RecordType::MX);
        assert_eq!(
            (mx.rcode, mx.answers.len(), mx.authority.len()),
            (ResponseCode::NoError, 0, 1)
        );
    }

    /// ccc (a node without a reservation) holds 10.20.200.7; an unknown client "laptop"
    /// 10.20.200.8; an unknown client calling itself "aaa" (a node's name) 10.20.200.9.
    fn one_lease(t: &Table) -> LeaseBoard {
        use pserv_core::MacAddr;
        use pserv_core::lease::Leases;
        let s = &t.subnets()[0];
        let mut l = Leases::new();
        let mac = |m: &str| m.parse::<MacAddr>().unwrap();
        let ip = |d| Ipv4Addr::new(10, 20, 200, d);
        l.commit(t, s, mac("52:54:00:12:34:70"), ip(7), Some("ccc"), 1)
            .unwrap();
        l.commit(t, s, mac("02:00:00:00:00:08"), ip(8), Some("laptop"), 1)
            .unwrap();
        l.commit(t, s, mac("02:00:00:00:00:09"), ip(9), Some("aaa"), 1)
            .unwrap();
        let board = LeaseBoard::new();
        l.publish(&board);
        board
    }

    #[test]
    fn leases_fill_in_but_never_shadow_nodes() {
        let (t, z) = setup();
        let leases = one_lease(&t);
        let q = |n: &str, ty| answer(&t, &z, &leases, &Name::from_ascii(n).unwrap(), ty);
        // ccc is a node without a reservation: its lease address.
        assert_eq!(
            q("ccc.maas.", RecordType::A).answers[0].data,
            RData::A(A(Ipv4Addr::new(10, 20, 200, 7)))
        );
        // A dynamic client's name.
        assert_eq!(
            q("Laptop.maas.", RecordType::A).answers[0].data,
            RData::A(A(Ipv4Addr::new(10, 20, 200, 8)))
        );
        assert_eq!(
            q("8.200.20.10.in-addr.arpa.", RecordType::PTR)
                .answers
                .len(),
            1
        );
        // A dynamic client calling itself aaa does not shadow the node aaa.
        assert_eq!(
            q("aaa.maas.", RecordType::A).answers[0].data,
            RData::A(A(Ipv4Addr::new(10, 20, 0, 10)))
        );
    }

    #[test]
    fn dhcpv6_leases_answer_aaaa_and_ip6_ptr_by_the_same_rule() {
        use pserv_core::lease::{Duid, Key6, Leases};
        let json = br#"{"generation": 1, "subnets": [
            {"cidr": "fd00:6::/64", "domain": "lab", "dynamic_dns": true,
             "dynamic": [{"start": "fd00:6::100", "end": "fd00:6::1ff"}]}],
          "nodes": [{"id": "n", "hostname": "node", "domain": "lab",
             "interfaces": [{"mac": "02:00:00:00:00:01"}]}]}"#;
        let t = Table::compile(&Snapshot::from_json(json).unwrap(), None).unwrap();
        let z = Zones::new(&t);
        let s = &t.subnets6()[0];
        let mut l = Leases::new();
        let key = |n: u8| Key6 {
            duid: Duid::new(&[0, 3, 0, 1, 2, 0, 0, 0, 0, n]).unwrap(),
            iaid: 0,
        };
        let ip = |x: &str| x.parse::<std::net::Ipv6Addr>().unwrap();
        // The node (no reservation) and an unknown client calling itself "phone".
        l.v6_mut()
            .commit(
                &t,
                s,
                &key(1),
                key(1).duid.mac(),
                ip("fd00:6::101"),
                None,
                1,
            )
            .unwrap();
        l.v6_mut()
            .commit(
                &t,
                s,
                &key(2),
                key(2).duid.mac(),
                ip("fd00:6::102"),
                Some("phone"),
                1,
            )
            .unwrap();
        let board = LeaseBoard::new();
        l.publish(&board);
        let q = |n: &str, ty| answer(&t, &z, &board, &Name::from_ascii(n).unwrap(), ty);
        assert_eq!(
            q("node.lab.", RecordType::AAAA).answers[0].data,
            RData::AAAA(AAAA(ip("fd00:6::101")))
        );
        assert_eq!(
            q("phone.lab.", RecordType::AAAA).answers[0].data,
            RData::AAAA(AAAA(ip("fd00:6::102")))
        );
        let a = q("phone.lab.", RecordType::A);
        assert_eq!((a.rcode, a.answers.len()), (ResponseCode::NoError, 0));
        let rev = |x: &str| {
            let hex: String = ip(x).octets().iter().map(|b| format!("{b:02x}")).collect();
            let mut labels: Vec<String> = hex.chars().rev().map(String::from).collect();
            labels.push("ip6.arpa.".to_owned());
            labels.join(".")
        };
        for (addr, name) in [("fd00:6::101", "node.lab."), ("fd00:6::102", "phone.lab.")] {
            let p = q(&rev(addr), RecordType::PTR);
            assert_eq!(
                p.answers[0].data,
                RData::PTR(PTR(Name::from_ascii(name).unwrap())),
                "{addr}"
            );
        }
        assert_eq!(
            q("gone.lab.", RecordType::AAAA).rcode,
            ResponseCode::NXDomain
        );
    }
}
