//! The live server under attack on a real link: pserv serves DHCP on port 67 of one end of a
//! veth pair; from the other end, an attacker (this test binary, re-run inside the client
//! namespace) broadcasts malformed packets and floods DORA exchanges from random MACs until the
//! dynamic pool is exhausted, while udhcpc (the reserved node) and dig keep asking. Then pserv
//! is killed with SIGKILL and restarted. Needs root; runs (never skips) when `CI=true`.
//!
//! Every packet stays inside the two namespaces the test creates; they and the processes are
//! removed at the end.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::process::Stdio;
use std::time::{Duration, Instant};

use dhcproto::Decodable;
use dhcproto::v4::{DhcpOption, Message, MessageType};
use pserv_tests::dhcp::Packet;
use pserv_tests::dns::Dig;
use pserv_tests::process::Process;
use pserv_tests::{have_root, have_tool, metric};
use socket2::{Domain, Protocol, Socket, Type};

mod netns;
use netns::{Lab, Pserv, RESERVED_MAC, udhcpc};

/// The dynamic pool of `netns::snapshot`: .200.1 to .200.50.
const POOL: usize = 50;
const ATTACKER_ENV: &str = "PSERV_TEST_ATTACK_PREFIX";

fn ready() -> bool {
    have_root("hostile DHCP traffic in network namespaces")
        && have_tool("udhcpc")
        && have_tool("dig")
        && have_tool("curl")
        && have_tool("ip")
}

#[test]
fn hostile_dhcp_on_a_real_link_loses_nothing_acknowledged() {
    if !ready() {
        return;
    }
    let lab = Lab::new("h", 74);
    let (net, p) = (&lab.net, lab.p());
    let pserv = lab.serve();

    // Before the attack, a well-behaved unknown client gets a dynamic lease.
    const EARLY: &str = "02:00:00:00:74:01";
    net.set_client_mac(EARLY);
    let early = udhcpc(net).expect("a dynamic lease before the attack");

    // The attacker shares the client's link (it forges chaddr; the link's MAC is the
    // reserved node's, for udhcpc).
    net.set_client_mac(RESERVED_MAC);
    net.cli.addr("vcli", &format!("{p}.0.5/16"));
    let attacker = Process::spawn(
        net.cli
            .exec(std::env::current_exe().unwrap())
            .args([
                "attacker_inside_the_client_namespace",
                "--exact",
                "--ignored",
                "--nocapture",
            ])
            .env(ATTACKER_ENV, p)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit()),
    );

    // Meanwhile the reserved node keeps getting its address and DNS keeps answering.
    let server = format!("{p}.0.1:53").parse().unwrap();
    let dig = |name: &str| Dig::new(server).in_netns(&net.cli).short(&[name]);
    for _ in 0..3 {
        assert_eq!(
            udhcpc(net).as_deref(),
            Some(format!("{p}.0.10").as_str()),
            "the reserved node during the attack"
        );
        assert_eq!(dig("node1.lab"), format!("{p}.0.10"));
    }
    let out = attacker.output();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "attacker failed:\n{text}");
    // "ACKED <mac> <ip>" per exchange the attacker completed.
    let acked: BTreeMap<String, String> = text
        .lines()
        .filter_map(|l| l.strip_prefix("ACKED "))
        .map(|l| {
            let (mac, ip) = l.split_once(' ').unwrap();
            (mac.to_owned(), ip.to_owned())
        })
        .collect();
    let mut ips: Vec<&String> = acked.values().collect();
    ips.sort();
    ips.dedup();
    assert_eq!(ips.len(), acked.len(), "an address ACKed twice: {acked:?}");
    assert!(
        !ips.contains(&&early),
        "the early client's address was given away"
    );
    // The attacker took (nearly) every free address; a lost reply may leave one on offer.
    assert!(
        acked.len() >= POOL - 1 - 3 && acked.len() < POOL,
        "{} ACKs from a pool of {POOL} with one lease held",
        acked.len()
    );
    assert_eq!(udhcpc(net).as_deref(), Some(format!("{p}.0.10").as_str()));
    eprintln!("the attacker completed {} exchanges", acked.len());

    // Every drop was counted by reason, on the real interface path too.
    let metrics = pserv.metrics(net);
    let malformed = pserv_tests::dhcp::malformed(|mac| dhcp(MessageType::Discover, mac, 1, &[]));
    let sent =
        |reason: &str| ROUNDS * malformed.iter().filter(|(_, r)| *r == reason).count() as u64;
    for (reason, at_least) in [
        ("PoolExhausted", 100),
        ("Malformed", sent("Malformed")),
        ("BadOptionLength", sent("BadOptionLength")),
        ("NotAClientRequest", sent("NotAClientRequest")),
        ("Oversized", sent("Oversized")),
    ] {
        let n = metric(
            &metrics,
            &format!("pserv_dhcp_dropped_total{{reason=\"{reason}\"}}"),
        );
        assert!(n >= at_least, "{reason}: {n} < {at_least}\n{metrics}");
        eprintln!("dropped as {reason}: {n}");
    }

    // Every ACKed dynamic lease went through the journal.
    let records = metric(&metrics, "pserv_journal_records_total ");
    assert!(
        records > acked.len() as u64,
        "{records} journal records\n{metrics}"
    );

    // Nothing acknowledged is lost: SIGKILL, restart on the same state, and every ACKed lease
    // (the early client's and each of the attacker's) is still there.
    let check = |pserv: &Pserv| {
        let leases = pserv.leases(net);
        let has = |mac: &str, ip: &str| {
            leases.lines().any(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                f.len() >= 2 && f[0] == mac && f[1] == ip
            })
        };
        assert!(has(EARLY, &early), "{EARLY} {early} lost:\n{leases}");
        for (mac, ip) in &acked {
            assert!(has(mac, ip), "{mac} {ip} lost:\n{leases}");
        }
    };
    check(&pserv);
    pserv.kill9();
    let pserv = lab.serve();
    check(&pserv);
    // The early client comes back to a full pool and gets its own address again.
    net.set_client_mac(EARLY);
    assert_eq!(udhcpc(net).as_deref(), Some(early.as_str()));
}

/// How many times each malformed packet is sent.
const ROUNDS: u64 = 20;

/// Not a test: the attacker, run by the test above inside the client namespace (it returns at
/// once anywhere else). It prints "ACKED <mac> <ip>" for each exchange it completes.
#[test]
#[ignore = "the attacker half of hostile_dhcp_on_a_real_link_loses_nothing_acknowledged"]
fn attacker_inside_the_client_namespace() {
    let Ok(prefix) = std::env::var(ATTACKER_ENV) else {
        return;
    };
    let server: Ipv4Addr = format!("{prefix}.0.1").parse().unwrap();
    let sock = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP)).unwrap();
    sock.set_reuse_address(true).unwrap();
    sock.set_broadcast(true).unwrap();
    sock.bind_device(Some(b"vcli")).unwrap();
    sock.bind(&SocketAddr::from(([0, 0, 0, 0], 68)).into())
        .unwrap();
    let sock: std::net::UdpSocket = sock.into();
    sock.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let bcast = SocketAddrV4::new(Ipv4Addr::BROADCAST, 67);

    // Every kind of malformed datagram, ROUNDS times.
    let malformed = pserv_tests::dhcp::malformed(|mac| dhcp(MessageType::Discover, mac, 1, &[]));
    for _ in 0..ROUNDS {
        for (pkt, _) in &malformed {
            sock.send_to(pkt, bcast).unwrap();
        }
        std::thread::sleep(Duration::from_millis(2));
    }

    // A flood of exchanges from random MACs, each completed, until the pool runs dry.
    let mut x: u32 = 0x9e37_79b9;
    let mut next_mac = || {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        let b = x.to_be_bytes();
        [0x02, 0x74, b[0], b[1], b[2], b[3]]
    };
    let mut misses = 0;
    let deadline = Instant::now() + Duration::from_secs(30);
    while misses < 6 && Instant::now() < deadline {
        let mac = next_mac();
        let xid = u32::from_be_bytes([mac[2], mac[3], mac[4], mac[5]]);
        sock.send_to(&dhcp(MessageType::Discover, mac, xid, &[]), bcast)
            .unwrap();
        let Some(offer) = wait_for(&sock, xid, MessageType::Offer) else {
            misses += 1;
            continue;
        };
        let opts = [
            DhcpOption::RequestedIpAddress(offer.yiaddr()),
            DhcpOption::ServerIdentifier(server),
        ];
        sock.send_to(&dhcp(MessageType::Request, mac, xid, &opts), bcast)
            .unwrap();
        if let Some(ack) = wait_for(&sock, xid, MessageType::Ack) {
            let m = mac.map(|b| format!("{b:02x}")).join(":");
            println!("ACKED {m} {}", ack.yiaddr());
        }
    }
    // Then DISCOVERs alone, as fast as a bounded burst goes, against the exhausted pool.
    for _ in 0..2000 {
        let mac = next_mac();
        sock.send_to(&dhcp(MessageType::Discover, mac, 7, &[]), bcast)
            .unwrap();
    }
    println!("ATTACK DONE");
}

/// A client message from `mac` asking for a broadcast reply.
fn dhcp(kind: MessageType, mac: [u8; 6], xid: u32, opts: &[DhcpOption]) -> Vec<u8> {
    Packet::new(kind, mac)
        .xid(xid)
        .broadcast()
        .options(opts.iter().cloned())
        .bytes()
}

/// The reply of type `kind` to `xid`, within half a second.
fn wait_for(sock: &std::net::UdpSocket, xid: u32, kind: MessageType) -> Option<Message> {
    let deadline = Instant::now() + Duration::from_millis(500);
    let mut buf = [0u8; 1500];
    while Instant::now() < deadline {
        let Ok(n) = sock.recv(&mut buf) else {
            continue;
        };
        if let Ok(m) = Message::from_bytes(&buf[..n])
            && m.xid() == xid
            && m.opts().msg_type() == Some(kind)
        {
            return Some(m);
        }
    }
    None
}
