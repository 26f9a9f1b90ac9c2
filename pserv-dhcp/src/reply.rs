//! Where a reply goes: RFC 2131 §4.1 as a pure function.

use std::net::Ipv4Addr;

/// The destination of a server reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Destination {
    /// To the relay agent at `giaddr`, port 67.
    Relay(Ipv4Addr),
    /// To the client's own address (`ciaddr`), port 68.
    Unicast(Ipv4Addr),
    /// To the client's hardware address at `yiaddr`, port 68: a client without an address
    /// that can receive unicast. Sending it needs an ARP entry for `yiaddr`; a sender that
    /// cannot make one broadcasts instead, which RFC 2131 allows.
    Hardware {
        /// The address being handed out.
        yiaddr: Ipv4Addr,
        /// The client's MAC.
        chaddr: [u8; 6],
    },
    /// To 255.255.255.255, port 68, on the interface the request came in on.
    Broadcast,
}

/// What is being sent, as far as addressing cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sending {
    /// An OFFER or ACK handing out `yiaddr`.
    Lease {
        /// The address handed out.
        yiaddr: Ipv4Addr,
    },
    /// The ACK of a DHCPINFORM (no address handed out: it goes where the client is, else
    /// broadcast).
    Inform,
    /// A DHCPNAK.
    Nak,
}

/// The request's addressing fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Addressing {
    /// The relay agent's address (`giaddr`), 0 if not relayed.
    pub giaddr: Ipv4Addr,
    /// The client's address (`ciaddr`), 0 if it has none.
    pub ciaddr: Ipv4Addr,
    /// The client's BROADCAST flag.
    pub broadcast: bool,
    /// The client's hardware address.
    pub chaddr: [u8; 6],
}

/// RFC 2131 §4.1:
///
/// > If the 'giaddr' field in a DHCP message from a client is non-zero, the server sends any
/// > return messages to the 'DHCP server' port on the BOOTP relay agent whose address appears
/// > in 'giaddr'. If the 'giaddr' field is zero and the 'ciaddr' field is nonzero, then the
/// > server unicasts DHCPOFFER and DHCPACK messages to the address in 'ciaddr'. If 'giaddr' is
/// > zero and 'ciaddr' is zero, and the broadcast bit is set, then the server broadcasts
/// > DHCPOFFER and DHCPACK messages to 0xffffffff. If the broadcast bit is not set and 'giaddr'
/// > is zero and 'ciaddr' is zero, then the server unicasts DHCPOFFER and DHCPACK messages to
/// > the client's hardware address and 'yiaddr' address. In all cases, when 'giaddr' is zero,
/// > the server broadcasts any DHCPNAK messages to 0xffffffff.
///
/// The ACK of a DHCPINFORM goes to ciaddr (§4.3.5), and is broadcast when there is none.
pub fn destination(req: Addressing, sending: Sending) -> Destination {
    if !req.giaddr.is_unspecified() {
        return Destination::Relay(req.giaddr);
    }
    match sending {
        Sending::Nak => Destination::Broadcast,
        _ if !req.ciaddr.is_unspecified() => Destination::Unicast(req.ciaddr),
        Sending::Inform => Destination::Broadcast,
        Sending::Lease { .. } if req.broadcast => Destination::Broadcast,
        Sending::Lease { yiaddr } if yiaddr.is_unspecified() => Destination::Broadcast,
        Sending::Lease { yiaddr } => Destination::Hardware {
            yiaddr,
            chaddr: req.chaddr,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAC: [u8; 6] = [2, 0, 0, 0, 0, 1];
    const Z: Ipv4Addr = Ipv4Addr::UNSPECIFIED;

    fn req(giaddr: Ipv4Addr, ciaddr: Ipv4Addr, broadcast: bool) -> Addressing {
        Addressing {
            giaddr,
            ciaddr,
            broadcast,
            chaddr: MAC,
        }
    }

    #[test]
    fn every_rule() {
        let relay = Ipv4Addr::new(10, 0, 0, 1);
        let ci = Ipv4Addr::new(10, 0, 0, 9);
        let yi = Ipv4Addr::new(10, 0, 0, 7);
        let lease = Sending::Lease { yiaddr: yi };
        assert_eq!(
            destination(req(relay, ci, true), Sending::Nak),
            Destination::Relay(relay)
        );
        assert_eq!(
            destination(req(Z, ci, false), Sending::Nak),
            Destination::Broadcast
        );
        assert_eq!(
            destination(req(Z, ci, true), lease),
            Destination::Unicast(ci)
        );
        assert_eq!(destination(req(Z, Z, true), lease), Destination::Broadcast);
        assert_eq!(
            destination(req(Z, Z, false), lease),
            Destination::Hardware {
                yiaddr: yi,
                chaddr: MAC
            }
        );
        assert_eq!(
            destination(req(Z, Z, false), Sending::Lease { yiaddr: Z }),
            Destination::Broadcast
        );
        assert_eq!(
            destination(req(Z, ci, false), Sending::Inform),
            Destination::Unicast(ci)
        );
        assert_eq!(
            destination(req(Z, Z, false), Sending::Inform),
            Destination::Broadcast
        );
        assert_eq!(
            destination(req(relay, Z, false), Sending::Inform),
            Destination::Relay(relay)
        );
    }
}
