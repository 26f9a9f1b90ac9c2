//! The sans-IO DHCPv4 server: (table, leases, now, packet) -> what to send, and what to make
//! durable first.
//!
//! Nothing here touches a socket or a clock. [`Server::handle`] decides on the lease set it is
//! lent (the lease owner's, [`pserv_core::lease::Owner`], in the running service) and returns
//! an [`Outcome`]: a reply (with the lease change that must be durable before it leaves), a
//! change without a reply (RELEASE, DECLINE), or a counted drop. Malformed input is a drop,
//! never a panic.
//!
//! A request is read once ([`Request`]), admitted or dropped (its subnet, the node, the
//! cluster's share), then decided by message type; [`crate::build`] encodes the reply and
//! [`crate::boot`] picks its boot file.

use std::net::Ipv4Addr;

use dhcproto::Decodable;
use dhcproto::v4::{
    DhcpOption, HType, Message, MessageType, Opcode, OptionCode,
    relay::{RelayCode, RelayInfo},
};
use pserv_core::lease::{Change, Client, ClientId, Ended, LeaseBoard, Leases, Share};
use pserv_core::snapshot::UnknownClients;
use pserv_core::table::{IfaceView, SubnetInfo, Table};
use pserv_core::{MacAddr, name};

use crate::boot::BootChain;
use crate::build;
use crate::guard;
use crate::reply::Destination;

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
    /// The lease change to make durable before sending (an ACK for a dynamic lease).
    pub change: Option<Change>,
    /// What kind of reply it is.
    pub kind: MessageType,
    /// A proxyDHCP answer (no address: see [`crate::proxy`]), and what it told the machine.
    pub proxy: Option<Box<crate::proxy::ProxyAnswer>>,
    /// The answer to a SELECTING REQUEST without option 50 (RFC 2131 Table 5 requires it;
    /// answered as the request it means to be, and counted apart).
    pub lenient: bool,
    /// An ACK that gave a netbooting machine (firmware, or iPXE) its address and boot file:
    /// the first step of its boot, announced as a `dhcp` event.
    pub netboot: Option<Box<Netboot>>,
}

/// A netbooting machine's ACK (its request named a PXE or HTTP boot client in option 60, or
/// came from iPXE), with the boot file it was given: the `dhcp` event a controller, or the
/// status page, follows a boot by. Ordinary clients' ACKs are not announced (a dynamic lease
/// has its own `bound` event).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "event", rename = "dhcp")]
pub struct Netboot {
    /// The machine.
    pub mac: MacAddr,
    /// The address it was given.
    pub ip: Ipv4Addr,
    /// Its node, when the snapshot knows it.
    pub node: Option<String>,
    /// The boot file it was given (a TFTP name or a URL).
    pub file: String,
    /// Who asked: `firmware` (PXE), `http` (UEFI HTTP boot) or `ipxe`.
    pub client: &'static str,
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
    /// proxyDHCP: a client that is not netbooting (no option 60 `PXEClient`/`HTTPClient`):
    /// the other server answers it alone.
    NotNetbooting,
    /// proxyDHCP: nothing to boot for this machine (`ignore`, no profile and no boot file).
    NothingToBoot,
}

impl DropReason {
    /// Every reason, in a fixed order (counters are indexed by it).
    pub const ALL: [Self; 17] = [
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
        Self::NotNetbooting,
        Self::NothingToBoot,
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
            Self::NotNetbooting => "NotNetbooting",
            Self::NothingToBoot => "NothingToBoot",
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
    /// Send nothing: a machine on a proxyDHCP subnet showed the address another server leased
    /// it (record it for the address check of its files; see [`crate::proxy`]).
    Seen(crate::proxy::Sighting),
}

/// The DHCPv4 decision-maker. It holds no lease: it decides on the set it is lent, so that
/// one owner (and one durability pipeline) serves every front end. Everything static is the
/// table; the only setting is pserv's own boot chain.
#[derive(Debug, Default, Clone, Copy)]
pub struct Server {
    pub(crate) chain: Option<BootChain>,
    /// RFC 3527's link selection ignored from every relay (server-wide; see
    /// [`Server::with_ignore_link_selection`]).
    ignore_link_selection: bool,
}

/// Facts about a request, read once.
pub(crate) struct Request<'m> {
    pub(crate) msg: &'m Message,
    pub(crate) mac: MacAddr,
    /// Who the client is for its dynamic lease: option 61 when sent, else chaddr.
    client: Client,
    /// Option 61 exactly as sent, echoed in every reply (RFC 6842 §3).
    pub(crate) client_id: Option<&'m [u8]>,
    pub(crate) kind: MessageType,
    requested: Option<Ipv4Addr>,
    /// Option 54 of the request (the server the client selected).
    server_id: Option<Ipv4Addr>,
    /// The relay's server identifier override (RFC 5107: option 82 sub-option 11).
    pub(crate) id_override: Option<Ipv4Addr>,
    hostname: Option<String>,
}

impl<'m> Request<'m> {
    /// Reads what the decision needs; a packet that is not a client's request is a drop.
    pub(crate) fn read(msg: &'m Message) -> Result<Self, DropReason> {
        if msg.opcode() != Opcode::BootRequest || msg.htype() != HType::Eth || msg.hlen() != 6 {
            return Err(DropReason::NotAClientRequest);
        }
        let kind = msg
            .opts()
            .msg_type()
            .ok_or(DropReason::UnsupportedMessageType)?;
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
        Ok(Self {
            msg,
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
        })
    }

    /// Whether `sid` (a requested server identifier) names this server: the address the
    /// request reached, or the relay's override of it.
    fn names_us(&self, sid: Ipv4Addr, meta: &Meta) -> bool {
        sid == meta.local || self.id_override == Some(sid)
    }

    /// Whether the cluster balances this request by client bucket (RFC 3074). A REQUEST
    /// naming a server, a renewal (unicast to the server that holds the lease, or a
    /// rebinding any instance may take: the store lets only one commit), a RELEASE and a
    /// DECLINE are not balanced.
    fn balanced(&self) -> bool {
        match self.kind {
            MessageType::Discover | MessageType::Inform => true,
            MessageType::Request => self.server_id.is_none() && self.msg.ciaddr().is_unspecified(),
            _ => false,
        }
    }
}

/// One admitted request and everything its answer is built from: the table's answers are
/// looked up once here (the node, by its MAC, once per request).
pub(crate) struct Exchange<'a> {
    pub(crate) table: &'a Table,
    pub(crate) subnet: &'a SubnetInfo,
    pub(crate) req: &'a Request<'a>,
    /// The client's interface in the table, if the controller knows its MAC.
    pub(crate) iface: Option<IfaceView<'a>>,
    /// What replies carry in option 54: the relay's override where it gave one (RFC 5107
    /// §4), so that the client's next REQUEST goes to the relay again.
    pub(crate) server_id: Ipv4Addr,
    pub(crate) chain: Option<BootChain>,
    meta: &'a Meta,
    /// The reservation, if the node has one on this subnet and no other client's live lease
    /// still holds it (then the node gets a dynamic address until that lease ends).
    reserved: Option<Ipv4Addr>,
    /// A known node's lease carries its name; an unknown client's, the one it asked for.
    lease_name: Option<String>,
}

impl Server {
    /// A server without pserv's own boot chain.
    pub fn new() -> Self {
        Self::default()
    }

    /// Offers pserv's own boot chain (see [`BootChain`]) where a subnet names no boot files.
    pub fn with_boot_chain(mut self, chain: Option<BootChain>) -> Self {
        self.chain = chain;
        self
    }

    /// Ignores RFC 3527 link selection (option 82 sub-option 5) from every relay, as a
    /// subnet's `ignore_link_selection` does for relays in that subnet: for relays whose
    /// address is in no subnet (Kea's `compatibility.ignore-rai-link-selection`). The subnet
    /// is then chosen by option 118, else giaddr.
    pub fn with_ignore_link_selection(mut self, ignore: bool) -> Self {
        self.ignore_link_selection = ignore;
        self
    }

    /// Handles one datagram, deciding on `leases` (whose share says which clients to answer).
    pub fn handle(
        &self,
        table: &Table,
        leases: &mut Leases,
        now: u64,
        meta: &Meta,
        data: &[u8],
    ) -> Outcome {
        if let Err(e) = guard::check(data) {
            return Outcome::Drop(match e {
                guard::Malformed::OptionLength(_) => DropReason::BadOptionLength,
                _ => DropReason::Malformed,
            });
        }
        let Ok(msg) = Message::from_bytes(data) else {
            return Outcome::Drop(DropReason::Malformed);
        };
        let req = match Request::read(&msg) {
            Ok(r) => r,
            Err(reason) => return Outcome::Drop(reason),
        };
        // proxyDHCP subnets: the boot part only, no lease (crate::proxy). The link a request
        // arrived from decides as well as the link it names (option 118 or link selection,
        // which a client can send): a proxy link never gets a lease, nor a NAK, from here.
        let arrival = if msg.giaddr().is_unspecified() {
            meta.local
        } else {
            msg.giaddr()
        };
        if let Some(subnet) = [arrival, self.link_address(table, &msg, meta)]
            .into_iter()
            .filter_map(|ip| table.subnet_for(ip))
            .find(|s| s.proxy_dhcp)
        {
            return self.proxy(table, subnet, meta, &req);
        }
        let x = match self.admit(table, leases, now, meta, &req) {
            Ok(x) => x,
            Err(outcome) => return outcome,
        };
        match req.kind {
            MessageType::Discover => x.discover(leases, now),
            MessageType::Request => x.request(leases, now),
            MessageType::Release => match leases.release(req.client.clone(), msg.ciaddr()) {
                Some(c) => Outcome::Change(c),
                None => Outcome::Drop(DropReason::NoSuchLease),
            },
            MessageType::Decline => {
                let ip = req.requested.unwrap_or(Ipv4Addr::UNSPECIFIED);
                match leases.decline(req.client.clone(), ip, x.subnet.decline_seconds, now) {
                    Some(c) => Outcome::Change(c),
                    None => Outcome::Drop(DropReason::NoSuchLease),
                }
            }
            MessageType::Inform => {
                if msg.ciaddr().is_unspecified() && msg.giaddr().is_unspecified() {
                    return Outcome::Drop(DropReason::InformWithoutAddress);
                }
                Outcome::Reply(x.reply(MessageType::Ack, Ipv4Addr::UNSPECIFIED, None))
            }
            _ => Outcome::Drop(DropReason::UnsupportedMessageType),
        }
    }

    /// Finds the request's subnet and node and decides whether to answer it at all: the
    /// subnet's policy for unknown clients, and in cluster mode the instance's share.
    // The error is the request's outcome (a drop or a NAK), built once and returned as is.
    #[allow(clippy::result_large_err)]
    fn admit<'a>(
        &self,
        table: &'a Table,
        leases: &Leases,
        now: u64,
        meta: &'a Meta,
        req: &'a Request<'a>,
    ) -> Result<Exchange<'a>, Outcome> {
        let server_id = req.id_override.unwrap_or(meta.local);
        let Some(subnet) = table.subnet_for(self.link_address(table, req.msg, meta)) else {
            // RFC 2131 §4.3.2: a server selected by a REQUEST it cannot satisfy (a link it
            // has no subnet for) SHOULD NAK it, so the client starts over at once.
            if req.kind == MessageType::Request
                && req.server_id.is_some_and(|s| req.names_us(s, meta))
            {
                return Err(Outcome::Reply(build::nak(req, server_id)));
            }
            return Err(Outcome::Drop(DropReason::NoSubnet));
        };
        let iface = table.by_mac(req.mac);
        if iface.is_none() && subnet.unknown_clients == UnknownClients::Ignore {
            return Err(Outcome::Drop(DropReason::UnknownClientIgnored));
        }
        let reserved = iface
            .and_then(|i| i.ipv4())
            .filter(|ip| subnet.contains(*ip))
            .filter(|ip| leases.holder(*ip, now).is_none_or(|h| h.mac == req.mac));
        // Cluster mode: one instance answers each client while all are alive (RFC 3074);
        // one cut off from the others still answers reserved nodes, which need no shared
        // state.
        let share = leases.share();
        if req.balanced()
            && !share.answers(client_bucket(req.client_id, req.mac))
            && !(share.all_reserved && iface.is_some())
        {
            return Err(Outcome::Drop(DropReason::OtherInstance));
        }
        let dynamic = reserved.is_none() && req.kind != MessageType::Inform;
        if dynamic
            && !share.allocate
            && matches!(req.kind, MessageType::Discover | MessageType::Request)
        {
            return Err(Outcome::Drop(DropReason::ClusterUnavailable));
        }
        if dynamic && share.busy && req.kind == MessageType::Discover {
            return Err(Outcome::Drop(DropReason::Busy));
        }
        Ok(Exchange {
            table,
            subnet,
            req,
            iface,
            server_id,
            chain: self.chain,
            meta,
            reserved,
            lease_name: iface
                .map(|i| i.node().hostname().to_owned())
                .or_else(|| req.hostname.clone()),
        })
    }
}

impl<'a> Exchange<'a> {
    /// An exchange with no lease in it (proxyDHCP: the boot fields only).
    pub(crate) fn new(
        table: &'a Table,
        subnet: &'a SubnetInfo,
        req: &'a Request<'a>,
        iface: Option<IfaceView<'a>>,
        server_id: Ipv4Addr,
        chain: Option<BootChain>,
        meta: &'a Meta,
    ) -> Self {
        Self {
            table,
            subnet,
            req,
            iface,
            server_id,
            chain,
            meta,
            reserved: None,
            lease_name: None,
        }
    }
}

impl Exchange<'_> {
    /// DHCPDISCOVER: offer the reservation, else a dynamic address held for the client.
    fn discover(&self, leases: &mut Leases, now: u64) -> Outcome {
        let ip = match self.reserved {
            Some(ip) => ip,
            None => match leases.offer(
                self.table,
                self.subnet,
                self.req.client.clone(),
                self.req.requested,
                self.lease_name.as_deref(),
                now,
            ) {
                Some(ip) => ip,
                None => return Outcome::Drop(DropReason::PoolExhausted),
            },
        };
        Outcome::Reply(self.reply(MessageType::Offer, ip, None))
    }

    /// DHCPREQUEST in every state (RFC 2131 §4.3.2): SELECTING, INIT-REBOOT, RENEWING and
    /// REBINDING.
    fn request(&self, leases: &mut Leases, now: u64) -> Outcome {
        let req = self.req;
        let ciaddr = req.msg.ciaddr();
        let (ip, init_reboot) = match (req.server_id, req.requested) {
            // SELECTING: the client chose a server; if not us, our offer just lapses.
            (Some(sid), Some(ip)) if req.names_us(sid, self.meta) => (ip, false),
            // SELECTING without option 50 (RFC 2131 Table 5: MUST, but embedded PXE stacks
            // omit it, and Kea answers): the reservation, else what this server offered the
            // client (or its lease), else a new address, as a DISCOVER would have had.
            (Some(sid), None) if req.names_us(sid, self.meta) && ciaddr.is_unspecified() => {
                let ip = match self.reserved {
                    Some(r) => r,
                    None => match leases.offer(
                        self.table,
                        self.subnet,
                        req.client.clone(),
                        None,
                        self.lease_name.as_deref(),
                        now,
                    ) {
                        Some(ip) => ip,
                        None => return Outcome::Drop(DropReason::PoolExhausted),
                    },
                };
                return match self.reserved {
                    Some(r) => Outcome::Reply(self.reply(MessageType::Ack, r, None)),
                    None => self.commit(leases, ip, now),
                }
                .lenient();
            }
            (Some(_), _) => return Outcome::Drop(DropReason::NotForUs),
            // INIT-REBOOT: verifying a remembered address.
            (None, Some(ip)) if ciaddr.is_unspecified() => (ip, true),
            // RENEWING / REBINDING: the address in use.
            (None, _) if !ciaddr.is_unspecified() => (ciaddr, false),
            (None, _) => return Outcome::Drop(DropReason::NotForUs),
        };
        match self.reserved {
            Some(r) if ip == r => Outcome::Reply(self.reply(MessageType::Ack, ip, None)),
            // The reservation moved (or the client asks for another address).
            Some(_) => self.nak(),
            // On the wrong network: whatever the record, the address cannot be used.
            None if !self.subnet.contains(ip) => self.nak(),
            // Another node's reservation: the client's notion is wrong, and known to be
            // (RFC 2131 §4.3.2 SHOULD NAK), record or not.
            None if init_reboot && self.table.by_ipv4(ip).is_some() => self.nak(),
            None if init_reboot => match leases.lease(&req.client).map(|l| l.ip) {
                // RFC 2131 §4.3.2: no record of the client, no answer (another server may
                // hold its lease).
                None => Outcome::Drop(DropReason::NoRecord),
                Some(held) if held != ip => self.nak(),
                Some(_) => self.commit(leases, ip, now),
            },
            None => self.commit(leases, ip, now),
        }
    }

    /// Binds `ip` to the requesting client and ACKs, or NAKs when the address cannot be its.
    fn commit(&self, leases: &mut Leases, ip: Ipv4Addr, now: u64) -> Outcome {
        match leases.commit(
            self.table,
            self.subnet,
            self.req.client.clone(),
            ip,
            self.lease_name.as_deref(),
            now,
        ) {
            Ok(change) => Outcome::Reply(self.reply(MessageType::Ack, ip, Some(change))),
            Err(_) => self.nak(),
        }
    }

    fn nak(&self) -> Outcome {
        Outcome::Reply(build::nak(self.req, self.server_id))
    }
}

/// A server deciding on a lease set of its own, with no log: what tests, fuzzing and
/// benchmarks drive. The running service decides on its lease owner's set instead
/// ([`crate::io`]), where every change is made durable before its reply leaves.
#[derive(Debug, Default)]
pub struct Standalone {
    /// The decision-maker.
    pub server: Server,
    leases: Leases,
}

impl Standalone {
    /// A server with `leases` (as recovered from a journal, say).
    pub fn new(leases: Leases) -> Self {
        Self {
            server: Server::new(),
            leases,
        }
    }

    /// Offers pserv's own boot chain where a subnet names no boot files.
    pub fn with_boot_chain(mut self, chain: Option<BootChain>) -> Self {
        self.server = self.server.with_boot_chain(chain);
        self
    }

    /// Handles one datagram ([`Server::handle`] on this set).
    pub fn handle(&mut self, table: &Table, now: u64, meta: &Meta, data: &[u8]) -> Outcome {
        self.server.handle(table, &mut self.leases, now, meta, data)
    }

    /// The lease set.
    pub fn leases(&self) -> &Leases {
        &self.leases
    }

    /// Sets which clients to answer ([`Leases::set_share`]).
    pub fn set_share(&mut self, share: Share) {
        self.leases.set_share(share);
    }

    /// Applies a change another instance made ([`Leases::apply`]).
    pub fn apply_remote(&mut self, change: &Change) {
        self.leases.apply(change);
    }

    /// When the next lease, offer or quarantine ends (Unix seconds), if any.
    pub fn poll_timeout(&mut self) -> Option<u64> {
        self.leases.poll_timeout()
    }

    /// Ends everything due by `now`; returns what ended.
    pub fn handle_timeout(&mut self, now: u64) -> Vec<Ended> {
        self.leases.expire(now)
    }

    /// Publishes the leases as they are now to `board`.
    pub fn publish(&mut self, board: &LeaseBoard) {
        self.leases.publish(board);
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

impl Server {
    /// The address that selects the client's subnet: link selection (RFC 3527, in option 82)
    /// unless the relay's subnet ignores it (or the server ignores it from every relay), subnet
    /// selection (RFC 3011, option 118), the relay's giaddr, else the address the request reached
    /// on the server.
    pub(crate) fn link_address(&self, table: &Table, msg: &Message, meta: &Meta) -> Ipv4Addr {
        let giaddr = msg.giaddr();
        let arrived = if giaddr.is_unspecified() {
            meta.local
        } else {
            giaddr
        };
        if let Some(DhcpOption::RelayAgentInformation(rai)) =
            msg.opts().get(OptionCode::RelayAgentInformation)
            && let Some(RelayInfo::LinkSelection(ip)) = rai.get(RelayCode::LinkSelection)
            && !self.ignore_link_selection
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
}

/// Keeps a client-supplied hostname only if it is a valid label (it may end up in DNS).
pub(crate) fn sanitize_hostname(h: &str) -> Option<String> {
    let label = h.split('.').next()?.trim_end_matches('\0');
    name::check_label(label).ok()?;
    Some(label.to_ascii_lowercase())
}

/// Decodes a reply (tests and fuzzing use it to check what was sent).
pub fn decode(bytes: &[u8]) -> Option<Message> {
    guard::check(bytes).ok()?;
    Message::from_bytes(bytes).ok()
}

impl Outcome {
    /// Marks a reply as answering a request RFC 2131 says a client must not send, read as
    /// what it means to be (counted apart).
    fn lenient(mut self) -> Self {
        if let Self::Reply(r) = &mut self {
            r.lenient = true;
        }
        self
    }
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
