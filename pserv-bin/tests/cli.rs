//! The real binary, end to end: start, push valid / invalid / stale / unauthorized / oversized
//! snapshots, status, metrics, events, SIGHUP, graceful shutdown; check; token rules.

#![allow(clippy::unwrap_used)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use pserv_core::snapshot::EXAMPLE_JSON;

mod local;
use local::{PSERV, Server};
use pserv_tests::dns::resolve_a;
use pserv_tests::process::Signal;

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into()
}

fn put(url: &str, body: &[u8], token: Option<&str>) -> (u16, serde_json::Value) {
    let mut req = agent().put(url);
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    let mut r = req.send(body).unwrap();
    let code = r.status().as_u16();
    (
        code,
        r.body_mut().read_json().unwrap_or(serde_json::Value::Null),
    )
}

fn get(url: &str, token: Option<&str>) -> (u16, String) {
    let mut req = agent().get(url);
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    let mut r = req.call().unwrap();
    (r.status().as_u16(), r.body_mut().read_to_string().unwrap())
}

/// PUT headers declaring a `len`-byte body, a first slice of it, and the status line back.
fn declared_put(control: &str, len: usize) -> String {
    let addr = control.trim_start_matches("http://");
    let mut tcp = TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        tcp,
        "PUT /v1/snapshot HTTP/1.1\r\nHost: {addr}\r\nContent-Length: {len}\r\n\r\n"
    )
    .unwrap();
    let _ = tcp.write_all(&vec![b' '; len.min(4096)]);
    let mut head = [0u8; 12];
    tcp.read_exact(&mut head).unwrap();
    String::from_utf8_lossy(&head).into_owned()
}

fn generation(json: &str, g: u64) -> String {
    json.replacen("\"generation\": 1", &format!("\"generation\": {g}"), 1)
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

#[test]
fn serve_push_status_metrics_sighup_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let snap = write(dir.path(), "snap.json", EXAMPLE_JSON);
    let cfg = write(dir.path(), "pserv.toml", "max_body_bytes = 100000\n");
    let state = dir.path().join("state");
    let s = Server::start(&[
        "--snapshot",
        snap.to_str().unwrap(),
        "--config",
        cfg.to_str().unwrap(),
        "--state-dir",
        state.to_str().unwrap(),
    ]);

    let (code, body) = get(&s.url("/v1/status"), None);
    assert_eq!(code, 200, "{body}");
    let status: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(status["ready"], true);
    assert_eq!(status["generation"], 1);
    assert_eq!(resolve_a(s.dns, "aaa.maas"), Ok([10, 20, 0, 10]));

    // Valid push: 200 with the generation, visible in DNS at once.
    let g2 = generation(EXAMPLE_JSON, 2).replace("10.20.0.10", "10.20.0.42");
    let (code, body) = put(&s.url("/v1/snapshot"), g2.as_bytes(), None);
    assert_eq!(
        (code, &body["generation"]),
        (200, &serde_json::json!(2)),
        "{body}"
    );
    assert_eq!(resolve_a(s.dns, "aaa.maas"), Ok([10, 20, 0, 42]));

    // Stale: 409, nothing changes.
    let (code, body) = put(&s.url("/v1/snapshot"), g2.as_bytes(), None);
    assert_eq!(code, 409, "{body}");

    // Invalid: 422 with every problem, each naming its nodes.
    let bad = generation(EXAMPLE_JSON, 3)
        .replace("\"hostname\": \"bbb\"", "\"hostname\": \"aaa\"")
        .replace("52:54:00:12:34:70", "52:54:00:12:34:56");
    let (code, body) = put(&s.url("/v1/snapshot"), bad.as_bytes(), None);
    assert_eq!(code, 422, "{body}");
    let problems = body["problems"].as_array().unwrap();
    assert_eq!(problems.len(), 2, "{body}");
    assert!(
        problems
            .iter()
            .any(|p| p["nodes"] == serde_json::json!(["4y3h7n", "8kq2wd"]))
    );
    assert!(
        problems
            .iter()
            .any(|p| p["path"] == "nodes[2].interfaces[0].mac")
    );
    // Malformed: 422 with the field's path.
    let (code, body) = put(
        &s.url("/v1/snapshot"),
        b"{\"generation\": 4, \"nodez\": []}",
        None,
    );
    assert_eq!(code, 422);
    assert_eq!(body["problems"][0]["path"], "nodez");
    // Oversized (the config set 100,000 bytes): 413, from the declared length, before the body
    // is read (so read the answer without insisting on sending it all).
    assert_eq!(declared_put(&s.control, 200_000), "HTTP/1.1 413");
    // A body without a declared length is cut off at the limit instead.
    let mut tcp = TcpStream::connect(s.control.trim_start_matches("http://")).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        tcp,
        "PUT /v1/snapshot HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    .unwrap();
    for _ in 0..30 {
        if write!(tcp, "1000\r\n{}\r\n", " ".repeat(0x1000)).is_err() {
            break;
        }
    }
    let mut head = [0u8; 12];
    tcp.read_exact(&mut head).unwrap();
    assert_eq!(&head, b"HTTP/1.1 413");
    assert_eq!(
        resolve_a(s.dns, "aaa.maas"),
        Ok([10, 20, 0, 42]),
        "rejections changed nothing"
    );

    // SIGHUP reloads the file (same validation).
    std::fs::write(&snap, generation(EXAMPLE_JSON, 10)).unwrap();
    s.signal(Signal::SIGHUP);
    let deadline = Instant::now() + Duration::from_secs(10);
    while resolve_a(s.dns, "aaa.maas") != Ok([10, 20, 0, 10]) {
        assert!(Instant::now() < deadline, "SIGHUP reload not seen");
        std::thread::sleep(Duration::from_millis(50));
    }
    let (_, body) = get(&s.url("/v1/status"), None);
    assert!(body.contains("\"generation\":10"), "{body}");

    // Metrics count all of it.
    let (code, m) = get(&s.url("/metrics"), None);
    assert_eq!(code, 200);
    for line in [
        "pserv_snapshot_generation 10",
        "pserv_snapshot_pushes_total{result=\"ok\"} 3",
        "pserv_snapshot_pushes_total{result=\"stale\"} 1",
        "pserv_snapshot_pushes_total{result=\"invalid\"} 1",
        "pserv_snapshot_pushes_total{result=\"malformed\"} 1",
    ] {
        assert!(m.contains(line), "missing {line:?} in\n{m}");
    }
    // At least the four lookups above (the SIGHUP wait asked a variable number of times).
    let noerror: u64 = m
        .lines()
        .find_map(|l| l.strip_prefix("pserv_dns_responses_total{rcode=\"noerror\"} "))
        .unwrap()
        .parse()
        .unwrap();
    assert!(noerror >= 4, "{m}");

    // Leases: the reserved ones, flagged (aaa's IPv6 reservation among them).
    let (code, body) = get(&s.url("/v1/leases"), None);
    assert_eq!(code, 200);
    let list: Vec<serde_json::Value> = serde_json::from_str(&body).unwrap();
    assert_eq!(list.len(), 3, "{body}");
    assert!(list.iter().all(|l| l["reserved"] == true));
    assert!(list.iter().any(|l| l["ip"] == "fd00:20::10"), "{body}");

    // Graceful shutdown: exit 0, the journal exists.
    let status = s.stop();
    assert!(status.success(), "{status:?}");
    assert!(state.join("leases.journal").exists());
}

#[test]
fn events_stream_announces_snapshots() {
    let s = Server::start(&[]);
    // The response head first, then push.
    let mut events = pserv_tests::EventStream::open(
        s.control.trim_start_matches("http://"),
        Duration::from_secs(10),
    );
    assert!(events.text().starts_with("HTTP/1.1 200"));
    let (code, _) = put(
        &s.url("/v1/snapshot"),
        generation(EXAMPLE_JSON, 5).as_bytes(),
        None,
    );
    assert_eq!(code, 200);
    while !events.text().contains("\"generation\":5") {
        assert!(events.read_more().unwrap() > 0, "stream closed");
    }
    assert!(events.text().contains("event: snapshot"));
    // An event stream never ends on its own: SIGTERM still stops pserv promptly, cleanly.
    let t = Instant::now();
    assert!(s.stop().success());
    assert!(t.elapsed() < Duration::from_secs(6), "{:?}", t.elapsed());
}

#[test]
fn token_is_required_when_set() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(&["--token", "s3cret"]);
    assert_eq!(get(&s.url("/v1/status"), None).0, 401);
    assert_eq!(get(&s.url("/v1/status"), Some("wrong")).0, 401);
    assert_eq!(get(&s.url("/metrics"), None).0, 401);
    assert_eq!(get(&s.url("/v1/status"), Some("s3cret")).0, 200);
    let g2 = write(dir.path(), "g2.json", &generation(EXAMPLE_JSON, 2));
    let (code, _) = put(&s.url("/v1/snapshot"), &std::fs::read(&g2).unwrap(), None);
    assert_eq!(code, 401);
    // The CLI: without the token exit 4, with it exit 0.
    let run = |token: Option<&str>| {
        let mut c = Command::new(PSERV);
        c.args(["push", g2.to_str().unwrap(), "--to", &s.control])
            .env_remove("PSERV_TOKEN");
        if let Some(t) = token {
            c.args(["--token", t]);
        }
        c.output().unwrap()
    };
    assert_eq!(run(None).status.code(), Some(4));
    let ok = run(Some("s3cret"));
    assert_eq!(ok.status.code(), Some(0), "{ok:?}");
    assert!(String::from_utf8_lossy(&ok.stdout).contains("generation 2 published"));
    assert_eq!(run(Some("s3cret")).status.code(), Some(3), "stale");
}

#[test]
fn refuses_to_listen_beyond_loopback_without_a_token() {
    let out = Command::new(PSERV)
        .args([
            "serve",
            "--control-listen",
            "0.0.0.0:0",
            "--dns-listen",
            "127.0.0.1:0",
        ])
        .env_remove("PSERV_TOKEN")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("without a token"));
}

#[test]
fn check_reports_every_problem() {
    let dir = tempfile::tempdir().unwrap();
    let good = write(dir.path(), "good.json", EXAMPLE_JSON);
    let out = Command::new(PSERV)
        .args(["check", good.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert!(
        String::from_utf8_lossy(&out.stdout).starts_with("ok: generation 1, 2 subnets, 3 nodes")
    );
    let bad = write(
        dir.path(),
        "bad.json",
        &EXAMPLE_JSON
            .replace("\"hostname\": \"bbb\"", "\"hostname\": \"aaa\"")
            .replace("10.20.0.11", "10.99.0.1"),
    );
    let out = Command::new(PSERV)
        .args(["check", bad.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(text.lines().count(), 2, "{text}");
    assert!(text.contains("FQDN aaa.maas is also claimed"));
    assert!(text.contains("10.99.0.1 is outside every subnet"));
    let out = Command::new(PSERV)
        .args(["check", "/nonexistent.json"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

/// `pserv serve --boot-dir`: curl (a real TFTP client) fetches a boot file over TFTP, and
/// `/metrics` counts the transfer; without `--boot-dir` there is no TFTP at all.
#[test]
fn serve_with_a_boot_dir_answers_tftp() {
    if !pserv_tests::have_tool("curl") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let boot = dir.path().join("boot");
    std::fs::create_dir(&boot).unwrap();
    let image: Vec<u8> = (0..70_001u32).map(|i| (i % 253) as u8).collect();
    std::fs::write(boot.join("undionly.kpxe"), &image).unwrap();
    let s = Server::start(&[
        "--boot-dir",
        boot.to_str().unwrap(),
        "--tftp-listen",
        "127.0.0.1:0",
    ]);
    let tftp = s.tftp.expect("pserv printed its TFTP address");
    let got = dir.path().join("got");
    let ok = Command::new("curl")
        .args(["-s", "--max-time", "20", "-o"])
        .arg(&got)
        .arg(format!("tftp://{tftp}/undionly.kpxe"))
        .status()
        .unwrap()
        .success();
    assert!(ok, "curl fetched the file");
    assert_eq!(std::fs::read(&got).unwrap(), image);
    assert_eq!(
        s.metric("pserv_tftp_transfers_total{outcome=\"completed\"}"),
        1
    );
    assert_eq!(s.metric("pserv_tftp_bytes_total"), 70_001);
    drop(s);
    let plain = Server::start(&[]);
    assert!(plain.tftp.is_none());
}

/// HTTP boot from `--boot-dir`, with curl: the whole file, a byte range (206 with its
/// Content-Range), HEAD with the full Content-Length and no body, 416 past the end, 404 for a
/// directory (no redirect), 403 for a path that climbs out; each counted in `/metrics`.
#[test]
fn serve_with_a_boot_dir_answers_http_boot() {
    if !pserv_tests::have_tool("curl") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let boot = dir.path().join("boot");
    std::fs::create_dir_all(boot.join("images")).unwrap();
    let kernel: Vec<u8> = (0..300_007u32).map(|i| (i % 241) as u8).collect();
    std::fs::write(boot.join("images/vmlinuz"), &kernel).unwrap();
    let s = Server::start(&[
        "--boot-dir",
        boot.to_str().unwrap(),
        "--tftp-listen",
        "127.0.0.1:0",
        "--boot-http-listen",
        "127.0.0.1:0",
    ]);
    let base = format!(
        "http://{}",
        s.boot_http.expect("pserv printed its HTTP boot address")
    );
    let curl = |args: &[&str]| -> (String, Vec<u8>) {
        let out = Command::new("curl")
            .args(["-s", "--max-time", "20", "-D", "-"])
            .args(args)
            .output()
            .unwrap();
        let text = out.stdout;
        let split = text
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .map_or(text.len(), |i| i + 4);
        (
            String::from_utf8_lossy(&text[..split]).to_lowercase(),
            text[split..].to_vec(),
        )
    };
    let (h, body) = curl(&[&format!("{base}/images/vmlinuz")]);
    assert!(h.starts_with("http/1.1 200"), "{h}");
    assert!(h.contains("content-length: 300007"), "{h}");
    assert!(h.contains("accept-ranges: bytes"), "{h}");
    assert_eq!(body, kernel);
    let (h, body) = curl(&["-r", "1000-1999", &format!("{base}/images/vmlinuz")]);
    assert!(h.starts_with("http/1.1 206"), "{h}");
    assert!(h.contains("content-range: bytes 1000-1999/300007"), "{h}");
    assert_eq!(body, &kernel[1000..2000]);
    // HEAD: the full Content-Length, and nothing after the headers.
    let head = {
        use std::io::{Read, Write};
        let mut c = std::net::TcpStream::connect(s.boot_http.unwrap()).unwrap();
        c.set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .unwrap();
        write!(
            c,
            "HEAD /images/vmlinuz HTTP/1.1\r\nHost: pserv\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut out = String::new();
        c.read_to_string(&mut out).unwrap();
        out.to_lowercase()
    };
    assert!(
        head.starts_with("http/1.1 200") && head.contains("content-length: 300007"),
        "{head}"
    );
    assert!(
        head.ends_with("\r\n\r\n"),
        "no body after HEAD's headers: {head}"
    );
    let (h, _) = curl(&["-r", "400000-", &format!("{base}/images/vmlinuz")]);
    assert!(
        h.starts_with("http/1.1 416") && h.contains("content-range: bytes */300007"),
        "{h}"
    );
    let (h, _) = curl(&[&format!("{base}/images")]);
    assert!(
        h.starts_with("http/1.1 404") && !h.contains("location:"),
        "{h}"
    );
    let (h, _) = curl(&["--path-as-is", &format!("{base}/../../etc/passwd")]);
    assert!(h.starts_with("http/1.1 403"), "{h}");
    assert_eq!(s.metric("pserv_boot_http_responses_total{kind=\"ok\"}"), 2);
    assert_eq!(
        s.metric("pserv_boot_http_responses_total{kind=\"partial\"}"),
        1
    );
    assert_eq!(
        s.metric("pserv_boot_http_responses_total{kind=\"not_found\"}"),
        1
    );
    assert_eq!(
        s.metric("pserv_boot_http_responses_total{kind=\"refused\"}"),
        2
    );
}

/// A snapshot whose profile has node files (issue 21): n1 netboots it, n2 is `local` and keeps
/// its files, n3 has none.
const FILES_SNAPSHOT: &str = r##"{ "generation": 1,
  "boot_profiles": { "bookworm": { "kernel": "debian/linux", "initrd": ["debian/initrd.gz"],
      "cmdline": "auto=true url={{ node_files_url }}preseed.cfg log_host={{ syslog_host }} log_port={{ syslog_port }}",
      "node_files": {
        "preseed.cfg": "d-i preseed/early_command string wget -q -O /dev/null '{{ progress_url }}?stage=early'\n",
        "user-data": "#cloud-config\nhostname: {{ node.hostname }}\n",
        "meta-data": "instance-id: {{ node.id }}\nlocal-hostname: {{ node.hostname }}\n" } } },
  "subnets": [ { "cidr": "127.0.0.0/8", "boot": { "next_server": "127.0.0.1" } } ],
  "nodes": [
    { "id": "n1", "hostname": "node1", "domain": "lab",
      "interfaces": [ { "mac": "52:54:00:aa:00:01", "ipv4": "127.0.0.11" } ], "boot": { "profile": "bookworm" } },
    { "id": "n2", "hostname": "node2", "domain": "lab",
      "interfaces": [ { "mac": "52:54:00:aa:00:02", "ipv4": "127.0.0.12" } ], "boot": { "profile": "bookworm", "mode": "local" } },
    { "id": "n3", "hostname": "node3", "domain": "lab",
      "interfaces": [ { "mac": "52:54:00:aa:00:03", "ipv4": "127.0.0.13" } ] } ] }"##;

#[test]
fn render_prints_what_a_machine_would_be_served() {
    let dir = tempfile::tempdir().unwrap();
    let snap = write(dir.path(), "s.json", FILES_SNAPSHOT);
    let render = |args: &[&str]| {
        let out = Command::new(PSERV)
            .args(["render", snap.to_str().unwrap()])
            .args(args)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    let (code, text) = render(&["--node", "n1", "--file", "preseed.cfg"]);
    assert_eq!(code, Some(0), "{text}");
    assert_eq!(
        text,
        "d-i preseed/early_command string wget -q -O /dev/null 'http://127.0.0.1:5248/nodes/52-54-00-aa-00-01/progress?stage=early'\n"
    );
    let (code, text) = render(&[
        "--node",
        "52:54:00:aa:00:01",
        "--loader",
        "ipxe",
        "--server",
        "10.0.0.2",
        "--syslog",
        "10.0.0.2:514",
    ]);
    assert_eq!(code, Some(0), "{text}");
    assert!(
        text.contains("url=http://10.0.0.2:5248/nodes/52-54-00-aa-00-01/preseed.cfg log_host=10.0.0.2 log_port=514"),
        "{text}"
    );
    let (code, text) = render(&["--node", "n2", "--file", "user-data"]);
    assert_eq!(
        (code, text.as_str()),
        (Some(0), "#cloud-config\nhostname: node2\n")
    );
    let (code, text) = render(&["--node", "n1"]);
    assert_eq!(code, Some(0));
    assert!(text.contains("node n1, boot netboot bookworm"), "{text}");
    assert!(
        text.contains("--file meta-data\n  --file preseed.cfg\n  --file user-data"),
        "{text}"
    );
    let (code, text) = render(&["--node", "n3", "--file", "user-data"]);
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("no node file \"user-data\""), "{text}");
    let (code, _) = render(&["--node", "nobody"]);
    assert_eq!(code, Some(2));
    // An invalid snapshot: every problem, exit 1.
    let bad = write(
        dir.path(),
        "bad.json",
        &FILES_SNAPSHOT.replace("local-hostname: {{", "local-hostname: [{{"),
    );
    let out = Command::new(PSERV)
        .args(["render", bad.to_str().unwrap(), "--node", "n1"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(text.lines().count(), 2, "n1 and n2: {text}");
    assert!(
        text.contains("node file \"meta-data\", line 3: not valid YAML"),
        "{text}"
    );
}

/// Node files over HTTP boot and TFTP, and progress reports, end to end: each one an event on
/// `/v1/events` and counted in `/metrics`.
#[test]
fn serve_answers_node_files_and_progress_as_events() {
    if !pserv_tests::have_tool("curl") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let snap = write(dir.path(), "s.json", FILES_SNAPSHOT);
    let s = Server::start(&[
        "--snapshot",
        snap.to_str().unwrap(),
        "--tftp-listen",
        "127.0.0.1:0",
        "--boot-http-listen",
        "127.0.0.1:0",
    ]);
    let base = format!("http://{}", s.boot_http.expect("HTTP boot runs"));
    let mut events = pserv_tests::EventStream::open(
        s.control.trim_start_matches("http://"),
        Duration::from_secs(10),
    );
    let curl = |args: &[&str]| -> String {
        let out = Command::new("curl")
            .args(["-s", "--max-time", "20"])
            .args(args)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let ud = curl(&[&format!("{base}/nodes/52-54-00-aa-00-01/user-data")]);
    assert_eq!(ud, "#cloud-config\nhostname: node1\n");
    let md = curl(&[&format!(
        "tftp://{}/nodes/52-54-00-aa-00-02/meta-data",
        s.tftp.unwrap()
    )]);
    assert_eq!(md, "instance-id: n2\nlocal-hostname: node2\n");
    let missing = curl(&[
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        &format!("{base}/nodes/52-54-00-aa-00-01/vendor-data"),
    ]);
    assert_eq!(missing, "404");
    let code = curl(&[
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        "--data",
        "stage=early&message=hello",
        &format!("{base}/nodes/52-54-00-aa-00-01/progress"),
    ]);
    assert_eq!(code, "204");
    while !events.text().contains("\"event\":\"progress\"") {
        assert!(events.read_more().unwrap() > 0, "stream closed");
    }
    let text = events.text();
    assert!(text.contains("event: node_file"), "{text}");
    assert!(
        text.contains(r#""node":"n1","mac":"52:54:00:aa:00:01","client":"127.0.0.1","file":"user-data","via":"http""#),
        "{text}"
    );
    assert!(
        text.contains(r#""file":"meta-data","via":"tftp""#),
        "{text}"
    );
    assert!(
        text.contains(r#""stage":"early","message":"hello","generation":1"#),
        "{text}"
    );
    assert_eq!(
        s.metric("pserv_boot_progress_requests_total{result=\"accepted\"}"),
        1
    );
    assert!(s.stop().success());
}

/// The syslog receiver with a real sender: util-linux `logger` over UDP, RFC 5424 (its default,
/// with structured data holding an escaped `]`) and RFC 3164; each line arrives as a `log`
/// event on `/v1/events` and is counted. Without boot serving there is no receiver.
#[test]
fn serve_with_a_boot_dir_receives_syslog_from_logger() {
    if !pserv_tests::have_tool("logger") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(&[
        "--boot-dir",
        dir.path().to_str().unwrap(),
        "--tftp-listen",
        "127.0.0.1:0",
        "--boot-http-listen",
        "127.0.0.1:0",
    ]);
    let syslog = s.syslog.expect("pserv printed its syslog address");
    let mut events = pserv_tests::EventStream::open(
        s.control.trim_start_matches("http://"),
        Duration::from_secs(10),
    );
    let port = syslog.port().to_string();
    let logger = |args: &[&str]| {
        let ok = Command::new("logger")
            .args(["-n", "127.0.0.1", "-P", &port, "-d", "-t", "pserv-test"])
            .args(args)
            .status()
            .unwrap()
            .success();
        assert!(ok, "logger {args:?}");
    };
    logger(&[
        "--sd-id",
        "x@1",
        "--sd-param",
        r#"v="a\]b""#,
        "hello in 5424",
    ]);
    logger(&["--rfc3164", "-p", "local3.warning", "hello in 3164"]);
    while !(events.text().contains("hello in 5424") && events.text().contains("hello in 3164")) {
        assert!(events.read_more().unwrap() > 0, "stream closed");
    }
    let text = events.text();
    let events: Vec<serde_json::Value> = text
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .filter_map(|d| serde_json::from_str(d).ok())
        .filter(|v: &serde_json::Value| v["event"] == "log")
        .collect();
    let by = |m: &str| events.iter().find(|e| e["message"] == m).unwrap().clone();
    let (a, b) = (by("hello in 5424"), by("hello in 3164"));
    assert_eq!(
        (&a["app"], &a["severity"]),
        (&"pserv-test".into(), &"notice".into())
    );
    assert_eq!(
        (&b["app"], &b["facility"], &b["severity"]),
        (&"pserv-test".into(), &"local3".into(), &"warning".into())
    );
    assert_eq!(a["client"], "127.0.0.1");
    assert!(a["hostname"].is_string() && a["node"].is_null());
    assert!(text.contains("event: log"));
    assert_eq!(s.metric("pserv_syslog_events_total"), 2);
    assert_eq!(s.metric("pserv_syslog_malformed_total"), 0);
    drop(s);
    assert!(Server::start(&[]).syslog.is_none());
}
