//! DHCPv4 conformance: one scripted exchange on virtual time per protocol rule, each named
//! after the clause it checks (RFC 2131, RFC 6842, RFC 5107, RFC 3527).

#![allow(clippy::unwrap_used)]

use std::net::Ipv4Addr;

use dhcproto::v4::{DhcpOption, Message, MessageType, OptionCode, relay::RelayInfo};
use pserv_core::lease::{Change, Leases};
use pserv_core::snapshot::Snapshot;
use pserv_core::{MacAddr, Table};
use pserv_dhcp::server::decode;
use pserv_dhcp::{Destination, DropReason, Meta, Outcome, Standalone};
// Client messages from the shared builder (each xid made from its MAC).
use pserv_tests::dhcp::Packet as Msg;

const T0: u64 = 1_800_000_000;
const US: Ipv4Addr = Ipv4Addr::new(192, 168, 50, 2);
const ON_LINK: Meta = Meta {
    local: US,
    ifindex: 2,
};
/// The only dynamic address of the first subnet.
const POOL: Ipv4Addr = Ipv4Addr::new(192, 168, 50, 100);
const NODE_MAC: [u8; 6] = [0x52, 0x54, 0, 0, 0, 0x10];
const NODE_IP: Ipv4Addr = Ipv4Addr::new(192, 168, 50, 10);
const A: [u8; 6] = [2, 0, 0, 0, 0, 0xa];
const B: [u8; 6] = [2, 0, 0, 0, 0, 0xb];
const ID1: &[u8] = &[0, 1, 2, 3, 4, 5, 6];
const ID2: &[u8] = &[0, 9, 9, 9, 9, 9, 9];

const SNAPSHOT: &str = r#"{
  "generation": 1,
  "subnets": [
    { "cidr": "192.168.50.0/24", "router": ["192.168.50.1", "192.168.50.254"],
      "dns_servers": ["192.168.50.2"], "domain": "lab",
      "dynamic": [ { "start": "192.168.50.100", "end": "192.168.50.100" } ],
      "options": [ { "code": 12, "value": "guest" } ],
      "boot": { "next_server": "192.168.50.5" } },
    { "cidr": "10.9.0.0/24", "router": ["10.8.0.1"], "router_outside_subnet": true,
      "ignore_link_selection": true,
      "dynamic": [ { "start": "10.9.0.100", "end": "10.9.0.150" } ] },
    { "cidr": "10.7.0.0/24",
      "dynamic": [ { "start": "10.7.0.100", "end": "10.7.0.150" } ] }
  ],
  "nodes": [
    { "id": "n1", "hostname": "node1", "domain": "lab",
      "interfaces": [ { "mac": "52:54:00:00:00:10", "ipv4": "192.168.50.10" } ] }
  ]
}"#;

fn table() -> Table {
    Table::compile(&Snapshot::from_json(SNAPSHOT.as_bytes()).unwrap(), None).unwrap()
}

/// Sending a client message (the shared builder) to the server under test.
trait Exchange {
    fn send(&self, s: &mut Standalone, t: &Table, now: u64) -> Outcome;
}

impl Exchange for Msg {
    fn send(&self, s: &mut Standalone, t: &Table, now: u64) -> Outcome {
        s.handle(t, now, &ON_LINK, &self.bytes())
    }
}

/// The reply's kind and decoded message; panics on a drop or a bare change.
fn answered(o: Outcome) -> (MessageType, Message, Destination, Option<Change>) {
    match o {
        Outcome::Reply(r) => (r.kind, decode(&r.bytes).unwrap(), r.dest, r.change),
        other => panic!("expected a reply, got {other:?}"),
    }
}

fn option(m: &Message, code: OptionCode) -> Option<&DhcpOption> {
    m.opts().get(code)
}

/// DISCOVER then REQUEST (SELECTING) for a client; returns the ACKed address.
fn bind(s: &mut Standalone, t: &Table, chaddr: [u8; 6], id: Option<&[u8]>, now: u64) -> Ipv4Addr {
    let with_id = |m: Msg| match id {
        Some(id) => m.client_id(id),
        None => m,
    };
    let (kind, offer, ..) =
        answered(with_id(Msg::new(MessageType::Discover, chaddr)).send(s, t, now));
    assert_eq!(kind, MessageType::Offer);
    let req = with_id(Msg::new(MessageType::Request, chaddr))
        .requested(offer.yiaddr())
        .server(US);
    let (kind, ack, ..) = answered(req.send(s, t, now));
    assert_eq!(kind, MessageType::Ack);
    ack.yiaddr()
}

#[test]
fn rfc6842_s3_client_identifier_is_returned_unmodified_in_offer_ack_and_nak() {
    let t = table();
    let mut s = Standalone::default();
    let (kind, offer, ..) = answered(
        Msg::new(MessageType::Discover, A)
            .client_id(ID1)
            .send(&mut s, &t, T0),
    );
    assert_eq!(kind, MessageType::Offer);
    assert_eq!(
        option(&offer, OptionCode::ClientIdentifier),
        Some(&DhcpOption::ClientIdentifier(ID1.to_vec()))
    );
    let req = Msg::new(MessageType::Request, A)
        .client_id(ID1)
        .requested(offer.yiaddr())
        .server(US);
    let (kind, ack, ..) = answered(req.send(&mut s, &t, T0));
    assert_eq!(kind, MessageType::Ack);
    assert_eq!(
        option(&ack, OptionCode::ClientIdentifier),
        Some(&DhcpOption::ClientIdentifier(ID1.to_vec()))
    );
    // A REQUEST for an address outside the subnet is NAKed, with the identifier too.
    let bad = Msg::new(MessageType::Request, A)
        .client_id(ID1)
        .requested(Ipv4Addr::new(10, 1, 1, 1));
    let (kind, nak, ..) = answered(bad.send(&mut s, &t, T0));
    assert_eq!(kind, MessageType::Nak);
    assert_eq!(
        option(&nak, OptionCode::ClientIdentifier),
        Some(&DhcpOption::ClientIdentifier(ID1.to_vec()))
    );
    // Without option 61 in the request, none in the reply.
    let (_, offer, ..) = answered(Msg::new(MessageType::Discover, NODE_MAC).send(&mut s, &t, T0));
    assert_eq!(option(&offer, OptionCode::ClientIdentifier), None);
}

#[test]
fn rfc2131_s4_2_same_chaddr_with_another_client_identifier_is_another_client() {
    let t = table();
    let mut s = Standalone::default();
    assert_eq!(bind(&mut s, &t, A, Some(ID1), T0), POOL);
    // The pool's one address is held by (A, ID1): (A, ID2) is someone else, and gets nothing.
    assert_eq!(
        Msg::new(MessageType::Discover, A)
            .client_id(ID2)
            .send(&mut s, &t, T0 + 1),
        Outcome::Drop(DropReason::PoolExhausted)
    );
    // So is A without an identifier.
    assert_eq!(
        Msg::new(MessageType::Discover, A).send(&mut s, &t, T0 + 1),
        Outcome::Drop(DropReason::PoolExhausted)
    );
    // The same identifier from another chaddr is the same client: it keeps its address.
    let (kind, offer, ..) = answered(Msg::new(MessageType::Discover, B).client_id(ID1).send(
        &mut s,
        &t,
        T0 + 2,
    ));
    assert_eq!((kind, offer.yiaddr()), (MessageType::Offer, POOL));
    // A renewal under another identifier is another client's: NAK, the lease is not taken.
    let renew = Msg::new(MessageType::Request, A)
        .client_id(ID2)
        .ciaddr(POOL);
    assert_eq!(answered(renew.send(&mut s, &t, T0 + 3)).0, MessageType::Nak);
    assert_eq!(
        s.leases()
            .holder(POOL, T0 + 3)
            .unwrap()
            .client_id
            .as_ref()
            .unwrap()
            .as_bytes(),
        ID1
    );
}

#[test]
fn rfc2131_s4_2_an_identifier_equal_to_htype_and_chaddr_names_the_chaddr_client() {
    let t = table();
    let mut s = Standalone::default();
    // A PXE ROM without option 61, then iPXE or dhclient with 61 = 01:<chaddr>: one lease.
    assert_eq!(bind(&mut s, &t, A, None, T0), POOL);
    let mut own = vec![1];
    own.extend_from_slice(&A);
    assert_eq!(bind(&mut s, &t, A, Some(&own), T0 + 5), POOL);
    assert_eq!(s.leases().len(), 1);
}

#[test]
fn rfc2131_s4_2_release_is_matched_by_client_identifier() {
    let t = table();
    let mut s = Standalone::default();
    assert_eq!(bind(&mut s, &t, A, Some(ID1), T0), POOL);
    // The lease's chaddr with another identifier: not this client's lease to release.
    let stranger = Msg::new(MessageType::Release, A)
        .client_id(ID2)
        .ciaddr(POOL);
    assert_eq!(
        stranger.send(&mut s, &t, T0 + 1),
        Outcome::Drop(DropReason::NoSuchLease)
    );
    assert!(s.leases().holder(POOL, T0 + 1).is_some(), "the lease stays");
    // The lease's identifier from another chaddr: the same client, released.
    let owner = Msg::new(MessageType::Release, B)
        .client_id(ID1)
        .ciaddr(POOL);
    match owner.send(&mut s, &t, T0 + 2) {
        Outcome::Change(Change::Released { ip, client_id, .. }) => {
            assert_eq!(ip, POOL);
            assert_eq!(client_id.unwrap().as_bytes(), ID1);
        }
        other => panic!("expected a release, got {other:?}"),
    }
    assert!(s.leases().holder(POOL, T0 + 2).is_none());
}

#[test]
fn rfc2131_s4_2_decline_from_the_chaddr_with_another_identifier_is_ignored() {
    let t = table();
    let mut s = Standalone::default();
    assert_eq!(bind(&mut s, &t, A, Some(ID1), T0), POOL);
    let other = Msg::new(MessageType::Decline, A)
        .client_id(ID2)
        .requested(POOL)
        .server(US);
    assert_eq!(
        other.send(&mut s, &t, T0 + 1),
        Outcome::Drop(DropReason::NoSuchLease)
    );
    assert!(s.leases().declined().next().is_none(), "no quarantine");
    let own = Msg::new(MessageType::Decline, A)
        .client_id(ID1)
        .requested(POOL)
        .server(US);
    assert!(matches!(
        own.send(&mut s, &t, T0 + 2),
        Outcome::Change(Change::Declined { .. })
    ));
}

#[test]
fn rfc2131_s4_2_leases_by_client_identifier_survive_replay() {
    let t = table();
    let mut s = Standalone::default();
    let req = |chaddr, id: &[u8]| Msg::new(MessageType::Discover, chaddr).client_id(id);
    let (_, offer, ..) = answered(req(A, ID1).send(&mut s, &t, T0));
    let (kind, _, _, change) = answered(
        Msg::new(MessageType::Request, A)
            .client_id(ID1)
            .requested(offer.yiaddr())
            .server(US)
            .send(&mut s, &t, T0),
    );
    assert_eq!(kind, MessageType::Ack);
    let change = change.expect("a dynamic ACK is journaled");
    let restored = Leases::restore([&change], T0 + 1);
    let l = restored.holder(POOL, T0 + 1).unwrap();
    assert_eq!(l.client_id.as_ref().unwrap().as_bytes(), ID1);
    assert_eq!(l.mac, MacAddr(A));
    // As an event it carries the identifier in the form dhcpd and Kea print.
    let json = serde_json::to_value(&change).unwrap();
    assert_eq!(json["client_id"], "00:01:02:03:04:05:06");
}

#[test]
fn rfc2131_s4_3_2_init_reboot_without_a_record_gets_no_answer() {
    let t = table();
    let mut s = Standalone::default();
    // INIT-REBOOT: option 50, no option 54, ciaddr 0, from a client never seen.
    let reboot = |chaddr| Msg::new(MessageType::Request, chaddr).requested(POOL);
    assert_eq!(
        reboot(A).send(&mut s, &t, T0),
        Outcome::Drop(DropReason::NoRecord)
    );
    assert!(s.leases().is_empty(), "no lease was created");
    // With a record of the same address: ACK.
    assert_eq!(bind(&mut s, &t, A, None, T0), POOL);
    assert_eq!(
        answered(reboot(A).send(&mut s, &t, T0 + 10)).0,
        MessageType::Ack
    );
    // With a record of another address, or on the wrong network: NAK.
    let elsewhere = Msg::new(MessageType::Request, A).requested(Ipv4Addr::new(192, 168, 50, 120));
    assert_eq!(
        answered(elsewhere.send(&mut s, &t, T0 + 11)).0,
        MessageType::Nak
    );
    let wrong_net = Msg::new(MessageType::Request, B).requested(Ipv4Addr::new(172, 16, 0, 9));
    assert_eq!(
        answered(wrong_net.send(&mut s, &t, T0 + 11)).0,
        MessageType::Nak
    );
    // A reserved node is on record: its reservation.
    let node = Msg::new(MessageType::Request, NODE_MAC).requested(NODE_IP);
    let (kind, ack, ..) = answered(node.send(&mut s, &t, T0 + 12));
    assert_eq!((kind, ack.yiaddr()), (MessageType::Ack, NODE_IP));
}

#[test]
fn rfc2131_table_3_offer_ciaddr_is_zero() {
    let t = table();
    let mut s = Standalone::default();
    for ci in [Ipv4Addr::new(192, 168, 50, 3), Ipv4Addr::BROADCAST] {
        let d = Msg::new(MessageType::Discover, NODE_MAC).ciaddr(ci);
        let (kind, offer, ..) = answered(d.send(&mut s, &t, T0));
        assert_eq!(kind, MessageType::Offer);
        assert_eq!(
            offer.ciaddr(),
            Ipv4Addr::UNSPECIFIED,
            "DISCOVER with ciaddr {ci}"
        );
    }
    // An ACK carries the request's ciaddr (RENEWING).
    let renew = Msg::new(MessageType::Request, NODE_MAC).ciaddr(NODE_IP);
    let (kind, ack, dest, _) = answered(renew.send(&mut s, &t, T0));
    assert_eq!((kind, ack.ciaddr()), (MessageType::Ack, NODE_IP));
    assert_eq!(dest, Destination::Unicast(NODE_IP));
}

#[test]
fn rfc2131_table_3_siaddr_is_the_next_server_even_without_a_boot_file() {
    let t = table();
    let mut s = Standalone::default();
    let (_, offer, ..) = answered(Msg::new(MessageType::Discover, NODE_MAC).send(&mut s, &t, T0));
    assert_eq!(offer.siaddr(), Ipv4Addr::new(192, 168, 50, 5));
    assert_eq!(
        option(&offer, OptionCode::TFTPServerName),
        Some(&DhcpOption::TFTPServerName(b"192.168.50.5".to_vec()))
    );
    assert_eq!(option(&offer, OptionCode::BootfileName), None);
    // A subnet with no next_server: siaddr 0, no option 66.
    let relayed = Msg::new(MessageType::Discover, A).relay(Ipv4Addr::new(10, 7, 0, 1));
    let (_, offer, ..) = answered(relayed.send(&mut s, &t, T0));
    assert_eq!(offer.siaddr(), Ipv4Addr::UNSPECIFIED);
    assert_eq!(option(&offer, OptionCode::TFTPServerName), None);
}

#[test]
fn rfc2131_s4_3_5_inform_is_answered_at_ciaddr_and_dropped_without_one() {
    let t = table();
    let mut s = Standalone::default();
    let ci = Ipv4Addr::new(192, 168, 50, 77);
    let (kind, ack, dest, change) = answered(
        Msg::new(MessageType::Inform, A)
            .ciaddr(ci)
            .send(&mut s, &t, T0),
    );
    assert_eq!(kind, MessageType::Ack);
    assert_eq!(dest, Destination::Unicast(ci));
    assert_eq!(change, None);
    assert_eq!(ack.ciaddr(), ci);
    assert_eq!(ack.yiaddr(), Ipv4Addr::UNSPECIFIED);
    assert_eq!(
        option(&ack, OptionCode::AddressLeaseTime),
        None,
        "no lease time in an INFORM ACK"
    );
    // Table 5: the client MUST set ciaddr; with none (and no relay) there is nowhere to answer.
    assert_eq!(
        Msg::new(MessageType::Inform, A).send(&mut s, &t, T0),
        Outcome::Drop(DropReason::InformWithoutAddress)
    );
}

#[test]
fn rfc5107_s4_server_identifier_override_is_ours_and_is_echoed() {
    let t = table();
    let mut s = Standalone::default();
    let relay = Ipv4Addr::new(10, 7, 0, 1);
    let over = Ipv4Addr::new(10, 7, 0, 1);
    let info = || vec![RelayInfo::ServerIdentifierOverride(over)];
    let (kind, offer, dest, _) = answered(
        Msg::new(MessageType::Discover, A)
            .relay(relay)
            .relay_info(info())
            .send(&mut s, &t, T0),
    );
    assert_eq!(
        (kind, dest),
        (MessageType::Offer, Destination::Relay(relay))
    );
    assert_eq!(
        option(&offer, OptionCode::ServerIdentifier),
        Some(&DhcpOption::ServerIdentifier(over)),
        "the override is the server identifier the client sees"
    );
    // The client's REQUEST names the override: it is for us.
    let req = Msg::new(MessageType::Request, A)
        .requested(offer.yiaddr())
        .server(over)
        .relay(relay)
        .relay_info(info());
    let (kind, ack, ..) = answered(req.send(&mut s, &t, T0));
    assert_eq!(kind, MessageType::Ack);
    assert_eq!(
        option(&ack, OptionCode::ServerIdentifier),
        Some(&DhcpOption::ServerIdentifier(over))
    );
    // Without the sub-option, a REQUEST naming that address selects another server.
    let plain = Msg::new(MessageType::Request, B)
        .requested(Ipv4Addr::new(10, 7, 0, 101))
        .server(over)
        .relay(relay);
    assert_eq!(
        plain.send(&mut s, &t, T0),
        Outcome::Drop(DropReason::NotForUs)
    );
}

#[test]
fn rfc2131_s4_3_2_request_selecting_us_from_a_link_without_subnet_is_naked() {
    let t = table();
    let mut s = Standalone::default();
    let nowhere = Ipv4Addr::new(172, 31, 0, 1);
    let req = Msg::new(MessageType::Request, A)
        .requested(Ipv4Addr::new(172, 31, 0, 50))
        .server(US)
        .relay(nowhere);
    let (kind, nak, dest, _) = answered(req.send(&mut s, &t, T0));
    assert_eq!(
        (kind, dest),
        (MessageType::Nak, Destination::Relay(nowhere))
    );
    assert_eq!(
        option(&nak, OptionCode::ServerIdentifier),
        Some(&DhcpOption::ServerIdentifier(US))
    );
    // A DISCOVER from there, or a REQUEST selecting someone else: no answer.
    let d = Msg::new(MessageType::Discover, A).relay(nowhere);
    assert_eq!(d.send(&mut s, &t, T0), Outcome::Drop(DropReason::NoSubnet));
    let other = Msg::new(MessageType::Request, A)
        .requested(Ipv4Addr::new(172, 31, 0, 50))
        .server(Ipv4Addr::new(172, 31, 0, 9))
        .relay(nowhere);
    assert_eq!(
        other.send(&mut s, &t, T0),
        Outcome::Drop(DropReason::NoSubnet)
    );
}

#[test]
fn rfc2132_s3_5_several_routers_in_order_and_one_off_the_subnet() {
    let t = table();
    let mut s = Standalone::default();
    let (_, offer, ..) = answered(Msg::new(MessageType::Discover, NODE_MAC).send(&mut s, &t, T0));
    assert_eq!(
        option(&offer, OptionCode::Router),
        Some(&DhcpOption::Router(vec![
            Ipv4Addr::new(192, 168, 50, 1),
            Ipv4Addr::new(192, 168, 50, 254)
        ]))
    );
    let relayed = Msg::new(MessageType::Discover, A).relay(Ipv4Addr::new(10, 9, 0, 1));
    let (_, offer, ..) = answered(relayed.send(&mut s, &t, T0));
    assert_eq!(
        option(&offer, OptionCode::Router),
        Some(&DhcpOption::Router(vec![Ipv4Addr::new(10, 8, 0, 1)]))
    );
}

#[test]
fn rfc2132_s3_14_subnet_host_name_for_clients_that_are_not_nodes() {
    let t = table();
    let mut s = Standalone::default();
    let (_, offer, ..) = answered(Msg::new(MessageType::Discover, A).send(&mut s, &t, T0));
    assert_eq!(
        option(&offer, OptionCode::Hostname),
        Some(&DhcpOption::Hostname("guest".into()))
    );
    let inform = Msg::new(MessageType::Inform, B).ciaddr(Ipv4Addr::new(192, 168, 50, 77));
    let (_, ack, ..) = answered(inform.send(&mut s, &t, T0));
    assert_eq!(
        option(&ack, OptionCode::Hostname),
        Some(&DhcpOption::Hostname("guest".into()))
    );
    // A node's own hostname wins.
    let (_, offer, ..) = answered(Msg::new(MessageType::Discover, NODE_MAC).send(&mut s, &t, T0));
    assert_eq!(
        option(&offer, OptionCode::Hostname),
        Some(&DhcpOption::Hostname("node1".into()))
    );
}

#[test]
fn rfc3527_link_selection_is_ignored_from_relays_on_a_subnet_that_says_so() {
    let t = table();
    let mut s = Standalone::default();
    let select = |relay| {
        Msg::new(MessageType::Discover, A)
            .relay(relay)
            .relay_info(vec![RelayInfo::LinkSelection(Ipv4Addr::new(
                192, 168, 50, 0,
            ))])
    };
    // A relay on 10.7.0.0/24 may pick the link: the client is placed on 192.168.50.0/24.
    let (_, offer, ..) = answered(select(Ipv4Addr::new(10, 7, 0, 1)).send(&mut s, &t, T0));
    assert_eq!(offer.yiaddr(), POOL);
    // One on 10.9.0.0/24 may not: placed by its giaddr.
    let mut s = Standalone::default();
    let (_, offer, ..) = answered(select(Ipv4Addr::new(10, 9, 0, 1)).send(&mut s, &t, T0));
    assert_eq!(offer.yiaddr(), Ipv4Addr::new(10, 9, 0, 100));
}

/// RFC 3074 load balancing (cluster mode): a DISCOVER from a client in another instance's
/// bucket is left to it; a REQUEST selecting this server, a renewal, a RELEASE are not
/// balanced; the bucket is the client identifier's when there is one.
#[test]
fn rfc3074_each_client_answered_by_the_instance_owning_its_bucket() {
    use pserv_core::lease::Share;
    use pserv_dhcp::server::client_bucket;
    let t = table();
    let mut s = Standalone::new(Leases::new());
    let b = client_bucket(None, MacAddr(A));
    let mut share = Share::NONE;
    share.allocate = true;
    share.set(b, true);
    s.set_share(share);
    // A is ours: bound as usual.
    let ip = bind(&mut s, &t, A, None, T0);
    // B (another bucket, or with an identifier hashing elsewhere) is left to its owner.
    for (chaddr, id) in [(B, None), (A, Some(ID2))] {
        let theirs = client_bucket(id, MacAddr(chaddr));
        if theirs == b {
            continue;
        }
        let m = Msg::new(MessageType::Discover, chaddr);
        let m = match id {
            Some(id) => m.client_id(id),
            None => m,
        };
        assert_eq!(
            m.send(&mut s, &t, T0),
            Outcome::Drop(DropReason::OtherInstance)
        );
    }
    // Now none is ours: A's renewal (unicast to us) and its RELEASE are still served.
    share.set(b, false);
    s.set_share(share);
    let (kind, ..) = answered(Msg::new(MessageType::Request, A).ciaddr(ip).send(
        &mut s,
        &t,
        T0 + 10,
    ));
    assert_eq!(kind, MessageType::Ack);
    assert!(matches!(
        Msg::new(MessageType::Release, A)
            .ciaddr(ip)
            .send(&mut s, &t, T0 + 11),
        Outcome::Change(Change::Released { .. })
    ));
    // INIT-REBOOT (no server named, no ciaddr) is balanced.
    assert_eq!(
        Msg::new(MessageType::Request, A)
            .requested(ip)
            .send(&mut s, &t, T0 + 12),
        Outcome::Drop(DropReason::OtherInstance)
    );
}

/// Cluster mode, cut off from the lease store: no dynamic lease is offered or renewed, and
/// every reserved node is still answered whatever its bucket.
#[test]
fn cut_off_from_the_cluster_reserved_nodes_only() {
    use pserv_core::lease::Share;
    let t = table();
    let mut s = Standalone::new(Leases::new());
    s.set_share(Share::CUT_OFF);
    assert_eq!(
        Msg::new(MessageType::Discover, A).send(&mut s, &t, T0),
        Outcome::Drop(DropReason::OtherInstance),
        "no bucket: a dynamic client is nobody's here"
    );
    let mut all = Share::ALL;
    all.allocate = false;
    s.set_share(all);
    assert_eq!(
        Msg::new(MessageType::Discover, A).send(&mut s, &t, T0),
        Outcome::Drop(DropReason::ClusterUnavailable)
    );
    assert_eq!(
        Msg::new(MessageType::Request, A)
            .ciaddr(POOL)
            .send(&mut s, &t, T0),
        Outcome::Drop(DropReason::ClusterUnavailable)
    );
    s.set_share(Share::CUT_OFF);
    let (kind, offer, ..) =
        answered(Msg::new(MessageType::Discover, NODE_MAC).send(&mut s, &t, T0));
    assert_eq!((kind, offer.yiaddr()), (MessageType::Offer, NODE_IP));
    let (kind, ack, ..) = answered(
        Msg::new(MessageType::Request, NODE_MAC)
            .requested(NODE_IP)
            .server(US)
            .send(&mut s, &t, T0),
    );
    assert_eq!((kind, ack.yiaddr()), (MessageType::Ack, NODE_IP));
}

/// A change another instance made is applied: its address is no longer offered here, and
/// this instance's client renewing it is NAKed.
#[test]
fn another_instances_lease_is_respected() {
    let t = table();
    let mut s = Standalone::new(Leases::new());
    let ip = bind(&mut s, &t, A, None, T0);
    s.apply_remote(&Change::Bound {
        mac: MacAddr(B),
        client_id: None,
        ip,
        start: T0 + 5,
        expires: T0 + 3600,
        hostname: None,
    });
    let (kind, ..) = answered(Msg::new(MessageType::Request, A).ciaddr(ip).send(
        &mut s,
        &t,
        T0 + 10,
    ));
    assert_eq!(kind, MessageType::Nak);
    // The only pool address is B's: nothing to offer a third client.
    assert_eq!(
        Msg::new(MessageType::Discover, [2, 0, 0, 0, 0, 0xc]).send(&mut s, &t, T0 + 10),
        Outcome::Drop(DropReason::PoolExhausted)
    );
}

/// RFC 2131 Table 5: a SELECTING REQUEST MUST carry option 50. Some embedded PXE stacks send
/// one with option 54 only (and ciaddr 0); as Kea does, pserv answers it as the SELECTING
/// request it means to be: the reservation, the address it offered (or the client's lease),
/// else a new one. Counted apart (`lenient`). INIT-REBOOT and RENEWING are unchanged.
#[test]
fn rfc2131_table_5_selecting_without_requested_address_is_answered_as_selecting() {
    let t = table();
    let mut s = Standalone::default();
    let (_, offer, ..) = answered(Msg::new(MessageType::Discover, A).send(&mut s, &t, T0));
    assert_eq!(offer.yiaddr(), POOL);
    let bare = |mac| Msg::new(MessageType::Request, mac).server(US);
    let o = bare(A).send(&mut s, &t, T0 + 1);
    let Outcome::Reply(r) = &o else {
        panic!("answered: {o:?}")
    };
    assert!(r.lenient);
    let (kind, ack, _, change) = answered(o);
    assert_eq!((kind, ack.yiaddr()), (MessageType::Ack, POOL));
    assert!(change.is_some(), "the offered address is bound");
    // Again (a retransmission): the same lease.
    let (kind, ack, ..) = answered(bare(A).send(&mut s, &t, T0 + 2));
    assert_eq!((kind, ack.yiaddr()), (MessageType::Ack, POOL));
    // A node: its reservation.
    let (kind, ack, ..) = answered(bare(NODE_MAC).send(&mut s, &t, T0));
    assert_eq!((kind, ack.yiaddr()), (MessageType::Ack, NODE_IP));
    // No DISCOVER before it, through a relay naming its RFC 5107 override: a new address.
    let relay = Ipv4Addr::new(10, 7, 0, 1);
    let (kind, ack, dest, _) = answered(
        Msg::new(MessageType::Request, B)
            .server(relay)
            .relay(relay)
            .relay_info(vec![RelayInfo::ServerIdentifierOverride(relay)])
            .send(&mut s, &t, T0),
    );
    assert_eq!(
        (kind, ack.yiaddr(), dest),
        (
            MessageType::Ack,
            Ipv4Addr::new(10, 7, 0, 100),
            Destination::Relay(relay)
        )
    );
    // Nothing free: no answer, counted as such.
    let c: [u8; 6] = [2, 0, 0, 0, 0, 0xc];
    assert_eq!(
        bare(c).send(&mut s, &t, T0),
        Outcome::Drop(DropReason::PoolExhausted)
    );
    // Naming another server, it is still that server's.
    assert_eq!(
        Msg::new(MessageType::Request, c)
            .server(Ipv4Addr::new(192, 168, 50, 3))
            .send(&mut s, &t, T0),
        Outcome::Drop(DropReason::NotForUs)
    );
    // A renewal without option 50 is a renewal (not lenient).
    let o = Msg::new(MessageType::Request, A)
        .ciaddr(POOL)
        .send(&mut s, &t, T0 + 3);
    let Outcome::Reply(r) = &o else {
        panic!("renewed: {o:?}")
    };
    assert!(!r.lenient);
}

/// RFC 3527 link selection ignored server-wide, for relays whose address is in no subnet (the
/// per-subnet flag cannot name them): Kea's `compatibility.ignore-rai-link-selection`.
#[test]
fn rfc3527_link_selection_ignored_from_every_relay_when_the_server_says_so() {
    let t = table();
    let outside = Ipv4Addr::new(172, 16, 0, 1);
    let discover = || {
        Msg::new(MessageType::Discover, A)
            .relay(outside)
            .relay_info(vec![RelayInfo::LinkSelection(Ipv4Addr::new(10, 7, 0, 0))])
            .option(DhcpOption::SubnetSelection(Ipv4Addr::new(192, 168, 50, 0)))
    };
    // By default the relay's link selection places the client.
    let mut s = Standalone::default();
    let (_, offer, ..) = answered(discover().send(&mut s, &t, T0));
    assert_eq!(offer.yiaddr(), Ipv4Addr::new(10, 7, 0, 100));
    // Ignored: option 118 places it, else giaddr (in no subnet here: no answer).
    let mut s = Standalone::default();
    s.server = s.server.with_ignore_link_selection(true);
    let (_, offer, ..) = answered(discover().send(&mut s, &t, T0));
    assert_eq!(offer.yiaddr(), POOL);
    let only_rai = Msg::new(MessageType::Discover, B)
        .relay(outside)
        .relay_info(vec![RelayInfo::LinkSelection(Ipv4Addr::new(10, 7, 0, 0))]);
    assert_eq!(
        only_rai.send(&mut s, &t, T0),
        Outcome::Drop(DropReason::NoSubnet)
    );
}
