//! The syslog receiver inside the whole server: it runs with boot serving, and each datagram
//! becomes a `log` event on `/v1/events` with its sender resolved to a node (a reservation, a
//! known node's lease) or to a lease's MAC alone, or to nothing.

#![allow(clippy::unwrap_used)]

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

use dhcproto::v4::DhcpOption;
use pserv_server::config::{File, Overrides};
use serde_json::Value;

/// A subnet on loopback, so datagrams can come from its addresses: a node with a reservation,
/// a known node without one, and a dynamic range for unknown clients.
const SNAPSHOT: &str = r#"{
  "generation": 1,
  "dns": { "ttl": 30, "soa_mname": "pserv.lab.", "soa_rname": "admin.lab.", "upstreams": [] },
  "subnets": [
    { "cidr": "127.0.0.0/24", "domain": "lab", "lease_seconds": 600,
      "dynamic": [ { "start": "127.0.0.100", "end": "127.0.0.199" } ], "unknown_clients": "serve" }
  ],
  "nodes": [
    { "id": "reserved-1", "hostname": "r1", "domain": "lab",
      "interfaces": [ { "mac": "52:54:00:00:00:01", "ipv4": "127.0.0.5", "primary": true } ] },
    { "id": "leased-2", "hostname": "l2", "domain": "lab",
      "interfaces": [ { "mac": "52:54:00:00:00:02", "primary": true } ] }
  ]
}"#;

/// The `data:` of every `log` event in what the stream has sent so far.
fn log_events(stream: &[u8]) -> Vec<Value> {
    let text = String::from_utf8_lossy(stream);
    let mut out = Vec::new();
    let mut is_log = false;
    for line in text.lines() {
        if let Some(kind) = line.strip_prefix("event: ") {
            is_log = kind == "log";
        } else if let Some(data) = line.strip_prefix("data: ")
            && is_log
            && let Ok(v) = serde_json::from_str(data)
        {
            out.push(v);
        }
    }
    out
}

fn dora(server: SocketAddr, mac: [u8; 6]) -> Ipv4Addr {
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    pserv_tests::dhcp::relayed_dora(
        &sock,
        server,
        mac,
        Ipv4Addr::LOCALHOST,
        vec![DhcpOption::Hostname("probe".into())],
    )
    .expect("an OFFER, then an ACK")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn syslog_datagrams_become_log_events_for_their_node() {
    let dir = tempfile::tempdir().unwrap();
    let (boot, snapshot) = (dir.path().join("boot"), dir.path().join("snapshot.json"));
    std::fs::create_dir(&boot).unwrap();
    std::fs::write(&snapshot, SNAPSHOT).unwrap();
    let any = || Some("127.0.0.1:0".parse().unwrap());
    let config = pserv_server::Config::resolve(
        File::default(),
        Overrides {
            snapshot: Some(snapshot),
            dns_listen: vec!["127.0.0.1:0".parse().unwrap()],
            dhcp_listen: any(),
            control_listen: any(),
            state_dir: Some(dir.path().join("state")),
            boot_dir: Some(boot),
            tftp_listen: any(),
            boot_http_listen: any(),
            syslog_listen: any(),
            ..Overrides::default()
        },
    )
    .unwrap();
    let server = pserv_server::serve(config).await.unwrap();
    let (syslog, dhcp, control) = (server.syslog.unwrap(), server.dhcp, server.control);
    assert_eq!(syslog.ip(), Ipv4Addr::LOCALHOST);
    assert_ne!(syslog.port(), 0);

    let events = tokio::task::spawn_blocking(move || {
        let mut stream =
            pserv_tests::EventStream::open(&control.to_string(), Duration::from_secs(5));
        // A known node without a reservation, and an unknown client, lease addresses.
        let known = dora(dhcp, [0x52, 0x54, 0, 0, 0, 2]);
        let unknown = dora(dhcp, [2, 0, 0, 0, 0, 0x42]);
        let send = |from: Ipv4Addr, text: &str| {
            let s = UdpSocket::bind((from, 0)).unwrap();
            s.send_to(text.as_bytes(), syslog).unwrap();
        };
        send(
            "127.0.0.5".parse().unwrap(),
            "<13>Dec  3 14:00:01 anna[123]: from the reservation\n",
        );
        send(
            known,
            "<14>1 2024-06-01T10:00:00Z l2 cloud-init 99 - - from the known lease",
        );
        send(
            unknown,
            "<30>Dec  3 14:00:02 probe dhclient: from the unknown lease",
        );
        send("127.0.0.1".parse().unwrap(), "no priority at all");
        let deadline = Instant::now() + Duration::from_secs(10);
        while log_events(&stream.seen).len() < 4 && Instant::now() < deadline {
            if let Ok(0) = stream.read_more() {
                break;
            }
        }
        (log_events(&stream.seen), known, unknown)
    })
    .await
    .unwrap();
    let (mut events, known, unknown) = events;
    assert_eq!(events.len(), 4, "{events:#?}");
    for e in &mut events {
        assert_eq!(e["event"], "log");
        e.as_object_mut().unwrap().remove("event");
    }
    let row = |e: &Value| {
        (
            e["client"].as_str().unwrap().to_owned(),
            e["node"].clone(),
            e["mac"].clone(),
            e["app"].clone(),
            e["message"].as_str().unwrap().to_owned(),
        )
    };
    let rows: Vec<_> = events.iter().map(row).collect();
    let expect = [
        (
            "127.0.0.5".to_owned(),
            Value::from("reserved-1"),
            Value::from("52:54:00:00:00:01"),
            Value::from("anna"),
            "from the reservation".to_owned(),
        ),
        (
            known.to_string(),
            Value::from("leased-2"),
            Value::from("52:54:00:00:00:02"),
            Value::from("cloud-init"),
            "from the known lease".to_owned(),
        ),
        (
            unknown.to_string(),
            Value::Null,
            Value::from("02:00:00:00:00:42"),
            Value::from("dhclient"),
            "from the unknown lease".to_owned(),
        ),
        (
            "127.0.0.1".to_owned(),
            Value::Null,
            Value::Null,
            Value::Null,
            "no priority at all".to_owned(),
        ),
    ];
    for e in expect {
        assert!(rows.contains(&e), "{e:?} not in {rows:#?}");
    }
    let malformed = events
        .iter()
        .find(|e| e["message"] == "no priority at all")
        .unwrap();
    assert_eq!(malformed["malformed"], true);
    assert_eq!(malformed["facility"], Value::Null);
    let third = events.iter().find(|e| e["app"] == "dhclient").unwrap();
    assert_eq!(
        (&third["facility"], &third["severity"], &third["hostname"]),
        (
            &Value::from("daemon"),
            &Value::from("info"),
            &Value::from("probe")
        )
    );

    let metrics = tokio::task::spawn_blocking(move || {
        let mut s = TcpStream::connect(control).unwrap();
        write!(
            s,
            "GET /metrics HTTP/1.1\r\nHost: pserv\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    })
    .await
    .unwrap();
    let sample = |name: &str| pserv_tests::metric(&metrics, name);
    assert_eq!(sample("pserv_syslog_received_total"), 4, "{metrics}");
    assert_eq!(sample("pserv_syslog_events_total"), 4, "{metrics}");
    assert_eq!(sample("pserv_syslog_malformed_total"), 1, "{metrics}");
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn no_boot_serving_no_syslog_receiver() {
    let dir = tempfile::tempdir().unwrap();
    let any = || Some("127.0.0.1:0".parse().unwrap());
    let config = pserv_server::Config::resolve(
        File::default(),
        Overrides {
            dns_listen: vec!["127.0.0.1:0".parse().unwrap()],
            dhcp_listen: any(),
            control_listen: any(),
            state_dir: Some(dir.path().to_owned()),
            syslog_listen: any(),
            ..Overrides::default()
        },
    )
    .unwrap();
    let server = pserv_server::serve(config).await.unwrap();
    assert_eq!(server.syslog, None);
    server.shutdown().await.unwrap();
}
