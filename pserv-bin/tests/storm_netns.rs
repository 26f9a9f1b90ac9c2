//! pserv-storm's DHCP mode against the real binary, across a veth pair between two namespaces
//! this test creates: a short storm where every exchange must complete and every answer is
//! checked (no drop, no NAK, no address outside the subnet, no address for two clients), and
//! pserv's own lease list must agree. Needs root; runs (never skips) when `CI=true`.

#![allow(clippy::unwrap_used)]

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::Duration;

use pserv_storm::dhcp::{self, Report};
use pserv_tests::{have_root, have_tool};

mod netns;
use netns::{Lab, run};

/// Runs a storm from inside namespace `ns` (on a thread that enters it: the rest of the test
/// process stays where it was).
fn storm_from(ns: &str, server: SocketAddrV4, cfg: dhcp::Config) -> Report {
    let ns = ns.to_owned();
    std::thread::spawn(move || {
        let f = std::fs::File::open(format!("/run/netns/{ns}")).unwrap();
        nix::sched::setns(f, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
        let sock = dhcp::run::socket(SocketAddr::from((cfg.giaddr, 67))).unwrap();
        dhcp::run::run(&sock, server, cfg, false)
    })
    .join()
    .unwrap()
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
    run(&[
        "ip",
        "-n",
        &lab.net.cli,
        "addr",
        "add",
        &format!("{p}.0.2/16"),
        "dev",
        "vcli",
    ]);
    let pserv = lab.serve();
    let server = SocketAddrV4::new(format!("{p}.0.1").parse().unwrap(), 67);
    let relay: Ipv4Addr = format!("{p}.0.2").parse().unwrap();
    let cfg = |rate, count| dhcp::Config {
        clients: 800,
        rate,
        window: 200,
        count,
        duration: Duration::from_secs(10),
        timeout: Duration::from_secs(2),
        giaddr: relay,
        subnet: Some(format!("{p}.0.0/16").parse().unwrap()),
        mac_prefix: [0x02, 0x75],
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
