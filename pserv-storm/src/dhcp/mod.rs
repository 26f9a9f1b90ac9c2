//! `dhcp` mode: DORA exchanges as a relay, many clients, at a fixed offered rate or a flood.
//!
//! [`Dora`] is the sans-IO engine: [`Dora::poll_transmit`] hands out the next requests due at
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
//! twice).

pub mod run;
pub mod wire;

use std::collections::{HashMap, VecDeque};
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::stats::{Latency, Samples};
use wire::Client;

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
    /// The relay address the generator poses as.
    pub giaddr: Ipv4Addr,
    /// Answers must fall in this network (wrong answers otherwise).
    pub subnet: Option<ipnet::Ipv4Net>,
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
struct Slot {
    phase: Phase,
    /// Increments with each exchange, so a stale timer entry is recognised.
    seq: u32,
    /// The address last ACKed to this client.
    bound: Option<Ipv4Addr>,
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
pub struct Dora {
    cfg: Config,
    start: Instant,
    slots: Vec<Slot>,
    /// The next client to start.
    cursor: u32,
    in_flight: u32,
    started: u64,
    /// REQUESTs due, answering OFFERs: (client, offered address, server).
    pending: VecDeque<(u32, Ipv4Addr, Ipv4Addr)>,
    /// (deadline, client, seq) in deadline order (the timeout is one constant).
    timers: VecDeque<(Instant, u32, u32)>,
    /// ACKed address -> client.
    holders: HashMap<Ipv4Addr, u32>,
    tally: Tally,
}

impl Dora {
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

    /// The client of slot `i`.
    fn client(&self, i: u32) -> Client {
        let [a, b] = self.cfg.mac_prefix;
        let n = i.to_be_bytes();
        Client {
            // The slot in the low bits and the exchange's sequence in the high: a reply names
            // its exchange, so a late answer to an earlier one is not taken for this one.
            xid: (self.slots[i as usize].seq << 24) ^ i,
            mac: [a, b, n[0], n[1], n[2], n[3]],
            giaddr: self.cfg.giaddr,
            arch: None,
            ipxe: false,
        }
    }

    fn slot_of(&self, xid: u32, mac: [u8; 6]) -> Option<u32> {
        let i = u32::from_be_bytes(mac[2..6].try_into().ok()?);
        let s = self.slots.get(i as usize)?;
        (mac[..2] == self.cfg.mac_prefix && xid == (s.seq << 24) ^ i).then_some(i)
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
            let c = self.client(i);
            wire::request(out, &c, ip, server);
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
            let c = self.client(i);
            wire::discover(out, &c);
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

    fn in_subnet(&self, ip: Ipv4Addr) -> bool {
        self.cfg.subnet.is_none_or(|n| n.contains(&ip))
    }

    /// Takes one reply.
    pub fn handle(&mut self, bytes: &[u8], now: Instant) {
        let Some(r) = wire::parse_reply(bytes) else {
            self.tally.unexpected += 1;
            return;
        };
        let Some(i) = self.slot_of(r.xid, r.mac) else {
            self.tally.unexpected += 1;
            return;
        };
        let phase = self.slots[i as usize].phase;
        match (phase, r.kind) {
            (Phase::Discovering { sent }, wire::OFFER) => {
                self.tally.offers += 1;
                self.tally.discover_offer.record(now.duration_since(sent));
                if !self.in_subnet(r.yiaddr) {
                    self.tally.outside_subnet += 1;
                }
                let server = r.server_id.unwrap_or(Ipv4Addr::UNSPECIFIED);
                self.slots[i as usize].phase = Phase::Requesting {
                    sent: now,
                    began: sent,
                };
                self.pending.push_back((i, r.yiaddr, server));
            }
            (Phase::Requesting { sent, began }, wire::ACK) => {
                self.tally.acks += 1;
                self.tally.request_ack.record(now.duration_since(sent));
                self.tally.dora.record(now.duration_since(began));
                if !self.in_subnet(r.yiaddr) {
                    self.tally.outside_subnet += 1;
                }
                self.bind(i, r.yiaddr);
                self.end(i);
            }
            (Phase::Requesting { .. }, wire::NAK) => {
                self.tally.naks += 1;
                self.end(i);
            }
            _ => self.tally.unexpected += 1,
        }
    }

    fn bind(&mut self, i: u32, ip: Ipv4Addr) {
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
                    .map(|ip| (self.client(i).mac, ip))
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
    pub bindings: Vec<([u8; 6], Ipv4Addr)>,
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
            giaddr: Ipv4Addr::new(10, 0, 0, 2),
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
        let mut d = Dora::new(cfg(10), t0);
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
        let mut d = Dora::new(cfg(0), t0);
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
        let mut d = Dora::new(cfg(0), t0);
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
        let mut d = Dora::new(
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

    #[test]
    fn a_run_ends_by_count_and_reports_rates() {
        let t0 = Instant::now();
        let mut d = Dora::new(Config { count: 3, ..cfg(0) }, t0);
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
