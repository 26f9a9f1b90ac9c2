//! Property tests: random snapshots full of collisions against a naive oracle.

#![allow(clippy::unwrap_used)]

use std::collections::{HashMap, HashSet};
use std::net::Ipv4Addr;

use proptest::prelude::*;
use pserv_core::snapshot::{DynamicRange, Interface, Node, Snapshot, Subnet};
use pserv_core::{MacAddr, Problem, Table};

fn subnet() -> Subnet {
    serde_json::from_value(serde_json::json!({
        "cidr": "10.0.0.0/24", "domain": "maas",
        "dynamic": [{"start": "10.0.0.100", "end": "10.0.0.120"}]
    }))
    .unwrap()
}

fn iface() -> impl Strategy<Value = Interface> {
    (
        0u8..40,
        prop::option::weighted(0.7, prop_oneof![8 => 0u8..=130, 1 => Just(255u8)]),
        any::<bool>(),
        prop::bool::weighted(0.05),
        prop::bool::weighted(0.15),
    )
        .prop_map(|(m, ip, outside, multicast, primary)| Interface {
            mac: MacAddr([if multicast { 3 } else { 2 }, 0, 0, 0, 0, m]),
            ipv4: ip.map(|o| Ipv4Addr::new(10, 0, u8::from(outside && o % 7 == 0), o)),
            ipv6: None,
            primary,
        })
}

fn node() -> impl Strategy<Value = Node> {
    (
        0u8..25,
        "[a-hA-H]{1,2}(-[a-c])?|[a-c]_x|-a",
        prop_oneof![Just("maas"), Just("MAAS."), Just("lab")],
        prop::collection::vec(iface(), 0..3),
    )
        .prop_map(|(id, host, domain, interfaces)| Node {
            id: format!("id{id}"),
            hostname: host,
            domain: domain.into(),
            interfaces,
            boot: None,
            options: vec![],
        })
}

fn snapshot() -> impl Strategy<Value = Snapshot> {
    prop::collection::vec(node(), 0..25).prop_map(|nodes| Snapshot {
        generation: 1,
        dns: Default::default(),
        subnets: vec![subnet()],
        nodes,
        boot_profiles: Default::default(),
        boot_templates: Default::default(),
    })
}

/// Naive expectations, computed the slow and obvious way.
#[derive(Debug, Default, PartialEq, Eq)]
struct Expected {
    dup_ids: usize,
    dup_fqdns: usize,
    dup_macs: usize,
    dup_ips: usize,
    bad_names: usize,
    bad_macs: usize,
    outside: usize,
    in_pool: usize,
    not_host: usize,
    multi_primary: usize,
}

fn oracle(s: &Snapshot) -> Expected {
    let mut e = Expected::default();
    let mut ids = HashSet::new();
    let mut fqdns = HashSet::new();
    let mut macs = HashSet::new();
    let mut ips = HashSet::new();
    let pool = DynamicRange {
        start: Ipv4Addr::new(10, 0, 0, 100).into(),
        end: Ipv4Addr::new(10, 0, 0, 120).into(),
    };
    for n in &s.nodes {
        e.dup_ids += usize::from(!ids.insert(n.id.clone()));
        let host_ok = n
            .hostname
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-')
            && !n.hostname.starts_with('-')
            && !n.hostname.ends_with('-');
        e.bad_names += usize::from(!host_ok);
        if host_ok {
            let fqdn = format!("{}.{}", n.hostname, n.domain.trim_end_matches('.')).to_lowercase();
            e.dup_fqdns += usize::from(!fqdns.insert(fqdn));
        }
        e.multi_primary += usize::from(n.interfaces.iter().filter(|i| i.primary).count() > 1);
        for i in &n.interfaces {
            e.bad_macs += usize::from(i.mac.0[0] & 1 == 1);
            e.dup_macs += usize::from(!macs.insert(i.mac));
            if let Some(ip) = i.ipv4 {
                let o = ip.octets();
                if o[2] != 0 {
                    e.outside += 1;
                } else if o[3] == 0 || o[3] == 255 {
                    e.not_host += 1;
                } else if pool.start <= ip && ip <= pool.end {
                    e.in_pool += 1;
                } else {
                    e.dup_ips += usize::from(!ips.insert(ip));
                }
            }
        }
    }
    e
}

fn tally(problems: &[Problem]) -> Expected {
    let mut e = Expected::default();
    for p in problems {
        match p {
            Problem::DuplicateId { .. } => e.dup_ids += 1,
            Problem::DuplicateFqdn { .. } => e.dup_fqdns += 1,
            Problem::DuplicateMac { .. } => e.dup_macs += 1,
            Problem::DuplicateIp { .. } => e.dup_ips += 1,
            Problem::InvalidName { .. } => e.bad_names += 1,
            Problem::OutsideSubnets { .. } => e.outside += 1,
            Problem::InDynamicRange { .. } => e.in_pool += 1,
            Problem::NotAHostAddress { .. } => e.not_host += 1,
            Problem::Invalid { message, .. } if message.contains("marked primary") => {
                e.multi_primary += 1;
            }
            Problem::Invalid { message, .. } if message.contains("unicast") => e.bad_macs += 1,
            other => panic!("unexpected problem {other}"),
        }
    }
    e
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn validation_matches_the_oracle(s in snapshot()) {
        let expected = oracle(&s);
        match Table::compile(&s, None) {
            Ok(_) => prop_assert_eq!(expected, Expected::default()),
            Err(problems) => {
                prop_assert!(!problems.is_empty());
                prop_assert_eq!(tally(&problems), expected);
                // Every duplicate names two sites; every node problem names a node.
                for p in &problems {
                    prop_assert!(!p.node_ids().is_empty(), "{}", p);
                }
            }
        }
    }

    #[test]
    fn a_valid_table_answers_for_everything_it_holds(s in snapshot()) {
        let Ok(t) = Table::compile(&s, None) else { return Ok(()) };
        prop_assert_eq!(t.node_count(), s.nodes.len());
        let mut by_ip: HashMap<Ipv4Addr, &str> = HashMap::new();
        for n in &s.nodes {
            let fqdn = format!("{}.{}", n.hostname.to_uppercase(), n.domain);
            let found = t.by_name(&fqdn).expect("node by name");
            prop_assert_eq!(found.id(), n.id.as_str());
            let primary = n.interfaces.iter().position(|i| i.primary).or((!n.interfaces.is_empty()).then_some(0));
            prop_assert_eq!(found.ipv4(), primary.and_then(|p| n.interfaces[p].ipv4));
            for i in &n.interfaces {
                let f = t.by_mac(i.mac).expect("interface by MAC");
                prop_assert_eq!(f.node().id(), n.id.as_str());
                prop_assert_eq!(f.ipv4(), i.ipv4);
                if let Some(ip) = i.ipv4 {
                    by_ip.insert(ip, &n.id);
                }
            }
        }
        for (ip, id) in by_ip {
            prop_assert_eq!(t.by_ipv4(ip).map(|f| f.node().id()), Some(id));
        }
        prop_assert!(t.by_name("absent.nowhere").is_none());
    }

    #[test]
    fn json_round_trip_compiles_the_same(s in snapshot()) {
        let back = Snapshot::from_json(&s.to_json()).unwrap();
        prop_assert_eq!(&back, &s);
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
        if let Ok(s) = Snapshot::from_json(&bytes) {
            let _ = Table::compile(&s, Some(0));
        }
    }
}
