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
use pserv_tests::process::{Process, run};
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
const SERVER: &str = "10.99.0.2";

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
const NODES: [(&str, &str, &str, &str); 5] = [
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

fn snapshot(generation: u64, bios1_local: bool) -> String {
    let nodes: Vec<String> = NODES
        .iter()
        .map(|(name, mac, host, boot)| {
            let boot = if *name == "bios1" && bios1_local {
                r#"{ "mode": "local", "profile": "live" }"#
            } else {
                boot
            };
            format!(
                r#"{{ "id": "{name}", "hostname": "{name}", "domain": "lab",
                  "interfaces": [ {{ "mac": "{mac}", "ipv4": "10.99.0.{host}" }} ], "boot": {boot} }}"#
            )
        })
        .collect();
    format!(
        r#"{{ "generation": {generation},
  "boot_profiles": {{ "live": {{ "kernel": "images/vmlinuz", "initrd": ["images/initrd.img"],
      "cmdline": "console=ttyS0 panic=-1 pserv.host={{{{ node.hostname }}}}" }} }},
  "subnets": [ {{ "cidr": "10.99.0.0/16", "router": "{SERVER}", "dns_servers": ["{SERVER}"],
                  "domain": "lab", "lease_seconds": 600, "unknown_clients": "ignore", "boot": {{}} }} ],
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
    let init = dir.join("initramfs");
    for d in ["bin", "dev", "proc", "sys"] {
        std::fs::create_dir_all(init.join(d)).unwrap();
    }
    std::fs::copy("/bin/busybox", init.join("bin/busybox")).unwrap();
    std::fs::write(
        init.join("init"),
        "#!/bin/busybox sh\n\
         /bin/busybox mount -t proc proc /proc\n\
         /bin/busybox mount -t devtmpfs dev /dev 2>/dev/null\n\
         h=none\n\
         for x in $(/bin/busybox cat /proc/cmdline); do\n\
         \x20 case \"$x\" in pserv.host=*) h=\"${x#pserv.host=}\" ;; esac\n\
         done\n\
         echo \"PSERV-BOOTED host=$h\" > /dev/ttyS0\n\
         /bin/busybox sync\n\
         /bin/busybox poweroff -f\n",
    )
    .unwrap();
    run(&["chmod", "755", init.join("init").to_str().unwrap()]);
    run(&[
        "mknod",
        init.join("dev/console").to_str().unwrap(),
        "c",
        "5",
        "1",
    ]);
    let out = root.join("images/initrd.img");
    let status = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "cd '{}' && find . | cpio -o -H newc --quiet | gzip -1 > '{}'",
            init.display(),
            out.display()
        ))
        .status()
        .unwrap();
    assert!(status.success());
    root
}

enum Firmware {
    SeaBios,
    Ovmf,
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
        c.args([
            "300",
            "qemu-system-x86_64",
            "-accel",
            "tcg",
            "-display",
            "none",
        ])
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
            Firmware::Ovmf => {
                let vars = dir.join(format!("{tag}.vars.fd"));
                std::fs::copy(OVMF_VARS, &vars).unwrap();
                c.args(["-m", "512", "-machine", "q35"])
                    .args([
                        "-drive",
                        &format!("if=pflash,format=raw,readonly=on,file={OVMF_CODE}"),
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
    fn start(ns: &Netns, dir: &Path, snap: &Path, boot: &Path) -> Self {
        let mut pserv = Process::spawn(
            ns.exec(PSERV)
                .arg("serve")
                .args(["--snapshot", snap.to_str().unwrap()])
                .args(["--dhcp-listen", "0.0.0.0:67", "--dhcp-interface", "br0"])
                .args(["--dns-listen", &format!("{SERVER}:53")])
                .args(["--tftp-listen", "0.0.0.0:69"])
                .args(["--boot-http-listen", "0.0.0.0:5248"])
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
    let t0 = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let boot = boot_dir(dir.path());
    let snap = dir.path().join("snap.json");
    std::fs::write(&snap, snapshot(1, false)).unwrap();
    let ns = lab_netns();
    let server = Server::start(&ns, dir.path(), &snap, &boot);
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
        let mut uefi = Vm::start(&ns, dir.path(), "u1", mac("uefi1"), Firmware::Ovmf);
        let local = Vm::start(&ns, dir.path(), "l1", mac("local1"), Firmware::SeaBios);
        assert_booted(&mut uefi, "uefi1", limit);
        let t = Instant::now();
        while server.configs(mac("local1")).is_empty() && t.elapsed() < limit {
            std::thread::sleep(Duration::from_millis(500));
        }
        // Time for a kernel fetch, if the script had asked for one.
        std::thread::sleep(Duration::from_secs(5));
        assert_eq!(
            server.configs(mac("local1")),
            vec![("ipxe".to_owned(), "local".to_owned())],
            "console:\n{}",
            local.console()
        );
        let files = server.fetched_by("10.99.0.14");
        assert!(
            !files.iter().any(|(_, n)| n.contains("images/")),
            "a local node loads no kernel: {files:?}"
        );
        assert!(!local.console().contains("PSERV-BOOTED"));
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
