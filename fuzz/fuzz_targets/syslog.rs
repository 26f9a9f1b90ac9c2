//! Syslog: the whole input as one datagram through the parser, then split at 0xfe bytes into
//! datagrams from a few sources at advancing times through a receiver with small limits.
//! Invariants: never a panic; malformed exactly when there is no facility and severity, and
//! then no hostname or app either; truncated exactly when the datagram is over 8 KiB; text
//! that was valid UTF-8 comes out as pieces of the datagram, with no trailing newline or NUL;
//! every event encodes as JSON and keeps its message; every datagram the receiver takes is an
//! event or a counted drop, and the source table stays within its bound.
#![no_main]

use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use pserv_syslog::{LogLine, Limits, MAX_MESSAGE, Message, Receiver, parse};

fn check(m: &Message<'_>, datagram: &[u8]) {
    assert_eq!(m.malformed, m.facility.is_none());
    assert_eq!(m.malformed, m.severity.is_none());
    if m.malformed {
        assert!(m.hostname.is_none() && m.app.is_none());
    }
    assert_eq!(m.truncated, datagram.len() > MAX_MESSAGE);
    let kept = &datagram[..datagram.len().min(MAX_MESSAGE)];
    assert!(m.message.len() <= 3 * kept.len());
    assert!(!m.message.ends_with(['\n', '\r', '\0']));
    if let Ok(text) = std::str::from_utf8(kept) {
        assert!(text.contains(&*m.message));
        for field in [&m.hostname, &m.app].into_iter().flatten() {
            assert!(!field.is_empty() && text.contains(&**field));
        }
    }
    let line = LogLine::new(m, IpAddr::V4(Ipv4Addr::LOCALHOST), None, None);
    let json = serde_json::to_value(&line).expect("a log line encodes");
    assert_eq!(json["event"], "log");
    assert_eq!(json["message"].as_str(), Some(&*m.message));
}

fuzz_target!(|data: &[u8]| {
    check(&parse(data), data);

    let limits = Limits {
        rate: 5.0,
        burst: 3,
        max_sources: 4,
    };
    let mut r = Receiver::new(limits);
    let mut now = Instant::now();
    let mut handled = 0;
    for part in data.split(|b| *b == 0xfe) {
        // The first byte picks the source (one of eight) and how long since the last datagram.
        let Some((&ctl, datagram)) = part.split_first() else {
            continue;
        };
        now += Duration::from_millis(u64::from(ctl >> 3) * 40);
        let source = IpAddr::V4(Ipv4Addr::new(10, 0, 0, ctl & 7));
        handled += 1;
        if let Ok(m) = r.handle(now, source, datagram) {
            check(&m, datagram);
        }
    }
    let c = r.counters();
    let load = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
    let dropped: u64 = c.dropped.iter().map(load).sum();
    assert_eq!(load(&c.received), handled);
    assert_eq!(load(&c.received), load(&c.events) + dropped);
    assert!(load(&c.sources) <= 4);
});
