//! A datagram to the PXE boot server (UDP 4011) and to port 67, on a proxyDHCP subnet
//! (issue 23). Invariants: never a panic; any answer decodes, carries the request's xid and
//! chaddr, is a boot answer only (no yiaddr, no lease time, no change to make durable, never a
//! NAK: a proxy link gets none whatever link it names), and a sighting names the requesting
//! machine and an address of the subnet.
#![no_main]

use std::net::Ipv4Addr;
use std::sync::OnceLock;

use dhcproto::{Decodable, v4};
use libfuzzer_sys::fuzz_target;
use pserv_core::lease::Leases;
use pserv_core::snapshot::Snapshot;
use pserv_core::Table;
use pserv_dhcp::server::decode;
use pserv_dhcp::{BootChain, Meta, Outcome, Server};

const SNAPSHOT: &str = r#"{ "generation": 1,
  "boot_profiles": { "live": { "kernel": "images/vmlinuz", "cmdline": "x" } },
  "subnets": [ { "cidr": "10.77.0.0/16", "proxy_dhcp": true,
                 "boot": { "unknown_profile": "live", "chain": "grub" } } ],
  "nodes": [
    { "id": "n1", "hostname": "n1", "domain": "lab",
      "interfaces": [ { "mac": "52:54:00:77:00:01", "ipv4": "10.77.0.11" } ],
      "boot": { "profile": "live" } },
    { "id": "n2", "hostname": "n2", "domain": "lab",
      "interfaces": [ { "mac": "52:54:00:77:00:02" } ], "boot": { "mode": "ignore" } } ] }"#;

fn table() -> &'static Table {
    static T: OnceLock<Table> = OnceLock::new();
    T.get_or_init(|| {
        Table::compile(&Snapshot::from_json(SNAPSHOT.as_bytes()).expect("valid"), None)
            .expect("valid")
    })
}

fuzz_target!(|data: &[u8]| {
    let t = table();
    let server = Server::new().with_boot_chain(Some(BootChain { http_port: 5248 }));
    let meta = Meta {
        local: Ipv4Addr::new(10, 77, 0, 2),
        ifindex: 1,
    };
    // The sender: the request's ciaddr when it has one (the usual case), else an address of
    // the subnet.
    // (decode: dhcproto behind pserv's option-length guard, which its decoder needs)
    let from = decode(data)
        .map(|m| m.ciaddr())
        .filter(|ip| !ip.is_unspecified())
        .unwrap_or(Ipv4Addr::new(10, 77, 3, 4));
    let (at_4011, seen) = server.boot_server(t, &meta, from, data);
    let at_67 = server.handle(t, &mut Leases::new(), 1_800_000_000, &meta, data);
    for outcome in [at_4011, at_67] {
        match outcome {
            Outcome::Reply(r) => {
                assert!(r.proxy.is_some() && r.change.is_none());
                let reply = decode(&r.bytes).expect("a reply decodes");
                let req = v4::Message::from_bytes(data).expect("a request that got a reply decodes");
                assert_eq!(reply.xid(), req.xid());
                assert_eq!(reply.chaddr(), req.chaddr());
                assert!(reply.yiaddr().is_unspecified());
                assert!(reply.opts().get(v4::OptionCode::AddressLeaseTime).is_none());
            }
            Outcome::Seen(s) => assert!(t.subnets()[0].contains(s.ip)),
            Outcome::Change(c) => panic!("a proxy subnet changed a lease: {c:?}"),
            Outcome::Drop(_) => {}
        }
    }
    if let Some(s) = seen {
        assert!(t.subnets()[0].contains(s.ip));
        let req = v4::Message::from_bytes(data).expect("a sighting's request decodes");
        assert_eq!(&req.chaddr()[..6], &s.mac.0);
    }
});
