//! The requests real clients sent pserv (udhcpc, dhclient, perfdhcp, captured by
//! `fuzz/capture/capture.sh` into the fuzz seed corpus), replayed in order against the bundled
//! example: every one is understood, and answered as the client expects.

#![allow(clippy::unwrap_used)]

use std::net::Ipv4Addr;
use std::path::PathBuf;

use dhcproto::Decodable;
use dhcproto::v4::{DhcpOption, Message, MessageType, OptionCode};
use pserv_core::Table;
use pserv_core::snapshot::{EXAMPLE_JSON, Snapshot};
use pserv_dhcp::server::decode;
use pserv_dhcp::{Meta, Outcome, Standalone};

const NOW: u64 = 1_800_000_000;
const SERVER: Ipv4Addr = Ipv4Addr::new(10, 20, 0, 2);
const AAA: [u8; 6] = [0x52, 0x54, 0x00, 0x12, 0x34, 0x56]; // reserved 10.20.0.10
const AAA_IP: Ipv4Addr = Ipv4Addr::new(10, 20, 0, 10);

/// The captured seeds of one client, in capture order.
fn seeds(client: &str) -> Vec<(String, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/dhcp_datagram");
    let prefix = format!("seed-capture-{client}-");
    let mut v: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with(&prefix)
        })
        .map(|p| {
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                std::fs::read(&p).unwrap(),
            )
        })
        .collect();
    v.sort();
    assert!(v.len() >= 4, "{client}: only {} captured seeds", v.len());
    v
}

fn requested(m: &Message) -> Option<Ipv4Addr> {
    match m.opts().get(OptionCode::RequestedIpAddress) {
        Some(DhcpOption::RequestedIpAddress(a)) => Some(*a),
        _ => None,
    }
}

fn replay(client: &str) -> usize {
    let table =
        Table::compile(&Snapshot::from_json(EXAMPLE_JSON.as_bytes()).unwrap(), None).unwrap();
    let mut s = Standalone::default();
    let meta = Meta {
        local: SERVER,
        ifindex: 2,
    };
    let mut answered = 0;
    for (name, bytes) in seeds(client) {
        let req = Message::from_bytes(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
        let kind = req.opts().msg_type().unwrap();
        let own = req.chaddr()[..6] == AAA;
        let wants = requested(&req).unwrap_or(req.ciaddr());
        match (kind, s.handle(&table, NOW, &meta, &bytes)) {
            (MessageType::Discover, Outcome::Reply(r)) => {
                let m = decode(&r.bytes).unwrap();
                assert_eq!(r.kind, MessageType::Offer, "{name}");
                assert!(table.subnets()[0].is_host(m.yiaddr()), "{name}");
                if own {
                    assert_eq!(m.yiaddr(), AAA_IP, "{name}: the reservation");
                } else if let Some(a) = requested(&req) {
                    assert_eq!(m.yiaddr(), a, "{name}: the free address it asked for");
                }
                check_boot(&name, &req, &m);
                answered += 1;
            }
            (MessageType::Request, Outcome::Reply(r)) => {
                let m = decode(&r.bytes).unwrap();
                if wants == AAA_IP && !own {
                    // dhclient with a new MAC and an old lease file asks for another node's
                    // reservation (INIT-REBOOT): NAK, and it starts over.
                    assert_eq!(r.kind, MessageType::Nak, "{name}");
                } else {
                    assert_eq!(r.kind, MessageType::Ack, "{name}");
                    assert_eq!(m.yiaddr(), wants, "{name}");
                    check_boot(&name, &req, &m);
                }
                answered += 1;
            }
            (MessageType::Release, Outcome::Change(_)) => answered += 1,
            (kind, other) => panic!("{name}: {kind:?} got {other:?}"),
        }
    }
    answered
}

/// A PXE client (option 93) gets its architecture's file; iPXE (user class) the script URL.
fn check_boot(name: &str, req: &Message, reply: &Message) {
    let raw = reply.fname().unwrap_or_default();
    let end = raw.iter().position(|b| *b == 0).unwrap_or(raw.len());
    let file = String::from_utf8_lossy(&raw[..end]).into_owned();
    if let Some(DhcpOption::UserClass(uc)) = req.opts().get(OptionCode::UserClass)
        && uc.windows(4).any(|w| w == b"iPXE")
    {
        assert_eq!(file, "http://10.20.0.2:5248/ipxe.cfg", "{name}");
        return;
    }
    if req
        .opts()
        .get(OptionCode::ClientSystemArchitecture)
        .is_some()
    {
        assert_eq!(file, "bootx64.efi", "{name}: x86-64 UEFI (type 7)");
    }
}

#[test]
fn udhcpc_requests_are_answered_as_it_expects() {
    assert!(replay("udhcpc") >= 10);
}

#[test]
fn dhclient_requests_are_answered_as_it_expects() {
    assert!(replay("dhclient") >= 7);
}

#[test]
fn perfdhcp_relayed_requests_are_answered_as_it_expects() {
    assert!(replay("perfdhcp") >= 4);
}
