//! Real DHCP clients (udhcpc, dhclient) against the real binary, across a veth pair between two
//! network namespaces this test creates. Needs root; runs (never skips) when `CI=true`.
//!
//! Every packet stays inside the namespaces; they and the processes are removed at the end.

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use pserv_tests::dns::Dig;
use pserv_tests::process::{Process, Signal, run};
use pserv_tests::{have_root, have_tool, metric};

mod netns;
use netns::{Lab, Net, udhcpc};

struct Dhclient {
    dir: PathBuf,
}

impl Drop for Dhclient {
    fn drop(&mut self) {
        self.stop();
    }
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
        self.run_as(net, release, None)
    }

    /// Runs with its own configuration, lease file and pid file when `client_id` is given:
    /// dhclient then sends that option 61 (colon-separated hex) instead of its default
    /// (hardware type 1 and the MAC).
    fn run_as(&self, net: &Net, release: bool, client_id: Option<&str>) -> Output {
        let tag = client_id.map_or(String::new(), |id| format!("-{}", id.replace(':', "")));
        let mut c = Command::new("timeout");
        c.args([
            "30",
            "ip",
            "netns",
            "exec",
            net.cli.name(),
            "dhclient",
            "-4",
            "-1",
            "-v",
        ])
        .args(["-sf", self.dir.join("hook.sh").to_str().unwrap()])
        .args([
            "-lf",
            self.dir.join(format!("leases{tag}")).to_str().unwrap(),
        ])
        .args(["-pf", self.dir.join("pid").to_str().unwrap()]);
        if let Some(id) = client_id {
            let conf = self.dir.join(format!("dhclient{tag}.conf"));
            std::fs::write(&conf, format!("send dhcp-client-identifier {id};\n")).unwrap();
            c.args(["-cf", conf.to_str().unwrap()]);
        }
        if release {
            c.arg("-r");
        }
        let out = c.arg("vcli").output().unwrap();
        self.stop();
        out
    }

    /// dhclient stays behind to renew: stop it after every run, by the PID its pid file (this
    /// test's own) holds, if that process is still this test's dhclient.
    fn stop(&self) {
        let pid_file = self.dir.join("pid");
        let pid = std::fs::read_to_string(&pid_file)
            .ok()
            .and_then(|p| p.trim().parse::<i32>().ok());
        if let Some(pid) = pid {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let ours = String::from_utf8_lossy(&cmdline).contains(&*pid_file.to_string_lossy());
            if ours {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGTERM,
                );
            }
        }
        let _ = std::fs::remove_file(pid_file);
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
    let lab = Lab::new("u", 71);
    let net = &lab.net;
    let pserv = lab.serve();

    // The reserved MAC gets its reservation.
    assert_eq!(
        udhcpc(net).as_deref(),
        Some(format!("{}.0.10", net.prefix).as_str())
    );
    // An unknown MAC gets a dynamic address from the pool, journaled.
    net.set_client_mac("02:00:00:00:77:01");
    let dynamic = udhcpc(net).expect("a dynamic lease");
    assert!(
        dynamic.starts_with(&format!("{}.200.", net.prefix)),
        "{dynamic}"
    );
    assert!(pserv.leases(net).contains(&dynamic));
    // Its hostname ("probe", option 12) is published in DNS (the subnet enables it), forward
    // and reverse; the known node's name is the table's.
    let server = format!("{}.0.1:53", net.prefix).parse().unwrap();
    let dig = |args: &[&str]| Dig::new(server).in_netns(&net.srv).short(args);
    assert_eq!(dig(&["probe.lab", "A"]), dynamic);
    assert_eq!(dig(&["-x", &dynamic]), "probe.lab.");
    assert_eq!(dig(&["node1.lab", "A"]), format!("{}.0.10", net.prefix));

    // kill -9, restart on the same state: the acknowledged lease is still there, and the same
    // client gets the same address back.
    pserv.kill9();
    let pserv = lab.serve();
    let leases = pserv.leases(net);
    assert!(
        leases.contains(&dynamic) && leases.contains("02:00:00:00:77:01"),
        "{leases}"
    );
    assert_eq!(udhcpc(net).as_deref(), Some(dynamic.as_str()));
}

#[test]
fn dhclient_bind_renew_release_and_nak_after_the_reservation_moves() {
    if !ready() {
        return;
    }
    let lab = Lab::new("d", 72);
    let (net, p) = (&lab.net, lab.p());
    let pserv = lab.serve();
    let client = Dhclient::new(lab.dir.path());

    let out = client.run(net, false);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        client.log().last().unwrap(),
        &format!("BOUND {p}.0.10 node1")
    );
    // dhclient does not ask for broadcast: pserv set the ARP entry and unicast its replies to
    // the client's hardware address (RFC 2131 §4.1).
    let unicasts = metric(&pserv.metrics(net), "pserv_dhcp_hardware_unicast_total ");
    assert!(unicasts >= 2, "OFFER and ACK unicast: {unicasts}");
    // Again: dhclient reuses its lease file (INIT-REBOOT) and is ACKed.
    let out = client.run(net, false);
    assert!(out.status.success(), "{out:?}");
    let last = client.log().last().unwrap().clone();
    assert!(last.ends_with(&format!("{p}.0.10 node1")), "{last}");

    // The controller moves the reservation; SIGHUP reloads. The client's next request for
    // the old address is NAKed, and it gets the new one.
    lab.reserve(2, "0.20");
    pserv.process.signal(Signal::SIGHUP);
    std::thread::sleep(Duration::from_millis(500));
    let out = client.run(net, false);
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
    let out = client.run(net, true);
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("DHCPRELEASE"));
}

/// RFC 2131 §4.2 and RFC 6842 with a real client: dhclient sending its own option 61 is
/// identified by it. Two identifiers from one MAC are two clients with two leases; each ACK
/// carries the identifier back; a RELEASE under one identifier frees only that lease.
#[test]
fn dhclient_client_identifier_is_the_client_and_is_echoed() {
    if !ready() {
        return;
    }
    let lab = Lab::new("i", 74);
    let net = &lab.net;
    let pserv = lab.serve();
    net.set_client_mac("02:00:00:00:74:01");
    let client = Dhclient::new(lab.dir.path());
    let bound = |id: &str| {
        let out = client.run_as(net, false, Some(id));
        assert!(out.status.success(), "{out:?}");
        let last = client.log().last().unwrap().clone();
        assert!(last.starts_with("BOUND "), "{last}");
        last.split(' ').nth(1).unwrap().to_owned()
    };
    let (id1, id2) = ("0:1:2:3:4:5:6", "0:9:9:9:9:9:9");
    let first = bound(id1);
    let second = bound(id2);
    assert_ne!(first, second, "one MAC, two identifiers: two clients");
    let leases = pserv.leases(net);
    assert!(
        leases.contains("00:01:02:03:04:05:06") && leases.contains("00:09:09:09:09:09:09"),
        "{leases}"
    );
    // dhclient keeps what the server sent in its lease file: the identifier came back.
    let file = std::fs::read_to_string(lab.dir.path().join("leases-0123456")).unwrap();
    assert!(file.contains("dhcp-client-identifier"), "{file}");
    // Releasing under the first identifier frees the first lease only.
    let out = client.run_as(net, true, Some(id1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("DHCPRELEASE"),
        "{out:?}"
    );
    std::thread::sleep(Duration::from_millis(300));
    let leases = pserv.leases(net);
    let has = |ip: &str| leases.split_whitespace().any(|w| w == ip);
    assert!(!has(&first) && has(&second), "{leases}");
}

/// udhcpc kept running: it renews on SIGUSR1 and releases on SIGUSR2.
#[test]
fn udhcpc_renews_and_releases() {
    if !ready() {
        return;
    }
    let lab = Lab::new("r", 73);
    let (net, dir) = (&lab.net, &lab.dir);
    let pserv = lab.serve();
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
    let client = Process::spawn(
        net.cli
            .exec("udhcpc")
            .args(["-i", "vcli", "-f", "-t", "5", "-T", "1"])
            .args(["-s", script.to_str().unwrap()])
            .stdout(Stdio::from(std::fs::File::create(&log).unwrap()))
            .stderr(Stdio::from(
                std::fs::File::options().append(true).open(&log).unwrap(),
            )),
    );
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
    let text = wait_for("obtained", 1);
    let ip = pserv_tests::netns::leased(&text).unwrap();
    assert!(pserv.leases(net).contains(&ip));
    // Renew: a unicast REQUEST with ciaddr, ACKed with the same address.
    client.signal(Signal::SIGUSR1);
    let text = wait_for("obtained", 2);
    assert_eq!(
        text.matches(&format!("lease of {ip} obtained")).count(),
        2,
        "{text}"
    );
    // Release: the lease is gone on the server.
    client.signal(Signal::SIGUSR2);
    wait_for("released", 1);
    let deadline = Instant::now() + Duration::from_secs(10);
    while pserv.leases(net).contains(&ip) {
        assert!(
            Instant::now() < deadline,
            "the released lease is still listed"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
