//! The few DHCPv4 messages a load generator sends, and the fields it reads from replies.
//!
//! Written by hand rather than with dhcproto: a request is a fixed template with the xid,
//! chaddr and two addresses patched in, and a reply needs five fields, so this is a few
//! hundred nanoseconds per exchange where a general codec (allocating options maps) would
//! cost the generator the rate it exists to reach. Every read is bounds-checked: a short,
//! truncated or hostile reply is `None`, never a panic.

use std::net::Ipv4Addr;

/// The options cookie (RFC 2131 §3).
pub const MAGIC: [u8; 4] = [99, 130, 83, 99];
/// Message types (option 53).
pub const DISCOVER: u8 = 1;
/// DHCPOFFER.
pub const OFFER: u8 = 2;
/// DHCPREQUEST.
pub const REQUEST: u8 = 3;
/// DHCPDECLINE.
pub const DECLINE: u8 = 4;
/// DHCPACK.
pub const ACK: u8 = 5;
/// DHCPNAK.
pub const NAK: u8 = 6;
/// DHCPRELEASE.
pub const RELEASE: u8 = 7;

/// The smallest BOOTP message (RFC 1542 §2.1); the generator pads to it, as clients do.
const BOOTP_MIN: usize = 300;
/// What the generator asks for (option 55).
const PARAMS: [u8; 9] = [1, 3, 6, 12, 15, 51, 54, 66, 67];

/// What a request says besides its type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Client {
    /// Transaction id.
    pub xid: u32,
    /// Hardware address.
    pub mac: [u8; 6],
    /// The relay address (giaddr) the generator poses as, or unspecified for a direct client.
    pub giaddr: Ipv4Addr,
    /// Client architecture (option 93), if it sends one.
    pub arch: Option<u16>,
    /// Whether it is iPXE (user class "iPXE", option 77), which servers give a script URL.
    pub ipxe: bool,
}

fn header(out: &mut Vec<u8>, c: &Client, ciaddr: Ipv4Addr) {
    out.clear();
    out.extend_from_slice(&[1, 1, 6, if c.giaddr.is_unspecified() { 0 } else { 1 }]);
    out.extend_from_slice(&c.xid.to_be_bytes());
    out.extend_from_slice(&[0, 0]); // secs
    // A direct client asks for broadcast replies (it has no address yet); through a relay,
    // replies go to the relay.
    out.extend_from_slice(if c.giaddr.is_unspecified() {
        &[0x80, 0]
    } else {
        &[0, 0]
    });
    out.extend_from_slice(&ciaddr.octets());
    out.extend_from_slice(&[0; 8]); // yiaddr, siaddr
    out.extend_from_slice(&c.giaddr.octets());
    out.extend_from_slice(&c.mac);
    out.extend_from_slice(&[0; 10 + 64 + 128]); // chaddr padding, sname, file
    out.extend_from_slice(&MAGIC);
}

fn finish(out: &mut Vec<u8>, c: &Client) {
    out.extend_from_slice(&[55, PARAMS.len() as u8]);
    out.extend_from_slice(&PARAMS);
    if let Some(a) = c.arch {
        out.extend_from_slice(&[93, 2]);
        out.extend_from_slice(&a.to_be_bytes());
        // Option 60 as PXE firmware sends it (a proxyDHCP server answers only these).
        let class = if matches!(a, 16 | 19) {
            format!("HTTPClient:Arch:{a:05}:UNDI:003000")
        } else {
            format!("PXEClient:Arch:{a:05}:UNDI:002001")
        };
        out.push(60);
        out.push(class.len() as u8);
        out.extend_from_slice(class.as_bytes());
    }
    if c.ipxe {
        // As iPXE sends it: the bare string, not RFC 3004's length-prefixed instances (what
        // ISC and Kea configurations match on).
        out.extend_from_slice(&[77, 4, b'i', b'P', b'X', b'E']);
    }
    out.push(255);
    if out.len() < BOOTP_MIN {
        out.resize(BOOTP_MIN, 0);
    }
}

/// A DHCPDISCOVER.
pub fn discover(out: &mut Vec<u8>, c: &Client) {
    header(out, c, Ipv4Addr::UNSPECIFIED);
    out.extend_from_slice(&[53, 1, DISCOVER]);
    finish(out, c);
}

/// A DHCPREQUEST in SELECTING state: `ip` from the offer of `server`.
pub fn request(out: &mut Vec<u8>, c: &Client, ip: Ipv4Addr, server: Ipv4Addr) {
    header(out, c, Ipv4Addr::UNSPECIFIED);
    out.extend_from_slice(&[53, 1, REQUEST, 50, 4]);
    out.extend_from_slice(&ip.octets());
    out.extend_from_slice(&[54, 4]);
    out.extend_from_slice(&server.octets());
    finish(out, c);
}

/// A DHCPRELEASE of `ip` to `server`.
pub fn release(out: &mut Vec<u8>, c: &Client, ip: Ipv4Addr, server: Ipv4Addr) {
    header(out, c, ip);
    out.extend_from_slice(&[53, 1, RELEASE, 54, 4]);
    out.extend_from_slice(&server.octets());
    finish(out, c);
}

/// What the generator reads from a server's reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reply<'a> {
    /// Transaction id.
    pub xid: u32,
    /// The client's hardware address.
    pub mac: [u8; 6],
    /// Option 53.
    pub kind: u8,
    /// The address handed out.
    pub yiaddr: Ipv4Addr,
    /// Next bootstrap server.
    pub siaddr: Ipv4Addr,
    /// Option 54.
    pub server_id: Option<Ipv4Addr>,
    /// The boot file: option 67, else the `file` field (NULs trimmed), if not empty.
    pub file: Option<&'a [u8]>,
    /// The first DNS server (option 6).
    pub dns: Option<Ipv4Addr>,
    /// Option 12.
    pub hostname: Option<&'a [u8]>,
    /// Option 15.
    pub domain: Option<&'a [u8]>,
}

fn ip_at(b: &[u8], at: usize) -> Option<Ipv4Addr> {
    let o: [u8; 4] = b.get(at..at + 4)?.try_into().ok()?;
    Some(Ipv4Addr::from(o))
}

/// Whether `b` is a BOOTP message of opcode `op` (1 request, 2 reply) with Ethernet addresses
/// and the options cookie.
fn is_bootp(b: &[u8], op: u8) -> bool {
    b.len() >= 240 && b[0] == op && b[1] == 1 && b[2] == 6 && b[236..240] == MAGIC
}

/// Calls `visit(code, value)` for each option after the cookie, up to END; `None` if an
/// option runs past the end of the message.
fn walk_options<'a>(b: &'a [u8], mut visit: impl FnMut(u8, &'a [u8])) -> Option<()> {
    let mut i = 240;
    while i < b.len() {
        match b[i] {
            0 => i += 1,
            255 => break,
            code => {
                let len = usize::from(*b.get(i + 1)?);
                visit(code, b.get(i + 2..i + 2 + len)?);
                i += 2 + len;
            }
        }
    }
    Some(())
}

/// Reads a BOOTREPLY; `None` if it is not a well-formed one.
pub fn parse_reply(b: &[u8]) -> Option<Reply<'_>> {
    if !is_bootp(b, 2) {
        return None;
    }
    let xid = u32::from_be_bytes(b[4..8].try_into().ok()?);
    let mut mac = [0u8; 6];
    mac.copy_from_slice(&b[28..34]);
    let mut kind = None;
    let mut server_id = None;
    let mut file_opt = None;
    let (mut dns, mut hostname, mut domain) = (None, None, None);
    walk_options(b, |code, v| match (code, v.len()) {
        (53, 1) => kind = Some(v[0]),
        (54, 4) => server_id = ip_at(v, 0),
        (67, n) if n > 0 => file_opt = Some(v),
        (6, n) if n >= 4 => dns = ip_at(v, 0),
        (12, n) if n > 0 => hostname = Some(v),
        (15, n) if n > 0 => domain = Some(v),
        _ => {}
    })?;
    let field = &b[108..236];
    let end = field.iter().position(|c| *c == 0).unwrap_or(field.len());
    let file = file_opt
        .map(|f| &f[..f.iter().position(|c| *c == 0).unwrap_or(f.len())])
        .or((end > 0).then(|| &field[..end]))
        .filter(|f| !f.is_empty());
    Some(Reply {
        xid,
        mac,
        kind: kind?,
        yiaddr: ip_at(b, 16)?,
        siaddr: ip_at(b, 20)?,
        server_id,
        file,
        dns,
        hostname,
        domain,
    })
}

/// What the generator's own stateless responder reads from a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Request {
    /// Transaction id.
    pub xid: u32,
    /// Hardware address.
    pub mac: [u8; 6],
    /// The relay's address.
    pub giaddr: Ipv4Addr,
    /// Option 53.
    pub kind: u8,
    /// Option 50.
    pub requested: Option<Ipv4Addr>,
}

/// Reads a BOOTREQUEST; `None` if it is not a well-formed one.
pub fn parse_request(b: &[u8]) -> Option<Request> {
    if !is_bootp(b, 1) {
        return None;
    }
    let mut mac = [0u8; 6];
    mac.copy_from_slice(&b[28..34]);
    let (mut kind, mut requested) = (None, None);
    walk_options(b, |code, v| match (code, v.len()) {
        (53, 1) => kind = Some(v[0]),
        (50, 4) => requested = ip_at(v, 0),
        _ => {}
    })?;
    Some(Request {
        xid: u32::from_be_bytes(b[4..8].try_into().ok()?),
        mac,
        giaddr: ip_at(b, 24)?,
        kind: kind?,
        requested,
    })
}

/// A reply from the stateless responder: `kind` to `req`, handing out `yiaddr`.
pub fn reply(out: &mut Vec<u8>, req: &Request, kind: u8, yiaddr: Ipv4Addr, server: Ipv4Addr) {
    out.clear();
    out.extend_from_slice(&[2, 1, 6, 0]);
    out.extend_from_slice(&req.xid.to_be_bytes());
    out.extend_from_slice(&[0; 8]); // secs, flags, ciaddr
    out.extend_from_slice(&yiaddr.octets());
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&req.giaddr.octets());
    out.extend_from_slice(&req.mac);
    out.extend_from_slice(&[0; 10 + 64 + 128]);
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&[53, 1, kind, 54, 4]);
    out.extend_from_slice(&server.octets());
    out.extend_from_slice(&[51, 4, 0, 0, 0x0e, 0x10, 1, 4, 255, 255, 0, 0, 255]);
    if out.len() < BOOTP_MIN {
        out.resize(BOOTP_MIN, 0);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use proptest::prelude::*;

    const C: Client = Client {
        xid: 0xdead_beef,
        mac: [2, 0, 0, 0, 1, 2],
        giaddr: Ipv4Addr::new(10, 0, 0, 2),
        arch: Some(7),
        ipxe: false,
    };

    #[test]
    fn requests_round_trip_through_the_responder_codec() {
        let mut out = Vec::new();
        discover(&mut out, &C);
        assert_eq!(out.len(), BOOTP_MIN);
        let r = parse_request(&out).unwrap();
        assert_eq!(
            (r.xid, r.mac, r.kind, r.giaddr),
            (C.xid, C.mac, DISCOVER, C.giaddr)
        );
        request(
            &mut out,
            &C,
            Ipv4Addr::new(10, 0, 5, 5),
            Ipv4Addr::new(10, 0, 0, 1),
        );
        let r = parse_request(&out).unwrap();
        assert_eq!(
            (r.kind, r.requested),
            (REQUEST, Some(Ipv4Addr::new(10, 0, 5, 5)))
        );
        let mut rep = Vec::new();
        reply(
            &mut rep,
            &r,
            ACK,
            Ipv4Addr::new(10, 0, 5, 5),
            Ipv4Addr::new(10, 0, 0, 1),
        );
        let p = parse_reply(&rep).unwrap();
        assert_eq!(p.kind, ACK);
        assert_eq!(p.xid, C.xid);
        assert_eq!(p.mac, C.mac);
        assert_eq!(p.yiaddr, Ipv4Addr::new(10, 0, 5, 5));
        assert_eq!(p.server_id, Some(Ipv4Addr::new(10, 0, 0, 1)));
        assert_eq!(p.file, None);
    }

    #[test]
    fn boot_file_from_option_67_or_the_file_field() {
        let r = Request {
            xid: 1,
            mac: C.mac,
            giaddr: C.giaddr,
            kind: DISCOVER,
            requested: None,
        };
        let mut rep = Vec::new();
        reply(
            &mut rep,
            &r,
            OFFER,
            Ipv4Addr::new(10, 0, 5, 5),
            Ipv4Addr::new(10, 0, 0, 1),
        );
        rep[108..118].copy_from_slice(b"pxelinux.0");
        assert_eq!(parse_reply(&rep).unwrap().file, Some(&b"pxelinux.0"[..]));
        let end = rep.iter().rposition(|b| *b == 255).unwrap();
        rep.truncate(end);
        rep.extend_from_slice(&[67, 11]);
        rep.extend_from_slice(b"ipxe.efi\0\0\0");
        rep.push(255);
        assert_eq!(parse_reply(&rep).unwrap().file, Some(&b"ipxe.efi"[..]));
    }

    proptest! {
        #[test]
        fn hostile_bytes_never_panic(b in proptest::collection::vec(any::<u8>(), 0..600)) {
            let _ = parse_reply(&b);
            let _ = parse_request(&b);
        }

        #[test]
        fn truncated_replies_never_panic(cut in 0usize..400) {
            let r = Request { xid: 1, mac: C.mac, giaddr: C.giaddr, kind: DISCOVER, requested: None };
            let mut rep = Vec::new();
            reply(&mut rep, &r, OFFER, Ipv4Addr::new(10, 0, 5, 5), Ipv4Addr::new(10, 0, 0, 1));
            rep.truncate(cut.min(rep.len()));
            let _ = parse_reply(&rep);
        }
    }
}
