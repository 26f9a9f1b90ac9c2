//! The sans-IO DHCPv6 server (RFC 8415): (table, leases, now, datagram) -> the reply, and the
//! lease changes to make durable before it leaves.
//!
//! A second front end on the one lease owner: [`Server6::handle`] decides on the same
//! [`Leases`] the DHCPv4 server does (its IPv6 half, [`pserv_core::lease::Leases6`]), and its
//! changes go through the same journal or cluster store. Nothing here touches a socket or a
//! clock; malformed input is a counted drop, never a panic.
//!
//! What it answers: SOLICIT (ADVERTISE, or REPLY with Rapid Commit), REQUEST, RENEW, REBIND,
//! RELEASE, DECLINE, CONFIRM and INFORMATION-REQUEST, for IA_NA (IA_TA and IA_PD get their
//! "none available" status), directly or through nested relays (the relay-reply mirrors each
//! relay, interface-id echoed). A node is found by MAC: from a DUID-LLT or DUID-LL, else the
//! relay's client link-layer address (option 79, RFC 6939), else the EUI-64 of the client's
//! link-local address; its reserved `ipv6` goes to its first IA_NA. Network boot (RFC 5970):
//! by client architecture (option 61), the boot file URL (option 59: `tftp://[server]/file`,
//! or `http://[server]:port/file` and vendor class "HTTPClient" for HTTP boot).
//!
//! Options are dhcproto's v6 types where it has them; the boot file URL (59) and the client
//! FQDN (39) are raw options, and the relay layers are framed by hand ([`wire`]).

mod wire;

use std::net::Ipv6Addr;

use dhcproto::v6::{
    DhcpOption, DhcpOptions, IAAddr, IANA, Message, MessageType, OptionCode, Status, StatusCode,
    UnknownOption,
};
use dhcproto::{Decodable, Decoder, Encodable, Name};
use pserv_core::MacAddr;
use pserv_core::lease::{Change, Duid, Key6, Leases};
use pserv_core::snapshot::{Arch, UnknownClients};
use pserv_core::table::{IfaceView, Intent, SubnetInfo6, Table, names};

use crate::boot::BootChain;
use crate::server::{client_bucket, sanitize_hostname};

/// Option codes dhcproto has no type for.
const OPT_FQDN: u16 = 39;
const OPT_BOOTFILE_URL: u16 = 59;
/// The enterprise number of UEFI HTTP boot's vendor class (the UEFI specification's, 343),
/// used when the client sent none.
const HTTP_ENTERPRISE: u32 = 343;

/// Where a request arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Meta6 {
    /// The datagram's source address (a client's link-local address, or a relay's).
    pub source: Ipv6Addr,
    /// A global address of the server on the link the request arrived on (the link of a
    /// client that is not relayed, and the host of boot URLs); for a relayed request, the
    /// address the relay sent to.
    pub server: Option<Ipv6Addr>,
    /// Whether it was sent to a multicast group (ff02::1:2), not to one of our addresses
    /// (RFC 8415 §16: some messages must come by multicast from a client that is not relayed).
    pub multicast: bool,
}

/// IA_NAs of one message given an address at most: the rest are told NoAddrsAvail, so one
/// datagram cannot take a pool's worth of addresses (or a thread's worth of scanning).
pub const MAX_IAS: usize = 8;

/// A reply to send (to the datagram's source, from the port it was sent to).
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use = "a reply must be sent (after its changes are durable)"]
pub struct Reply6 {
    /// The encoded message (wrapped in RELAY-REPLs for a relayed request).
    pub bytes: Vec<u8>,
    /// The lease changes to make durable before sending.
    pub changes: Vec<Change>,
    /// The client's message type's answer: ADVERTISE or REPLY.
    pub kind: MessageType,
    /// Whether it went through relays.
    pub relayed: bool,
    /// A netbooting machine's REPLY with an address and a boot file.
    pub netboot: Option<Box<Netboot6>>,
}

/// A netbooting machine's REPLY: the `dhcp` event a controller follows a boot by.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "event", rename = "dhcp")]
pub struct Netboot6 {
    /// The machine, where its MAC is known.
    pub mac: Option<MacAddr>,
    /// The address it was given.
    pub ip: Ipv6Addr,
    /// Its node, when the snapshot knows it.
    pub node: Option<String>,
    /// The boot file URL.
    pub file: String,
    /// `firmware` (PXE) or `http` (UEFI HTTP boot).
    pub client: &'static str,
}

/// Why a datagram got no answer. Every drop is counted by reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DropReason6 {
    /// Not a DHCPv6 message we can decode.
    Malformed,
    /// An option with a length its code does not allow.
    BadOptionLength,
    /// A message a server does not receive (ADVERTISE, REPLY, RELAY-REPL...).
    NotAClientRequest,
    /// A message type a server does not answer.
    UnsupportedMessageType,
    /// No client identifier where one is required, or one that is not a DUID.
    NoClientId,
    /// A server identifier that is not ours where one is required, or one where none may be
    /// (RFC 8415 §16).
    NotForUs,
    /// No subnet for the link the request came from.
    NoSubnet,
    /// A client the snapshot does not know, on a subnet that ignores those.
    UnknownClientIgnored,
    /// Cluster mode: another instance answers this client.
    OtherInstance,
    /// Cluster mode: the lease store is out of reach, so no dynamic lease.
    ClusterUnavailable,
    /// Cluster mode: the store is behind; a new client is turned away for now.
    Busy,
    /// A CONFIRM without addresses (RFC 8415 §18.3.3: no reply).
    NothingToConfirm,
    /// A SOLICIT, CONFIRM, REBIND or INFORMATION-REQUEST sent by unicast from a client that
    /// is not relayed (RFC 8415 §16: discarded), or an INFORMATION-REQUEST with an IA.
    Unicast,
}

impl DropReason6 {
    /// Every reason, in a fixed order (counters are indexed by it).
    pub const ALL: [Self; 13] = [
        Self::Malformed,
        Self::BadOptionLength,
        Self::NotAClientRequest,
        Self::UnsupportedMessageType,
        Self::NoClientId,
        Self::NotForUs,
        Self::NoSubnet,
        Self::UnknownClientIgnored,
        Self::OtherInstance,
        Self::ClusterUnavailable,
        Self::Busy,
        Self::NothingToConfirm,
        Self::Unicast,
    ];

    /// This reason's position in [`DropReason6::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }

    /// The reason's name, as `/metrics` labels it.
    pub fn name(self) -> &'static str {
        match self {
            Self::Malformed => "Malformed",
            Self::BadOptionLength => "BadOptionLength",
            Self::NotAClientRequest => "NotAClientRequest",
            Self::UnsupportedMessageType => "UnsupportedMessageType",
            Self::NoClientId => "NoClientId",
            Self::NotForUs => "NotForUs",
            Self::NoSubnet => "NoSubnet",
            Self::UnknownClientIgnored => "UnknownClientIgnored",
            Self::OtherInstance => "OtherInstance",
            Self::ClusterUnavailable => "ClusterUnavailable",
            Self::Busy => "Busy",
            Self::NothingToConfirm => "NothingToConfirm",
            Self::Unicast => "Unicast",
        }
    }
}

/// What to do about one datagram.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub enum Outcome6 {
    /// Send this (after its changes are durable).
    Reply(Reply6),
    /// Send nothing; count the reason.
    Drop(DropReason6),
}

/// The DHCPv6 decision-maker: the server's DUID and pserv's own boot chain; it holds no lease.
#[derive(Debug, Clone)]
pub struct Server6 {
    duid: Duid,
    chain: Option<BootChain>,
}

/// A client's request, read once.
struct Request6<'m> {
    msg: &'m Message,
    kind: MessageType,
    duid: Option<Duid>,
    mac: Option<MacAddr>,
    hostname: Option<String>,
    arch: Option<u16>,
    /// The enterprise number of the client's vendor class "HTTPClient", if it sent one.
    http_client: Option<u32>,
}

/// One request's subnet, node and reservation, looked up once.
struct Exchange6<'a> {
    table: &'a Table,
    subnet: &'a SubnetInfo6,
    iface: Option<IfaceView<'a>>,
    reserved: Option<Ipv6Addr>,
    lease_name: Option<String>,
    server_addr: Option<Ipv6Addr>,
}

/// What one IA_NA gets.
struct IaAnswer {
    ia: IANA,
    /// The address given (with a nonzero lifetime), if any.
    given: Option<Ipv6Addr>,
}

impl Server6 {
    /// A server with this DUID (keep it across restarts: see the state directory).
    pub fn new(duid: Duid) -> Self {
        Self { duid, chain: None }
    }

    /// Offers pserv's own boot chain where a subnet names no boot files.
    pub fn with_boot_chain(mut self, chain: Option<BootChain>) -> Self {
        self.chain = chain;
        self
    }

    /// The server's DUID.
    pub fn duid(&self) -> &Duid {
        &self.duid
    }

    /// Handles one datagram, deciding on `leases`' IPv6 half.
    pub fn handle(
        &self,
        table: &Table,
        leases: &mut Leases,
        now: u64,
        meta: &Meta6,
        data: &[u8],
    ) -> Outcome6 {
        let unwrapped = match wire::unwrap(data) {
            Ok(u) => u,
            Err(wire::Malformed::OptionLength(_)) => {
                return Outcome6::Drop(DropReason6::BadOptionLength);
            }
            Err(wire::Malformed::NotARequest) => {
                return Outcome6::Drop(DropReason6::NotAClientRequest);
            }
            Err(_) => return Outcome6::Drop(DropReason6::Malformed),
        };
        let Ok(msg) = Message::decode(&mut Decoder::new(&wire::neutral(unwrapped.inner))) else {
            return Outcome6::Drop(DropReason6::Malformed);
        };
        let relays = &unwrapped.relays;
        let innermost = relays.last();
        let peer = innermost.map_or(meta.source, |r| r.peer);
        let req = Request6::read(&msg, innermost.and_then(|r| r.lladdr), peer);
        // RFC 8415 §16: which messages must, may and must not name a server.
        let server_id = match msg.opts().get(OptionCode::ServerId) {
            Some(DhcpOption::ServerId(id)) => Some(id.as_slice()),
            _ => None,
        };
        let ours = server_id == Some(self.duid.as_bytes());
        let named_ok = match req.kind {
            MessageType::Solicit | MessageType::Rebind | MessageType::Confirm => {
                server_id.is_none()
            }
            MessageType::Request
            | MessageType::Renew
            | MessageType::Release
            | MessageType::Decline => ours,
            MessageType::InformationRequest => server_id.is_none() || ours,
            _ => return Outcome6::Drop(DropReason6::UnsupportedMessageType),
        };
        if req.kind != MessageType::InformationRequest && req.duid.is_none() {
            return Outcome6::Drop(DropReason6::NoClientId);
        }
        if !named_ok {
            return Outcome6::Drop(DropReason6::NotForUs);
        }
        // §16: from a client that is not relayed, these come by multicast only; an
        // INFORMATION-REQUEST never carries an IA (§16.12).
        let direct_unicast = relays.is_empty() && !meta.multicast;
        let multicast_only = matches!(
            req.kind,
            MessageType::Solicit
                | MessageType::Confirm
                | MessageType::Rebind
                | MessageType::InformationRequest
        );
        let has_ia = [OptionCode::IANA, OptionCode::IATA, OptionCode::IAPD]
            .iter()
            .any(|c| msg.opts().get(*c).is_some());
        if direct_unicast && multicast_only || req.kind == MessageType::InformationRequest && has_ia
        {
            return Outcome6::Drop(DropReason6::Unicast);
        }
        // The link: the relay nearest the client's link-address when it is a global one
        // (RFC 8415 §13.1), else the server's own address where the request arrived.
        // Lightweight relays (RFC 6221) leave it unspecified: the next relay out names the link.
        let link = if relays.is_empty() {
            meta.server
        } else {
            relays
                .iter()
                .rev()
                .map(|r| r.link)
                .find(|l| !l.is_unspecified() && !is_link_local(*l))
                .or(meta.server)
        };
        let Some(subnet) = link.and_then(|l| table.subnet6_for(l)) else {
            return Outcome6::Drop(DropReason6::NoSubnet);
        };
        let iface = req.mac.and_then(|m| table.by_mac(m));
        if iface.is_none() && subnet.unknown_clients == UnknownClients::Ignore {
            return Outcome6::Drop(DropReason6::UnknownClientIgnored);
        }
        let reserved = iface
            .and_then(|i| i.ipv6())
            .filter(|ip| subnet.contains(*ip));
        // Cluster mode: one instance answers each client (by its DUID's bucket); reserved
        // nodes are answered by any instance cut off from the others.
        let share = leases.share();
        let balanced = matches!(
            req.kind,
            MessageType::Solicit | MessageType::InformationRequest
        );
        if balanced
            && !share.answers(client_bucket(
                req.duid.as_ref().map(Duid::as_bytes),
                req.mac.unwrap_or(MacAddr([0; 6])),
            ))
            && !(share.all_reserved && iface.is_some())
        {
            return Outcome6::Drop(DropReason6::OtherInstance);
        }
        let allocates = matches!(
            req.kind,
            MessageType::Solicit | MessageType::Request | MessageType::Renew | MessageType::Rebind
        );
        if allocates && reserved.is_none() && !share.allocate {
            return Outcome6::Drop(DropReason6::ClusterUnavailable);
        }
        if req.kind == MessageType::Solicit && reserved.is_none() && share.busy {
            return Outcome6::Drop(DropReason6::Busy);
        }
        let server_addr = meta.server;
        let x = Exchange6 {
            table,
            subnet,
            iface,
            reserved,
            lease_name: iface
                .map(|i| i.node().hostname().to_owned())
                .or_else(|| req.hostname.clone()),
            server_addr,
        };
        // §18.4: a client that unicasts what it may not (pserv never offers Server Unicast)
        // is told to use multicast.
        if direct_unicast {
            let mut r = self.reply(&req, &x, MessageType::Reply, Vec::new(), Vec::new(), None);
            r.bytes = append_status(&r.bytes, Status::UseMulticast, "use multicast");
            return Outcome6::Reply(r);
        }
        let mut r = match req.kind {
            MessageType::InformationRequest => {
                self.reply(&req, &x, MessageType::Reply, Vec::new(), Vec::new(), None)
            }
            MessageType::Confirm => match self.confirm(&req, &x) {
                Some(r) => r,
                None => return Outcome6::Drop(DropReason6::NothingToConfirm),
            },
            MessageType::Release | MessageType::Decline => {
                self.release_or_decline(&req, &x, leases, now)
            }
            _ => self.assign(&req, &x, leases, now),
        };
        r.bytes = wire::wrap(relays, r.bytes);
        r.relayed = !relays.is_empty();
        Outcome6::Reply(r)
    }

    /// SOLICIT, REQUEST, RENEW, REBIND: an address for each IA_NA.
    fn assign(
        &self,
        req: &Request6<'_>,
        x: &Exchange6<'_>,
        leases: &mut Leases,
        now: u64,
    ) -> Reply6 {
        let rapid = req.kind == MessageType::Solicit
            && req.msg.opts().get(OptionCode::RapidCommit).is_some();
        let commits = rapid || req.kind != MessageType::Solicit;
        let kind = if req.kind == MessageType::Solicit && !rapid {
            MessageType::Advertise
        } else {
            MessageType::Reply
        };
        let Some(duid) = req.duid.clone() else {
            return self.reply(req, x, kind, Vec::new(), Vec::new(), None);
        };
        let mut changes = Vec::new();
        let mut ias = Vec::new();
        let mut first = true;
        let mut given = None;
        for (n, ia) in req.ia_nas().enumerate() {
            if n >= MAX_IAS {
                ias.push(status_ia(
                    ia.id,
                    Status::NoAddrsAvail,
                    "too many IAs in one message",
                ));
                continue;
            }
            let key = Key6 {
                duid: duid.clone(),
                iaid: ia.id,
            };
            let asked: Vec<Ipv6Addr> = ia_addresses(ia);
            // §18.3.2: a REQUEST naming an address not on this link is told NotOnLink.
            if req.kind == MessageType::Request && asked.iter().any(|a| !x.subnet.contains(*a)) {
                ias.push(status_ia(ia.id, Status::NotOnLink, "not on this link"));
                continue;
            }
            // A node's reservation goes to its first IA; its other IAs, and every IA of
            // other clients, get dynamic addresses.
            let reserved = x.reserved.filter(|_| first);
            first = false;
            let answer = match reserved {
                Some(ip) => Some(ip),
                None if commits => {
                    let current = leases.v6().bound(&key, now).map(|l| l.ip);
                    let candidate = match req.kind {
                        // RENEW and REBIND keep the binding they name; REQUEST takes what
                        // was advertised (held for this client), else a fresh address.
                        MessageType::Renew | MessageType::Rebind => current.or_else(|| {
                            asked.iter().copied().find(|ip| {
                                leases
                                    .v6()
                                    .check_commit(x.table, x.subnet, &key, *ip, now)
                                    .is_ok()
                            })
                        }),
                        // §18.3.2: an IA with a binding keeps it; else what it asks for, else
                        // what was advertised to it.
                        _ => current
                            .into_iter()
                            .chain(asked.iter().copied())
                            .chain(leases.v6().lease(&key).map(|l| l.ip))
                            .find(|ip| {
                                leases
                                    .v6()
                                    .check_commit(x.table, x.subnet, &key, *ip, now)
                                    .is_ok()
                            })
                            .or_else(|| {
                                leases.v6_mut().offer(
                                    x.table,
                                    x.subnet,
                                    &key,
                                    req.mac,
                                    None,
                                    x.lease_name.as_deref(),
                                    now,
                                )
                            }),
                    };
                    candidate.and_then(|ip| {
                        let c = leases
                            .v6_mut()
                            .commit(
                                x.table,
                                x.subnet,
                                &key,
                                req.mac,
                                ip,
                                x.lease_name.as_deref(),
                                now,
                            )
                            .ok()?;
                        changes.push(c);
                        Some(ip)
                    })
                }
                None => leases.v6_mut().offer(
                    x.table,
                    x.subnet,
                    &key,
                    req.mac,
                    asked.first().copied(),
                    x.lease_name.as_deref(),
                    now,
                ),
            };
            let a = x.ia_answer(req.kind, ia.id, answer, &asked);
            if given.is_none() {
                given = a.given;
            }
            ias.push(a.ia);
        }
        let mut r = self.reply(req, x, kind, ias, changes, given);
        if rapid {
            r.bytes = append_option(&r.bytes, 14, &[]);
        }
        r
    }

    /// RELEASE and DECLINE: the bindings named go (declined ones into quarantine); the reply
    /// says Success, and NoBinding for each IA the client holds nothing in (§18.3.7, 18.3.8).
    fn release_or_decline(
        &self,
        req: &Request6<'_>,
        x: &Exchange6<'_>,
        leases: &mut Leases,
        now: u64,
    ) -> Reply6 {
        let Some(duid) = req.duid.clone() else {
            return self.reply(req, x, MessageType::Reply, Vec::new(), Vec::new(), None);
        };
        let mut changes = Vec::new();
        let mut ias = Vec::new();
        for ia in req.ia_nas().take(MAX_IAS) {
            let key = Key6 {
                duid: duid.clone(),
                iaid: ia.id,
            };
            let mut any = false;
            for ip in ia_addresses(ia) {
                let c = if req.kind == MessageType::Release {
                    leases.v6_mut().release(&key, ip)
                } else {
                    leases
                        .v6_mut()
                        .decline(&key, ip, x.subnet.decline_seconds, now)
                };
                // A node's reserved address has no lease to end: nothing to journal.
                any |= c.is_some() || x.reserved == Some(ip);
                changes.extend(c);
            }
            if !any {
                ias.push(status_ia(
                    ia.id,
                    Status::NoBinding,
                    "no binding for this IA",
                ));
            }
        }
        let mut r = self.reply(req, x, MessageType::Reply, ias, changes, None);
        let done = if req.kind == MessageType::Release {
            "released"
        } else {
            "declined"
        };
        r.bytes = append_status(&r.bytes, Status::Success, done);
        r
    }

    /// CONFIRM: whether the client's addresses are on this link (§18.3.3).
    /// `None` when the client named no address (no reply).
    fn confirm(&self, req: &Request6<'_>, x: &Exchange6<'_>) -> Option<Reply6> {
        let addrs: Vec<Ipv6Addr> = req.ia_nas().flat_map(ia_addresses).collect();
        if addrs.is_empty() {
            return None;
        }
        let on_link = addrs.iter().all(|a| x.subnet.contains(*a));
        let mut r = self.reply(req, x, MessageType::Reply, Vec::new(), Vec::new(), None);
        r.bytes = if on_link {
            append_status(&r.bytes, Status::Success, "on link")
        } else {
            append_status(&r.bytes, Status::NotOnLink, "not on this link")
        };
        Some(r)
    }

    /// The reply: the client's and our identifiers, the IAs, the subnet's options and the
    /// boot file URL.
    fn reply(
        &self,
        req: &Request6<'_>,
        x: &Exchange6<'_>,
        kind: MessageType,
        ias: Vec<IANA>,
        changes: Vec<Change>,
        given: Option<Ipv6Addr>,
    ) -> Reply6 {
        let mut m = Message::new_with_id(kind, req.msg.xid());
        let o = m.opts_mut();
        if let Some(d) = &req.duid {
            o.insert(DhcpOption::ClientId(d.as_bytes().to_vec()));
        }
        o.insert(DhcpOption::ServerId(self.duid.as_bytes().to_vec()));
        for ia in ias {
            o.insert(DhcpOption::IANA(ia));
        }
        // IA_TA and IA_PD: none here (RFC 8415 §18.3.9 / 21.21: a status in the IA), in
        // answer to the messages that ask for addresses.
        let assigns = matches!(
            req.kind,
            MessageType::Solicit | MessageType::Request | MessageType::Renew | MessageType::Rebind
        );
        for opt in req.msg.opts().iter().filter(|_| assigns) {
            match opt {
                DhcpOption::IATA(ta) => o.insert(DhcpOption::IATA(dhcproto::v6::IATA {
                    id: ta.id,
                    opts: status_opts(Status::NoAddrsAvail, "no temporary addresses"),
                })),
                DhcpOption::IAPD(pd) => o.insert(DhcpOption::IAPD(dhcproto::v6::IAPD {
                    id: pd.id,
                    t1: 0,
                    t2: 0,
                    opts: status_opts(Status::NoPrefixAvail, "no prefixes"),
                })),
                _ => {}
            }
        }
        if kind == MessageType::Advertise {
            // The only server for its links: the client need not wait for others.
            o.insert(DhcpOption::Preference(255));
            if given.is_none() {
                // §18.3.9: no address for any IA: say so.
                o.insert(DhcpOption::StatusCode(StatusCode {
                    status: Status::NoAddrsAvail,
                    msg: "no addresses available".to_owned(),
                }));
            }
        }
        // §18.3.7, 18.3.8: a reply to RELEASE or DECLINE carries the identifiers and the
        // statuses, no configuration (as Kea answers).
        let configures = !matches!(req.kind, MessageType::Release | MessageType::Decline);
        if configures && !x.subnet.dns_servers.is_empty() {
            o.insert(DhcpOption::DomainNameServers(x.subnet.dns_servers.clone()));
        }
        if let Some(d) = x.subnet.domain.as_deref().filter(|_| configures)
            && let Ok(n) = Name::from_ascii(format!("{d}."))
        {
            o.insert(DhcpOption::DomainSearchList(vec![n]));
        }
        let boot = self.boot(req, x).filter(|_| configures);
        if let Some((url, http)) = &boot {
            o.insert(DhcpOption::Unknown(UnknownOption::new(
                OptionCode::from(OPT_BOOTFILE_URL),
                url.as_bytes().to_vec(),
            )));
            if *http {
                // By hand: dhcproto 0.15 encodes VENDOR_CLASS with a wrong length.
                let mut body = req
                    .http_client
                    .unwrap_or(HTTP_ENTERPRISE)
                    .to_be_bytes()
                    .to_vec();
                body.extend_from_slice(&10u16.to_be_bytes());
                body.extend_from_slice(b"HTTPClient");
                o.insert(DhcpOption::Unknown(UnknownOption::new(
                    OptionCode::VendorClass,
                    body,
                )));
            }
        }
        let mut bytes = m.to_vec().unwrap_or_default();
        for extra in x.subnet.options.iter().filter(|_| configures) {
            wire::put_option(&mut bytes, extra.code, &extra.data);
        }
        let netboot = match (&boot, given) {
            (Some((url, http)), Some(ip)) if kind == MessageType::Reply => {
                Some(Box::new(Netboot6 {
                    mac: req.mac,
                    ip,
                    node: x.iface.map(|i| i.node().id().to_owned()),
                    file: url.clone(),
                    client: if *http { "http" } else { "firmware" },
                }))
            }
            _ => None,
        };
        Reply6 {
            bytes,
            changes,
            kind,
            relayed: false,
            netboot,
        }
    }

    /// The boot file URL for a client that named its architecture (option 61), and whether
    /// it is an HTTP boot one. A client asking for option 59 without naming its architecture
    /// (GRUB's own DHCPv6, once it runs) gets none: DHCPv6 has no legacy PXE client whose
    /// architecture could be assumed, as DHCPv4 assumes BIOS.
    fn boot(&self, req: &Request6<'_>, x: &Exchange6<'_>) -> Option<(String, bool)> {
        req.arch?;
        let intent = Intent::of_boot(x.iface, x.subnet.boot.as_ref());
        if intent == Intent::Ignore {
            return None;
        }
        let arch = Arch::from_client_arch(req.arch)?;
        let node = x.iface.and_then(|i| i.node().boot());
        let subnet = x.subnet.boot.as_ref().map(|b| &b.files);
        let named = node
            .and_then(|n| n.file(arch))
            .or_else(|| subnet.and_then(|s| s.file(arch)));
        let server = x.server_addr?;
        let http = arch.is_http() || req.http_client.is_some();
        let file = match named {
            Some(f) => f.to_owned(),
            None => {
                let chain = self.chain.filter(|_| intent.renders())?;
                let chain_of = node
                    .and_then(|n| n.chain)
                    .or_else(|| subnet.and_then(|s| s.chain))
                    .unwrap_or_default();
                let f = names::chain_file(arch, chain_of);
                if http {
                    return Some((format!("http://[{server}]:{}/{f}", chain.http_port), true));
                }
                f.to_owned()
            }
        };
        if file.contains("://") {
            return Some((file.clone(), file.starts_with("http")));
        }
        let port = self.chain.map_or(80, |c| c.http_port);
        Some(if http {
            (
                format!("http://[{server}]:{port}/{}", file.trim_start_matches('/')),
                true,
            )
        } else {
            (
                format!("tftp://[{server}]/{}", file.trim_start_matches('/')),
                false,
            )
        })
    }
}

impl Exchange6<'_> {
    /// One IA_NA's answer: the address with this subnet's lifetimes, the addresses the client
    /// named that it may not keep at lifetime 0 (RFC 8415 §18.3.4, 18.3.5), or the IA's
    /// status when there is nothing for it.
    fn ia_answer(
        &self,
        kind: MessageType,
        id: u32,
        given: Option<Ipv6Addr>,
        asked: &[Ipv6Addr],
    ) -> IaAnswer {
        let s = self.subnet;
        let mut opts = DhcpOptions::new();
        if let Some(ip) = given {
            opts.insert(DhcpOption::IAAddr(IAAddr {
                addr: ip,
                preferred_life: s.preferred_seconds,
                valid_life: s.valid_seconds,
                opts: DhcpOptions::new(),
            }));
        }
        // RENEW and REBIND (§18.3.4, 18.3.5): the addresses named that the client may not
        // keep, at lifetime 0, so it stops using them.
        let returned = matches!(kind, MessageType::Renew | MessageType::Rebind);
        for ip in asked.iter().filter(|a| returned && Some(**a) != given) {
            opts.insert(DhcpOption::IAAddr(IAAddr {
                addr: *ip,
                preferred_life: 0,
                valid_life: 0,
                opts: DhcpOptions::new(),
            }));
        }
        if given.is_none() {
            let (status, msg) = match kind {
                MessageType::Renew => (Status::NoBinding, "no binding for this IA"),
                MessageType::Rebind if !asked.is_empty() => {
                    // Addresses not ours to extend: returned at lifetime 0 above.
                    return IaAnswer {
                        ia: IANA {
                            id,
                            t1: 0,
                            t2: 0,
                            opts,
                        },
                        given: None,
                    };
                }
                _ => (Status::NoAddrsAvail, "no addresses available"),
            };
            opts.insert(DhcpOption::StatusCode(StatusCode {
                status,
                msg: msg.to_owned(),
            }));
        }
        IaAnswer {
            ia: IANA {
                id,
                t1: if given.is_some() { s.renew_seconds } else { 0 },
                t2: if given.is_some() { s.rebind_seconds } else { 0 },
                opts,
            },
            given,
        }
    }
}

impl<'m> Request6<'m> {
    fn read(msg: &'m Message, relay_lladdr: Option<MacAddr>, peer: Ipv6Addr) -> Self {
        let o = msg.opts();
        let duid = match o.get(OptionCode::ClientId) {
            Some(DhcpOption::ClientId(id)) => Duid::new(id),
            _ => None,
        };
        // The wire's word first (a DUID is per device and cloned images share one): the
        // relay's option 79, the EUI-64 link-local address, then the DUID's MAC.
        let mac = relay_lladdr
            .or_else(|| eui64_mac(peer))
            .or_else(|| duid.as_ref().and_then(Duid::mac));
        let hostname = o.iter().find_map(|opt| match opt {
            DhcpOption::Unknown(u) if u16::from(u.code()) == OPT_FQDN => fqdn_label(u.data()),
            _ => None,
        });
        let arch = match o.get(OptionCode::ClientArchType) {
            Some(DhcpOption::ClientArchType(a)) => a.first().map(|a| u16::from(*a)),
            _ => None,
        };
        let http_client = match o.get(OptionCode::VendorClass) {
            Some(DhcpOption::VendorClass(v))
                if v.data
                    .iter()
                    .any(|d| d.windows(10).any(|w| w == b"HTTPClient")) =>
            {
                Some(v.num)
            }
            _ => None,
        };
        Self {
            msg,
            kind: msg.msg_type(),
            duid,
            mac,
            hostname,
            arch,
            http_client,
        }
    }

    fn ia_nas(&self) -> impl Iterator<Item = &'m IANA> + 'm {
        let opts = self.msg.opts();
        opts.get_all(OptionCode::IANA)
            .unwrap_or(&[])
            .iter()
            .filter_map(|o| match o {
                DhcpOption::IANA(ia) => Some(ia),
                _ => None,
            })
    }
}

/// The addresses an IA_NA names.
fn ia_addresses(ia: &IANA) -> Vec<Ipv6Addr> {
    ia.opts
        .iter()
        .filter_map(|o| match o {
            DhcpOption::IAAddr(a) => Some(a.addr),
            _ => None,
        })
        .collect()
}

fn status_opts(status: Status, msg: &str) -> DhcpOptions {
    let mut o = DhcpOptions::new();
    o.insert(DhcpOption::StatusCode(StatusCode {
        status,
        msg: msg.to_owned(),
    }));
    o
}

fn status_ia(id: u32, status: Status, msg: &str) -> IANA {
    IANA {
        id,
        t1: 0,
        t2: 0,
        opts: status_opts(status, msg),
    }
}

/// An encoded message with one more option at its end.
fn append_option(bytes: &[u8], code: u16, body: &[u8]) -> Vec<u8> {
    let mut out = bytes.to_vec();
    wire::put_option(&mut out, code, body);
    out
}

/// An encoded message with a top-level status code at its end.
fn append_status(bytes: &[u8], status: Status, msg: &str) -> Vec<u8> {
    let mut body = u16::from(status).to_be_bytes().to_vec();
    body.extend_from_slice(msg.as_bytes());
    append_option(bytes, 13, &body)
}

fn is_link_local(a: Ipv6Addr) -> bool {
    a.segments()[0] & 0xffc0 == 0xfe80
}

/// The MAC inside a modified EUI-64 link-local address (`fe80::` + MAC with ff:fe in the
/// middle and the universal/local bit flipped).
fn eui64_mac(a: Ipv6Addr) -> Option<MacAddr> {
    let o = a.octets();
    (is_link_local(a) && o[11] == 0xff && o[12] == 0xfe)
        .then(|| MacAddr([o[8] ^ 2, o[9], o[10], o[13], o[14], o[15]]))
}

/// The host label of a client FQDN option (RFC 4704: flags, then a name in DNS wire form).
fn fqdn_label(data: &[u8]) -> Option<String> {
    let (&len, rest) = data.get(1..)?.split_first()?;
    let label = std::str::from_utf8(rest.get(..usize::from(len))?).ok()?;
    sanitize_hostname(label)
}

/// Decodes a DHCPv6 client message (tests and fuzzing use it to read what was sent); `None`
/// for a relay message or anything else.
pub fn decode(bytes: &[u8]) -> Option<Message> {
    if matches!(bytes.first(), Some(12 | 13)) {
        return None;
    }
    Message::decode(&mut Decoder::new(bytes)).ok()
}

/// The message inside a RELAY-REPL (or RELAY-FORW), however deep: for tests and the storm.
pub fn unwrap_relayed(mut bytes: &[u8]) -> Option<&[u8]> {
    while matches!(bytes.first(), Some(12 | 13)) {
        bytes = wire::relay_payload(bytes)?;
    }
    Some(bytes)
}

#[cfg(test)]
mod tests;
