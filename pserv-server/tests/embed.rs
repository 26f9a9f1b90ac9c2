//! The library entry point, as an embedder uses it (`examples/embed.rs`): the whole server in
//! the test's own tokio runtime, on loopback ports the kernel picks; DHCP, DNS and the control
//! API answering from one table and one lease owner; a clean shutdown that flushes the journal.

#![allow(clippy::unwrap_used)]

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use dhcproto::v4::DhcpOption;
use pserv_core::journal::{Journal, Options};
use pserv_server::config::{File, Overrides};

const RELAY: Ipv4Addr = Ipv4Addr::new(10, 20, 0, 1);

fn config(state: &std::path::Path) -> pserv_server::Config {
    pserv_server::Config::resolve(
        File::default(),
        Overrides {
            dns_listen: vec!["127.0.0.1:0".parse().unwrap()],
            dhcp_listen: Some("127.0.0.1:0".parse().unwrap()),
            control_listen: Some("127.0.0.1:0".parse().unwrap()),
            state_dir: Some(state.to_owned()),
            ..Overrides::default()
        },
    )
    .unwrap()
}

fn udp() -> UdpSocket {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    s
}

/// DISCOVER + REQUEST with a hostname; the ACKed address.
fn dora(server: SocketAddr, mac: [u8; 6], hostname: &str) -> Ipv4Addr {
    let name = DhcpOption::Hostname(hostname.into());
    pserv_tests::dhcp::relayed_dora(&udp(), server, mac, RELAY, vec![name])
        .expect("an OFFER, then an ACK")
}

/// A DNS A query; the address of a one-answer NOERROR reply.
fn resolve(server: SocketAddr, name: &str) -> Option<Ipv4Addr> {
    pserv_tests::dns::resolve_a(server, name)
        .ok()
        .map(Ipv4Addr::from)
}

fn get(control: SocketAddr, path: &str) -> String {
    pserv_tests::http_get(control, path)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_server_answers_dhcp_dns_and_the_api_then_stops_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let server = pserv_server::serve(config(dir.path())).await.unwrap();
    let (dns, dhcp_addr, control) = (server.dns[0], server.dhcp, server.control);

    let answers = tokio::task::spawn_blocking(move || {
        let reserved = resolve(dns, "aaa.maas");
        // An unknown client gets a dynamic lease; the subnet publishes client names.
        let ip = dora(dhcp_addr, [2, 0, 0, 0, 0, 0x42], "probe");
        let probe = resolve(dns, "probe.maas");
        (
            reserved,
            ip,
            probe,
            get(control, "/v1/leases"),
            get(control, "/metrics"),
        )
    })
    .await
    .unwrap();
    let (reserved, ip, probe, leases, metrics) = answers;
    assert_eq!(reserved, Some(Ipv4Addr::new(10, 20, 0, 10)));
    assert_eq!(probe, Some(ip), "the ACKed lease resolves in DNS");
    assert!(leases.contains(&ip.to_string()), "{leases}");
    assert!(leases.contains("\"bound\""), "{leases}");
    let board = server.leases();
    assert_eq!(board.counts().bound, 1);
    assert_eq!(board.leases().first().map(|l| l.ip), Some(ip));
    assert!(
        metrics.contains("pserv_leases{state=\"bound\"} 1"),
        "{metrics}"
    );
    // Histograms are cumulative and end at their count: two replies (OFFER, ACK) so far, and
    // at least the three DNS answers above.
    let sample = |name: &str| pserv_tests::metric(&metrics, name);
    assert_eq!(sample("pserv_dhcp_reply_seconds_count"), 2, "{metrics}");
    assert_eq!(
        sample("pserv_dhcp_reply_seconds_bucket{le=\"+Inf\"}"),
        2,
        "{metrics}"
    );
    assert!(
        sample("pserv_dhcp_reply_seconds_bucket{le=\"1.0\"}") <= 2,
        "{metrics}"
    );
    let answers = sample("pserv_dns_answer_seconds_count");
    assert!(answers >= 2, "{metrics}");
    assert_eq!(
        sample("pserv_dns_answer_seconds_bucket{le=\"+Inf\"}"),
        answers,
        "{metrics}"
    );

    // A push from code is seen by DNS at once.
    let moved = pserv_core::snapshot::EXAMPLE_JSON
        .replace("\"generation\": 1", "\"generation\": 2")
        .replace("10.20.0.10", "10.20.0.99");
    server.publish_json(moved.as_bytes()).unwrap();
    let aaa = tokio::task::spawn_blocking(move || resolve(dns, "aaa.maas"))
        .await
        .unwrap();
    assert_eq!(aaa, Some(Ipv4Addr::new(10, 20, 0, 99)));

    let t0 = Instant::now();
    server.shutdown().await.unwrap();
    assert!(t0.elapsed() < Duration::from_secs(5), "{:?}", t0.elapsed());
    // Every service let go of its port, and the lease is on disk.
    assert!(UdpSocket::bind(dns).is_ok());
    assert!(UdpSocket::bind(dhcp_addr).is_ok());
    assert!(std::net::TcpListener::bind(control).is_ok());
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let (_j, r) =
        Journal::open(&dir.path().join("leases.journal"), Options::default(), now).unwrap();
    assert_eq!(r.leases.bound(dhcproto_mac(), now).map(|l| l.ip), Some(ip));
}

fn dhcproto_mac() -> pserv_core::MacAddr {
    pserv_core::MacAddr([2, 0, 0, 0, 0, 0x42])
}

#[tokio::test]
async fn a_port_in_use_fails_the_start_with_nothing_left_running() {
    let dir = tempfile::tempdir().unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let mut c = config(dir.path());
    c.control_listen = taken.local_addr().unwrap();
    let e = pserv_server::serve(c).await.unwrap_err();
    assert!(e.to_string().contains("binding the control API"), "{e}");
}
