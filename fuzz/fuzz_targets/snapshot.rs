//! Snapshot bytes -> parse -> validate + compile. Never panics; a table that compiles answers a
//! lookup for every node and interface it holds, and publishing it through a store is atomic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pserv_core::snapshot::Snapshot;
use pserv_core::{Store, Table};

fuzz_target!(|data: &[u8]| {
    let Ok(snap) = Snapshot::from_json(data) else {
        return;
    };
    match Table::compile(&snap, None) {
        Ok(table) => {
            assert_eq!(table.node_count(), snap.nodes.len());
            for n in &snap.nodes {
                let fqdn = format!("{}.{}", n.hostname, n.domain);
                let found = table
                    .by_name(&fqdn)
                    .expect("a compiled node is found by name");
                assert_eq!(found.id(), n.id);
                for i in &n.interfaces {
                    let f = table
                        .by_mac(i.mac)
                        .expect("a compiled interface is found by MAC");
                    assert_eq!(f.node().id(), n.id);
                    assert_eq!(f.ipv4(), i.ipv4);
                    if let Some(ip) = i.ipv4 {
                        assert!(table.subnet_for(ip).is_some_and(|s| s.is_host(ip)));
                        assert_eq!(
                            table.by_ipv4(ip).map(|f| f.node().id()),
                            Some(n.id.as_str())
                        );
                    }
                }
            }
            let store = Store::new();
            store
                .publish(&snap)
                .expect("a snapshot that compiles publishes");
            assert_eq!(store.load().generation(), snap.generation);
        }
        Err(problems) => {
            assert!(!problems.is_empty());
            for p in &problems {
                // Every problem renders and names a path; none is empty text.
                assert!(!p.to_string().is_empty());
                assert!(!p.path().is_empty());
            }
        }
    }
});
