//! The live server under attack, on loopback: garbage, truncated and oversized packets, wrong
//! opcodes and hardware types, option overflows, DNS compression loops and pointer chains, a
//! DHCP flood from random MACs that exhausts the pool, garbage and oversized control bodies.
//! Throughout, well-behaved clients keep getting correct answers, and every drop is counted.

#![allow(clippy::unwrap_used)]

use std::io::Read;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::process::Command;
use std::time::Duration;

use dhcproto::v4::{DhcpOption, MessageType};

mod local;
use local::{PSERV, Server};
use pserv_tests::dhcp::Packet;
use pserv_tests::dns::{Recursion, a_answer, a_query, framed, resolve_a};

const RELAY: Ipv4Addr = Ipv4Addr::new(10, 20, 0, 1);

/// pserv on loopback with its journal in `state`.
fn start(state: &std::path::Path) -> Server {
    Server::start(&["--state-dir", state.to_str().unwrap()])
}

/// [`start`], by a shell that first lowers the soft open-file limit to `soft`.
fn start_with_soft_nofile(state: &std::path::Path, soft: u32) -> Server {
    let mut sh = Command::new("sh");
    sh.args([
        "-c",
        &format!("ulimit -Sn {soft} && exec \"$0\" \"$@\""),
        PSERV,
    ]);
    Server::start_in(sh, &["--state-dir", state.to_str().unwrap()])
}

fn udp() -> UdpSocket {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    s
}

/// A relayed DHCP message from `mac`.
fn dhcp(kind: MessageType, mac: [u8; 6], opts: Vec<DhcpOption>) -> Vec<u8> {
    Packet::new(kind, mac).relay(RELAY).options(opts).bytes()
}

/// DISCOVER + REQUEST for `mac`; the ACKed address, if any.
fn dora(server: SocketAddr, mac: [u8; 6]) -> Option<Ipv4Addr> {
    pserv_tests::dhcp::relayed_dora(&udp(), server, mac, RELAY, vec![])
}

const RESERVED: [u8; 6] = [0x52, 0x54, 0x00, 0x12, 0x34, 0x56]; // aaa: 10.20.0.10

#[test]
fn hostile_traffic_never_takes_the_service_down() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path());
    assert_eq!(resolve_a(s.dns, "aaa.maas"), Ok([10, 20, 0, 10]));
    assert_eq!(dora(s.dhcp, RESERVED), Some(Ipv4Addr::new(10, 20, 0, 10)));

    // DNS: garbage, truncation, a response sent to us, a compression loop, a pointer chain,
    // an oversized datagram, a wrong opcode.
    let attacker = udp();
    let mut junk: Vec<Vec<u8>> = vec![
        vec![],
        vec![0; 5],
        vec![0xff; 12],
        vec![0x12, 0x34, 0x80, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 1],
        // qname = pointer to itself
        vec![
            0x12, 0x35, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0xc0, 12, 0, 1, 0, 1,
        ],
        vec![0x43, 0x21, 0x28, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 1],
        vec![0xab; 4000],
    ];
    // A chain of pointers, each to the next.
    let mut chain = vec![0x12, 0x36, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0];
    for k in 0..100u16 {
        let next = 12 + 2 * (k + 1);
        chain.extend_from_slice(&(0xc000 | next).to_be_bytes());
    }
    chain.extend_from_slice(&[0, 0, 1, 0, 1]);
    junk.push(chain);
    // A valid query padded past the 4,096-byte receive buffer: cut short, dropped, counted.
    let mut big = a_query(0x1237, "aaa.maas", Recursion::NotDesired);
    big.resize(5000, 0);
    junk.push(big);
    for _ in 0..20 {
        for j in &junk {
            attacker.send_to(j, s.dns).unwrap();
        }
    }
    assert_eq!(
        resolve_a(s.dns, "aaa.maas"),
        Ok([10, 20, 0, 10]),
        "DNS still answers"
    );

    // DHCP: every kind of malformed datagram, 20 times.
    let malformed = pserv_tests::dhcp::malformed(|mac| dhcp(MessageType::Discover, mac, vec![]));
    for _ in 0..20 {
        for (p, _) in &malformed {
            attacker.send_to(p, s.dhcp).unwrap();
        }
    }

    // A flood of DISCOVERs from random MACs: more than the pool (1,022 addresses) holds.
    let flood = udp();
    let mut x: u32 = 0x1234_5678;
    for _ in 0..1500 {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        let b = x.to_be_bytes();
        flood
            .send_to(
                &dhcp(
                    MessageType::Discover,
                    [2, 0xf1, b[0], b[1], b[2], b[3]],
                    vec![],
                ),
                s.dhcp,
            )
            .unwrap();
        if x.is_multiple_of(64) {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    std::thread::sleep(Duration::from_millis(300));

    // The reserved node still gets its address; DNS still answers; the pool ran dry and the
    // malformed packets were counted by reason.
    assert_eq!(dora(s.dhcp, RESERVED), Some(Ipv4Addr::new(10, 20, 0, 10)));
    assert_eq!(resolve_a(s.dns, "aaa.maas"), Ok([10, 20, 0, 10]));
    assert!(s.metric("pserv_dhcp_dropped_total{reason=\"PoolExhausted\"}") > 0);
    for (_, reason) in &malformed {
        let sent = 20 * malformed.iter().filter(|(_, r)| r == reason).count() as u64;
        let n = s.metric(&format!("pserv_dhcp_dropped_total{{reason=\"{reason}\"}}"));
        assert!(n >= sent, "{reason}: {n} < {sent}");
    }
    assert!(s.metric("pserv_dns_responses_total{rcode=\"formerr\"}") > 0);
    assert!(s.metric("pserv_dns_dropped_total{reason=\"unanswerable\"}") > 0);
    assert!(s.metric("pserv_dns_responses_total{rcode=\"notimp\"}") > 0);
    assert!(s.metric("pserv_dns_dropped_total{reason=\"oversized\"}") >= 20);

    // The control API: garbage and oversized bodies change nothing.
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let url = format!("{}/v1/snapshot", s.control);
    for body in [
        &b"\x00\xff garbage"[..],
        b"{",
        b"[]",
        b"{\"generation\": -1}",
        b"null",
    ] {
        let r = agent.put(&url).send(body).unwrap();
        assert_eq!(r.status().as_u16(), 422);
    }
    // An oversized body is refused from its Content-Length, before it is read: send the
    // headers of a 300 MiB body and a first megabyte, and read the answer.
    let addr = s.control.trim_start_matches("http://").to_owned();
    let mut tcp = std::net::TcpStream::connect(&addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    use std::io::Write;
    write!(
        tcp,
        "PUT /v1/snapshot HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        300u64 << 20
    )
    .unwrap();
    let _ = tcp.write_all(&vec![b'['; 1 << 20]);
    let mut head = [0u8; 12];
    tcp.read_exact(&mut head).unwrap();
    assert_eq!(&head, b"HTTP/1.1 413", "{}", String::from_utf8_lossy(&head));
    let mut r = agent
        .get(&format!("{}/v1/status", s.control))
        .call()
        .unwrap();
    let mut body = String::new();
    r.body_mut().as_reader().read_to_string(&mut body).unwrap();
    assert!(body.contains("\"generation\":1"), "{body}");
    assert_eq!(resolve_a(s.dns, "aaa.maas"), Ok([10, 20, 0, 10]));
}

/// A flood of stalled DNS-over-TCP connections (each promising a 65,535-byte query and sending
/// nothing), more than a default soft limit of open files and more than pserv's TCP cap:
/// pserv raised its limit at start and closes stalled connections to make room, so TCP and
/// UDP DNS, DHCP with its journal, and the control API all keep working.
#[test]
fn an_idle_tcp_connection_flood_does_not_exhaust_descriptors() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    // Exactly the cap: the TCP query below finds every slot held by a stalled connection.
    let flood = pserv_dns::tcp::Limits::default().max_connections;
    assert!(
        flood >= 1024,
        "more than a default soft limit of descriptors"
    );
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
    // Both this process and pserv (which inherits the hard limit) hold one end of each
    // connection; root may raise a low hard limit.
    let need = hard.max(4096);
    if let Err(e) = setrlimit(Resource::RLIMIT_NOFILE, need, need) {
        assert!(
            !pserv_tests::in_ci(),
            "cannot raise the open-file limit to {need}: {e}"
        );
        eprintln!("SKIP: the open-file limit ({hard}) is too low for this test, and {e}");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let s = start_with_soft_nofile(dir.path(), 1024);
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", s.process.id())).unwrap();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap();
    let f: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(f[3], f[4], "soft limit raised to the hard one: {line}");

    let mut conns = Vec::new();
    for _ in 0..flood {
        use std::io::Write;
        // Out of descriptors, a server stops accepting and connects wait in its backlog.
        let mut c = std::net::TcpStream::connect_timeout(&s.dns, Duration::from_secs(2))
            .unwrap_or_else(|e| panic!("connection {} not accepted: {e}", conns.len()));
        // The server may already have closed earlier ones to make room.
        let _ = c.write_all(&[0xff, 0xff]);
        conns.push(c);
    }
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(
        s.metric("pserv_dns_tcp_open "),
        flood as u64,
        "all held open"
    );
    // Everything still works while they are held open.
    assert_eq!(resolve_a(s.dns, "aaa.maas"), Ok([10, 20, 0, 10]));
    assert_eq!(resolve_tcp(s.dns, "aaa.maas"), Some([10, 20, 0, 10]));
    let ip = dora(s.dhcp, [2, 0, 0, 0x7c, 0, 1]).expect("a dynamic lease, journaled");
    assert!(ip.octets()[..2] == [10, 20], "{ip}");
    assert!(s.metric("pserv_journal_records_total ") >= 1);
    // At the cap, the stalled connections were closed to make room, counted; none was
    // refused.
    let evicted = "pserv_dns_tcp_connections_total{outcome=\"evicted\"}";
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while s.metric(evicted) < flood as u64 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(s.metric(evicted), flood as u64);
    assert_eq!(
        s.metric("pserv_dns_tcp_connections_total{outcome=\"over_limit\"}"),
        0
    );
    drop(conns);
    let _ = setrlimit(Resource::RLIMIT_NOFILE, soft, hard);
}

/// [`resolve_a`] over TCP.
fn resolve_tcp(server: SocketAddr, name: &str) -> Option<[u8; 4]> {
    use std::io::Write;
    let q = framed(&a_query(0x7778, name, Recursion::NotDesired));
    // Promptly: a server out of descriptors answers only after idle connections time out.
    let mut c = std::net::TcpStream::connect_timeout(&server, Duration::from_secs(2)).ok()?;
    c.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    c.write_all(&q).ok()?;
    let mut len = [0u8; 2];
    c.read_exact(&mut len).ok()?;
    let mut buf = vec![0u8; usize::from(u16::from_be_bytes(len))];
    c.read_exact(&mut buf).ok()?;
    a_answer(&buf).ok()
}

/// Slowloris on the control API: a client that sends part of its request headers and stops is
/// cut off after the header timeout (10 s); others are served meanwhile.
#[test]
fn a_control_client_trickling_headers_is_cut_off() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path());
    let addr = s.control.trim_start_matches("http://").to_owned();
    let mut slow = std::net::TcpStream::connect(&addr).unwrap();
    slow.write_all(b"GET /v1/status HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    slow.set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let t = std::time::Instant::now();
    assert!(s.metric("pserv_ready ") == 1, "served meanwhile");
    let mut buf = [0u8; 512];
    let n = slow.read(&mut buf).unwrap_or(0);
    let waited = t.elapsed();
    assert!(
        waited >= Duration::from_secs(8) && waited < Duration::from_secs(15),
        "closed after {waited:?}"
    );
    // Closed, or told 408 and closed: never the status.
    assert!(!String::from_utf8_lossy(&buf[..n]).contains("generation"));
}
