//! DHCP client messages for tests: one builder ([`Packet`]) for every DISCOVER, REQUEST,
//! RELEASE, DECLINE and INFORM a test sends, whether to a `Server` on virtual time, to the binary
//! on loopback or across namespaces; malformed variants of them; and a relayed DORA over a
//! socket.

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};

use dhcproto::v4::relay::{RelayAgentInformation, RelayInfo};
use dhcproto::v4::{DhcpOption, Flags, Message, MessageType, Opcode};
use dhcproto::{Decodable, Encodable};

/// A client message under construction: a BOOTREQUEST of `kind` from a MAC, every address
/// field unspecified, no flags, and only the message-type option until more are added.
#[derive(Debug, Clone)]
pub struct Packet(Message);

impl Packet {
    /// A message of `kind` from `mac`; its xid is the MAC's last four bytes (distinct clients,
    /// distinct xids).
    pub fn new(kind: MessageType, mac: [u8; 6]) -> Self {
        let mut m = Message::new_with_id(
            u32::from_be_bytes([mac[2], mac[3], mac[4], mac[5]]),
            Ipv4Addr::UNSPECIFIED,
            Ipv4Addr::UNSPECIFIED,
            Ipv4Addr::UNSPECIFIED,
            Ipv4Addr::UNSPECIFIED,
            &mac,
        );
        m.set_opcode(Opcode::BootRequest);
        m.opts_mut().insert(DhcpOption::MessageType(kind));
        Self(m)
    }

    /// Sets the transaction id.
    pub fn xid(mut self, xid: u32) -> Self {
        self.0.set_xid(xid);
        self
    }

    /// As a relay at `giaddr` forwards it.
    pub fn relay(mut self, giaddr: Ipv4Addr) -> Self {
        self.0.set_giaddr(giaddr);
        self
    }

    /// With a relay agent information option (82) holding `info`; none when `info` is empty.
    pub fn relay_info(mut self, info: Vec<RelayInfo>) -> Self {
        if !info.is_empty() {
            let mut rai = RelayAgentInformation::default();
            for i in info {
                rai.insert(i);
            }
            self.0
                .opts_mut()
                .insert(DhcpOption::RelayAgentInformation(rai));
        }
        self
    }

    /// With the BROADCAST flag: the client cannot receive unicast before it has an address.
    pub fn broadcast(mut self) -> Self {
        self.0.set_flags(Flags::default().set_broadcast());
        self
    }

    /// With `ciaddr` (a client that holds that address: renewing, releasing, informing).
    pub fn ciaddr(mut self, ip: Ipv4Addr) -> Self {
        self.0.set_ciaddr(ip);
        self
    }

    /// With a client identifier (option 61).
    pub fn client_id(self, id: &[u8]) -> Self {
        self.option(DhcpOption::ClientIdentifier(id.to_vec()))
    }

    /// Asking for `ip` (option 50).
    pub fn requested(self, ip: Ipv4Addr) -> Self {
        self.option(DhcpOption::RequestedIpAddress(ip))
    }

    /// Addressed to the server identified as `ip` (option 54).
    pub fn server(self, ip: Ipv4Addr) -> Self {
        self.option(DhcpOption::ServerIdentifier(ip))
    }

    /// With option `o` (replacing one of the same code).
    pub fn option(mut self, o: DhcpOption) -> Self {
        self.0.opts_mut().insert(o);
        self
    }

    /// With each of `opts`.
    pub fn options(self, opts: impl IntoIterator<Item = DhcpOption>) -> Self {
        opts.into_iter().fold(self, Self::option)
    }

    /// The message, to change further or to compare with.
    pub fn message(self) -> Message {
        self.0
    }

    /// The encoded datagram.
    pub fn bytes(&self) -> Vec<u8> {
        self.0.to_vec().expect("a DHCP message encodes")
    }
}

/// Malformed DHCP datagrams, each with the reason pserv counts its drop under
/// (`pserv_dhcp_dropped_total{reason="..."}`), made from valid DISCOVERs that `discover`
/// builds for a MAC: garbage, all-ones, a bare header, a BOOTREPLY, a hardware type other than
/// Ethernet, an option overflowing the packet, an option length dhcproto would assert on, a
/// hardware length over 16, and a DISCOVER padded past the 1,500-byte receive buffer.
pub fn malformed(discover: impl Fn([u8; 6]) -> Vec<u8>) -> Vec<(Vec<u8>, &'static str)> {
    let end = |p: &[u8]| {
        p.iter()
            .rposition(|b| *b == 255)
            .expect("a DISCOVER ends with option 255")
    };
    let mut reply = discover([2, 0, 0, 0, 0, 8]);
    reply[0] = 2;
    let mut htype = discover([2, 0, 0, 0, 0, 9]);
    htype[1] = 6;
    let mut overflow = discover([2, 0, 0, 0, 0, 7]);
    overflow.truncate(end(&overflow));
    overflow.extend_from_slice(&[61, 200, 1, 2, 3]);
    let mut opt94 = discover([2, 0, 0, 0, 0, 6]);
    let at = end(&opt94);
    opt94.splice(at..at, [94, 2, 1, 2]);
    let mut hlen = discover([2, 0, 0, 0, 0, 5]);
    hlen[2] = 200;
    let mut oversized = discover([2, 0, 0, 0, 0, 4]);
    oversized.resize(4000, 0);
    vec![
        (vec![0u8; 10], "Malformed"),
        (vec![0xffu8; 600], "Malformed"),
        (vec![0x01u8; 240], "Malformed"),
        (overflow, "Malformed"),
        (hlen, "Malformed"),
        (reply, "NotAClientRequest"),
        (htype, "NotAClientRequest"),
        (opt94, "BadOptionLength"),
        (oversized, "Oversized"),
    ]
}

/// DISCOVER then REQUEST of the offered address for `mac`, relayed from `relay` over `sock`
/// to `server` (whose identifier is 127.0.0.1 on loopback), with `extra` options in both; the
/// ACKed address, or `None` when a reply is missing, is not an OFFER then an ACK, or does not
/// decode.
pub fn relayed_dora(
    sock: &UdpSocket,
    server: SocketAddr,
    mac: [u8; 6],
    relay: Ipv4Addr,
    extra: Vec<DhcpOption>,
) -> Option<Ipv4Addr> {
    let discover = Packet::new(MessageType::Discover, mac)
        .relay(relay)
        .options(extra.clone());
    sock.send_to(&discover.bytes(), server).ok()?;
    let mut buf = [0u8; 1500];
    let n = sock.recv(&mut buf).ok()?;
    let offer = Message::from_bytes(&buf[..n]).ok()?;
    if offer.opts().msg_type() != Some(MessageType::Offer) {
        return None;
    }
    let request = Packet::new(MessageType::Request, mac)
        .relay(relay)
        .requested(offer.yiaddr())
        .server(Ipv4Addr::LOCALHOST)
        .options(extra);
    sock.send_to(&request.bytes(), server).ok()?;
    let n = sock.recv(&mut buf).ok()?;
    let ack = Message::from_bytes(&buf[..n]).ok()?;
    (ack.opts().msg_type() == Some(MessageType::Ack)).then(|| ack.yiaddr())
}

#[cfg(test)]
mod tests {
    use super::*;
    use dhcproto::v4::OptionCode;

    #[test]
    fn a_packet_is_a_bootrequest_with_what_was_added() {
        let mac = [2, 0, 0, 0x12, 0x34, 0x56];
        let m = Packet::new(MessageType::Request, mac)
            .relay(Ipv4Addr::new(10, 0, 0, 1))
            .requested(Ipv4Addr::new(10, 0, 0, 9))
            .client_id(&[1, 2])
            .broadcast()
            .message();
        assert_eq!(m.opcode(), Opcode::BootRequest);
        assert_eq!(m.xid(), 0x0012_3456);
        assert_eq!(&m.chaddr()[..6], &mac);
        assert_eq!(m.giaddr(), Ipv4Addr::new(10, 0, 0, 1));
        assert!(m.flags().broadcast());
        assert_eq!(m.opts().msg_type(), Some(MessageType::Request));
        assert_eq!(
            m.opts().get(OptionCode::RequestedIpAddress),
            Some(&DhcpOption::RequestedIpAddress(Ipv4Addr::new(10, 0, 0, 9)))
        );
        let bytes = Packet::new(MessageType::Discover, mac).xid(7).bytes();
        let back = Message::from_bytes(&bytes).unwrap();
        assert_eq!((back.xid(), back.giaddr()), (7, Ipv4Addr::UNSPECIFIED));
        assert!(back.opts().get(OptionCode::RelayAgentInformation).is_none());
    }

    #[test]
    fn each_malformed_variant_is_a_changed_discover_with_its_reason() {
        let discover = |mac| Packet::new(MessageType::Discover, mac).bytes();
        let all = malformed(discover);
        assert_eq!(all.len(), 9);
        for (p, reason) in &all {
            assert_ne!(p, &discover([2, 0, 0, 0, 0, 8]), "{reason}");
        }
        assert_eq!(all.iter().filter(|(_, r)| *r == "Malformed").count(), 5);
    }
}
