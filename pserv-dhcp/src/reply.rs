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
pub fn destination(
    giaddr: Ipv4Addr,
    ciaddr: Ipv4Addr,
    broadcast_flag: bool,
    is_nak: bool,
    yiaddr: Ipv4Addr,
    chaddr: [u8; 6],
) -> Destination {
    if !giaddr.is_unspecified() {
        Destination::Relay(giaddr)
    } else if is_nak {
        Destination::Broadcast
    } else if !ciaddr.is_unspecified() {
        Destination::Unicast(ciaddr)
    } else if broadcast_flag || yiaddr.is_unspecified() {
        Destination::Broadcast
    } else {
        Destination::Hardware { yiaddr, chaddr }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAC: [u8; 6] = [2, 0, 0, 0, 0, 1];
    const Z: Ipv4Addr = Ipv4Addr::UNSPECIFIED;

    #[test]
    fn every_rule() {
        let relay = Ipv4Addr::new(10, 0, 0, 1);
        let ci = Ipv4Addr::new(10, 0, 0, 9);
        let yi = Ipv4Addr::new(10, 0, 0, 7);
        assert_eq!(
            destination(relay, ci, true, true, yi, MAC),
            Destination::Relay(relay)
        );
        assert_eq!(
            destination(Z, ci, false, true, yi, MAC),
            Destination::Broadcast
        );
        assert_eq!(
            destination(Z, ci, true, false, yi, MAC),
            Destination::Unicast(ci)
        );
        assert_eq!(
            destination(Z, Z, true, false, yi, MAC),
            Destination::Broadcast
        );
        assert_eq!(
            destination(Z, Z, false, false, yi, MAC),
            Destination::Hardware {
                yiaddr: yi,
                chaddr: MAC
            }
        );
    }
}
