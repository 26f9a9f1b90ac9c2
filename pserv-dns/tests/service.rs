//! The DNS service stops at once when its shutdown signal is given.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use pserv_core::Store;
use pserv_core::snapshot::EXAMPLE_JSON;
use pserv_dns::server::Service;
use pserv_tests::dns::resolve_a;

fn store() -> Arc<Store> {
    let store = Arc::new(Store::new());
    store.publish_json(EXAMPLE_JSON.as_bytes()).unwrap();
    store
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
