//! Encoding replies: an OFFER or ACK from an admitted [`Exchange`], and a NAK.

use std::net::Ipv4Addr;

use dhcproto::Encodable;
use dhcproto::v4::{
    self, DhcpOption, Flags, Message, MessageType, Opcode, OptionCode, UnknownOption,
};
use pserv_core::lease::Change;

use crate::reply::{Addressing, Sending, destination};
use crate::server::{Exchange, Reply, Request};

/// The smallest BOOTP message; some PXE ROMs and relays drop shorter ones.
const BOOTP_MIN: usize = 300;

impl Exchange<'_> {
    /// Builds an OFFER or ACK of `yiaddr` (an INFORM's ACK has no address and no lease
    /// times), carrying `change`, which must be durable before it leaves.
    pub(crate) fn reply(
        &self,
        kind: MessageType,
        yiaddr: Ipv4Addr,
        change: Option<Change>,
    ) -> Reply {
        let msg = self.req.msg;
        let subnet = self.subnet;
        let inform = self.req.kind == MessageType::Inform;
        let node = self.iface.map(|i| i.node());
        let boot = self.boot();
        // RFC 2131 Table 3: ciaddr is 0 in an OFFER, the request's in an ACK.
        let ciaddr = if kind == MessageType::Offer {
            Ipv4Addr::UNSPECIFIED
        } else {
            msg.ciaddr()
        };
        let mut r = Message::new_with_id(
            msg.xid(),
            ciaddr,
            yiaddr,
            boot.siaddr,
            msg.giaddr(),
            msg.chaddr(),
        );
        r.set_opcode(Opcode::BootReply)
            .set_htype(msg.htype())
            .set_flags(msg.flags());
        let o = r.opts_mut();
        o.insert(DhcpOption::MessageType(kind));
        o.insert(DhcpOption::ServerIdentifier(self.server_id));
        echo_client_id(self.req, o);
        if !inform {
            o.insert(DhcpOption::AddressLeaseTime(subnet.lease_seconds));
            o.insert(DhcpOption::Renewal(subnet.renew_seconds));
            o.insert(DhcpOption::Rebinding(subnet.rebind_seconds));
        }
        o.insert(DhcpOption::SubnetMask(subnet.mask));
        if !subnet.routers.is_empty() {
            o.insert(DhcpOption::Router(subnet.routers.clone()));
        }
        if !subnet.dns_servers.is_empty() {
            o.insert(DhcpOption::DomainNameServer(subnet.dns_servers.clone()));
        }
        if let Some(domain) = &subnet.domain {
            o.insert(DhcpOption::DomainName(domain.to_string()));
        }
        // Subnet options, then the node's (which win for the same code).
        let node_opts = node.map_or(&[][..], |n| n.options());
        for opt in subnet.options.iter().chain(node_opts) {
            o.insert(DhcpOption::Unknown(UnknownOption::new(
                OptionCode::from(opt.code),
                opt.data.to_vec(),
            )));
        }
        if let Some(n) = node {
            // The node's current name, over a subnet's option 12: a rename reaches the
            // machine at its next exchange.
            o.insert(DhcpOption::Hostname(n.hostname().to_owned()));
        }
        let mut netboot = None;
        if let Some(file) = boot.file {
            let ipxe = crate::boot::is_ipxe(msg);
            if kind == MessageType::Ack && !inform && (ipxe || crate::proxy::netbooting(msg)) {
                netboot = Some(Box::new(crate::server::Netboot {
                    mac: self.req.mac,
                    ip: yiaddr,
                    node: node.map(|n| n.id().to_owned()),
                    file: file.to_string(),
                    client: if ipxe {
                        "ipxe"
                    } else if boot.http {
                        "http"
                    } else {
                        "firmware"
                    },
                }));
            }
            if let Some(sn) = subnet.boot.as_ref().and_then(|b| b.server_name.as_deref()) {
                r.set_sname_str(sn);
            }
            r.set_fname_str(&file);
            let o = r.opts_mut();
            o.insert(DhcpOption::BootfileName(file.as_bytes().to_vec()));
            if boot.http {
                o.insert(DhcpOption::ClassIdentifier(b"HTTPClient".to_vec()));
            }
        }
        if !boot.siaddr.is_unspecified() {
            r.opts_mut().insert(DhcpOption::TFTPServerName(
                boot.siaddr.to_string().into_bytes(),
            ));
        }
        echo_relay_info(msg, &mut r);
        let sending = if inform {
            Sending::Inform
        } else {
            Sending::Lease { yiaddr }
        };
        Reply {
            bytes: encode(&r),
            dest: destination(addressing(msg), sending),
            change,
            kind,
            proxy: None,
            lenient: false,
            netboot,
        }
    }
}

/// Finishes a proxyDHCP answer (`r`, its boot fields set; see [`crate::proxy`]): option 61
/// and 82 echoed, encoded, addressed. An OFFER goes to the relay, else broadcast (the client
/// has no address from us); a boot server's ACK goes back where its request came from (the
/// front end sends it there), named here as the client's address.
pub(crate) fn proxy(
    req: &Request<'_>,
    mut r: Message,
    kind: MessageType,
    answer: crate::proxy::ProxyAnswer,
) -> Reply {
    let msg = req.msg;
    echo_client_id(req, r.opts_mut());
    echo_relay_info(msg, &mut r);
    let dest = if !msg.giaddr().is_unspecified() {
        crate::reply::Destination::Relay(msg.giaddr())
    } else if kind == MessageType::Ack && !msg.ciaddr().is_unspecified() {
        crate::reply::Destination::Unicast(msg.ciaddr())
    } else {
        crate::reply::Destination::Broadcast
    };
    Reply {
        bytes: encode(&r),
        dest,
        change: None,
        kind,
        proxy: Some(Box::new(answer)),
        lenient: false,
        netboot: None,
    }
}

/// A DHCPNAK for `req`, from `server_id`.
pub(crate) fn nak(req: &Request<'_>, server_id: Ipv4Addr) -> Reply {
    let msg = req.msg;
    let mut r = Message::new_with_id(
        msg.xid(),
        Ipv4Addr::UNSPECIFIED,
        Ipv4Addr::UNSPECIFIED,
        Ipv4Addr::UNSPECIFIED,
        msg.giaddr(),
        msg.chaddr(),
    );
    // Through a relay, a NAK asks it to broadcast (the client may have no address).
    let flags = if msg.giaddr().is_unspecified() {
        msg.flags()
    } else {
        Flags::default().set_broadcast()
    };
    r.set_opcode(Opcode::BootReply)
        .set_htype(msg.htype())
        .set_flags(flags);
    r.opts_mut()
        .insert(DhcpOption::MessageType(MessageType::Nak));
    r.opts_mut().insert(DhcpOption::ServerIdentifier(server_id));
    echo_client_id(req, r.opts_mut());
    echo_relay_info(msg, &mut r);
    Reply {
        bytes: encode(&r),
        dest: destination(addressing(msg), Sending::Nak),
        change: None,
        kind: MessageType::Nak,
        proxy: None,
        lenient: false,
        netboot: None,
    }
}

/// The request's addressing fields (RFC 2131 §4.1).
fn addressing(msg: &Message) -> Addressing {
    let mut chaddr = [0u8; 6];
    chaddr.copy_from_slice(&msg.chaddr()[..6]);
    Addressing {
        giaddr: msg.giaddr(),
        ciaddr: msg.ciaddr(),
        broadcast: msg.flags().broadcast(),
        chaddr,
    }
}

/// Option 61 goes back unmodified in OFFER, ACK and NAK (RFC 6842 §3).
fn echo_client_id(req: &Request<'_>, o: &mut v4::DhcpOptions) {
    if let Some(id) = req.client_id {
        o.insert(DhcpOption::ClientIdentifier(id.to_vec()));
    }
}

/// Option 82 goes back to the relay unchanged (RFC 3046).
fn echo_relay_info(req: &Message, reply: &mut Message) {
    if let Some(rai) = req.opts().get(OptionCode::RelayAgentInformation) {
        reply.opts_mut().insert(rai.clone());
    }
}

fn encode(m: &Message) -> Vec<u8> {
    // Encoding plain options into a Vec cannot fail.
    let mut bytes = m.to_vec().unwrap_or_default();
    if bytes.len() < BOOTP_MIN {
        bytes.resize(BOOTP_MIN, 0);
    }
    bytes
}
