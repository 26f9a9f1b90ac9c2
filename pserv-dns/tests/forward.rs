//! One forwarding policy for queries that came over UDP and over TCP: every upstream tried in
//! the snapshot's order, each given `forward::TIMEOUT`; the first reply relayed; SERVFAIL, and
//! counted, when none answers.

#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use pserv_core::Store;
use pserv_core::snapshot::EXAMPLE_JSON;
use pserv_dns::forward::TIMEOUT;
use pserv_dns::server::Service;
use pserv_tests::dns::{Recursion, a_query};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

/// An A query for host.example with `id` (RD set).
fn query(id: u16) -> Vec<u8> {
    a_query(id, "host.example", Recursion::Desired)
}

/// pserv forwarding to `upstreams`, in that order.
async fn service(upstreams: &[SocketAddr]) -> Service {
    let list: Vec<String> = upstreams.iter().map(|u| format!("\"{u}\"")).collect();
    let store = Arc::new(Store::new());
    store
        .publish_json(
            EXAMPLE_JSON
                .replace(
                    "\"upstreams\": []",
                    &format!("\"upstreams\": [{}]", list.join(", ")),
                )
                .as_bytes(),
        )
        .unwrap();
    Service::bind(&["127.0.0.1:0".parse().unwrap()], store, Arc::default())
        .await
        .unwrap()
}

/// An upstream that answers every query with 192.0.2.7 (AA set), counting what it got.
async fn answering() -> (SocketAddr, Arc<std::sync::atomic::AtomicU64>) {
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = sock.local_addr().unwrap();
    let seen = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let count = seen.clone();
    tokio::spawn(async move {
        let mut buf = [0u8; 512];
        while let Ok((n, from)) = sock.recv_from(&mut buf).await {
            count.fetch_add(1, Ordering::Relaxed);
            let mut reply = buf[..n].to_vec();
            reply[2] |= 0x84;
            reply[7] = 1;
            reply.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 30, 0, 4, 192, 0, 2, 7]);
            let _ = sock.send_to(&reply, from).await;
        }
    });
    (addr, seen)
}

/// An upstream that takes queries and never answers.
async fn silent() -> (UdpSocket, SocketAddr) {
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = sock.local_addr().unwrap();
    (sock, addr)
}

async fn ask_udp(server: SocketAddr, id: u16) -> Vec<u8> {
    let c = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    c.send_to(&query(id), server).await.unwrap();
    let mut buf = vec![0u8; 512];
    let n = tokio::time::timeout(TIMEOUT * 4, c.recv(&mut buf))
        .await
        .expect("an answer within every upstream's timeout")
        .unwrap();
    buf.truncate(n);
    buf
}

async fn ask_tcp(server: SocketAddr, id: u16) -> Vec<u8> {
    let mut c = TcpStream::connect(server).await.unwrap();
    let q = query(id);
    let mut framed = (q.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(&q);
    c.write_all(&framed).await.unwrap();
    let mut len = [0u8; 2];
    tokio::time::timeout(TIMEOUT * 4, c.read_exact(&mut len))
        .await
        .expect("an answer within every upstream's timeout")
        .unwrap();
    let mut buf = vec![0u8; usize::from(u16::from_be_bytes(len))];
    c.read_exact(&mut buf).await.unwrap();
    buf
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_first_upstream_is_passed_over_for_the_next() {
    let (_dead, dead) = silent().await;
    let (alive, seen) = answering().await;
    let s = service(&[dead, alive]).await;
    let t0 = Instant::now();
    let (udp, tcp) = tokio::join!(ask_udp(s.local[0], 0x1111), ask_tcp(s.local[0], 0x2222));
    let took = t0.elapsed();
    for (reply, id) in [(&udp, 0x1111u16), (&tcp, 0x2222)] {
        assert_eq!(u16::from_be_bytes([reply[0], reply[1]]), id);
        assert_eq!(reply[3] & 0x0f, 0, "NOERROR");
        assert_eq!(reply[2] & 0x04, 0, "AA cleared");
        assert_eq!(&reply[reply.len() - 4..], &[192, 0, 2, 7]);
    }
    assert!(
        took >= TIMEOUT,
        "the first upstream got its full timeout: {took:?}"
    );
    assert_eq!(
        seen.load(Ordering::Relaxed),
        2,
        "each query reached the second upstream once"
    );
    let fwd: u64 = s
        .forward_counters()
        .iter()
        .map(|c| c.retried.load(Ordering::Relaxed))
        .sum();
    assert_eq!(fwd, 2, "UDP and TCP each moved on once");
    assert_eq!(s.counters().servfail.load(Ordering::Relaxed), 0);
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_upstream_failing_is_servfail_and_counted() {
    let (_a, a) = silent().await;
    let (_b, b) = silent().await;
    let s = service(&[a, b]).await;
    let t0 = Instant::now();
    let (udp, tcp) = tokio::join!(ask_udp(s.local[0], 0x3333), ask_tcp(s.local[0], 0x4444));
    let took = t0.elapsed();
    for (reply, id) in [(&udp, 0x3333u16), (&tcp, 0x4444)] {
        assert_eq!(u16::from_be_bytes([reply[0], reply[1]]), id);
        assert_eq!(reply[3] & 0x0f, 2, "SERVFAIL");
        assert_eq!(
            u16::from_be_bytes([reply[4], reply[5]]),
            1,
            "the question is echoed"
        );
    }
    assert!(took >= TIMEOUT * 2, "both upstreams were tried: {took:?}");
    assert!(took < TIMEOUT * 2 + Duration::from_secs(1), "{took:?}");
    assert_eq!(s.counters().servfail.load(Ordering::Relaxed), 2);
    let failed: u64 = s
        .forward_counters()
        .iter()
        .map(|c| c.failed.load(Ordering::Relaxed))
        .sum();
    assert_eq!(failed, 2);
    s.shutdown().await;
}
