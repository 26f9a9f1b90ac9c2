//! The HTTP boot service on loopback: whole files, byte ranges, HEAD, refusals, each answer an
//! event and counted in its metrics; shutdown ends its join.

#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus_client::registry::Registry;
use pserv_boot::http::{Progress, Served, start};
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
        pserv_boot::vtree::Urls {
            http_port: 0,
            syslog: None,
        },
        Arc::new(|_: pserv_boot::vtree::Served| {}),
    ));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let events = Arc::new(Mutex::new(Vec::new()));
    let seen = events.clone();
    let stop = CancellationToken::new();
    let running = start(
        listener,
        tree,
        Arc::new(move |s: &Served| seen.lock().unwrap().push(s.clone())),
        Arc::new(|_: &pserv_boot::http::Progress| {}),
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

/// A request with a body on its own connection: the status line and the body.
async fn send(to: SocketAddr, head: &str, content_type: &str, body: &[u8]) -> (String, Vec<u8>) {
    let mut s = tokio::net::TcpStream::connect(to).await.unwrap();
    let mut req = format!(
        "{head}\r\nHost: x\r\nConnection: close\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    req.extend_from_slice(body);
    s.write_all(&req).await.unwrap();
    let mut all = Vec::new();
    s.read_to_end(&mut all).await.unwrap();
    let end = all.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let text = String::from_utf8(all[..end].to_vec()).unwrap();
    (
        text.lines().next().unwrap().to_owned(),
        all[end + 4..].to_vec(),
    )
}

#[tokio::test]
async fn progress_reports_become_events_checked_limited_and_counted() {
    let store = Arc::new(pserv_core::Store::new());
    store
        .publish_json(
            br#"{ "generation": 3,
              "subnets": [ { "cidr": "127.0.0.0/8" } ],
              "nodes": [ { "id": "n1", "hostname": "node1", "domain": "lab",
                           "interfaces": [ { "mac": "52:54:00:aa:00:01", "ipv4": "127.0.0.11" } ] } ] }"#,
        )
        .unwrap();
    let tree = Arc::new(Tree::new(
        None,
        store,
        Arc::new(pserv_core::lease::LeaseBoard::new()),
        pserv_boot::vtree::Urls::default(),
        Arc::new(|_: pserv_boot::vtree::Served| {}),
    ));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let reports = Arc::new(Mutex::new(Vec::new()));
    let seen = reports.clone();
    let stop = CancellationToken::new();
    let running = start(
        listener,
        tree,
        Arc::new(|_: &Served| {}),
        Arc::new(move |p: &Progress| seen.lock().unwrap().push(p.clone())),
        stop.clone(),
    )
    .unwrap();
    let at = running.addrs[0];
    let path = "/nodes/52-54-00-aa-00-01/progress";

    let (status, _, _) = request(
        at,
        &format!("GET {path}?stage=early&message=hi+there HTTP/1.1"),
    )
    .await;
    assert_eq!(status, "HTTP/1.1 204 No Content");
    let (status, _) = send(
        at,
        &format!("POST {path} HTTP/1.1"),
        "application/json",
        br#"{"stage": "late", "message": "done"}"#,
    )
    .await;
    assert_eq!(status, "HTTP/1.1 204 No Content");
    let (status, _) = send(
        at,
        "POST /nodes/52:54:00:AA:00:01/progress HTTP/1.1",
        "application/x-www-form-urlencoded",
        b"stage=partman",
    )
    .await;
    assert_eq!(status, "HTTP/1.1 204 No Content");
    {
        let r = reports.lock().unwrap();
        assert_eq!(r.len(), 3);
        assert_eq!(
            serde_json::to_value(&r[0]).unwrap(),
            serde_json::json!({"event": "progress", "node": "n1", "mac": "52:54:00:aa:00:01",
                               "client": "127.0.0.1", "stage": "early", "message": "hi there",
                               "generation": 3})
        );
        assert_eq!(
            (r[1].stage.as_str(), r[1].message.as_deref()),
            ("late", Some("done"))
        );
        assert_eq!(r[2].stage, "partman");
    }

    // Refusals, each with its status and its counter; none becomes an event.
    let (s, _, _) = request(at, &format!("GET {path} HTTP/1.1")).await;
    assert_eq!(s, "HTTP/1.1 400 Bad Request");
    let (s, _, _) = request(at, "GET /nodes/02-00-00-00-00-09/progress?stage=x HTTP/1.1").await;
    assert_eq!(
        s, "HTTP/1.1 404 Not Found",
        "a MAC that is no node's and no lease's"
    );
    let (s, _, _) = request(at, &format!("DELETE {path}?stage=x HTTP/1.1")).await;
    assert_eq!(s, "HTTP/1.1 405 Method Not Allowed");
    let (s, _) = send(
        at,
        &format!("POST {path} HTTP/1.1"),
        "text/plain",
        &[b'a'; 5000],
    )
    .await;
    assert_eq!(s, "HTTP/1.1 413 Payload Too Large");
    // The machine's rate: the burst passes, then 429.
    let mut limited = 0;
    for _ in 0..60 {
        let (s, _, _) = request(at, &format!("GET {path}?stage=loop HTTP/1.1")).await;
        if s == "HTTP/1.1 429 Too Many Requests" {
            limited += 1;
        }
    }
    assert!(limited >= 10, "{limited} of 60 limited");
    let accepted = reports.lock().unwrap().len();
    assert_eq!(accepted, 3 + 60 - limited);

    let mut registry = Registry::default();
    registry.register_collector(running.metrics);
    let mut text = String::new();
    prometheus_client::encoding::prometheus_text::encode(&mut text, &registry).unwrap();
    for line in [
        format!("pserv_boot_progress_requests_total{{result=\"accepted\"}} {accepted}"),
        format!("pserv_boot_progress_requests_total{{result=\"rate_limited\"}} {limited}"),
        "pserv_boot_progress_requests_total{result=\"bad_request\"} 2".to_owned(),
        "pserv_boot_progress_requests_total{result=\"unknown\"} 1".to_owned(),
        "pserv_boot_progress_requests_total{result=\"too_large\"} 1".to_owned(),
    ] {
        assert!(text.contains(&line), "{line} in\n{text}");
    }
    stop.cancel();
}
