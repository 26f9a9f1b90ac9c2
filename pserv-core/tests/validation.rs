//! Validation: every rule, every problem reported at once, each naming its node(s) and field.

#![allow(clippy::unwrap_used)]

use std::net::{Ipv4Addr, Ipv6Addr};

use pserv_core::snapshot::{EXAMPLE_JSON, Interface, Node, Snapshot};
use pserv_core::{MacAddr, Problem, Table, validate};

fn example() -> Snapshot {
    Snapshot::from_json(EXAMPLE_JSON.as_bytes()).unwrap()
}

fn node(id: &str, host: &str, mac: u8, ip: Option<[u8; 4]>) -> Node {
    Node {
        id: id.into(),
        hostname: host.into(),
        domain: "maas".into(),
        interfaces: vec![Interface {
            mac: MacAddr([0x52, 0x54, 0, 0, 0, mac]),
            ipv4: ip.map(Ipv4Addr::from),
            ipv6: None,
            primary: false,
        }],
        boot: None,
        options: vec![],
    }
}

fn problems(s: &Snapshot) -> Vec<Problem> {
    validate(s, None).expect_err("snapshot should be invalid")
}

fn messages(p: &[Problem]) -> String {
    p.iter().map(|p| format!("{p}\n")).collect()
}

#[test]
fn example_is_valid_and_indexed() {
    let t = Table::compile(&example(), None).unwrap();
    assert_eq!(t.generation(), 1);
    assert_eq!(t.node_count(), 3);
    let aaa = t.by_name("AAA.maas.").unwrap();
    assert_eq!(aaa.id(), "4y3h7n");
    assert_eq!(aaa.ipv4(), Some(Ipv4Addr::new(10, 20, 0, 10)));
    assert_eq!(aaa.ipv6(), Some("fd00:20::10".parse::<Ipv6Addr>().unwrap()));
    let second = t.by_mac("52:54:00:12:34:57".parse().unwrap()).unwrap();
    assert_eq!(second.node().id(), "4y3h7n");
    assert!(!second.is_primary());
    assert_eq!(second.ipv4(), None);
    assert_eq!(
        t.by_ipv4(Ipv4Addr::new(10, 20, 0, 11))
            .unwrap()
            .node()
            .fqdn(),
        "bbb.maas"
    );
    assert_eq!(
        t.by_ipv6("fd00:20::10".parse().unwrap())
            .unwrap()
            .node()
            .hostname(),
        "aaa"
    );
    let s = t.subnet_for(Ipv4Addr::new(10, 20, 7, 7)).unwrap();
    assert_eq!(&*s.cidr, "10.20.0.0/16");
    assert_eq!((s.renew_seconds, s.rebind_seconds), (1800, 3150));
    assert!(t.subnet_for(Ipv4Addr::new(10, 21, 0, 1)).is_none());
    let bbb = t.by_name("bbb.maas").unwrap();
    assert_eq!(
        bbb.boot()
            .unwrap()
            .file(pserv_core::snapshot::Arch::X86_64Uefi),
        Some("custom/bootx64.efi")
    );
    assert_eq!(bbb.options()[0].code, 26);
    assert_eq!(t.domains(), &["maas".into()]);
}

#[test]
fn rename_race_names_both_nodes() {
    // aaa was renamed to bbb while the node called bbb has not been renamed yet.
    let mut s = example();
    s.nodes[0].hostname = "BBB".into();
    let p = problems(&s);
    assert_eq!(p.len(), 1, "{}", messages(&p));
    assert!(matches!(&p[0], Problem::DuplicateFqdn { fqdn, .. } if fqdn == "bbb.maas"));
    let mut ids = p[0].node_ids();
    ids.sort_unstable();
    assert_eq!(ids, ["4y3h7n", "8kq2wd"]);
    assert!(p[0].to_string().contains("4y3h7n") && p[0].to_string().contains("8kq2wd"));
}

#[test]
fn every_problem_is_reported_at_once() {
    let mut s = example();
    s.generation = 5;
    s.subnets[0].router = Some(Ipv4Addr::new(10, 30, 0, 1).into()); // router outside
    s.subnets[0]
        .dynamic
        .push(pserv_core::snapshot::DynamicRange {
            start: Ipv4Addr::new(10, 20, 9, 9).into(),
            end: Ipv4Addr::new(10, 20, 9, 1).into(), // reversed
        });
    s.subnets[0]
        .dynamic
        .push(pserv_core::snapshot::DynamicRange {
            start: Ipv4Addr::new(10, 20, 250, 1).into(),
            end: Ipv4Addr::new(10, 21, 0, 5).into(), // outside
        });
    let mut overlapping = s.subnets[0].clone();
    overlapping.cidr = "10.20.100.0/24".into();
    overlapping.router = None;
    overlapping.dynamic.clear();
    overlapping.boot = None;
    s.subnets.push(overlapping);
    s.subnets[0].boot.as_mut().unwrap().files.insert(
        pserv_core::snapshot::Arch::Arm64Uefi,
        "x".repeat(128), // too long for BOOTP file
    );
    s.subnets[0].boot.as_mut().unwrap().server_name = Some("s".repeat(64));
    s.nodes
        .push(node("n1", "bad_name", 1, Some([10, 20, 0, 10]))); // bad host, dup IP
    s.nodes.push(node("n2", "n2", 0x01, Some([10, 99, 0, 1]))); // dup MAC, outside subnets
    s.nodes.push(node("n3", "n3", 3, Some([10, 20, 200, 5]))); // inside dynamic range
    let mut n4 = node("n4", "n4", 4, None);
    n4.domain = "-bad.maas".into();
    s.nodes.push(n4);
    let mut n5 = node("n5", "n5", 5, Some([10, 20, 255, 255])); // broadcast address
    n5.interfaces[0].ipv6 = Some("fd99::1".parse().unwrap()); // outside v6 subnets
    s.nodes.push(n5);
    s.nodes.push(node("n5", "n6", 6, None)); // duplicate id

    let p = validate(&s, Some(7)).unwrap_err();
    let text = messages(&p);
    let expect = [
        "generation: 5 is not above the current generation 7",
        "subnet 10.20.0.0/16 router: router 10.30.0.1 is not a host address inside 10.20.0.0/16",
        "subnet 10.20.0.0/16 dynamic[1]: range 10.20.9.9-10.20.9.1 is reversed",
        "subnet 10.20.0.0/16 dynamic[2]: range 10.20.250.1-10.21.0.5 is not inside",
        "subnet 10.20.100.0/24: overlaps subnet 10.20.0.0/16",
        "subnet 10.20.0.0/16 boot.files.arm64-uefi: 128 bytes is too long, at most 127 fit",
        "subnet 10.20.0.0/16 boot.server_name: 64 bytes is too long, at most 63 fit",
        "node \"n1\" hostname: invalid name \"bad_name\"",
        "node \"n1\" interfaces[0].ipv4: address 10.20.0.10 is also reserved by node \"4y3h7n\" interfaces[0].ipv4",
        "node \"n2\" interfaces[0].mac: MAC 52:54:00:00:00:01 is also on node \"n1\" interfaces[0].mac",
        "node \"n2\" interfaces[0].ipv4: address 10.99.0.1 is outside every subnet",
        "node \"n3\" interfaces[0].ipv4: address 10.20.200.5 is inside dynamic range 10.20.200.1-10.20.203.254",
        "node \"n4\" domain: invalid name \"-bad.maas\"",
        "node \"n5\" interfaces[0].ipv4: 10.20.255.255 is the network or broadcast address",
        "node \"n5\" interfaces[0].ipv6: address fd99::1 is outside every subnet",
        "node \"n5\": duplicate node id, also nodes[7]",
    ];
    for e in expect {
        assert!(text.contains(e), "missing {e:?} in:\n{text}");
    }
    assert_eq!(p.len(), expect.len(), "unexpected extra problems:\n{text}");
}

#[test]
fn problems_serialize_with_path_and_nodes() {
    let mut s = example();
    s.nodes[1].interfaces[0].mac = s.nodes[0].interfaces[1].mac;
    let p = problems(&s);
    let j = serde_json::to_value(&p).unwrap();
    assert_eq!(j[0]["path"], "nodes[1].interfaces[0].mac");
    assert_eq!(j[0]["nodes"], serde_json::json!(["4y3h7n", "8kq2wd"]));
    assert!(
        j[0]["message"]
            .as_str()
            .unwrap()
            .contains("interfaces[1].mac")
    );
}

#[test]
fn duplicate_mac_within_one_node() {
    let mut s = example();
    s.nodes[0].interfaces[1].mac = s.nodes[0].interfaces[0].mac;
    let p = problems(&s);
    assert_eq!(p.len(), 1);
    assert!(p[0].to_string().contains("interfaces[0].mac"), "{}", p[0]);
}

#[test]
fn name_length_limits() {
    let mut s = example();
    s.nodes[0].hostname = "a".repeat(64);
    assert!(messages(&problems(&s)).contains("longer than 63"));
    let mut s = example();
    // 4 labels of 61 + dots = 247, plus "aaa." = 251 + ".maas"... push the FQDN over 253.
    s.nodes[0].domain = ["d".repeat(61).as_str(); 4].join(".");
    s.nodes[0].hostname = "abcdefghij".into();
    assert!(messages(&problems(&s)).contains("FQDN is longer than 253"));
}

#[test]
fn options_are_typed_and_reserved_codes_refused() {
    let mut s = example();
    s.subnets[0]
        .options
        .push(serde_json::from_str(r#"{"code": 26, "value": 1400}"#).unwrap());
    s.subnets[0]
        .options
        .push(serde_json::from_str(r#"{"code": 23, "value": "jumbo"}"#).unwrap());
    s.nodes[1]
        .options
        .push(serde_json::from_str(r#"{"code": 3, "value": ["10.20.0.1"]}"#).unwrap());
    let text = messages(&problems(&s));
    assert!(
        text.contains("subnet 10.20.0.0/16 options[3]: option 26 is given twice"),
        "{text}"
    );
    assert!(text.contains("subnet 10.20.0.0/16 options[4]: option 23: expected an integer from 0 to 255, got \"jumbo\""), "{text}");
    assert!(
        text.contains("node \"8kq2wd\" options[1]: option 3 is set by pserv"),
        "{text}"
    );
}

#[test]
fn multiple_primaries_and_bad_macs() {
    let mut s = example();
    s.nodes[0].interfaces[1].primary = true;
    s.nodes[2].interfaces[0].mac = "01:00:5e:00:00:01".parse().unwrap();
    let text = messages(&problems(&s));
    assert!(text.contains("2 interfaces are marked primary"), "{text}");
    assert!(text.contains("not a unicast hardware address"), "{text}");
}

#[test]
fn primary_defaults_to_first_and_follows_the_mark() {
    let mut s = example();
    s.nodes[0].interfaces[0].primary = false;
    s.nodes[0].interfaces[1].primary = true;
    s.nodes[0].interfaces[1].ipv4 = Some(Ipv4Addr::new(10, 20, 0, 99));
    let t = Table::compile(&s, None).unwrap();
    // The DNS name follows the newly marked primary interface.
    assert_eq!(
        t.by_name("aaa.maas").unwrap().ipv4(),
        Some(Ipv4Addr::new(10, 20, 0, 99))
    );
    s.nodes[0].interfaces[1].primary = false;
    let t = Table::compile(&s, None).unwrap();
    assert_eq!(
        t.by_name("aaa.maas").unwrap().ipv4(),
        Some(Ipv4Addr::new(10, 20, 0, 10))
    );
}

#[test]
fn timers_and_generation() {
    let mut s = example();
    s.subnets[0].renew_seconds = Some(4000);
    assert!(messages(&problems(&s)).contains("renew (4000) <= rebind (3150) <= lease (3600)"));
    let s = example();
    assert!(validate(&s, Some(0)).is_ok());
    assert!(matches!(
        validate(&s, Some(1)).unwrap_err().as_slice(),
        [Problem::StaleGeneration {
            generation: 1,
            current: 1
        }]
    ));
}

#[test]
fn cidr_errors() {
    let mut s = example();
    s.subnets[0].cidr = "10.20.0.1/16".into();
    s.subnets[1].cidr = "fd00:20::/129".into();
    let text = messages(&problems(&s));
    assert!(
        text.contains("has host bits set; the network is 10.20.0.0/16"),
        "{text}"
    );
    assert!(
        text.contains("\"fd00:20::/129\" is not an address/prefix-length"),
        "{text}"
    );
}

#[test]
fn nested_subnets_report_every_overlap() {
    let mut s = example();
    s.nodes.clear();
    let mut sub = s.subnets[0].clone();
    sub.dynamic.clear();
    sub.boot = None;
    sub.router = None;
    let mut a = sub.clone();
    a.cidr = "10.20.1.0/24".into();
    let mut b = sub.clone();
    b.cidr = "10.20.2.0/24".into();
    s.subnets.push(a);
    s.subnets.push(b);
    let p = problems(&s);
    assert_eq!(p.len(), 2, "{}", messages(&p));
}

#[test]
fn unknown_fields_rejected_with_path() {
    let mut v: serde_json::Value = serde_json::from_str(EXAMPLE_JSON).unwrap();
    v["subnets"][0]["boot"]["next_sever"] = "10.20.0.2".into();
    let e = Snapshot::from_json(v.to_string().as_bytes()).unwrap_err();
    assert_eq!(e.path, "subnets[0].boot.next_sever");
    assert!(e.to_string().contains("unknown field `next_sever`"), "{e}");
}

/// Option 3 is a list: each router must be a host address inside the subnet, unless the
/// subnet says `router_outside_subnet`; none may be repeated, none may be a non-unicast
/// address even then. A node cannot set option 12 (its hostname is sent), a subnet can.
#[test]
fn routers_lists_outside_routers_and_option_12() {
    let json = |extra: &str| {
        format!(
            r#"{{"generation": 1, "subnets": [{{"cidr": "10.5.0.0/24", {extra}}}],
              "nodes": [{{"id": "n", "hostname": "n", "domain": "lab",
                "interfaces": [{{"mac": "52:54:00:00:00:01", "ipv4": "10.5.0.9"}}],
                "options": [{{"code": 12, "value": "other"}}]}}]}}"#
        )
    };
    let s = Snapshot::from_json(
        json(r#""router": ["10.5.0.1", "10.6.0.1", "10.5.0.1", "10.5.0.255", "224.0.0.1"]"#)
            .as_bytes(),
    )
    .unwrap();
    let text = messages(&problems(&s));
    for want in [
        "subnet 10.5.0.0/24 router[1]: router 10.6.0.1 is not a host address inside 10.5.0.0/24 (set router_outside_subnet",
        "subnet 10.5.0.0/24 router[2]: router 10.5.0.1 is given twice",
        "subnet 10.5.0.0/24 router[3]: router 10.5.0.255 is the network or broadcast address of 10.5.0.0/24",
        "subnet 10.5.0.0/24 router[4]: router 224.0.0.1 is not a unicast address",
        "node \"n\" options[0]: option 12 is the node's hostname",
    ] {
        assert!(text.contains(want), "missing {want:?} in\n{text}");
    }
    assert!(!text.contains("router[0]"), "{text}");
    // Allowed explicitly, and option 12 on the subnet.
    let ok = json(
        r#""router": ["10.6.0.1"], "router_outside_subnet": true,
           "options": [{"code": 12, "value": "guest"}]"#,
    )
    .replace(
        r#""options": [{"code": 12, "value": "other"}]"#,
        r#""options": []"#,
    );
    let t = Table::compile(&Snapshot::from_json(ok.as_bytes()).unwrap(), None).unwrap();
    assert_eq!(t.subnets()[0].routers, vec![Ipv4Addr::new(10, 6, 0, 1)]);
    assert_eq!(&*t.subnets()[0].options[0].data, b"guest");
    // One address keeps its old form, and round-trips as it was written.
    let one = Snapshot::from_json(json(r#""router": "10.5.0.1""#).as_bytes()).unwrap();
    let back = serde_json::to_string(&one).unwrap();
    assert!(back.contains(r#""router":"10.5.0.1""#), "{back}");
    assert!(!back.contains("router_outside_subnet"), "{back}");
}

#[test]
fn ipv6_subnets_compile_their_dhcpv6_settings_and_refuse_ipv4_ones() {
    let json = r#"{"generation": 1, "subnets": [
        {"cidr": "fd00:20::/64", "dns_servers": ["fd00:20::2"], "domain": "maas",
         "lease_seconds": 4000, "preferred_seconds": 3000,
         "dynamic": [{"start": "fd00:20::1000", "end": "fd00:20::1fff"}],
         "options": [{"code": 17, "hex": "0000a0a8"}], "boot": {"chain": "grub"}}],
      "nodes": [{"id": "n1", "hostname": "n1", "domain": "maas",
                 "interfaces": [{"mac": "52:54:00:00:00:01", "ipv6": "fd00:20::10"}]}]}"#;
    let t = Table::compile(&Snapshot::from_json(json.as_bytes()).unwrap(), None).unwrap();
    let s = t.subnet6_for("fd00:20::abcd".parse().unwrap()).unwrap();
    assert_eq!(
        s.dns_servers,
        vec!["fd00:20::2".parse::<Ipv6Addr>().unwrap()]
    );
    assert_eq!(s.domain.as_deref(), Some("maas"));
    // RFC 8415 §21.4: T1 and T2 at 0.5 and 0.8 of the preferred lifetime.
    assert_eq!(
        (
            s.valid_seconds,
            s.preferred_seconds,
            s.renew_seconds,
            s.rebind_seconds
        ),
        (4000, 3000, 1500, 2400)
    );
    assert_eq!(s.dynamic.len(), 1);
    assert_eq!(s.dynamic[0].span(), 0xfff);
    assert_eq!(
        (s.options[0].code, &*s.options[0].data),
        (17, &[0, 0, 0xa0, 0xa8][..])
    );
    assert!(s.boot.is_some());
    assert!(t.subnet6_for("fd00:21::1".parse().unwrap()).is_none());
    assert_eq!(t.subnets_v6(), &[("fd00:20::".parse().unwrap(), 64)]);

    let bad = r#"{"generation": 1, "subnets": [
        {"cidr": "fd00:20::/64", "router": "10.0.0.1", "dns_servers": ["10.0.0.2"],
         "lease_seconds": 100, "preferred_seconds": 200, "proxy_dhcp": true,
         "dynamic": [{"start": "fd00:20::2000", "end": "fd00:20::1000"},
                     {"start": "fd00:21::1", "end": "fd00:21::5"},
                     {"start": "fd00:20::10", "end": "fd00:20::20"}],
         "options": [{"code": 23, "hex": "00"}, {"code": 17, "value": 3}],
         "boot": {"next_server": "10.0.0.3"}},
        {"cidr": "10.0.0.0/24", "dns_servers": ["fd00::1"], "preferred_seconds": 5,
         "dynamic": [{"start": "fd00:20::1", "end": "fd00:20::2"}]}],
      "nodes": [{"id": "n1", "hostname": "n1", "domain": "maas",
                 "interfaces": [{"mac": "52:54:00:00:00:01", "ipv6": "fd00:20::11"}]}]}"#;
    let p = messages(&problems(&Snapshot::from_json(bad.as_bytes()).unwrap()));
    for want in [
        "subnet fd00:20::/64 router: an IPv4 setting on an IPv6 subnet",
        "proxy_dhcp: an IPv4 setting",
        "dns_servers[0]: 10.0.0.2 is not an IPv6 unicast address",
        "preferred lifetime (200) is longer than the valid one",
        "range fd00:20::2000-fd00:20::1000 is reversed",
        "range fd00:21::1-fd00:21::5 is not inside fd00:20::/64",
        "DHCPv6 option 23 is set by pserv itself",
        "DHCPv6 option 17: give its bytes as `hex`",
        "boot.next_server: a BOOTP field",
        "dns_servers[0]: fd00::1 is an IPv6 address on an IPv4 subnet",
        "preferred_seconds: an IPv6 setting on an IPv4 subnet",
        "range fd00:20::1-fd00:20::2 is not inside 10.0.0.0/24",
        "fd00:20::11 is inside dynamic range fd00:20::10-fd00:20::20",
    ] {
        assert!(p.contains(want), "missing {want:?} in:\n{p}");
    }
}
