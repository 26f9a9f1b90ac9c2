//! From boot to installation with the real consumers of pserv's per-node files (issue 21):
//!
//! - **The Debian installer** (`debian-installer-12-netboot-amd64`) netbooted by SeaBIOS +
//!   iPXE under QEMU (TCG) on a tap in a namespace this test creates, from pserv alone (DHCP,
//!   HTTP boot, DNS, its syslog receiver). The profile's command line points the installer at
//!   its own `preseed.cfg` (`{{ node_files_url }}`) and at pserv's syslog receiver; the
//!   preseed's `early_command` reports to `{{ progress_url }}`, then fetches and runs a second
//!   node file, `early.sh`, which asks for *another* machine's preseed from this machine's
//!   address, reports what it got as a second stage, logs it, and powers the machine off. The
//!   test reads `/v1/events` and asserts: the preseed was served to that machine (a
//!   `node_file` event naming the node), `progress` events with the stages and the node, the
//!   installer's own syslog lines (netcfg's, as d-i's busybox syslogd forwards them) as `log`
//!   events for that node, and the other machine's file refused to this one (404 in the
//!   machine's own words, an `http` event with status 404 for that client, the refusal
//!   counted in `/metrics`, no `node_file` event for the other node).
//! - **cloud-init**: the `user-data`, `meta-data` and `network-config` pserv serves to a
//!   machine, fetched from that machine's reserved address in a namespace by cloud-init's own
//!   NoCloud reader, pass Debian's cloud-init: `cloud-init schema` for the cloud-config and
//!   `cloud-init devel net-convert` for the network configuration (22.4, Debian 12's, has no
//!   schema for network-config). No VM; a few seconds.
//!
//! Both need root (namespaces) and their packages (`.ci/run` installs them); in CI they run,
//! never skip. Every packet stays inside namespaces the test made; they, QEMU and pserv are
//! removed by PID at the end.

#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pserv_tests::netns::Netns;
use pserv_tests::process::Process;
use pserv_tests::{have_root, have_tool, in_ci};
use serde_json::{Value, json};

const PSERV: &str = env!("CARGO_BIN_EXE_pserv");
const DI: &str = "/usr/lib/debian-installer/images/12/amd64/text/debian-installer/amd64";
const SERVER: &str = "10.99.0.2";
/// The installing machine and the other one (which never boots: only its files matter).
const MAC1: &str = "52:54:00:aa:01:01";
const IP1: &str = "10.99.0.21";
const MAC2: &str = "52:54:00:aa:01:02";
const IP2: &str = "10.99.0.22";

/// Every event seen on `/v1/events`, with when it arrived.
#[derive(Debug, Clone)]
struct Seen {
    at: Instant,
    kind: String,
    body: Value,
}

/// `/v1/events` read by `curl -N` inside the namespace, each event stamped on arrival.
struct EventLog {
    seen: Arc<Mutex<Vec<Seen>>>,
    _curl: Process,
}

impl EventLog {
    fn start(ns: &Netns, control: &str) -> Self {
        let mut curl = Process::spawn(
            ns.exec("curl")
                .args(["-sN", &format!("{control}/v1/events")])
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::null()),
        );
        let out = curl.child().stdout.take().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&seen);
        std::thread::spawn(move || {
            let mut kind = String::new();
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                if let Some(k) = line.strip_prefix("event: ") {
                    kind = k.trim().to_owned();
                } else if let Some(d) = line.strip_prefix("data: ")
                    && let Ok(body) = serde_json::from_str(d)
                {
                    sink.lock().unwrap().push(Seen {
                        at: Instant::now(),
                        kind: kind.clone(),
                        body,
                    });
                }
            }
        });
        // The subscription is open once curl has connected; give it a moment.
        std::thread::sleep(Duration::from_millis(300));
        Self { seen, _curl: curl }
    }

    fn of(&self, kind: &str) -> Vec<Seen> {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .filter(|s| s.kind == kind)
            .cloned()
            .collect()
    }

    /// The first event of `kind` for which `f` holds.
    fn first(&self, kind: &str, f: impl Fn(&Value) -> bool) -> Option<Seen> {
        self.of(kind).into_iter().find(|s| f(&s.body))
    }
}

/// pserv serving in `ns`, stopped by PID on drop.
struct Pserv {
    _process: Process,
    control: String,
}

impl Pserv {
    fn start(ns: &Netns, dir: &Path, snap: &Path, boot: Option<&Path>, extra: &[&str]) -> Self {
        let mut c = ns.exec(PSERV);
        c.arg("serve")
            .args(["--snapshot", snap.to_str().unwrap()])
            .args(["--control-listen", "127.0.0.1:0"])
            .args(["--state-dir", dir.join("state").to_str().unwrap()])
            .args(extra);
        if let Some(b) = boot {
            c.args(["--boot-dir", b.to_str().unwrap()]);
        }
        let mut process = Process::spawn(
            c.env("RUST_LOG", "warn")
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit()),
        );
        let banner = pserv_tests::read_banner(process.child());
        Self {
            _process: process,
            control: banner.control,
        }
    }

    fn metrics(&self, ns: &Netns) -> String {
        let out = ns
            .exec("curl")
            .args(["-s", &format!("{}/metrics", self.control)])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

// ---------------------------------------------------------------------------------------
// The Debian installer
// ---------------------------------------------------------------------------------------

/// The installer's preseed: report the stage, then run `early.sh` (another node file).
/// `early_command` is one line run by `sh -c`; d-i's `wget` is GNU wget.
const PRESEED: &str = "\
# pserv installer test: {{ node.hostname }}'s preseed (only {{ node.ipv4 }} may read it)
d-i debian-installer/locale string en_US.UTF-8
d-i keyboard-configuration/xkb-keymap select us
d-i netcfg/choose_interface select auto
d-i preseed/early_command string wget -q -O /dev/null '{{ progress_url }}?stage=early&message=preseed+loaded'; wget -q -O /tmp/early.sh '{{ node_files_url }}early.sh' && sh /tmp/early.sh
";

/// Asks for the other machine's preseed from this machine's address, says what came back
/// (GNU wget prints `ERROR 404: Not Found.`), and powers off: the test has all it needs.
const EARLY_SH: &str = r#"#!/bin/sh
if out=$(wget -O /dev/null '{{ boot_http }}/nodes/{{ vars.peer }}/preseed.cfg' 2>&1); then
  r=served
else
  case "$out" in *404*) r=refused ;; *) r=error ;; esac
fi
logger -t pserv-test "peer preseed $r"
wget -q -O /dev/null "{{ progress_url }}?stage=peer&message=$r"
sleep 1
poweroff -f
"#;

fn installer_snapshot() -> String {
    let node = |id: &str, mac: &str, ip: &str, peer: &str| {
        json!({ "id": id, "hostname": id, "domain": "lab",
                "interfaces": [ { "mac": mac, "ipv4": ip } ],
                "boot": { "profile": "bookworm", "vars": { "peer": peer.replace(':', "-") } } })
    };
    json!({
        "generation": 1,
        "boot_profiles": { "bookworm": {
            "kernel": "debian/linux", "initrd": ["debian/initrd.gz"],
            "cmdline": "auto=true priority=critical url={{ node_files_url }}preseed.cfg \
                        log_host={{ syslog_host }} log_port={{ syslog_port }} console=ttyS0,115200",
            "node_files": { "preseed.cfg": PRESEED, "early.sh": EARLY_SH } } },
        "subnets": [ { "cidr": "10.99.0.0/16", "router": SERVER, "dns_servers": [SERVER],
                       "domain": "lab", "lease_seconds": 600, "unknown_clients": "ignore",
                       "boot": {} } ],
        "nodes": [ node("inst1", MAC1, IP1, MAC2), node("inst2", MAC2, IP2, MAC1) ]
    })
    .to_string()
}

fn installer_ready() -> bool {
    if !(have_root("the Debian installer in QEMU in a network namespace")
        && have_tool("qemu-system-x86_64")
        && have_tool("ip")
        && have_tool("curl"))
    {
        return false;
    }
    let missing: Vec<String> = ["linux", "initrd.gz"]
        .iter()
        .map(|f| format!("{DI}/{f}"))
        .filter(|f| !Path::new(f).exists())
        .collect();
    if !missing.is_empty() {
        assert!(
            !in_ci(),
            "CI installs debian-installer-12-netboot-amd64; missing {missing:?}"
        );
        eprintln!(
            "SKIP: the installer test needs {missing:?} (apt-get install debian-installer-12-netboot-amd64)"
        );
        return false;
    }
    true
}

/// The CPU seconds QEMU has used, QEMU being the child of the `timeout` whose PID is given.
fn qemu_cpu(timeout_pid: u32) -> Option<f64> {
    let p = timeout_pid;
    let children = std::fs::read_to_string(format!("/proc/{p}/task/{p}/children")).ok()?;
    let qemu = children.split_whitespace().next()?;
    let stat = std::fs::read_to_string(format!("/proc/{qemu}/stat")).ok()?;
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    // utime and stime, in clock ticks (USER_HZ, 100 on Linux).
    let ticks = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}

/// The last `n` lines of the console, for a failure message.
fn console_tail(serial: &Path, n: usize) -> String {
    let text = pserv_tests::serial_console(serial);
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

fn is_node1(v: &Value) -> bool {
    v["node"] == "inst1" && v["mac"] == MAC1
}

#[test]
fn the_debian_installer_reads_its_preseed_reports_progress_and_logs_to_pserv() {
    if !installer_ready() {
        return;
    }
    let t_setup = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let boot = dir.path().join("boot");
    std::fs::create_dir_all(boot.join("debian")).unwrap();
    for f in ["linux", "initrd.gz"] {
        std::fs::copy(format!("{DI}/{f}"), boot.join("debian").join(f)).unwrap();
    }
    let snap = dir.path().join("snap.json");
    std::fs::write(&snap, installer_snapshot()).unwrap();

    // Declared before the namespace: dropped (stopped by PID) before it is deleted.
    let ns = Netns::new("di");
    ns.bridge("br0");
    ns.addr("br0", &format!("{SERVER}/16"));
    ns.tap("tapdi", "br0");
    let pserv = Pserv::start(
        &ns,
        dir.path(),
        &snap,
        Some(&boot),
        &[
            "--dhcp-listen",
            "0.0.0.0:67",
            "--dhcp-interface",
            "br0",
            "--dns-listen",
            &format!("{SERVER}:53"),
            "--tftp-listen",
            "0.0.0.0:69",
            "--boot-http-listen",
            "0.0.0.0:5248",
            "--syslog-listen",
            "0.0.0.0:514",
        ],
    );
    let events = EventLog::start(&ns, &pserv.control);
    eprintln!("set up in {:?}", t_setup.elapsed());

    // SeaBIOS + the iPXE ROM of QEMU's e1000: DHCP gives iPXE its script URL, the script the
    // installer's kernel, initrd and command line.
    let mut routers = ns.answer_router_solicitations("br0");
    let serial = dir.path().join("serial.log");
    let t0 = Instant::now();
    let mut vm = Process::spawn(
        ns.exec("timeout")
            .args(["420", "qemu-system-x86_64", "-accel", "tcg", "-m", "1024"])
            .args(["-display", "none", "-machine", "pc,graphics=off"])
            .args(["-serial", &format!("file:{}", serial.display())])
            .args(["-no-reboot", "-boot", "n"])
            .args(["-netdev", "tap,id=n0,ifname=tapdi,script=no,downscript=no"])
            .args(["-device", &format!("e1000,netdev=n0,mac={MAC1}")])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    );

    // Until the machine has reported its last stage and logged it (then it powers itself
    // off), or QEMU is gone, or the limit.
    let limit = Duration::from_secs(400);
    let done = || {
        events
            .first("progress", |v| is_node1(v) && v["stage"] == "peer")
            .is_some()
            && events
                .first("log", |v| is_node1(v) && v["app"] == "pserv-test")
                .is_some()
    };
    let mut exited = None;
    let mut answered = None;
    let mut cpu = Vec::new();
    while !done() && t0.elapsed() < limit {
        if let Some(c) = qemu_cpu(vm.id()) {
            cpu.push((Instant::now(), c));
        }
        if answered.is_none()
            && events
                .first("http", |v| v["path"] == "/debian/linux")
                .is_some()
        {
            answered = Some(routers.stop());
        }
        if let Some(s) = vm.exited() {
            exited = Some(s);
            // What was already sent is still arriving.
            std::thread::sleep(Duration::from_secs(1));
            break;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    let vm_end = t0.elapsed();
    let powered_off = exited.is_some() || vm.terminate(Duration::from_secs(5)).is_some();
    // When, and how much CPU QEMU had used by then (TCG: the guest's work; a gap between
    // the two is a busy host or the guest waiting).
    let at = |s: &Option<Seen>| {
        s.as_ref().map_or("never".to_owned(), |s| {
            let used = cpu.iter().take_while(|(t, _)| *t <= s.at).last();
            format!(
                "{:.1?} (cpu {:.1}s)",
                s.at.duration_since(t0),
                used.map_or(0.0, |u| u.1)
            )
        })
    };

    let script = events.first("boot_config", |v| v["mac"] == MAC1);
    let initrd = events.first("http", |v| v["path"] == "/debian/initrd.gz");
    let first_log = events.first("log", is_node1);
    let preseed = events.first("node_file", |v| is_node1(v) && v["file"] == "preseed.cfg");
    let early = events.first("progress", |v| is_node1(v) && v["stage"] == "early");
    let peer = events.first("progress", |v| is_node1(v) && v["stage"] == "peer");
    eprintln!(
        "installer timeline (from power-on): iPXE script {}, initrd {}, first syslog line {}, \
         preseed served {}, progress early {}, progress peer {}, VM stopped {vm_end:.1?} ({})",
        at(&script),
        at(&initrd),
        at(&first_log),
        at(&preseed),
        at(&early),
        at(&peer),
        if exited.is_some() {
            "powered itself off"
        } else {
            "stopped by the test"
        }
    );
    eprintln!("IPv6 router solicitations answered during iPXE: {answered:?}");
    let tail = || console_tail(&serial, 25);
    assert!(powered_off);

    // The machine netbooted from pserv: its iPXE script, then the installer.
    let script = script.unwrap_or_else(|| panic!("no iPXE script served; console:\n{}", tail()));
    assert_eq!(
        (
            &script.body["node"],
            &script.body["loader"],
            &script.body["mode"]
        ),
        (&json!("inst1"), &json!("ipxe"), &json!("netboot"))
    );

    // Its preseed, served to it and named for it.
    let preseed = preseed.unwrap_or_else(|| {
        panic!(
            "the installer never fetched its preseed; events {:?}; console:\n{}",
            events.of("http"),
            tail()
        )
    });
    assert_eq!(preseed.body["client"], IP1, "{:?}", preseed.body);
    assert_eq!(preseed.body["via"], "http", "{:?}", preseed.body);
    assert!(preseed.body["bytes"].as_u64().unwrap_or(0) > 0);
    assert!(
        events
            .first("node_file", |v| is_node1(v) && v["file"] == "early.sh")
            .is_some(),
        "early_command fetched early.sh: {:?}",
        events.of("node_file")
    );

    // Its progress: the preseed's early_command, then early.sh's report.
    let early = early.unwrap_or_else(|| {
        panic!(
            "no progress event from early_command: {:?}; console:\n{}",
            events.of("progress"),
            tail()
        )
    });
    assert_eq!(early.body["client"], IP1);
    assert_eq!(early.body["message"], "preseed loaded");
    let peer = peer.unwrap_or_else(|| {
        panic!(
            "no progress event from early.sh: {:?}; console:\n{}",
            events.of("progress"),
            tail()
        )
    });

    // The other machine's file, asked for from this machine's address: refused, in the
    // machine's own words, in the server's answer to that client, and in /metrics.
    assert_eq!(
        peer.body["message"], "refused",
        "the installer got the other machine's preseed"
    );
    let peer_path = format!("/nodes/{}/preseed.cfg", MAC2.replace(':', "-"));
    let answer = events
        .first("http", |v| v["path"] == peer_path.as_str())
        .unwrap_or_else(|| panic!("no http event for {peer_path}: {:?}", events.of("http")));
    assert_eq!(answer.body["status"], 404, "{:?}", answer.body);
    assert!(
        answer.body["client"]
            .as_str()
            .is_some_and(|c| c.starts_with(&format!("{IP1}:"))),
        "{:?}",
        answer.body
    );
    assert!(
        events
            .of("node_file")
            .iter()
            .all(|s| s.body["node"] == "inst1" && s.body["mac"] == MAC1),
        "only inst1's files were served: {:?}",
        events.of("node_file")
    );
    let metrics = pserv.metrics(&ns);
    assert!(
        pserv_tests::metric(
            &metrics,
            "pserv_boot_http_responses_total{kind=\"refused\"}"
        ) >= 1,
        "{metrics}"
    );

    // The installer's own syslog, and early.sh's line, as log events for this node.
    let logs: Vec<Value> = events.of("log").into_iter().map(|s| s.body).collect();
    let mine: Vec<&Value> = logs.iter().filter(|v| is_node1(v)).collect();
    assert!(
        logs.iter()
            .all(|v| v["client"].as_str().is_some_and(|c| c.starts_with(IP1))),
        "every log line came from the installer: {logs:?}"
    );
    assert_eq!(
        mine.len(),
        logs.len(),
        "every line names its node: {logs:?}"
    );
    assert!(
        mine.iter().any(|v| v["app"] == "netcfg"),
        "the installer's netcfg lines: {mine:?}"
    );
    let own = mine
        .iter()
        .find(|v| v["app"] == "pserv-test")
        .unwrap_or_else(|| panic!("early.sh's logger line: {mine:?}"));
    assert_eq!(own["message"], "peer preseed refused", "{own:?}");
    let netcfg: Vec<&&Value> = mine.iter().filter(|v| v["app"] == "netcfg").collect();
    eprintln!(
        "{} log events from the installer, {} of them netcfg's, e.g. {}; whole test {:?}",
        mine.len(),
        netcfg.len(),
        netcfg[0],
        t_setup.elapsed()
    );
}

// ---------------------------------------------------------------------------------------
// cloud-init
// ---------------------------------------------------------------------------------------

const USER_DATA: &str = r#"#cloud-config
hostname: {{ node.hostname }}
fqdn: {{ node.fqdn }}
manage_etc_hosts: true
users:
  - name: ops
    gecos: Operations
    groups: [sudo]
    shell: /bin/bash
    sudo: "ALL=(ALL) NOPASSWD:ALL"
    lock_passwd: true
    ssh_authorized_keys:
      - ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHk5gq3mQbN0Fk3oJ6cX0c4tVqK1h3lY2o9sP8wY7xYz ops@lab
ssh_pwauth: false
package_update: false
runcmd:
  - [ sh, -c, "wget -q -O /dev/null '{{ progress_url }}?stage=first-boot&message=cloud-init+runcmd'" ]
"#;

const META_DATA: &str = "\
instance-id: {{ node.id }}
local-hostname: {{ node.hostname }}
";

const NETWORK_CONFIG: &str = r#"version: 2
ethernets:
  primary:
    match:
      macaddress: "{{ node.mac }}"
    set-name: eth0
    addresses: [{{ node.ipv4 }}/24]
    routes:
      - to: default
        via: {{ subnet.router }}
    nameservers:
      search: [{{ subnet.domain }}]
      addresses: [{{ subnet.router }}]
"#;

/// cloud-init's own NoCloud reader (`util.read_seeded`, what a `ds=nocloud-net;s=URL`
/// machine runs) fetching the seed from `base`; prints the meta-data as JSON and writes the
/// user-data to `out`.
const READ_SEEDED: &str = r#"
import json, sys
from cloudinit import util
md, ud, vd = util.read_seeded(sys.argv[1], timeout=5, retries=0)
assert isinstance(md, dict), md
open(sys.argv[2], "wb").write(ud)
print(json.dumps(md))
"#;

#[test]
fn cloud_init_accepts_what_pserv_serves_a_machine() {
    if !(have_root("cloud-init's check from a machine's address in a namespace")
        && have_tool("ip")
        && have_tool("curl"))
    {
        return;
    }
    if !Path::new("/usr/bin/cloud-init").exists() {
        assert!(!in_ci(), "CI installs cloud-init (.ci/run)");
        eprintln!(
            "SKIP: the cloud-init check needs Debian's cloud-init (apt-get install cloud-init)"
        );
        return;
    }
    let t0 = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let snap = dir.path().join("snap.json");
    let node = |id: &str, mac: &str, ip: &str| {
        json!({ "id": id, "hostname": id, "domain": "lab",
                "interfaces": [ { "mac": mac, "ipv4": ip } ], "boot": { "profile": "cloud" } })
    };
    std::fs::write(
        &snap,
        json!({
            "generation": 1,
            "boot_profiles": { "cloud": {
                "kernel": "debian/linux",
                "cmdline": "ds=nocloud-net;s={{ node_files_url }}",
                "node_files": { "user-data": USER_DATA, "meta-data": META_DATA,
                                "network-config": NETWORK_CONFIG } } },
            "subnets": [ { "cidr": "10.98.0.0/24", "router": "10.98.0.1", "domain": "lab",
                           "boot": { "next_server": "10.98.0.1" } } ],
            "nodes": [ node("vm1", "52:54:00:bb:00:01", "10.98.0.31"),
                       node("vm2", "52:54:00:bb:00:02", "10.98.0.32") ]
        })
        .to_string(),
    )
    .unwrap();

    // pserv in one namespace, the machine (its reserved address) in another, a veth between.
    let (srv, machine) = (Netns::new("cis"), Netns::new("cim"));
    srv.veth("v0", &machine, "v1");
    srv.addr("v0", "10.98.0.1/24");
    machine.addr("v1", "10.98.0.31/24");
    let boot = dir.path().join("boot");
    std::fs::create_dir(&boot).unwrap();
    let pserv = Pserv::start(
        &srv,
        dir.path(),
        &snap,
        Some(&boot),
        &["--boot-http-listen", "10.98.0.1:5248"],
    );
    let base = "http://10.98.0.1:5248/nodes/52-54-00-bb-00-01/";

    // What cloud-init reads, fetched as the machine: meta-data and user-data by NoCloud's
    // own reader, network-config (which NoCloud-net takes from the seed too) by curl.
    let user_data = dir.path().join("user-data");
    let out = machine
        .exec("/usr/bin/python3")
        .args(["-c", READ_SEEDED, base, user_data.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success(), "cloud-init's NoCloud reader: {out:?}");
    let md: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(md, json!({ "instance-id": "vm1", "local-hostname": "vm1" }));
    let ud = std::fs::read_to_string(&user_data).unwrap();
    assert!(ud.starts_with("#cloud-config\nhostname: vm1\n"), "{ud}");
    let network = dir.path().join("network-config");
    let fetch = |url: &str, to: &Path| {
        machine
            .exec("curl")
            .args(["-sf", "-o", to.to_str().unwrap(), "-w", "%{http_code}", url])
            .output()
            .unwrap()
    };
    let got = fetch(&format!("{base}network-config"), &network);
    assert_eq!(String::from_utf8_lossy(&got.stdout), "200", "{got:?}");

    // Debian's cloud-init accepts them: the cloud-config against its schema...
    let schema = |file: &Path| {
        Command::new("cloud-init")
            .args(["schema", "--config-file", file.to_str().unwrap()])
            .output()
            .unwrap()
    };
    let checked = schema(&user_data);
    assert!(
        checked.status.success()
            && String::from_utf8_lossy(&checked.stdout).contains("Valid cloud-config"),
        "cloud-init schema rejected pserv's user-data:\n{ud}\n{checked:?}"
    );
    // ...(which does reject a broken one: the check is not vacuous)...
    let broken = dir.path().join("broken");
    std::fs::write(&broken, ud.replace("ssh_pwauth: false", "ssh_pwauth: [1]")).unwrap();
    assert!(!schema(&broken).status.success());
    // ...and the network configuration through its parser and renderer.
    let rendered = dir.path().join("rendered");
    let converted = Command::new("cloud-init")
        .args(["devel", "net-convert", "--network-data"])
        .arg(&network)
        .args([
            "--kind",
            "yaml",
            "--distro",
            "debian",
            "--output-kind",
            "netplan",
        ])
        .arg("--directory")
        .arg(&rendered)
        .output()
        .unwrap();
    assert!(converted.status.success(), "{converted:?}");
    let netplan = std::fs::read_to_string(rendered.join("etc/netplan/50-cloud-init.yaml"))
        .unwrap_or_else(|e| panic!("net-convert wrote no netplan file ({e}): {converted:?}"));
    for want in ["10.98.0.31/24", "52:54:00:bb:00:01", "via: 10.98.0.1"] {
        assert!(netplan.contains(want), "{want} in:\n{netplan}");
    }

    // The runcmd's progress URL works from the machine; the other machine's files do not.
    let url = ud
        .split('\'')
        .find(|s| s.starts_with("http://") && s.contains("/progress?"))
        .unwrap_or_else(|| panic!("a progress URL in the runcmd: {ud}"));
    let reported = machine
        .exec("curl")
        .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", url])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&reported.stdout), "204");
    let other = fetch(
        "http://10.98.0.1:5248/nodes/52-54-00-bb-00-02/user-data",
        &dir.path().join("other"),
    );
    assert_eq!(String::from_utf8_lossy(&other.stdout), "404");
    let metrics = pserv.metrics(&srv);
    assert_eq!(
        pserv_tests::metric(
            &metrics,
            "pserv_boot_progress_requests_total{result=\"accepted\"}"
        ),
        1,
        "{metrics}"
    );
    eprintln!("cloud-init check in {:?}", t0.elapsed());
}
