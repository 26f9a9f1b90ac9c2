//! proxyDHCP (PXE 2.1; issue 23): on a subnet with `proxy_dhcp`, another server hands out
//! the addresses and pserv answers only the boot part, never an address.
//!
//! - On port 67 a PXE or HTTP-boot client's DISCOVER (option 60 `PXEClient…`/`HTTPClient…`)
//!   that pserv has something to boot for (a node in `netboot` or `local`, or the subnet's
//!   `unknown_profile`; never `ignore`) gets a proxy OFFER: yiaddr 0, option 54, option 60
//!   `PXEClient` (`HTTPClient` with a URL for HTTP boot), option 97 echoed, the boot file and
//!   siaddr, and option 43 with PXE_DISCOVERY_CONTROL = 8 (use the offered boot file: no
//!   prompt, menu or boot-server discovery), which legacy PXE ROMs need and EDK2 and iPXE
//!   honour. The file is the full server's decision (architecture, chain, profile, iPXE's own
//!   request for its script). The client's REQUEST to the other server (option 50, or its
//!   ciaddr) is where the machine says what address it got: recorded as a sighting, not
//!   answered.
//! - On port 4011 (the boot server) a REQUEST or INFORM gets an ACK with the boot file, option
//!   43's boot item (tag 71) echoed when the request carried one, unicast back to where it came
//!   from; its ciaddr is a sighting too.
//!
//! A sighting is the address the per-node configuration and files are served to when the
//! node has no reservation there (see [`pserv_core::lease::LeaseBoard::sight`]). Pure
//! functions over (table, packet): the DHCP front end calls [`Server::handle`] for port 67,
//! which routes proxy subnets here, and [`Server::boot_server`] serves port 4011.

use std::net::Ipv4Addr;

use dhcproto::Decodable;
use dhcproto::v4::{DhcpOption, Message, MessageType, OptionCode};
use pserv_core::MacAddr;
use pserv_core::table::{Intent, SubnetInfo, Table};

use crate::build;
use crate::guard;
use crate::server::{DropReason, Exchange, Meta, Outcome, Request, Server};

/// PXE 2.1 option 43 sub-option 6 (PXE_DISCOVERY_CONTROL) = 8: use the boot file in the offer,
/// without prompt, menu or boot-server discovery. Then the end of the sub-options.
pub(crate) const DISCOVERY_CONTROL: [u8; 4] = [6, 1, 8, 255];
/// Option 43 sub-option 71: the PXE boot item (type and layer, two bytes each).
const BOOT_ITEM: u8 = 71;

/// A proxyDHCP answer decided: the `proxy` event a controller follows (a machine on a proxy
/// subnet starting to netboot).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "event", rename = "proxy")]
pub struct ProxyAnswer {
    /// `offer` (port 67) or `ack` (the PXE boot server, port 4011).
    pub answer: &'static str,
    /// The machine.
    pub mac: MacAddr,
    /// Its node id (`None` for an unknown machine booting the subnet's `unknown_profile`).
    pub node: Option<String>,
    /// The boot file (or URL) it was given.
    pub file: String,
    /// The client's architecture (option 93), if it sent one.
    pub arch: Option<u16>,
}

/// Called with every proxyDHCP answer decided (on the front end's thread: keep it short).
pub type OnProxy = std::sync::Arc<dyn Fn(&ProxyAnswer) + Send + Sync>;

/// What a proxyDHCP answer also learned: the address a machine showed in its PXE exchange.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sighting {
    /// The machine.
    pub mac: MacAddr,
    /// The address another server leased it.
    pub ip: Ipv4Addr,
}

/// The client's option 60 says it netboots: `PXEClient…` or `HTTPClient…`.
pub(crate) fn netbooting(msg: &Message) -> bool {
    match msg.opts().get(OptionCode::ClassIdentifier) {
        Some(DhcpOption::ClassIdentifier(c)) => {
            c.starts_with(b"PXEClient") || c.starts_with(b"HTTPClient")
        }
        _ => false,
    }
}

/// The address a REQUEST shows: its ciaddr (renewing, or at the boot server), else option 50.
fn shown_address(msg: &Message) -> Option<Ipv4Addr> {
    let requested = match msg.opts().get(OptionCode::RequestedIpAddress) {
        Some(DhcpOption::RequestedIpAddress(ip)) => Some(*ip),
        _ => None,
    };
    Some(msg.ciaddr())
        .filter(|ip| !ip.is_unspecified())
        .or(requested)
        .filter(|ip| !ip.is_unspecified() && !ip.is_broadcast() && !ip.is_multicast())
}

/// Option 43's boot item (sub-option 71: type and layer), if the request carried one.
fn boot_item(msg: &Message) -> Option<[u8; 4]> {
    let mut rest = match msg.opts().get(OptionCode::VendorExtensions) {
        Some(DhcpOption::VendorExtensions(v)) => v.as_slice(),
        Some(DhcpOption::Unknown(o)) => o.data(),
        _ => return None,
    };
    while let [code, tail @ ..] = rest {
        match *code {
            0 => rest = tail,
            255 => return None,
            c => {
                let [len, tail @ ..] = tail else { return None };
                let len = usize::from(*len);
                let value = tail.get(..len)?;
                if c == BOOT_ITEM {
                    return value.try_into().ok();
                }
                rest = &tail[len..];
            }
        }
    }
    None
}

impl Server {
    /// A request on a proxyDHCP subnet arriving on port 67 (see the module docs).
    pub(crate) fn proxy(
        &self,
        table: &Table,
        subnet: &SubnetInfo,
        meta: &Meta,
        req: &Request<'_>,
    ) -> Outcome {
        match req.kind {
            MessageType::Discover => {}
            // The REQUEST the other server answers: the machine says which address it took
            // (kept only for a machine pserv boots, and inside the proxy subnet).
            MessageType::Request => {
                let ours =
                    netbooting(req.msg) && self.proxy_exchange(table, subnet, meta, req).is_some();
                return match shown_address(req.msg).filter(|ip| subnet.contains(*ip)) {
                    Some(ip) if ours => Outcome::Seen(Sighting { mac: req.mac, ip }),
                    _ => Outcome::Drop(DropReason::NotForUs),
                };
            }
            _ => return Outcome::Drop(DropReason::NotForUs),
        }
        if !netbooting(req.msg) {
            return Outcome::Drop(DropReason::NotNetbooting);
        }
        match self.proxy_exchange(table, subnet, meta, req) {
            Some(x) => match x.proxy_reply(MessageType::Offer, None) {
                Some(r) => Outcome::Reply(r),
                None => Outcome::Drop(DropReason::NothingToBoot),
            },
            None => Outcome::Drop(DropReason::NothingToBoot),
        }
    }

    /// The exchange a proxy answer is built from, if pserv has something to boot for the
    /// machine: a node in `netboot` or `local`, or an unknown machine with the subnet's
    /// `unknown_profile` (never `ignore`, nor a node with neither profile nor mode).
    fn proxy_exchange<'a>(
        &self,
        table: &'a Table,
        subnet: &'a SubnetInfo,
        meta: &'a Meta,
        req: &'a Request<'a>,
    ) -> Option<Exchange<'a>> {
        let iface = table.by_mac(req.mac);
        if !Intent::of(iface, Some(subnet)).renders() {
            return None;
        }
        Some(Exchange::new(
            table,
            subnet,
            req,
            iface,
            req.id_override.unwrap_or(meta.local),
            self.chain,
            meta,
        ))
    }

    /// A datagram from `from` to the PXE boot server (UDP port 4011) on a proxyDHCP subnet: a
    /// REQUEST or INFORM gets an ACK with the boot file (see the module docs), and its ciaddr
    /// is a sighting. The client has its address by then and sends from it: the subnet is the
    /// one `from` is in, and a ciaddr other than `from` is not believed (no sighting). Anything
    /// else, or a sender outside every `proxy_dhcp` subnet, is a counted drop.
    pub fn boot_server(
        &self,
        table: &Table,
        meta: &Meta,
        from: Ipv4Addr,
        data: &[u8],
    ) -> (Outcome, Option<Sighting>) {
        if let Err(e) = guard::check(data) {
            return (
                Outcome::Drop(match e {
                    guard::Malformed::OptionLength(_) => DropReason::BadOptionLength,
                    _ => DropReason::Malformed,
                }),
                None,
            );
        }
        let Ok(msg) = Message::from_bytes(data) else {
            return (Outcome::Drop(DropReason::Malformed), None);
        };
        let req = match Request::read(&msg) {
            Ok(r) => r,
            Err(reason) => return (Outcome::Drop(reason), None),
        };
        if !matches!(req.kind, MessageType::Request | MessageType::Inform) {
            return (Outcome::Drop(DropReason::UnsupportedMessageType), None);
        }
        let Some(subnet) = table.subnet_for(from) else {
            return (Outcome::Drop(DropReason::NoSubnet), None);
        };
        if !subnet.proxy_dhcp {
            return (Outcome::Drop(DropReason::NotForUs), None);
        }
        if !netbooting(&msg) {
            return (Outcome::Drop(DropReason::NotNetbooting), None);
        }
        let Some(x) = self.proxy_exchange(table, subnet, meta, &req) else {
            return (Outcome::Drop(DropReason::NothingToBoot), None);
        };
        let seen = (msg.ciaddr() == from && subnet.contains(from)).then_some(Sighting {
            mac: req.mac,
            ip: from,
        });
        let outcome = match x.proxy_reply(MessageType::Ack, Some(boot_item(&msg))) {
            Some(r) => Outcome::Reply(r),
            None => Outcome::Drop(DropReason::NothingToBoot),
        };
        (outcome, seen)
    }
}

impl Exchange<'_> {
    /// A proxy OFFER (port 67) or boot-server ACK (port 4011, `item` = the request's option
    /// 43 boot item, if any): no address, the boot fields only. `None` when there is no boot
    /// file for the client.
    fn proxy_reply(
        &self,
        kind: MessageType,
        item: Option<Option<[u8; 4]>>,
    ) -> Option<crate::server::Reply> {
        let boot = self.boot();
        let file = boot.file.as_deref()?;
        let msg = self.req.msg;
        let ack = kind == MessageType::Ack;
        let mut r = Message::new_with_id(
            msg.xid(),
            if ack {
                msg.ciaddr()
            } else {
                Ipv4Addr::UNSPECIFIED
            },
            Ipv4Addr::UNSPECIFIED,
            boot.siaddr,
            msg.giaddr(),
            msg.chaddr(),
        );
        let flags = if ack {
            msg.flags()
        } else {
            // The client has no address yet (or not from us): broadcast, as PXE 2.1 does.
            msg.flags().set_broadcast()
        };
        r.set_opcode(dhcproto::v4::Opcode::BootReply)
            .set_htype(msg.htype())
            .set_flags(flags);
        if let Some(sn) = self
            .subnet
            .boot
            .as_ref()
            .and_then(|b| b.server_name.as_deref())
        {
            r.set_sname_str(sn);
        }
        r.set_fname_str(file);
        let o = r.opts_mut();
        o.insert(DhcpOption::MessageType(kind));
        o.insert(DhcpOption::ServerIdentifier(self.server_id));
        o.insert(DhcpOption::ClassIdentifier(if boot.http {
            b"HTTPClient".to_vec()
        } else {
            b"PXEClient".to_vec()
        }));
        if let Some(uuid) = msg.opts().get(OptionCode::ClientMachineIdentifier) {
            o.insert(uuid.clone());
        }
        if !boot.http {
            let vendor = match item {
                // The boot server echoes the boot item it was asked for.
                Some(Some(item)) => {
                    let mut v = vec![BOOT_ITEM, 4];
                    v.extend_from_slice(&item);
                    v.push(255);
                    v
                }
                _ => DISCOVERY_CONTROL.to_vec(),
            };
            o.insert(DhcpOption::VendorExtensions(vendor));
        }
        o.insert(DhcpOption::BootfileName(file.as_bytes().to_vec()));
        if !boot.siaddr.is_unspecified() {
            o.insert(DhcpOption::TFTPServerName(
                boot.siaddr.to_string().into_bytes(),
            ));
        }
        let arch = match msg.opts().get(OptionCode::ClientSystemArchitecture) {
            Some(DhcpOption::ClientSystemArchitecture(a)) => Some(u16::from(*a)),
            _ => None,
        };
        let answer = ProxyAnswer {
            answer: if ack { "ack" } else { "offer" },
            mac: self.req.mac,
            node: self.iface.map(|i| i.node().id().to_owned()),
            file: file.to_owned(),
            arch,
        };
        Some(build::proxy(self.req, r, kind, answer))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boot_items_are_read_from_option_43() {
        let mut m = Message::default();
        m.opts_mut().insert(DhcpOption::VendorExtensions(vec![
            6, 1, 8, 0, 71, 4, 0x80, 0, 0, 0, 255,
        ]));
        assert_eq!(boot_item(&m), Some([0x80, 0, 0, 0]));
        for bad in [
            vec![71, 3, 0, 0, 0],
            vec![71, 9, 0],
            vec![6],
            vec![255, 71, 4, 1, 2, 3, 4],
        ] {
            let mut m = Message::default();
            m.opts_mut()
                .insert(DhcpOption::VendorExtensions(bad.clone()));
            assert_eq!(boot_item(&m), None, "{bad:?}");
        }
    }
}
