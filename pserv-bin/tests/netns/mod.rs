//! Shared by the tests that run pserv and real clients in network namespaces: two namespaces
//! joined by a veth pair ([`Net`]), the binary started inside one ([`Pserv`]), udhcpc run in
//! the other. Built on `pserv_tests::netns` and `pserv_tests::process`: every packet stays
//! inside the namespaces, which are deleted, and the processes stopped by PID, on drop.

#![allow(dead_code, clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::Stdio;

use pserv_tests::netns::Netns;
use pserv_tests::process::Process;

pub(crate) const PSERV: &str = env!("CARGO_BIN_EXE_pserv");
pub(crate) const RESERVED_MAC: &str = "52:54:00:aa:00:01";

/// Two namespaces joined by a veth pair: the server's end `vsrv` holds `<prefix>.0.1/16`, the
/// client's end `vcli` has [`RESERVED_MAC`] and no address. Deleted on drop.
pub(crate) struct Net {
    pub(crate) srv: Netns,
    pub(crate) cli: Netns,
    /// The network's first two octets ("10.71").
    pub(crate) prefix: String,
}

impl Net {
    pub(crate) fn new(tag: &str, second_octet: u8) -> Self {
        let net = Self {
            srv: Netns::new(&format!("{tag}s")),
            cli: Netns::new(&format!("{tag}c")),
            prefix: format!("10.{second_octet}"),
        };
        net.srv.veth("vsrv", &net.cli, "vcli");
        net.srv.addr("vsrv", &format!("{}.0.1/16", net.prefix));
        net.set_client_mac(RESERVED_MAC);
        net
    }

    /// Gives the client's end `mac` (and no address).
    pub(crate) fn set_client_mac(&self, mac: &str) {
        let c = &self.cli;
        c.ip(&["link", "set", "vcli", "down"]);
        c.ip(&["link", "set", "vcli", "address", mac]);
        c.up("vcli");
        c.ip(&["addr", "flush", "dev", "vcli"]);
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

/// `pserv serve` in a lab's server namespace; stopped by PID on drop.
pub(crate) struct Pserv {
    pub(crate) process: Process,
    pub(crate) control: String,
}

impl Pserv {
    pub(crate) fn start(net: &Net, snap: &Path, state: &Path) -> Self {
        Self::start_with(net, snap, state, &[])
    }

    /// The same with `extra` flags.
    pub(crate) fn start_with(net: &Net, snap: &Path, state: &Path, extra: &[&str]) -> Self {
        let mut process = Process::spawn(
            net.srv
                .exec(PSERV)
                .arg("serve")
                .args(["--snapshot", snap.to_str().unwrap()])
                .args(["--dhcp-listen", "0.0.0.0:67", "--dhcp-interface", "vsrv"])
                .args(["--dns-listen", &format!("{}.0.1:53", net.prefix)])
                .args(["--control-listen", "127.0.0.1:0"])
                .args(["--state-dir", state.to_str().unwrap()])
                .args(extra)
                .env("RUST_LOG", "warn")
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit()),
        );
        let control = pserv_tests::read_banner(process.child()).control;
        Self { process, control }
    }

    /// `pserv leases`, run inside the server namespace (the control API is on its loopback).
    pub(crate) fn leases(&self, net: &Net) -> String {
        let out = net
            .srv
            .exec(PSERV)
            .args(["leases", "--from", &self.control])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The Prometheus text of `/metrics`, fetched inside the server namespace.
    pub(crate) fn metrics(&self, net: &Net) -> String {
        let out = net
            .srv
            .exec("curl")
            .args(["-s", &format!("{}/metrics", self.control)])
            .output()
            .unwrap();
        assert!(out.status.success(), "curl /metrics: {out:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `kill -9`.
    pub(crate) fn kill9(mut self) {
        self.process.kill();
    }
}

/// udhcpc in the client namespace: the address it got, if any.
pub(crate) fn udhcpc(net: &Net) -> Option<String> {
    pserv_tests::netns::udhcpc(&net.cli, "vcli", "probe", (5, 1), 20)
}

/// A boot directory under `lab`'s temporary directory with the files a `pserv-storm` boot
/// storm fetches (iPXE binaries, a kernel, an initrd), each with its own bytes.
pub(crate) fn storm_boot_dir(lab: &Lab) -> PathBuf {
    let root = lab.dir.path().join("boot");
    std::fs::create_dir_all(root.join("images")).unwrap();
    let bytes = |n: usize, seed: u8| -> Vec<u8> {
        (0..n).map(|i| (i as u8).wrapping_mul(31) ^ seed).collect()
    };
    std::fs::write(root.join("undionly.kpxe"), bytes(70_000, 1)).unwrap();
    std::fs::write(root.join("ipxe.efi"), bytes(90_000, 2)).unwrap();
    std::fs::write(root.join("images/vmlinuz"), bytes(600_000, 3)).unwrap();
    std::fs::write(root.join("images/initrd.img"), bytes(900_000, 4)).unwrap();
    root
}

/// `pserv serve` in `lab`'s server namespace on its snapshot, serving `root` and every
/// service on `<prefix>.0.1` (the control API on its loopback), with `extra` flags; and the
/// control API's URL.
pub(crate) fn serve_storm(lab: &Lab, root: &Path, extra: &[&str]) -> (Process, String) {
    let p = lab.p();
    let mut pserv = Process::spawn(
        lab.net
            .srv
            .exec(PSERV)
            .arg("serve")
            .args(["--snapshot", lab.snap.to_str().unwrap()])
            .args(["--boot-dir", root.to_str().unwrap()])
            .args(["--dhcp-listen", &format!("{p}.0.1:67")])
            // Dual-stack wildcards: IPv4 machines reach them as IPv6 ones do (issue 27).
            .args(["--tftp-listen", "[::]:69"])
            .args(["--boot-http-listen", "[::]:5248"])
            .args(["--dns-listen", &format!("{p}.0.1:53")])
            .args(["--control-listen", "127.0.0.1:0"])
            .args(["--state-dir", lab.state.to_str().unwrap()])
            .args(extra)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped()),
    );
    let control = pserv_tests::read_banner(pserv.child()).control;
    (pserv, control)
}

/// Runs `cfg`'s boot storm from inside namespace `ns` (named, so a thread may run it), its
/// DHCP relayed from `cfg.relay`.
pub(crate) fn run_storm(ns: &str, cfg: pserv_storm::boot::Config) -> pserv_storm::boot::Report {
    pserv_tests::netns::enter(ns, move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let addr = std::net::SocketAddr::from((cfg.relay, 67));
            let std_sock = pserv_storm::dhcp::run::socket(addr).unwrap();
            let sock = tokio::net::UdpSocket::from_std(std_sock).unwrap();
            pserv_storm::boot::run(cfg, sock, false).await
        })
    })
}
