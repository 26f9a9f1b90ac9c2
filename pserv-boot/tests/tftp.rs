//! The TFTP service on loopback: pserv's own client code and curl (a real peer) fetch a boot
//! file with negotiated options and get its exact bytes; refusals carry the right error codes
//! and are counted; a stranger on a transfer's port gets ERROR 5; admission caps per client.

#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use pserv_boot::tftp::packet::{self, Packet};
use pserv_boot::tftp::service::{self, Config, Counters, DropReason, Fetched, Outcome, serve};
use pserv_boot::tree::BootDir;
use pserv_boot::vtree::Tree;
use tokio::net::UdpSocket;
use tokio_util::sync::CancellationToken;

fn content(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 31 + i / 1000) as u8).collect()
}

struct Running {
    addr: SocketAddr,
    counters: Arc<Counters>,
    events: Arc<std::sync::Mutex<Vec<Fetched>>>,
    stop: CancellationToken,
    _dir: tempfile::TempDir,
}

async fn start(config: Config) -> Running {
    start_on("127.0.0.1:0", config).await
}

/// A boot directory with `ipxe.efi` (200,003 bytes) and `pxelinux.cfg/default`, as a tree.
fn boot_tree() -> (tempfile::TempDir, Arc<Tree>) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ipxe.efi"), content(200_003)).unwrap();
    std::fs::create_dir(dir.path().join("pxelinux.cfg")).unwrap();
    std::fs::write(dir.path().join("pxelinux.cfg/default"), b"DEFAULT local\n").unwrap();
    let tree = Arc::new(Tree::new(
        Some(BootDir::new(dir.path()).unwrap()),
        Arc::new(pserv_core::Store::new()),
        Arc::new(pserv_core::lease::LeaseBoard::new()),
        pserv_boot::vtree::Urls {
            http_port: 5248,
            syslog: None,
        },
        Arc::new(|_: pserv_boot::vtree::Served| {}),
    ));
    (dir, tree)
}

async fn start_on(listen: &str, config: Config) -> Running {
    let (dir, tree) = boot_tree();
    let sock = UdpSocket::bind(listen).await.unwrap();
    let addr = sock.local_addr().unwrap();
    let counters = Arc::new(Counters::default());
    let stop = CancellationToken::new();
    let events = Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = events.clone();
    let on_fetched = Arc::new(move |f: &Fetched| seen.lock().unwrap().push(f.clone()));
    tokio::spawn(serve(
        sock,
        tree,
        config,
        counters.clone(),
        on_fetched,
        stop.clone(),
    ));
    Running {
        addr,
        counters,
        events,
        stop,
        _dir: dir,
    }
}

async fn recv(s: &UdpSocket) -> (Vec<u8>, SocketAddr) {
    let mut buf = vec![0u8; 70_000];
    let (n, from) = tokio::time::timeout(Duration::from_secs(5), s.recv_from(&mut buf))
        .await
        .expect("a packet in time")
        .unwrap();
    buf.truncate(n);
    (buf, from)
}

/// Fetches `name` with `options`, ACKing the last block of each window; the bytes.
async fn fetch(server: SocketAddr, name: &str, options: &[(&str, &str)], window: usize) -> Vec<u8> {
    let c = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let mut out = Vec::new();
    packet::rrq(name, options, &mut out);
    c.send_to(&out, server).await.unwrap();
    let (first, tid) = recv(&c).await;
    let mut blksize = 512;
    let mut pending = Some(first);
    if let Some(Ok(Packet::Oack)) = pending.as_deref().map(packet::parse) {
        let body = String::from_utf8(pending.take().unwrap()[2..].to_vec()).unwrap();
        let fields: Vec<&str> = body.split('\0').collect();
        for kv in fields.chunks(2) {
            if kv[0] == "blksize" {
                blksize = kv[1].parse().unwrap();
            }
        }
        packet::ack(0, &mut out);
        c.send_to(&out, tid).await.unwrap();
    }
    let mut data = Vec::new();
    let mut expect: u16 = 1;
    let mut in_window = 0;
    loop {
        let p = match pending.take() {
            Some(p) => p,
            None => recv(&c).await.0,
        };
        let Ok(Packet::Data { block, data: d }) = packet::parse(&p) else {
            panic!("expected DATA, got {p:?}");
        };
        assert_eq!(block, expect);
        data.extend_from_slice(d);
        expect = expect.wrapping_add(1);
        in_window += 1;
        let last = d.len() < blksize;
        if last || in_window == window {
            packet::ack(block, &mut out);
            c.send_to(&out, tid).await.unwrap();
            in_window = 0;
        }
        if last {
            return data;
        }
    }
}

#[tokio::test]
async fn files_arrive_whole_with_negotiated_options() {
    let s = start(Config::default()).await;
    let opts = [("blksize", "1468"), ("tsize", "0"), ("windowsize", "8")];
    assert_eq!(fetch(s.addr, "/ipxe.efi", &opts, 8).await, content(200_003));
    assert_eq!(fetch(s.addr, "ipxe.efi", &[], 1).await, content(200_003));
    assert_eq!(
        fetch(s.addr, "pxelinux.cfg\\default", &[], 1).await,
        b"DEFAULT local\n"
    );
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(s.counters.completed.load(Ordering::Relaxed), 3);
    assert_eq!(s.counters.bytes.load(Ordering::Relaxed), 2 * 200_003 + 14);
    assert_eq!(s.counters.active.load(Ordering::Relaxed), 0);
    // Each fetch is a boot-progress event with its file, size and bytes.
    let events = s.events.lock().unwrap().clone();
    let summary: Vec<(&str, u64, u64, Outcome)> = events
        .iter()
        .map(|e| (e.file.as_str(), e.size, e.bytes, e.outcome))
        .collect();
    assert_eq!(
        summary,
        vec![
            ("/ipxe.efi", 200_003, 200_003, Outcome::Completed),
            ("ipxe.efi", 200_003, 200_003, Outcome::Completed),
            ("pxelinux.cfg\\default", 14, 14, Outcome::Completed),
        ]
    );
    s.stop.cancel();
}

#[tokio::test]
async fn the_started_service_counts_into_its_metrics_and_stops_on_its_token() {
    let (_dir, tree) = boot_tree();
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let stop = CancellationToken::new();
    let running = service::start(
        sock,
        tree,
        Config::default(),
        Arc::new(|_: &Fetched| {}),
        stop.clone(),
    )
    .unwrap();
    let at = running.addrs[0];
    assert_eq!(fetch(at, "ipxe.efi", &[], 1).await, content(200_003));
    tokio::time::sleep(Duration::from_millis(50)).await;
    let mut registry = prometheus_client::registry::Registry::default();
    registry.register_collector(running.metrics);
    let mut text = String::new();
    prometheus_client::encoding::prometheus_text::encode(&mut text, &registry).unwrap();
    for line in [
        "pserv_tftp_transfers_total{outcome=\"started\"} 1",
        "pserv_tftp_transfers_total{outcome=\"completed\"} 1",
        "pserv_tftp_active 0",
        "pserv_tftp_bytes_total 200003",
        "pserv_tftp_dropped_total{reason=\"not_found\"} 0",
        "pserv_tftp_transfer_seconds_count 1",
    ] {
        assert!(text.contains(line), "{line} in\n{text}");
    }
    stop.cancel();
    tokio::time::timeout(Duration::from_secs(5), running.join)
        .await
        .expect("the join resolves at shutdown")
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_fetches_a_boot_file() {
    // (pserv-boot does not depend on the workspace's test helpers: the same rule, inline.)
    let found = std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join("curl").is_file()));
    if !found {
        assert!(
            std::env::var("CI").is_err(),
            "curl is required in CI (.ci/run installs it)"
        );
        eprintln!("SKIP: curl not found; install it (see .ci/run) to run this test");
        return;
    }
    let s = start(Config::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("got");
    let url = format!("tftp://{}/ipxe.efi", s.addr);
    let status = tokio::process::Command::new("curl")
        .args(["-s", "--tftp-blksize", "1468", "-o"])
        .arg(&out)
        .arg(&url)
        .status()
        .await
        .unwrap();
    assert!(status.success(), "curl {url}: {status}");
    assert_eq!(std::fs::read(&out).unwrap(), content(200_003));
    s.stop.cancel();
}

#[tokio::test]
async fn refusals_carry_their_error_codes_and_are_counted() {
    let s = start(Config::default()).await;
    let c = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let mut out = Vec::new();
    for (name, code) in [("nope", 1u16), ("../etc/passwd", 2), ("pxelinux.cfg", 1)] {
        packet::rrq(name, &[], &mut out);
        c.send_to(&out, s.addr).await.unwrap();
        let (p, _) = recv(&c).await;
        assert!(
            matches!(packet::parse(&p), Ok(Packet::Error { code: got, .. }) if got == code),
            "{name}"
        );
    }
    c.send_to(b"\x00\x02boot.img\x00octet\x00", s.addr)
        .await
        .unwrap();
    let (p, _) = recv(&c).await;
    assert!(
        matches!(packet::parse(&p), Ok(Packet::Error { code: 2, .. })),
        "WRQ refused"
    );
    c.send_to(b"\x00\x09junk", s.addr).await.unwrap();
    c.send_to(&[0, 4, 0, 1], s.addr).await.unwrap();
    // Still serving.
    assert_eq!(
        fetch(s.addr, "pxelinux.cfg/default", &[], 1).await,
        b"DEFAULT local\n"
    );
    let drops: Vec<(DropReason, u64)> = s.counters.drops().filter(|(_, n)| *n > 0).collect();
    assert_eq!(
        drops,
        vec![
            (DropReason::Malformed, 1),
            (DropReason::NotARequest, 1),
            (DropReason::WriteRefused, 1),
            (DropReason::BadName, 1),
            (DropReason::NotFound, 2),
        ]
    );
    // The last fetch's event follows its final ACK, which the client sent as it returned.
    for _ in 0..200 {
        if s.events.lock().unwrap().len() == 5 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let outcomes: Vec<Outcome> = s.events.lock().unwrap().iter().map(|e| e.outcome).collect();
    assert_eq!(
        outcomes,
        vec![
            Outcome::NotFound,
            Outcome::Refused,
            Outcome::NotFound,
            Outcome::Refused,
            Outcome::Completed
        ]
    );
    s.stop.cancel();
}

#[tokio::test]
async fn strangers_get_unknown_tid_and_clients_are_capped() {
    let s = start(Config {
        max_per_client: 1,
        ..Config::default()
    })
    .await;
    let c = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let mut out = Vec::new();
    packet::rrq("ipxe.efi", &[], &mut out);
    c.send_to(&out, s.addr).await.unwrap();
    let (first, tid) = recv(&c).await;
    assert!(matches!(
        packet::parse(&first),
        Ok(Packet::Data { block: 1, .. })
    ));
    // The same request again (its reply was slow): ignored, not a second transfer.
    c.send_to(&out, s.addr).await.unwrap();
    // Another port of the same machine: over its cap of one.
    let other = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    other.send_to(&out, s.addr).await.unwrap();
    let (p, _) = recv(&other).await;
    assert!(matches!(
        packet::parse(&p),
        Ok(Packet::Error { code: 0, .. })
    ));
    // A stranger on the transfer's port.
    let mut a = Vec::new();
    packet::ack(1, &mut a);
    other.send_to(&a, tid).await.unwrap();
    let (p, from) = recv(&other).await;
    assert_eq!(from, tid);
    assert!(matches!(
        packet::parse(&p),
        Ok(Packet::Error { code: 5, .. })
    ));
    // The real client carries on.
    c.send_to(&a, tid).await.unwrap();
    let (p, _) = recv(&c).await;
    assert!(matches!(
        packet::parse(&p),
        Ok(Packet::Data { block: 2, .. })
    ));
    let n = |d: DropReason| s.counters.drops().find(|(x, _)| *x == d).unwrap().1;
    assert_eq!(
        (
            n(DropReason::Repeated),
            n(DropReason::ClientBusy),
            n(DropReason::UnknownTid)
        ),
        (1, 1, 1)
    );
    assert_eq!(s.counters.started.load(Ordering::Relaxed), 1);
    s.stop.cancel();
}

/// On a wildcard address, a transfer answers from the address its request was sent to (a host
/// with several addresses; here 127.0.0.2 on loopback), not from whichever one routing picks.
#[tokio::test]
async fn a_transfer_answers_from_the_address_it_was_asked_on() {
    let s = start_on("0.0.0.0:0", Config::default()).await;
    let asked: SocketAddr = format!("127.0.0.2:{}", s.addr.port()).parse().unwrap();
    let c = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let mut out = Vec::new();
    packet::rrq("pxelinux.cfg/default", &[], &mut out);
    c.send_to(&out, asked).await.unwrap();
    let (p, from) = recv(&c).await;
    assert!(matches!(
        packet::parse(&p),
        Ok(Packet::Data { block: 1, .. })
    ));
    assert_eq!(
        from.ip(),
        asked.ip(),
        "DATA from the address the request went to"
    );
    assert_ne!(from.port(), asked.port(), "from the transfer's own port");
    s.stop.cancel();
}

/// Issue 27: TFTP on a dual-stack wildcard (`[::]`) serves IPv6 and IPv4 clients, each
/// transfer answering from the address its request went to.
#[tokio::test]
async fn a_dual_stack_socket_serves_both_families_from_the_address_asked() {
    let s = start_on("[::]:0", Config::default()).await;
    for (client, asked) in [("[::1]:0", "[::1]"), ("127.0.0.1:0", "127.0.0.2")] {
        let asked: SocketAddr = format!("{asked}:{}", s.addr.port()).parse().unwrap();
        let c = UdpSocket::bind(client).await.unwrap();
        let mut out = Vec::new();
        packet::rrq("pxelinux.cfg/default", &[], &mut out);
        c.send_to(&out, asked).await.unwrap();
        let (p, from) = recv(&c).await;
        assert!(
            matches!(packet::parse(&p), Ok(Packet::Data { block: 1, .. })),
            "{asked}"
        );
        assert_eq!(
            from.ip().to_canonical(),
            asked.ip(),
            "DATA from the address asked"
        );
        let mut ack = Vec::new();
        packet::ack(1, &mut ack);
        c.send_to(&ack, from).await.unwrap();
    }
    s.stop.cancel();
}
