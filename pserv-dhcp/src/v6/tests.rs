//! Scripted DHCPv6 exchanges on virtual time, named after the RFC 8415 (and 5970, 6939)
//! clauses they follow.

#![allow(clippy::unwrap_used)]

use dhcproto::v6::{Architecture, IATA, ORO};
use proptest::prelude::*;
use pserv_core::lease::LeaseState;
use pserv_core::snapshot::Snapshot;

use super::*;

const SERVER: &str = "2001:db8:1::2";
const SNAP: &str = r#"{"generation": 1, "subnets": [
    {"cidr": "2001:db8:1::/64", "dns_servers": ["2001:db8:1::53"], "domain": "lab",
     "lease_seconds": 4000, "preferred_seconds": 3000, "dynamic_dns": true,
     "dynamic": [{"start": "2001:db8:1::1000", "end": "2001:db8:1::1fff"}],
     "boot": {"chain": "grub"}},
    {"cidr": "2001:db8:2::/64", "unknown_clients": "ignore",
     "dynamic": [{"start": "2001:db8:2::1000", "end": "2001:db8:2::1fff"}]}],
  "boot_profiles": {"install": {"kernel": "vmlinuz", "cmdline": "x"}},
  "nodes": [
    {"id": "n1", "hostname": "node1", "domain": "lab", "boot": {"profile": "install"},
     "interfaces": [{"mac": "52:54:00:00:00:01", "ipv6": "2001:db8:1::11"}]},
    {"id": "n2", "hostname": "node2", "domain": "lab",
     "interfaces": [{"mac": "52:54:00:00:00:02", "ipv6": "2001:db8:2::22"}]}]}"#;

fn table() -> Table {
    Table::compile(&Snapshot::from_json(SNAP.as_bytes()).unwrap(), None).unwrap()
}

fn server() -> Server6 {
    Server6::new(
        Duid::new(&[
            0, 4, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18,
        ])
        .unwrap(),
    )
    .with_boot_chain(Some(BootChain { http_port: 5248 }))
}

fn direct() -> Meta6 {
    Meta6 {
        source: "fe80::1".parse().unwrap(),
        server: Some(SERVER.parse().unwrap()),
        multicast: true,
    }
}

/// A DUID-LL of the MAC 02:00:00:00:00:`n`.
fn duid(n: u8) -> Vec<u8> {
    vec![0, 3, 0, 1, 2, 0, 0, 0, 0, n]
}

/// A client message: its type, a fixed xid, the client's DUID, then `opts`.
fn msg(kind: MessageType, client: &[u8], opts: Vec<DhcpOption>) -> Vec<u8> {
    let mut m = Message::new_with_id(kind, [1, 2, 3]);
    if !client.is_empty() {
        m.opts_mut().insert(DhcpOption::ClientId(client.to_vec()));
    }
    for o in opts {
        m.opts_mut().insert(o);
    }
    m.to_vec().unwrap()
}

fn ia(id: u32, addrs: &[&str]) -> DhcpOption {
    let mut opts = DhcpOptions::new();
    for a in addrs {
        opts.insert(DhcpOption::IAAddr(IAAddr {
            addr: a.parse().unwrap(),
            preferred_life: 0,
            valid_life: 0,
            opts: DhcpOptions::new(),
        }));
    }
    DhcpOption::IANA(IANA {
        id,
        t1: 0,
        t2: 0,
        opts,
    })
}

fn sid(s: &Server6) -> DhcpOption {
    DhcpOption::ServerId(s.duid().as_bytes().to_vec())
}

fn reply(o: Outcome6) -> (Reply6, Message) {
    let Outcome6::Reply(r) = o else {
        panic!("no reply: {o:?}")
    };
    let inner = unwrap_relayed(&r.bytes).unwrap();
    // Every option of what is sent frames (dhcproto's own encoder gets some lengths wrong).
    assert_eq!(wire::check(&inner[4..], 0), Ok(()), "{inner:02x?}");
    let m = decode(inner).unwrap();
    (r, m)
}

/// The (address, preferred, valid) of each IAADDR of the reply's IA_NA `id`, and its status.
fn ia_of(m: &Message, id: u32) -> (Vec<(Ipv6Addr, u32, u32)>, Option<Status>) {
    let ia = m
        .opts()
        .get_all(OptionCode::IANA)
        .unwrap_or(&[])
        .iter()
        .find_map(|o| match o {
            DhcpOption::IANA(ia) if ia.id == id => Some(ia.clone()),
            _ => None,
        })
        .unwrap();
    let addrs = ia
        .opts
        .iter()
        .filter_map(|o| match o {
            DhcpOption::IAAddr(a) => Some((a.addr, a.preferred_life, a.valid_life)),
            _ => None,
        })
        .collect();
    let status = ia.opts.iter().find_map(|o| match o {
        DhcpOption::StatusCode(s) => Some(s.status),
        _ => None,
    });
    (addrs, status)
}

fn status(m: &Message) -> Option<Status> {
    match m.opts().get(OptionCode::StatusCode) {
        Some(DhcpOption::StatusCode(s)) => Some(s.status),
        _ => None,
    }
}

fn raw_option(m: &Message, code: u16) -> Option<Vec<u8>> {
    m.opts().iter().find_map(|o| match o {
        DhcpOption::Unknown(u) if u16::from(u.code()) == code => Some(u.data().to_vec()),
        _ => None,
    })
}

#[test]
fn s18_2_solicit_advertise_request_reply() {
    let (t, s, mut l) = (table(), server(), Leases::new());
    let (r, adv) = reply(s.handle(
        &t,
        &mut l,
        100,
        &direct(),
        &msg(MessageType::Solicit, &duid(9), vec![ia(1, &[])]),
    ));
    assert_eq!(adv.msg_type(), MessageType::Advertise);
    assert_eq!(adv.xid(), [1, 2, 3]);
    assert!(r.changes.is_empty(), "an advertise journals nothing");
    assert!(matches!(
        adv.opts().get(OptionCode::Preference),
        Some(DhcpOption::Preference(255))
    ));
    assert!(
        matches!(adv.opts().get(OptionCode::ServerId), Some(DhcpOption::ServerId(d)) if d == s.duid().as_bytes())
    );
    assert!(
        matches!(adv.opts().get(OptionCode::ClientId), Some(DhcpOption::ClientId(d)) if *d == duid(9))
    );
    let (addrs, st) = ia_of(&adv, 1);
    assert_eq!(st, None);
    let (ip, pref, valid) = addrs[0];
    assert!(t.subnets6()[0].dynamic_range_of(ip).is_some());
    assert_eq!((pref, valid), (3000, 4000));
    // The subnet's DNS servers and domain.
    assert!(
        matches!(adv.opts().get(OptionCode::DomainNameServers), Some(DhcpOption::DomainNameServers(d)) if d[0] == "2001:db8:1::53".parse::<Ipv6Addr>().unwrap())
    );
    assert!(adv.opts().get(OptionCode::DomainSearchList).is_some());

    let req = msg(
        MessageType::Request,
        &duid(9),
        vec![sid(&s), ia(1, &[&ip.to_string()])],
    );
    let (r, rep) = reply(s.handle(&t, &mut l, 101, &direct(), &req));
    assert_eq!(rep.msg_type(), MessageType::Reply);
    assert_eq!(ia_of(&rep, 1).0, vec![(ip, 3000, 4000)]);
    assert!(
        matches!(&r.changes[..], [Change::Bound6 { ip: i, iaid: 1, expires: 4101, .. }] if *i == ip)
    );
    let lease = l.v6().iter().next().unwrap();
    assert_eq!((lease.ip, lease.state), (ip, LeaseState::Bound));
    // T1/T2 from the preferred lifetime (0.5, 0.8).
    match rep.opts().get(OptionCode::IANA) {
        Some(DhcpOption::IANA(ia)) => assert_eq!((ia.t1, ia.t2), (1500, 2400)),
        other => panic!("{other:?}"),
    }
}

#[test]
fn s18_3_4_renew_extends_and_s18_3_5_rebind_refuses_foreign_addresses() {
    let (t, s, mut l) = (table(), server(), Leases::new());
    let (_, adv) = reply(s.handle(
        &t,
        &mut l,
        0,
        &direct(),
        &msg(MessageType::Solicit, &duid(9), vec![ia(1, &[])]),
    ));
    let ip = ia_of(&adv, 1).0[0].0;
    let ips = ip.to_string();
    let _ = s.handle(
        &t,
        &mut l,
        1,
        &direct(),
        &msg(
            MessageType::Request,
            &duid(9),
            vec![sid(&s), ia(1, &[&ips])],
        ),
    );
    let (r, rep) = reply(s.handle(
        &t,
        &mut l,
        2000,
        &direct(),
        &msg(MessageType::Renew, &duid(9), vec![sid(&s), ia(1, &[&ips])]),
    ));
    assert_eq!(ia_of(&rep, 1).0, vec![(ip, 3000, 4000)]);
    assert!(matches!(
        &r.changes[..],
        [Change::Bound6 { expires: 6000, .. }]
    ));
    // A RENEW for an IA the server has no binding of: NoBinding (the client then REQUESTs).
    let (r, rep) = reply(s.handle(
        &t,
        &mut l,
        2001,
        &direct(),
        &msg(MessageType::Renew, &duid(9), vec![sid(&s), ia(7, &[])]),
    ));
    assert_eq!(ia_of(&rep, 7).1, Some(Status::NoBinding));
    assert!(r.changes.is_empty());
    // A REBIND naming another client's address: returned at lifetime 0.
    let (_, rep) = reply(s.handle(
        &t,
        &mut l,
        2002,
        &direct(),
        &msg(MessageType::Rebind, &duid(8), vec![ia(1, &[&ips])]),
    ));
    assert_eq!(ia_of(&rep, 1).0, vec![(ip, 0, 0)]);
    // A REBIND of its own binding, from any server: extended.
    let (r, rep) = reply(s.handle(
        &t,
        &mut l,
        3000,
        &direct(),
        &msg(MessageType::Rebind, &duid(9), vec![ia(1, &[&ips])]),
    ));
    assert_eq!(ia_of(&rep, 1).0, vec![(ip, 3000, 4000)]);
    assert_eq!(r.changes.len(), 1);
}

#[test]
fn s18_3_7_release_and_s18_3_8_decline() {
    let (t, s, mut l) = (table(), server(), Leases::new());
    let (_, adv) = reply(s.handle(
        &t,
        &mut l,
        0,
        &direct(),
        &msg(MessageType::Solicit, &duid(9), vec![ia(1, &[]), ia(2, &[])]),
    ));
    let (a, b) = (
        ia_of(&adv, 1).0[0].0.to_string(),
        ia_of(&adv, 2).0[0].0.to_string(),
    );
    assert_ne!(a, b, "two IAs, two addresses");
    let (r, _) = reply(s.handle(
        &t,
        &mut l,
        1,
        &direct(),
        &msg(
            MessageType::Request,
            &duid(9),
            vec![sid(&s), ia(1, &[&a]), ia(2, &[&b])],
        ),
    ));
    assert_eq!(r.changes.len(), 2);
    let (r, rep) = reply(s.handle(
        &t,
        &mut l,
        2,
        &direct(),
        &msg(
            MessageType::Release,
            &duid(9),
            vec![sid(&s), ia(1, &[&a]), ia(3, &[&a])],
        ),
    ));
    assert_eq!(status(&rep), Some(Status::Success));
    assert!(matches!(
        &r.changes[..],
        [Change::Released6 { iaid: 1, .. }]
    ));
    assert_eq!(ia_of(&rep, 3).1, Some(Status::NoBinding));
    let (r, rep) = reply(s.handle(
        &t,
        &mut l,
        3,
        &direct(),
        &msg(MessageType::Decline, &duid(9), vec![sid(&s), ia(2, &[&b])]),
    ));
    assert_eq!(status(&rep), Some(Status::Success));
    assert!(matches!(&r.changes[..], [Change::Declined6 { until, .. }] if *until == 3 + 86_400));
    // The declined address is not handed out again.
    let (_, adv) = reply(s.handle(
        &t,
        &mut l,
        4,
        &direct(),
        &msg(MessageType::Solicit, &duid(7), vec![ia(1, &[&b])]),
    ));
    let offered = ia_of(&adv, 1).0;
    assert_eq!(offered.len(), 1, "an advertise lists only what it offers");
    assert_ne!(offered[0].0.to_string(), b);
}

#[test]
fn s18_3_1_rapid_commit_replies_at_once() {
    let (t, s, mut l) = (table(), server(), Leases::new());
    let m = msg(
        MessageType::Solicit,
        &duid(9),
        vec![ia(1, &[]), DhcpOption::RapidCommit],
    );
    let (r, rep) = reply(s.handle(&t, &mut l, 0, &direct(), &m));
    assert_eq!(rep.msg_type(), MessageType::Reply);
    assert!(rep.opts().get(OptionCode::RapidCommit).is_some());
    assert_eq!(r.changes.len(), 1);
}

#[test]
fn s18_3_3_confirm_and_s18_3_6_information_request() {
    let (t, s, mut l) = (table(), server(), Leases::new());
    let on = msg(
        MessageType::Confirm,
        &duid(9),
        vec![ia(1, &["2001:db8:1::1234"])],
    );
    assert_eq!(
        status(&reply(s.handle(&t, &mut l, 0, &direct(), &on)).1),
        Some(Status::Success)
    );
    let off = msg(
        MessageType::Confirm,
        &duid(9),
        vec![ia(1, &["2001:db8:9::1"])],
    );
    assert_eq!(
        status(&reply(s.handle(&t, &mut l, 0, &direct(), &off)).1),
        Some(Status::NotOnLink)
    );
    let none = msg(MessageType::Confirm, &duid(9), vec![ia(1, &[])]);
    assert_eq!(
        s.handle(&t, &mut l, 0, &direct(), &none),
        Outcome6::Drop(DropReason6::NothingToConfirm)
    );
    // INFORMATION-REQUEST: configuration only, with or without a client identifier.
    for client in [duid(9), vec![]] {
        let (r, rep) = reply(s.handle(
            &t,
            &mut l,
            0,
            &direct(),
            &msg(MessageType::InformationRequest, &client, vec![]),
        ));
        assert_eq!(rep.msg_type(), MessageType::Reply);
        assert!(rep.opts().get(OptionCode::IANA).is_none() && r.changes.is_empty());
        assert!(rep.opts().get(OptionCode::DomainNameServers).is_some());
    }
}

#[test]
fn s16_server_identifier_and_client_identifier_rules() {
    let (t, s, mut l) = (table(), server(), Leases::new());
    let other = DhcpOption::ServerId(vec![0, 3, 0, 1, 9, 9, 9, 9, 9, 9]);
    for (m, why) in [
        (
            msg(MessageType::Solicit, &duid(9), vec![sid(&s), ia(1, &[])]),
            DropReason6::NotForUs,
        ),
        (
            msg(
                MessageType::Request,
                &duid(9),
                vec![other.clone(), ia(1, &[])],
            ),
            DropReason6::NotForUs,
        ),
        (
            msg(MessageType::Request, &duid(9), vec![ia(1, &[])]),
            DropReason6::NotForUs,
        ),
        (
            msg(MessageType::Renew, &duid(9), vec![ia(1, &[])]),
            DropReason6::NotForUs,
        ),
        (
            msg(MessageType::InformationRequest, &duid(9), vec![other]),
            DropReason6::NotForUs,
        ),
        (
            msg(MessageType::Solicit, &[], vec![ia(1, &[])]),
            DropReason6::NoClientId,
        ),
        (
            msg(MessageType::Solicit, &[0, 1], vec![ia(1, &[])]),
            DropReason6::NoClientId,
        ),
        (
            msg(MessageType::Advertise, &duid(9), vec![]),
            DropReason6::NotAClientRequest,
        ),
        (
            msg(MessageType::Reply, &duid(9), vec![]),
            DropReason6::NotAClientRequest,
        ),
    ] {
        assert_eq!(
            s.handle(&t, &mut l, 0, &direct(), &m),
            Outcome6::Drop(why),
            "{m:?}"
        );
    }
    // A link pserv has no subnet for.
    let elsewhere = Meta6 {
        source: "fe80::1".parse().unwrap(),
        server: Some("2001:db8:99::1".parse().unwrap()),
        multicast: true,
    };
    let m = msg(MessageType::Solicit, &duid(9), vec![ia(1, &[])]);
    assert_eq!(
        s.handle(&t, &mut l, 0, &elsewhere, &m),
        Outcome6::Drop(DropReason6::NoSubnet)
    );
}

/// A RELAY-FORW around `inner`.
fn relay(link: &str, peer: &str, opts: &[(u16, &[u8])], inner: &[u8]) -> Vec<u8> {
    let mut out = vec![12, 0];
    out.extend_from_slice(&link.parse::<Ipv6Addr>().unwrap().octets());
    out.extend_from_slice(&peer.parse::<Ipv6Addr>().unwrap().octets());
    for (c, b) in opts {
        wire::put_option(&mut out, *c, b);
    }
    wire::put_option(&mut out, 9, inner);
    out
}

#[test]
fn s13_1_relayed_requests_pick_the_relays_link_and_nodes_are_found_by_mac() {
    let (t, s, mut l) = (table(), server(), Leases::new());
    let from_relay = Meta6 {
        source: "2001:db8:2::1".parse().unwrap(),
        server: Some(SERVER.parse().unwrap()),
        multicast: true,
    };
    // node2's MAC from the relay's option 79 (its DUID is a DUID-EN, with no MAC in it).
    let en = [0u8, 2, 0, 0, 0, 9, 0xde, 0xad, 0xbe, 0xef];
    let solicit = msg(MessageType::Solicit, &en, vec![ia(5, &[])]);
    let inner = relay(
        "2001:db8:2::1",
        "fe80::9",
        &[(18, b"port7"), (79, &[0, 1, 0x52, 0x54, 0, 0, 0, 2])],
        &solicit,
    );
    let outer = relay("::", "2001:db8:2::1", &[], &inner);
    let (r, adv) = reply(s.handle(&t, &mut l, 0, &from_relay, &outer));
    assert!(r.relayed);
    assert_eq!(
        ia_of(&adv, 5).0[0].0,
        "2001:db8:2::22".parse::<Ipv6Addr>().unwrap()
    );
    // The reply is a RELAY-REPL in a RELAY-REPL, the interface-id echoed in the inner one.
    assert_eq!(r.bytes[0], 13);
    let inner_repl = wire::relay_payload(&r.bytes).unwrap();
    assert_eq!(inner_repl[0], 13);
    assert_eq!(
        &inner_repl[2..18],
        &"2001:db8:2::1".parse::<Ipv6Addr>().unwrap().octets()
    );
    assert!(inner_repl.windows(5).any(|w| w == b"port7"));
    // An unknown client on that subnet (unknown_clients: ignore) gets nothing.
    let stranger = relay(
        "2001:db8:2::1",
        "fe80::9",
        &[],
        &msg(MessageType::Solicit, &duid(9), vec![ia(5, &[])]),
    );
    assert_eq!(
        s.handle(&t, &mut l, 0, &from_relay, &stranger),
        Outcome6::Drop(DropReason6::UnknownClientIgnored)
    );
    // node1 found by the EUI-64 of its link-local address (a DUID-EN again): its reservation.
    let eui = Meta6 {
        source: "fe80::5054:ff:fe00:1".parse().unwrap(),
        server: Some(SERVER.parse().unwrap()),
        multicast: true,
    };
    let (r, rep) = reply(s.handle(
        &t,
        &mut l,
        0,
        &eui,
        &msg(
            MessageType::Solicit,
            &en,
            vec![ia(1, &[]), DhcpOption::RapidCommit],
        ),
    ));
    assert_eq!(
        ia_of(&rep, 1).0[0].0,
        "2001:db8:1::11".parse::<Ipv6Addr>().unwrap()
    );
    assert!(r.changes.is_empty(), "a reservation is not a lease");
}

#[test]
fn rfc5970_boot_file_url_by_client_architecture() {
    let (t, s, mut l) = (table(), server(), Leases::new());
    let node1 = [0u8, 1, 0, 1, 0x2a, 0, 0, 1, 0x52, 0x54, 0, 0, 0, 1];
    let oro = DhcpOption::ORO(ORO {
        opts: vec![OptionCode::from(59u16), OptionCode::from(60u16)],
    });
    // PXE (EFI x86-64, type 7): the grub chain's shim over TFTP.
    let m = msg(
        MessageType::Solicit,
        &node1,
        vec![
            ia(1, &[]),
            oro.clone(),
            DhcpOption::ClientArchType(vec![Architecture::from(7)]),
            DhcpOption::RapidCommit,
        ],
    );
    let (r, rep) = reply(s.handle(&t, &mut l, 0, &direct(), &m));
    let url = String::from_utf8(raw_option(&rep, 59).unwrap()).unwrap();
    assert_eq!(url, format!("tftp://[{SERVER}]/shimx64.efi"));
    let nb = r.netboot.unwrap();
    assert_eq!((nb.node.as_deref(), nb.client), (Some("n1"), "firmware"));
    // HTTP boot (type 16, vendor class HTTPClient): an http URL and the vendor class back.
    // Written by hand: dhcproto 0.15 encodes VENDOR_CLASS with a wrong length.
    let mut body = 343u32.to_be_bytes().to_vec();
    body.extend_from_slice(&21u16.to_be_bytes());
    body.extend_from_slice(b"HTTPClient:Arch:00016");
    let vc = DhcpOption::Unknown(UnknownOption::new(OptionCode::VendorClass, body));
    let m = msg(
        MessageType::Solicit,
        &node1,
        vec![
            ia(1, &[]),
            oro.clone(),
            DhcpOption::ClientArchType(vec![Architecture::from(16)]),
            vc,
        ],
    );
    let (_, adv) = reply(s.handle(&t, &mut l, 0, &direct(), &m));
    let url = String::from_utf8(raw_option(&adv, 59).unwrap()).unwrap();
    assert_eq!(url, format!("http://[{SERVER}]:5248/shimx64.efi"));
    assert!(
        matches!(adv.opts().get(OptionCode::VendorClass), Some(DhcpOption::VendorClass(v)) if v.num == 343 && v.data == vec![b"HTTPClient".to_vec()])
    );
    // A client that asks for no boot file gets none; IA_TA and IA_PD get their status.
    let m = msg(
        MessageType::Solicit,
        &duid(9),
        vec![
            ia(1, &[]),
            DhcpOption::IATA(IATA {
                id: 3,
                opts: DhcpOptions::new(),
            }),
        ],
    );
    let (_, adv) = reply(s.handle(&t, &mut l, 0, &direct(), &m));
    assert!(raw_option(&adv, 59).is_none());
    assert!(matches!(adv.opts().get(OptionCode::IATA), Some(DhcpOption::IATA(ta)) if ta.id == 3));
    // Nor does one asking for option 59 without naming its architecture (GRUB's own DHCPv6,
    // once it runs): there is no legacy architecture to assume.
    let m = msg(MessageType::Solicit, &node1, vec![ia(1, &[]), oro]);
    let (r, adv) = reply(s.handle(&t, &mut l, 0, &direct(), &m));
    assert!(raw_option(&adv, 59).is_none());
    assert!(r.netboot.is_none());
}

#[test]
fn a_full_pool_advertises_no_addrs_avail() {
    let snap = SNAP.replace(
        r#""start": "2001:db8:1::1000", "end": "2001:db8:1::1fff""#,
        r#""start": "2001:db8:1::1000", "end": "2001:db8:1::1000""#,
    );
    let t = Table::compile(&Snapshot::from_json(snap.as_bytes()).unwrap(), None).unwrap();
    let (s, mut l) = (server(), Leases::new());
    let _ = reply(s.handle(
        &t,
        &mut l,
        0,
        &direct(),
        &msg(
            MessageType::Solicit,
            &duid(1),
            vec![ia(1, &[]), DhcpOption::RapidCommit],
        ),
    ));
    let (_, adv) = reply(s.handle(
        &t,
        &mut l,
        0,
        &direct(),
        &msg(MessageType::Solicit, &duid(2), vec![ia(1, &[])]),
    ));
    assert_eq!(status(&adv), Some(Status::NoAddrsAvail));
    assert_eq!(ia_of(&adv, 1).1, Some(Status::NoAddrsAvail));
}

proptest! {
    /// Any datagram: a reply or a counted drop, never a panic.
    #[test]
    fn any_datagram_is_answered_or_dropped(data in proptest::collection::vec(any::<u8>(), 0..300), kind in 0u8..16) {
        let (t, s, mut l) = (table(), server(), Leases::new());
        let mut data = data;
        if let Some(first) = data.first_mut() {
            *first = kind;
        }
        let _ = s.handle(&t, &mut l, 0, &direct(), &data);
    }
}

#[test]
fn vendor_options_are_not_decoded_as_options() {
    // The fuzzer's find: VENDOR_OPTS holding what dhcproto would read as a VENDOR_CLASS of
    // length 0 (its debug build panics on it).
    let (t, s, mut l) = (table(), server(), Leases::new());
    let mut vendor = vec![0, 0, 0, 9];
    wire::put_option(&mut vendor, 16, &[]);
    let mut m = msg(MessageType::Solicit, &duid(9), vec![ia(1, &[])]);
    wire::put_option(&mut m, 17, &vendor);
    let (_, adv) = reply(s.handle(&t, &mut l, 0, &direct(), &m));
    assert_eq!(adv.msg_type(), MessageType::Advertise);
    // Inside an IA, vendor options are refused outright.
    let mut inner = [0u8; 12].to_vec();
    wire::put_option(&mut inner, 17, &vendor);
    let mut m = msg(MessageType::Solicit, &duid(9), vec![]);
    wire::put_option(&mut m, 3, &inner);
    assert_eq!(
        s.handle(&t, &mut l, 0, &direct(), &m),
        Outcome6::Drop(DropReason6::BadOptionLength)
    );
}

#[test]
fn s16_unicast_rules_s18_3_2_not_on_link_and_bounded_ias() {
    let (t, s, mut l) = (table(), server(), Leases::new());
    let unicast = Meta6 {
        multicast: false,
        ..direct()
    };
    // SOLICIT, REBIND, CONFIRM, INFORMATION-REQUEST by unicast from a direct client: discarded.
    for kind in [
        MessageType::Solicit,
        MessageType::Rebind,
        MessageType::InformationRequest,
    ] {
        let m = msg(
            kind,
            &duid(9),
            if kind == MessageType::InformationRequest {
                vec![]
            } else {
                vec![ia(1, &[])]
            },
        );
        assert_eq!(
            s.handle(&t, &mut l, 0, &unicast, &m),
            Outcome6::Drop(DropReason6::Unicast),
            "{kind:?}"
        );
    }
    // A REQUEST by unicast: UseMulticast, nothing assigned.
    let m = msg(MessageType::Request, &duid(9), vec![sid(&s), ia(1, &[])]);
    let (r, rep) = reply(s.handle(&t, &mut l, 0, &unicast, &m));
    assert_eq!(status(&rep), Some(Status::UseMulticast));
    assert!(r.changes.is_empty());
    // An INFORMATION-REQUEST with an IA: discarded (§16.12).
    let m = msg(MessageType::InformationRequest, &duid(9), vec![ia(1, &[])]);
    assert_eq!(
        s.handle(&t, &mut l, 0, &direct(), &m),
        Outcome6::Drop(DropReason6::Unicast)
    );
    // A REQUEST for an address of another link: NotOnLink in the IA.
    let m = msg(
        MessageType::Request,
        &duid(9),
        vec![sid(&s), ia(1, &["2001:db8:9::1"])],
    );
    let (r, rep) = reply(s.handle(&t, &mut l, 0, &direct(), &m));
    assert_eq!(ia_of(&rep, 1).1, Some(Status::NotOnLink));
    assert!(r.changes.is_empty());
    // Twenty IAs in one SOLICIT: eight get addresses, the rest NoAddrsAvail.
    let many: Vec<DhcpOption> = (0..20).map(|i| ia(i, &[])).collect();
    let (_, adv) = reply(s.handle(
        &t,
        &mut l,
        0,
        &direct(),
        &msg(MessageType::Solicit, &duid(5), many),
    ));
    let given = (0..20).filter(|i| !ia_of(&adv, *i).0.is_empty()).count();
    assert_eq!(given, MAX_IAS);
    let refused = (0..20)
        .filter(|i| ia_of(&adv, *i).1 == Some(Status::NoAddrsAvail))
        .count();
    assert_eq!(refused, 20 - MAX_IAS);
    // A REQUEST keeps the IA's binding whatever address it names in the pool.
    let (_, rep) = reply(s.handle(
        &t,
        &mut l,
        1,
        &direct(),
        &msg(
            MessageType::Solicit,
            &duid(6),
            vec![ia(1, &[]), DhcpOption::RapidCommit],
        ),
    ));
    let bound = ia_of(&rep, 1).0[0].0;
    let m = msg(
        MessageType::Request,
        &duid(6),
        vec![sid(&s), ia(1, &["2001:db8:1::1abc"])],
    );
    let (_, rep) = reply(s.handle(&t, &mut l, 2, &direct(), &m));
    assert_eq!(ia_of(&rep, 1).0[0].0, bound);
}

#[test]
fn rfc6221_a_lightweight_relay_leaves_the_link_to_the_next_relay_out() {
    let (t, s, mut l) = (table(), server(), Leases::new());
    let meta = Meta6 {
        source: "2001:db8:1::1".parse().unwrap(),
        server: Some(SERVER.parse().unwrap()),
        multicast: false,
    };
    let solicit = msg(MessageType::Solicit, &duid(9), vec![ia(1, &[])]);
    let ldra = relay("::", "fe80::9", &[(18, b"ldra")], &solicit);
    let outer = relay("2001:db8:1::1", "fe80::1", &[], &ldra);
    let (r, adv) = reply(s.handle(&t, &mut l, 0, &meta, &outer));
    assert!(r.relayed);
    assert!(t.subnets6()[0].contains(ia_of(&adv, 1).0[0].0));
}
