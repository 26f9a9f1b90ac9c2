//! A DHCP datagram -> the sans-IO server on the example table with some leases. Invariants:
//! never a panic; any reply decodes, carries the request's xid and chaddr, and never offers an
//! address outside the subnet or one another client holds.
#![no_main]

use std::net::Ipv4Addr;
use std::sync::OnceLock;

use dhcproto::{Decodable, v4};
use libfuzzer_sys::fuzz_target;
use pserv_core::lease::Leases;
use pserv_core::snapshot::{EXAMPLE_JSON, Snapshot};
use pserv_core::{MacAddr, Table};
use pserv_dhcp::server::decode;
use pserv_dhcp::{Meta, Outcome, Standalone};

const NOW: u64 = 1_800_000_000;

fn table() -> &'static Table {
    static T: OnceLock<Table> = OnceLock::new();
    T.get_or_init(|| {
        Table::compile(
            &Snapshot::from_json(EXAMPLE_JSON.as_bytes()).expect("valid"),
            None,
        )
        .expect("valid")
    })
}

fuzz_target!(|data: &[u8]| {
    let t = table();
    // Two clients already hold addresses in the pool.
    let mut leases = Leases::new();
    for n in 1..=2u8 {
        let mac = MacAddr([2, 0, 0, 0, 0, n]);
        let ip = leases
            .offer(t, &t.subnets()[0], mac, None, None, NOW)
            .expect("free pool");
        leases
            .commit(t, &t.subnets()[0], mac, ip, None, NOW)
            .expect("commit");
    }
    let mut s = Standalone::new(leases);
    let meta = Meta {
        local: Ipv4Addr::new(10, 20, 0, 2),
        ifindex: 1,
    };
    let Outcome::Reply(r) = s.handle(t, NOW, &meta, data) else {
        return;
    };
    let reply = decode(&r.bytes).expect("a reply decodes");
    let req = v4::Message::from_bytes(data).expect("a request that got a reply decodes");
    assert_eq!(reply.xid(), req.xid());
    assert_eq!(reply.chaddr(), req.chaddr());
    let y = reply.yiaddr();
    if !y.is_unspecified() {
        assert!(
            t.subnets().iter().any(|sn| sn.is_host(y)),
            "{y} outside every subnet"
        );
        let mut c = [0u8; 6];
        c.copy_from_slice(&req.chaddr()[..6]);
        if let Some(h) = s.leases().holder(y, NOW) {
            assert_eq!(h.mac.0, c, "{y} is held by {}", h.mac);
        }
    }
});
