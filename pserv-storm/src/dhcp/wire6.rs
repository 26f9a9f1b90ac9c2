//! The few DHCPv6 messages the load generator sends, each inside a RELAY-FORW as a relay
//! agent forwards it (RFC 8415 §9), and the fields it reads from the servers' RELAY-REPLs.
//!
//! Written by hand, as the DHCPv4 side is: a request is a template with the transaction id,
//! the client's DUID-LL and an address patched in, and a reply needs four fields. Every read
//! is bounds-checked: a short, truncated or hostile reply is `None`, never a panic.

use std::net::Ipv6Addr;

use super::{Answer, Kind};

/// SOLICIT.
pub const SOLICIT: u8 = 1;
/// ADVERTISE.
pub const ADVERTISE: u8 = 2;
/// REQUEST.
pub const REQUEST: u8 = 3;
/// REPLY.
pub const REPLY: u8 = 7;
/// RELAY-FORW.
pub const RELAY_FORW: u8 = 12;
/// RELAY-REPL.
pub const RELAY_REPL: u8 = 13;

const OPT_CLIENTID: u16 = 1;
const OPT_SERVERID: u16 = 2;
const OPT_IA_NA: u16 = 3;
const OPT_IAADDR: u16 = 5;
const OPT_ORO: u16 = 6;
const OPT_ELAPSED_TIME: u16 = 8;
const OPT_RELAY_MSG: u16 = 9;
const OPT_STATUS_CODE: u16 = 13;
const OPT_DNS_SERVERS: u16 = 23;
const OPT_BOOTFILE_URL: u16 = 59;
const OPT_CLIENT_ARCH: u16 = 61;
/// The IA_NA's identifier every generated client uses.
pub const IAID: u32 = 1;

/// A relay's header: type, hop count, link address, peer address (RFC 8415 §9).
const RELAY_HEADER: usize = 34;

/// The link-local address a client with `mac` sends from (modified EUI-64, RFC 4291).
pub fn link_local(mac: [u8; 6]) -> Ipv6Addr {
    Ipv6Addr::from([
        0xfe,
        0x80,
        0,
        0,
        0,
        0,
        0,
        0,
        mac[0] ^ 2,
        mac[1],
        mac[2],
        0xff,
        0xfe,
        mac[3],
        mac[4],
        mac[5],
    ])
}

fn option(out: &mut Vec<u8>, code: u16, body: &[u8]) {
    out.extend_from_slice(&code.to_be_bytes());
    out.extend_from_slice(&(body.len() as u16).to_be_bytes());
    out.extend_from_slice(body);
}

/// A client message (`kind`) of the client with `mac`, relayed from `relay`: its DUID-LL, one
/// IA_NA (holding `addr` when it asks for one), the server's DUID when it names one, and for
/// a netbooting client (`arch`, option 61) a request for the boot file URL (option 59).
#[allow(clippy::too_many_arguments)]
fn relayed(
    out: &mut Vec<u8>,
    relay: Ipv6Addr,
    mac: [u8; 6],
    kind: u8,
    xid: u32,
    addr: Option<Ipv6Addr>,
    server: Option<&[u8]>,
    arch: Option<u16>,
) {
    out.clear();
    out.extend_from_slice(&[RELAY_FORW, 0]);
    out.extend_from_slice(&relay.octets());
    out.extend_from_slice(&link_local(mac).octets());
    out.extend_from_slice(&OPT_RELAY_MSG.to_be_bytes());
    let len_at = out.len();
    out.extend_from_slice(&[0, 0]);
    let start = out.len();
    out.push(kind);
    out.extend_from_slice(&xid.to_be_bytes()[1..]);
    let mut duid = [0u8; 10];
    duid[..4].copy_from_slice(&[0, 3, 0, 1]);
    duid[4..].copy_from_slice(&mac);
    option(out, OPT_CLIENTID, &duid);
    if let Some(s) = server {
        option(out, OPT_SERVERID, s);
    }
    let mut ia = [0u8; 12 + 28];
    ia[..4].copy_from_slice(&IAID.to_be_bytes());
    let ia_len = match addr {
        Some(a) => {
            ia[12..14].copy_from_slice(&OPT_IAADDR.to_be_bytes());
            ia[14..16].copy_from_slice(&24u16.to_be_bytes());
            ia[16..32].copy_from_slice(&a.octets());
            40
        }
        None => 12,
    };
    option(out, OPT_IA_NA, &ia[..ia_len]);
    option(out, OPT_ELAPSED_TIME, &[0, 0]);
    match arch {
        Some(a) => {
            option(out, OPT_ORO, &[0, 59, 0, 23, 0, 24]);
            option(out, OPT_CLIENT_ARCH, &a.to_be_bytes());
        }
        None => option(out, OPT_ORO, &[0, 23, 0, 24]),
    }
    let len = (out.len() - start) as u16;
    out[len_at..len_at + 2].copy_from_slice(&len.to_be_bytes());
}

/// A SOLICIT (no Rapid Commit: the four-message exchange).
pub fn solicit(out: &mut Vec<u8>, relay: Ipv6Addr, mac: [u8; 6], xid: u32) {
    relayed(out, relay, mac, SOLICIT, xid, None, None, None);
}

/// A netbooting client's SOLICIT: its architecture (option 61) and a request for option 59.
pub fn solicit_boot(out: &mut Vec<u8>, relay: Ipv6Addr, mac: [u8; 6], xid: u32, arch: u16) {
    relayed(out, relay, mac, SOLICIT, xid, None, None, Some(arch));
}

/// A netbooting client's REQUEST (see [`solicit_boot`]).
pub fn request_boot(
    out: &mut Vec<u8>,
    relay: Ipv6Addr,
    mac: [u8; 6],
    xid: u32,
    addr: Ipv6Addr,
    server: &[u8],
    arch: u16,
) {
    relayed(
        out,
        relay,
        mac,
        REQUEST,
        xid,
        Some(addr),
        Some(server),
        Some(arch),
    );
}

/// A REQUEST for `addr`, advertised by the server with DUID `server`.
pub fn request(
    out: &mut Vec<u8>,
    relay: Ipv6Addr,
    mac: [u8; 6],
    xid: u32,
    addr: Ipv6Addr,
    server: &[u8],
) {
    relayed(
        out,
        relay,
        mac,
        REQUEST,
        xid,
        Some(addr),
        Some(server),
        None,
    );
}

/// The options of `b`, as (code, body), stopping at the first that overruns.
fn options(mut b: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    std::iter::from_fn(move || {
        let code = u16::from_be_bytes([*b.first()?, *b.get(1)?]);
        let len = usize::from(u16::from_be_bytes([*b.get(2)?, *b.get(3)?]));
        let body = b.get(4..4 + len)?;
        b = &b[4 + len..];
        Some((code, body))
    })
}

/// The hardware address in a DUID-LL or DUID-LLT of Ethernet.
fn duid_mac(d: &[u8]) -> Option<[u8; 6]> {
    let at = match d.get(..4)? {
        [0, 3, 0, 1] => 4,
        [0, 1, 0, 1] => 8,
        _ => return None,
    };
    d.get(at..at + 6)?.try_into().ok()
}

/// A status code's value, where its option is whole.
fn status(body: &[u8]) -> Option<u16> {
    Some(u16::from_be_bytes([*body.first()?, *body.get(1)?]))
}

/// The client message inside a relay message (`None` unless `b` is a relay message of
/// `relay_kind` with one layer).
fn inner(b: &[u8], relay_kind: u8) -> Option<&[u8]> {
    if *b.first()? != relay_kind {
        return None;
    }
    relay_message(b)
}

/// The message in a relay message's RELAY_MSG option (RELAY-FORW or RELAY-REPL, unchecked),
/// its relay framing read by hand: dhcproto reads that payload as another relay message.
pub fn relay_message(b: &[u8]) -> Option<&[u8]> {
    options(b.get(RELAY_HEADER..)?).find_map(|(c, body)| (c == OPT_RELAY_MSG).then_some(body))
}

/// What the generator reads from a RELAY-REPL: the ADVERTISE or REPLY inside, its client
/// (by DUID-LL or DUID-LLT), its server's DUID, and the first address with a valid lifetime
/// in its IA_NAs (none when an IA or the message carries a status other than Success).
pub fn parse_reply(b: &[u8]) -> Option<Answer<Ipv6Addr, Box<[u8]>>> {
    read_reply(b).map(|r| r.answer)
}

/// A reply as a netbooting client reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootReply {
    /// What [`parse_reply`] reads.
    pub answer: Answer<Ipv6Addr, Box<[u8]>>,
    /// The boot file URL (option 59).
    pub url: Option<String>,
    /// The first DNS server (option 23).
    pub dns: Option<Ipv6Addr>,
}

/// [`parse_reply`] with the boot file URL and DNS server.
pub fn read_reply(b: &[u8]) -> Option<BootReply> {
    let m = inner(b, RELAY_REPL)?;
    let kind = *m.first()?;
    if kind != ADVERTISE && kind != REPLY {
        return None;
    }
    let xid = u32::from_be_bytes([0, *m.get(1)?, *m.get(2)?, *m.get(3)?]);
    let (mut mac, mut server, mut addr, mut refused) = (None, None, None, false);
    let (mut url, mut dns) = (None, None);
    for (code, body) in options(m.get(4..)?) {
        match code {
            OPT_BOOTFILE_URL => url = Some(String::from_utf8_lossy(body).into_owned()),
            OPT_DNS_SERVERS => {
                dns = body
                    .get(..16)
                    .and_then(|a| <[u8; 16]>::try_from(a).ok())
                    .map(Ipv6Addr::from);
            }
            OPT_CLIENTID => mac = duid_mac(body),
            OPT_SERVERID => server = Some(Box::from(body)),
            OPT_IA_NA if addr.is_none() => {
                // A short IA or IAADDR is passed over, not the whole reply.
                for (c, sub) in options(body.get(12..).unwrap_or_default()) {
                    match c {
                        OPT_IAADDR => {
                            let (Some(a), Some(valid)) = (
                                sub.get(..16).and_then(|a| <[u8; 16]>::try_from(a).ok()),
                                sub.get(20..24).and_then(|v| <[u8; 4]>::try_from(v).ok()),
                            ) else {
                                continue;
                            };
                            // Lifetime 0: an address the client may not keep.
                            if u32::from_be_bytes(valid) > 0 && addr.is_none() {
                                addr = Some(Ipv6Addr::from(a));
                            }
                        }
                        OPT_STATUS_CODE => refused |= status(sub) != Some(0),
                        _ => {}
                    }
                }
            }
            OPT_STATUS_CODE => refused |= status(body) != Some(0),
            _ => {}
        }
    }
    let kind = match (addr.filter(|_| !refused), kind) {
        (Some(_), ADVERTISE) => Kind::Offer,
        (Some(_), _) => Kind::Ack,
        (None, _) => Kind::Nak,
    };
    Some(BootReply {
        answer: Answer {
            xid,
            mac: mac?,
            kind,
            addr: addr.unwrap_or(Ipv6Addr::UNSPECIFIED),
            server,
        },
        url,
        dns,
    })
}

/// What a server reads from a generated request (the engine's tests, a responder).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// SOLICIT or REQUEST.
    pub kind: u8,
    /// Transaction id.
    pub xid: u32,
    /// The relay's link address.
    pub link: Ipv6Addr,
    /// The relay's peer address (the client's).
    pub peer: Ipv6Addr,
    /// The client's DUID.
    pub duid: Vec<u8>,
    /// The address its IA_NA names.
    pub requested: Option<Ipv6Addr>,
    /// The server DUID it names.
    pub server: Option<Vec<u8>>,
}

/// Reads a generated RELAY-FORW.
pub fn parse_request(b: &[u8]) -> Option<Request> {
    let link: [u8; 16] = b.get(2..18)?.try_into().ok()?;
    let peer: [u8; 16] = b.get(18..34)?.try_into().ok()?;
    let m = inner(b, RELAY_FORW)?;
    let mut r = Request {
        kind: *m.first()?,
        xid: u32::from_be_bytes([0, *m.get(1)?, *m.get(2)?, *m.get(3)?]),
        link: Ipv6Addr::from(link),
        peer: Ipv6Addr::from(peer),
        duid: Vec::new(),
        requested: None,
        server: None,
    };
    for (code, body) in options(m.get(4..)?) {
        match code {
            OPT_CLIENTID => r.duid = body.to_vec(),
            OPT_SERVERID => r.server = Some(body.to_vec()),
            OPT_IA_NA => {
                r.requested = options(body.get(12..)?).find_map(|(c, sub)| {
                    (c == OPT_IAADDR)
                        .then(|| sub.get(..16)?.try_into().ok().map(|a: [u8; 16]| a.into()))
                        .flatten()
                });
            }
            _ => {}
        }
    }
    Some(r)
}

/// A RELAY-REPL answering `req` with `kind` (ADVERTISE, REPLY), giving `addr` (none: the IA's
/// NoAddrsAvail), from the server with DUID `server`.
pub fn reply(out: &mut Vec<u8>, req: &Request, kind: u8, addr: Option<Ipv6Addr>, server: &[u8]) {
    out.clear();
    out.extend_from_slice(&[RELAY_REPL, 0]);
    // The relay's addresses, copied from its RELAY-FORW (RFC 8415 §9.2).
    out.extend_from_slice(&req.link.octets());
    out.extend_from_slice(&req.peer.octets());
    let mut m = vec![kind];
    m.extend_from_slice(&req.xid.to_be_bytes()[1..]);
    option(&mut m, OPT_CLIENTID, &req.duid);
    option(&mut m, OPT_SERVERID, server);
    let mut ia = IAID.to_be_bytes().to_vec();
    ia.extend_from_slice(&[0; 8]);
    match addr {
        Some(a) => {
            let mut sub = a.octets().to_vec();
            sub.extend_from_slice(&3000u32.to_be_bytes());
            sub.extend_from_slice(&4000u32.to_be_bytes());
            option(&mut ia, OPT_IAADDR, &sub);
        }
        None => option(&mut ia, OPT_STATUS_CODE, &[0, 2]),
    }
    option(&mut m, OPT_IA_NA, &ia);
    option(out, OPT_RELAY_MSG, &m);
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const MAC: [u8; 6] = [2, 0x5e, 0, 0, 0, 7];

    #[test]
    fn requests_are_relayed_and_read_back() {
        let relay: Ipv6Addr = "fd00:77::2".parse().unwrap();
        let mut out = Vec::new();
        solicit(&mut out, relay, MAC, 0x00ab_cdef);
        assert_eq!(out[0], RELAY_FORW);
        assert_eq!(&out[18..34], &link_local(MAC).octets());
        let r = parse_request(&out).unwrap();
        assert_eq!((r.kind, r.xid, r.link), (SOLICIT, 0x00ab_cdef, relay));
        assert_eq!(r.duid, [0, 3, 0, 1, 2, 0x5e, 0, 0, 0, 7]);
        assert_eq!((r.requested, r.server), (None, None));
        let a: Ipv6Addr = "fd00:77::1:5".parse().unwrap();
        request(&mut out, relay, MAC, 9, a, &[0, 4, 1, 2, 3]);
        let r = parse_request(&out).unwrap();
        assert_eq!(r.kind, REQUEST);
        assert_eq!(
            (r.requested, r.server),
            (Some(a), Some(vec![0, 4, 1, 2, 3]))
        );
        // The relay message's length covers the client message exactly.
        let len = usize::from(u16::from_be_bytes([out[36], out[37]]));
        assert_eq!(out.len(), 38 + len);
    }

    #[test]
    fn replies_give_kind_client_server_and_address() {
        let relay: Ipv6Addr = "fd00:77::2".parse().unwrap();
        let mut req = Vec::new();
        solicit(&mut req, relay, MAC, 77);
        let req = parse_request(&req).unwrap();
        let a: Ipv6Addr = "fd00:77::1:5".parse().unwrap();
        let mut out = Vec::new();
        reply(&mut out, &req, ADVERTISE, Some(a), &[0, 4, 9]);
        let r = parse_reply(&out).unwrap();
        assert_eq!((r.kind, r.xid, r.mac, r.addr), (Kind::Offer, 77, MAC, a));
        assert_eq!(r.server.as_deref(), Some(&[0u8, 4, 9][..]));
        reply(&mut out, &req, REPLY, Some(a), &[0, 4, 9]);
        assert_eq!(parse_reply(&out).unwrap().kind, Kind::Ack);
        reply(&mut out, &req, REPLY, None, &[0, 4, 9]);
        assert_eq!(parse_reply(&out).unwrap().kind, Kind::Nak);
    }

    #[test]
    fn short_and_hostile_replies_are_none() {
        let relay: Ipv6Addr = "fd00:77::2".parse().unwrap();
        let mut req = Vec::new();
        solicit(&mut req, relay, MAC, 1);
        let req = parse_request(&req).unwrap();
        let mut out = Vec::new();
        reply(&mut out, &req, REPLY, Some(relay), &[0, 4, 9]);
        for n in 0..out.len() {
            // Every truncation is read without a panic (most are None).
            let _ = parse_reply(&out[..n]);
        }
        assert!(parse_reply(&out[..RELAY_HEADER]).is_none());
        let mut forw = out.clone();
        forw[0] = RELAY_FORW;
        assert!(parse_reply(&forw).is_none());
        // A relay message claiming more than there is.
        let mut long = out.clone();
        long[36] = 0xff;
        assert!(parse_reply(&long).is_none());
    }
}
