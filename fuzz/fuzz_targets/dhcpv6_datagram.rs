//! A DHCPv6 datagram (a client's message, or one in relay layers) -> the sans-IO DHCPv6
//! server on a table with an IPv6 subnet and some leases. Invariants: never a panic (dhcproto's
//! v6 decoder panics on some option lengths in debug builds: the length check in front of it
//! must stop them); any reply, unwrapped, frames and decodes, carries the request's
//! transaction id, and never gives (at a nonzero lifetime) an address outside the subnet or one
//! another client holds.
#![no_main]

use std::net::Ipv6Addr;
use std::sync::OnceLock;

use dhcproto::v6::{DhcpOption, OptionCode};
use libfuzzer_sys::fuzz_target;
use pserv_core::Table;
use pserv_core::lease::{Duid, Key6, Leases};
use pserv_core::snapshot::Snapshot;
use pserv_dhcp::v6::{Meta6, Outcome6, Server6, decode, unwrap_relayed};

const NOW: u64 = 1_800_000_000;
const SNAP: &str = r#"{"generation": 1, "subnets": [
    {"cidr": "2001:db8:1::/64", "dns_servers": ["2001:db8:1::53"], "domain": "lab",
     "dynamic": [{"start": "2001:db8:1::1000", "end": "2001:db8:1::10ff"}],
     "boot": {"chain": "grub"}}],
  "nodes": [{"id": "n1", "hostname": "node1", "domain": "lab",
     "interfaces": [{"mac": "52:54:00:00:00:01", "ipv6": "2001:db8:1::11"}]}]}"#;

fn table() -> &'static Table {
    static T: OnceLock<Table> = OnceLock::new();
    T.get_or_init(|| Table::compile(&Snapshot::from_json(SNAP.as_bytes()).expect("valid"), None).expect("valid"))
}

fuzz_target!(|data: &[u8]| {
    let t = table();
    let s6 = &t.subnets6()[0];
    let mut leases = Leases::new();
    // Two clients already hold addresses in the pool.
    for n in 1..=2u8 {
        let key = Key6 {
            duid: Duid::new(&[0, 3, 0, 1, 2, 0, 0, 0, 0, n]).expect("duid"),
            iaid: 1,
        };
        let ip = leases.v6_mut().offer(t, s6, &key, None, None, None, NOW).expect("free pool");
        leases.v6_mut().commit(t, s6, &key, None, ip, None, NOW).expect("commit");
    }
    let server = Server6::new(Duid::new(&[0, 4, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9]).expect("duid"));
    let meta = Meta6 {
        source: "fe80::1".parse().expect("addr"),
        server: Some("2001:db8:1::2".parse().expect("addr")),
        multicast: true,
    };
    let Outcome6::Reply(r) = server.handle(t, &mut leases, NOW, &meta, data) else {
        return;
    };
    let inner = unwrap_relayed(&r.bytes).expect("a reply unwraps");
    let reply = decode(inner).expect("a reply decodes");
    let request = unwrap_relayed(data).expect("a request that got a reply unwraps");
    assert_eq!(&inner[1..4], &request[1..4], "the transaction id");
    let client = match reply.opts().get(OptionCode::ClientId) {
        Some(DhcpOption::ClientId(d)) => Duid::new(d),
        _ => None,
    };
    for ia in reply.opts().get_all(OptionCode::IANA).unwrap_or(&[]) {
        let DhcpOption::IANA(ia) = ia else { continue };
        for a in ia.opts.iter() {
            let DhcpOption::IAAddr(a) = a else { continue };
            if a.valid_life == 0 {
                continue;
            }
            let ip: Ipv6Addr = a.addr;
            assert!(s6.contains(ip), "{ip} outside the subnet");
            if let Some(h) = leases.v6().holder(ip, NOW) {
                assert_eq!(Some(&h.duid), client.as_ref(), "{ip} is held by another client");
            }
        }
    }
});
