//! Syslog load: `count` messages at `rate` a second from many source addresses, and, when
//! given a pserv control API, one `/v1/events` listener counting the `log` events they became.
//!
//! Every message names the run and carries its sequence number and send time (`storm RUN
//! seq=N t=MICROS`), so the listener counts each one once (duplicates apart), says which were
//! lost, and measures the time from send to event. Half the messages are RFC 3164 lines as the
//! Debian installer's busybox forwards them, half RFC 5424 lines as rsyslog does.
//!
//! Sources: one socket sends each batch (one `sendmmsg`) from the next of `sources` addresses
//! (`IP_PKTINFO`), so a per-source rate limit is not what is measured; the addresses must be
//! local (all of 127.0.0.0/8 is, on loopback).

use std::io::{IoSlice, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpStream, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use nix::sys::socket::{ControlMessage, MsgFlags, MultiHeaders, SockaddrIn, sendmmsg};
use serde::Serialize;

use crate::stats::{Latency, Samples};

/// Datagrams per `sendmmsg`, all from one source address.
const BATCH: usize = 32;

/// What to send, and where.
#[derive(Debug, Clone)]
pub struct Config {
    /// The syslog receiver.
    pub server: SocketAddrV4,
    /// A pserv control API to listen to `/v1/events` on; `None`: send only.
    pub events: Option<SocketAddr>,
    /// Its bearer token.
    pub token: Option<String>,
    /// Messages to send.
    pub count: u64,
    /// Messages per second.
    pub rate: u32,
    /// Distinct source addresses, from `first_source` up.
    pub sources: u32,
    /// The first source address.
    pub first_source: Ipv4Addr,
    /// Bytes per datagram (at least what the header and the run's tags take).
    pub size: usize,
    /// How long to wait for events once everything is sent, after the last one arrived.
    pub linger: Duration,
}

/// What a run did.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// This run's tag in every message.
    pub run: String,
    /// Datagrams sent.
    pub sent: u64,
    /// Datagrams the kernel refused to send.
    pub send_errors: u64,
    /// From the first send to the last.
    pub send_seconds: f64,
    /// `sent / send_seconds`.
    pub send_rate: f64,
    /// The listener's count, when there was one.
    pub events: Option<Events>,
}

/// The `/v1/events` listener's count.
#[derive(Debug, Clone, Serialize)]
pub struct Events {
    /// `log` events of this run (duplicates included).
    pub received: u64,
    /// Distinct messages of this run that arrived.
    pub distinct: u64,
    /// Messages that arrived more than once.
    pub duplicates: u64,
    /// Sent and never seen.
    pub lost: u64,
    /// `lost / sent`.
    pub loss_ratio: f64,
    /// `log` events of anything else.
    pub other: u64,
    /// Distinct messages per second, from the first send to the last arrival.
    pub delivered_rate: f64,
    /// From send to event.
    pub latency: Latency,
}

/// Sends the load and, with [`Config::events`], counts what arrived.
pub fn run(cfg: &Config) -> anyhow::Result<Report> {
    if cfg.rate == 0 || cfg.sources == 0 {
        bail!("--rate and --sources must be at least 1");
    }
    let run_id = format!("{:08x}", std::process::id() ^ (now_nanos() as u32));
    let t0 = Instant::now();
    let listener = match cfg.events {
        Some(addr) => Some(Listener::start(
            addr,
            cfg.token.as_deref(),
            &run_id,
            cfg.count,
            t0,
        )?),
        None => None,
    };
    let (sent, send_errors, took) = send(cfg, &run_id, t0)?;
    let events = listener.map(|l| {
        // Wait for the stragglers: until all arrived, or none has for `linger`.
        let (mut last, mut since) = (l.distinct.load(Ordering::Relaxed), Instant::now());
        loop {
            std::thread::sleep(Duration::from_millis(20));
            let now = l.distinct.load(Ordering::Relaxed);
            if now >= sent {
                break;
            }
            if now != last {
                (last, since) = (now, Instant::now());
            } else if since.elapsed() >= cfg.linger {
                break;
            }
        }
        l.finish(sent)
    });
    let send_seconds = took.as_secs_f64();
    Ok(Report {
        run: run_id,
        sent,
        send_errors,
        send_seconds,
        send_rate: sent as f64 / send_seconds.max(1e-9),
        events,
    })
}

fn now_nanos() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}

/// Message `seq` of run `run`, sent `t_us` after the start, padded to `size` bytes.
pub fn message(out: &mut Vec<u8>, run: &str, seq: u64, t_us: u64, size: usize) {
    out.clear();
    let _ = if seq.is_multiple_of(2) {
        write!(
            out,
            "<13>Dec  3 14:00:01 anna[{}]: storm {run} seq={seq} t={t_us} ",
            seq % 30_000
        )
    } else {
        write!(
            out,
            "<14>1 2026-12-03T14:00:01.000000Z node-{} cloud-init {} - - storm {run} seq={seq} t={t_us} ",
            seq % 1000,
            seq % 30_000
        )
    };
    if out.len() < size {
        out.resize(size, b'x');
    }
}

/// Sends `cfg.count` messages at `cfg.rate`; returns sent, errors and how long it took.
fn send(cfg: &Config, run: &str, t0: Instant) -> anyhow::Result<(u64, u64, Duration)> {
    let local = if cfg.server.ip().is_loopback() {
        Ipv4Addr::LOCALHOST
    } else {
        Ipv4Addr::UNSPECIFIED
    };
    let sock = UdpSocket::bind((local, 0)).context("binding the sending socket")?;
    let fd = sock.as_raw_fd();
    let to = [Some(SockaddrIn::from(cfg.server))];
    let mut headers = MultiHeaders::<SockaddrIn>::preallocate(
        BATCH,
        Some(nix::cmsg_space!(nix::libc::in_pktinfo)),
    );
    let mut bufs: Vec<Vec<u8>> = (0..BATCH)
        .map(|_| Vec::with_capacity(cfg.size + 128))
        .collect();
    let (mut sent, mut errors, mut source) = (0u64, 0u64, 0u32);
    let per_message = 1.0 / f64::from(cfg.rate);
    // The schedule: `base_sent` messages were due at `base`, one more every `per_message`.
    let (started, mut base, mut base_sent) = (Instant::now(), Instant::now(), 0u64);
    // A generator that fell behind (this core taken by something else) does not catch up in one
    // burst faster than any receiver reads: past 10 ms behind, the schedule starts again from
    // now, and the run's send rate shows what was really offered.
    let max_behind = (u64::from(cfg.rate) / 100).max(BATCH as u64);
    while sent < cfg.count {
        // Messages due by now, at the rate; sleep until the next one is due.
        let elapsed = base.elapsed().as_secs_f64();
        let due = (base_sent + (elapsed / per_message) as u64 + 1).min(cfg.count);
        if due <= sent {
            let wait = (sent + 1 - base_sent) as f64 * per_message - elapsed;
            std::thread::sleep(Duration::from_secs_f64(wait.max(0.0)));
            continue;
        }
        if due - sent > max_behind {
            (base, base_sent) = (Instant::now(), sent);
            continue;
        }
        let n = ((due - sent) as usize).min(BATCH);
        let t_us = t0.elapsed().as_micros() as u64;
        for (i, b) in bufs.iter_mut().take(n).enumerate() {
            message(b, run, sent + i as u64, t_us, cfg.size);
        }
        let from = Ipv4Addr::from(u32::from(cfg.first_source).wrapping_add(source));
        source = (source + 1) % cfg.sources;
        let info = nix::libc::in_pktinfo {
            ipi_ifindex: 0,
            ipi_spec_dst: nix::libc::in_addr {
                s_addr: u32::from(from).to_be(),
            },
            ipi_addr: nix::libc::in_addr { s_addr: 0 },
        };
        let cmsgs = [ControlMessage::Ipv4PacketInfo(&info)];
        let slices: Vec<[IoSlice<'_>; 1]> = bufs[..n].iter().map(|b| [IoSlice::new(b)]).collect();
        let addrs = vec![to[0]; n];
        match sendmmsg(fd, &mut headers, &slices, &addrs, cmsgs, MsgFlags::empty()) {
            Ok(r) => {
                let k = r.count().max(1) as u64;
                sent += k;
            }
            Err(nix::errno::Errno::EINTR) => {}
            Err(nix::errno::Errno::EAGAIN | nix::errno::Errno::ENOBUFS) => {
                std::thread::sleep(Duration::from_micros(100));
            }
            Err(e) => {
                // The first datagram of the batch failed (its source address, say): skip it.
                errors += 1;
                sent += 1;
                if errors == 1 {
                    eprintln!("pserv-storm: syslog send from {from}: {e}");
                }
            }
        }
    }
    Ok((sent, errors, started.elapsed()))
}

/// The `/v1/events` listener: a thread reading the stream.
struct Listener {
    distinct: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<Tally>,
    t0: Instant,
}

impl Listener {
    /// Connects and subscribes; returns once the stream's head has arrived (every event from
    /// then on reaches it).
    fn start(
        addr: SocketAddr,
        token: Option<&str>,
        run: &str,
        count: u64,
        t0: Instant,
    ) -> anyhow::Result<Self> {
        let mut stream =
            TcpStream::connect(addr).with_context(|| format!("connecting to {addr}"))?;
        stream.set_read_timeout(Some(Duration::from_millis(100)))?;
        let auth = token.map_or_else(String::new, |t| format!("Authorization: Bearer {t}\r\n"));
        write!(
            stream,
            "GET /v1/events HTTP/1.1\r\nHost: {addr}\r\nAccept: text/event-stream\r\n{auth}\r\n"
        )?;
        let mut head = Vec::new();
        let mut buf = [0u8; 65536];
        let deadline = Instant::now() + Duration::from_secs(10);
        let body_at = loop {
            if let Some(i) = head.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            if Instant::now() > deadline {
                bail!("no answer from {addr}/v1/events");
            }
            match stream.read(&mut buf) {
                Ok(0) => bail!("{addr} closed /v1/events"),
                Ok(n) => head.extend_from_slice(&buf[..n]),
                Err(e) if is_timeout(&e) => {}
                Err(e) => return Err(e.into()),
            }
        };
        let head_text = String::from_utf8_lossy(&head[..body_at]).to_ascii_lowercase();
        if !head_text.starts_with("http/1.1 200") {
            bail!(
                "/v1/events answered {}",
                head_text.lines().next().unwrap_or("")
            );
        }
        let mut stream_state = Stream::new(head_text.contains("transfer-encoding: chunked"));
        let mut tally = Tally::new(run, count);
        let first = head[body_at..].to_vec();
        let distinct = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (distinct, stop) = (distinct.clone(), stop.clone());
            std::thread::Builder::new()
                .name("storm-events".into())
                .spawn(move || {
                    let mut feed = |bytes: &[u8], tally: &mut Tally| {
                        let now = t0.elapsed().as_micros() as u64;
                        stream_state.feed(bytes, |line| tally.line(line, now));
                        distinct.store(tally.distinct, Ordering::Relaxed);
                    };
                    feed(&first, &mut tally);
                    while !stop.load(Ordering::Relaxed) {
                        match stream.read(&mut buf) {
                            Ok(0) => break,
                            Ok(n) => feed(&buf[..n], &mut tally),
                            Err(e) if is_timeout(&e) => {}
                            Err(_) => break,
                        }
                    }
                    tally
                })?
        };
        Ok(Self {
            distinct,
            stop,
            thread,
            t0,
        })
    }

    fn finish(self, sent: u64) -> Events {
        self.stop.store(true, Ordering::Relaxed);
        let ended = self.t0.elapsed();
        let tally = self.thread.join().unwrap_or_else(|_| Tally::new("", 0));
        let span = tally.last_us.max(1) as f64 / 1e6;
        Events {
            received: tally.received,
            distinct: tally.distinct,
            duplicates: tally.duplicates,
            lost: sent.saturating_sub(tally.distinct),
            loss_ratio: sent.saturating_sub(tally.distinct) as f64 / sent.max(1) as f64,
            other: tally.other,
            delivered_rate: tally.distinct as f64 / span.min(ended.as_secs_f64()).max(1e-9),
            latency: tally.latency.summary(),
        }
    }
}

fn is_timeout(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
    )
}

/// An HTTP/1.1 response body (chunked or not) cut into lines.
#[derive(Debug)]
pub struct Stream {
    chunked: bool,
    /// Body bytes not yet taken out of their chunk framing.
    raw: Vec<u8>,
    /// Bytes left in the current chunk (chunked only).
    left: usize,
    /// The start of a line not yet ended.
    line: Vec<u8>,
}

impl Stream {
    /// A body, chunked or not.
    pub fn new(chunked: bool) -> Self {
        Self {
            chunked,
            raw: Vec::new(),
            left: 0,
            line: Vec::new(),
        }
    }

    /// Takes the next bytes of the body; calls `on_line` with every complete line (without
    /// its `\n`).
    pub fn feed(&mut self, bytes: &[u8], mut on_line: impl FnMut(&[u8])) {
        if !self.chunked {
            self.lines(bytes, &mut on_line);
            return;
        }
        self.raw.extend_from_slice(bytes);
        let mut at = 0;
        loop {
            if self.left > 0 {
                let take = self.left.min(self.raw.len() - at);
                if take == 0 {
                    break;
                }
                let data = self.raw[at..at + take].to_vec();
                self.lines(&data, &mut on_line);
                at += take;
                self.left -= take;
                continue;
            }
            // A chunk's size line (after the previous chunk's CRLF, if any).
            let rest = &self.raw[at..];
            let rest_start = usize::from(rest.starts_with(b"\r\n")) * 2;
            let Some(end) = rest[rest_start..].windows(2).position(|w| w == b"\r\n") else {
                break;
            };
            let size_line = &rest[rest_start..rest_start + end];
            let hex = size_line.split(|b| *b == b';').next().unwrap_or_default();
            let size = std::str::from_utf8(hex)
                .ok()
                .and_then(|h| usize::from_str_radix(h.trim(), 16).ok())
                .unwrap_or(0);
            at += rest_start + end + 2;
            self.left = size;
            if size == 0 {
                break;
            }
        }
        self.raw.drain(..at);
    }

    fn lines(&mut self, mut data: &[u8], on_line: &mut impl FnMut(&[u8])) {
        while let Some(i) = data.iter().position(|b| *b == b'\n') {
            if self.line.is_empty() {
                on_line(&data[..i]);
            } else {
                self.line.extend_from_slice(&data[..i]);
                on_line(&self.line);
                self.line.clear();
            }
            data = &data[i + 1..];
        }
        self.line.extend_from_slice(data);
    }
}

/// What the listener has seen.
#[derive(Debug)]
pub struct Tally {
    /// `storm RUN seq=`: this run's tag.
    tag: Vec<u8>,
    /// The current event's kind is `log`.
    in_log: bool,
    /// Seen sequence numbers.
    seen: Vec<u64>,
    /// This run's log events.
    pub received: u64,
    /// Distinct ones.
    pub distinct: u64,
    /// Repeated ones.
    pub duplicates: u64,
    /// Other log events.
    pub other: u64,
    /// Send-to-event times.
    pub latency: Samples,
    /// When the last of this run's events arrived, microseconds from the start.
    pub last_us: u64,
}

impl Tally {
    /// Counts run `run`'s `count` messages.
    pub fn new(run: &str, count: u64) -> Self {
        Self {
            tag: format!("storm {run} seq=").into_bytes(),
            in_log: false,
            seen: vec![0; usize::try_from(count.div_ceil(64)).unwrap_or(0)],
            received: 0,
            distinct: 0,
            duplicates: 0,
            other: 0,
            latency: Samples::default(),
            last_us: 0,
        }
    }

    /// One line of the event stream, arrived `now_us` after the start.
    pub fn line(&mut self, line: &[u8], now_us: u64) {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if let Some(kind) = line.strip_prefix(b"event:") {
            self.in_log = kind.trim_ascii() == b"log";
            return;
        }
        if line.is_empty() {
            self.in_log = false;
            return;
        }
        let Some(data) = line.strip_prefix(b"data:") else {
            return;
        };
        if !self.in_log {
            return;
        }
        let Some(at) = data.windows(self.tag.len()).position(|w| w == self.tag) else {
            self.other += 1;
            return;
        };
        let rest = &data[at + self.tag.len()..];
        let (seq, rest) = number(rest);
        let t = rest.strip_prefix(b" t=").map(|r| number(r).0);
        self.received += 1;
        let (word, bit) = ((seq / 64) as usize, seq % 64);
        match self.seen.get_mut(word) {
            Some(w) if *w & (1 << bit) != 0 => self.duplicates += 1,
            Some(w) => {
                *w |= 1 << bit;
                self.distinct += 1;
            }
            None => self.other += 1,
        }
        if let Some(t) = t {
            self.latency
                .record(Duration::from_micros(now_us.saturating_sub(t)));
        }
        self.last_us = now_us;
    }
}

/// The decimal number at the start of `s`, and what follows it.
fn number(s: &[u8]) -> (u64, &[u8]) {
    let n = s.iter().take_while(|b| b.is_ascii_digit()).count();
    let v = s[..n].iter().fold(0u64, |v, d| {
        v.wrapping_mul(10).wrapping_add(u64::from(d - b'0'))
    });
    (v, &s[n..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chunked_event_stream_split_anywhere_gives_the_same_lines() {
        let events = "event: log\ndata: {\"message\":\"storm r1 seq=0 t=5 x\"}\n\n: keep-alive\n\nevent: log\ndata: {\"message\":\"storm r1 seq=1 t=7\"}\n\nevent: snapshot\ndata: {}\n\nevent: log\ndata: {\"message\":\"storm r1 seq=1 t=9\"}\n\nevent: log\ndata: {\"message\":\"other\"}\n\n";
        let mut body = Vec::new();
        for piece in events.as_bytes().chunks(37) {
            body.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
            body.extend_from_slice(piece);
            body.extend_from_slice(b"\r\n");
        }
        for split in [1, 2, 3, 5, 64, body.len()] {
            let mut s = Stream::new(true);
            let mut t = Tally::new("r1", 10);
            for part in body.chunks(split) {
                s.feed(part, |l| t.line(l, 20));
            }
            assert_eq!(
                (t.received, t.distinct, t.duplicates, t.other),
                (3, 2, 1, 1),
                "split {split}"
            );
            assert_eq!(t.latency.summary().samples, 3);
            assert_eq!(t.latency.summary().max_ms, 0.015);
        }
        let mut s = Stream::new(false);
        let mut t = Tally::new("r1", 10);
        s.feed(events.as_bytes(), |l| t.line(l, 20));
        assert_eq!((t.received, t.distinct), (3, 2));
    }

    #[test]
    fn messages_parse_as_pserv_reads_them_and_carry_their_tags() {
        let mut out = Vec::new();
        message(&mut out, "r1", 4, 99, 120);
        assert_eq!(out.len(), 120);
        assert!(out.starts_with(b"<13>Dec  3 14:00:01 anna[4]: storm r1 seq=4 t=99 x"));
        message(&mut out, "r1", 5, 99, 0);
        assert!(out.starts_with(b"<14>1 2026-12-03T14:00:01.000000Z node-5 cloud-init 5 - - "));
        assert!(out.ends_with(b"storm r1 seq=5 t=99 "));
    }
}
