//! DNS over TCP against the service on loopback, with small limits: queries answered in order,
//! idle and stalled connections closed, the cap making room for a real client, misbehaving
//! clients cut off; every close counted.

#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use pserv_core::Store;
use pserv_core::snapshot::EXAMPLE_JSON;
use pserv_dns::respond::Counters;
use pserv_dns::server::Service;
use pserv_dns::tcp::Limits;
use pserv_tests::dns::{Recursion, a_query, framed};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const LIMITS: Limits = Limits {
    max_connections: 4,
    idle: Duration::from_millis(300),
};

async fn service() -> (Service, SocketAddr) {
    let store = Arc::new(Store::new());
    store.publish_json(EXAMPLE_JSON.as_bytes()).unwrap();
    let addr: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let s = Service::bind_with(&[addr], store, Arc::default(), LIMITS)
        .await
        .unwrap();
    let local = s.local[0];
    (s, local)
}

/// A framed A query for `name` with id `id` (RD set).
fn query(id: u16, name: &str) -> Vec<u8> {
    framed(&a_query(id, name, Recursion::Desired))
}

/// One framed answer: (id, the last four bytes: an A record's address).
async fn answer(c: &mut TcpStream) -> Option<(u16, [u8; 4])> {
    let mut len = [0u8; 2];
    tokio::time::timeout(Duration::from_secs(2), c.read_exact(&mut len))
        .await
        .ok()?
        .ok()?;
    let mut buf = vec![0u8; usize::from(u16::from_be_bytes(len))];
    c.read_exact(&mut buf).await.ok()?;
    let n = buf.len();
    Some((
        u16::from_be_bytes([buf[0], buf[1]]),
        buf[n - 4..].try_into().unwrap(),
    ))
}

/// Whether the server closed `c` within `within`.
async fn closed(c: &mut TcpStream, within: Duration) -> bool {
    let mut b = [0u8; 1];
    matches!(
        tokio::time::timeout(within, c.read(&mut b)).await,
        Ok(Ok(0) | Err(_))
    )
}

async fn wait_for(counters: &Counters, what: fn(&Counters) -> u64, want: u64) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(3);
    while what(counters) < want && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    what(counters)
}

#[tokio::test]
async fn pipelined_queries_are_answered_in_order() {
    let (s, addr) = service().await;
    let mut c = TcpStream::connect(addr).await.unwrap();
    let mut both = query(1, "aaa.maas");
    both.extend(query(2, "bbb.maas"));
    c.write_all(&both).await.unwrap();
    assert_eq!(answer(&mut c).await, Some((1, [10, 20, 0, 10])));
    assert_eq!(answer(&mut c).await, Some((2, [10, 20, 0, 11])));
    s.shutdown().await;
}

/// Thousands of pipelined queries in one write (answers leave in batches), and a query split
/// across two writes: every answer, in order.
#[tokio::test]
async fn many_pipelined_and_split_queries_are_answered_in_order() {
    let (s, addr) = service().await;
    let mut c = TcpStream::connect(addr).await.unwrap();
    let mut all = Vec::new();
    for id in 0..3000u16 {
        all.extend(query(id, if id % 2 == 0 { "aaa.maas" } else { "bbb.maas" }));
    }
    let (mut rd, mut wr) = c.split();
    let writer = async {
        wr.write_all(&all).await.unwrap();
        // Then one query in two parts, 50 ms apart (well within the idle limit).
        let q = query(5000, "aaa.maas");
        wr.write_all(&q[..7]).await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        wr.write_all(&q[7..]).await.unwrap();
    };
    let reader = async {
        for id in (0..3000u16).chain([5000]) {
            let mut len = [0u8; 2];
            rd.read_exact(&mut len).await.unwrap();
            let mut buf = vec![0u8; usize::from(u16::from_be_bytes(len))];
            rd.read_exact(&mut buf).await.unwrap();
            assert_eq!(u16::from_be_bytes([buf[0], buf[1]]), id);
            let want = if id % 2 == 0 { 10 } else { 11 };
            assert_eq!(&buf[buf.len() - 4..], &[10, 20, 0, want], "id {id}");
        }
    };
    tokio::join!(writer, reader);
    s.shutdown().await;
}

#[tokio::test]
async fn idle_and_stalled_connections_are_closed_and_counted() {
    let (s, addr) = service().await;
    let counters = s.counters();
    let mut idle = TcpStream::connect(addr).await.unwrap();
    let mut stalled = TcpStream::connect(addr).await.unwrap();
    stalled.write_all(&[0, 40, 0x12]).await.unwrap(); // 40 bytes promised, 1 sent
    assert!(closed(&mut idle, Duration::from_secs(2)).await);
    assert!(closed(&mut stalled, Duration::from_secs(2)).await);
    let timeouts = wait_for(&counters, |c| c.tcp_timeouts.load(Ordering::Relaxed), 2).await;
    assert_eq!(timeouts, 2);
    s.shutdown().await;
}

#[tokio::test]
async fn at_the_cap_stalled_connections_make_room_for_a_real_client() {
    let (s, addr) = service().await;
    let counters = s.counters();
    let mut stalled = Vec::new();
    for _ in 0..LIMITS.max_connections {
        let mut c = TcpStream::connect(addr).await.unwrap();
        c.write_all(&[0xff, 0xff]).await.unwrap();
        stalled.push(c);
    }
    let open = wait_for(&counters, |c| c.tcp_open.load(Ordering::Relaxed), 4).await;
    assert_eq!(open, 4);
    let mut c = TcpStream::connect(addr).await.unwrap();
    c.write_all(&query(7, "aaa.maas")).await.unwrap();
    assert_eq!(answer(&mut c).await, Some((7, [10, 20, 0, 10])));
    for mut st in stalled {
        assert!(closed(&mut st, Duration::from_secs(1)).await);
    }
    assert_eq!(counters.tcp_evicted.load(Ordering::Relaxed), 4);
    assert_eq!(counters.tcp_over_limit.load(Ordering::Relaxed), 0);
    s.shutdown().await;
}

#[tokio::test]
async fn a_response_or_a_runt_ends_the_connection() {
    let (s, addr) = service().await;
    for bad in [
        // QR set: a response sent to us.
        {
            let mut q = query(3, "aaa.maas");
            q[4] |= 0x80;
            q
        },
        // A two-byte "message".
        vec![0, 2, 0xab, 0xcd],
    ] {
        let mut c = TcpStream::connect(addr).await.unwrap();
        c.write_all(&bad).await.unwrap();
        assert!(closed(&mut c, Duration::from_secs(1)).await);
    }
    // The service still answers.
    let mut c = TcpStream::connect(addr).await.unwrap();
    c.write_all(&query(4, "aaa.maas")).await.unwrap();
    assert_eq!(answer(&mut c).await, Some((4, [10, 20, 0, 10])));
    s.shutdown().await;
}

/// Names outside the zones go to the upstream under a fresh random id (the client's is not
/// sent on), and come back with the client's id and without AA.
#[tokio::test]
async fn forwarded_queries_carry_a_fresh_id_upstream() {
    let upstream = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let up = upstream.local_addr().unwrap();
    let store = Arc::new(Store::new());
    store
        .publish_json(
            EXAMPLE_JSON
                .replace("\"upstreams\": []", &format!("\"upstreams\": [\"{up}\"]"))
                .as_bytes(),
        )
        .unwrap();
    let addr: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let s = Service::bind_with(&[addr], store, Arc::default(), LIMITS)
        .await
        .unwrap();
    let mut c = TcpStream::connect(s.local[0]).await.unwrap();
    let mut upstream_ids = Vec::new();
    for k in 0..3u16 {
        let client_id = 0x1234 + k;
        c.write_all(&query(client_id, "host.example"))
            .await
            .unwrap();
        // The upstream: answers with AA set and 192.0.2.7, echoing the id it was sent.
        let mut buf = [0u8; 512];
        let (n, from) = upstream.recv_from(&mut buf).await.unwrap();
        upstream_ids.push(u16::from_be_bytes([buf[0], buf[1]]));
        let mut reply = buf[..n].to_vec();
        reply[2] |= 0x84; // QR, AA
        reply[7] = 1; // one answer
        reply.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 30, 0, 4, 192, 0, 2, 7]);
        upstream.send_to(&reply, from).await.unwrap();
        let mut len = [0u8; 2];
        c.read_exact(&mut len).await.unwrap();
        let mut got = vec![0u8; usize::from(u16::from_be_bytes(len))];
        c.read_exact(&mut got).await.unwrap();
        assert_eq!(u16::from_be_bytes([got[0], got[1]]), client_id);
        assert_eq!(got[2] & 0x04, 0, "AA cleared");
        assert_eq!(&got[got.len() - 4..], &[192, 0, 2, 7]);
    }
    assert!(
        upstream_ids
            .iter()
            .zip(0x1234u16..)
            .any(|(sent, client)| *sent != client),
        "client ids sent upstream: {upstream_ids:x?}"
    );
    s.shutdown().await;
}

/// A query trickled a byte at a time, each byte inside the idle limit: the limit runs from the
/// query's first byte, so the connection is closed, not kept alive byte by byte.
#[tokio::test]
async fn a_trickled_query_is_cut_off() {
    let (s, addr) = service().await;
    let counters = s.counters();
    let mut c = TcpStream::connect(addr).await.unwrap();
    let q = query(9, "aaa.maas");
    let t = Instant::now();
    let mut cut = false;
    for b in &q {
        if c.write_all(&[*b]).await.is_err() || closed(&mut c, Duration::from_millis(100)).await {
            cut = true;
            break;
        }
    }
    assert!(cut, "the whole query trickled in");
    assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());
    assert_eq!(counters.tcp_timeouts.load(Ordering::Relaxed), 1);
    s.shutdown().await;
}
