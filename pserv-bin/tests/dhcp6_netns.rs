//! DHCPv6 with real peers (issue 27): ISC dhclient -6 against the real binary, across a veth
//! pair between two network namespaces this test creates, with radvd sending router
//! advertisements (M flag: addresses by DHCPv6) on the server's side, as a router on a
//! provisioning network does. Needs root; runs (never skips) when `CI=true`.
//!
//! Every packet stays inside the namespaces; they and the processes are removed at the end.

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use pserv_tests::dns::Dig;
use pserv_tests::process::Process;
use pserv_tests::{have_root, have_tool, metric};

mod netns;
use netns::{Net, Pserv};

const NODE_MAC: &str = "52:54:00:aa:00:01";
/// A node the snapshot knows, without an IPv6 reservation: it gets a dynamic address, named.
const BARE_MAC: &str = "52:54:00:aa:00:02";

fn ready() -> bool {
    have_root("DHCPv6 with real clients in network namespaces")
        && have_tool("dhclient")
        && have_tool("radvd")
        && have_tool("dig")
        && have_tool("ip")
}

/// The lab's v6 prefix: `fd00:<tag>::/64`, the server at `::1`.
struct Lab6 {
    net: Net,
    p6: String,
    snap: PathBuf,
    state: PathBuf,
    dir: tempfile::TempDir,
    radvd: Option<Process>,
}

impl Lab6 {
    fn new(tag: &str, n: u8) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let net = Net::new(tag, n);
        let p6 = format!("fd00:{n:x}");
        // No duplicate address detection on either end: addresses are usable at once.
        for (ns, dev) in [(&net.srv, "vsrv"), (&net.cli, "vcli")] {
            sysctl(ns.name(), &format!("net.ipv6.conf.{dev}.accept_dad=0"));
            ns.ip(&["link", "set", dev, "down"]);
            ns.up(dev);
        }
        net.srv.ip(&[
            "-6",
            "addr",
            "add",
            &format!("{p6}::1/64"),
            "dev",
            "vsrv",
            "nodad",
        ]);
        wait_link_local(&net);
        // radvd runs only where the namespace forwards (a router's job).
        sysctl(net.srv.name(), "net.ipv6.conf.all.forwarding=1");
        let snap = dir.path().join("snap.json");
        std::fs::write(
            &snap,
            format!(
                r#"{{"generation": 1,
  "subnets": [{{"cidr": "{p}.0.0/16", "domain": "lab"}},
    {{"cidr": "{p6}::/64", "dns_servers": ["{p6}::1"], "domain": "lab", "lease_seconds": 600,
      "preferred_seconds": 300, "renew_seconds": 3, "rebind_seconds": 5, "dynamic_dns": true,
      "dynamic": [{{"start": "{p6}::1000", "end": "{p6}::1fff"}}]}}],
  "nodes": [{{"id": "n1", "hostname": "node1", "domain": "lab",
              "interfaces": [{{"mac": "{NODE_MAC}", "ipv6": "{p6}::10"}}]}},
            {{"id": "n2", "hostname": "node2", "domain": "lab",
              "interfaces": [{{"mac": "{BARE_MAC}"}}]}}]}}"#,
                p = net.prefix
            ),
        )
        .unwrap();
        let mut lab = Self {
            state: dir.path().join("state"),
            net,
            p6,
            snap,
            dir,
            radvd: None,
        };
        lab.start_radvd();
        lab
    }

    /// radvd on the server's end: the prefix (on link, no autonomous addresses) with the M
    /// flag, so a client's addresses come from DHCPv6.
    fn start_radvd(&mut self) {
        let conf = self.dir.path().join("radvd.conf");
        std::fs::write(
            &conf,
            format!(
                "interface vsrv {{\n  AdvSendAdvert on;\n  AdvManagedFlag on;\n  AdvOtherConfigFlag on;\n  \
                 MinRtrAdvInterval 3;\n  MaxRtrAdvInterval 10;\n  prefix {}::/64 {{\n    AdvOnLink on;\n    \
                 AdvAutonomous off;\n  }};\n}};\n",
                self.p6
            ),
        )
        .unwrap();
        let pid = self.dir.path().join("radvd.pid");
        self.radvd = Some(Process::spawn(
            self.net
                .srv
                .exec("radvd")
                .args(["-n", "-m", "stderr", "-C", conf.to_str().unwrap()])
                .args(["-p", pid.to_str().unwrap(), "-u", "root"])
                .stdout(Stdio::null())
                .stderr(Stdio::null()),
        ));
    }

    fn serve(&self) -> Pserv {
        Pserv::start_with(
            &self.net,
            &self.snap,
            &self.state,
            &["--dhcp6-listen", "[::]:547"],
        )
    }

    /// The client's end with `mac`, once its link-local address (from the new MAC) is there:
    /// the kernel adds it when the link's carrier comes back, up to a second after `up`, and
    /// dhclient -6 gives up without one.
    fn client_mac(&self, mac: &str) {
        let c = &self.net.cli;
        c.ip(&["link", "set", "vcli", "down"]);
        c.ip(&["link", "set", "vcli", "address", mac]);
        c.up("vcli");
        wait_link_local(&self.net);
    }
}

/// Waits up to 5 s for the client's end to have a link-local address.
fn wait_link_local(net: &Net) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let a = net
            .cli
            .ip(&["-6", "addr", "show", "dev", "vcli", "scope", "link"]);
        if String::from_utf8_lossy(&a.stdout).contains("inet6 fe80::") {
            return;
        }
        assert!(Instant::now() < deadline, "no link-local address on vcli");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn sysctl(ns: &str, setting: &str) {
    let out = Command::new("ip")
        .args(["netns", "exec", ns, "sysctl", "-qw", setting])
        .output()
        .unwrap();
    assert!(out.status.success(), "sysctl {setting}: {out:?}");
}

/// ISC dhclient -6 with its own hook, lease file and pid file in `dir`.
struct Dhclient6 {
    dir: PathBuf,
    running: Option<Process>,
}

impl Dhclient6 {
    fn new(dir: &Path) -> Self {
        let hook = dir.join("hook6.sh");
        std::fs::write(
            &hook,
            "#!/bin/sh\n# Logs what dhclient reports; changes nothing outside this namespace.\n\
             echo \"$reason $new_ip6_address $old_ip6_address\" >> \"$(dirname \"$0\")/hook6.log\"\n\
             case \"$reason\" in BOUND6|RENEW6|REBIND6|REBOOT6) ip -6 addr replace \"$new_ip6_address/128\" dev \"$interface\" nodad ;; esac\n\
             exit 0\n",
        )
        .unwrap();
        pserv_tests::process::run(&["chmod", "+x", hook.to_str().unwrap()]);
        std::fs::write(dir.join("dhclient6.conf"), "send fqdn.fqdn \"probe6\";\n").unwrap();
        Self {
            dir: dir.to_owned(),
            running: None,
        }
    }

    fn command(&self, net: &Net, lease_file: &str) -> Command {
        let mut c = net.cli.exec("dhclient");
        c.args(["-6", "-v", "-d"])
            .args(["-sf", self.dir.join("hook6.sh").to_str().unwrap()])
            .args(["-cf", self.dir.join("dhclient6.conf").to_str().unwrap()])
            .args(["-lf", self.dir.join(lease_file).to_str().unwrap()])
            .args(["-pf", self.dir.join("pid6").to_str().unwrap()]);
        c
    }

    /// Starts dhclient (in the foreground of its own process, which the test stops by PID).
    fn start(&mut self, net: &Net, lease_file: &str) {
        let mut c = self.command(net, lease_file);
        c.arg("vcli").stdout(Stdio::null()).stderr(Stdio::null());
        self.running = Some(Process::spawn(&mut c));
    }

    fn stop(&mut self) {
        self.running = None;
    }

    /// `dhclient -6 -r`: releases what the lease file holds, then exits.
    fn release(&mut self, net: &Net, lease_file: &str) -> std::process::Output {
        self.stop();
        let mut c = Command::new("timeout");
        c.arg("20");
        let inner = self.command(net, lease_file);
        c.arg(inner.get_program());
        c.args(inner.get_args());
        c.args(["-r", "vcli"]);
        c.output().unwrap()
    }

    fn log(&self) -> Vec<String> {
        std::fs::read_to_string(self.dir.join("hook6.log"))
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// Waits up to `secs` for a hook line starting with `reason`; returns its address.
    fn wait_for(&self, reason: &str, after: usize, secs: u64) -> String {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            if let Some(l) = self
                .log()
                .iter()
                .skip(after)
                .find(|l| l.starts_with(reason))
            {
                return l.split(' ').nth(1).unwrap_or("").to_owned();
            }
            assert!(
                Instant::now() < deadline,
                "no {reason} in {secs} s: {:?}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Dhclient6 {
    fn drop(&mut self) {
        self.stop();
    }
}

#[test]
fn dhclient6_reservation_dynamic_renew_release_and_dns() {
    if !ready() {
        return;
    }
    let lab = Lab6::new("v6", 91);
    let (net, p6) = (&lab.net, lab.p6.clone());
    let pserv = lab.serve();
    // radvd's advertisement reaches the client: a default route by the server's link-local.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let r = net.cli.ip(&["-6", "route", "show", "default"]);
        if String::from_utf8_lossy(&r.stdout).contains("via fe80::") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no router advertisement from radvd"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let mut client = Dhclient6::new(lab.dir.path());

    // The node: found by the MAC inside dhclient's DUID-LLT; its reservation.
    client.start(net, "node.leases");
    assert_eq!(client.wait_for("BOUND6", 0, 20), format!("{p6}::10"));
    // Renewed at T1 (3 s): RENEW to this server, REPLY, the same address.
    let seen = client.log().len();
    assert_eq!(client.wait_for("RENEW6", seen, 15), format!("{p6}::10"));
    client.stop();

    // A node without a reservation: a dynamic address, journaled, named in DNS.
    lab.client_mac(BARE_MAC);
    let seen = client.log().len();
    client.start(net, "bare.leases");
    let dynamic = client.wait_for("BOUND6", seen, 20);
    assert!(dynamic.starts_with(&format!("{p6}::1")), "{dynamic}");
    let leases = pserv.leases(net);
    assert!(
        leases.contains(&dynamic) && leases.contains(BARE_MAC),
        "{leases}"
    );
    let server = format!("{}.0.1:53", net.prefix).parse().unwrap();
    let dig = |args: &[&str]| Dig::new(server).in_netns(&net.srv).short(args);
    assert_eq!(dig(&["node2.lab", "AAAA"]), dynamic);
    assert_eq!(dig(&["-x", &dynamic]), "node2.lab.");
    assert_eq!(dig(&["node1.lab", "AAAA"]), format!("{p6}::10"));
    let seen = client.log().len();
    assert_eq!(client.wait_for("RENEW6", seen, 15), dynamic);

    // Released: the lease leaves pserv's set at once.
    let out = client.release(net, "bare.leases");
    assert!(out.status.success(), "{out:?}");
    let deadline = Instant::now() + Duration::from_secs(5);
    while pserv.leases(net).contains(&dynamic) {
        assert!(Instant::now() < deadline, "{}", pserv.leases(net));
        std::thread::sleep(Duration::from_millis(100));
    }

    // An unknown client (its own name, option 39) gets a pool address named after it.
    lab.client_mac("02:00:00:00:91:01");
    let seen = client.log().len();
    client.start(net, "unknown.leases");
    let own = client.wait_for("BOUND6", seen, 20);
    assert_eq!(dig(&["probe6.lab", "AAAA"]), own);
    assert_eq!(dig(&["-x", &own]), "probe6.lab.");
    client.stop();

    let m = pserv.metrics(net);
    assert!(
        metric(&m, "pserv_dhcp6_replies_total{type=\"reply\"} ") >= 6,
        "{m}"
    );
    assert!(
        metric(&m, "pserv_dhcp6_replies_total{type=\"advertise\"} ") >= 3,
        "{m}"
    );
}

#[test]
fn dhcpv6_leases_and_the_server_duid_survive_a_restart() {
    if !ready() {
        return;
    }
    let lab = Lab6::new("v7", 92);
    let net = &lab.net;
    let pserv = lab.serve();
    lab.client_mac(BARE_MAC);
    let mut client = Dhclient6::new(lab.dir.path());
    client.start(net, "bare.leases");
    let ip = client.wait_for("BOUND6", 0, 20);
    client.stop();
    let duid = std::fs::read_to_string(lab.state.join("server.duid")).unwrap();
    pserv.kill9();
    let pserv = lab.serve();
    assert_eq!(
        std::fs::read_to_string(lab.state.join("server.duid")).unwrap(),
        duid
    );
    assert!(pserv.leases(net).contains(&ip));
    // dhclient renews with the same server after the restart (its DUID is the one it knows).
    let seen = client.log().len();
    client.start(net, "bare.leases");
    let again = client.wait_for("RENEW6", seen, 20);
    assert_eq!(again, ip);
}
