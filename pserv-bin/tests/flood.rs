//! Leases end on time while pserv runs, and memory follows: a flood of 200,000 DISCOVERs from
//! random MACs fills the lease set with offers; once the offer hold has passed, the timer has
//! ended every one (each end announced on `/v1/events`), and the lease count and the process's
//! resident memory are back near where they started (within a quarter of what the flood cost).

#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader, Write};
use std::net::{Ipv4Addr, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

use dhcproto::v4::MessageType;
use pserv_tests::dhcp::Packet;

mod local;
use local::Server;

const FLOOD: u32 = 200_000;
const RELAY: Ipv4Addr = Ipv4Addr::new(10, 64, 0, 1);

/// One subnet with a million dynamic addresses, so no DISCOVER of the flood finds the pool
/// exhausted.
const SNAPSHOT: &str = r#"{"generation": 1, "subnets": [{"cidr": "10.64.0.0/12",
    "router": "10.64.0.1", "lease_seconds": 3600,
    "dynamic": [{"start": "10.64.1.0", "end": "10.79.255.254"}]}]}"#;

fn discover(n: u32) -> Vec<u8> {
    // Distinct, scattered MACs (a multiplicative hash of n).
    let h = n.wrapping_mul(0x9E37_79B9).to_be_bytes();
    let mac = [0x02, 0x5a, h[0], h[1], h[2], h[3]];
    Packet::new(MessageType::Discover, mac).relay(RELAY).bytes()
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

fn status(s: &Server) -> serde_json::Value {
    ureq::get(&s.url("/v1/status"))
        .call()
        .unwrap()
        .body_mut()
        .read_json()
        .unwrap()
}

#[test]
fn a_discover_flood_ends_on_time_and_memory_returns() {
    let dir = tempfile::tempdir().unwrap();
    let snap = dir.path().join("s.json");
    std::fs::write(&snap, SNAPSHOT).unwrap();
    let s = Server::start(&[
        "--state-dir",
        dir.path().to_str().unwrap(),
        "--snapshot",
        snap.to_str().unwrap(),
    ]);
    let pid = s.process.id();

    // Listen to the event stream before the flood: ends must show up on it.
    let control = s.control.trim_start_matches("http://").to_owned();
    let mut events = TcpStream::connect(&control).unwrap();
    events
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    write!(
        events,
        "GET /v1/events HTTP/1.1\r\nHost: pserv\r\nAccept: text/event-stream\r\n\r\n"
    )
    .unwrap();

    std::thread::sleep(Duration::from_millis(300));
    let baseline = rss_kib(pid);

    // The flood, paced so that neither side's socket buffer overflows for long; replies are
    // read and thrown away.
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_nonblocking(true).unwrap();
    let mut buf = [0u8; 1500];
    let started = Instant::now();
    for n in 0..FLOOD {
        sock.send_to(&discover(n), s.dhcp).unwrap();
        if n % 128 == 127 {
            std::thread::sleep(Duration::from_millis(2));
            while sock.recv(&mut buf).is_ok() {}
        }
    }
    let flood_took = started.elapsed();
    // Wait for the server to have taken every datagram it is going to take.
    let mut offered = 0;
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(500));
        while sock.recv(&mut buf).is_ok() {}
        let now = status(&s)["leases"]["offered"].as_u64().unwrap();
        if now == offered && now > 0 {
            break;
        }
        offered = now;
    }
    let peak = rss_kib(pid);
    eprintln!(
        "flood of {FLOOD} sent in {flood_took:?}: {offered} offers held; RSS {baseline} KiB -> {peak} KiB"
    );
    assert!(
        offered >= u64::from(FLOOD) * 9 / 10,
        "only {offered} of {FLOOD} DISCOVERs were offered an address"
    );

    // The offers end 30 s after they were made: the timer removes them while pserv runs.
    let deadline = started + flood_took + Duration::from_secs(30 + 15);
    loop {
        let st = status(&s);
        let left =
            st["leases"]["offered"].as_u64().unwrap() + st["leases"]["bound"].as_u64().unwrap();
        if left == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{left} leases still listed after the offer hold"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    let listed: Vec<serde_json::Value> = ureq::get(&s.url("/v1/leases"))
        .call()
        .unwrap()
        .body_mut()
        .read_json()
        .unwrap();
    assert!(listed.is_empty(), "{} leases listed", listed.len());
    assert_eq!(s.metric("pserv_leases{state=\"offered\"}"), 0);
    let grown = peak.saturating_sub(baseline);
    assert!(
        grown > 10_000,
        "the flood should have cost memory to hold: {baseline} -> {peak} KiB"
    );
    // The allocator's background threads hand freed pages back within seconds (jemalloc's
    // decay is 10 s).
    let deadline = Instant::now() + Duration::from_secs(40);
    let mut after = rss_kib(pid);
    while after > baseline + grown / 4 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(500));
        after = rss_kib(pid);
    }
    eprintln!("after the offer hold: RSS {after} KiB (baseline {baseline}, peak {peak})");
    assert!(
        after <= baseline + grown / 4,
        "memory did not return: baseline {baseline} KiB, peak {peak} KiB, after {after} KiB"
    );

    // The stream announced the ends.
    let mut r = BufReader::new(events);
    let mut line = String::new();
    let mut expired = false;
    while r.read_line(&mut line).unwrap() > 0 {
        if line.starts_with("event: expired") {
            expired = true;
            break;
        }
        line.clear();
    }
    assert!(expired, "no `expired` event on /v1/events");
}
