//! The hot-path lookups of the compiled table allocate nothing.
//!
//! This lives in its own test crate because `allocation-counter` replaces the global allocator
//! of whatever binary links it.

#![allow(clippy::unwrap_used)]

use std::net::Ipv4Addr;

use pserv_core::snapshot::{EXAMPLE_JSON, Snapshot};
use pserv_core::{MacAddr, Table};

#[test]
fn lookups_do_not_allocate() {
    let t = Table::compile(&Snapshot::from_json(EXAMPLE_JSON.as_bytes()).unwrap(), None).unwrap();
    let mac: MacAddr = "52:54:00:12:34:56".parse().unwrap();
    let unknown: MacAddr = "52:54:00:99:99:99".parse().unwrap();
    let mut found = 0;
    let info = allocation_counter::measure(|| {
        for _ in 0..1000 {
            found += usize::from(t.by_mac(mac).is_some());
            found += usize::from(t.by_mac(unknown).is_some());
            found += usize::from(t.by_name("AAA.Maas.").is_some());
            found += usize::from(t.by_name("nope.maas").is_some());
            found += usize::from(t.by_ipv4(Ipv4Addr::new(10, 20, 0, 11)).is_some());
            found += usize::from(t.subnet_for(Ipv4Addr::new(10, 20, 1, 1)).is_some());
            found += t
                .by_name("bbb.maas")
                .map_or(0, |n| n.fqdn().len() + n.id().len());
        }
    });
    assert_eq!(found, 1000 * (4 + "bbb.maas".len() + "8kq2wd".len()));
    assert_eq!(info.count_total, 0, "lookups allocated: {info:?}");

    // The counter works: compiling allocates.
    let info = allocation_counter::measure(|| {
        let _ = Table::compile(&Snapshot::from_json(EXAMPLE_JSON.as_bytes()).unwrap(), None);
    });
    assert!(info.count_total > 0);
}
