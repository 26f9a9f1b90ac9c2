//! `dhcp` mode: DORA exchanges (DHCPv4) or SOLICIT/ADVERTISE/REQUEST/REPLY exchanges
//! (DHCPv6, [`V6`]) as a relay, many clients, at a fixed offered rate or a flood.
//!
//! [`Dora`] is the sans-IO engine, over the protocol's [`Family`]: [`Dora::poll_transmit`] hands out the next requests due at
//! `now` (REQUESTs answering OFFERs first, then new DISCOVERs as the rate allows),
//! [`Dora::handle`] takes a reply, [`Dora::handle_timeout`] ends exchanges whose answer did
//! not come in time. Nothing here reads a clock or touches a socket; `run` is the loop.
//!
//! Accounting, as perfdhcp counts: a DISCOVER with no OFFER within the timeout is a
//! DISCOVER-OFFER drop; a REQUEST with no ACK or NAK, a REQUEST-ACK drop. No retransmission
//! (perfdhcp sends none by default), so drops are the server's (or the network's) losses.
//! Wrong answers are counted apart: an address outside the subnet given with `--subnet`, and
//! one address ACKed to two clients that both still hold it (the generator never releases
//! during a run, so a server re-using an address within the run is handing out one lease
//! twice). In DHCPv6 terms a DISCOVER is a SOLICIT, an OFFER an ADVERTISE, an ACK a REPLY
//! with an address, and a NAK a REPLY (or ADVERTISE) without one.

pub mod run;
pub mod wire;
pub mod wire6;

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::stats::{Latency, Samples};
use wire::Client;

/// What a reply is to the engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// An address offered (OFFER, ADVERTISE).
    Offer,
    /// An address committed (ACK, REPLY).
    Ack,
    /// A refusal (NAK; a REPLY or ADVERTISE with no address).
    Nak,
}

/// A reply as the engine reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer<A, S> {
    /// Its transaction id.
    pub xid: u32,
    /// The client's hardware address (DHCPv6: from its DUID-LL).
    pub mac: [u8; 6],
    /// What it is.
    pub kind: Kind,
    /// The address it gives.
    pub addr: A,
    /// The server's identifier, which the REQUEST names.
    pub server: Option<S>,
}

/// A DHCP protocol as the engine drives it: its two requests and its replies.
pub trait Family {
    /// An address.
    type Addr: Copy + Eq + Hash + Into<IpAddr> + std::fmt::Debug;
    /// A server identifier (DHCPv4: its address; DHCPv6: its DUID).
    type Server: Clone + std::fmt::Debug;
    /// The transaction id of exchange `seq` (8 bits) of client `slot`.
    fn xid(seq: u32, slot: u32) -> u32;
    /// The first request (DISCOVER, SOLICIT) of client `mac`, as relayed from `relay`.
    fn first(out: &mut Vec<u8>, relay: IpAddr, mac: [u8; 6], xid: u32);
    /// The second (REQUEST) for `addr`, offered by `server` (if the offer named it).
    fn second(
        out: &mut Vec<u8>,
        relay: IpAddr,
        mac: [u8; 6],
        xid: u32,
        addr: Self::Addr,
        server: Option<&Self::Server>,
    );
    /// A reply, if it is one (`None`: undecodable).
    fn parse(bytes: &[u8]) -> Option<Answer<Self::Addr, Self::Server>>;
}

/// DHCPv4: DISCOVER, OFFER, REQUEST, ACK or NAK, relayed (giaddr).
#[derive(Debug, Clone, Copy)]
pub struct V4;

fn client4(relay: IpAddr, mac: [u8; 6], xid: u32) -> Client {
    Client {
        xid,
        mac,
        giaddr: match relay {
            IpAddr::V4(ip) => ip,
            IpAddr::V6(_) => Ipv4Addr::UNSPECIFIED,
        },
        arch: None,
        ipxe: false,
    }
}

impl Family for V4 {
    type Addr = Ipv4Addr;
    type Server = Ipv4Addr;
    fn xid(seq: u32, slot: u32) -> u32 {
        // The slot in the low bits and the exchange's sequence in the high: a reply names
        // its exchange, so a late answer to an earlier one is not taken for this one.
        (seq << 24) ^ slot
    }
    fn first(out: &mut Vec<u8>, relay: IpAddr, mac: [u8; 6], xid: u32) {
        wire::discover(out, &client4(relay, mac, xid));
    }
    fn second(
        out: &mut Vec<u8>,
        relay: IpAddr,
        mac: [u8; 6],
        xid: u32,
        addr: Ipv4Addr,
        server: Option<&Ipv4Addr>,
    ) {
        let server = server.copied().unwrap_or(Ipv4Addr::UNSPECIFIED);
        wire::request(out, &client4(relay, mac, xid), addr, server);
    }
    fn parse(bytes: &[u8]) -> Option<Answer<Ipv4Addr, Ipv4Addr>> {
        let r = wire::parse_reply(bytes)?;
        Some(Answer {
            xid: r.xid,
            mac: r.mac,
            kind: match r.kind {
                wire::OFFER => Kind::Offer,
                wire::ACK => Kind::Ack,
                wire::NAK => Kind::Nak,
                _ => return None,
            },
            addr: r.yiaddr,
            server: r.server_id,
        })
    }
}

/// DHCPv6: SOLICIT, ADVERTISE, REQUEST, REPLY, each in a RELAY-FORW from the relay's link
/// address, clients named by DUID-LL, one IA_NA each.
#[derive(Debug, Clone, Copy)]
pub struct V6;

impl Family for V6 {
    type Addr = Ipv6Addr;
    type Server = Box<[u8]>;
    fn xid(seq: u32, slot: u32) -> u32 {
        // 24 bits: the sequence in the top 8 (the slot itself is in the client's DUID).
        ((seq << 16) ^ slot) & 0x00ff_ffff
    }
    fn first(out: &mut Vec<u8>, relay: IpAddr, mac: [u8; 6], xid: u32) {
        wire6::solicit(out, relay6(relay), mac, xid);
    }
    fn second(
        out: &mut Vec<u8>,
        relay: IpAddr,
        mac: [u8; 6],
        xid: u32,
        addr: Ipv6Addr,
        server: Option<&Box<[u8]>>,
    ) {
        wire6::request(
            out,
            relay6(relay),
            mac,
            xid,
            addr,
            server.map_or(&[], |s| &s[..]),
        );
    }
    fn parse(bytes: &[u8]) -> Option<Answer<Ipv6Addr, Box<[u8]>>> {
        wire6::parse_reply(bytes)
    }
}

fn relay6(relay: IpAddr) -> Ipv6Addr {
    match relay {
        IpAddr::V6(ip) => ip,
        IpAddr::V4(ip) => ip.to_ipv6_mapped(),
    }
}

/// What a run does.
#[derive(Debug, Clone)]
pub struct Config {
    /// Distinct clients (MACs); exchange `k` is client `k % clients`'s.
    pub clients: u32,
    /// DISCOVERs per second offered; 0 floods, keeping `window` exchanges in flight.
    pub rate: u32,
    /// Exchanges in flight in a flood.
    pub window: u32,
    /// Stop starting exchanges after this many (0: no limit).
    pub count: u64,
    /// Stop starting exchanges after this long.
    pub duration: Duration,
    /// How long a request waits for its answer.
    pub timeout: Duration,
    /// The relay address the generator poses as (DHCPv4's giaddr, DHCPv6's link address).
    pub relay: IpAddr,
    /// Answers must fall in this network (wrong answers otherwise).
    pub subnet: Option<ipnet::IpNet>,
    /// First octets of every generated MAC (the rest is the client number), so two runs
    /// can use disjoint clients.
    pub mac_prefix: [u8; 2],
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Idle,
    Discovering { sent: Instant },
    Requesting { sent: Instant, began: Instant },
}

#[derive(Debug, Clone, Copy)]
struct Slot<A> {
    phase: Phase,
    /// Increments with each exchange, so a stale timer entry is recognised.
    seq: u32,
    /// The address last ACKed to this client.
    bound: Option<A>,
}

/// Counts and latencies of a run.
#[derive(Debug, Default, Clone)]
pub struct Tally {
    /// DISCOVERs sent.
    pub discovers: u64,
    /// OFFERs that answered a DISCOVER in flight.
    pub offers: u64,
    /// REQUESTs sent.
    pub requests: u64,
    /// ACKs that answered a REQUEST in flight.
    pub acks: u64,
    /// NAKs that answered a REQUEST in flight.
    pub naks: u64,
    /// DISCOVERs unanswered within the timeout.
    pub discover_drops: u64,
    /// REQUESTs unanswered within the timeout.
    pub request_drops: u64,
    /// Replies to nothing in flight (late, duplicated, for another xid, or undecodable).
    pub unexpected: u64,
    /// OFFERs or ACKs of an address outside `--subnet`.
    pub outside_subnet: u64,
    /// ACKs of an address another client of the run holds.
    pub duplicates: u64,
    /// DISCOVER to OFFER.
    pub discover_offer: Samples,
    /// REQUEST to ACK.
    pub request_ack: Samples,
    /// DISCOVER to ACK.
    pub dora: Samples,
}

/// The sans-IO DORA engine. See the module docs.
#[derive(Debug)]
pub struct Dora<F: Family = V4> {
    cfg: Config,
    start: Instant,
    slots: Vec<Slot<F::Addr>>,
    /// The next client to start.
    cursor: u32,
    in_flight: u32,
    started: u64,
    /// REQUESTs due, answering OFFERs: (client, offered address, server).
    pending: VecDeque<(u32, F::Addr, Option<F::Server>)>,
    /// (deadline, client, seq) in deadline order (the timeout is one constant).
    timers: VecDeque<(Instant, u32, u32)>,
    /// ACKed address -> client.
    holders: HashMap<F::Addr, u32>,
    tally: Tally,
}

impl<F: Family> Dora<F> {
    /// A run starting at `now`.
    pub fn new(cfg: Config, now: Instant) -> Self {
        let n = cfg.clients.max(1) as usize;
        Self {
            slots: vec![
                Slot {
                    phase: Phase::Idle,
                    seq: 0,
                    bound: None,
                };
                n
            ],
            cfg,
            start: now,
            cursor: 0,
            in_flight: 0,
            started: 0,
            pending: VecDeque::new(),
            timers: VecDeque::new(),
            holders: HashMap::new(),
            tally: Tally::default(),
        }
    }

    /// The MAC and current transaction id of slot `i`'s client.
    fn client(&self, i: u32) -> ([u8; 6], u32) {
        let [a, b] = self.cfg.mac_prefix;
        let n = i.to_be_bytes();
        (
            [a, b, n[0], n[1], n[2], n[3]],
            F::xid(self.slots[i as usize].seq, i),
        )
    }

    fn slot_of(&self, xid: u32, mac: [u8; 6]) -> Option<u32> {
        let i = u32::from_be_bytes(mac[2..6].try_into().ok()?);
        let s = self.slots.get(i as usize)?;
        (mac[..2] == self.cfg.mac_prefix && xid == F::xid(s.seq, i)).then_some(i)
    }

    /// Whether new exchanges may still start at `now`.
    pub fn sending(&self, now: Instant) -> bool {
        now.duration_since(self.start) < self.cfg.duration
            && (self.cfg.count == 0 || self.started < self.cfg.count)
    }

    /// Whether the run is over: nothing may start and nothing is in flight.
    pub fn finished(&self, now: Instant) -> bool {
        !self.sending(now) && self.in_flight == 0 && self.pending.is_empty()
    }

    /// Writes the next request due at `now` into `out` and returns true, or returns false
    /// when nothing is due.
    pub fn poll_transmit(&mut self, now: Instant, out: &mut Vec<u8>) -> bool {
        if let Some((i, ip, server)) = self.pending.pop_front() {
            let (mac, xid) = self.client(i);
            F::second(out, self.cfg.relay, mac, xid, ip, server.as_ref());
            self.tally.requests += 1;
            let seq = self.slots[i as usize].seq;
            self.timers.push_back((now + self.cfg.timeout, i, seq));
            return true;
        }
        if !self.sending(now) {
            return false;
        }
        let may = if self.cfg.rate == 0 {
            self.in_flight < self.cfg.window.max(1)
        } else {
            let due = now.duration_since(self.start).as_secs_f64() * f64::from(self.cfg.rate);
            (self.started as f64) < due.floor() + 1.0
        };
        if !may {
            return false;
        }
        // The next idle client; if every client is busy, wait for one.
        let n = self.slots.len() as u32;
        for _ in 0..n {
            let i = self.cursor;
            self.cursor = (self.cursor + 1) % n;
            let slot = &mut self.slots[i as usize];
            if slot.phase != Phase::Idle {
                continue;
            }
            slot.seq = slot.seq.wrapping_add(1) & 0xff;
            slot.phase = Phase::Discovering { sent: now };
            let seq = slot.seq;
            let (mac, xid) = self.client(i);
            F::first(out, self.cfg.relay, mac, xid);
            self.started += 1;
            self.in_flight += 1;
            self.tally.discovers += 1;
            self.timers.push_back((now + self.cfg.timeout, i, seq));
            return true;
        }
        false
    }

    /// When the next request is due, if one could be (the loop sleeps until then).
    pub fn poll_due(&self, now: Instant) -> Option<Instant> {
        if !self.pending.is_empty() {
            return Some(now);
        }
        if !self.sending(now) || self.cfg.rate == 0 {
            return None;
        }
        let next = Duration::from_secs_f64(self.started as f64 / f64::from(self.cfg.rate));
        Some(self.start + next)
    }

    fn in_subnet(&self, ip: F::Addr) -> bool {
        self.cfg.subnet.is_none_or(|n| n.contains(&ip.into()))
    }

    /// Takes one reply.
    pub fn handle(&mut self, bytes: &[u8], now: Instant) {
        let Some(r) = F::parse(bytes) else {
            self.tally.unexpected += 1;
            return;
        };
        let Some(i) = self.slot_of(r.xid, r.mac) else {
            self.tally.unexpected += 1;
            return;
        };
        let phase = self.slots[i as usize].phase;
        match (phase, r.kind) {
            (Phase::Discovering { sent }, Kind::Offer) => {
                self.tally.offers += 1;
                self.tally.discover_offer.record(now.duration_since(sent));
                if !self.in_subnet(r.addr) {
                    self.tally.outside_subnet += 1;
                }
                self.slots[i as usize].phase = Phase::Requesting {
                    sent: now,
                    began: sent,
                };
                self.pending.push_back((i, r.addr, r.server));
            }
            (Phase::Requesting { sent, began }, Kind::Ack) => {
                self.tally.acks += 1;
                self.tally.request_ack.record(now.duration_since(sent));
                self.tally.dora.record(now.duration_since(began));
                if !self.in_subnet(r.addr) {
                    self.tally.outside_subnet += 1;
                }
                self.bind(i, r.addr);
                self.end(i);
            }
            // A NAK; or in DHCPv6, an ADVERTISE or REPLY without an address (NoAddrsAvail).
            (Phase::Requesting { .. } | Phase::Discovering { .. }, Kind::Nak) => {
                self.tally.naks += 1;
                self.end(i);
            }
            _ => self.tally.unexpected += 1,
        }
    }

    fn bind(&mut self, i: u32, ip: F::Addr) {
        let slot = &mut self.slots[i as usize];
        if let Some(old) = slot.bound.replace(ip)
            && old != ip
            && self.holders.get(&old) == Some(&i)
        {
            // The server moved this client: its old address is no longer its.
            self.holders.remove(&old);
        }
        if let Some(prev) = self.holders.insert(ip, i)
            && prev != i
        {
            self.tally.duplicates += 1;
        }
    }

    fn end(&mut self, i: u32) {
        self.slots[i as usize].phase = Phase::Idle;
        self.in_flight -= 1;
    }

    /// Ends the exchanges whose answer is overdue at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(&(at, i, seq)) = self.timers.front() {
            if at > now {
                break;
            }
            self.timers.pop_front();
            let slot = self.slots[i as usize];
            if slot.seq != seq {
                continue;
            }
            match slot.phase {
                Phase::Discovering { sent } if sent + self.cfg.timeout <= now => {
                    self.tally.discover_drops += 1;
                    self.end(i);
                }
                Phase::Requesting { sent, .. } if sent + self.cfg.timeout <= now => {
                    self.tally.request_drops += 1;
                    self.end(i);
                }
                _ => {}
            }
        }
    }

    /// The counts so far.
    pub fn tally(&self) -> &Tally {
        &self.tally
    }

    /// Exchanges started.
    pub fn started(&self) -> u64 {
        self.started
    }

    /// The summary of the run, as of `now`.
    pub fn report(&self, now: Instant) -> Report {
        let t = &self.tally;
        let sending = self.cfg.duration.min(now.duration_since(self.start));
        let secs = now.duration_since(self.start).as_secs_f64().max(1e-9);
        let ratio = |d: u64, of: u64| if of == 0 { 0.0 } else { d as f64 / of as f64 };
        let bindings = (0..self.slots.len() as u32)
            .filter_map(|i| {
                self.slots[i as usize]
                    .bound
                    .map(|ip| (self.client(i).0, ip.into()))
            })
            .collect();
        Report {
            bindings,
            seconds: secs,
            offered_rate: t.discovers as f64 / sending.as_secs_f64().max(1e-9),
            completed_rate: t.acks as f64 / sending.as_secs_f64().max(1e-9),
            discovers: t.discovers,
            offers: t.offers,
            requests: t.requests,
            acks: t.acks,
            naks: t.naks,
            discover_drops: t.discover_drops,
            request_drops: t.request_drops,
            discover_drop_ratio: ratio(t.discover_drops, t.discovers),
            request_drop_ratio: ratio(t.request_drops, t.requests),
            unexpected: t.unexpected,
            outside_subnet: t.outside_subnet,
            duplicates: t.duplicates,
            discover_offer: t.discover_offer.summary(),
            request_ack: t.request_ack.summary(),
            dora: t.dora.summary(),
        }
    }
}

/// A run's result, as printed and as `--json` gives it.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// From the first DISCOVER to the end (stragglers' timeout included).
    pub seconds: f64,
    /// DISCOVERs per second over the sending time.
    pub offered_rate: f64,
    /// ACKs per second over the sending time (as perfdhcp gives its rate).
    pub completed_rate: f64,
    /// DISCOVERs sent.
    pub discovers: u64,
    /// OFFERs received for them.
    pub offers: u64,
    /// REQUESTs sent.
    pub requests: u64,
    /// ACKs received for them.
    pub acks: u64,
    /// NAKs received for them.
    pub naks: u64,
    /// DISCOVERs without OFFER.
    pub discover_drops: u64,
    /// REQUESTs without answer.
    pub request_drops: u64,
    /// `discover_drops / discovers`.
    pub discover_drop_ratio: f64,
    /// `request_drops / requests`.
    pub request_drop_ratio: f64,
    /// Replies to nothing in flight.
    pub unexpected: u64,
    /// Addresses outside `--subnet`.
    pub outside_subnet: u64,
    /// One address ACKed to two clients.
    pub duplicates: u64,
    /// DISCOVER to OFFER.
    pub discover_offer: Latency,
    /// REQUEST to ACK.
    pub request_ack: Latency,
    /// DISCOVER to ACK.
    pub dora: Latency,
    /// Every client's last ACKed address (its MAC, the address), for checks against a
    /// server's own record; not in the JSON report.
    #[serde(skip)]
    pub bindings: Vec<([u8; 6], IpAddr)>,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn cfg(rate: u32) -> Config {
        Config {
            clients: 4,
            rate,
            window: 2,
            count: 0,
            duration: Duration::from_secs(10),
            timeout: Duration::from_secs(1),
            relay: Ipv4Addr::new(10, 0, 0, 2).into(),
            subnet: Some("10.0.0.0/16".parse().unwrap()),
            mac_prefix: [2, 0x5e],
        }
    }

    /// Answers a request the way a server would, for the engine's tests.
    fn answer(req: &[u8], kind: u8, ip: Ipv4Addr) -> Vec<u8> {
        let r = wire::parse_request(req).unwrap();
        let mut out = Vec::new();
        wire::reply(&mut out, &r, kind, ip, Ipv4Addr::new(10, 0, 0, 1));
        out
    }

    #[test]
    fn a_paced_run_counts_every_phase_and_latency() {
        let t0 = Instant::now();
        let mut d = Dora::<V4>::new(cfg(10), t0);
        let mut out = Vec::new();
        // 10/s: one due at once, the next only 100 ms later.
        assert!(d.poll_transmit(t0, &mut out));
        assert!(!d.poll_transmit(t0, &mut out));
        assert_eq!(d.poll_due(t0), Some(t0 + Duration::from_millis(100)));
        let disc = out.clone();
        d.handle(
            &answer(&disc, wire::OFFER, Ipv4Addr::new(10, 0, 1, 1)),
            t0 + Duration::from_millis(2),
        );
        // The REQUEST goes out before any new DISCOVER.
        assert!(d.poll_transmit(t0 + Duration::from_millis(2), &mut out));
        let req = wire::parse_request(&out).unwrap();
        assert_eq!(req.kind, wire::REQUEST);
        assert_eq!(req.requested, Some(Ipv4Addr::new(10, 0, 1, 1)));
        d.handle(
            &answer(&out, wire::ACK, Ipv4Addr::new(10, 0, 1, 1)),
            t0 + Duration::from_millis(5),
        );
        let t = d.tally();
        assert_eq!((t.discovers, t.offers, t.requests, t.acks), (1, 1, 1, 1));
        assert_eq!(t.dora.summary().max_ms, 5.0);
        assert_eq!(t.discover_offer.summary().max_ms, 2.0);
        assert_eq!(t.request_ack.summary().max_ms, 3.0);
        // A duplicated ACK is unexpected, not a second completion.
        d.handle(
            &answer(&out, wire::ACK, Ipv4Addr::new(10, 0, 1, 1)),
            t0 + Duration::from_millis(6),
        );
        assert_eq!(d.tally().acks, 1);
        assert_eq!(d.tally().unexpected, 1);
    }

    #[test]
    fn timeouts_are_drops_by_phase_and_late_answers_are_unexpected() {
        let t0 = Instant::now();
        let mut d = Dora::<V4>::new(cfg(0), t0);
        let (mut a, mut b) = (Vec::new(), Vec::new());
        assert!(d.poll_transmit(t0, &mut a));
        assert!(d.poll_transmit(t0, &mut b));
        assert!(!d.poll_transmit(t0, &mut Vec::new()), "a window of 2");
        // a gets an OFFER, its REQUEST is never answered; b never gets an OFFER.
        d.handle(&answer(&a, wire::OFFER, Ipv4Addr::new(10, 0, 1, 1)), t0);
        let mut r = Vec::new();
        assert!(d.poll_transmit(t0, &mut r));
        d.handle_timeout(t0 + Duration::from_millis(999));
        assert_eq!(d.tally().discover_drops, 0);
        d.handle_timeout(t0 + Duration::from_secs(1));
        let t = d.tally();
        assert_eq!((t.discover_drops, t.request_drops), (1, 1));
        // The OFFER for b, now late, counts as unexpected.
        d.handle(
            &answer(&b, wire::OFFER, Ipv4Addr::new(10, 0, 1, 2)),
            t0 + Duration::from_secs(2),
        );
        assert_eq!(d.tally().unexpected, 1);
        assert_eq!(d.tally().offers, 1);
    }

    #[test]
    fn wrong_answers_outside_the_subnet_and_one_address_for_two_clients() {
        let t0 = Instant::now();
        let mut d = Dora::<V4>::new(cfg(0), t0);
        let ip = Ipv4Addr::new(10, 0, 9, 9);
        for _ in 0..2 {
            let mut disc = Vec::new();
            assert!(d.poll_transmit(t0, &mut disc));
            d.handle(&answer(&disc, wire::OFFER, ip), t0);
            let mut req = Vec::new();
            assert!(d.poll_transmit(t0, &mut req));
            d.handle(&answer(&req, wire::ACK, ip), t0);
        }
        assert_eq!(d.tally().acks, 2);
        assert_eq!(d.tally().duplicates, 1, "two clients, one address");
        let mut disc = Vec::new();
        assert!(d.poll_transmit(t0, &mut disc));
        d.handle(
            &answer(&disc, wire::OFFER, Ipv4Addr::new(192, 168, 1, 1)),
            t0,
        );
        assert_eq!(d.tally().outside_subnet, 1);
        // The same client given the same address again is no duplicate.
        let mut d = Dora::<V4>::new(
            Config {
                clients: 1,
                ..cfg(0)
            },
            t0,
        );
        for _ in 0..3 {
            let mut disc = Vec::new();
            assert!(d.poll_transmit(t0, &mut disc));
            d.handle(&answer(&disc, wire::OFFER, ip), t0);
            let mut req = Vec::new();
            assert!(d.poll_transmit(t0, &mut req));
            d.handle(&answer(&req, wire::ACK, ip), t0);
        }
        assert_eq!((d.tally().acks, d.tally().duplicates), (3, 0));
    }

    /// DHCPv6: the same engine over SOLICIT/ADVERTISE/REQUEST/REPLY in relay messages; the
    /// REQUEST names the advertised address and the server's DUID.
    #[test]
    fn dhcpv6_exchanges_run_through_the_same_engine() {
        let t0 = Instant::now();
        let relay: Ipv6Addr = "fd00:77::2".parse().unwrap();
        let mut d = Dora::<V6>::new(
            Config {
                relay: relay.into(),
                subnet: Some("fd00:77::/64".parse().unwrap()),
                ..cfg(0)
            },
            t0,
        );
        let a: Ipv6Addr = "fd00:77::1:9".parse().unwrap();
        let mut sol = Vec::new();
        assert!(d.poll_transmit(t0, &mut sol));
        let req = wire6::parse_request(&sol).unwrap();
        assert_eq!((req.kind, req.link), (wire6::SOLICIT, relay));
        let mut adv = Vec::new();
        wire6::reply(&mut adv, &req, wire6::ADVERTISE, Some(a), &[0, 4, 7, 7]);
        d.handle(&adv, t0);
        let mut request = Vec::new();
        assert!(d.poll_transmit(t0, &mut request));
        let r = wire6::parse_request(&request).unwrap();
        assert_eq!(r.kind, wire6::REQUEST);
        assert_eq!(
            (r.requested, r.server.clone()),
            (Some(a), Some(vec![0, 4, 7, 7]))
        );
        let mut rep = Vec::new();
        wire6::reply(&mut rep, &r, wire6::REPLY, Some(a), &[0, 4, 7, 7]);
        d.handle(&rep, t0 + Duration::from_millis(3));
        let t = d.tally();
        assert_eq!((t.discovers, t.offers, t.requests, t.acks), (1, 1, 1, 1));
        assert_eq!((t.outside_subnet, t.unexpected), (0, 0));
        // An ADVERTISE without an address (NoAddrsAvail) ends the exchange as a refusal.
        let mut sol = Vec::new();
        assert!(d.poll_transmit(t0, &mut sol));
        let req = wire6::parse_request(&sol).unwrap();
        wire6::reply(&mut adv, &req, wire6::ADVERTISE, None, &[0, 4, 7, 7]);
        d.handle(&adv, t0);
        assert_eq!(d.tally().naks, 1);
        let report = d.report(t0 + Duration::from_secs(1));
        assert_eq!(report.bindings.len(), 1);
        assert_eq!(report.bindings[0].1, IpAddr::V6(a));
    }

    #[test]
    fn a_run_ends_by_count_and_reports_rates() {
        let t0 = Instant::now();
        let mut d = Dora::<V4>::new(Config { count: 3, ..cfg(0) }, t0);
        d.cfg.window = 10;
        let mut n = 0;
        let mut out = Vec::new();
        while d.poll_transmit(t0, &mut out) {
            n += 1;
            d.handle(&answer(&out, wire::OFFER, Ipv4Addr::new(10, 0, 1, n)), t0);
            assert!(d.poll_transmit(t0, &mut out));
            d.handle(&answer(&out, wire::NAK, Ipv4Addr::UNSPECIFIED), t0);
        }
        assert_eq!(n, 3);
        assert!(d.finished(t0));
        let r = d.report(t0 + Duration::from_secs(1));
        assert_eq!((r.discovers, r.naks, r.acks), (3, 3, 0));
        assert_eq!(r.completed_rate, 0.0);
    }
}
