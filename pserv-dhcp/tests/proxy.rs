//! proxyDHCP (issue 23): what pserv answers on a subnet whose addresses another server hands
//! out, on port 67 and at the PXE boot server (4011), and that it never hands out an address.

#![allow(clippy::unwrap_used)]

use std::net::Ipv4Addr;

use dhcproto::v4::{Architecture, DhcpOption, Message, MessageType, OptionCode, relay::RelayInfo};
use proptest::prelude::*;
use pserv_core::lease::Leases;
use pserv_core::{MacAddr, Snapshot, Table};
use pserv_dhcp::proxy::Sighting;
use pserv_dhcp::server::decode;
use pserv_dhcp::{BootChain, Destination, DropReason, Meta, Outcome, Server};
use pserv_tests::dhcp::Packet;

const SERVER: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 2);
const META: Meta = Meta {
    local: SERVER,
    ifindex: 2,
};
const NODE: &str = "52:54:00:77:00:01"; // netboot, no reservation
const LOCAL: &str = "52:54:00:77:00:02"; // local
const IGNORED: &str = "52:54:00:77:00:03"; // ignore
const GRUB: &str = "52:54:00:77:00:04"; // netboot on the grub chain
const STRANGER: &str = "02:00:00:77:00:09";

fn snapshot(extra: &str) -> String {
    format!(
        r#"{{ "generation": 1,
  "boot_profiles": {{ "live": {{ "kernel": "images/vmlinuz", "cmdline": "x" }} }},
  "subnets": [ {{ "cidr": "10.77.0.0/16", "proxy_dhcp": true, {extra}
                  "boot": {{ "unknown_profile": "live" }} }} ],
  "nodes": [
    {{ "id": "n1", "hostname": "n1", "domain": "lab", "interfaces": [ {{ "mac": "{NODE}" }} ],
       "boot": {{ "profile": "live" }} }},
    {{ "id": "n2", "hostname": "n2", "domain": "lab", "interfaces": [ {{ "mac": "{LOCAL}" }} ],
       "boot": {{ "profile": "live", "mode": "local" }} }},
    {{ "id": "n3", "hostname": "n3", "domain": "lab", "interfaces": [ {{ "mac": "{IGNORED}" }} ],
       "boot": {{ "profile": "live", "mode": "ignore" }} }},
    {{ "id": "n4", "hostname": "n4", "domain": "lab", "interfaces": [ {{ "mac": "{GRUB}" }} ],
       "boot": {{ "profile": "live", "chain": "grub" }} }} ] }}"#
    )
}

fn table() -> Table {
    Table::compile(&Snapshot::from_json(snapshot("").as_bytes()).unwrap(), None).unwrap()
}

fn server() -> Server {
    Server::new().with_boot_chain(Some(BootChain { http_port: 5248 }))
}

fn mac(s: &str) -> [u8; 6] {
    s.parse::<MacAddr>().unwrap().0
}

const UUID: [u8; 17] = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16];

/// A PXE client's message: option 60 `PXEClient…`, 93, 97.
fn pxe(kind: MessageType, m: &str, arch: u16) -> Packet {
    Packet::new(kind, mac(m)).xid(0x0bad_cafe).options([
        DhcpOption::ClassIdentifier(format!("PXEClient:Arch:{arch:05}:UNDI:003000").into_bytes()),
        DhcpOption::ClientSystemArchitecture(Architecture::from(arch)),
        DhcpOption::ClientMachineIdentifier(UUID.to_vec()),
    ])
}

fn port67(t: &Table, p: &Packet) -> Outcome {
    server().handle(t, &mut Leases::new(), 1_800_000_000, &META, &p.bytes())
}

fn reply(o: Outcome) -> (Destination, Message) {
    match o {
        Outcome::Reply(r) => {
            assert!(r.proxy.is_some());
            (r.dest, decode(&r.bytes).unwrap())
        }
        other => panic!("expected a reply, got {other:?}"),
    }
}

fn vendor(m: &Message) -> Option<Vec<u8>> {
    match m.opts().get(OptionCode::VendorExtensions) {
        Some(DhcpOption::VendorExtensions(v)) => Some(v.clone()),
        _ => None,
    }
}

/// The file field, without its NUL padding.
fn file(m: &Message) -> String {
    let f = m.fname().unwrap_or_default();
    String::from_utf8_lossy(f).trim_end_matches('\0').to_owned()
}

#[test]
fn a_pxe_discover_gets_a_proxy_offer_with_its_boot_file_and_no_address() {
    let t = table();
    let (dest, m) = reply(port67(&t, &pxe(MessageType::Discover, NODE, 0)));
    assert_eq!(dest, Destination::Broadcast);
    assert_eq!(m.opts().msg_type(), Some(MessageType::Offer));
    assert_eq!(m.yiaddr(), Ipv4Addr::UNSPECIFIED);
    assert_eq!(m.ciaddr(), Ipv4Addr::UNSPECIFIED);
    assert_eq!(m.siaddr(), SERVER);
    assert!(m.flags().broadcast());
    assert_eq!(m.xid(), 0x0bad_cafe);
    assert_eq!(
        m.opts().get(OptionCode::ServerIdentifier),
        Some(&DhcpOption::ServerIdentifier(SERVER))
    );
    assert_eq!(
        m.opts().get(OptionCode::ClassIdentifier),
        Some(&DhcpOption::ClassIdentifier(b"PXEClient".to_vec()))
    );
    assert_eq!(
        m.opts().get(OptionCode::ClientMachineIdentifier),
        Some(&DhcpOption::ClientMachineIdentifier(UUID.to_vec()))
    );
    // PXE_DISCOVERY_CONTROL = 8: boot the offered file.
    assert_eq!(vendor(&m), Some(vec![6, 1, 8, 255]));
    assert_eq!(file(&m), "undionly.kpxe");
    // No address settings: those are the other server's.
    for code in [
        OptionCode::AddressLeaseTime,
        OptionCode::SubnetMask,
        OptionCode::Router,
        OptionCode::DomainNameServer,
    ] {
        assert!(m.opts().get(code).is_none(), "{code:?}");
    }

    // The answer, as the `proxy` event tells it.
    let Outcome::Reply(r) = port67(&t, &pxe(MessageType::Discover, NODE, 0)) else {
        panic!("an offer")
    };
    let a = r.proxy.unwrap();
    assert_eq!(
        (a.answer, a.mac, a.node.as_deref(), a.file.as_str(), a.arch),
        (
            "offer",
            MacAddr(mac(NODE)),
            Some("n1"),
            "undionly.kpxe",
            Some(0)
        )
    );
    let stranger = port67(&t, &pxe(MessageType::Discover, STRANGER, 7));
    let Outcome::Reply(r) = stranger else {
        panic!("an offer")
    };
    assert_eq!(r.proxy.unwrap().node, None);

    // UEFI, and the grub chain; a local node gets iPXE (its local script); unknown machines
    // the subnet's unknown_profile.
    let (_, m) = reply(port67(&t, &pxe(MessageType::Discover, NODE, 7)));
    assert_eq!(file(&m), "ipxe.efi");
    let (_, m) = reply(port67(&t, &pxe(MessageType::Discover, GRUB, 7)));
    assert_eq!(file(&m), "shimx64.efi");
    let (_, m) = reply(port67(&t, &pxe(MessageType::Discover, LOCAL, 0)));
    assert_eq!(file(&m), "undionly.kpxe");
    let (_, m) = reply(port67(&t, &pxe(MessageType::Discover, STRANGER, 0)));
    assert_eq!(file(&m), "undionly.kpxe");
}

#[test]
fn ipxe_gets_its_script_and_http_boot_a_url() {
    let t = table();
    let ipxe = pxe(MessageType::Discover, NODE, 0).option(DhcpOption::UserClass(b"iPXE".to_vec()));
    let (_, m) = reply(port67(&t, &ipxe));
    assert_eq!(file(&m), "http://10.77.0.2:5248/ipxe/52-54-00-77-00-01");
    let http = Packet::new(MessageType::Discover, mac(GRUB)).options([
        DhcpOption::ClassIdentifier(b"HTTPClient:Arch:00016:UNDI:003000".to_vec()),
        DhcpOption::ClientSystemArchitecture(Architecture::from(16)),
    ]);
    let (_, m) = reply(port67(&t, &http));
    assert_eq!(file(&m), "http://10.77.0.2:5248/shimx64.efi");
    assert_eq!(
        m.opts().get(OptionCode::ClassIdentifier),
        Some(&DhcpOption::ClassIdentifier(b"HTTPClient".to_vec()))
    );
    assert_eq!(vendor(&m), None, "no PXE options for an HTTP client");
}

#[test]
fn only_netbooting_machines_with_something_to_boot_are_answered() {
    let t = table();
    // udhcpc or an OS's own client: no option 60 PXEClient.
    let plain = Packet::new(MessageType::Discover, mac(NODE));
    assert_eq!(port67(&t, &plain), Outcome::Drop(DropReason::NotNetbooting));
    assert_eq!(
        port67(&t, &pxe(MessageType::Discover, IGNORED, 0)),
        Outcome::Drop(DropReason::NothingToBoot)
    );
    // The REQUEST to the other server is never answered: it shows the machine's address.
    let req = pxe(MessageType::Request, NODE, 0)
        .requested(Ipv4Addr::new(10, 77, 3, 4))
        .server(Ipv4Addr::new(10, 77, 0, 1));
    assert_eq!(
        port67(&t, &req),
        Outcome::Seen(Sighting {
            mac: MacAddr(mac(NODE)),
            ip: Ipv4Addr::new(10, 77, 3, 4)
        })
    );
    let outside = pxe(MessageType::Request, NODE, 0).requested(Ipv4Addr::new(192, 0, 2, 4));
    assert_eq!(port67(&t, &outside), Outcome::Drop(DropReason::NotForUs));
    for kind in [
        MessageType::Release,
        MessageType::Decline,
        MessageType::Inform,
    ] {
        assert_eq!(
            port67(&t, &pxe(kind, NODE, 0)),
            Outcome::Drop(DropReason::NotForUs)
        );
    }
}

#[test]
fn a_relayed_discover_gets_its_offer_through_the_relay() {
    let t = table();
    let relayed = pxe(MessageType::Discover, NODE, 0)
        .relay(Ipv4Addr::new(10, 77, 0, 1))
        .relay_info(vec![RelayInfo::AgentCircuitId(b"port7".to_vec())]);
    let meta = Meta {
        local: Ipv4Addr::new(192, 0, 2, 10),
        ifindex: 3,
    };
    let o = server().handle(&t, &mut Leases::new(), 0, &meta, &relayed.bytes());
    let (dest, m) = reply(o);
    assert_eq!(dest, Destination::Relay(Ipv4Addr::new(10, 77, 0, 1)));
    assert_eq!(m.giaddr(), Ipv4Addr::new(10, 77, 0, 1));
    assert_eq!(m.yiaddr(), Ipv4Addr::UNSPECIFIED);
    assert!(m.opts().get(OptionCode::RelayAgentInformation).is_some());
}

#[test]
fn the_boot_server_acks_with_the_file_and_echoes_the_boot_item() {
    let t = table();
    let at = Ipv4Addr::new(10, 77, 3, 4);
    let req = pxe(MessageType::Request, NODE, 7)
        .ciaddr(at)
        .option(DhcpOption::VendorExtensions(vec![
            71, 4, 0x80, 0x00, 0x00, 0x00, 255,
        ]));
    let (o, seen) = server().boot_server(&t, &META, at, &req.bytes());
    assert_eq!(
        seen,
        Some(Sighting {
            mac: MacAddr(mac(NODE)),
            ip: at
        })
    );
    let (dest, m) = reply(o);
    assert_eq!(dest, Destination::Unicast(at));
    assert_eq!(m.opts().msg_type(), Some(MessageType::Ack));
    assert_eq!(m.ciaddr(), at);
    assert_eq!(m.yiaddr(), Ipv4Addr::UNSPECIFIED);
    assert_eq!(file(&m), "ipxe.efi");
    assert_eq!(vendor(&m), Some(vec![71, 4, 0x80, 0, 0, 0, 255]));
    // EDK2's request without a boot item gets the discovery control instead.
    let plain = pxe(MessageType::Request, NODE, 7).ciaddr(at);
    let (o, _) = server().boot_server(&t, &META, at, &plain.bytes());
    assert_eq!(vendor(&reply(o).1), Some(vec![6, 1, 8, 255]));
    // Not a proxy subnet, not netbooting, ignored, or not a request: dropped.
    let full = Table::compile(
        &Snapshot::from_json(
            snapshot("")
                .replace(r#""proxy_dhcp": true,"#, "")
                .as_bytes(),
        )
        .unwrap(),
        None,
    )
    .unwrap();
    assert!(
        !full.subnets()[0].proxy_dhcp,
        "the subnet is a full one now"
    );
    assert_eq!(
        server().boot_server(&full, &META, at, &plain.bytes()).0,
        Outcome::Drop(DropReason::NotForUs)
    );
    let mut not_pxe = Packet::new(MessageType::Request, mac(NODE)).ciaddr(at);
    not_pxe = not_pxe.option(DhcpOption::Hostname("x".into()));
    assert_eq!(
        server().boot_server(&t, &META, at, &not_pxe.bytes()).0,
        Outcome::Drop(DropReason::NotNetbooting)
    );
    assert_eq!(
        server()
            .boot_server(
                &t,
                &META,
                at,
                &pxe(MessageType::Request, IGNORED, 0).ciaddr(at).bytes()
            )
            .0,
        Outcome::Drop(DropReason::NothingToBoot)
    );
    assert_eq!(
        server()
            .boot_server(&t, &META, at, &pxe(MessageType::Discover, NODE, 0).bytes())
            .0,
        Outcome::Drop(DropReason::UnsupportedMessageType)
    );
}

#[test]
fn the_boot_server_believes_only_the_address_a_request_comes_from() {
    let t = table();
    let at = Ipv4Addr::new(10, 77, 3, 4);
    // A ciaddr other than the sender: answered (the sender gets its file), but no sighting.
    let req = pxe(MessageType::Request, NODE, 7).ciaddr(Ipv4Addr::new(10, 77, 9, 9));
    let (o, seen) = server().boot_server(&t, &META, at, &req.bytes());
    assert!(matches!(o, Outcome::Reply(_)));
    assert_eq!(seen, None);
    // A sender outside every subnet, or on a full subnet, gets nothing.
    let elsewhere = pxe(MessageType::Request, NODE, 7).ciaddr(Ipv4Addr::new(192, 0, 2, 1));
    assert_eq!(
        server()
            .boot_server(&t, &META, Ipv4Addr::new(192, 0, 2, 1), &elsewhere.bytes())
            .0,
        Outcome::Drop(DropReason::NoSubnet)
    );
}

#[test]
fn a_proxy_link_never_gets_a_lease_whatever_subnet_the_client_names() {
    // A full subnet beside the proxy one: a client on the proxy link naming it (option 118)
    // is still answered as a proxy client, never with an address or a NAK.
    let snap = Snapshot::from_json(
        snapshot("")
            .replace(
                r#"{ "unknown_profile": "live" } } ],"#,
                r#"{ "unknown_profile": "live" } },
                  { "cidr": "10.66.0.0/16", "dynamic": [ { "start": "10.66.0.10", "end": "10.66.0.20" } ] } ],"#,
            )
            .as_bytes(),
    )
    .unwrap();
    let t = Table::compile(&snap, None).unwrap();
    assert_eq!(t.subnets().len(), 2);
    for kind in [MessageType::Discover, MessageType::Request] {
        for node in [NODE, STRANGER] {
            let p = pxe(kind, node, 0)
                .option(DhcpOption::SubnetSelection(Ipv4Addr::new(10, 66, 0, 1)))
                .server(SERVER)
                .requested(Ipv4Addr::new(10, 66, 0, 10));
            match port67(&t, &p) {
                Outcome::Reply(r) => {
                    assert!(r.proxy.is_some(), "{kind:?} {node}");
                    assert_eq!(decode(&r.bytes).unwrap().yiaddr(), Ipv4Addr::UNSPECIFIED);
                }
                Outcome::Drop(_) | Outcome::Seen(_) => {}
                Outcome::Change(c) => panic!("a lease change on a proxy link: {c:?}"),
            }
        }
    }
}

#[test]
fn a_proxy_subnet_with_addresses_of_its_own_is_refused() {
    for (extra, at) in [
        (
            r#""dynamic": [ { "start": "10.77.1.1", "end": "10.77.1.9" } ],"#,
            "dynamic",
        ),
        (r#""unknown_clients": "serve","#, "unknown_clients"),
    ] {
        let snap = Snapshot::from_json(snapshot(extra).as_bytes()).unwrap();
        let problems = Table::compile(&snap, None).unwrap_err();
        assert!(
            problems
                .iter()
                .any(|p| p.to_string().contains(at) && p.to_string().contains("proxy_dhcp")),
            "{problems:?}"
        );
    }
    // "ignore" is what a proxy subnet does anyway.
    let snap = Snapshot::from_json(snapshot(r#""unknown_clients": "ignore","#).as_bytes());
    assert!(Table::compile(&snap.unwrap(), None).is_ok());
}

proptest! {
    /// Whatever arrives, on either port, a proxy subnet's answer never hands out an address.
    #[test]
    fn never_a_yiaddr(
        kind in prop::sample::select(vec![
            MessageType::Discover, MessageType::Request, MessageType::Inform,
            MessageType::Release, MessageType::Decline,
        ]),
        node in prop::sample::select(vec![NODE, LOCAL, IGNORED, GRUB, STRANGER]),
        arch in prop::sample::select(vec![0u16, 6, 7, 9, 11, 16, 19, 42]),
        ciaddr in any::<u32>(),
        requested in any::<u32>(),
        ipxe in any::<bool>(),
        relayed in any::<bool>(),
    ) {
        let t = table();
        let mut p = pxe(kind, node, arch)
            .ciaddr(Ipv4Addr::from(ciaddr))
            .requested(Ipv4Addr::from(requested));
        if ipxe {
            p = p.option(DhcpOption::UserClass(b"iPXE".to_vec()));
        }
        if relayed {
            p = p.relay(Ipv4Addr::new(10, 77, 0, 1));
        }
        let bytes = p.bytes();
        let from = Ipv4Addr::from(ciaddr);
        for o in [port67(&t, &p), server().boot_server(&t, &META, from, &bytes).0] {
            if let Outcome::Reply(r) = o {
                let m = decode(&r.bytes).unwrap();
                prop_assert_eq!(m.yiaddr(), Ipv4Addr::UNSPECIFIED);
                prop_assert!(r.change.is_none());
                prop_assert!(m.opts().get(OptionCode::AddressLeaseTime).is_none());
            }
        }
    }
}
