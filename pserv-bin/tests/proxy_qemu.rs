//! proxyDHCP with real peers (issue 23): dnsmasq 2.90 as the site's DHCP server on a bridge,
//! handing out addresses only (no boot options); pserv on the same bridge with the subnet
//! `proxy_dhcp`; each in a namespace this test creates.
//!
//! - SeaBIOS + the iPXE ROM of QEMU's e1000 (TCG) takes its address from dnsmasq and its boot
//!   file (the per-node script) from pserv's proxy offer, and boots Linux with the hostname
//!   pserv rendered; the node has no reservation, so its script and files are served to the
//!   address it showed in its PXE exchange.
//! - The same through a relay (dnsmasq in relay mode) forwarding a routed link to both servers.
//! - udhcpc (no PXE in its request) gets dnsmasq's offer only; pserv counts it NotNetbooting.
//! - Every DHCP packet pserv sent (captured on the bridge with tcpdump) has yiaddr 0.0.0.0, and
//!   it sent no OFFER, ACK or NAK of its own.
//!
//! Needs root, QEMU, dnsmasq and tcpdump (`.ci/run` installs them); in CI it runs, never skips.

#![allow(clippy::unwrap_used)]

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use dhcproto::Decodable;
use dhcproto::v4::Message;
use pserv_tests::netns::Netns;
use pserv_tests::process::Process;
use pserv_tests::{have_root, have_tool, in_ci};

const PSERV: &str = env!("CARGO_BIN_EXE_pserv");
const KERNEL: &str = "/usr/lib/debian-installer/images/12/amd64/text/debian-installer/amd64/linux";
const SERVER: &str = "10.99.0.2";
const SITE: &str = "10.99.0.3";
const MAC: &str = "52:54:00:aa:03:01";
/// OVMF (UEFI PXE) on the ipxe chain, and on the grub chain (Debian's signed shim and GRUB).
const UEFI_IPXE: &str = "52:54:00:aa:03:02";
const UEFI_GRUB: &str = "52:54:00:aa:03:03";
const OVMF_CODE: &str = "/usr/share/OVMF/OVMF_CODE_4M.fd";
const OVMF_VARS: &str = "/usr/share/OVMF/OVMF_VARS_4M.fd";

fn ready() -> bool {
    if !(have_root("proxyDHCP beside dnsmasq in network namespaces")
        && have_tool("ip")
        && have_tool("curl")
        && have_tool("cpio"))
    {
        return false;
    }
    let missing: Vec<&str> = ["qemu-system-x86_64", "dnsmasq", "tcpdump", "udhcpc"]
        .into_iter()
        .filter(|t| !have_tool(t))
        .chain(
            [KERNEL, "/bin/busybox"]
                .into_iter()
                .filter(|f| !Path::new(f).exists()),
        )
        .collect();
    if !missing.is_empty() {
        assert!(
            !in_ci(),
            "CI installs the proxyDHCP test's peers; missing {missing:?}"
        );
        eprintln!("SKIP: the proxyDHCP test needs {missing:?} (see .ci/run)");
        return false;
    }
    true
}

/// The UDP payloads of the IPv4 packets in a pcap file (Ethernet link type) sent from `src`
/// on one of `ports`.
fn udp_payloads(pcap: &[u8], src: Ipv4Addr, ports: &[u16]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut at = 24;
    while at + 16 <= pcap.len() {
        let caplen = u32::from_le_bytes(pcap[at + 8..at + 12].try_into().unwrap()) as usize;
        let frame = &pcap[at + 16..(at + 16 + caplen).min(pcap.len())];
        at += 16 + caplen;
        // Ethernet, IPv4, UDP.
        if frame.len() < 14 + 20 + 8 || frame[12..14] != [0x08, 0x00] || frame[23] != 17 {
            continue;
        }
        let ip = &frame[14..];
        let ihl = usize::from(ip[0] & 0x0f) * 4;
        let from = Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15]);
        let Some(udp) = ip.get(ihl..) else { continue };
        if udp.len() < 8 || from != src {
            continue;
        }
        let sport = u16::from_be_bytes([udp[0], udp[1]]);
        if ports.contains(&sport) {
            out.push(udp[8..].to_vec());
        }
    }
    out
}

/// The boot directory under `dir`: d-i's kernel and an initramfs that reports the hostname.
fn boot_dir(dir: &Path) -> PathBuf {
    let boot = dir.join("boot");
    std::fs::create_dir_all(boot.join("images")).unwrap();
    std::fs::copy(KERNEL, boot.join("images/vmlinuz")).unwrap();
    pserv_tests::initramfs(
        &dir.join("initramfs"),
        Path::new("/bin/busybox"),
        "ttyS0",
        &boot.join("images/initrd.img"),
    );
    boot
}

/// The site's DHCP server: dnsmasq on `vsite` in `ns`, addresses of `range` only (plus
/// `extra` options), no boot options.
fn site_server(ns: &Netns, dir: &Path, range: &str, extra: &[&str]) -> Process {
    Process::spawn(
        ns.exec("dnsmasq")
            .args([
                "--no-daemon",
                "--port=0",
                "--bind-interfaces",
                "--interface=vsite",
            ])
            .arg(format!("--dhcp-range={range}"))
            .args(extra)
            .arg(format!(
                "--dhcp-leasefile={}",
                dir.join("site.leases").display()
            ))
            .arg(format!("--pid-file={}", dir.join("site.pid").display()))
            .args(["--user=root", "--conf-file=/dev/null"])
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    )
}

/// pserv serving `snap` in `ns` on SERVER (DHCP on 67 with `extra` flags), and its control
/// API's address.
fn start_pserv(
    ns: &Netns,
    dir: &Path,
    snap: &Path,
    boot: &Path,
    extra: &[&str],
) -> (Process, String) {
    let mut pserv = Process::spawn(
        ns.exec(PSERV)
            .arg("serve")
            .args(["--snapshot", snap.to_str().unwrap()])
            .args(["--dhcp-listen", "0.0.0.0:67"])
            .args(extra)
            .args(["--tftp-listen", "0.0.0.0:69"])
            .args(["--boot-http-listen", "0.0.0.0:5248"])
            .args(["--boot-dir", boot.to_str().unwrap()])
            .args(["--dns-listen", &format!("{SERVER}:53")])
            .args(["--control-listen", "127.0.0.1:0"])
            .args(["--state-dir", dir.join("state").to_str().unwrap()])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit()),
    );
    let control = pserv_tests::read_banner(pserv.child()).control;
    std::thread::sleep(Duration::from_millis(500));
    (pserv, control)
}

/// pserv's `/metrics`, read from inside `ns`.
fn metrics(ns: &Netns, control: &str) -> String {
    let out = ns
        .exec("curl")
        .args(["-s", &format!("{control}/metrics")])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// SeaBIOS + the iPXE ROM of QEMU's e1000 (MAC) on `tap` in `ns`, its console in `serial`.
fn seabios(ns: &Netns, tap: &str, serial: &Path) -> Process {
    Process::spawn(
        ns.exec("timeout")
            .args(["240", "qemu-system-x86_64", "-accel", "tcg", "-m", "512"])
            .args(["-display", "none", "-machine", "pc,graphics=off"])
            .args(["-serial", &format!("file:{}", serial.display())])
            .args(["-no-reboot", "-boot", "n"])
            .args([
                "-netdev",
                &format!("tap,id=n0,ifname={tap},script=no,downscript=no"),
            ])
            .args(["-device", &format!("e1000,netdev=n0,mac={MAC}")])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    )
}

/// The console once it shows `marker`, or once the machine stopped or 200 s passed.
fn boot_console(vm: &mut Process, serial: &Path, marker: &str) -> String {
    let start = Instant::now();
    while !pserv_tests::serial_console(serial).contains(marker)
        && vm.exited().is_none()
        && start.elapsed() < Duration::from_secs(200)
    {
        std::thread::sleep(Duration::from_millis(500));
    }
    pserv_tests::serial_console(serial)
}

/// The tests of this file each run machines under TCG on a two-core runner: one at a time.
static VMS: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[test]
fn ipxe_boots_through_pserv_proxy_beside_dnsmasq() {
    if !ready() {
        return;
    }
    let _one_at_a_time = VMS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let t0 = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let boot = boot_dir(dir.path());
    // iPXE, shim and GRUB as an operator gets them.
    let out = std::process::Command::new(PSERV)
        .args(["boot-dir", boot.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success(), "pserv boot-dir: {out:?}");
    let snap = dir.path().join("snap.json");
    std::fs::write(
        &snap,
        format!(
            r#"{{ "generation": 1,
  "boot_profiles": {{ "live": {{ "kernel": "images/vmlinuz", "initrd": ["images/initrd.img"],
      "cmdline": "console=ttyS0 panic=-1 pserv.host={{{{ node.hostname }}}}" }} }},
  "subnets": [ {{ "cidr": "10.99.0.0/16", "proxy_dhcp": true, "unknown_clients": "ignore",
                  "boot": {{}} }} ],
  "nodes": [ {{ "id": "vm1", "hostname": "vm1", "domain": "lab",
                "interfaces": [ {{ "mac": "{MAC}" }} ], "boot": {{ "profile": "live" }} }},
             {{ "id": "vm2", "hostname": "vm2", "domain": "lab",
                "interfaces": [ {{ "mac": "{UEFI_IPXE}" }} ], "boot": {{ "profile": "live" }} }},
             {{ "id": "vm3", "hostname": "vm3", "domain": "lab",
                "interfaces": [ {{ "mac": "{UEFI_GRUB}" }} ],
                "boot": {{ "profile": "live", "chain": "grub" }} }} ] }}"#
        ),
    )
    .unwrap();

    // Declared before the namespaces: every process stops (by PID) before they go.
    let lab = Netns::new("px");
    let (site, cli) = (Netns::new("pxs"), Netns::new("pxc"));
    lab.bridge("br0");
    lab.addr("br0", &format!("{SERVER}/16"));
    lab.plug("br0", &site, "vsite");
    site.addr("vsite", &format!("{SITE}/16"));
    lab.plug("br0", &cli, "vcli");
    lab.tap("tappx", "br0");
    let pcap = dir.path().join("pserv.pcap");
    let _capture = Process::spawn(
        lab.exec("tcpdump")
            .args(["-U", "-n", "-i", "br0", "-s", "1500", "-w"])
            .arg(&pcap)
            .args(["udp and (port 67 or port 68 or port 4011)"])
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    );
    let _dnsmasq = site_server(
        &site,
        dir.path(),
        "10.99.5.1,10.99.5.200,255.255.0.0,10m",
        &[],
    );
    let (_pserv, control) =
        start_pserv(&lab, dir.path(), &snap, &boot, &["--dhcp-interface", "br0"]);
    let metrics = || metrics(&lab, &control);

    // A client with nothing to do with PXE: dnsmasq's address, nothing from pserv.
    let out = cli
        .exec("timeout")
        .args([
            "20", "udhcpc", "-i", "vcli", "-n", "-q", "-f", "-t", "5", "-T", "1",
        ])
        .args(["-s", "/bin/true"])
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains(&format!("obtained from {SITE}")),
        "udhcpc's lease comes from dnsmasq: {text}"
    );
    assert!(
        pserv_tests::metric(
            &metrics(),
            "pserv_dhcp_dropped_total{reason=\"NotNetbooting\"}"
        ) >= 1,
        "{}",
        metrics()
    );

    // The machine: its address from dnsmasq, its boot from pserv.
    let _routers = lab.answer_router_solicitations("br0");
    let serial = dir.path().join("serial.log");
    let start = Instant::now();
    let mut vm = seabios(&lab, "tappx", &serial);
    let console = boot_console(&mut vm, &serial, "PSERV-BOOTED host=vm1");
    assert!(
        console.contains("PSERV-BOOTED host=vm1"),
        "the machine did not boot through pserv's proxy; console:\n{console}"
    );
    eprintln!("booted through the proxy in {:.1?}", start.elapsed());
    // iPXE printed the address dnsmasq gave it.
    assert!(
        console.contains("10.99.5."),
        "an address from dnsmasq:\n{console}"
    );
    let m = metrics();
    assert!(
        pserv_tests::metric(&m, "pserv_dhcp_replies_total{type=\"proxy_offer\"}") >= 1,
        "{m}"
    );
    assert!(
        pserv_tests::metric(&m, "pserv_dhcp_proxy_sightings_total{result=\"recorded\"}") >= 1,
        "{m}"
    );
    for kind in ["offer", "ack", "nak"] {
        assert_eq!(
            pserv_tests::metric(&m, &format!("pserv_dhcp_replies_total{{type=\"{kind}\"}}")),
            0,
            "{m}"
        );
    }
    drop(vm);

    // UEFI PXE (OVMF, EDK2's PXE client): it takes the proxy offer's boot file (option 43
    // says to), iPXE's on the ipxe chain, shim's on the grub chain. iPXE boots Linux. Shim
    // loads Debian's signed GRUB from pserv, which then stops at its prompt: GRUB 2.06 takes
    // its server from the address server's ACK (EDK2's cached DhcpAck) and never reads the
    // proxy offer, so it asks no one for its grub.cfg (the site server's next-server naming
    // pserv is what it needs; README, proxyDHCP). Seen here so a GRUB that learns it shows.
    {
        let uefi = |tag: &str, mac: &str| {
            let tap = format!("tap{tag}");
            lab.tap(&tap, "br0");
            let vars = dir.path().join(format!("{tag}.vars"));
            std::fs::copy(OVMF_VARS, &vars).unwrap();
            let serial = dir.path().join(format!("{tag}.serial"));
            let p = Process::spawn(
                lab.exec("timeout")
                    .args(["240", "qemu-system-x86_64", "-accel", "tcg", "-m", "512"])
                    .args(["-display", "none", "-machine", "q35"])
                    .args(["-serial", &format!("file:{}", serial.display())])
                    .args(["-no-reboot", "-boot", "n"])
                    .args([
                        "-drive",
                        &format!("if=pflash,format=raw,readonly=on,file={OVMF_CODE}"),
                    ])
                    .args([
                        "-drive",
                        &format!("if=pflash,format=raw,file={}", vars.display()),
                    ])
                    .args([
                        "-netdev",
                        &format!("tap,id=n0,ifname={tap},script=no,downscript=no"),
                    ])
                    .args([
                        "-device",
                        &format!("virtio-net-pci,netdev=n0,mac={mac},romfile="),
                    ])
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null()),
            );
            (p, serial)
        };
        let (mut a, sa) = uefi("u1", UEFI_IPXE);
        let (mut b, sb) = uefi("u2", UEFI_GRUB);
        let start = Instant::now();
        let done = |s: &Path, host: &str| {
            pserv_tests::serial_console(s).contains(&format!("PSERV-BOOTED host={host}"))
        };
        let grub = |s: &Path| pserv_tests::serial_console(s).contains("Welcome to GRUB!");
        while !(done(&sa, "vm2") && grub(&sb))
            && (a.exited().is_none() || b.exited().is_none())
            && start.elapsed() < Duration::from_secs(200)
        {
            std::thread::sleep(Duration::from_millis(500));
        }
        assert!(
            done(&sa, "vm2"),
            "UEFI on the ipxe chain did not boot through the proxy; console:\n{}",
            pserv_tests::serial_console(&sa)
        );
        let c = pserv_tests::serial_console(&sb);
        assert!(
            grub(&sb)
                && c.contains(&format!("Server IP address is {SERVER}"))
                && c.contains("NBP filename is shimx64.efi"),
            "UEFI on the grub chain did not take shim and GRUB from the proxy; console:\n{c}"
        );
        eprintln!(
            "UEFI PXE through the proxy: ipxe chain to Linux, grub chain to GRUB, in {:.1?}",
            start.elapsed()
        );
    }

    // Every DHCP packet pserv sent: no address in any.
    std::thread::sleep(Duration::from_millis(500));
    let bytes = std::fs::read(&pcap).unwrap();
    let sent = udp_payloads(&bytes, SERVER.parse().unwrap(), &[67, 4011]);
    assert!(!sent.is_empty(), "the capture holds pserv's answers");
    for p in &sent {
        let m = Message::from_bytes(p).unwrap();
        assert_eq!(
            m.yiaddr(),
            Ipv4Addr::UNSPECIFIED,
            "pserv sent an address: {m:?}"
        );
    }
    let site = udp_payloads(&bytes, SITE.parse().unwrap(), &[67]);
    assert!(
        site.iter()
            .any(|p| Message::from_bytes(p).is_ok_and(|m| !m.yiaddr().is_unspecified())),
        "dnsmasq handed out the addresses"
    );
    eprintln!(
        "{} DHCP packets from pserv, none with an address; whole test {:?}",
        sent.len(),
        t0.elapsed()
    );
}

/// A routed provisioning network: the machine on its own link, a relay (dnsmasq in relay
/// mode) forwarding its DHCP to both the site server and pserv, each answering through the
/// relay (giaddr); the machine's TFTP and HTTP routed through the relay to pserv.
#[test]
fn a_relay_forwarding_to_both_servers_boots_the_machine_through_the_proxy() {
    if !ready() {
        return;
    }
    let _one_at_a_time = VMS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let dir = tempfile::tempdir().unwrap();
    let boot = boot_dir(dir.path());
    let snap = dir.path().join("snap.json");
    std::fs::write(
        &snap,
        format!(
            r#"{{ "generation": 1,
  "boot_profiles": {{ "live": {{ "kernel": "images/vmlinuz", "initrd": ["images/initrd.img"],
      "cmdline": "console=ttyS0 panic=-1 pserv.host={{{{ node.hostname }}}}" }} }},
  "subnets": [ {{ "cidr": "10.98.0.0/24", "proxy_dhcp": true, "boot": {{}} }},
               {{ "cidr": "10.99.0.0/16" }} ],
  "nodes": [ {{ "id": "vm9", "hostname": "vm9", "domain": "lab",
                "interfaces": [ {{ "mac": "{MAC}" }} ], "boot": {{ "profile": "live" }} }} ] }}"#
        ),
    )
    .unwrap();

    // Servers' side: pserv on br0 (10.99.0.2), dnsmasq in its own namespace (10.99.0.3), the
    // relay's server-side leg (10.99.0.4). Machines' side: the relay's leg 10.98.0.1 on the
    // edge bridge, which the machine's tap joins.
    let lab = Netns::new("pr");
    let (site, relay, edge) = (Netns::new("prs"), Netns::new("prr"), Netns::new("pre"));
    lab.bridge("br0");
    lab.addr("br0", &format!("{SERVER}/16"));
    lab.plug("br0", &site, "vsite");
    site.addr("vsite", &format!("{SITE}/16"));
    lab.plug("br0", &relay, "vup");
    relay.addr("vup", "10.99.0.4/16");
    edge.bridge("brc");
    edge.plug("brc", &relay, "vdown");
    relay.addr("vdown", "10.98.0.1/24");
    edge.tap("tapre", "brc");
    relay
        .exec("sysctl")
        .args(["-qw", "net.ipv4.ip_forward=1"])
        .status()
        .unwrap();
    lab.ip(&["route", "add", "10.98.0.0/24", "via", "10.99.0.4"]);
    site.ip(&["route", "add", "10.98.0.0/24", "via", "10.99.0.4"]);
    let _dnsmasq = site_server(
        &site,
        dir.path(),
        "10.98.0.100,10.98.0.200,255.255.255.0,10m",
        &["--dhcp-option=3,10.98.0.1"],
    );
    // The relay: dnsmasq relaying only (no range of its own), to both servers.
    let _relay = Process::spawn(
        relay
            .exec("dnsmasq")
            .args([
                "--no-daemon",
                "--port=0",
                "--conf-file=/dev/null",
                "--user=root",
            ])
            .arg(format!(
                "--pid-file={}",
                dir.path().join("relay.pid").display()
            ))
            .args([
                &format!("--dhcp-relay=10.98.0.1,{SITE}"),
                &format!("--dhcp-relay=10.98.0.1,{SERVER}"),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    );
    let (_pserv, control) = start_pserv(&lab, dir.path(), &snap, &boot, &[]);

    let _routers = edge.answer_router_solicitations("brc");
    let serial = dir.path().join("serial.log");
    let start = Instant::now();
    let mut vm = seabios(&edge, "tapre", &serial);
    let console = boot_console(&mut vm, &serial, "PSERV-BOOTED host=vm9");
    let m = metrics(&lab, &control);
    assert!(
        console.contains("PSERV-BOOTED host=vm9"),
        "the relayed machine did not boot through the proxy; console:\n{console}\n{m}"
    );
    assert!(
        console.contains("10.98.0."),
        "an address from dnsmasq, relayed:\n{console}"
    );
    assert!(
        pserv_tests::metric(&m, "pserv_dhcp_replies_total{type=\"proxy_offer\"}") >= 1,
        "{m}"
    );
    eprintln!(
        "booted through a relay and the proxy in {:.1?}",
        start.elapsed()
    );
}
