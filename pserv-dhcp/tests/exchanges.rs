//! Scripted DHCP conversations on virtual time, against the bundled example snapshot.

#![allow(clippy::unwrap_used)]

use std::net::Ipv4Addr;

use dhcproto::v4::{
    self, Architecture, DhcpOption, Flags, Message, MessageType, Opcode, OptionCode,
    relay::{RelayAgentInformation, RelayInfo},
};
use dhcproto::{Decodable, Encodable};
use proptest::prelude::*;
use pserv_core::lease::Change;
use pserv_core::snapshot::{EXAMPLE_JSON, Snapshot};
use pserv_core::{MacAddr, Table};
use pserv_dhcp::server::decode;
use pserv_dhcp::{Destination, DropReason, Meta, Outcome, Reply, Standalone};
use pserv_tests::dhcp::Packet;

const T0: u64 = 1_800_000_000;
const SERVER: Ipv4Addr = Ipv4Addr::new(10, 20, 0, 2);
const META: Meta = Meta {
    local: SERVER,
    ifindex: 2,
};
const AAA: &str = "52:54:00:12:34:56"; // reserved 10.20.0.10, default boot
const BBB: &str = "52:54:00:12:34:60"; // reserved 10.20.0.11, own x86_64-uefi file
const CCC: &str = "52:54:00:12:34:70"; // known, no reservation
const STRANGER: &str = "02:aa:bb:cc:dd:ee";

fn table_from(json: &str) -> Table {
    Table::compile(&Snapshot::from_json(json.as_bytes()).unwrap(), None).unwrap()
}

fn example() -> Table {
    table_from(EXAMPLE_JSON)
}

fn mac(s: &str) -> MacAddr {
    s.parse().unwrap()
}

/// A client message.
fn client(kind: MessageType, m: &str, opts: Vec<DhcpOption>) -> Message {
    Packet::new(kind, mac(m).0)
        .xid(0x1234_5678)
        .options(opts)
        .message()
}

fn send(s: &mut Standalone, t: &Table, now: u64, msg: &Message) -> Outcome {
    s.handle(t, now, &META, &msg.to_vec().unwrap())
}

fn reply(o: Outcome) -> (Reply, Message) {
    match o {
        Outcome::Reply(r) => {
            let m = decode(&r.bytes).expect("the reply decodes");
            (r, m)
        }
        other => panic!("expected a reply, got {other:?}"),
    }
}

fn opt(m: &Message, code: OptionCode) -> Option<&DhcpOption> {
    m.opts().get(code)
}

/// DISCOVER, then REQUEST (selecting) of the offered address.
fn dora(
    s: &mut Standalone,
    t: &Table,
    now: u64,
    m: &str,
    extra: Vec<DhcpOption>,
) -> (Reply, Message) {
    let (offer, om) = reply(send(
        s,
        t,
        now,
        &client(MessageType::Discover, m, extra.clone()),
    ));
    assert_eq!(offer.kind, MessageType::Offer);
    let mut opts = extra;
    opts.push(DhcpOption::RequestedIpAddress(om.yiaddr()));
    opts.push(DhcpOption::ServerIdentifier(SERVER));
    reply(send(s, t, now, &client(MessageType::Request, m, opts)))
}

#[test]
fn reserved_node_gets_its_reservation_and_every_option() {
    let t = example();
    let mut s = Standalone::default();
    let (ack, m) = dora(&mut s, &t, T0, AAA, vec![]);
    assert_eq!(ack.kind, MessageType::Ack);
    assert_eq!(ack.change, None, "a reservation needs no journal");
    assert_eq!(m.yiaddr(), Ipv4Addr::new(10, 20, 0, 10));
    assert_eq!(m.opcode(), Opcode::BootReply);
    assert_eq!(m.xid(), 0x1234_5678);
    assert_eq!(
        opt(&m, OptionCode::ServerIdentifier),
        Some(&DhcpOption::ServerIdentifier(SERVER))
    );
    assert_eq!(
        opt(&m, OptionCode::SubnetMask),
        Some(&DhcpOption::SubnetMask(Ipv4Addr::new(255, 255, 0, 0)))
    );
    assert_eq!(
        opt(&m, OptionCode::Router),
        Some(&DhcpOption::Router(vec![Ipv4Addr::new(10, 20, 0, 1)]))
    );
    assert_eq!(
        opt(&m, OptionCode::DomainNameServer),
        Some(&DhcpOption::DomainNameServer(vec![Ipv4Addr::new(
            10, 20, 0, 2
        )]))
    );
    assert_eq!(
        opt(&m, OptionCode::DomainName),
        Some(&DhcpOption::DomainName("maas".into()))
    );
    assert_eq!(
        opt(&m, OptionCode::Hostname),
        Some(&DhcpOption::Hostname("aaa".into()))
    );
    assert_eq!(
        opt(&m, OptionCode::AddressLeaseTime),
        Some(&DhcpOption::AddressLeaseTime(3600))
    );
    assert_eq!(
        opt(&m, OptionCode::Renewal),
        Some(&DhcpOption::Renewal(1800))
    );
    assert_eq!(
        opt(&m, OptionCode::Rebinding),
        Some(&DhcpOption::Rebinding(3150))
    );
    // Subnet options from the snapshot (42 NTP, 26 MTU, 224 raw).
    let raw = m.to_vec().unwrap();
    assert!(
        raw.windows(6).any(|w| w == [42, 4, 10, 20, 0, 2]),
        "option 42"
    );
    assert!(
        raw.windows(4).any(|w| w == [26, 2, 0x23, 0x28]),
        "option 26 = 9000"
    );
    assert!(
        raw.windows(6).any(|w| w == [224, 4, 1, 2, 3, 4]),
        "option 224"
    );
    assert!(ack.bytes.len() >= 300, "BOOTP minimum size");
    // No broadcast flag, no ciaddr, no relay: to the client's hardware address.
    assert_eq!(
        ack.dest,
        Destination::Hardware {
            yiaddr: Ipv4Addr::new(10, 20, 0, 10),
            chaddr: mac(AAA).0
        }
    );
}

#[test]
fn node_options_win_over_the_subnets() {
    let t = example();
    let mut s = Standalone::default();
    let (_, m) = dora(&mut s, &t, T0, BBB, vec![]);
    let raw = m.to_vec().unwrap();
    assert!(
        raw.windows(4).any(|w| w == [26, 2, 0x05, 0xdc]),
        "bbb's MTU 1500 wins"
    );
}

#[test]
fn unknown_client_gets_a_durable_dynamic_lease_renews_and_releases() {
    let t = example();
    let mut s = Standalone::default();
    let (ack, m) = dora(
        &mut s,
        &t,
        T0,
        STRANGER,
        vec![DhcpOption::Hostname("Laptop".into())],
    );
    let ip = m.yiaddr();
    assert!(t.subnets()[0].dynamic_range_of(ip).is_some());
    assert!(
        matches!(&ack.change, Some(Change::Bound { ip: i, hostname: Some(h), .. }) if *i == ip && &**h == "laptop")
    );
    assert_eq!(
        opt(&m, OptionCode::Hostname),
        None,
        "an unknown client gets no name from us"
    );
    // RENEWING: unicast with ciaddr; the lease is extended (a new durable change).
    let mut renew = client(MessageType::Request, STRANGER, vec![]);
    renew.set_ciaddr(ip);
    let (r, m2) = reply(send(&mut s, &t, T0 + 1800, &renew));
    assert_eq!(r.kind, MessageType::Ack);
    assert_eq!(m2.yiaddr(), ip);
    assert_eq!(r.dest, Destination::Unicast(ip));
    assert!(matches!(r.change, Some(Change::Bound { expires, .. }) if expires == T0 + 1800 + 3600));
    // RELEASE: a change to journal, no reply.
    let mut release = client(
        MessageType::Release,
        STRANGER,
        vec![DhcpOption::ServerIdentifier(SERVER)],
    );
    release.set_ciaddr(ip);
    assert_eq!(
        send(&mut s, &t, T0 + 1900, &release),
        Outcome::Change(Change::Released {
            mac: mac(STRANGER),
            client_id: None,
            ip
        })
    );
    assert_eq!(
        send(&mut s, &t, T0 + 1901, &release),
        Outcome::Drop(DropReason::NoSuchLease)
    );
}

#[test]
fn init_reboot_and_rebinding() {
    let t = example();
    let mut s = Standalone::default();
    let (_, m) = dora(&mut s, &t, T0, STRANGER, vec![]);
    let ip = m.yiaddr();
    // INIT-REBOOT with the right address: ACK; with a foreign one: NAK, broadcast.
    let ok = client(
        MessageType::Request,
        STRANGER,
        vec![DhcpOption::RequestedIpAddress(ip)],
    );
    assert_eq!(
        reply(send(&mut s, &t, T0 + 10, &ok)).0.kind,
        MessageType::Ack
    );
    let wrong = client(
        MessageType::Request,
        STRANGER,
        vec![DhcpOption::RequestedIpAddress(Ipv4Addr::new(
            192, 168, 1, 5,
        ))],
    );
    let (nak, nm) = reply(send(&mut s, &t, T0 + 11, &wrong));
    assert_eq!(nak.kind, MessageType::Nak);
    assert_eq!(nak.dest, Destination::Broadcast);
    assert_eq!(nm.yiaddr(), Ipv4Addr::UNSPECIFIED);
    // REBINDING (broadcast, ciaddr set, no server id): ACK.
    let mut rebind = client(MessageType::Request, STRANGER, vec![]);
    rebind
        .set_ciaddr(ip)
        .set_flags(Flags::default().set_broadcast());
    assert_eq!(
        reply(send(&mut s, &t, T0 + 3200, &rebind)).0.kind,
        MessageType::Ack
    );
}

#[test]
fn request_for_another_server_is_not_ours() {
    let t = example();
    let mut s = Standalone::default();
    let (_, om) = reply(send(
        &mut s,
        &t,
        T0,
        &client(MessageType::Discover, STRANGER, vec![]),
    ));
    let other = client(
        MessageType::Request,
        STRANGER,
        vec![
            DhcpOption::RequestedIpAddress(om.yiaddr()),
            DhcpOption::ServerIdentifier(Ipv4Addr::new(10, 20, 0, 3)),
        ],
    );
    assert_eq!(
        send(&mut s, &t, T0, &other),
        Outcome::Drop(DropReason::NotForUs)
    );
}

#[test]
fn edits_take_effect_at_the_next_exchange() {
    let t1 = example();
    let mut s = Standalone::default();
    let _ = dora(&mut s, &t1, T0, AAA, vec![]);
    // Generation 2: aaa is renamed zzz and its reservation moves to .50.
    let t2 = table_from(
        &EXAMPLE_JSON
            .replace("\"hostname\": \"aaa\"", "\"hostname\": \"zzz\"")
            .replace("10.20.0.10", "10.20.0.50"),
    );
    let mut renew = client(MessageType::Request, AAA, vec![]);
    renew.set_ciaddr(Ipv4Addr::new(10, 20, 0, 10));
    let (nak, _) = reply(send(&mut s, &t2, T0 + 1800, &renew));
    assert_eq!(
        nak.kind,
        MessageType::Nak,
        "a renewing client whose reservation moved is NAKed"
    );
    let (ack, m) = dora(&mut s, &t2, T0 + 1801, AAA, vec![]);
    assert_eq!(ack.kind, MessageType::Ack);
    assert_eq!(m.yiaddr(), Ipv4Addr::new(10, 20, 0, 50));
    assert_eq!(
        opt(&m, OptionCode::Hostname),
        Some(&DhcpOption::Hostname("zzz".into()))
    );
}

#[test]
fn unknown_clients_policy_and_known_nodes_without_reservation() {
    let ignore = table_from(&EXAMPLE_JSON.replace(
        "\"unknown_clients\": \"serve\"",
        "\"unknown_clients\": \"ignore\"",
    ));
    let mut s = Standalone::default();
    let d = client(MessageType::Discover, STRANGER, vec![]);
    assert_eq!(
        send(&mut s, &ignore, T0, &d),
        Outcome::Drop(DropReason::UnknownClientIgnored)
    );
    // ccc is known without a reservation: a dynamic lease, with its node name, even here.
    let (ack, m) = dora(&mut s, &ignore, T0, CCC, vec![]);
    assert!(matches!(&ack.change, Some(Change::Bound { hostname: Some(h), .. }) if &**h == "ccc"));
    assert!(ignore.subnets()[0].dynamic_range_of(m.yiaddr()).is_some());
    assert_eq!(
        opt(&m, OptionCode::Hostname),
        Some(&DhcpOption::Hostname("ccc".into()))
    );
    // A node removed from the snapshot is no longer served (on an ignoring subnet).
    let removed = table_from(
        &EXAMPLE_JSON
            .replace(
                "\"unknown_clients\": \"serve\"",
                "\"unknown_clients\": \"ignore\"",
            )
            .replace("52:54:00:12:34:70", "52:54:00:12:34:71"),
    );
    let d = client(MessageType::Discover, CCC, vec![]);
    assert_eq!(
        send(&mut s, &removed, T0 + 5, &d),
        Outcome::Drop(DropReason::UnknownClientIgnored)
    );
}

#[test]
fn reservation_over_a_live_dynamic_lease() {
    let t1 = example();
    let mut s = Standalone::default();
    let (_, m) = dora(&mut s, &t1, T0, STRANGER, vec![]);
    let held = m.yiaddr();
    // Generation 2 reserves the stranger's address for aaa (and shrinks the pool around it).
    let t2 = table_from(
        &EXAMPLE_JSON
            .replace("10.20.0.10", &held.to_string())
            .replace("\"start\": \"10.20.200.1\"", "\"start\": \"10.20.200.100\""),
    );
    // aaa does not get the held address: a dynamic one until the lease ends.
    let (ack, am) = dora(&mut s, &t2, T0 + 10, AAA, vec![]);
    assert_ne!(am.yiaddr(), held);
    assert!(
        ack.change.is_some(),
        "a dynamic lease for the reserved node meanwhile"
    );
    // The old holder is NAKed at its next renewal.
    let mut renew = client(MessageType::Request, STRANGER, vec![]);
    renew.set_ciaddr(held);
    assert_eq!(
        reply(send(&mut s, &t2, T0 + 1800, &renew)).0.kind,
        MessageType::Nak
    );
    // After the old lease has ended, aaa gets its reservation.
    let (_, am) = dora(&mut s, &t2, T0 + 3601, AAA, vec![]);
    assert_eq!(am.yiaddr(), held);
}

#[test]
fn decline_quarantines_and_inform_answers_without_a_lease() {
    let t = example();
    let mut s = Standalone::default();
    let (_, m) = dora(&mut s, &t, T0, STRANGER, vec![]);
    let bad = m.yiaddr();
    let decline = client(
        MessageType::Decline,
        STRANGER,
        vec![
            DhcpOption::RequestedIpAddress(bad),
            DhcpOption::ServerIdentifier(SERVER),
        ],
    );
    assert_eq!(
        send(&mut s, &t, T0 + 1, &decline),
        Outcome::Change(Change::Declined {
            mac: mac(STRANGER),
            client_id: None,
            ip: bad,
            until: T0 + 1 + 86400
        })
    );
    let (_, m2) = dora(&mut s, &t, T0 + 2, STRANGER, vec![]);
    assert_ne!(
        m2.yiaddr(),
        bad,
        "a declined address is not handed out again"
    );

    let mut inform = client(MessageType::Inform, AAA, vec![]);
    inform.set_ciaddr(Ipv4Addr::new(10, 20, 0, 10));
    let (r, m) = reply(send(&mut s, &t, T0 + 3, &inform));
    assert_eq!(r.kind, MessageType::Ack);
    assert_eq!(m.yiaddr(), Ipv4Addr::UNSPECIFIED);
    assert_eq!(opt(&m, OptionCode::AddressLeaseTime), None);
    assert!(opt(&m, OptionCode::DomainNameServer).is_some());
    assert_eq!(r.dest, Destination::Unicast(Ipv4Addr::new(10, 20, 0, 10)));
}

fn boot(m: &Message) -> (Option<String>, Ipv4Addr) {
    let f = m
        .fname()
        .map(|f| String::from_utf8_lossy(f).trim_end_matches('\0').to_owned())
        .filter(|f| !f.is_empty());
    (f, m.siaddr())
}

#[test]
fn pxe_boot_file_by_architecture_ipxe_and_node_override() {
    let t = example();
    let mut s = Standalone::default();
    let arch = |a: u16| DhcpOption::ClientSystemArchitecture(Architecture::from(a));
    let next = Ipv4Addr::new(10, 20, 0, 2);
    let offer = |s: &mut Standalone, m: &str, opts: Vec<DhcpOption>| {
        reply(send(s, &t, T0, &client(MessageType::Discover, m, opts))).1
    };
    let m = offer(&mut s, AAA, vec![]);
    assert_eq!(
        boot(&m),
        (Some("lpxelinux.0".into()), next),
        "no option 93: BIOS"
    );
    assert_eq!(
        m.sname()
            .map(|n| String::from_utf8_lossy(n).trim_end_matches('\0').to_owned())
            .as_deref(),
        Some("rack1")
    );
    assert_eq!(
        opt(&m, OptionCode::TFTPServerName),
        Some(&DhcpOption::TFTPServerName(b"10.20.0.2".to_vec()))
    );
    assert_eq!(
        opt(&m, OptionCode::BootfileName),
        Some(&DhcpOption::BootfileName(b"lpxelinux.0".to_vec()))
    );
    assert_eq!(
        boot(&offer(&mut s, AAA, vec![arch(7)])).0.as_deref(),
        Some("bootx64.efi")
    );
    assert_eq!(
        boot(&offer(&mut s, AAA, vec![arch(9)])).0.as_deref(),
        Some("bootx64.efi")
    );
    assert_eq!(
        boot(&offer(&mut s, AAA, vec![arch(11)])).0.as_deref(),
        Some("grubaa64.efi")
    );
    // No file configured for ia32: no boot file, but siaddr is still the configured next
    // bootstrap server (RFC 2131 Table 3).
    assert_eq!(
        boot(&offer(&mut s, AAA, vec![arch(6)])),
        (None, Ipv4Addr::new(10, 20, 0, 2))
    );
    // HTTP boot: the URL and option 60 "HTTPClient".
    let m = offer(&mut s, AAA, vec![arch(16)]);
    assert_eq!(
        boot(&m).0.as_deref(),
        Some("http://10.20.0.2:5248/bootx64.efi")
    );
    assert_eq!(
        opt(&m, OptionCode::ClassIdentifier),
        Some(&DhcpOption::ClassIdentifier(b"HTTPClient".to_vec()))
    );
    // iPXE (user class), or option 175: the script URL.
    let m = offer(
        &mut s,
        AAA,
        vec![arch(7), DhcpOption::UserClass(b"iPXE".to_vec())],
    );
    assert_eq!(
        boot(&m).0.as_deref(),
        Some("http://10.20.0.2:5248/ipxe.cfg")
    );
    let m = offer(
        &mut s,
        AAA,
        vec![
            arch(7),
            DhcpOption::Unknown(v4::UnknownOption::new(OptionCode::from(175), vec![1, 1, 1])),
        ],
    );
    assert_eq!(
        boot(&m).0.as_deref(),
        Some("http://10.20.0.2:5248/ipxe.cfg")
    );
    // bbb's own UEFI file overrides the subnet's; its BIOS file is the subnet's.
    assert_eq!(
        boot(&offer(&mut s, BBB, vec![arch(7)])).0.as_deref(),
        Some("custom/bootx64.efi")
    );
    assert_eq!(
        boot(&offer(&mut s, BBB, vec![arch(0)])).0.as_deref(),
        Some("lpxelinux.0")
    );
}

#[test]
fn relayed_requests() {
    // Two subnets: the relay's giaddr (or link selection) picks the second one.
    let json = EXAMPLE_JSON.replace(
        "{ \"cidr\": \"fd00:20::/64\", \"domain\": \"maas\" }",
        "{ \"cidr\": \"fd00:20::/64\", \"domain\": \"maas\" }, { \"cidr\": \"10.30.0.0/24\", \"router\": \"10.30.0.1\", \"dynamic\": [ { \"start\": \"10.30.0.100\", \"end\": \"10.30.0.110\" } ] }",
    );
    let t = table_from(&json);
    let mut s = Standalone::default();
    let relay = Ipv4Addr::new(10, 30, 0, 1);
    let mut rai = RelayAgentInformation::default();
    rai.insert(RelayInfo::AgentCircuitId(b"port-7".to_vec()));
    let mut d = client(
        MessageType::Discover,
        STRANGER,
        vec![DhcpOption::RelayAgentInformation(rai.clone())],
    );
    d.set_giaddr(relay).set_hops(1);
    let (r, m) = reply(send(&mut s, &t, T0, &d));
    assert_eq!(r.dest, Destination::Relay(relay));
    assert_eq!(m.giaddr(), relay);
    assert!(
        Ipv4Addr::new(10, 30, 0, 100) <= m.yiaddr() && m.yiaddr() <= Ipv4Addr::new(10, 30, 0, 110)
    );
    assert_eq!(
        opt(&m, OptionCode::RelayAgentInformation),
        Some(&DhcpOption::RelayAgentInformation(rai))
    );
    // Link selection (RFC 3527) overrides giaddr: the relay sits in 10.30 but serves 10.20.
    let mut rai = RelayAgentInformation::default();
    rai.insert(RelayInfo::LinkSelection(Ipv4Addr::new(10, 20, 0, 1)));
    let mut d = client(
        MessageType::Discover,
        "02:00:00:00:00:42",
        vec![DhcpOption::RelayAgentInformation(rai)],
    );
    d.set_giaddr(relay);
    let (_, m) = reply(send(&mut s, &t, T0, &d));
    assert!(t.subnets()[0].contains(m.yiaddr()), "{}", m.yiaddr());
    // Subnet selection (RFC 3011).
    let d = client(
        MessageType::Discover,
        "02:00:00:00:00:43",
        vec![DhcpOption::SubnetSelection(Ipv4Addr::new(10, 30, 0, 0))],
    );
    let (_, m) = reply(send(&mut s, &t, T0, &d));
    assert!(t.subnets()[1].contains(m.yiaddr()), "{}", m.yiaddr());
    // A NAK through a relay asks it to broadcast.
    let mut r = client(
        MessageType::Request,
        STRANGER,
        vec![DhcpOption::RequestedIpAddress(Ipv4Addr::new(10, 99, 0, 1))],
    );
    r.set_giaddr(relay);
    let (nak, nm) = reply(send(&mut s, &t, T0, &r));
    assert_eq!(
        (nak.kind, nak.dest),
        (MessageType::Nak, Destination::Relay(relay))
    );
    assert!(nm.flags().broadcast());
}

#[test]
fn broadcast_flag_and_no_subnet() {
    let t = example();
    let mut s = Standalone::default();
    let mut d = client(MessageType::Discover, AAA, vec![]);
    d.set_flags(Flags::default().set_broadcast());
    assert_eq!(
        reply(send(&mut s, &t, T0, &d)).0.dest,
        Destination::Broadcast
    );
    let elsewhere = Meta {
        local: Ipv4Addr::new(192, 168, 9, 1),
        ifindex: 3,
    };
    assert_eq!(
        s.handle(&t, T0, &elsewhere, &d.to_vec().unwrap()),
        Outcome::Drop(DropReason::NoSubnet)
    );
}

#[test]
fn pool_exhaustion_never_takes_reservations_down() {
    let t = table_from(&EXAMPLE_JSON.replace("10.20.203.254", "10.20.200.3"));
    let mut s = Standalone::default();
    for n in 0..3u8 {
        let _ = dora(&mut s, &t, T0, &format!("02:00:00:00:01:{n:02x}"), vec![]);
    }
    let d = client(MessageType::Discover, "02:00:00:00:02:00", vec![]);
    assert_eq!(
        send(&mut s, &t, T0, &d),
        Outcome::Drop(DropReason::PoolExhausted)
    );
    let (ack, m) = dora(&mut s, &t, T0, AAA, vec![]);
    assert_eq!(
        (ack.kind, m.yiaddr()),
        (MessageType::Ack, Ipv4Addr::new(10, 20, 0, 10))
    );
}

#[test]
fn not_client_requests_are_dropped() {
    let t = example();
    let mut s = Standalone::default();
    let mut m = client(MessageType::Discover, AAA, vec![]);
    m.set_opcode(Opcode::BootReply);
    assert_eq!(
        send(&mut s, &t, T0, &m),
        Outcome::Drop(DropReason::NotAClientRequest)
    );
    let mut m = client(MessageType::Discover, AAA, vec![]);
    m.opts_mut().remove(OptionCode::MessageType);
    assert_eq!(
        send(&mut s, &t, T0, &m),
        Outcome::Drop(DropReason::UnsupportedMessageType)
    );
    let offer = client(MessageType::Offer, AAA, vec![]);
    assert_eq!(
        send(&mut s, &t, T0, &offer),
        Outcome::Drop(DropReason::UnsupportedMessageType)
    );
    assert_eq!(
        s.handle(&t, T0, &META, &[1, 2, 3]),
        Outcome::Drop(DropReason::Malformed)
    );
    // The dhcproto regression: option 94 with two bytes is refused before decoding.
    let mut raw = client(MessageType::Discover, AAA, vec![]).to_vec().unwrap();
    let end = raw.iter().rposition(|b| *b == 255).unwrap();
    raw.splice(end..end, [94, 2, 1, 2]);
    assert_eq!(
        s.handle(&t, T0, &META, &raw),
        Outcome::Drop(DropReason::BadOptionLength)
    );
}

proptest! {
    /// Any datagram: never a panic; any reply decodes, carries the request's xid and chaddr,
    /// and offers only an address of the subnet that no other client holds.
    #[test]
    fn arbitrary_packets(noise in prop::collection::vec(any::<u8>(), 0..400), flip in 0usize..400, kind in 1u8..9) {
        let t = example();
        let mut s = Standalone::default();
        // Start from a valid request so the fuzzing reaches past the header checks.
        let mut base = client(MessageType::from(kind), STRANGER, vec![]).to_vec().unwrap();
        base.extend_from_slice(&noise);
        if flip < base.len() { base[flip] ^= 0x5a; }
        if let Outcome::Reply(r) = s.handle(&t, T0, &META, &base) {
            let m = decode(&r.bytes).expect("reply decodes");
            let req = Message::from_bytes(&base).unwrap();
            prop_assert_eq!(m.xid(), req.xid());
            prop_assert_eq!(m.chaddr(), req.chaddr());
            let y = m.yiaddr();
            if !y.is_unspecified() {
                prop_assert!(t.subnets().iter().any(|s| s.is_host(y)));
                let mut c = [0u8; 6];
                c.copy_from_slice(&req.chaddr()[..6]);
                prop_assert!(s.leases().holder(y, T0).is_none_or(|h| h.mac.0 == c));
            }
        }
    }
}

/// Leases end on time while the server runs (issue 10): an offer lapses after its hold, a bound
/// lease at its expiry, a quarantine at its end; each end is reported once, leaves the lease
/// set and the published view, and `poll_timeout` names the next end.
#[test]
fn offers_leases_and_quarantines_end_on_the_timer() {
    use pserv_core::lease::{Ended, LeaseState, OFFER_HOLD_SECONDS};
    let t = example();
    let mut s = Standalone::default();
    let board = pserv_core::lease::LeaseBoard::new();
    let counts = |s: &mut Standalone| {
        s.publish(&board);
        board.counts()
    };
    assert_eq!(s.poll_timeout(), None);
    // A DISCOVER that is never followed up.
    let (_, offer) = reply(send(
        &mut s,
        &t,
        T0,
        &client(MessageType::Discover, STRANGER, vec![]),
    ));
    let offered = offer.yiaddr();
    // A bound lease (CCC: known, no reservation; the example's lease time is 3600 s).
    let (ack, bound) = dora(&mut s, &t, T0 + 1, CCC, vec![]);
    assert_eq!(ack.kind, MessageType::Ack);
    assert_eq!(counts(&mut s).offered, 1);
    assert_eq!(counts(&mut s).bound, 1);
    assert_eq!(s.poll_timeout(), Some(T0 + OFFER_HOLD_SECONDS));
    assert!(s.handle_timeout(T0 + OFFER_HOLD_SECONDS - 1).is_empty());
    assert_eq!(
        s.handle_timeout(T0 + OFFER_HOLD_SECONDS),
        vec![Ended::Expired {
            mac: mac(STRANGER),
            client_id: None,
            ip: offered,
            state: LeaseState::Offered
        }]
    );
    assert!(s.leases().lease(mac(STRANGER)).is_none());
    let c = counts(&mut s);
    assert_eq!((c.offered, c.bound), (0, 1));
    assert_eq!(s.poll_timeout(), Some(T0 + 1 + 3600));
    // Declining moves CCC's address into quarantine (the example quarantines for a day).
    let decline = client(
        MessageType::Decline,
        CCC,
        vec![DhcpOption::RequestedIpAddress(bound.yiaddr())],
    );
    assert!(matches!(
        send(&mut s, &t, T0 + 2, &decline),
        Outcome::Change(_)
    ));
    assert_eq!(counts(&mut s).declined, 1);
    assert_eq!(s.poll_timeout(), Some(T0 + 2 + 86_400));
    assert_eq!(
        s.handle_timeout(T0 + 2 + 86_400),
        vec![Ended::QuarantineEnded { ip: bound.yiaddr() }]
    );
    assert_eq!(counts(&mut s), Default::default());
    assert_eq!(s.poll_timeout(), None);
    // A renewal moves the end: the old deadline passes without ending anything.
    let (_, r) = dora(&mut s, &t, T0 + 100_000, STRANGER, vec![]);
    let renew = client(
        MessageType::Request,
        STRANGER,
        vec![
            DhcpOption::RequestedIpAddress(r.yiaddr()),
            DhcpOption::ServerIdentifier(SERVER),
        ],
    );
    let (renewed, _) = reply(send(&mut s, &t, T0 + 101_000, &renew));
    assert_eq!(renewed.kind, MessageType::Ack);
    assert!(s.handle_timeout(T0 + 100_000 + 3600).is_empty());
    assert_eq!(s.poll_timeout(), Some(T0 + 101_000 + 3600));
    assert_eq!(s.handle_timeout(T0 + 101_000 + 3600).len(), 1);
    assert!(s.leases().is_empty());
}

/// A subnet that names no boot files, and nodes with boot intent (issue 11).
const CHAIN_JSON: &str = r#"{ "generation": 1,
  "boot_profiles": { "live": { "kernel": "vmlinuz", "initrd": ["initrd.img"], "cmdline": "console=ttyS0" } },
  "subnets": [ { "cidr": "10.20.0.0/16", "dynamic": [ { "start": "10.20.200.1", "end": "10.20.200.9" } ],
                 "boot": { "server_name": "rack1" } },
               { "cidr": "10.30.0.0/16", "dynamic": [ { "start": "10.30.200.1", "end": "10.30.200.9" } ],
                 "boot": { "next_server": "10.30.0.5", "unknown_profile": "live" } } ],
  "nodes": [
    { "id": "net", "hostname": "net", "domain": "lab",
      "interfaces": [ { "mac": "52:54:00:12:34:56", "ipv4": "10.20.0.10" } ], "boot": { "profile": "live" } },
    { "id": "loc", "hostname": "loc", "domain": "lab",
      "interfaces": [ { "mac": "52:54:00:12:34:60", "ipv4": "10.20.0.11" } ], "boot": { "mode": "local" } },
    { "id": "ign", "hostname": "ign", "domain": "lab",
      "interfaces": [ { "mac": "52:54:00:12:34:70", "ipv4": "10.20.0.12" } ],
      "boot": { "mode": "ignore", "profile": "live", "files": { "x86_64-bios": "x.0" } } },
    { "id": "old", "hostname": "old", "domain": "lab",
      "interfaces": [ { "mac": "52:54:00:12:34:80", "ipv4": "10.20.0.13" } ] } ] }"#;

const CHAIN: pserv_dhcp::BootChain = pserv_dhcp::BootChain { http_port: 5248 };

fn chain_offer(
    s: &mut Standalone,
    t: &Table,
    meta: &Meta,
    m: &str,
    opts: Vec<DhcpOption>,
) -> Message {
    let msg = client(MessageType::Discover, m, opts);
    reply(s.handle(t, T0, meta, &msg.to_vec().unwrap())).1
}

#[test]
fn default_chain_ipxe_binaries_then_the_per_node_script() {
    let t = table_from(CHAIN_JSON);
    let mut s = Standalone::default().with_boot_chain(Some(CHAIN));
    let arch = |a: u16| DhcpOption::ClientSystemArchitecture(Architecture::from(a));
    let ipxe = DhcpOption::UserClass(b"iPXE".to_vec());
    for (opts, file) in [
        (vec![], "undionly.kpxe"),
        (vec![arch(0)], "undionly.kpxe"),
        (vec![arch(7)], "ipxe.efi"),
        (vec![arch(9)], "ipxe.efi"),
        (vec![arch(11)], "ipxe-arm64.efi"),
        (vec![arch(6)], "ipxe-ia32.efi"),
        (vec![arch(16)], "http://10.20.0.2:5248/ipxe.efi"),
        (vec![arch(19)], "http://10.20.0.2:5248/ipxe-arm64.efi"),
        (
            vec![arch(7), ipxe.clone()],
            "http://10.20.0.2:5248/ipxe/52-54-00-12-34-56",
        ),
        (
            vec![arch(0), ipxe.clone()],
            "http://10.20.0.2:5248/ipxe/52-54-00-12-34-56",
        ),
    ] {
        let m = chain_offer(&mut s, &t, &META, AAA, opts.clone());
        assert_eq!(boot(&m), (Some(file.to_owned()), SERVER), "{opts:?}");
        let http = opt(&m, OptionCode::ClassIdentifier).is_some();
        assert_eq!(
            http,
            file.ends_with(".efi") && file.starts_with("http"),
            "{opts:?}"
        );
    }
    // A local node goes through iPXE too: its script boots the disk.
    let m = chain_offer(&mut s, &t, &META, BBB, vec![ipxe.clone()]);
    assert_eq!(
        boot(&m).0.as_deref(),
        Some("http://10.20.0.2:5248/ipxe/52-54-00-12-34-60")
    );
}

#[test]
fn ignore_mode_gets_no_boot_fields_at_all() {
    let t = table_from(CHAIN_JSON);
    let mut s = Standalone::default().with_boot_chain(Some(CHAIN));
    for opts in [
        vec![],
        vec![DhcpOption::UserClass(b"iPXE".to_vec())],
        vec![DhcpOption::ClientSystemArchitecture(Architecture::from(16))],
    ] {
        let m = chain_offer(&mut s, &t, &META, CCC, opts);
        assert_eq!(
            m.yiaddr(),
            Ipv4Addr::new(10, 20, 0, 12),
            "still gets its address"
        );
        assert_eq!(
            boot(&m),
            (None, Ipv4Addr::UNSPECIFIED),
            "not even its own file"
        );
        assert_eq!(opt(&m, OptionCode::BootfileName), None);
        assert_eq!(opt(&m, OptionCode::TFTPServerName), None);
        assert_eq!(opt(&m, OptionCode::ClassIdentifier), None);
        assert!(m.sname().is_none_or(|n| n.iter().all(|&b| b == 0)));
    }
}

#[test]
fn no_intent_no_chain_unknown_clients_get_the_subnets_profile() {
    let t = table_from(CHAIN_JSON);
    let mut s = Standalone::default().with_boot_chain(Some(CHAIN));
    // A node with no profile and no mode on a subnet without files: nothing to boot.
    let m = chain_offer(&mut s, &t, &META, "52:54:00:12:34:80", vec![]);
    assert_eq!(boot(&m), (None, Ipv4Addr::UNSPECIFIED));
    // An unknown client on the first subnet (no unknown_profile): no boot offer.
    let m = chain_offer(&mut s, &t, &META, STRANGER, vec![]);
    assert_eq!(boot(&m), (None, Ipv4Addr::UNSPECIFIED));
    // On the second, it netboots the subnet's profile, from next_server.
    let meta = Meta {
        local: Ipv4Addr::new(10, 30, 0, 2),
        ifindex: 3,
    };
    let m = chain_offer(&mut s, &t, &meta, STRANGER, vec![]);
    assert_eq!(
        boot(&m),
        (
            Some("undionly.kpxe".to_owned()),
            Ipv4Addr::new(10, 30, 0, 5)
        )
    );
    let m = chain_offer(
        &mut s,
        &t,
        &meta,
        STRANGER,
        vec![DhcpOption::UserClass(b"iPXE".to_vec())],
    );
    assert_eq!(
        boot(&m).0.as_deref(),
        Some("http://10.30.0.5:5248/ipxe/02-aa-bb-cc-dd-ee")
    );
    // Without boot serving, no chain is offered, only explicit files (none here).
    let mut plain = Standalone::default();
    let m = chain_offer(&mut plain, &t, &META, AAA, vec![]);
    assert_eq!(boot(&m), (None, Ipv4Addr::UNSPECIFIED));
}
