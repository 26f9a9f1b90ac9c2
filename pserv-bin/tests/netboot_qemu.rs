//! Real firmware netbooting real Linux from pserv alone (issue 11): QEMU under TCG on taps
//! bridged in a network namespace this test creates, pserv serving DHCP, TFTP, HTTP and DNS
//! there, nothing else.
//!
//! - SeaBIOS + Debian's iPXE option ROM: DHCP gives iPXE its per-node script URL; the script
//!   loads the kernel and initrd over HTTP.
//! - OVMF (UEFI PXE): DHCP gives `ipxe.efi` over TFTP, which fetches the script the same way.
//! - pxelinux: a node whose boot file is `pxelinux.0` reads its rendered `pxelinux.cfg/01-<mac>`
//!   and loads kernel and initrd over TFTP.
//!
//! Each boots the debian-installer kernel with an initramfs built here (a static busybox and
//! an `/init` that prints `PSERV-BOOTED host=<the hostname pserv rendered into the command
//! line>` on the serial console and powers off). Also: a `local` node gets its local-boot
//! script and no kernel, an `ignore` node gets an address and no boot offer, and a push
//! switching a node from netboot to local takes effect at its next boot.
//!
//! Needs root and the firmware packages (`.ci/run` installs them); runs, never skips, in CI.
//! Every packet stays in the namespace; it, QEMU and pserv are removed by PID at the end.

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use pserv_tests::netns::Netns;
use pserv_tests::process::Process;
use pserv_tests::{have_root, have_tool, in_ci};

const PSERV: &str = env!("CARGO_BIN_EXE_pserv");
const KERNEL: &str = "/usr/lib/debian-installer/images/12/amd64/text/debian-installer/amd64/linux";
const FILES: [(&str, &str); 6] = [
    ("/usr/lib/ipxe/undionly.kpxe", "undionly.kpxe"),
    ("/usr/lib/ipxe/ipxe.efi", "ipxe.efi"),
    ("/usr/lib/PXELINUX/pxelinux.0", "pxelinux.0"),
    ("/usr/lib/syslinux/modules/bios/ldlinux.c32", "ldlinux.c32"),
    (KERNEL, "images/vmlinuz"),
    ("/bin/busybox", ""),
];
const OVMF_CODE: &str = "/usr/share/OVMF/OVMF_CODE_4M.fd";
const OVMF_VARS: &str = "/usr/share/OVMF/OVMF_VARS_4M.fd";
/// ARM64 UEFI (package qemu-efi-aarch64).
const AAVMF_CODE: &str = "/usr/share/AAVMF/AAVMF_CODE.fd";
const AAVMF_VARS: &str = "/usr/share/AAVMF/AAVMF_VARS.fd";
/// Debian's arm64 installer kernel (package debian-installer-12-netboot-arm64).
const ARM64_KERNEL: &str =
    "/usr/lib/debian-installer/images/12/arm64/text/debian-installer/arm64/linux";
/// Where `.ci/run` unpacks Debian's arm64 shim-signed, grub-efi-arm64-signed and
/// busybox-static (`apt-get download`, `dpkg-deb -x`); `PSERV_ARM64_ROOT` overrides it.
const ARM64_ROOT: &str = "/opt/pserv-ci/arm64";
/// OVMF with Microsoft's keys enrolled and Secure Boot on (package ovmf).
const OVMF_CODE_SECURE: &str = "/usr/share/OVMF/OVMF_CODE_4M.ms.fd";
const OVMF_VARS_SECURE: &str = "/usr/share/OVMF/OVMF_VARS_4M.ms.fd";
const SERVER: &str = "10.99.0.2";
/// The tests of this file each run two machines at once, on a two-core runner: one test at a
/// time.
static VMS: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn ready() -> bool {
    if !(have_root("netbooting QEMU firmware in a network namespace")
        && have_tool("qemu-system-x86_64")
        && have_tool("ip")
        && have_tool("curl")
        && have_tool("cpio"))
    {
        return false;
    }
    let missing: Vec<&str> = FILES
        .iter()
        .map(|(f, _)| *f)
        .chain([OVMF_CODE, OVMF_VARS])
        .filter(|f| !Path::new(f).exists())
        .collect();
    if !missing.is_empty() {
        assert!(
            !in_ci(),
            "CI installs the netboot packages; missing {missing:?}"
        );
        eprintln!("SKIP: netboot firmware tests need {missing:?} (see .ci/run)");
        return false;
    }
    true
}

/// The namespace: a bridge `br0` holding the server address, the machines' taps on it.
fn lab_netns() -> Netns {
    let ns = Netns::new("nb");
    ns.bridge("br0");
    ns.addr("br0", &format!("{SERVER}/16"));
    ns
}

/// The machines: (name, MAC, reserved host part, boot settings as JSON).
const NODES: [Machine<'_>; 5] = [
    (
        "bios1",
        "52:54:00:aa:00:01",
        "11",
        r#"{ "profile": "live" }"#,
    ),
    (
        "pxe1",
        "52:54:00:aa:00:02",
        "12",
        r#"{ "profile": "live", "files": { "x86_64-bios": "pxelinux.0" } }"#,
    ),
    (
        "uefi1",
        "52:54:00:aa:00:03",
        "13",
        r#"{ "profile": "live" }"#,
    ),
    (
        "local1",
        "52:54:00:aa:00:04",
        "14",
        r#"{ "mode": "local", "profile": "live" }"#,
    ),
    (
        "ignore1",
        "52:54:00:aa:00:05",
        "15",
        r#"{ "mode": "ignore", "profile": "live" }"#,
    ),
];

/// A machine of a test: (name, MAC, host part of 10.99.0.x, boot settings as JSON).
type Machine<'a> = (&'a str, &'a str, &'a str, &'a str);

fn snapshot(generation: u64, bios1_local: bool) -> String {
    let nodes: Vec<Machine<'_>> = NODES
        .iter()
        .map(|&(name, mac, host, boot)| {
            if name == "bios1" && bios1_local {
                (name, mac, host, r#"{ "mode": "local", "profile": "live" }"#)
            } else {
                (name, mac, host, boot)
            }
        })
        .collect();
    lab_snapshot(generation, &nodes, "{}")
}

/// The lab's snapshot: profile `live` (the kernel and the initramfs that reports the
/// hostname), one subnet with `subnet_boot` as its boot settings, the machines as nodes.
fn lab_snapshot(generation: u64, machines: &[Machine<'_>], subnet_boot: &str) -> String {
    let nodes: Vec<String> = machines
        .iter()
        .map(|(name, mac, host, boot)| {
            format!(
                r#"{{ "id": "{name}", "hostname": "{name}", "domain": "lab",
                  "interfaces": [ {{ "mac": "{mac}", "ipv4": "10.99.0.{host}" }} ], "boot": {boot} }}"#
            )
        })
        .collect();
    format!(
        r#"{{ "generation": {generation},
  "boot_profiles": {{ "live": {{ "kernel": "images/vmlinuz", "initrd": ["images/initrd.img"],
      "cmdline": "console=ttyS0 panic=-1 pserv.host={{{{ node.hostname }}}}" }},
    "live-arm64": {{ "kernel": "images/arm64/vmlinuz", "initrd": ["images/arm64/initrd.img"],
      "cmdline": "console=ttyAMA0 panic=-1 pserv.host={{{{ node.hostname }}}}" }} }},
  "subnets": [ {{ "cidr": "10.99.0.0/16", "router": "{SERVER}", "dns_servers": ["{SERVER}"],
                  "domain": "lab", "lease_seconds": 600, "unknown_clients": "ignore",
                  "boot": {subnet_boot} }} ],
  "nodes": [ {} ] }}"#,
        nodes.join(",\n")
    )
}

/// The boot directory: iPXE, pxelinux, the kernel and an initramfs that reports back.
fn boot_dir(dir: &Path) -> PathBuf {
    let root = dir.join("boot");
    std::fs::create_dir_all(root.join("images")).unwrap();
    for (from, to) in FILES.iter().filter(|(_, to)| !to.is_empty()) {
        std::fs::copy(from, root.join(to)).unwrap();
    }
    pserv_tests::initramfs(
        &dir.join("initramfs"),
        Path::new("/bin/busybox"),
        "ttyS0",
        &root.join("images/initrd.img"),
    );
    root
}

#[derive(Clone, Copy)]
enum Firmware {
    SeaBios,
    /// OVMF (x86-64 UEFI). `secure`: Microsoft's keys enrolled and Secure Boot enforced
    /// (the `.ms` images, SMM); `http_only`: its PXE turned off, so it HTTP-boots (option 93
    /// = 16) instead; `ipv6_only`: its IPv4 PXE off (and, with `http_only`, its IPv4 HTTP boot
    /// left to time out on a network without DHCPv4), so it boots over IPv6.
    Ovmf {
        secure: bool,
        http_only: bool,
        ipv6_only: bool,
    },
    /// AAVMF (ARM64 UEFI) on QEMU's `virt` machine: PXE with option 93 = 11.
    Aavmf,
}

impl Firmware {
    const OVMF: Self = Self::Ovmf {
        secure: false,
        http_only: false,
        ipv6_only: false,
    };
}

/// One QEMU machine on its own tap, run by `timeout` (which passes SIGTERM on to QEMU);
/// stopped by PID on drop.
struct Vm {
    process: Process,
    serial: PathBuf,
}

impl Vm {
    fn start(ns: &Netns, dir: &Path, tag: &str, mac: &str, fw: Firmware) -> Self {
        let tap = format!("tap{tag}");
        ns.tap(&tap, "br0");
        let serial = dir.join(format!("{tag}.serial"));
        let mut c = ns.exec("timeout");
        let qemu = match fw {
            Firmware::Aavmf => "qemu-system-aarch64",
            _ => "qemu-system-x86_64",
        };
        c.args(["400", qemu, "-accel", "tcg", "-display", "none"])
            .args(["-serial", &format!("file:{}", serial.display())])
            .args(["-no-reboot", "-boot", "n"])
            .args([
                "-netdev",
                &format!("tap,id=n0,ifname={tap},script=no,downscript=no"),
            ]);
        match fw {
            Firmware::SeaBios => {
                c.args(["-m", "512", "-machine", "pc,graphics=off"])
                    .args(["-device", &format!("e1000,netdev=n0,mac={mac}")]);
            }
            Firmware::Aavmf => {
                let vars = dir.join(format!("{tag}.vars.fd"));
                std::fs::copy(AAVMF_VARS, &vars).unwrap();
                c.args(["-m", "512", "-machine", "virt", "-cpu", "cortex-a57"])
                    .args([
                        "-drive",
                        &format!("if=pflash,format=raw,readonly=on,file={AAVMF_CODE}"),
                    ])
                    .args([
                        "-drive",
                        &format!("if=pflash,format=raw,file={}", vars.display()),
                    ])
                    .args([
                        "-device",
                        &format!("virtio-net-pci,netdev=n0,mac={mac},romfile="),
                    ]);
            }
            Firmware::Ovmf {
                secure,
                http_only,
                ipv6_only,
            } => {
                let vars = dir.join(format!("{tag}.vars.fd"));
                let (code, template) = if secure {
                    (OVMF_CODE_SECURE, OVMF_VARS_SECURE)
                } else {
                    (OVMF_CODE, OVMF_VARS)
                };
                std::fs::copy(template, &vars).unwrap();
                if secure {
                    // Secure Boot needs SMM, and the variable store writable only from it.
                    c.args(["-m", "512", "-machine", "q35,smm=on"])
                        .args(["-global", "driver=cfi.pflash01,property=secure,value=on"]);
                } else {
                    c.args(["-m", "512", "-machine", "q35"]);
                }
                let off: &[&str] = match (http_only, ipv6_only) {
                    (true, _) => &["IPv4PXESupport", "IPv6PXESupport"],
                    (false, true) => &["IPv4PXESupport"],
                    (false, false) => &[],
                };
                for v in off {
                    c.args(["-fw_cfg", &format!("name=opt/org.tianocore/{v},string=n")]);
                }
                c.args([
                    "-drive",
                    &format!("if=pflash,format=raw,readonly=on,file={code}"),
                ])
                .args([
                    "-drive",
                    &format!("if=pflash,format=raw,file={}", vars.display()),
                ])
                .args([
                    "-device",
                    &format!("virtio-net-pci,netdev=n0,mac={mac},romfile="),
                ]);
            }
        }
        let process = Process::spawn(
            c.stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null()),
        );
        Self { process, serial }
    }

    /// The serial console so far, ANSI escapes removed.
    fn console(&self) -> String {
        pserv_tests::serial_console(&self.serial)
    }

    /// Waits until the console shows `what` (or QEMU exits, or `limit` passes).
    fn wait_for(&mut self, what: &str, limit: Duration) -> bool {
        let t0 = Instant::now();
        loop {
            if self.console().contains(what) {
                return true;
            }
            let exited = self.process.exited().is_some();
            if exited || t0.elapsed() > limit {
                return self.console().contains(what);
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }
}

/// pserv in the namespace plus a /v1/events listener writing to a file; both stopped by PID
/// on drop, the listener first (held only for that).
struct Server {
    _events: Process,
    _pserv: Process,
    events_log: PathBuf,
    control: String,
}

impl Server {
    /// `http_port`: HTTP boot's (GRUB 2.06 fetches kernels over HTTP only from port 80).
    fn start(ns: &Netns, dir: &Path, snap: &Path, boot: &Path, http_port: u16) -> Self {
        Self::start_with(ns, dir, snap, boot, http_port, false)
    }

    /// `ipv6`: DHCPv6 on `[::]:547` too, and TFTP and HTTP boot on dual-stack wildcards.
    fn start_with(
        ns: &Netns,
        dir: &Path,
        snap: &Path,
        boot: &Path,
        http_port: u16,
        ipv6: bool,
    ) -> Self {
        let any = if ipv6 { "[::]" } else { "0.0.0.0" };
        let mut pserv = Process::spawn(
            ns.exec(PSERV)
                .arg("serve")
                .args(["--snapshot", snap.to_str().unwrap()])
                .args(["--dhcp-listen", "0.0.0.0:67", "--dhcp-interface", "br0"])
                .args(if ipv6 {
                    &["--dhcp6-listen", "[::]:547"][..]
                } else {
                    &["--no-dhcp6"][..]
                })
                .args(["--dns-listen", &format!("{SERVER}:53")])
                .args(["--tftp-listen", &format!("{any}:69")])
                .args(["--boot-http-listen", &format!("{any}:{http_port}")])
                .args(["--boot-dir", boot.to_str().unwrap()])
                .args(["--control-listen", "127.0.0.1:0"])
                .args(["--state-dir", dir.join("state").to_str().unwrap()])
                .env("RUST_LOG", "warn")
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit()),
        );
        let banner = pserv_tests::read_banner(pserv.child());
        assert!(banner.tftp.is_some() && banner.boot_http.is_some());
        let events_log = dir.join("events.log");
        let events = Process::spawn(
            ns.exec("curl")
                .args(["-sN", &format!("{}/v1/events", banner.control)])
                .args(["-o", events_log.to_str().unwrap()]),
        );
        std::thread::sleep(Duration::from_millis(300));
        Self {
            _events: events,
            _pserv: pserv,
            events_log,
            control: banner.control,
        }
    }

    /// Every event so far as (kind, JSON body).
    fn events(&self) -> Vec<(String, serde_json::Value)> {
        let text = std::fs::read_to_string(&self.events_log).unwrap_or_default();
        let mut out = Vec::new();
        let mut kind = String::new();
        for line in text.lines() {
            if let Some(k) = line.strip_prefix("event: ") {
                kind = k.trim().to_owned();
            } else if let Some(d) = line.strip_prefix("data: ")
                && let Ok(v) = serde_json::from_str(d)
            {
                out.push((kind.clone(), v));
            }
        }
        out
    }

    /// The boot configurations served to `mac`, as (loader, mode).
    fn configs(&self, mac: &str) -> Vec<(String, String)> {
        self.events()
            .into_iter()
            .filter(|(k, v)| k == "boot_config" && v["mac"] == mac)
            .map(|(_, v)| {
                (
                    v["loader"].as_str().unwrap_or("").to_owned(),
                    v["mode"].as_str().unwrap_or("").to_owned(),
                )
            })
            .collect()
    }

    /// Asserts the machine `mac` at `ip` was served `loader`'s local-boot form (waiting up to
    /// `limit` for it) and, 5 s on, has fetched no kernel and booted nothing.
    fn assert_went_local(&self, mac: &str, ip: &str, loader: &str, vm: &Vm, limit: Duration) {
        let t = Instant::now();
        while self.configs(mac).is_empty() && t.elapsed() < limit {
            std::thread::sleep(Duration::from_millis(500));
        }
        // Time for a kernel fetch, had the configuration asked for one.
        std::thread::sleep(Duration::from_secs(5));
        assert_eq!(
            self.configs(mac),
            vec![(loader.to_owned(), "local".to_owned())],
            "console:\n{}",
            vm.console()
        );
        let files = self.fetched_by(ip);
        assert!(
            !files.iter().any(|(_, n)| n.contains("images/")),
            "a local node loads no kernel: {files:?}"
        );
        assert!(!vm.console().contains("PSERV-BOOTED"));
    }

    /// Asserts the client at `ip` fetched each of `files` over `kind` (`tftp`, `http`).
    fn assert_fetched(&self, ip: &str, kind: &str, files: &[&str]) {
        let fetched = self.fetched_by(ip);
        for f in files {
            assert!(
                fetched
                    .iter()
                    .any(|(k, n)| k == kind && n.trim_start_matches('/') == *f),
                "{f} over {kind} by {ip}: {fetched:?}"
            );
        }
    }

    /// The files fetched by the client at `ip` (TFTP and HTTP), as (kind, name).
    fn fetched_by(&self, ip: &str) -> Vec<(String, String)> {
        self.events()
            .into_iter()
            .filter(|(k, v)| {
                (k == "tftp" || k == "http")
                    && v["client"]
                        .as_str()
                        .is_some_and(|c| c.starts_with(&format!("{ip}:")))
            })
            .map(|(k, v)| {
                let name = v["file"].as_str().or(v["path"].as_str()).unwrap_or("");
                (k, name.to_owned())
            })
            .collect()
    }
}

/// Boots `vm` and asserts the initramfs reported `host`.
fn assert_booted(vm: &mut Vm, host: &str, limit: Duration) {
    let marker = format!("PSERV-BOOTED host={host}");
    assert!(
        vm.wait_for(&marker, limit),
        "{host} did not boot to userspace within {limit:?}; console:\n{}",
        vm.console()
    );
    let console = vm.console();
    for line in console
        .lines()
        .filter(|l| l.contains("Command line:") || l.contains("PSERV-BOOTED"))
    {
        eprintln!("{host}: {line}");
    }
}

#[test]
fn firmware_netboots_linux_from_pserv_alone() {
    if !ready() {
        return;
    }
    let _one_at_a_time = VMS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let t0 = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let boot = boot_dir(dir.path());
    let snap = dir.path().join("snap.json");
    std::fs::write(&snap, snapshot(1, false)).unwrap();
    let ns = lab_netns();
    let server = Server::start(&ns, dir.path(), &snap, &boot, 5248);
    // iPXE waits ~13 s for an IPv6 router before it boots; an empty answer ends the wait.
    let _routers = ns.answer_router_solicitations("br0");
    let mac = |name: &str| NODES.iter().find(|n| n.0 == name).unwrap().1;
    let limit = Duration::from_secs(200);

    // Two machines at a time (two cores): SeaBIOS + iPXE over HTTP, and pxelinux over TFTP.
    {
        let mut bios = Vm::start(&ns, dir.path(), "b1", mac("bios1"), Firmware::SeaBios);
        let mut pxe = Vm::start(&ns, dir.path(), "p1", mac("pxe1"), Firmware::SeaBios);
        assert_booted(&mut bios, "bios1", limit);
        assert_booted(&mut pxe, "pxe1", limit);
    }
    eprintln!("BIOS iPXE and pxelinux booted at {:?}", t0.elapsed());
    assert_eq!(
        server.configs(mac("bios1")),
        vec![("ipxe".to_owned(), "netboot".to_owned())]
    );
    let bios_files = server.fetched_by("10.99.0.11");
    for f in [
        "/ipxe/52-54-00-aa-00-01",
        "/images/vmlinuz",
        "/images/initrd.img",
    ] {
        assert!(
            bios_files.iter().any(|(k, n)| k == "http" && n == f),
            "{f} over HTTP: {bios_files:?}"
        );
    }
    assert!(
        server
            .configs(mac("pxe1"))
            .contains(&("pxelinux".to_owned(), "netboot".to_owned())),
        "{:?}",
        server.configs(mac("pxe1"))
    );
    let pxe_files = server.fetched_by("10.99.0.12");
    for f in [
        "pxelinux.0",
        "pxelinux.cfg/01-52-54-00-aa-00-02",
        "/images/vmlinuz",
    ] {
        assert!(
            pxe_files.iter().any(|(k, n)| k == "tftp" && n.trim_start_matches('/') == f.trim_start_matches('/')),
            "{f} over TFTP: {pxe_files:?}"
        );
    }

    // UEFI: OVMF's PXE takes ipxe.efi over TFTP; alongside, a local node.
    {
        let mut uefi = Vm::start(&ns, dir.path(), "u1", mac("uefi1"), Firmware::OVMF);
        let local = Vm::start(&ns, dir.path(), "l1", mac("local1"), Firmware::SeaBios);
        assert_booted(&mut uefi, "uefi1", limit);
        server.assert_went_local(mac("local1"), "10.99.0.14", "ipxe", &local, limit);
    }
    eprintln!(
        "UEFI booted, local node went to its disk at {:?}",
        t0.elapsed()
    );
    let uefi_files = server.fetched_by("10.99.0.13");
    assert!(
        uefi_files
            .iter()
            .any(|(k, n)| k == "tftp" && n.ends_with("ipxe.efi")),
        "{uefi_files:?}"
    );
    assert!(
        uefi_files
            .iter()
            .any(|(k, n)| k == "http" && n == "/images/vmlinuz")
    );

    // An ignored node gets its address and nothing to boot; bios1, switched to local by a
    // push, gets its local script at its next boot.
    std::fs::write(&snap, snapshot(2, true)).unwrap();
    let out = ns
        .exec(PSERV)
        .args(["push", snap.to_str().unwrap(), "--to", &server.control])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    {
        let mut ignore = Vm::start(&ns, dir.path(), "i1", mac("ignore1"), Firmware::SeaBios);
        let again = Vm::start(&ns, dir.path(), "b2", mac("bios1"), Firmware::SeaBios);
        assert!(
            ignore.wait_for("10.99.0.15", limit),
            "the ignored node still gets its address; console:\n{}",
            ignore.console()
        );
        let t = Instant::now();
        while server.configs(mac("bios1")).len() < 2 && t.elapsed() < limit {
            std::thread::sleep(Duration::from_millis(500));
        }
        std::thread::sleep(Duration::from_secs(5));
        assert_eq!(
            server.configs(mac("bios1")),
            vec![
                ("ipxe".to_owned(), "netboot".to_owned()),
                ("ipxe".to_owned(), "local".to_owned())
            ],
            "console:\n{}",
            again.console()
        );
        assert!(!again.console().contains("PSERV-BOOTED"));
        assert!(server.configs(mac("ignore1")).is_empty());
        assert!(
            server.fetched_by("10.99.0.15").is_empty(),
            "no boot offer, so no fetch: {:?}",
            server.fetched_by("10.99.0.15")
        );
        let console = ignore.console();
        assert!(
            !console.contains("Filename:") && !console.contains("PSERV-BOOTED"),
            "{console}"
        );
    }
    eprintln!("ignore and netboot->local checked at {:?}", t0.elapsed());
}

/// The machines of the boot-chain test (issue 22): (name, MAC, host part, boot settings).
/// The subnet's chain is `grub`; the `ipxe` ones name theirs.
const CHAIN_NODES: [Machine<'_>; 6] = [
    ("sb1", "52:54:00:aa:01:21", "21", r#"{ "profile": "live" }"#),
    (
        "ref1",
        "52:54:00:aa:01:22",
        "22",
        r#"{ "profile": "live", "chain": "ipxe" }"#,
    ),
    (
        "sbx1",
        "52:54:00:aa:01:23",
        "23",
        r#"{ "profile": "live", "chain": "ipxe" }"#,
    ),
    (
        "sbl1",
        "52:54:00:aa:01:24",
        "24",
        r#"{ "profile": "live", "mode": "local" }"#,
    ),
    ("hg1", "52:54:00:aa:01:25", "25", r#"{ "profile": "live" }"#),
    (
        "hi1",
        "52:54:00:aa:01:26",
        "26",
        r#"{ "profile": "live", "chain": "ipxe" }"#,
    ),
];

fn chain_snapshot() -> String {
    lab_snapshot(1, &CHAIN_NODES, r#"{ "chain": "grub" }"#)
}

/// Runs `pserv boot-dir` on `boot` (also looking under `from`) and asserts it succeeded with
/// the boot path `ready` ready.
fn assemble(boot: &Path, from: Option<&Path>, ready: &str) {
    let mut c = Command::new(PSERV);
    c.args(["boot-dir", boot.to_str().unwrap()]);
    if let Some(root) = from {
        c.arg("--from").arg(root);
    }
    let out = c.output().unwrap();
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "pserv boot-dir: {out:?}");
    assert!(report.contains(&format!("ready      {ready}")), "{report}");
}

/// What a machine on the x86-64 `grub` chain fetches: shim, GRUB, the configuration under
/// the prefix of Debian 12's signed network GRUB, the kernel and the initrd.
const GRUB_CHAIN_FILES: [&str; 5] = [
    "shimx64.efi",
    "grubx64.efi",
    "grub/grub.cfg",
    "images/vmlinuz",
    "images/initrd.img",
];

/// The signed pieces the `grub` chain needs (packages shim-signed, grub-efi-amd64-signed).
const SIGNED: [&str; 2] = [
    "/usr/lib/shim/shimx64.efi.signed",
    "/usr/lib/grub/x86_64-efi-signed/grubnetx64.efi.signed",
];

/// Whether every file `what` needs is there: CI installs them all (a missing one fails it);
/// elsewhere the test skips, saying which.
fn present(files: &[&str], what: &str) -> bool {
    let missing: Vec<&&str> = files.iter().filter(|f| !Path::new(f).exists()).collect();
    if missing.is_empty() {
        return true;
    }
    assert!(
        !in_ci(),
        "CI installs what {what} needs (.ci/run); missing {missing:?}"
    );
    eprintln!("SKIP: {what} needs {missing:?} (see .ci/run)");
    false
}

/// Boots two machines side by side and returns each one's time from power-on (`t0`) to its
/// initramfs's report.
fn times_to_booted(vms: [(&mut Vm, &str); 2], t0: Instant, limit: Duration) -> [Duration; 2] {
    let mut at = [None, None];
    while at.iter().any(Option::is_none) && t0.elapsed() < limit {
        for (i, (vm, host)) in vms.iter().enumerate() {
            if at[i].is_none() && vm.console().contains(&format!("PSERV-BOOTED host={host}")) {
                at[i] = Some(t0.elapsed());
            }
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    let [(a, ha), (b, hb)] = vms;
    assert_booted(a, ha, Duration::ZERO);
    assert_booted(b, hb, Duration::ZERO);
    [at[0].unwrap_or(limit), at[1].unwrap_or(limit)]
}

#[test]
fn uefi_secure_boot_and_http_boot_take_the_chain_pserv_hands_them() {
    if !ready() {
        return;
    }
    if !present(
        &[SIGNED[0], SIGNED[1], OVMF_CODE_SECURE, OVMF_VARS_SECURE],
        "the Secure Boot chain",
    ) {
        return;
    }
    let _one_at_a_time = VMS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let t0 = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let boot = boot_dir(dir.path());
    // The signed chain comes from `pserv boot-dir`, as an operator's would.
    assemble(&boot, None, "x86-64 UEFI, grub chain (Secure Boot)");
    let snap = dir.path().join("snap.json");
    std::fs::write(&snap, chain_snapshot()).unwrap();
    let ns = lab_netns();
    // HTTP boot on port 80, so GRUB fetches the kernel over HTTP.
    let server = Server::start(&ns, dir.path(), &snap, &boot, 80);
    let _routers = ns.answer_router_solicitations("br0");
    let mac = |name: &str| CHAIN_NODES.iter().find(|n| n.0 == name).unwrap().1;
    let limit = Duration::from_secs(240);
    let secure = Firmware::Ovmf {
        secure: true,
        http_only: false,
        ipv6_only: false,
    };
    let http = Firmware::Ovmf {
        secure: false,
        http_only: true,
        ipv6_only: false,
    };

    // Secure Boot on, through shim and GRUB; beside it the same boot on the ipxe chain with
    // Secure Boot off, for the time.
    let (t_grub, t_ipxe) = {
        let start = Instant::now();
        let mut sb = Vm::start(&ns, dir.path(), "s1", mac("sb1"), secure);
        let mut reference = Vm::start(&ns, dir.path(), "r1", mac("ref1"), Firmware::OVMF);
        let [t_grub, t_ipxe] =
            times_to_booted([(&mut sb, "sb1"), (&mut reference, "ref1")], start, limit);
        assert!(
            sb.console().contains("Secure boot enabled"),
            "the kernel did not see Secure Boot on; console:\n{}",
            sb.console()
        );
        (t_grub, t_ipxe)
    };
    eprintln!(
        "power-on to Linux: Secure Boot via shim + GRUB {t_grub:.1?}, ipxe chain without Secure Boot {t_ipxe:.1?} (ratio {:.2})",
        t_grub.as_secs_f64() / t_ipxe.as_secs_f64()
    );
    // Debian's signed GRUB has no HTTP: its configuration's HTTP attempt fails at once and
    // it reads the kernel over TFTP.
    server.assert_fetched("10.99.0.21", "tftp", &GRUB_CHAIN_FILES);
    assert_eq!(
        server.configs(mac("sb1")),
        vec![("grub".to_owned(), "netboot".to_owned())]
    );

    // The control: the same firmware refuses the unsigned ipxe.efi. And a node pushed to
    // local gets GRUB's local form under Secure Boot, and no kernel.
    {
        let mut refused = Vm::start(&ns, dir.path(), "x1", mac("sbx1"), secure);
        let local = Vm::start(&ns, dir.path(), "l1", mac("sbl1"), secure);
        assert!(
            refused.wait_for("Access Denied", limit),
            "Secure Boot did not refuse ipxe.efi; console:\n{}",
            refused.console()
        );
        server.assert_went_local(mac("sbl1"), "10.99.0.24", "grub", &local, limit);
        let fetched = server.fetched_by("10.99.0.23");
        assert!(
            fetched
                .iter()
                .any(|(k, n)| k == "tftp" && n.ends_with("ipxe.efi")),
            "{fetched:?}"
        );
        assert!(server.configs(mac("sbx1")).is_empty(), "iPXE never ran");
        assert!(!refused.console().contains("PSERV-BOOTED"));
    }
    eprintln!(
        "Secure Boot refused ipxe.efi, local under Secure Boot checked at {:?}",
        t0.elapsed()
    );

    // UEFI HTTP boot (PXE off): an http URL of ipxe.efi boots Linux; an http URL of shim
    // loads shim, and shim the signed GRUB beside it over HTTP. Debian 12's signed GRUB has
    // neither HTTP nor a way to take its network from an HTTP boot: it stops at its prompt
    // (a GRUB that can, Ubuntu's or Fedora's signed one, reads its grub.cfg from pserv as
    // over PXE). Seen here so a GRUB that learns it shows up.
    {
        let start = Instant::now();
        let mut grub = Vm::start(&ns, dir.path(), "h1", mac("hg1"), http);
        let mut ipxe = Vm::start(&ns, dir.path(), "h2", mac("hi1"), http);
        assert_booted(&mut ipxe, "hi1", limit);
        eprintln!(
            "UEFI HTTP boot, ipxe chain, to Linux: {:.1?}",
            start.elapsed()
        );
        assert!(
            grub.wait_for("Welcome to GRUB!", limit),
            "shim did not start GRUB over HTTP; console:\n{}",
            grub.console()
        );
        eprintln!(
            "UEFI HTTP boot, grub chain, to GRUB: {:.1?}",
            start.elapsed()
        );
    }
    let hg = server.fetched_by("10.99.0.25");
    // (shim asks for `//grubx64.efi`: its directory's URL ends in a slash.)
    for f in ["shimx64.efi", "grubx64.efi"] {
        assert!(
            hg.iter()
                .any(|(k, n)| k == "http" && n.trim_start_matches('/') == f),
            "{f} over HTTP: {hg:?}"
        );
    }
    assert!(
        !hg.iter().any(|(k, _)| k == "tftp"),
        "HTTP boot only: {hg:?}"
    );
    let hi = server.fetched_by("10.99.0.26");
    for f in ["/ipxe.efi", "/images/vmlinuz"] {
        assert!(hi.iter().any(|(k, n)| k == "http" && n == f), "{f}: {hi:?}");
    }
    eprintln!("UEFI HTTP boot, both chains, at {:?}", t0.elapsed());
}

#[test]
fn arm64_uefi_netboots_linux_through_shim_and_grub() {
    if !ready() {
        return;
    }
    let arm64 = std::env::var("PSERV_ARM64_ROOT").unwrap_or_else(|_| ARM64_ROOT.to_owned());
    let arm64 = Path::new(&arm64);
    let busybox = arm64.join("bin/busybox");
    let missing: Vec<String> = [
        arm64.join("usr/lib/shim/shimaa64.efi.signed"),
        arm64.join("usr/lib/grub/arm64-efi-signed/grubnetaa64.efi.signed"),
        busybox.clone(),
        PathBuf::from(ARM64_KERNEL),
        PathBuf::from(AAVMF_CODE),
    ]
    .iter()
    .filter(|p| !p.exists())
    .map(|p| p.display().to_string())
    .collect();
    if !missing.is_empty() || !have_tool("qemu-system-aarch64") {
        assert!(
            !in_ci(),
            "CI installs and unpacks the arm64 pieces (.ci/run); missing {missing:?}"
        );
        eprintln!("SKIP: the ARM64 test needs qemu-system-arm and {missing:?} (see .ci/run)");
        return;
    }
    let _one_at_a_time = VMS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let t0 = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let boot = boot_dir(dir.path());
    assemble(&boot, Some(arm64), "ARM64 UEFI, grub chain (Secure Boot)");
    // The kernel gzipped (GRUB decompresses as it reads): a third of the TFTP blocks, which
    // Debian's GRUB fetches one 1024-byte block at a time.
    std::fs::create_dir_all(boot.join("images/arm64")).unwrap();
    let status = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "gzip -1 -c '{ARM64_KERNEL}' > '{}'",
            boot.join("images/arm64/vmlinuz").display()
        ))
        .status()
        .unwrap();
    assert!(status.success());
    pserv_tests::initramfs(
        &dir.path().join("initramfs-arm64"),
        &busybox,
        "ttyAMA0",
        &boot.join("images/arm64/initrd.img"),
    );
    let snap = dir.path().join("snap.json");
    let machine: Machine<'_> = (
        "arm1",
        "52:54:00:aa:02:31",
        "31",
        r#"{ "profile": "live-arm64" }"#,
    );
    std::fs::write(&snap, lab_snapshot(1, &[machine], r#"{ "chain": "grub" }"#)).unwrap();
    let ns = lab_netns();
    let server = Server::start(&ns, dir.path(), &snap, &boot, 5248);
    let start = Instant::now();
    let mut vm = Vm::start(&ns, dir.path(), "a1", machine.1, Firmware::Aavmf);
    assert_booted(&mut vm, "arm1", Duration::from_secs(380));
    eprintln!(
        "ARM64 UEFI (AAVMF, TCG) to Linux through shim + GRUB: {:.1?}",
        start.elapsed()
    );
    let files = server.fetched_by("10.99.0.31");
    for f in [
        "shimaa64.efi",
        "grubaa64.efi",
        "grub/grub.cfg",
        "images/arm64/vmlinuz",
    ] {
        assert!(
            files
                .iter()
                .any(|(k, n)| k == "tftp" && n.trim_start_matches('/') == f),
            "{f} over TFTP: {files:?}"
        );
    }
    assert_eq!(
        server.configs(machine.1),
        vec![("grub".to_owned(), "netboot".to_owned())]
    );
    eprintln!("ARM64 checked at {:?}", t0.elapsed());
}

/// The lab's IPv6 prefix (the server at `::2`).
const PREFIX6: &str = "fd00:99";

/// GRUB's EFI modules (package grub-efi-amd64-bin), for the HTTPv6 test's own loader.
const GRUB_EFI_MODULES: &str = "/usr/lib/grub/x86_64-efi";

/// A GRUB for UEFI HTTP boot over IPv6, made with `grub-mkimage` as an operator would: Debian's
/// signed GRUB cannot take its network from an HTTP boot, and Debian's iPXE has no IPv6. Its
/// embedded configuration asks pserv's DHCPv6 for an address (`net_bootp6`) and reads the
/// `grub.cfg` pserv renders for that address over TFTP (GRUB 2.06 reaches HTTP on port 80
/// only, and its HTTP under TCG is too slow for a kernel: none had arrived after 5 minutes).
fn grub_for_http6(dir: &Path, out: &Path) {
    let cfg = dir.join("grub-http6.cfg");
    std::fs::write(
        &cfg,
        format!(
            "net_bootp6\nset root=(tftp,{PREFIX6}::2)\nset prefix=(tftp,{PREFIX6}::2)/grub\n\
             configfile (tftp,{PREFIX6}::2)/grub/grub.cfg\n"
        ),
    )
    .unwrap();
    let made = Command::new("grub-mkimage")
        .args(["-O", "x86_64-efi", "-p", "/grub"])
        .args(["-d", GRUB_EFI_MODULES])
        .arg("-o")
        .arg(out)
        .arg("-c")
        .arg(&cfg)
        .args([
            "efinet",
            "net",
            "tftp",
            "http",
            "linux",
            "normal",
            "configfile",
            "echo",
        ])
        .output()
        .unwrap();
    assert!(made.status.success(), "grub-mkimage: {made:?}");
}

/// Issue 27: OVMF with its IPv4 PXE off netboots Linux over IPv6 alone, two ways at once, on a
/// network with router advertisements (radvd, M flag) and no IPv4 subnet:
///
/// - PXEv6 on the `grub` chain: DHCPv6 hands it `tftp://[server]/shimx64.efi`; shim loads GRUB
///   over TFTP on IPv6; GRUB takes its address and server from the PXE DHCPv6 reply and reads
///   the `grub.cfg` pserv renders for the machine at its IPv6 reservation, then the kernel
///   and initrd over TFTP on IPv6.
/// - UEFI HTTP boot over IPv6 (PXE off; its HTTPv4 attempt times out first): DHCPv6 with
///   vendor class HTTPClient hands it `http://[server]:port/grub-http6.efi`, its node's
///   file; that GRUB gets a dynamic DHCPv6 lease of its own (the machine has no IPv6
///   reservation: pserv knows it by the MAC in its link-local address) and reads the
///   configuration pserv renders for that lease.
#[test]
fn uefi_netboots_linux_over_ipv6_by_pxe_and_by_http_boot() {
    if !ready() || !have_tool("radvd") || !have_tool("grub-mkimage") {
        assert!(!in_ci(), "CI installs radvd and grub-efi-amd64-bin");
        eprintln!("SKIP: IPv6 netboot needs radvd and grub-mkimage (see .ci/run)");
        return;
    }
    if !present(&[SIGNED[0], SIGNED[1], GRUB_EFI_MODULES], "IPv6 netboot") {
        return;
    }
    let _one_at_a_time = VMS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let t0 = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let boot = boot_dir(dir.path());
    assemble(&boot, None, "x86-64 UEFI, grub chain (Secure Boot)");
    grub_for_http6(dir.path(), &boot.join("grub-http6.efi"));
    let (pxe, pxe_mac, pxe_v6) = ("six1", "52:54:00:aa:03:41", format!("{PREFIX6}::41"));
    let (http, http_mac) = ("six2", "52:54:00:aa:03:42");
    let snap = dir.path().join("snap.json");
    std::fs::write(
        &snap,
        format!(
            r#"{{ "generation": 1,
  "boot_profiles": {{ "live": {{ "kernel": "images/vmlinuz", "initrd": ["images/initrd.img"],
      "cmdline": "console=ttyS0 panic=-1 pserv.host={{{{ node.hostname }}}} pserv.v6={{{{ node.ipv6 }}}}" }} }},
  "subnets": [ {{ "cidr": "{PREFIX6}::/64", "dns_servers": ["{PREFIX6}::2"], "domain": "lab",
                  "lease_seconds": 600, "unknown_clients": "ignore",
                  "dynamic": [ {{ "start": "{PREFIX6}::1:0", "end": "{PREFIX6}::1:ffff" }} ],
                  "boot": {{ "chain": "grub" }} }} ],
  "nodes": [ {{ "id": "{pxe}", "hostname": "{pxe}", "domain": "lab",
                "interfaces": [ {{ "mac": "{pxe_mac}", "ipv6": "{pxe_v6}" }} ],
                "boot": {{ "profile": "live" }} }},
             {{ "id": "{http}", "hostname": "{http}", "domain": "lab",
                "interfaces": [ {{ "mac": "{http_mac}" }} ],
                "boot": {{ "profile": "live", "files": {{ "x86_64-http": "grub-http6.efi" }} }} }} ] }}"#
        ),
    )
    .unwrap();
    let ns = lab_netns();
    for setting in [
        // radvd runs only where the namespace forwards (a router's job).
        "net.ipv6.conf.all.forwarding=1",
        "net.ipv6.conf.default.accept_dad=0",
        "net.ipv6.conf.br0.accept_dad=0",
    ] {
        let out = ns.exec("sysctl").args(["-qw", setting]).output().unwrap();
        assert!(out.status.success(), "sysctl {setting}: {out:?}");
    }
    ns.ip(&[
        "-6",
        "addr",
        "add",
        &format!("{PREFIX6}::2/64"),
        "dev",
        "br0",
        "nodad",
    ]);
    // The prefix on link, no autonomous addresses, the M flag: addresses by DHCPv6.
    let conf = dir.path().join("radvd.conf");
    std::fs::write(
        &conf,
        format!(
            "interface br0 {{\n  AdvSendAdvert on;\n  AdvManagedFlag on;\n  AdvOtherConfigFlag on;\n  \
             MinRtrAdvInterval 3;\n  MaxRtrAdvInterval 10;\n  prefix {PREFIX6}::/64 {{\n    AdvOnLink on;\n    \
             AdvAutonomous off;\n  }};\n}};\n"
        ),
    )
    .unwrap();
    let _radvd = Process::spawn(
        ns.exec("radvd")
            .args(["-n", "-m", "stderr", "-C", conf.to_str().unwrap()])
            .args(["-p", dir.path().join("radvd.pid").to_str().unwrap()])
            .args(["-u", "root"])
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    );
    let server = Server::start_with(&ns, dir.path(), &snap, &boot, 5248, true);
    let start = Instant::now();
    let v6_only = |http_only| Firmware::Ovmf {
        secure: false,
        http_only,
        ipv6_only: true,
    };
    let mut by_pxe = Vm::start(&ns, dir.path(), "v1", pxe_mac, v6_only(false));
    let mut by_http = Vm::start(&ns, dir.path(), "v2", http_mac, v6_only(true));
    let [t_pxe, t_http] = times_to_booted(
        [(&mut by_pxe, pxe), (&mut by_http, http)],
        start,
        Duration::from_secs(300),
    );
    eprintln!(
        "OVMF over IPv6 to Linux: PXEv6 through shim + GRUB {t_pxe:.1?}, HTTPv6 boot (after its HTTPv4 attempt timed out) {t_http:.1?}"
    );
    assert!(
        by_pxe.console().contains(&format!("pserv.v6={pxe_v6}")),
        "the command line names the IPv6 reservation; console:\n{}",
        by_pxe.console()
    );
    server.assert_fetched(&format!("[{pxe_v6}]"), "tftp", &GRUB_CHAIN_FILES);
    assert_eq!(
        server.configs(pxe_mac),
        vec![("grub".to_owned(), "netboot".to_owned())]
    );

    // The HTTP-booted machine: its loader over HTTP on IPv6, from the DHCPv6 answer to its
    // HTTPClient request, then its configuration at the address of its own lease.
    let events = server.events();
    let offered = events
        .iter()
        .find(|(k, v)| k == "dhcp" && v["mac"] == http_mac && v["client"] == "http")
        .unwrap_or_else(|| panic!("no HTTP boot answer for {http_mac}: {events:?}"));
    assert_eq!(
        offered.1["file"],
        format!("http://[{PREFIX6}::2]:5248/grub-http6.efi"),
        "{offered:?}"
    );
    assert!(
        events.iter().any(|(k, v)| k == "http"
            && v["path"] == "/grub-http6.efi"
            && v["status"] == 200
            && v["client"].as_str().is_some_and(|c| c.starts_with('['))),
        "{events:?}"
    );
    let served = events
        .iter()
        .find(|(k, v)| k == "boot_config" && v["mac"] == http_mac)
        .unwrap_or_else(|| panic!("no configuration for {http_mac}: {events:?}"));
    let leased = served.1["client"].as_str().unwrap().to_owned();
    assert!(leased.starts_with(&format!("{PREFIX6}::1:")), "{served:?}");
    assert!(
        by_http.console().contains(&format!("pserv.v6={leased}")),
        "the command line names its lease {leased}; console:\n{}",
        by_http.console()
    );
    let out = ns
        .exec("curl")
        .args(["-sf", &format!("{}/v1/leases", server.control)])
        .output()
        .unwrap();
    let leases = String::from_utf8_lossy(&out.stdout);
    assert!(
        leases.contains(&leased),
        "{leased} among the leases: {leases}"
    );
    eprintln!("IPv6 netboot checked at {:?}", t0.elapsed());
}
