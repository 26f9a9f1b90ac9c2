//! The DNS service in pserv's service shape: started from bound sockets, it reports its
//! addresses and its own metrics, and stops at once when its shutdown signal is given.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use prometheus_client::registry::Registry;
use pserv_core::Store;
use pserv_core::snapshot::EXAMPLE_JSON;
use pserv_dns::respond::Responder;
use pserv_dns::server::{Service, Sockets, start};
use pserv_dns::tcp::Limits;
use pserv_tests::dns::resolve_a;
use tokio_util::sync::CancellationToken;

fn store() -> Arc<Store> {
    let store = Arc::new(Store::new());
    store.publish_json(EXAMPLE_JSON.as_bytes()).unwrap();
    store
}

/// The value of one sample (`name` with its labels) in a text exposition.
fn sample(text: &str, name: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_reports_addresses_and_metrics_and_stops_at_once() {
    let sockets = Sockets::bind(&["127.0.0.1:0".parse().unwrap()]).unwrap();
    let bound = sockets.local_addrs();
    let responder = Arc::new(Responder::new(store(), Arc::default()));
    let shutdown = CancellationToken::new();
    let running = start(sockets, responder, Limits::default(), shutdown.clone()).unwrap();
    assert_eq!(running.name, "DNS");
    assert_eq!(running.addrs, bound);
    let addr = running.addrs[0];
    let answer = tokio::task::spawn_blocking(move || resolve_a(addr, "aaa.maas"))
        .await
        .unwrap();
    assert_eq!(answer, Ok([10, 20, 0, 10]));

    let mut registry = Registry::default();
    registry.register_collector(running.metrics);
    let scrape = || {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        text
    };
    // The answer's send is counted after it left: the client may read it first.
    let mut text = scrape();
    for _ in 0..100 {
        if sample(&text, "pserv_dns_answer_seconds_count") == Some(1) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
        text = scrape();
    }
    for (name, want) in [
        ("pserv_dns_responses_total{rcode=\"noerror\"}", 1),
        ("pserv_dns_responses_total{rcode=\"servfail\"}", 0),
        ("pserv_dns_packets_total{direction=\"in\"}", 1),
        ("pserv_dns_packets_total{direction=\"out\"}", 1),
        ("pserv_dns_dropped_total{reason=\"oversized\"}", 0),
        ("pserv_dns_fast_path_total", 1),
        ("pserv_dns_truncated_total", 0),
        ("pserv_dns_tcp_connections_total{outcome=\"accepted\"}", 0),
        ("pserv_dns_tcp_accept_errors_total", 0),
        ("pserv_dns_tcp_open", 0),
        ("pserv_dns_forwarded_total{outcome=\"sent\"}", 0),
        ("pserv_dns_answer_seconds_count", 1),
    ] {
        assert_eq!(sample(&text, name), Some(want), "{name} in\n{text}");
    }
    assert!(
        text.contains("# HELP pserv_dns_responses DNS responses by rcode\n"),
        "{text}"
    );

    // No read timeout to wait out: the receives are woken when the signal is given.
    let t0 = Instant::now();
    shutdown.cancel();
    running.join.await.unwrap();
    assert!(
        t0.elapsed() < Duration::from_millis(100),
        "{:?}",
        t0.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_shutdown_is_at_once() {
    let s = Service::bind(&["127.0.0.1:0".parse().unwrap()], store(), Arc::default())
        .await
        .unwrap();
    let addr = s.local[0];
    let answer = tokio::task::spawn_blocking(move || resolve_a(addr, "aaa.maas"))
        .await
        .unwrap();
    assert_eq!(answer, Ok([10, 20, 0, 10]));
    // Let every thread settle into its blocking receive.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let t0 = Instant::now();
    s.shutdown().await;
    assert!(
        t0.elapsed() < Duration::from_millis(100),
        "{:?}",
        t0.elapsed()
    );
}
