//! The HTTP boot service on loopback: whole files, byte ranges, HEAD, refusals, each answer an
//! event and counted in its metrics; shutdown ends its join.

#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus_client::registry::Registry;
use pserv_boot::http::{Served, start};
use pserv_boot::tree::BootDir;
use pserv_boot::vtree::Tree;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

fn content(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 31 + i / 1000) as u8).collect()
}

/// One request on its own connection: the status line, the headers (lower case) and the body.
async fn request(to: SocketAddr, head: &str) -> (String, Vec<(String, String)>, Vec<u8>) {
    let mut s = tokio::net::TcpStream::connect(to).await.unwrap();
    s.write_all(format!("{head}\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut all = Vec::new();
    s.read_to_end(&mut all).await.unwrap();
    let end = all.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let text = String::from_utf8(all[..end].to_vec()).unwrap();
    let mut lines = text.split("\r\n");
    let status = lines.next().unwrap().to_owned();
    let headers = lines
        .filter_map(|l| l.split_once(": "))
        .map(|(k, v)| (k.to_ascii_lowercase(), v.to_owned()))
        .collect();
    (status, headers, all[end + 4..].to_vec())
}

fn header<'a>(h: &'a [(String, String)], name: &str) -> Option<&'a str> {
    h.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

#[tokio::test]
async fn files_ranges_and_refusals_are_answered_counted_and_announced() {
    let dir = tempfile::tempdir().unwrap();
    let file = content(300_007);
    std::fs::write(dir.path().join("vmlinuz"), &file).unwrap();
    let tree = Arc::new(Tree::new(
        Some(BootDir::new(dir.path()).unwrap()),
        Arc::new(pserv_core::Store::new()),
        Arc::new(pserv_core::lease::LeaseBoard::new()),
        0,
        Arc::new(|_: &pserv_boot::vtree::ConfigServed| {}),
    ));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let events = Arc::new(Mutex::new(Vec::new()));
    let seen = events.clone();
    let stop = CancellationToken::new();
    let running = start(
        listener,
        tree,
        Arc::new(move |s: &Served| seen.lock().unwrap().push(s.clone())),
        stop.clone(),
    )
    .unwrap();
    let at = running.addrs[0];

    let (status, h, body) = request(at, "GET /vmlinuz HTTP/1.1").await;
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert_eq!(header(&h, "content-length"), Some("300007"));
    assert_eq!(body, file);
    // Again: from memory now.
    assert_eq!(request(at, "GET /vmlinuz HTTP/1.1").await.2, file);
    let (status, h, body) = request(at, "GET /vmlinuz HTTP/1.1\r\nRange: bytes=100-199").await;
    assert_eq!(status, "HTTP/1.1 206 Partial Content");
    assert_eq!(header(&h, "content-range"), Some("bytes 100-199/300007"));
    assert_eq!(body, &file[100..200]);
    let (status, h, body) = request(at, "HEAD /vmlinuz HTTP/1.1").await;
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert_eq!(header(&h, "content-length"), Some("300007"));
    assert!(body.is_empty());
    assert_eq!(
        request(at, "GET /nothing HTTP/1.1").await.0,
        "HTTP/1.1 404 Not Found"
    );
    assert_eq!(
        request(at, "GET /../etc/passwd HTTP/1.1").await.0,
        "HTTP/1.1 403 Forbidden"
    );
    assert_eq!(
        request(at, "GET /%zz HTTP/1.1").await.0,
        "HTTP/1.1 400 Bad Request"
    );
    assert_eq!(
        request(at, "POST /vmlinuz HTTP/1.1\r\nContent-Length: 0")
            .await
            .0,
        "HTTP/1.1 405 Method Not Allowed"
    );

    let statuses: Vec<(String, u16, u64)> = events
        .lock()
        .unwrap()
        .iter()
        .map(|s| (s.method.clone(), s.status, s.bytes))
        .collect();
    assert_eq!(
        statuses,
        [
            ("GET".into(), 200, 300_007),
            ("GET".into(), 200, 300_007),
            ("GET".into(), 206, 100),
            ("HEAD".into(), 200, 0),
            ("GET".into(), 404, 0),
            ("GET".into(), 403, 0),
            ("GET".into(), 400, 0),
            ("POST".into(), 405, 0),
        ]
    );
    let first = events.lock().unwrap()[0].clone();
    let json = serde_json::to_value(&first).unwrap();
    assert_eq!(
        json,
        serde_json::json!({"event": "http", "client": first.client.to_string(),
                           "method": "GET", "path": "/vmlinuz", "status": 200, "bytes": 300_007})
    );

    let mut registry = Registry::default();
    registry.register_collector(running.metrics);
    let mut text = String::new();
    prometheus_client::encoding::prometheus_text::encode(&mut text, &registry).unwrap();
    for line in [
        "pserv_boot_http_responses_total{kind=\"ok\"} 3",
        "pserv_boot_http_responses_total{kind=\"partial\"} 1",
        "pserv_boot_http_responses_total{kind=\"not_found\"} 1",
        "pserv_boot_http_responses_total{kind=\"refused\"} 3",
        "pserv_boot_http_bytes_total 600114",
        "pserv_boot_http_cache_total{result=\"hit\"} 2",
        "pserv_boot_http_cache_total{result=\"load\"} 1",
        "pserv_boot_http_connections_dropped_total{reason=\"over_limit\"} 0",
    ] {
        assert!(text.contains(line), "{line} in\n{text}");
    }

    stop.cancel();
    tokio::time::timeout(Duration::from_secs(5), running.join)
        .await
        .expect("the join resolves once the listener has drained")
        .unwrap();
    assert!(
        tokio::net::TcpStream::connect(at).await.is_err(),
        "the listener is closed"
    );
}
