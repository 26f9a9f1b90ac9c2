//! Hot swap: readers hammer lookups while snapshots are published; every lookup sees one whole
//! generation, generations never go backwards, and a rejected push changes nothing.

#![allow(clippy::unwrap_used)]

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use pserv_core::{MacAddr, PublishError, Store};

/// Generation `g` has `count(g)` nodes; node `i` is `n{i}.lab` at `addr(g, i)` with MAC `mac(i)`.
fn count(g: u64) -> u32 {
    if g.is_multiple_of(2) { 150 } else { 200 }
}

fn addr(g: u64, i: u32) -> Ipv4Addr {
    Ipv4Addr::new(
        10,
        (g % 200) as u8 + 1,
        (i / 200) as u8,
        (i % 200) as u8 + 1,
    )
}

fn mac(i: u32) -> MacAddr {
    let b = i.to_be_bytes();
    MacAddr([2, 0, b[0], b[1], b[2], b[3]])
}

fn snapshot(g: u64) -> Vec<u8> {
    let nodes: Vec<String> = (0..count(g))
        .map(|i| {
            format!(
                r#"{{"id":"id{i}","hostname":"n{i}","domain":"lab","interfaces":[{{"mac":"{}","ipv4":"{}"}}]}}"#,
                mac(i),
                addr(g, i)
            )
        })
        .collect();
    format!(
        r#"{{"generation":{g},"subnets":[{{"cidr":"10.0.0.0/8"}}],"nodes":[{}]}}"#,
        nodes.join(",")
    )
    .into_bytes()
}

#[test]
fn readers_see_one_generation_per_lookup() {
    const GENERATIONS: u64 = 300;
    let store = Arc::new(Store::new());
    let bodies: Vec<Vec<u8>> = (1..=GENERATIONS).map(snapshot).collect();
    store.publish_json(&bodies[0]).unwrap();
    let done = Arc::new(AtomicBool::new(false));
    let lookups = Arc::new(AtomicU64::new(0));

    let readers: Vec<_> = (0..3)
        .map(|r| {
            let (store, done, lookups) = (store.clone(), done.clone(), lookups.clone());
            std::thread::spawn(move || {
                let mut last_gen = 0;
                let mut i = r;
                let mut n = 0u64;
                let mut name = String::new();
                // Until told to stop *and* the final generation has been seen (a loaded machine
                // may not schedule a reader between the last publish and the stop flag).
                while !(done.load(Ordering::Relaxed) && last_gen == GENERATIONS) {
                    let t = store.load();
                    let g = t.generation();
                    assert!(g >= last_gen, "generation went back from {last_gen} to {g}");
                    last_gen = g;
                    assert_eq!(t.node_count() as u32, count(g));
                    i = (i + 7) % 200;
                    name.clear();
                    use std::fmt::Write;
                    write!(name, "N{i}.Lab.").unwrap();
                    let by_name = t.by_name(&name).map(|n| n.ipv4());
                    let by_mac = t.by_mac(mac(i)).map(|f| f.ipv4());
                    let by_ip = t.by_ipv4(addr(g, i)).map(|f| f.node().id().to_owned());
                    if i < count(g) {
                        assert_eq!(by_name, Some(Some(addr(g, i))), "gen {g} node {i}");
                        assert_eq!(by_mac, Some(Some(addr(g, i))));
                        assert_eq!(by_ip, Some(format!("id{i}")));
                    } else {
                        assert_eq!(
                            (by_name, by_mac, by_ip),
                            (None, None, None),
                            "gen {g} node {i}"
                        );
                    }
                    n += 1;
                }
                lookups.fetch_add(n, Ordering::Relaxed);
                last_gen
            })
        })
        .collect();

    for (k, body) in bodies.iter().enumerate().skip(1) {
        let p = store.publish_json(body).unwrap();
        assert_eq!(p.generation, k as u64 + 1);
        // A stale push and an invalid push in between change nothing.
        assert!(matches!(
            store.publish_json(&bodies[k - 1]),
            Err(PublishError::Stale { .. })
        ));
        let mut bad = snapshot(k as u64 + 2);
        let at = bad.windows(3).position(|w| w == b"n1\"").unwrap();
        bad[at..at + 2].copy_from_slice(b"n0"); // duplicate FQDN
        assert!(matches!(
            store.publish_json(&bad),
            Err(PublishError::Invalid(_))
        ));
        assert_eq!(store.load().generation(), k as u64 + 1);
    }
    done.store(true, Ordering::Relaxed);
    for r in readers {
        assert_eq!(r.join().unwrap(), GENERATIONS);
    }
    assert!(lookups.load(Ordering::Relaxed) > 1000);
}

#[test]
fn first_publish_accepts_any_generation_then_requires_increase() {
    let store = Store::new();
    assert_eq!(store.generation(), None);
    store.publish_json(&snapshot(0)).unwrap();
    assert_eq!(store.generation(), Some(0));
    assert_eq!(
        store.publish_json(&snapshot(0)).unwrap_err(),
        PublishError::Stale {
            generation: 0,
            current: 0
        }
    );
    assert!(matches!(
        store.publish_json(b"{\"generation\": 1, \"nodes\": 3}"),
        Err(PublishError::Parse(_))
    ));
    store.publish_json(&snapshot(1)).unwrap();
}
