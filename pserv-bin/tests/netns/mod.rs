//! Shared by the tests that run pserv and real clients in network namespaces: two
//! namespaces joined by a veth pair (removed on drop), the binary started inside one, udhcpc
//! run in the other. Every packet stays inside the namespaces.

#![allow(dead_code, clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub(crate) const PSERV: &str = env!("CARGO_BIN_EXE_pserv");
pub(crate) const RESERVED_MAC: &str = "52:54:00:aa:00:01";

/// Two namespaces joined by a veth pair; removed on drop.
pub(crate) struct Net {
    pub(crate) srv: String,
    pub(crate) cli: String,
    pub(crate) prefix: String,
}

pub(crate) fn run(args: &[&str]) -> Output {
    let out = Command::new(args[0]).args(&args[1..]).output().unwrap();
    assert!(out.status.success(), "{args:?}: {out:?}");
    out
}

impl Net {
    pub(crate) fn new(tag: &str, second_octet: u8) -> Self {
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

    pub(crate) fn set_client_mac(&self, mac: &str) {
        run(&["ip", "-n", &self.cli, "link", "set", "vcli", "down"]);
        run(&["ip", "-n", &self.cli, "link", "set", "vcli", "address", mac]);
        run(&["ip", "-n", &self.cli, "link", "set", "vcli", "up"]);
        run(&["ip", "-n", &self.cli, "addr", "flush", "dev", "vcli"]);
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        for ns in [&self.cli, &self.srv] {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

/// A test's network and files: the namespaces, a snapshot file (one /16 subnet with a pool of
/// 50 addresses at .200.1, node1.lab reserved for [`RESERVED_MAC`]) and a state directory.
/// Fields drop in order: the namespaces go before the directory.
pub(crate) struct Lab {
    pub(crate) net: Net,
    pub(crate) snap: PathBuf,
    pub(crate) state: PathBuf,
    pub(crate) dir: tempfile::TempDir,
}

impl Lab {
    /// Namespaces on `10.<second_octet>.0.0/16` and a generation-1 snapshot reserving `.0.10`.
    pub(crate) fn new(tag: &str, second_octet: u8) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let lab = Self {
            net: Net::new(tag, second_octet),
            snap: dir.path().join("snap.json"),
            state: dir.path().join("state"),
            dir,
        };
        lab.reserve(1, "0.10");
        lab
    }

    /// The network's first two octets ("10.71").
    pub(crate) fn p(&self) -> &str {
        &self.net.prefix
    }

    /// Rewrites the snapshot: generation `generation`, node1 reserved at `<prefix>.<host>`.
    pub(crate) fn reserve(&self, generation: u64, host: &str) {
        let p = self.p();
        std::fs::write(
            &self.snap,
            format!(
                r#"{{"generation": {generation},
  "subnets": [{{"cidr": "{p}.0.0/16", "router": "{p}.0.1", "dns_servers": ["{p}.0.1"],
    "domain": "lab", "lease_seconds": 600,
    "dynamic": [{{"start": "{p}.200.1", "end": "{p}.200.50"}}], "dynamic_dns": true}}],
  "nodes": [{{"id": "n1", "hostname": "node1", "domain": "lab",
    "interfaces": [{{"mac": "{RESERVED_MAC}", "ipv4": "{p}.{host}"}}]}}]}}"#
            ),
        )
        .unwrap();
    }

    /// pserv in the server namespace on this lab's snapshot and state.
    pub(crate) fn serve(&self) -> Pserv {
        Pserv::start(&self.net, &self.snap, &self.state)
    }
}

pub(crate) struct Pserv {
    pub(crate) child: Child,
    pub(crate) control: String,
}

impl Pserv {
    pub(crate) fn start(net: &Net, snap: &Path, state: &Path) -> Self {
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
    pub(crate) fn leases(&self, net: &Net) -> String {
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

    /// The Prometheus text of `/metrics`, fetched inside the server namespace.
    pub(crate) fn metrics(&self, net: &Net) -> String {
        let out = run(&[
            "ip",
            "netns",
            "exec",
            &net.srv,
            "curl",
            "-s",
            &format!("{}/metrics", self.control),
        ]);
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub(crate) fn kill9(mut self) {
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
pub(crate) fn udhcpc(net: &Net) -> Option<String> {
    udhcpc_in(&net.cli, "vcli", "probe", (5, 1), 20)
}

/// udhcpc on `iface` in namespace `ns`, sending `hostname`, `(tries, interval)`: that many
/// DISCOVERs that many seconds apart, killed after `limit` seconds: the address it got, if any
/// (it configures nothing).
pub(crate) fn udhcpc_in(
    ns: &str,
    iface: &str,
    hostname: &str,
    (tries, interval): (u32, u32),
    limit: u32,
) -> Option<String> {
    let limit = limit.to_string();
    let out = Command::new("timeout")
        .args([&limit, "ip", "netns", "exec", ns, "udhcpc", "-i", iface])
        .args([
            "-n",
            "-q",
            "-f",
            "-t",
            &tries.to_string(),
            "-T",
            &interval.to_string(),
        ])
        .args(["-s", "/bin/true", "-x", &format!("hostname:{hostname}")])
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
