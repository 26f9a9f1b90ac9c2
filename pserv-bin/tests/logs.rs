//! `--log-format json` and `--log-dhcp` (issue 26), on loopback: every line pserv writes is
//! one JSON object, the banner included; every DHCP request gets a line saying what was
//! decided, with the client and, for a drop, the reason `/metrics` counts it under; every TFTP
//! request gets a line with how it ended.

#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, UdpSocket};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use pserv_tests::process::{Process, Signal};
use serde_json::Value;

mod local;

/// A DHCPDISCOVER from `mac` with client identifier 01+mac, not relayed.
fn discover(mac: [u8; 6]) -> Vec<u8> {
    let mut p = vec![1u8, 1, 6, 0, 0x12, 0x34, 0x56, 0x78, 0, 0, 0x80, 0];
    p.extend_from_slice(&[0; 16]); // ciaddr, yiaddr, siaddr, giaddr
    p.extend_from_slice(&mac);
    p.extend_from_slice(&[0; 10 + 64 + 128]);
    p.extend_from_slice(&[0x63, 0x82, 0x53, 0x63, 53, 1, 1, 61, 7, 1]);
    p.extend_from_slice(&mac);
    p.push(255);
    p
}

#[test]
fn json_lines_and_a_line_for_every_dhcp_and_tftp_decision() {
    if !pserv_tests::have_tool("curl") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let boot = dir.path().join("boot");
    std::fs::create_dir(&boot).unwrap();
    std::fs::write(boot.join("hello.txt"), b"hi\n").unwrap();
    let mut process = Process::spawn(
        Command::new(local::PSERV)
            .arg("serve")
            .args([
                "--dns-listen",
                "127.0.0.1:0",
                "--dhcp-listen",
                "127.0.0.1:0",
            ])
            .args([
                "--control-listen",
                "127.0.0.1:0",
                "--tftp-listen",
                "127.0.0.1:0",
            ])
            .args([
                "--boot-http-listen",
                "127.0.0.1:0",
                "--syslog-listen",
                "127.0.0.1:0",
            ])
            .args(["--boot-dir", boot.to_str().unwrap()])
            .args(["--state-dir", dir.path().join("state").to_str().unwrap()])
            .args(["--log-format", "json", "--log-dhcp"])
            .env_remove("RUST_LOG")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped()),
    );
    let (tx, rx) = mpsc::channel::<String>();
    let stdout = process.child().stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut lines: Vec<Value> = Vec::new();
    let next = |wait: Duration| -> Option<Value> {
        let line = rx.recv_timeout(wait).ok()?;
        let v: Value = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("not one JSON object ({e}): {line}"));
        assert!(v.is_object(), "{line}");
        Some(v)
    };
    // The banner, as log events.
    let (mut dhcp, mut tftp) = (None::<SocketAddr>, None::<SocketAddr>);
    loop {
        let v = next(Duration::from_secs(10)).expect("the banner");
        let msg = v["message"].as_str().unwrap_or_default().to_owned();
        let addr = |rest: &str| rest.split(' ').next().and_then(|a| a.parse().ok());
        if let Some(rest) = msg.strip_prefix("DHCP on ") {
            dhcp = addr(rest);
        } else if let Some(rest) = msg.strip_prefix("TFTP on ") {
            tftp = addr(rest);
        }
        assert!(v["timestamp"].is_string() && v["level"].is_string(), "{v}");
        lines.push(v);
        if msg.starts_with("control API on") {
            break;
        }
    }
    let (dhcp, tftp) = (dhcp.unwrap(), tftp.unwrap());
    // A DISCOVER from a link pserv has no subnet for, and a datagram that is not DHCP.
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.send_to(&discover([2, 0, 0, 0, 0, 0x42]), dhcp)
        .unwrap();
    sock.send_to(b"not dhcp", dhcp).unwrap();
    // A TFTP file that is there, one that is not.
    for (file, ok) in [("hello.txt", true), ("missing.txt", false)] {
        let status = Command::new("curl")
            .args(["-s", "--max-time", "10", "-o", "/dev/null"])
            .arg(format!("tftp://{tftp}/{file}"))
            .status()
            .unwrap();
        assert_eq!(status.success(), ok, "{file}");
    }
    let t0 = Instant::now();
    let wanted = |lines: &[Value]| {
        let dhcp: Vec<&Value> = lines
            .iter()
            .filter(|v| v["target"] == "pserv::dhcp")
            .collect();
        let boot: Vec<&Value> = lines
            .iter()
            .filter(|v| v["target"] == "pserv::boot")
            .collect();
        dhcp.len() >= 2 && boot.len() >= 2
    };
    while !wanted(&lines) && t0.elapsed() < Duration::from_secs(10) {
        if let Some(v) = next(Duration::from_millis(200)) {
            lines.push(v);
        }
    }
    let of = |target: &str| -> Vec<Value> {
        lines
            .iter()
            .filter(|v| v["target"] == target)
            .cloned()
            .collect()
    };
    let dhcp_lines = of("pserv::dhcp");
    assert_eq!(dhcp_lines.len(), 2, "{lines:#?}");
    let d = &dhcp_lines[0];
    assert_eq!(d["level"], "DEBUG");
    assert_eq!(d["mac"], "02:00:00:00:00:42", "{d}");
    assert_eq!(d["msg_type"], "discover", "{d}");
    assert_eq!(d["client_id"], "01020000000042", "{d}");
    assert_eq!(d["xid"], "12345678", "{d}");
    assert_eq!(d["decided"], "dropped: NoSubnet", "{d}");
    assert_eq!(dhcp_lines[1]["decided"], "dropped: Malformed", "{lines:#?}");
    let boot_lines = of("pserv::boot");
    assert_eq!(boot_lines.len(), 2, "{lines:#?}");
    assert_eq!(boot_lines[0]["file"], "hello.txt");
    assert_eq!(boot_lines[0]["outcome"], "Completed");
    assert_eq!(boot_lines[1]["file"], "missing.txt");
    assert_eq!(boot_lines[1]["outcome"], "NotFound");
    process.signal(Signal::SIGTERM);
    while let Some(v) = next(Duration::from_secs(5)) {
        if v["message"] == "pserv: shutting down" {
            return;
        }
    }
    panic!("no shutdown line");
}
