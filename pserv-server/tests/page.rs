//! The status page's server side over real sockets: the page's files load without the token
//! (they hold no data) under a content security policy, the API behind it still asks for the
//! token; the views it reads (`/v1/subnets`, `/v1/counters`, `/v1/leases?page=`) count what
//! DHCP exchanges did; and a netbooting machine's ACK is a `dhcp` event (an ordinary client's
//! is not).

#![allow(clippy::unwrap_used)]

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream, UdpSocket};
use std::time::Duration;

use dhcproto::v4::DhcpOption;
use pserv_server::config::{File, Overrides};
use serde_json::Value;

const TOKEN: &str = "t0ken-for-the-page";

/// `GET path`, with the token when `auth`: status, head, body.
fn get(control: SocketAddr, path: &str, auth: bool) -> (u16, String, String) {
    let out = pserv_tests::http_get_as(control, path, auth.then_some(TOKEN));
    let status = out[9..12].parse().unwrap();
    let (head, body) = out.split_once("\r\n\r\n").unwrap();
    (status, head.to_ascii_lowercase(), body.to_owned())
}

fn json(control: SocketAddr, path: &str) -> Value {
    let (status, _, body) = get(control, path, true);
    assert_eq!(status, 200, "{path}: {body}");
    serde_json::from_str(&body).unwrap()
}

/// The `data:` of every event of `kind` kept in the replay buffer: read from `?since=0` until
/// the stream has been quiet for a moment.
fn events_of(control: SocketAddr, kind: &str) -> Vec<Value> {
    let mut s = TcpStream::connect(control).unwrap();
    s.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    write!(
        s,
        "GET /v1/events?since=0&kind={kind} HTTP/1.1\r\nHost: pserv\r\n\
         Authorization: Bearer {TOKEN}\r\n\r\n"
    )
    .unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 8192];
    while let Ok(n) = s.read(&mut buf) {
        if n == 0 {
            break;
        }
        seen.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&seen)
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .map(|d| serde_json::from_str(d).unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_loads_without_the_token_and_its_views_count_what_dhcp_did() {
    let dir = tempfile::tempdir().unwrap();
    let snap = dir.path().join("snap.json");
    std::fs::write(
        &snap,
        r#"{"generation": 1,
          "boot_profiles": {"live": {"kernel": "images/vmlinuz", "cmdline": "x"}},
          "subnets": [{"cidr": "10.20.0.0/16", "boot": {"unknown_profile": "live"},
                       "dynamic": [{"start": "10.20.200.1", "end": "10.20.200.100"}]},
                      {"cidr": "10.30.0.0/24"}],
          "nodes": [{"id": "n1", "hostname": "n1", "domain": "lab", "boot": {"profile": "live"},
                     "interfaces": [{"mac": "52:54:00:00:00:01", "ipv4": "10.20.0.10"}]},
                    {"id": "n2", "hostname": "n2", "domain": "lab",
                     "interfaces": [{"mac": "52:54:00:00:00:02", "ipv4": "10.30.0.10"}]}]}"#,
    )
    .unwrap();
    let config = pserv_server::Config::resolve(
        File::default(),
        Overrides {
            snapshot: Some(snap),
            dns_listen: vec!["127.0.0.1:0".parse().unwrap()],
            dhcp_listen: Some("127.0.0.1:0".parse().unwrap()),
            control_listen: Some("127.0.0.1:0".parse().unwrap()),
            tftp_listen: Some("127.0.0.1:0".parse().unwrap()),
            boot_http_listen: Some("127.0.0.1:0".parse().unwrap()),
            syslog_listen: Some("127.0.0.1:0".parse().unwrap()),
            state_dir: Some(dir.path().join("state")),
            token: Some(TOKEN.to_owned()),
            ..Overrides::default()
        },
    )
    .unwrap();
    let server = pserv_server::serve(config).await.unwrap();
    let (control, dhcp) = (server.control, server.dhcp);
    let boot_http = server.boot_http.unwrap();
    tokio::task::spawn_blocking(move || {
        // The page's files: no token needed, and only this origin's script may run.
        for (path, kind) in [
            ("/", "text/html"),
            ("/ui/page.js", "text/javascript"),
            ("/ui/page.css", "text/css"),
        ] {
            let (status, head, body) = get(control, path, false);
            assert_eq!(status, 200, "{path}");
            assert!(head.contains(&format!("content-type: {kind}")), "{head}");
            assert!(
                head.contains("content-security-policy: default-src 'none'; script-src 'self'"),
                "{head}"
            );
            assert!(head.contains("x-content-type-options: nosniff"), "{head}");
            assert!(!body.is_empty());
        }
        let (_, _, html) = get(control, "/", false);
        assert!(html.contains("<script src=\"/ui/page.js\""), "{html}");
        assert!(!html.contains("<script>"), "no inline script: {html}");
        // The API still asks for it.
        for path in [
            "/v1/status",
            "/v1/subnets",
            "/v1/counters",
            "/v1/nodes",
            "/v1/leases?page=0",
        ] {
            assert_eq!(get(control, path, false).0, 401, "{path}");
        }

        let before = json(control, "/v1/counters");
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let relay = Ipv4Addr::new(10, 20, 0, 1);
        let pxe = || {
            vec![
                DhcpOption::ClassIdentifier(b"PXEClient:Arch:00000:UNDI:002001".to_vec()),
                DhcpOption::ClientSystemArchitecture(0.into()),
            ]
        };
        let dora = |mac, extra| pserv_tests::dhcp::relayed_dora(&sock, dhcp, mac, relay, extra);
        // The node's firmware, then its iPXE; an unknown netbooting machine; two ordinary
        // clients.
        assert_eq!(
            dora([0x52, 0x54, 0, 0, 0, 1], pxe()),
            Some(Ipv4Addr::new(10, 20, 0, 10))
        );
        let mut ipxe = pxe();
        ipxe.push(DhcpOption::UserClass(b"iPXE".to_vec()));
        assert_eq!(
            dora([0x52, 0x54, 0, 0, 0, 1], ipxe),
            Some(Ipv4Addr::new(10, 20, 0, 10))
        );
        let unknown = dora([2, 0, 0, 0, 0, 9], pxe()).expect("an ACK");
        let plain1 = dora([2, 0, 0, 0, 0, 0x0a], vec![]).expect("an ACK");
        dora([2, 0, 0, 0, 0, 0x0b], vec![]).expect("an ACK");

        let after = json(control, "/v1/counters");
        assert_eq!(
            after["dhcp_acks"].as_u64().unwrap() - before["dhcp_acks"].as_u64().unwrap(),
            5,
            "{before} {after}"
        );
        assert!(after["at_ms"].as_u64() >= before["at_ms"].as_u64());

        let subnets = json(control, "/v1/subnets");
        let s = &subnets["subnets"];
        assert_eq!(s[0]["cidr"], "10.20.0.0/16");
        assert_eq!(
            s[0]["use"],
            serde_json::json!({"size": 100, "bound": 3, "offered": 0, "declined": 0,
                               "free": 97, "reservations": 1})
        );
        assert_eq!(s[1]["use"]["size"], 0);
        assert_eq!(s[1]["use"]["reservations"], 1);

        // One page of dynamic leases, searched.
        let page = json(control, "/v1/leases?per_page=2&page=0");
        assert_eq!(page["total"], 3);
        assert_eq!(page["leases"].as_array().unwrap().len(), 2);
        let found = json(control, "/v1/leases?query=02-00-00-00-00-0A");
        assert_eq!(found["total"], 1, "{found}");
        assert_eq!(found["leases"][0]["ip"], plain1.to_string());
        assert_eq!(get(control, "/v1/leases?page=x", true).0, 400);
        // Without paging, the array it always was (dynamic and reserved).
        assert!(json(control, "/v1/leases").is_array());

        // The status names every service and when the snapshot was published.
        let status = json(control, "/v1/status");
        let names: Vec<&str> = status["services"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["name"].as_str().unwrap())
            .collect();
        for name in ["DNS", "DHCP", "TFTP", "HTTP boot", "syslog", "control API"] {
            assert!(names.contains(&name), "{names:?}");
        }
        assert!(status["published_at"].as_u64().unwrap() > 1_700_000_000);

        // The netbooting ACKs, and only those, as `dhcp` events.
        let events = events_of(control, "dhcp");
        assert_eq!(events.len(), 3, "{events:?}");
        assert_eq!(events[0]["event"], "dhcp");
        assert_eq!(events[0]["node"], "n1");
        assert_eq!(events[0]["mac"], "52:54:00:00:00:01");
        assert_eq!(events[0]["ip"], "10.20.0.10");
        assert_eq!(events[0]["client"], "firmware");
        assert_eq!(events[0]["file"], "undionly.kpxe");
        assert_eq!(events[1]["client"], "ipxe");
        assert!(
            events[1]["file"].as_str().unwrap().starts_with("http://"),
            "{events:?}"
        );
        assert_eq!(events[2]["node"], Value::Null);
        assert_eq!(events[2]["ip"], unknown.to_string());
        // iPXE fetches its script: a `boot_config` event, its kind in its body as the other
        // events' are.
        let url = events[1]["file"].as_str().unwrap();
        let path = &url[url[7..].find('/').unwrap() + 7..];
        let script = pserv_tests::http_get(boot_http, path);
        assert!(script.starts_with("HTTP/1.1 200"), "{script}");
        let configs = events_of(control, "boot_config");
        assert_eq!(configs.len(), 1, "{configs:?}");
        assert_eq!(configs[0]["event"], "boot_config");
        assert_eq!(configs[0]["node"], "n1");
    })
    .await
    .unwrap();
    server.shutdown().await.unwrap();
}
