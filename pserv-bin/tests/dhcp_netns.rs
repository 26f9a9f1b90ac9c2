//! Real DHCP clients (udhcpc, dhclient) against the real binary, across a veth pair between two
//! network namespaces this test creates. Needs root; runs (never skips) when `CI=true`.
//!
//! Every packet stays inside the namespaces; they and the processes are removed at the end.

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use pserv_tests::{have_root, have_tool};

const PSERV: &str = env!("CARGO_BIN_EXE_pserv");
const RESERVED_MAC: &str = "52:54:00:aa:00:01";

/// Two namespaces joined by a veth pair; removed on drop.
struct Net {
    srv: String,
    cli: String,
    prefix: String,
}

fn run(args: &[&str]) -> Output {
    let out = Command::new(args[0]).args(&args[1..]).output().unwrap();
    assert!(out.status.success(), "{args:?}: {out:?}");
    out
}

impl Net {
    fn new(tag: &str, second_octet: u8) -> Self {
        let id = format!("{}{tag}", std::process::id() % 100_000);
        let net = Self {
            srv: format!("ps{id}s"),
            cli: format!("ps{id}c"),
            prefix: format!("10.{second_octet}"),
        };
        let (s, c) = (&net.srv, &net.cli);
        run(&["ip", "netns", "add", s]);
        run(&["ip", "netns", "add", c]);
        run(&[
            "ip",
            "link",
            "add",
            &format!("v{id}s"),
            "type",
            "veth",
            "peer",
            "name",
            &format!("v{id}c"),
        ]);
        run(&[
            "ip",
            "link",
            "set",
            &format!("v{id}s"),
            "netns",
            s,
            "name",
            "vsrv",
        ]);
        run(&[
            "ip",
            "link",
            "set",
            &format!("v{id}c"),
            "netns",
            c,
            "name",
            "vcli",
        ]);
        run(&[
            "ip",
            "-n",
            s,
            "addr",
            "add",
            &format!("{}.0.1/16", net.prefix),
            "dev",
            "vsrv",
        ]);
        run(&[
            "ip",
            "-n",
            c,
            "link",
            "set",
            "vcli",
            "address",
            RESERVED_MAC,
        ]);
        for ns in [s, c] {
            run(&["ip", "-n", ns, "link", "set", "lo", "up"]);
        }
        run(&["ip", "-n", s, "link", "set", "vsrv", "up"]);
        run(&["ip", "-n", c, "link", "set", "vcli", "up"]);
        net
    }

    fn set_client_mac(&self, mac: &str) {
        run(&["ip", "-n", &self.cli, "link", "set", "vcli", "down"]);
        run(&["ip", "-n", &self.cli, "link", "set", "vcli", "address", mac]);
        run(&["ip", "-n", &self.cli, "link", "set", "vcli", "up"]);
        run(&["ip", "-n", &self.cli, "addr", "flush", "dev", "vcli"]);
    }
}

impl Drop for Dhclient {
    fn drop(&mut self) {
        self.stop();
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        for ns in [&self.cli, &self.srv] {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

fn snapshot(prefix: &str, generation: u64, reserved: &str) -> String {
    format!(
        r#"{{"generation": {generation},
  "subnets": [{{"cidr": "{prefix}.0.0/16", "router": "{prefix}.0.1", "dns_servers": ["{prefix}.0.1"],
    "domain": "lab", "lease_seconds": 600,
    "dynamic": [{{"start": "{prefix}.200.1", "end": "{prefix}.200.50"}}], "dynamic_dns": true}}],
  "nodes": [{{"id": "n1", "hostname": "node1", "domain": "lab",
    "interfaces": [{{"mac": "{RESERVED_MAC}", "ipv4": "{reserved}"}}]}}]}}"#
    )
}

struct Pserv {
    child: Child,
    control: String,
}

impl Pserv {
    fn start(net: &Net, snap: &Path, state: &Path) -> Self {
        let mut child = Command::new("ip")
            .args(["netns", "exec", &net.srv, PSERV, "serve"])
            .args(["--snapshot", snap.to_str().unwrap()])
            .args(["--dhcp-listen", "0.0.0.0:67", "--dhcp-interface", "vsrv"])
            .args(["--dns-listen", &format!("{}.0.1:53", net.prefix)])
            .args(["--control-listen", "127.0.0.1:0"])
            .args(["--state-dir", state.to_str().unwrap()])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let control = pserv_tests::read_banner(&mut child).control;
        Self { child, control }
    }

    /// `pserv leases`, run inside the server namespace (the control API is on its loopback).
    fn leases(&self, net: &Net) -> String {
        let out = Command::new("ip")
            .args([
                "netns",
                "exec",
                &net.srv,
                PSERV,
                "leases",
                "--from",
                &self.control,
            ])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn kill9(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Pserv {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(Some(_))) {
            return;
        }
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// udhcpc in the client namespace: the address it got, if any.
fn udhcpc(net: &Net) -> Option<String> {
    let out = Command::new("timeout")
        .args([
            "20", "ip", "netns", "exec", &net.cli, "udhcpc", "-i", "vcli", "-n", "-q", "-f",
        ])
        .args([
            "-t",
            "5",
            "-T",
            "1",
            "-s",
            "/bin/true",
            "-x",
            "hostname:probe",
        ])
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // "udhcpc: lease of 10.x.y.z obtained from ..., lease time 600"
    text.lines()
        .find_map(|l| l.split("lease of ").nth(1))
        .and_then(|r| r.split_whitespace().next())
        .map(str::to_owned)
}

struct Dhclient {
    dir: PathBuf,
}

impl Dhclient {
    fn new(dir: &Path) -> Self {
        let hook = dir.join("hook.sh");
        std::fs::write(
            &hook,
            "#!/bin/sh\n# Logs what dhclient reports; changes nothing outside this namespace.\n\
             echo \"$reason $new_ip_address $new_host_name\" >> \"$(dirname \"$0\")/hook.log\"\n\
             case \"$reason\" in BOUND|RENEW|REBIND|REBOOT) ip addr replace \"$new_ip_address/16\" dev \"$interface\" ;; esac\n\
             exit 0\n",
        )
        .unwrap();
        run(&["chmod", "+x", hook.to_str().unwrap()]);
        Self {
            dir: dir.to_owned(),
        }
    }

    fn run(&self, net: &Net, release: bool) -> Output {
        let mut c = Command::new("timeout");
        c.args([
            "30", "ip", "netns", "exec", &net.cli, "dhclient", "-4", "-1", "-v",
        ])
        .args(["-sf", self.dir.join("hook.sh").to_str().unwrap()])
        .args(["-lf", self.dir.join("leases").to_str().unwrap()])
        .args(["-pf", self.dir.join("pid").to_str().unwrap()]);
        if release {
            c.arg("-r");
        }
        let out = c.arg("vcli").output().unwrap();
        self.stop();
        out
    }

    /// dhclient stays behind to renew: stop every dhclient of this test (matched by this
    /// test's own temporary directory in its command line) after every run.
    fn stop(&self) {
        let _ = Command::new("pkill")
            .args(["-f", &format!("dhclient .*{}", self.dir.display())])
            .status();
        let _ = std::fs::remove_file(self.dir.join("pid"));
    }

    /// The hook log's lines ("REASON IP HOSTNAME").
    fn log(&self) -> Vec<String> {
        std::fs::read_to_string(self.dir.join("hook.log"))
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }
}

fn ready() -> bool {
    have_root("DHCP with real clients in network namespaces")
        && have_tool("udhcpc")
        && have_tool("dig")
        && have_tool("curl")
        && have_tool("dhclient")
        && have_tool("ip")
}

#[test]
fn udhcpc_reserved_dynamic_and_restart_after_kill_9() {
    if !ready() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let net = Net::new("u", 71);
    let snap = dir.path().join("snap.json");
    std::fs::write(
        &snap,
        snapshot(&net.prefix, 1, &format!("{}.0.10", net.prefix)),
    )
    .unwrap();
    let state = dir.path().join("state");
    let pserv = Pserv::start(&net, &snap, &state);

    // The reserved MAC gets its reservation.
    assert_eq!(
        udhcpc(&net).as_deref(),
        Some(format!("{}.0.10", net.prefix).as_str())
    );
    // An unknown MAC gets a dynamic address from the pool, journaled.
    net.set_client_mac("02:00:00:00:77:01");
    let dynamic = udhcpc(&net).expect("a dynamic lease");
    assert!(
        dynamic.starts_with(&format!("{}.200.", net.prefix)),
        "{dynamic}"
    );
    assert!(pserv.leases(&net).contains(&dynamic));
    // Its hostname ("probe", option 12) is published in DNS (the subnet enables it), forward
    // and reverse; the known node's name is the table's.
    let dig = |args: &[&str]| {
        let out = Command::new("ip")
            .args([
                "netns",
                "exec",
                &net.srv,
                "dig",
                &format!("@{}.0.1", net.prefix),
                "+short",
            ])
            .args(["+time=2", "+tries=1"])
            .args(args)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    };
    assert_eq!(dig(&["probe.lab", "A"]), dynamic);
    assert_eq!(dig(&["-x", &dynamic]), "probe.lab.");
    assert_eq!(dig(&["node1.lab", "A"]), format!("{}.0.10", net.prefix));

    // kill -9, restart on the same state: the acknowledged lease is still there, and the same
    // client gets the same address back.
    pserv.kill9();
    let pserv = Pserv::start(&net, &snap, &state);
    let leases = pserv.leases(&net);
    assert!(
        leases.contains(&dynamic) && leases.contains("02:00:00:00:77:01"),
        "{leases}"
    );
    assert_eq!(udhcpc(&net).as_deref(), Some(dynamic.as_str()));
}

#[test]
fn dhclient_bind_renew_release_and_nak_after_the_reservation_moves() {
    if !ready() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let net = Net::new("d", 72);
    let p = net.prefix.clone();
    let snap = dir.path().join("snap.json");
    std::fs::write(&snap, snapshot(&p, 1, &format!("{p}.0.10"))).unwrap();
    let state = dir.path().join("state");
    let pserv = Pserv::start(&net, &snap, &state);
    let client = Dhclient::new(dir.path());

    let out = client.run(&net, false);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        client.log().last().unwrap(),
        &format!("BOUND {p}.0.10 node1")
    );
    // dhclient does not ask for broadcast: pserv set the ARP entry and unicast its replies to
    // the client's hardware address (RFC 2131 §4.1).
    let metrics = run(&[
        "ip",
        "netns",
        "exec",
        &net.srv,
        "curl",
        "-s",
        &format!("{}/metrics", pserv.control),
    ]);
    let unicasts: u64 = String::from_utf8_lossy(&metrics.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("pserv_dhcp_hardware_unicast_total "))
        .unwrap_or_else(|| panic!("no unicast metric in {metrics:?}"))
        .parse()
        .unwrap();
    assert!(unicasts >= 2, "OFFER and ACK unicast: {unicasts}");
    // Again: dhclient reuses its lease file (INIT-REBOOT) and is ACKed.
    let out = client.run(&net, false);
    assert!(out.status.success(), "{out:?}");
    let last = client.log().last().unwrap().clone();
    assert!(last.ends_with(&format!("{p}.0.10 node1")), "{last}");

    // The controller moves the reservation; SIGHUP reloads. The client's next request for
    // the old address is NAKed, and it gets the new one.
    std::fs::write(&snap, snapshot(&p, 2, &format!("{p}.0.20"))).unwrap();
    run(&["kill", "-HUP", &pserv.child.id().to_string()]);
    std::thread::sleep(Duration::from_millis(500));
    let out = client.run(&net, false);
    assert!(out.status.success(), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("DHCPNAK"),
        "expected a NAK first:\n{stderr}"
    );
    assert_eq!(
        client.log().last().unwrap(),
        &format!("BOUND {p}.0.20 node1")
    );

    // Release.
    let out = client.run(&net, true);
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("DHCPRELEASE"));
}

/// udhcpc kept running: it renews on SIGUSR1 and releases on SIGUSR2.
#[test]
fn udhcpc_renews_and_releases() {
    if !ready() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let net = Net::new("r", 73);
    let snap = dir.path().join("snap.json");
    std::fs::write(
        &snap,
        snapshot(&net.prefix, 1, &format!("{}.0.10", net.prefix)),
    )
    .unwrap();
    let pserv = Pserv::start(&net, &snap, &dir.path().join("state"));
    net.set_client_mac("02:00:00:00:73:01");
    let log = dir.path().join("udhcpc.log");
    // The client must hold its address to renew and release by unicast: configure it (inside
    // the client namespace only).
    let script = dir.path().join("udhcpc.sh");
    std::fs::write(
        &script,
        "#!/bin/sh\ncase \"$1\" in bound|renew) ip addr replace \"$ip/16\" dev \"$interface\" ;; \
         deconfig) ip addr flush dev \"$interface\" ;; esac\nexit 0\n",
    )
    .unwrap();
    run(&["chmod", "+x", script.to_str().unwrap()]);
    struct Kill(Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let client = Command::new("ip")
        .args([
            "netns", "exec", &net.cli, "udhcpc", "-i", "vcli", "-f", "-t", "5", "-T", "1",
        ])
        .args(["-s", script.to_str().unwrap()])
        .stdout(Stdio::from(std::fs::File::create(&log).unwrap()))
        .stderr(Stdio::from(
            std::fs::File::options().append(true).open(&log).unwrap(),
        ))
        .spawn()
        .unwrap();
    let client = Kill(client);
    let wait_for = |needle: &str, count: usize| {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            if text.matches(needle).count() >= count {
                return text;
            }
            assert!(
                Instant::now() < deadline,
                "no {needle:?} x{count} in:\n{text}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    let signal = |sig: &str| run(&["kill", &format!("-{sig}"), &client.0.id().to_string()]);
    let text = wait_for("obtained", 1);
    let ip = text
        .lines()
        .find_map(|l| l.split("lease of ").nth(1))
        .and_then(|r| r.split_whitespace().next())
        .unwrap()
        .to_owned();
    assert!(pserv.leases(&net).contains(&ip));
    // Renew: a unicast REQUEST with ciaddr, ACKed with the same address.
    signal("USR1");
    let text = wait_for("obtained", 2);
    assert_eq!(
        text.matches(&format!("lease of {ip} obtained")).count(),
        2,
        "{text}"
    );
    // Release: the lease is gone on the server.
    signal("USR2");
    wait_for("released", 1);
    let deadline = Instant::now() + Duration::from_secs(10);
    while pserv.leases(&net).contains(&ip) {
        assert!(
            Instant::now() < deadline,
            "the released lease is still listed"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
