//! DHCPv6 framing that dhcproto does not do, or does not do safely: the relay layers
//! (RFC 8415 §9), which are read and written here by hand because dhcproto 0.15 decodes the
//! payload of every RELAY_MSG option as another relay message (the innermost relay's carries
//! a client message, which it then misreads), and a length check of every option of a client
//! message before dhcproto decodes it (its decoder reads a fixed size for fixed-size options
//! whatever the length says, and so loses its place on a wrong length; it subtracts from the
//! length of STATUS_CODE and VENDOR_CLASS unchecked; and it drops, silently, every option after
//! one it cannot decode).

use std::net::Ipv6Addr;

use pserv_core::MacAddr;

/// RELAY-FORW and RELAY-REPL (RFC 8415 §7.3).
pub(crate) const RELAY_FORW: u8 = 12;
pub(crate) const RELAY_REPL: u8 = 13;
/// Option codes read or written here.
pub(crate) const OPT_RELAY_MSG: u16 = 9;
pub(crate) const OPT_INTERFACE_ID: u16 = 18;
pub(crate) const OPT_CLIENT_LINKLAYER: u16 = 79;
/// RFC 8415 §7.6: HOP_COUNT_LIMIT.
const HOP_COUNT_LIMIT: usize = 8;

/// Why a datagram is not a DHCPv6 request we can read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Malformed {
    /// Too short, an option running past its end, or a relay without a message.
    Framing,
    /// An option with a length its code does not allow.
    OptionLength(u16),
    /// A message type a server never receives (ADVERTISE, REPLY, RELAY-REPL, RECONFIGURE...).
    NotARequest,
    /// More relay layers than HOP_COUNT_LIMIT.
    TooManyRelays,
}

/// One relay agent the request passed through (outermost first in [`Unwrapped::relays`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Relay {
    pub(crate) hop: u8,
    /// The link the client is on (unspecified or link-local when the relay has no global
    /// address there).
    pub(crate) link: Ipv6Addr,
    /// The client's (or the next relay's) address.
    pub(crate) peer: Ipv6Addr,
    /// Option 18, echoed in the reply (RFC 8415 §21.18).
    pub(crate) interface_id: Option<Vec<u8>>,
    /// The client's Ethernet address (option 79, RFC 6939, hardware type 1).
    pub(crate) lladdr: Option<MacAddr>,
}

/// A request with its relay layers taken off.
#[derive(Debug)]
pub(crate) struct Unwrapped<'a> {
    /// Outermost first.
    pub(crate) relays: Vec<Relay>,
    /// The client's message, checked.
    pub(crate) inner: &'a [u8],
}

/// The options of `data`, as (code, payload), or why they do not frame.
fn options(mut data: &[u8]) -> impl Iterator<Item = Result<(u16, &[u8]), Malformed>> {
    std::iter::from_fn(move || {
        if data.is_empty() {
            return None;
        }
        let r = (|| {
            let h = data.get(..4).ok_or(Malformed::Framing)?;
            let code = u16::from_be_bytes([h[0], h[1]]);
            let len = usize::from(u16::from_be_bytes([h[2], h[3]]));
            let body = data.get(4..4 + len).ok_or(Malformed::Framing)?;
            data = &data[4 + len..];
            Ok((code, body))
        })();
        if r.is_err() {
            data = &[];
        }
        Some(r)
    })
}

/// Takes the relay layers off `data` and checks the client message inside.
pub(crate) fn unwrap(mut data: &[u8]) -> Result<Unwrapped<'_>, Malformed> {
    let mut relays = Vec::new();
    loop {
        match *data.first().ok_or(Malformed::Framing)? {
            RELAY_FORW => {
                if relays.len() >= HOP_COUNT_LIMIT {
                    return Err(Malformed::TooManyRelays);
                }
                let h = data.get(..34).ok_or(Malformed::Framing)?;
                let addr = |at: usize| {
                    let mut a = [0u8; 16];
                    a.copy_from_slice(&h[at..at + 16]);
                    Ipv6Addr::from(a)
                };
                let mut relay = Relay {
                    hop: h[1],
                    link: addr(2),
                    peer: addr(18),
                    interface_id: None,
                    lladdr: None,
                };
                let mut inner = None;
                for o in options(&data[34..]) {
                    let (code, body) = o?;
                    match code {
                        OPT_RELAY_MSG => inner = Some(body),
                        OPT_INTERFACE_ID => relay.interface_id = Some(body.to_vec()),
                        // Hardware type 1 (Ethernet), then its six octets.
                        OPT_CLIENT_LINKLAYER => {
                            if let [0, 1, m @ ..] = body
                                && let Ok(m) = <[u8; 6]>::try_from(m)
                            {
                                relay.lladdr = Some(MacAddr(m));
                            }
                        }
                        _ => {}
                    }
                }
                relays.push(relay);
                data = inner.ok_or(Malformed::Framing)?;
            }
            // SOLICIT, REQUEST, CONFIRM, RENEW, REBIND, RELEASE, DECLINE,
            // INFORMATION-REQUEST.
            1 | 3 | 4 | 5 | 6 | 8 | 9 | 11 => {
                if data.len() < 4 {
                    return Err(Malformed::Framing);
                }
                check(&data[4..], 0)?;
                return Ok(Unwrapped {
                    relays,
                    inner: data,
                });
            }
            _ => return Err(Malformed::NotARequest),
        }
    }
}

/// The message inside one relay layer (RELAY-FORW or RELAY-REPL), without checking it.
pub(crate) fn relay_payload(data: &[u8]) -> Option<&[u8]> {
    options(data.get(34..)?)
        .map_while(Result::ok)
        .find_map(|(code, body)| (code == OPT_RELAY_MSG).then_some(body))
}

/// Checks the options of a client message (and those nested in its IAs) against the lengths
/// their codes allow.
pub(crate) fn check(opts: &[u8], depth: u8) -> Result<(), Malformed> {
    for o in options(opts) {
        let (code, body) = o?;
        let len = body.len();
        let ok = match code {
            // IA_NA, IA_PD: IAID, T1, T2, then options; IA_TA: IAID, then options.
            3 | 25 if len >= 12 => return_nested(&body[12..], depth)?,
            4 if len >= 4 => return_nested(&body[4..], depth)?,
            // IAADDR: address, preferred and valid lifetimes, then options.
            5 if len >= 24 => return_nested(&body[24..], depth)?,
            // IAPREFIX: lifetimes, prefix length, prefix, then options.
            26 if len >= 25 => return_nested(&body[25..], depth)?,
            3 | 4 | 5 | 25 | 26 => false,
            // ORO, client architecture types: lists of 16-bit codes.
            6 | 61 => len % 2 == 0,
            // Preference, RECONF_MSG.
            7 | 19 => len == 1,
            // Elapsed time.
            8 => len == 2,
            // A relay message inside a client's: never.
            9 => false,
            // Authentication: protocol, algorithm, RDM, replay detection (8).
            11 => len >= 11,
            // Server unicast.
            12 => len == 16,
            // Status code: the code, then a message.
            13 => len >= 2,
            // Rapid commit, reconfigure accept.
            14 | 20 => len == 0,
            // Vendor class: an enterprise number first. Vendor options: the same, at the top
            // level only (dhcproto decodes their payload as DHCPv6 options, which they need not
            // be: [`neutral`] hides them from it).
            16 => len >= 4,
            17 => len >= 4 && depth == 0,
            // DNS servers: addresses.
            23 => len % 16 == 0,
            // Information refresh time.
            32 => len == 4,
            _ => true,
        };
        if !ok {
            return Err(Malformed::OptionLength(code));
        }
    }
    Ok(())
}

/// A client message as dhcproto may decode it: any top-level VENDOR_OPTS (17), whose payload
/// dhcproto would decode as DHCPv6 options (a vendor's sub-options need not be, and can crash
/// or mislead its decoder), renamed to an unassigned code. pserv does not read them.
pub(crate) fn neutral(msg: &[u8]) -> std::borrow::Cow<'_, [u8]> {
    let mut at = 4;
    let mut found = Vec::new();
    for o in options(msg.get(4..).unwrap_or_default()) {
        let Ok((code, body)) = o else { break };
        if code == 17 {
            found.push(at);
        }
        at += 4 + body.len();
    }
    if found.is_empty() {
        return std::borrow::Cow::Borrowed(msg);
    }
    let mut m = msg.to_vec();
    for at in found {
        m[at..at + 2].copy_from_slice(&UNREAD.to_be_bytes());
    }
    std::borrow::Cow::Owned(m)
}

/// An option code IANA has not assigned, for options hidden from dhcproto.
const UNREAD: u16 = 0xfffe;

/// Checks options nested one level deeper (IAs hold addresses, which hold status codes).
fn return_nested(opts: &[u8], depth: u8) -> Result<bool, Malformed> {
    if depth >= 3 {
        return Err(Malformed::Framing);
    }
    check(opts, depth + 1).map(|()| true)
}

/// Appends one option.
pub(crate) fn put_option(out: &mut Vec<u8>, code: u16, body: &[u8]) {
    out.extend_from_slice(&code.to_be_bytes());
    out.extend_from_slice(&(body.len().min(usize::from(u16::MAX)) as u16).to_be_bytes());
    out.extend_from_slice(&body[..body.len().min(usize::from(u16::MAX))]);
}

/// Wraps `reply` in a RELAY-REPL for each relay the request came through, innermost first
/// (RFC 8415 §19.3: the hop count, link and peer addresses copied, the interface-id echoed).
pub(crate) fn wrap(relays: &[Relay], mut reply: Vec<u8>) -> Vec<u8> {
    for r in relays.iter().rev() {
        let mut out = Vec::with_capacity(reply.len() + 64);
        out.push(RELAY_REPL);
        out.push(r.hop);
        out.extend_from_slice(&r.link.octets());
        out.extend_from_slice(&r.peer.octets());
        if let Some(id) = &r.interface_id {
            put_option(&mut out, OPT_INTERFACE_ID, id);
        }
        put_option(&mut out, OPT_RELAY_MSG, &reply);
        reply = out;
    }
    reply
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn relay_forw(hop: u8, link: &str, peer: &str, opts: &[(u16, &[u8])]) -> Vec<u8> {
        let mut out = vec![RELAY_FORW, hop];
        out.extend_from_slice(&link.parse::<Ipv6Addr>().unwrap().octets());
        out.extend_from_slice(&peer.parse::<Ipv6Addr>().unwrap().octets());
        for (c, b) in opts {
            put_option(&mut out, *c, b);
        }
        out
    }

    #[test]
    fn nested_relays_unwrap_and_wrap_back() {
        let mut solicit = vec![1, 0xaa, 0xbb, 0xcc];
        put_option(&mut solicit, 1, &[0, 3, 0, 1, 2, 0, 0, 0, 0, 1]);
        put_option(&mut solicit, 8, &[0, 0]);
        let inner_relay = relay_forw(
            0,
            "2001:db8:1::1",
            "fe80::1",
            &[
                (OPT_INTERFACE_ID, b"eth7"),
                (OPT_CLIENT_LINKLAYER, &[0, 1, 0x52, 0x54, 0, 0, 0, 9]),
                (OPT_RELAY_MSG, &solicit),
            ],
        );
        let outer = relay_forw(1, "::", "2001:db8:1::1", &[(OPT_RELAY_MSG, &inner_relay)]);
        let u = unwrap(&outer).unwrap();
        assert_eq!(u.inner, &solicit[..]);
        assert_eq!(u.relays.len(), 2);
        assert_eq!(
            u.relays[1].link,
            "2001:db8:1::1".parse::<Ipv6Addr>().unwrap()
        );
        assert_eq!(u.relays[1].interface_id.as_deref(), Some(&b"eth7"[..]));
        assert_eq!(u.relays[1].lladdr, Some(MacAddr([0x52, 0x54, 0, 0, 0, 9])));
        let reply = vec![7, 0xaa, 0xbb, 0xcc];
        let wrapped = wrap(&u.relays, reply.clone());
        // The relay-reply mirrors the relay-forward: type 13, same hops and addresses, the
        // interface-id echoed, the reply innermost.
        assert_eq!(wrapped[0], RELAY_REPL);
        assert_eq!(&wrapped[1..34], &outer[1..34]);
        let back: Vec<u8> = {
            let mut w = wrapped.clone();
            w[0] = RELAY_FORW;
            let (_, b) = options(&w[34..]).next().unwrap().unwrap();
            b.to_vec()
        };
        assert_eq!(back[0], RELAY_REPL);
        assert_eq!(&back[1..34], &inner_relay[1..34]);
        let opts: Vec<_> = options(&back[34..]).map(Result::unwrap).collect();
        assert_eq!(opts[0], (OPT_INTERFACE_ID, &b"eth7"[..]));
        assert_eq!(opts[1], (OPT_RELAY_MSG, &reply[..]));
    }

    #[test]
    fn malformed_requests_are_refused() {
        let with = |opts: &[(u16, &[u8])]| {
            let mut m = vec![1, 0, 0, 1];
            for (c, b) in opts {
                put_option(&mut m, *c, b);
            }
            m
        };
        assert!(unwrap(&with(&[(1, &[0, 3, 0, 1, 1, 2, 3, 4, 5, 6])])).is_ok());
        for (bad, why) in [
            (with(&[(8, &[0])]), Malformed::OptionLength(8)),
            (with(&[(14, &[1])]), Malformed::OptionLength(14)),
            (with(&[(13, &[0])]), Malformed::OptionLength(13)),
            (with(&[(16, &[0, 0, 1])]), Malformed::OptionLength(16)),
            (with(&[(3, &[0; 11])]), Malformed::OptionLength(3)),
            (with(&[(9, &[1, 2, 3, 4])]), Malformed::OptionLength(9)),
            (
                with(&[(3, &[[0u8; 12].as_slice(), &[0, 5, 0, 1, 0]].concat())]),
                Malformed::OptionLength(5),
            ),
            (vec![1, 0, 0, 1, 0, 1, 0, 9, 1], Malformed::Framing),
            (vec![1, 0, 0], Malformed::Framing),
            (vec![2, 0, 0, 1], Malformed::NotARequest),
            (vec![RELAY_REPL; 40], Malformed::NotARequest),
            (relay_forw(0, "::", "::", &[]), Malformed::Framing),
        ] {
            assert_eq!(unwrap(&bad).err(), Some(why), "{bad:?}");
        }
        // Nine relays deep: past HOP_COUNT_LIMIT.
        let mut m = with(&[]);
        for _ in 0..9 {
            m = relay_forw(0, "::", "::", &[(OPT_RELAY_MSG, &m)]);
        }
        assert_eq!(unwrap(&m).err(), Some(Malformed::TooManyRelays));
    }
}
