//! The sans-IO DHCPv4 server: (table, leases, now, packet) -> what to send, and what to make
//! durable first.
//!
//! Nothing here touches a socket or a clock. [`Server::handle`] returns an [`Outcome`]: a reply
//! (with the lease change that must be journaled before it leaves), a change without a reply
//! (RELEASE, DECLINE), or a counted drop. Malformed input is a drop, never a panic.

use std::borrow::Cow;
use std::net::Ipv4Addr;

use dhcproto::v4::{
    self, DhcpOption, Flags, HType, Message, MessageType, Opcode, OptionCode, UnknownOption,
    relay::{RelayCode, RelayInfo},
};
use dhcproto::{Decodable, Encodable};
use pserv_core::lease::{Change, Client, ClientId, Ended, LeaseBoard, Leases, Share};
use pserv_core::snapshot::{Arch, UnknownClients};
use pserv_core::table::{BootFiles, Intent, SubnetInfo, Table};
use pserv_core::{MacAddr, name};

use crate::guard;
use crate::reply::{Destination, destination};

/// Where a request arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Meta {
    /// The server address the request reached (IP_PKTINFO's `ipi_spec_dst`): the server
    /// identifier, and the link of a client that is not relayed.
    pub local: Ipv4Addr,
    /// The interface it came in on (0 if unknown).
    pub ifindex: u32,
}

/// A reply to send.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use = "a reply must be sent (after its change is durable)"]
pub struct Reply {
    /// The encoded message.
    pub bytes: Vec<u8>,
    /// Where it goes.
    pub dest: Destination,
    /// The lease change to journal before sending (an ACK for a dynamic lease).
    pub change: Option<Change>,
    /// What kind of reply it is.
    pub kind: MessageType,
}

/// Why a packet got no answer. Every drop is counted by reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DropReason {
    /// Not a DHCP packet we can decode.
    Malformed,
    /// A datagram longer than the receive buffer (1,500 bytes: an Ethernet frame's payload),
    /// cut short by the socket: not judged by its first part.
    Oversized,
    /// An option with a length its code does not allow.
    BadOptionLength,
    /// A BOOTREPLY, or hardware other than Ethernet.
    NotAClientRequest,
    /// No message type, or one a server does not handle.
    UnsupportedMessageType,
    /// No subnet for the link the request came from.
    NoSubnet,
    /// A MAC the controller does not know, on a subnet that ignores those.
    UnknownClientIgnored,
    /// No free dynamic address.
    PoolExhausted,
    /// A REQUEST selecting another server (or naming no address).
    NotForUs,
    /// A RELEASE or DECLINE for a lease that does not exist (or that another client holds).
    NoSuchLease,
    /// An INIT-REBOOT REQUEST from a client the server has no record of (RFC 2131 §4.3.2:
    /// the server MUST remain silent).
    NoRecord,
    /// A DHCPINFORM with no ciaddr and no relay: there is nowhere to send the answer (RFC 2131
    /// §4.3.5 sends it to ciaddr, which Table 5 says the client MUST set).
    InformWithoutAddress,
    /// Cluster mode: the client's bucket belongs to another instance (RFC 3074 load
    /// balancing), which answers it.
    OtherInstance,
    /// Cluster mode: this instance cannot reach the cluster's lease store, so it hands out and
    /// renews no dynamic lease (reserved nodes are still served).
    ClusterUnavailable,
    /// Cluster mode: the lease store is behind; a DISCOVER for a dynamic lease is turned away
    /// until it catches up (clients already in an exchange go first; the client retries).
    Busy,
}

impl DropReason {
    /// Every reason, in a fixed order (counters are indexed by it).
    pub const ALL: [Self; 15] = [
        Self::Malformed,
        Self::Oversized,
        Self::BadOptionLength,
        Self::NotAClientRequest,
        Self::UnsupportedMessageType,
        Self::NoSubnet,
        Self::UnknownClientIgnored,
        Self::PoolExhausted,
        Self::NotForUs,
        Self::NoSuchLease,
        Self::NoRecord,
        Self::InformWithoutAddress,
        Self::OtherInstance,
        Self::ClusterUnavailable,
        Self::Busy,
    ];

    /// This reason's position in [`DropReason::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }

    /// The reason's name, as `/metrics` labels it.
    pub fn name(self) -> &'static str {
        match self {
            Self::Malformed => "Malformed",
            Self::Oversized => "Oversized",
            Self::BadOptionLength => "BadOptionLength",
            Self::NotAClientRequest => "NotAClientRequest",
            Self::UnsupportedMessageType => "UnsupportedMessageType",
            Self::NoSubnet => "NoSubnet",
            Self::UnknownClientIgnored => "UnknownClientIgnored",
            Self::PoolExhausted => "PoolExhausted",
            Self::NotForUs => "NotForUs",
            Self::NoSuchLease => "NoSuchLease",
            Self::NoRecord => "NoRecord",
            Self::InformWithoutAddress => "InformWithoutAddress",
            Self::OtherInstance => "OtherInstance",
            Self::ClusterUnavailable => "ClusterUnavailable",
            Self::Busy => "Busy",
        }
    }
}

/// What to do about one packet.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub enum Outcome {
    /// Send this.
    Reply(Reply),
    /// Journal this change; send nothing (RELEASE, DECLINE).
    Change(Change),
    /// Send nothing; count the reason.
    Drop(DropReason),
}

/// The smallest BOOTP message; some PXE ROMs and relays drop shorter ones.
const BOOTP_MIN: usize = 300;

/// The DHCP server state: only the dynamic leases, which it owns. Everything static is the
/// table.
///
/// Input goes in through [`Server::handle`] (packets) and [`Server::handle_timeout`] (the
/// clock: leases, offers and quarantines end); [`Server::poll_timeout`] says when the next
/// thing ends. Readers elsewhere read what [`Server::publish`] writes, never the set itself.
#[derive(Debug, Default)]
pub struct Server {
    leases: Leases,
    chain: Option<BootChain>,
    /// Which clients to answer ([`Share::ALL`] unless in a cluster).
    share: Share,
}

/// pserv's own boot chain, offered when a subnet names no boot files and the client has
/// something to boot (a profile, or `local`): BIOS gets `undionly.kpxe`, x86-64 UEFI
/// `ipxe.efi`, ARM64 UEFI `ipxe-arm64.efi` and 32-bit UEFI `ipxe-ia32.efi` over TFTP; iPXE
/// gets its per-node script, and UEFI HTTP boot an http URL of the same iPXE binaries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BootChain {
    /// The HTTP boot port the URLs name (the address is the subnet's `next_server`, else the
    /// address the request reached).
    pub http_port: u16,
}

impl BootChain {
    /// The iPXE binary each architecture chain-loads.
    pub fn file(arch: Arch) -> &'static str {
        match arch {
            Arch::X86_64Bios => "undionly.kpxe",
            Arch::X86_64Uefi | Arch::X86_64Http => "ipxe.efi",
            Arch::Ia32Uefi => "ipxe-ia32.efi",
            Arch::Arm64Uefi | Arch::Arm64Http => "ipxe-arm64.efi",
        }
    }

    /// The path of a MAC's iPXE script on the HTTP boot server.
    pub fn script_path(mac: MacAddr) -> String {
        format!("/ipxe/{}", mac.to_string().replace(':', "-"))
    }
}

/// Facts about a request, read once.
struct Request<'m> {
    msg: &'m Message,
    mac: MacAddr,
    /// Who the client is for its dynamic lease: option 61 when sent, else chaddr.
    client: Client,
    /// Option 61 exactly as sent, echoed in every reply (RFC 6842 §3).
    client_id: Option<&'m [u8]>,
    kind: MessageType,
    requested: Option<Ipv4Addr>,
    /// Option 54 of the request (the server the client selected).
    server_id: Option<Ipv4Addr>,
    /// The relay's server identifier override (RFC 5107: option 82 sub-option 11).
    id_override: Option<Ipv4Addr>,
    hostname: Option<String>,
}

impl Request<'_> {
    /// Whether `sid` (a requested server identifier) names this server: the address the
    /// request reached, or the relay's override of it.
    fn names_us(&self, sid: Ipv4Addr, meta: &Meta) -> bool {
        sid == meta.local || self.id_override == Some(sid)
    }
}

impl Server {
    /// A server with `leases` (as recovered from the journal).
    pub fn new(leases: Leases) -> Self {
        Self {
            leases,
            chain: None,
            share: Share::ALL,
        }
    }

    /// Sets which clients to answer from now on (cluster mode: this instance's share, and
    /// whether it may commit dynamic leases).
    pub fn set_share(&mut self, share: Share) {
        self.share = share;
        self.leases.set_scan_slot(share.slot.0, share.slot.1);
    }

    /// Applies a change another instance made (cluster mode): the lease set then treats its
    /// address as that client's, as if this instance had made the change.
    pub fn apply_remote(&mut self, change: &Change) {
        self.leases.apply(change);
    }

    /// Offers pserv's own boot chain (see [`BootChain`]) where a subnet names no boot files.
    pub fn with_boot_chain(mut self, chain: Option<BootChain>) -> Self {
        self.chain = chain;
        self
    }

    /// The lease set, read-only (tests, fuzzing, the owner's own checks).
    pub fn leases(&self) -> &Leases {
        &self.leases
    }

    /// When the next lease, offer or quarantine ends (Unix seconds), if any.
    pub fn poll_timeout(&mut self) -> Option<u64> {
        self.leases.poll_timeout()
    }

    /// Ends everything due by `now`; returns what ended (for events).
    pub fn handle_timeout(&mut self, now: u64) -> Vec<Ended> {
        self.leases.expire(now)
    }

    /// Whether the leases changed since the last [`Server::publish`].
    pub fn has_unpublished(&self) -> bool {
        self.leases.has_unpublished()
    }

    /// Publishes the leases as they are now to `board` (costs what changed since the last).
    pub fn publish(&mut self, board: &LeaseBoard) {
        self.leases.publish(board);
    }

    /// Handles one datagram.
    pub fn handle(&mut self, table: &Table, now: u64, meta: &Meta, data: &[u8]) -> Outcome {
        if let Err(e) = guard::check(data) {
            return Outcome::Drop(match e {
                guard::Malformed::OptionLength(_) => DropReason::BadOptionLength,
                _ => DropReason::Malformed,
            });
        }
        let Ok(msg) = Message::from_bytes(data) else {
            return Outcome::Drop(DropReason::Malformed);
        };
        if msg.opcode() != Opcode::BootRequest || msg.htype() != HType::Eth || msg.hlen() != 6 {
            return Outcome::Drop(DropReason::NotAClientRequest);
        }
        let Some(kind) = msg.opts().msg_type() else {
            return Outcome::Drop(DropReason::UnsupportedMessageType);
        };
        let mut mac = [0u8; 6];
        mac.copy_from_slice(&msg.chaddr()[..6]);
        let mac = MacAddr(mac);
        let client_id = match msg.opts().get(OptionCode::ClientIdentifier) {
            Some(DhcpOption::ClientIdentifier(id)) => Some(id.as_slice()),
            _ => None,
        };
        let relay_info = match msg.opts().get(OptionCode::RelayAgentInformation) {
            Some(DhcpOption::RelayAgentInformation(rai)) => Some(rai),
            _ => None,
        };
        let req = Request {
            msg: &msg,
            mac,
            client: Client {
                mac,
                id: client_id.and_then(ClientId::new),
            },
            client_id,
            kind,
            requested: match msg.opts().get(OptionCode::RequestedIpAddress) {
                Some(DhcpOption::RequestedIpAddress(ip)) => Some(*ip),
                _ => None,
            },
            server_id: match msg.opts().get(OptionCode::ServerIdentifier) {
                Some(DhcpOption::ServerIdentifier(ip)) => Some(*ip),
                _ => None,
            },
            // Only a relay adds option 82: an override without a giaddr is not one.
            id_override: match relay_info.and_then(|r| r.get(RelayCode::ServerIdentifierOverride)) {
                Some(RelayInfo::ServerIdentifierOverride(ip))
                    if !msg.giaddr().is_unspecified() && !ip.is_unspecified() =>
                {
                    Some(*ip)
                }
                _ => None,
            },
            hostname: match msg.opts().get(OptionCode::Hostname) {
                Some(DhcpOption::Hostname(h)) => sanitize_hostname(h),
                _ => None,
            },
        };
        // What replies carry in option 54: the relay's override where it gave one (RFC 5107
        // §4), so that the client's next REQUEST goes to the relay again.
        let server_id = req.id_override.unwrap_or(meta.local);
        let Some(subnet) = table.subnet_for(link_address(table, &msg, meta)) else {
            // RFC 2131 §4.3.2: a server selected by a REQUEST it cannot satisfy (a link it
            // has no subnet for) SHOULD NAK it, so the client starts over at once.
            if kind == MessageType::Request && req.server_id.is_some_and(|s| req.names_us(s, meta))
            {
                return Outcome::Reply(nak(&req, server_id));
            }
            return Outcome::Drop(DropReason::NoSubnet);
        };
        let iface = table.by_mac(req.mac);
        if iface.is_none() && subnet.unknown_clients == UnknownClients::Ignore {
            return Outcome::Drop(DropReason::UnknownClientIgnored);
        }
        // The reservation, if the node has one on this subnet and no other client's live
        // lease still holds it (then the node gets a dynamic address until that lease ends).
        let reserved = iface
            .and_then(|i| i.ipv4())
            .filter(|ip| subnet.contains(*ip))
            .filter(|ip| {
                self.leases
                    .holder(*ip, now)
                    .is_none_or(|h| h.mac == req.mac)
            });
        // A known node's lease carries its name; an unknown client's, the one it asked for.
        let lease_name = iface
            .map(|i| i.node().hostname().to_owned())
            .or_else(|| req.hostname.clone());

        // Cluster mode: one instance answers each client while all are alive (RFC 3074);
        // one cut off from the others still answers reserved nodes, which need no shared
        // state. A REQUEST naming a server, a renewal (unicast to the server that holds the
        // lease, or a rebinding any instance may take: the store lets only one commit), a
        // RELEASE and a DECLINE are not balanced.
        let balanced = match kind {
            MessageType::Discover | MessageType::Inform => true,
            MessageType::Request => req.server_id.is_none() && msg.ciaddr().is_unspecified(),
            _ => false,
        };
        if balanced
            && !self.share.answers(bucket(&req))
            && !(self.share.all_reserved && iface.is_some())
        {
            return Outcome::Drop(DropReason::OtherInstance);
        }
        let dynamic = reserved.is_none() && kind != MessageType::Inform;
        if dynamic
            && !self.share.allocate
            && matches!(kind, MessageType::Discover | MessageType::Request)
        {
            return Outcome::Drop(DropReason::ClusterUnavailable);
        }
        if dynamic && self.share.busy && kind == MessageType::Discover {
            return Outcome::Drop(DropReason::Busy);
        }

        match kind {
            MessageType::Discover => {
                let ip = match reserved {
                    Some(ip) => ip,
                    None => match self.leases.offer(
                        table,
                        subnet,
                        req.client.clone(),
                        req.requested,
                        lease_name.as_deref(),
                        now,
                    ) {
                        Some(ip) => ip,
                        None => return Outcome::Drop(DropReason::PoolExhausted),
                    },
                };
                Outcome::Reply(build_reply(
                    table,
                    subnet,
                    &req,
                    server_id,
                    self.chain,
                    MessageType::Offer,
                    ip,
                    None,
                ))
            }
            MessageType::Request => {
                let ciaddr = msg.ciaddr();
                let (ip, init_reboot) = match (req.server_id, req.requested) {
                    // SELECTING: the client chose a server; if not us, our offer just lapses.
                    (Some(sid), Some(ip)) if req.names_us(sid, meta) => (ip, false),
                    (Some(_), _) => return Outcome::Drop(DropReason::NotForUs),
                    // INIT-REBOOT: verifying a remembered address.
                    (None, Some(ip)) if ciaddr.is_unspecified() => (ip, true),
                    // RENEWING / REBINDING: the address in use.
                    (None, _) if !ciaddr.is_unspecified() => (ciaddr, false),
                    (None, _) => return Outcome::Drop(DropReason::NotForUs),
                };
                let nak = || Outcome::Reply(nak(&req, server_id));
                let chain = self.chain;
                let ack = |change| {
                    Outcome::Reply(build_reply(
                        table,
                        subnet,
                        &req,
                        server_id,
                        chain,
                        MessageType::Ack,
                        ip,
                        change,
                    ))
                };
                match reserved {
                    Some(r) if ip == r => ack(None),
                    // The reservation moved (or the client asks for another address).
                    Some(_) => nak(),
                    // On the wrong network: whatever the record, the address cannot be used.
                    None if !subnet.contains(ip) => nak(),
                    // Another node's reservation: the client's notion is wrong, and known
                    // to be (RFC 2131 §4.3.2 SHOULD NAK), record or not.
                    None if init_reboot && table.by_ipv4(ip).is_some() => nak(),
                    None if init_reboot => match self.leases.lease(&req.client).map(|l| l.ip) {
                        // RFC 2131 §4.3.2: no record of the client, no answer (another
                        // server may hold its lease).
                        None => Outcome::Drop(DropReason::NoRecord),
                        Some(held) if held != ip => nak(),
                        Some(_) => self.commit(table, subnet, &req, ip, &lease_name, now, ack, nak),
                    },
                    None => self.commit(table, subnet, &req, ip, &lease_name, now, ack, nak),
                }
            }
            MessageType::Release => match self.leases.release(req.client.clone(), msg.ciaddr()) {
                Some(c) => Outcome::Change(c),
                None => Outcome::Drop(DropReason::NoSuchLease),
            },
            MessageType::Decline => {
                let ip = req.requested.unwrap_or(Ipv4Addr::UNSPECIFIED);
                match self
                    .leases
                    .decline(req.client.clone(), ip, subnet.decline_seconds, now)
                {
                    Some(c) => Outcome::Change(c),
                    None => Outcome::Drop(DropReason::NoSuchLease),
                }
            }
            MessageType::Inform => {
                if msg.ciaddr().is_unspecified() && msg.giaddr().is_unspecified() {
                    return Outcome::Drop(DropReason::InformWithoutAddress);
                }
                Outcome::Reply(build_reply(
                    table,
                    subnet,
                    &req,
                    server_id,
                    self.chain,
                    MessageType::Ack,
                    Ipv4Addr::UNSPECIFIED,
                    None,
                ))
            }
            _ => Outcome::Drop(DropReason::UnsupportedMessageType),
        }
    }

    /// Binds `ip` to the requesting client and ACKs, or NAKs when the address cannot be its.
    #[allow(clippy::too_many_arguments)]
    fn commit(
        &mut self,
        table: &Table,
        subnet: &SubnetInfo,
        req: &Request<'_>,
        ip: Ipv4Addr,
        lease_name: &Option<String>,
        now: u64,
        ack: impl FnOnce(Option<Change>) -> Outcome,
        nak: impl FnOnce() -> Outcome,
    ) -> Outcome {
        match self.leases.commit(
            table,
            subnet,
            req.client.clone(),
            ip,
            lease_name.as_deref(),
            now,
        ) {
            Ok(change) => ack(Some(change)),
            Err(_) => nak(),
        }
    }
}

/// The client's load-balancing bucket (0-255): a hash of its client identifier (option 61)
/// when it sent one, else of its hardware address, as RFC 3074 §5 hashes. The hash is FNV-1a
/// folded to 8 bits, not RFC 3074's mixing table: only pserv instances share the assignment.
pub fn client_bucket(client_id: Option<&[u8]>, mac: MacAddr) -> u8 {
    let bytes = client_id.unwrap_or(&mac.0);
    let mut h: u32 = 0x811c_9dc5;
    for b in bytes {
        h ^= u32::from(*b);
        h = h.wrapping_mul(0x0100_0193);
    }
    (h ^ (h >> 8) ^ (h >> 16) ^ (h >> 24)) as u8
}

fn bucket(req: &Request<'_>) -> u8 {
    client_bucket(req.client_id, req.mac)
}

/// Builds an OFFER or ACK (an INFORM's ACK has no address and no lease times).
#[allow(clippy::too_many_arguments)]
fn build_reply(
    table: &Table,
    subnet: &SubnetInfo,
    req: &Request<'_>,
    server_id: Ipv4Addr,
    chain: Option<BootChain>,
    kind: MessageType,
    yiaddr: Ipv4Addr,
    change: Option<Change>,
) -> Reply {
    let msg = req.msg;
    let inform = req.kind == MessageType::Inform;
    let node = table.by_mac(req.mac).map(|i| i.node());
    let intent = table.boot_intent(req.mac, Some(subnet));
    let configured = subnet.boot.as_ref().and_then(|b| b.next_server);
    let mut next_server = configured.unwrap_or(Ipv4Addr::UNSPECIFIED);
    let boot = match intent {
        // No boot fields at all: the firmware falls through to its next boot device.
        Intent::Ignore => Boot {
            file: None,
            http: false,
        },
        _ => {
            let chain = chain
                .filter(|_| intent.renders())
                .map(|c| (c, configured.unwrap_or(server_id)));
            if let Some((_, server)) = chain {
                next_server = server;
            }
            boot_choice(
                msg,
                req.mac,
                subnet.boot.as_ref().map(|b| &b.files),
                node.and_then(|n| n.boot()),
                chain,
            )
        }
    };
    // RFC 2131 Table 3: ciaddr is 0 in an OFFER, the request's in an ACK; siaddr is the next
    // bootstrap server whenever there is one (not only with a boot file), except for a
    // machine told to ignore network boot.
    let ciaddr = if kind == MessageType::Offer {
        Ipv4Addr::UNSPECIFIED
    } else {
        msg.ciaddr()
    };
    let ignore = matches!(intent, Intent::Ignore);
    let siaddr = if ignore || (boot.file.is_none() && configured.is_none()) {
        Ipv4Addr::UNSPECIFIED
    } else {
        next_server
    };
    let mut r = Message::new_with_id(
        msg.xid(),
        ciaddr,
        yiaddr,
        siaddr,
        msg.giaddr(),
        msg.chaddr(),
    );
    r.set_opcode(Opcode::BootReply)
        .set_htype(msg.htype())
        .set_flags(msg.flags());
    let o = r.opts_mut();
    o.insert(DhcpOption::MessageType(kind));
    o.insert(DhcpOption::ServerIdentifier(server_id));
    echo_client_id(req, o);
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
        // The node's current name, over a subnet's option 12: a rename reaches the machine
        // at its next exchange.
        o.insert(DhcpOption::Hostname(n.hostname().to_owned()));
    }
    if let Some(file) = boot.file {
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
    if !siaddr.is_unspecified() {
        r.opts_mut()
            .insert(DhcpOption::TFTPServerName(siaddr.to_string().into_bytes()));
    }
    echo_relay_info(msg, &mut r);
    let dest = if inform {
        destination(
            msg.giaddr(),
            msg.ciaddr(),
            true,
            false,
            Ipv4Addr::UNSPECIFIED,
            req.mac.0,
        )
    } else {
        destination(
            msg.giaddr(),
            msg.ciaddr(),
            msg.flags().broadcast(),
            false,
            yiaddr,
            req.mac.0,
        )
    };
    Reply {
        bytes: encode(&r),
        dest,
        change,
        kind,
    }
}

fn nak(req: &Request<'_>, server_id: Ipv4Addr) -> Reply {
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
        dest: destination(
            msg.giaddr(),
            msg.ciaddr(),
            true,
            true,
            Ipv4Addr::UNSPECIFIED,
            req.mac.0,
        ),
        change: None,
        kind: MessageType::Nak,
    }
}

/// The address that selects the client's subnet: link selection (RFC 3527, in option 82)
/// unless the relay's subnet ignores it, subnet selection (RFC 3011, option 118), the relay's
/// giaddr, else the address the request reached on the server.
fn link_address(table: &Table, msg: &Message, meta: &Meta) -> Ipv4Addr {
    let giaddr = msg.giaddr();
    let arrived = if giaddr.is_unspecified() {
        meta.local
    } else {
        giaddr
    };
    if let Some(DhcpOption::RelayAgentInformation(rai)) =
        msg.opts().get(OptionCode::RelayAgentInformation)
        && let Some(RelayInfo::LinkSelection(ip)) = rai.get(RelayCode::LinkSelection)
        && table
            .subnet_for(arrived)
            .is_none_or(|s| !s.ignore_link_selection)
    {
        return *ip;
    }
    if let Some(DhcpOption::SubnetSelection(ip)) = msg.opts().get(OptionCode::SubnetSelection) {
        return *ip;
    }
    arrived
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

/// Keeps a client-supplied hostname only if it is a valid label (it may end up in DNS).
fn sanitize_hostname(h: &str) -> Option<String> {
    let label = h.split('.').next()?.trim_end_matches('\0');
    name::check_label(label).ok()?;
    Some(label.to_ascii_lowercase())
}

/// The boot file for this client, if any.
struct Boot<'t> {
    file: Option<Cow<'t, str>>,
    http: bool,
}

/// Picks the boot file: by client architecture (option 93), the node's own file over the
/// subnet's, and for iPXE (user class "iPXE", or option 175 present) the iPXE script URL
/// instead, so iPXE does not chain-load itself forever. Where neither names one and `chain`
/// is given (the client has something to boot, on `server`), pserv's own chain.
fn boot_choice<'t>(
    msg: &Message,
    mac: MacAddr,
    subnet: Option<&'t BootFiles>,
    node: Option<&'t BootFiles>,
    chain: Option<(BootChain, Ipv4Addr)>,
) -> Boot<'t> {
    let arch_code = match msg.opts().get(OptionCode::ClientSystemArchitecture) {
        Some(DhcpOption::ClientSystemArchitecture(a)) => Some(u16::from(*a)),
        _ => None,
    };
    let Some(arch) = Arch::from_client_arch(arch_code) else {
        return Boot {
            file: None,
            http: false,
        };
    };
    let ipxe = matches!(msg.opts().get(OptionCode::UserClass),
        Some(DhcpOption::UserClass(uc)) if uc.windows(4).any(|w| w == b"iPXE"))
        || msg.opts().get(OptionCode::Unknown(175)).is_some();
    let by_arch = node
        .and_then(|n| n.file(arch))
        .or_else(|| subnet.and_then(|s| s.file(arch)));
    let file = if ipxe {
        node.and_then(|n| n.ipxe_url.as_deref())
            .or_else(|| subnet.and_then(|s| s.ipxe_url.as_deref()))
            .or(by_arch)
    } else {
        by_arch
    };
    let file = match (file, chain) {
        (Some(f), _) => Some(Cow::Borrowed(f)),
        (None, Some((c, server))) if ipxe => Some(Cow::Owned(format!(
            "http://{server}:{}{}",
            c.http_port,
            BootChain::script_path(mac)
        ))),
        (None, Some((c, server))) if arch.is_http() => Some(Cow::Owned(format!(
            "http://{server}:{}/{}",
            c.http_port,
            BootChain::file(arch)
        ))),
        (None, Some(_)) => Some(Cow::Borrowed(BootChain::file(arch))),
        (None, None) => None,
    };
    Boot {
        http: arch.is_http() && file.is_some(),
        file,
    }
}

/// Decodes a reply (tests and fuzzing use it to check what was sent).
pub fn decode(bytes: &[u8]) -> Option<Message> {
    guard::check(bytes).ok()?;
    v4::Message::from_bytes(bytes).ok()
}

impl Reply {
    /// The encoded reply's length, for I/O buffers.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }
    /// Never true: a reply has a header.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }
}
