//! pserv-storm's DHCP mode against the real binary, across a veth pair between two namespaces
//! this test creates: a short storm where every exchange must complete and every answer is
//! checked (no drop, no NAK, no address outside the subnet, no address for two clients), and
//! pserv's own lease list must agree. Needs root; runs (never skips) when `CI=true`.

#![allow(clippy::unwrap_used)]

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4};
use std::time::Duration;

use pserv_storm::dhcp::{self, Report};
use pserv_tests::netns::Netns;
use pserv_tests::{have_root, have_tool};

mod netns;
use netns::{Lab, Pserv};

/// Runs a storm from inside namespace `ns` (on a thread that enters it: the rest of the test
/// process stays where it was).
fn storm_from(ns: &Netns, server: SocketAddr, cfg: dhcp::Config) -> Report {
    ns.enter(move || {
        let port = if cfg.relay.is_ipv6() { 547 } else { 67 };
        let sock = dhcp::run::socket(SocketAddr::from((cfg.relay, port))).unwrap();
        dhcp::run::run(&sock, &[server], cfg, false)
    })
}

/// 800 clients relayed from `relay`, answers checked against `subnet`: `count` exchanges at
/// `rate` a second (0: a flood, 200 in flight).
fn storm_config(
    relay: std::net::IpAddr,
    subnet: &str,
    mac_prefix: [u8; 2],
    rate: u32,
    count: u64,
) -> dhcp::Config {
    dhcp::Config {
        clients: 800,
        rate,
        window: 200,
        count,
        duration: Duration::from_secs(10),
        timeout: Duration::from_secs(2),
        relay,
        subnet: Some(subnet.parse().unwrap()),
        mac_prefix,
    }
}

#[test]
fn storm_of_relayed_doras_every_exchange_answered_and_checked() {
    if !(have_root("a DHCP storm in network namespaces") && have_tool("ip")) {
        return;
    }
    let lab = Lab::new("s", 75);
    let p = lab.p().to_owned();
    // 1,000 dynamic addresses for 800 clients.
    std::fs::write(
        &lab.snap,
        format!(
            r#"{{"generation": 1, "subnets": [{{"cidr": "{p}.0.0/16", "router": "{p}.0.1",
              "lease_seconds": 600,
              "dynamic": [{{"start": "{p}.200.1", "end": "{p}.203.232"}}]}}]}}"#
        ),
    )
    .unwrap();
    lab.net.cli.addr("vcli", &format!("{p}.0.2/16"));
    let pserv = lab.serve();
    let server = SocketAddr::from((format!("{p}.0.1").parse::<Ipv4Addr>().unwrap(), 67));
    let relay: Ipv4Addr = format!("{p}.0.2").parse().unwrap();
    let cfg = |rate, count| {
        storm_config(
            relay.into(),
            &format!("{p}.0.0/16"),
            [0x02, 0x75],
            rate,
            count,
        )
    };
    let check = |r: &Report, count: u64| {
        assert_eq!(r.discovers, count, "{r:#?}");
        assert_eq!(
            (r.offers, r.requests, r.acks),
            (count, count, count),
            "{r:#?}"
        );
        assert_eq!(
            (r.naks, r.discover_drops, r.request_drops),
            (0, 0, 0),
            "{r:#?}"
        );
        assert_eq!(
            (r.outside_subnet, r.duplicates, r.unexpected),
            (0, 0, 0),
            "{r:#?}"
        );
    };
    // Paced: 2,000 exchanges at 2,000/s, each of the 800 clients two or three times.
    let paced = storm_from(&lab.net.cli, server, cfg(2000, 2000));
    check(&paced, 2000);
    // A flood of 4,000 more with 200 in flight.
    let flood = storm_from(&lab.net.cli, server, cfg(0, 4000));
    check(&flood, 4000);
    // pserv holds one bound lease per client, each on its own address.
    let leases = pserv.leases(&lab.net);
    let bound: Vec<&str> = leases
        .lines()
        .filter(|l| l.contains(" bound "))
        .map(|l| l.split_whitespace().nth(1).unwrap())
        .collect();
    assert_eq!(bound.len(), 800, "{leases}");
    let distinct: std::collections::HashSet<&&str> = bound.iter().collect();
    assert_eq!(distinct.len(), 800);
}

/// Issue 27: the same against the DHCPv6 front end: SOLICIT/ADVERTISE/REQUEST/REPLY, each in a
/// RELAY-FORW from the relay's link address, paced and flooded; every exchange answered, no
/// address outside the subnet or given to two clients, and one bound lease per client.
#[test]
fn storm_of_relayed_dhcpv6_exchanges_every_one_answered_and_checked() {
    if !(have_root("a DHCPv6 storm in network namespaces") && have_tool("ip")) {
        return;
    }
    let lab = Lab::new("s6", 74);
    let p6 = "fd00:74";
    std::fs::write(
        &lab.snap,
        format!(
            r#"{{"generation": 1, "subnets": [{{"cidr": "{p6}::/64", "lease_seconds": 600,
              "dynamic": [{{"start": "{p6}::1:0", "end": "{p6}::1:3e7"}}]}}]}}"#
        ),
    )
    .unwrap();
    for (ns, dev, host) in [(&lab.net.srv, "vsrv", 1), (&lab.net.cli, "vcli", 2)] {
        ns.ip(&[
            "-6",
            "addr",
            "add",
            &format!("{p6}::{host}/64"),
            "dev",
            dev,
            "nodad",
        ]);
    }
    let pserv = Pserv::start_with(
        &lab.net,
        &lab.snap,
        &lab.state,
        &["--dhcp6-listen", &format!("[{p6}::1]:547")],
    );
    let server = SocketAddr::from((format!("{p6}::1").parse::<Ipv6Addr>().unwrap(), 547));
    let relay: Ipv6Addr = format!("{p6}::2").parse().unwrap();
    let cfg = |rate, count| {
        storm_config(
            relay.into(),
            &format!("{p6}::/64"),
            [0x02, 0x74],
            rate,
            count,
        )
    };
    for (rate, count) in [(2000, 2000), (0, 4000)] {
        let r = storm_from(&lab.net.cli, server, cfg(rate, count));
        assert_eq!(
            (r.discovers, r.offers, r.requests, r.acks),
            (count, count, count, count),
            "{r:#?}"
        );
        assert_eq!(
            (r.naks, r.discover_drops, r.request_drops, r.unexpected),
            (0, 0, 0, 0),
            "{r:#?}"
        );
        assert_eq!((r.outside_subnet, r.duplicates), (0, 0), "{r:#?}");
    }
    let leases = pserv.leases(&lab.net);
    let bound: std::collections::HashSet<&str> = leases
        .lines()
        .filter(|l| l.contains(" bound ") && l.contains(p6))
        .map(|l| l.split_whitespace().nth(1).unwrap())
        .collect();
    assert_eq!(bound.len(), 800, "{leases}");
}

/// The boot storms' snapshot: `machines` nodes `m000`.. on profile `install` (kernel, initrd,
/// a preseed naming the node, its progress URL), each reserved at `<p>.128.<i+1>` in the
/// IPv4 subnet `<p>.0.0/16` (pserv's iPXE chain); with `p6`, also at `<p6>::1:<i+1>` in the
/// IPv6 subnet `<p6>::/64` (the `grub` chain).
fn storm_snapshot(p: &str, p6: Option<&str>, machines: u32) -> String {
    let nodes: Vec<String> = (0..machines)
        .map(|i| {
            let v6 = p6.map_or(String::new(), |p6| {
                format!(r#", "ipv6": "{p6}::1:{:x}""#, i + 1)
            });
            format!(
                r#"{{"id": "m{i}", "hostname": "m{i:03}", "domain": "lab",
                  "interfaces": [{{"mac": "02:b0:00:00:00:{i:02x}", "ipv4": "{p}.128.{}"{v6}}}],
                  "boot": {{"profile": "install"}}}}"#,
                i + 1
            )
        })
        .collect();
    let subnet6 = p6.map_or(String::new(), |p6| {
        format!(
            r#", {{"cidr": "{p6}::/64", "dns_servers": ["{p6}::1"], "domain": "lab",
      "unknown_clients": "ignore", "boot": {{"chain": "grub"}}}}"#
        )
    });
    format!(
        r#"{{"generation": 1,
  "boot_profiles": {{"install": {{"kernel": "images/vmlinuz", "initrd": ["images/initrd.img"],
      "cmdline": "console=ttyS0 pserv.host={{{{ node.hostname }}}} url={{{{ node_files_url }}}}preseed.cfg",
      "node_files": {{"preseed.cfg": "d-i netcfg/get_hostname string {{{{ node.hostname }}}}\nd-i preseed/early_command string wget -q -O /dev/null '{{{{ progress_url }}}}?stage=early'\n"}}}}}},
  "subnets": [{{"cidr": "{p}.0.0/16", "router": "{p}.0.1", "dns_servers": ["{p}.0.1"],
    "domain": "lab", "unknown_clients": "ignore", "boot": {{}}}}{subnet6}],
  "nodes": [{}]}}"#,
        nodes.join(",")
    )
}

/// A boot storm of `machines` from the relay `relay` to `server`, all at once, from their
/// leased addresses, every byte compared with `root`.
fn boot_storm_config(
    server: SocketAddrV4,
    relay: Ipv4Addr,
    machines: u32,
    root: &std::path::Path,
) -> pserv_storm::boot::Config {
    pserv_storm::boot::Config {
        dhcp6: None,
        server,
        proxy: None,
        relay,
        machines,
        arch: pserv_storm::boot::Arch::Mix,
        ramp: Duration::ZERO,
        mac_prefix: [0x02, 0xb0],
        tftp: pserv_boot::tftp::client::Request::default(),
        leased_source: true,
        boot_dir: Some(root.to_owned()),
        timeout: Duration::from_secs(4),
        dhcp_tries: 4,
        deadline: Duration::from_secs(120),
        think: Duration::ZERO,
    }
}

/// Runs `cfg`'s storm from `ns` and asserts every machine booted (none from disk).
fn all_boot(ns: &Netns, cfg: pserv_storm::boot::Config) -> pserv_storm::boot::Report {
    let machines = u64::from(cfg.machines);
    let report = netns::run_storm(ns.name(), cfg);
    eprintln!("{report:#?}");
    assert_eq!(
        (report.booted, report.failed, report.local),
        (machines, 0, 0),
        "{report:#?}"
    );
    report
}

/// `boot` mode against the binary: 60 machines (BIOS and UEFI alternating) power on at once
/// and each does its firmware's whole path from pserv alone: DORA, the iPXE binary over TFTP
/// from its own address, iPXE's DORA, its per-node script over HTTP (which must name it), the
/// kernel and initrd over HTTP, the installer's step (its preseed, rendered for it, and a
/// progress report from its own address), A and PTR lookups of itself. Every byte is compared with the
/// boot directory; every machine must boot.
#[test]
fn boot_storm_every_machine_boots_from_pserv_alone() {
    if !(have_root("a boot storm in network namespaces") && have_tool("ip")) {
        return;
    }
    let lab = Lab::new("b", 76);
    let p = lab.p().to_owned();
    let root = netns::storm_boot_dir(&lab);
    let machines = 60u32;
    std::fs::write(&lab.snap, storm_snapshot(&p, None, machines)).unwrap();
    let cli = &lab.net.cli;
    cli.addr("vcli", &format!("{p}.0.2/16"));
    // The machines' addresses are the generator's namespace's own.
    cli.ip(&[
        "route",
        "add",
        "local",
        &format!("{p}.128.0/24"),
        "dev",
        "lo",
    ]);
    let (_pserv, _control) = netns::serve_storm(&lab, &root, &[]);
    let relay: Ipv4Addr = format!("{p}.0.2").parse().unwrap();
    let server = SocketAddrV4::new(format!("{p}.0.1").parse().unwrap(), 67);
    let cfg = pserv_storm::boot::Config {
        arch: pserv_storm::boot::Arch::Mix,
        ..boot_storm_config(server, relay, machines, &root)
    };
    let report = all_boot(cli, cfg);
    for phase in [
        "dhcp",
        "boot_file",
        "ipxe_dhcp",
        "config",
        "kernel",
        "initrd",
        "node_file",
        "progress",
        "dns",
    ] {
        assert_eq!(
            report.phases.get(phase).map(|l| l.samples),
            Some(u64::from(machines)),
            "{phase}: {report:#?}"
        );
    }
    assert_eq!((report.unnamed, report.no_dns), (0, 0), "every check ran");
    // Boot files, scripts, kernels and initrds, for every machine.
    assert!(
        report.bytes > u64::from(machines) * 1_500_000,
        "{report:#?}"
    );
}

/// Issue 27: a dual-stack boot storm: 60 machines, every second one booting over IPv6
/// (x86-64 UEFI, IPv4 PXE off): relayed DHCPv6 with option 61, the boot file URL
/// `tftp://[server]/shimx64.efi`, the `grub` chain over TFTP on IPv6 from its own address
/// (its `grub.cfg` rendered for its IPv6 reservation and naming it), the kernel and initrd,
/// its preseed over HTTP on IPv6 and a progress report, PTR and AAAA lookups of itself; the
/// others over IPv4 and iPXE, beside them, from the same pserv. Every machine must boot.
#[test]
fn dual_stack_boot_storm_every_machine_boots() {
    if !(have_root("a dual-stack boot storm in network namespaces") && have_tool("ip")) {
        return;
    }
    let lab = Lab::new("d", 72);
    let p = lab.p().to_owned();
    let p6 = "fd00:72";
    let root = netns::storm_boot_dir(&lab);
    for (f, n) in [("shimx64.efi", 50_000), ("grubx64.efi", 80_000)] {
        let b: Vec<u8> = (0..n).map(|i: usize| (i as u8).wrapping_mul(7)).collect();
        std::fs::write(root.join(f), b).unwrap();
    }
    let machines = 60u32;
    std::fs::write(&lab.snap, storm_snapshot(&p, Some(p6), machines)).unwrap();
    let (srv, cli) = (&lab.net.srv, &lab.net.cli);
    cli.addr("vcli", &format!("{p}.0.2/16"));
    for (ns, dev, host) in [(srv, "vsrv", 1), (cli, "vcli", 2)] {
        ns.ip(&[
            "-6",
            "addr",
            "add",
            &format!("{p6}::{host}/64"),
            "dev",
            dev,
            "nodad",
        ]);
    }
    // The machines' addresses are the generator's namespace's own: IPv4 by a local route
    // (its ARP answers for them); IPv6 by a local route there and a route to it on the
    // server's side (neighbour discovery does not answer for a local route's addresses).
    cli.ip(&[
        "route",
        "add",
        "local",
        &format!("{p}.128.0/24"),
        "dev",
        "lo",
    ]);
    cli.ip(&[
        "-6",
        "route",
        "add",
        "local",
        &format!("{p6}::1:0/112"),
        "dev",
        "lo",
    ]);
    // IPv6 binds only to an interface's address unless non-local binds are allowed.
    let out = cli
        .exec("sysctl")
        .args(["-qw", "net.ipv6.ip_nonlocal_bind=1"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    srv.ip(&[
        "-6",
        "route",
        "add",
        &format!("{p6}::1:0/112"),
        "via",
        &format!("{p6}::2"),
        "dev",
        "vsrv",
    ]);
    let (_pserv, _control) = netns::serve_storm(
        &lab,
        &root,
        &[
            "--dhcp6-listen",
            &format!("[{p6}::1]:547"),
            "--dns-listen",
            &format!("[{p6}::1]:53"),
        ],
    );
    let server = SocketAddrV4::new(format!("{p}.0.1").parse().unwrap(), 67);
    let cfg = pserv_storm::boot::Config {
        dhcp6: Some(pserv_storm::boot::Dhcp6 {
            server: format!("[{p6}::1]:547").parse().unwrap(),
            relay: format!("{p6}::2").parse().unwrap(),
            every: 2,
        }),
        arch: pserv_storm::boot::Arch::Bios,
        ..boot_storm_config(server, format!("{p}.0.2").parse().unwrap(), machines, &root)
    };
    let report = all_boot(cli, cfg);
    let half = u64::from(machines / 2);
    for (phase, n) in [
        ("dhcp", 2 * half),
        ("boot_file", 2 * half),
        ("ipxe_dhcp", half),
        ("grub", half),
        ("config", 2 * half),
        ("kernel", 2 * half),
        ("node_file", 2 * half),
        ("progress", 2 * half),
        ("dns", 2 * half),
    ] {
        assert_eq!(
            report.phases.get(phase).map(|l| l.samples),
            Some(n),
            "{phase}: {report:#?}"
        );
    }
    assert_eq!((report.unnamed, report.no_dns), (0, 0), "every check ran");
}
