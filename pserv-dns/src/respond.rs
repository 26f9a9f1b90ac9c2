//! Datagram in, datagram out: the synchronous responder behind the UDP loop.
//!
//! The fast path parses the common query shape in place (one question, class IN, A/AAAA/PTR,
//! optional EDNS version 0), decides with [`crate::answer::resolve`] and writes the response
//! wire bytes directly: the question is copied from the query (so its case is preserved) and
//! every answer's owner is a compression pointer to it. No allocation, no task, no decoder.
//! Anything else (other types, the apex, ANY, other opcodes, malformed input, an answer that
//! would not fit) goes to the slow path, which decodes with hickory-proto, answers with
//! [`crate::answer::answer`] and encodes with hickory, truncating (TC) when the answer exceeds
//! the client's UDP size.
//!
//! No I/O: this module imports no socket loop. The loops ([`crate::udp`], [`crate::tcp`]) call
//! it and act on the [`Action`] it returns (send, drop, or forward upstream); it reports
//! outcomes to [`Counters`] only.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use arc_swap::ArcSwap;
use hickory_proto::op::{Edns, Message, MessageType, Metadata, OpCode, ResponseCode};
use hickory_proto::rr::{DNSClass, RecordType};
use pserv_core::lease::LeaseBoard;
use pserv_core::{Store, Table};

use crate::answer::{Data, MAX_LABELS, Resolution, answer, resolve};
pub use crate::counters::Counters;
use crate::zones::Zones;

/// The checks every query passes before any lookup; `Err` is the response code to send.
pub fn check_query(
    op_code: OpCode,
    edns_version: Option<u8>,
    questions: usize,
    class: DNSClass,
    qtype: RecordType,
) -> Result<(), ResponseCode> {
    if op_code != OpCode::Query {
        return Err(ResponseCode::NotImp);
    }
    if edns_version.is_some_and(|v| v > 0) {
        return Err(ResponseCode::BADVERS);
    }
    if questions != 1 {
        return Err(ResponseCode::FormErr);
    }
    if class != DNSClass::IN || matches!(qtype, RecordType::AXFR | RecordType::IXFR) {
        return Err(ResponseCode::Refused);
    }
    Ok(())
}

/// Everything a responder needs, shared by the UDP threads and the TCP handler.
pub struct Responder {
    store: Arc<Store>,
    leases: Arc<LeaseBoard>,
    zones: ArcSwap<Zones>,
    counters: Arc<Counters>,
}

impl Responder {
    /// A responder over `store`, with `leases` for dynamic names.
    pub fn new(store: Arc<Store>, leases: Arc<LeaseBoard>) -> Self {
        let zones = Zones::new(&store.load());
        Self {
            store,
            leases,
            zones: ArcSwap::from_pointee(zones),
            counters: Arc::default(),
        }
    }

    /// The store answers come from.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Dynamic lease names.
    pub fn leases(&self) -> &LeaseBoard {
        &self.leases
    }

    /// The counters.
    pub fn counters(&self) -> &Arc<Counters> {
        &self.counters
    }

    /// The zones for `table`, compiled once per generation (a swap is seen by the next query).
    pub fn zones_for(&self, table: &Table) -> Arc<Zones> {
        let z = self.zones.load_full();
        if z.compiled_from() == table.id() {
            return z;
        }
        let fresh = Arc::new(Zones::new(table));
        self.zones.store(fresh.clone());
        fresh
    }

    /// Answers one UDP datagram into `out` (truncated to the client's UDP size, with TC).
    pub fn respond_udp(
        &self,
        table: &Table,
        zones: &Zones,
        query: &[u8],
        out: &mut Vec<u8>,
    ) -> Action {
        self.respond(table, zones, query, out, false)
    }

    /// Answers one query that came over TCP into `out` (unframed; up to 65,535 bytes, never
    /// truncated). The same decisions as [`Responder::respond_udp`].
    pub fn respond_tcp(
        &self,
        table: &Table,
        zones: &Zones,
        query: &[u8],
        out: &mut Vec<u8>,
    ) -> Action {
        self.respond(table, zones, query, out, true)
    }

    fn respond(
        &self,
        table: &Table,
        zones: &Zones,
        query: &[u8],
        out: &mut Vec<u8>,
        tcp: bool,
    ) -> Action {
        match self.fast(table, zones, query, out, tcp) {
            Fast::Sent(rcode) => {
                self.counters.fast.fetch_add(1, Ordering::Relaxed);
                self.counters.count(rcode);
                Action::Send
            }
            Fast::Drop => {
                self.counters.dropped.fetch_add(1, Ordering::Relaxed);
                Action::Drop
            }
            Fast::Forward => Action::Forward,
            Fast::Slow => self.slow(table, zones, query, out, tcp),
        }
    }

    fn fast(&self, table: &Table, zones: &Zones, q: &[u8], out: &mut Vec<u8>, tcp: bool) -> Fast {
        let Some(p) = parse(q) else {
            if q.len() < 12 || q[2] & 0x80 != 0 {
                return Fast::Drop;
            }
            return Fast::Slow;
        };
        let labels = &p.labels[..p.n_labels];
        let qtype = RecordType::from(p.qtype);
        if !matches!(qtype, RecordType::A | RecordType::AAAA | RecordType::PTR) {
            return Fast::Slow;
        }
        let max = answer_limit(tcp, p.edns);
        let ttl = table.dns().ttl;
        let res = resolve(table, zones, &self.leases, labels, qtype);
        let (rcode, aa) = match &res {
            Resolution::Refused if !table.dns().upstreams.is_empty() => return Fast::Forward,
            Resolution::Refused => (ResponseCode::Refused, false),
            Resolution::Apex(_) => return Fast::Slow,
            Resolution::Records(..) | Resolution::NoData(_) => (ResponseCode::NoError, true),
            Resolution::NxDomain(_) => (ResponseCode::NXDomain, true),
        };
        out.clear();
        let flags: u16 = 0x8000
            | if aa { 0x0400 } else { 0 }
            | (u16::from(q[2] & 0x01) << 8) // RD
            | u16::from(q[3] & 0x10) // CD
            | u16::from(rcode.low());
        let (an, ns): (u16, u16) = match &res {
            Resolution::Records(_, _, second) => (1 + u16::from(second.is_some()), 0),
            Resolution::NoData(_) | Resolution::NxDomain(_) => (0, 1),
            _ => (0, 0),
        };
        out.extend_from_slice(&q[..2]);
        out.extend_from_slice(&flags.to_be_bytes());
        for c in [1, an, ns, u16::from(p.edns.is_some())] {
            out.extend_from_slice(&c.to_be_bytes());
        }
        out.extend_from_slice(&q[12..p.question_end]);
        match res {
            Resolution::Records(_, first, second) => {
                for d in std::iter::once(first).chain(second) {
                    // Owner: a pointer to the question's name at offset 12.
                    out.extend_from_slice(&[0xC0, 0x0C]);
                    let rtype: u16 = match d {
                        Data::A(_) => 1,
                        Data::Aaaa(_) => 28,
                        Data::Ptr(_) => 12,
                    };
                    out.extend_from_slice(&rtype.to_be_bytes());
                    out.extend_from_slice(&1u16.to_be_bytes());
                    out.extend_from_slice(&ttl.to_be_bytes());
                    match d {
                        Data::A(ip) => {
                            out.extend_from_slice(&4u16.to_be_bytes());
                            out.extend_from_slice(&ip.octets());
                        }
                        Data::Aaaa(ip) => {
                            out.extend_from_slice(&16u16.to_be_bytes());
                            out.extend_from_slice(&ip.octets());
                        }
                        Data::Ptr(target) => {
                            let len_at = out.len();
                            out.extend_from_slice(&[0, 0]);
                            for label in target.split('.') {
                                out.push(label.len() as u8);
                                out.extend_from_slice(label.as_bytes());
                            }
                            out.push(0);
                            let rdlen = (out.len() - len_at - 2) as u16;
                            out[len_at..len_at + 2].copy_from_slice(&rdlen.to_be_bytes());
                        }
                    }
                }
            }
            Resolution::NoData(zone) | Resolution::NxDomain(zone) => {
                // The SOA's owner is the zone apex: a pointer into the question's own name.
                let apex_at = p.label_at[p.n_labels - zone.apex_labels()];
                out.extend_from_slice(&(0xC000 | apex_at).to_be_bytes());
                out.extend_from_slice(&6u16.to_be_bytes());
                out.extend_from_slice(&1u16.to_be_bytes());
                out.extend_from_slice(&ttl.to_be_bytes());
                out.extend_from_slice(&(zone.soa_rdata.len() as u16).to_be_bytes());
                out.extend_from_slice(&zone.soa_rdata);
            }
            _ => {}
        }
        if let Some(size) = p.edns {
            // OPT: root owner, type 41, our payload size, extended rcode 0, version 0, no flags.
            out.extend_from_slice(&[0, 0, 41]);
            out.extend_from_slice(&size.max(512).to_be_bytes());
            out.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
        }
        if out.len() > max {
            // Too big for the client: the slow path sends it truncated.
            return Fast::Slow;
        }
        Fast::Sent(rcode)
    }

    /// Decodes with hickory, answers, encodes; truncates over UDP when the answer is too big.
    fn slow(&self, table: &Table, zones: &Zones, q: &[u8], out: &mut Vec<u8>, tcp: bool) -> Action {
        let Ok(msg) = Message::from_vec(q) else {
            // A header we can read but a body we cannot: FORMERR with the query's id.
            out.clear();
            out.extend_from_slice(&q[..2]);
            let opcode = q[2] & 0x78;
            out.extend_from_slice(&[0x80 | opcode, ResponseCode::FormErr.low()]);
            out.extend_from_slice(&[0; 8]);
            self.counters.count(ResponseCode::FormErr);
            return Action::Send;
        };
        if msg.metadata.message_type == MessageType::Response {
            self.counters.dropped.fetch_add(1, Ordering::Relaxed);
            return Action::Drop;
        }
        let mut resp = Message::new(msg.metadata.id, MessageType::Response, msg.metadata.op_code);
        resp.metadata = Metadata::response_from_request(&msg.metadata);
        resp.queries = msg.queries.clone();
        let max = answer_limit(tcp, msg.edns.as_ref().map(Edns::max_payload));
        if let Some(e) = &msg.edns {
            let mut r = Edns::new();
            r.set_max_payload(e.max_payload().max(512));
            resp.edns = Some(r);
        }
        let first = msg.queries.first();
        let verdict = check_query(
            msg.metadata.op_code,
            msg.edns.as_ref().map(Edns::version),
            msg.queries.len(),
            first.map_or(DNSClass::IN, |q| q.query_class()),
            first.map_or(RecordType::A, |q| q.query_type()),
        );
        match (verdict, first) {
            (Ok(()), Some(query)) => {
                let a = answer(table, zones, &self.leases, query.name(), query.query_type());
                if a.rcode == ResponseCode::Refused && !table.dns().upstreams.is_empty() {
                    // Outside our zones, any type: the upstreams answer it.
                    return Action::Forward;
                }
                resp.metadata.response_code = a.rcode;
                resp.metadata.authoritative = a.authoritative;
                resp.answers = a.answers;
                resp.authorities = a.authority;
                resp.additionals = a.additional;
            }
            (Err(code), _) => resp.metadata.response_code = code,
            // No question at all: check_query already said FORMERR for a count of 0.
            (Ok(()), None) => resp.metadata.response_code = ResponseCode::FormErr,
        }
        self.counters.count(resp.metadata.response_code);
        let Ok(mut bytes) = resp.to_vec() else {
            return Action::Drop;
        };
        if bytes.len() > max {
            // RFC 2181 §9: set TC and send what is left; the client retries over TCP.
            resp.metadata.truncation = true;
            resp.answers.clear();
            resp.authorities.clear();
            resp.additionals.clear();
            self.counters.truncated.fetch_add(1, Ordering::Relaxed);
            let Ok(b) = resp.to_vec() else {
                return Action::Drop;
            };
            bytes = b;
        }
        out.clear();
        out.extend_from_slice(&bytes);
        Action::Send
    }
}

/// The largest answer a client takes: a DNS message over TCP; over UDP its EDNS payload size,
/// or 512 without EDNS (and never less than 512).
fn answer_limit(tcp: bool, edns_payload: Option<u16>) -> usize {
    if tcp {
        usize::from(u16::MAX)
    } else {
        edns_payload.map_or(512, |size| usize::from(size.max(512)))
    }
}

/// What to do with a query (over UDP or TCP).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Send `out` back.
    Send,
    /// Send nothing (counted).
    Drop,
    /// Outside our zones, and the snapshot lists upstreams: forward it.
    Forward,
}

enum Fast {
    Sent(ResponseCode),
    Drop,
    Forward,
    Slow,
}

/// A query in the common shape, parsed in place.
struct Parsed<'q> {
    labels: [&'q [u8]; MAX_LABELS],
    /// Offset of each label's length byte in the packet (for compression pointers).
    label_at: [u16; MAX_LABELS],
    n_labels: usize,
    qtype: u16,
    question_end: usize,
    /// The client's EDNS UDP payload size, if it sent OPT (version 0).
    edns: Option<u16>,
}

fn be16(q: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*q.get(at)?, *q.get(at + 1)?]))
}

/// Parses a query of the common shape; `None` for anything else (the slow path decides).
fn parse(q: &[u8]) -> Option<Parsed<'_>> {
    if q.len() < 17 {
        return None;
    }
    // QR, opcode, TC must be 0.
    if q[2] & 0xFA != 0 {
        return None;
    }
    let (qd, an, ns, ar) = (be16(q, 4)?, be16(q, 6)?, be16(q, 8)?, be16(q, 10)?);
    if qd != 1 || an != 0 || ns != 0 || ar > 1 {
        return None;
    }
    let mut p = Parsed {
        labels: [&[]; MAX_LABELS],
        label_at: [0; MAX_LABELS],
        n_labels: 0,
        qtype: 0,
        question_end: 0,
        edns: None,
    };
    let mut at = 12;
    loop {
        let len = usize::from(*q.get(at)?);
        if len == 0 {
            at += 1;
            break;
        }
        // No compression in a question of this shape, labels up to 63, names up to 255.
        if len > 63 || p.n_labels == MAX_LABELS || at + 1 + len - 12 > 255 {
            return None;
        }
        p.labels[p.n_labels] = q.get(at + 1..at + 1 + len)?;
        p.label_at[p.n_labels] = at as u16;
        p.n_labels += 1;
        at += 1 + len;
    }
    p.qtype = be16(q, at)?;
    if be16(q, at + 2)? != 1 {
        return None;
    }
    at += 4;
    p.question_end = at;
    if ar == 1 {
        // OPT: root owner, type 41, class = payload size, TTL = ext-rcode/version/flags.
        if *q.get(at)? != 0 || be16(q, at + 1)? != 41 || *q.get(at + 6)? != 0 {
            return None;
        }
        p.edns = Some(be16(q, at + 3)?);
        let rdlen = usize::from(be16(q, at + 9)?);
        at += 11 + rdlen;
    }
    (at == q.len()).then_some(p)
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::op::Query;
    use hickory_proto::rr::Name;
    use proptest::prelude::*;
    use pserv_core::snapshot::EXAMPLE_JSON;

    fn responder() -> Responder {
        let store = Arc::new(Store::new());
        store.publish_json(EXAMPLE_JSON.as_bytes()).unwrap();
        Responder::new(store, Arc::default())
    }

    fn query(id: u16, name: &str, qtype: RecordType, edns: Option<u16>, rd: bool) -> Vec<u8> {
        let mut m = Message::new(id, MessageType::Query, OpCode::Query);
        m.metadata.recursion_desired = rd;
        m.add_query(Query::query(Name::from_ascii(name).unwrap(), qtype));
        if let Some(size) = edns {
            let mut e = Edns::new();
            e.set_max_payload(size);
            m.set_edns(e);
        }
        m.to_vec().unwrap()
    }

    /// What a response says, independent of how it was encoded.
    fn meaning(bytes: &[u8]) -> String {
        let m = Message::from_vec(bytes).unwrap();
        format!(
            "{:?} q={:?} an={:?} ns={:?} ar={:?} edns={:?}",
            m.metadata,
            m.queries,
            m.answers,
            m.authorities,
            m.additionals,
            m.edns.map(|e| (e.max_payload(), e.version()))
        )
    }

    const NAMES: [&str; 12] = [
        "aaa.maas.",
        "AAA.MaAs.",
        "bbb.maas.",
        "ccc.maas.",
        "nope.maas.",
        "x.y.maas.",
        "example.com.",
        "10.0.20.10.in-addr.arpa.",
        "11.0.20.10.IN-ADDR.ARPA.",
        "99.0.20.10.in-addr.arpa.",
        "0.20.10.in-addr.arpa.",
        "0.1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.2.0.0.0.0.d.f.ip6.arpa.",
    ];

    proptest! {
        /// The fast path says exactly what the hickory slow path says.
        #[test]
        fn fast_path_matches_slow_path(
            name in prop::sample::select(&NAMES[..]),
            qtype in prop::sample::select(&[RecordType::A, RecordType::AAAA, RecordType::PTR][..]),
            edns in prop::option::of(prop_oneof![Just(512u16), Just(1232), Just(4096), Just(100)]),
            id in any::<u16>(),
            rd in any::<bool>(),
        ) {
            let r = responder();
            let table = r.store().load();
            let zones = r.zones_for(&table);
            let q = query(id, name, qtype, edns, rd);
            let mut fast = Vec::new();
            let mut slow = Vec::new();
            let took_fast = matches!(r.fast(&table, &zones, &q, &mut fast, false), Fast::Sent(_));
            prop_assert!(took_fast, "{name} {qtype} should take the fast path");
            prop_assert_eq!(r.slow(&table, &zones, &q, &mut slow, false), Action::Send);
            // Names compare case-insensitively (the fast path's SOA owner points into the
            // question, so it carries the asked case)...
            prop_assert_eq!(meaning(&fast).to_lowercase(), meaning(&slow).to_lowercase());
            prop_assert_eq!(&fast[..2], &id.to_be_bytes()[..]);
            // ...but answers carry the question's case exactly.
            let m = Message::from_vec(&fast).unwrap();
            for a in &m.answers {
                prop_assert_eq!(a.name.to_string(), name);
            }
        }

        /// Arbitrary datagrams: never a panic; any reply decodes and echoes the query's id.
        #[test]
        fn garbage_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..600)) {
            let r = responder();
            let table = r.store().load();
            let zones = r.zones_for(&table);
            let mut out = Vec::new();
            if r.respond_udp(&table, &zones, &bytes, &mut out) == Action::Send {
                prop_assert!(out.len() >= 12);
                prop_assert_eq!(&out[..2], &bytes[..2]);
                prop_assert!(out[2] & 0x80 != 0, "QR set");
            }
        }
    }

    #[test]
    fn unusual_queries_take_the_slow_path() {
        let r = responder();
        let table = r.store().load();
        let zones = r.zones_for(&table);
        let mut out = Vec::new();
        for (name, qtype) in [
            ("maas.", RecordType::SOA),
            ("aaa.maas.", RecordType::ANY),
            ("aaa.maas.", RecordType::MX),
        ] {
            let q = query(7, name, qtype, None, false);
            assert!(
                matches!(r.fast(&table, &zones, &q, &mut out, false), Fast::Slow),
                "{name} {qtype}"
            );
            assert_eq!(r.respond_udp(&table, &zones, &q, &mut out), Action::Send);
            let m = Message::from_vec(&out).unwrap();
            assert_eq!(m.metadata.id, 7);
        }
        // A response sent to us is dropped, never answered (no reflection loops).
        let mut q = query(8, "aaa.maas.", RecordType::A, None, false);
        q[2] |= 0x80;
        assert_eq!(r.respond_udp(&table, &zones, &q, &mut out), Action::Drop);
    }
}
