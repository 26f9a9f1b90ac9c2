//! The compiled table: one immutable value per snapshot, with every index the hot paths need.
//!
//! [`Table::compile`] is the only way to make one, and it is also the validator: it checks every
//! rule while it builds the indexes (a duplicate MAC is found by the MAC index itself), keeps
//! going after the first problem, and returns either a complete table or every problem found.
//!
//! Lookups (`by_mac`, `by_name`, `by_ipv4`, `by_ipv6`, `subnet_for`) never allocate and never
//! block: the table is read-only once built. Strings live in one arena and the indexes hold
//! `u32` positions into flat vectors, which keeps a node to well under 200 bytes.
//!
//! This module holds the runtime types and their lookups; [`compile`] (private) turns a
//! snapshot into them.

mod boot;
mod compile;
pub mod names;

pub use boot::{BootPlan, Endpoint, Intent, Loader, RenderError, Rendered, RenderedFile, url_host};
pub use compile::validate;
use compile::{Compiler, compile_dns};

use std::hash::BuildHasher;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use hashbrown::{DefaultHashBuilder, HashTable};
use ipnet::IpNet;

use crate::MacAddr;
use crate::name::{self, MAX_NAME_LEN};
use crate::option::{self, RawOption};
use crate::problem::{Problem, Site};
use crate::snapshot::{self, Arch, Chain, Node, Snapshot, Subnet, UnknownClients};

/// The longest boot file name: the BOOTP `file` field is 128 bytes including its NUL.
pub const MAX_BOOT_FILE: usize = 127;
/// The longest server name: the BOOTP `sname` field is 64 bytes including its NUL.
pub const MAX_SERVER_NAME: usize = 63;
const NONE: u32 = u32::MAX;

/// A position in the string arena.
#[derive(Clone, Copy, Debug)]
struct Span {
    off: u32,
    len: u32,
}

#[derive(Clone, Copy, Debug)]
struct NodeRec {
    id: Span,
    /// Normalized `hostname.domain`.
    fqdn: Span,
    /// Length of the hostname prefix of `fqdn`.
    host_len: u8,
    /// Index of the primary interface, or `NONE` for a node without interfaces.
    primary: u32,
    /// Index into `extras`, or `NONE`.
    extra: u32,
}

/// An entry of the name index: where the FQDN is in the arena, so a lookup compares names
/// without first loading the node record (one cache miss fewer on a large table).
#[derive(Clone, Copy, Debug)]
struct NameSlot {
    off: u32,
    node: u32,
    len: u8,
    /// The name's first bytes: a name that fits is compared here, with no arena access.
    head: [u8; NAME_HEAD],
}

const NAME_HEAD: usize = 23;

impl NameSlot {
    fn name<'a>(&'a self, arena: &'a [u8]) -> &'a [u8] {
        let len = usize::from(self.len);
        if len <= NAME_HEAD {
            &self.head[..len]
        } else {
            &arena[self.off as usize..self.off as usize + len]
        }
    }
}

#[derive(Clone, Copy, Debug)]
struct IfaceRec {
    mac: [u8; 6],
    node: u32,
    /// Reserved IPv4 as `u32`; 0 (never a valid reservation) means none.
    ipv4: u32,
    /// Index into `v6`, or `NONE`.
    ipv6: u32,
}

/// A node's rarely-present settings, kept out of the per-node record.
#[derive(Debug, Default)]
struct NodeExtra {
    boot: BootFiles,
    options: Vec<RawOption>,
    intent: Intent,
    /// The profile the node names, whatever its mode: where its node files come from.
    profile: Option<u32>,
    vars: std::collections::BTreeMap<String, String>,
}

/// Boot file names by architecture plus the iPXE script URL.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct BootFiles {
    /// Per architecture, indexed like [`Arch::ALL`].
    pub files: [Option<Box<str>>; 6],
    /// What iPXE clients get instead.
    pub ipxe_url: Option<Box<str>>,
    /// The boot chain named here, if any (a node's wins over its subnet's).
    pub chain: Option<Chain>,
}

impl BootFiles {
    /// The file for an architecture.
    pub fn file(&self, arch: Arch) -> Option<&str> {
        self.files[arch_index(arch)].as_deref()
    }

    fn is_empty(&self) -> bool {
        self.ipxe_url.is_none() && self.chain.is_none() && self.files.iter().all(Option::is_none)
    }
}

fn arch_index(arch: Arch) -> usize {
    Arch::ALL.iter().position(|a| *a == arch).unwrap_or(0)
}

/// A subnet's network-boot settings, compiled.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SubnetBootInfo {
    /// siaddr and option 66.
    pub next_server: Option<Ipv4Addr>,
    /// The BOOTP sname field.
    pub server_name: Option<Box<str>>,
    /// Files by architecture and the iPXE URL.
    pub files: BootFiles,
    /// The profile unknown MACs netboot (an index into the table's boot plan).
    pub unknown_profile: Option<u32>,
}

/// An inclusive IPv4 range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Range4 {
    /// First address.
    pub start: Ipv4Addr,
    /// Last address, inclusive.
    pub end: Ipv4Addr,
}

impl Range4 {
    /// Whether `ip` is inside.
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        self.start <= ip && ip <= self.end
    }
    /// How many addresses it holds.
    pub fn len(&self) -> u64 {
        u64::from(u32::from(self.end)) - u64::from(u32::from(self.start)) + 1
    }
    /// Never true: a range holds at least its start.
    pub fn is_empty(&self) -> bool {
        false
    }
}

/// An inclusive IPv6 range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Range6 {
    /// First address.
    pub start: Ipv6Addr,
    /// Last address, inclusive.
    pub end: Ipv6Addr,
}

impl Range6 {
    /// Whether `ip` is inside.
    pub fn contains(&self, ip: Ipv6Addr) -> bool {
        self.start <= ip && ip <= self.end
    }
    /// How many addresses it holds, less one (a /0 range holds 2^128).
    pub fn span(&self) -> u128 {
        u128::from(self.end) - u128::from(self.start)
    }
}

/// A compiled IPv6 subnet with its DHCPv6 settings (defaults resolved). Every IPv6 subnet has
/// one: a subnet without `dynamic` ranges still serves its nodes' reservations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubnetInfo6 {
    /// The `cidr` as the snapshot wrote it.
    pub cidr: Box<str>,
    /// The network address.
    pub network: Ipv6Addr,
    /// The prefix length.
    pub prefix_len: u8,
    /// Option 23.
    pub dns_servers: Vec<Ipv6Addr>,
    /// Option 24 (the domain search list of one), normalized; and the zone of dynamic names.
    pub domain: Option<Box<str>>,
    /// The valid lifetime of an address.
    pub valid_seconds: u32,
    /// The preferred lifetime.
    pub preferred_seconds: u32,
    /// The IA_NA's T1.
    pub renew_seconds: u32,
    /// The IA_NA's T2.
    pub rebind_seconds: u32,
    /// Dynamic ranges, sorted, disjoint.
    pub dynamic: Vec<Range6>,
    /// The policy for clients whose MAC the snapshot does not know.
    pub unknown_clients: UnknownClients,
    /// Quarantine time for a DECLINEd address.
    pub decline_seconds: u32,
    /// Whether dynamic clients' names (option 39) are published in DNS.
    pub dynamic_dns: bool,
    /// Extra DHCPv6 options, in code order.
    pub options: Vec<RawOption6>,
    /// Network boot settings.
    pub boot: Option<SubnetBootInfo>,
}

impl SubnetInfo6 {
    /// Whether `ip` is inside the subnet.
    pub fn contains(&self, ip: Ipv6Addr) -> bool {
        let mask = u128::MAX
            .checked_shl(128 - u32::from(self.prefix_len))
            .unwrap_or(0);
        u128::from(ip) & mask == u128::from(self.network)
    }

    /// The dynamic range containing `ip`, if any.
    pub fn dynamic_range_of(&self, ip: Ipv6Addr) -> Option<&Range6> {
        self.dynamic.iter().find(|r| r.contains(ip))
    }
}

/// An extra DHCPv6 option: its code and payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawOption6 {
    /// The option code.
    pub code: u16,
    /// The payload.
    pub data: Box<[u8]>,
}

/// A compiled IPv4 subnet with its DHCP settings (defaults resolved).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubnetInfo {
    /// The `cidr` as the snapshot wrote it (for messages and the API).
    pub cidr: Box<str>,
    /// The network address.
    pub network: Ipv4Addr,
    /// The prefix length.
    pub prefix_len: u8,
    /// The subnet mask (option 1).
    pub mask: Ipv4Addr,
    /// The broadcast address (option 28 default).
    pub broadcast: Ipv4Addr,
    /// Option 3, in order (empty: none sent).
    pub routers: Vec<Ipv4Addr>,
    /// Whether option 82.5 (link selection) from relays on this subnet is ignored.
    pub ignore_link_selection: bool,
    /// Option 6.
    pub dns_servers: Vec<Ipv4Addr>,
    /// Option 15, normalized.
    pub domain: Option<Box<str>>,
    /// Option 51.
    pub lease_seconds: u32,
    /// Option 58 (T1).
    pub renew_seconds: u32,
    /// Option 59 (T2).
    pub rebind_seconds: u32,
    /// Dynamic ranges, sorted, disjoint.
    pub dynamic: Vec<Range4>,
    /// The policy for unknown MACs.
    pub unknown_clients: UnknownClients,
    /// Quarantine time for a DECLINEd address.
    pub decline_seconds: u32,
    /// Whether dynamic clients' hostnames are published in DNS.
    pub dynamic_dns: bool,
    /// Extra options, in code order.
    pub options: Vec<RawOption>,
    /// Network boot settings.
    pub boot: Option<SubnetBootInfo>,
    /// proxyDHCP: another server leases this subnet's addresses; pserv answers only the boot
    /// part of PXE and HTTP-boot clients.
    pub proxy_dhcp: bool,
}

impl SubnetInfo {
    /// Whether `ip` is inside the subnet.
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & u32::from(self.mask) == u32::from(self.network)
    }

    /// Whether `ip` can be a host's address here (not the network or broadcast address, except
    /// on /31 and /32 where every address is a host address).
    pub fn is_host(&self, ip: Ipv4Addr) -> bool {
        self.contains(ip) && (self.prefix_len >= 31 || (ip != self.network && ip != self.broadcast))
    }

    /// The dynamic range containing `ip`, if any.
    pub fn dynamic_range_of(&self, ip: Ipv4Addr) -> Option<&Range4> {
        self.dynamic.iter().find(|r| r.contains(ip))
    }
}

/// Zone-wide DNS settings, compiled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsInfo {
    /// TTL of every answer.
    pub ttl: u32,
    /// SOA MNAME, normalized.
    pub soa_mname: Box<str>,
    /// SOA RNAME, normalized.
    pub soa_rname: Box<str>,
    /// Forwarders for names outside pserv's zones.
    pub upstreams: Vec<SocketAddr>,
}

/// Identities of compiled tables; 0 is the empty table's.
static TABLE_IDS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

fn next_table_id() -> u64 {
    TABLE_IDS.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

/// The compiled, immutable form of one snapshot. See the module docs.
#[derive(Debug)]
pub struct Table {
    generation: u64,
    /// Distinct for every table compiled in this process (0 for [`Table::empty`]): what
    /// state derived from a table (DNS zones) is keyed by.
    id: u64,
    dns: DnsInfo,
    /// Distinct normalized domains of nodes and subnets: the forward zones.
    domains: Vec<Box<str>>,
    /// IPv4 subnets sorted by network address.
    subnets: Vec<SubnetInfo>,
    /// IPv6 subnets as (network, prefix length), for the reverse zones.
    subnets_v6: Vec<(Ipv6Addr, u8)>,
    /// IPv6 subnets with their DHCPv6 settings, sorted by network.
    subnets6: Vec<SubnetInfo6>,
    strings: String,
    nodes: Vec<NodeRec>,
    ifaces: Vec<IfaceRec>,
    v6: Vec<Ipv6Addr>,
    extras: Vec<NodeExtra>,
    by_mac: HashTable<u32>,
    by_name: HashTable<NameSlot>,
    by_v4: HashTable<u32>,
    by_v6: HashTable<u32>,
    hasher: DefaultHashBuilder,
    /// Seed of [`name::hash_folded`] for `by_name`.
    name_seed: u64,
    /// Boot profiles and templates, compiled.
    boot: BootPlan,
}

/// One node, borrowed from a table.
#[derive(Clone, Copy)]
pub struct NodeView<'t> {
    table: &'t Table,
    rec: &'t NodeRec,
}

/// One interface, borrowed from a table.
#[derive(Clone, Copy)]
pub struct IfaceView<'t> {
    table: &'t Table,
    rec: &'t IfaceRec,
    index: u32,
}

impl<'t> NodeView<'t> {
    /// The controller's id.
    pub fn id(&self) -> &'t str {
        self.table.str(self.rec.id)
    }
    /// `hostname.domain`, lower case, no trailing dot.
    pub fn fqdn(&self) -> &'t str {
        self.table.str(self.rec.fqdn)
    }
    /// The hostname label, lower case.
    pub fn hostname(&self) -> &'t str {
        &self.fqdn()[..usize::from(self.rec.host_len)]
    }
    /// The domain, lower case.
    pub fn domain(&self) -> &'t str {
        &self.fqdn()[usize::from(self.rec.host_len) + 1..]
    }
    /// The primary interface.
    pub fn primary(&self) -> Option<IfaceView<'t>> {
        (self.rec.primary != NONE).then(|| self.table.iface(self.rec.primary))
    }
    /// The primary interface's reserved IPv4 address: the node's A record.
    pub fn ipv4(&self) -> Option<Ipv4Addr> {
        self.primary().and_then(|i| i.ipv4())
    }
    /// The primary interface's reserved IPv6 address: the node's AAAA record.
    pub fn ipv6(&self) -> Option<Ipv6Addr> {
        self.primary().and_then(|i| i.ipv6())
    }
    /// The node's own boot settings, if it has any.
    pub fn boot(&self) -> Option<&'t BootFiles> {
        self.extra().map(|e| &e.boot).filter(|b| !b.is_empty())
    }
    /// The node's boot intent (`Legacy` when it names no profile and no mode).
    pub fn boot_intent(&self) -> Intent {
        self.extra().map_or(Intent::Legacy, |e| e.intent)
    }
    /// The profile the node names, whatever its mode: where its node files come from.
    pub fn profile(&self) -> Option<u32> {
        self.extra().and_then(|e| e.profile)
    }
    /// The node's own DHCP options (these win over the subnet's), in code order.
    pub fn options(&self) -> &'t [RawOption] {
        self.extra().map_or(&[], |e| &e.options)
    }
    fn extra(&self) -> Option<&'t NodeExtra> {
        self.table.extras.get(self.rec.extra as usize)
    }
}

impl Intent {
    /// What a client is to boot, given its interface in the table (if the snapshot knows its
    /// MAC): its node's intent, or for an unknown MAC its subnet's profile for unknown
    /// clients. For callers that have looked the MAC up already.
    pub fn of(iface: Option<IfaceView<'_>>, subnet: Option<&SubnetInfo>) -> Self {
        Self::of_boot(iface, subnet.and_then(|s| s.boot.as_ref()))
    }

    /// The same, given the subnet's boot settings (either family's subnet).
    pub fn of_boot(iface: Option<IfaceView<'_>>, boot: Option<&SubnetBootInfo>) -> Self {
        match iface {
            Some(i) => i.node().boot_intent(),
            None => boot
                .and_then(|b| b.unknown_profile)
                .map_or(Self::Legacy, Self::Netboot),
        }
    }
}

impl<'t> IfaceView<'t> {
    /// The hardware address.
    pub fn mac(&self) -> MacAddr {
        MacAddr(self.rec.mac)
    }
    /// The reserved IPv4 address, if any.
    pub fn ipv4(&self) -> Option<Ipv4Addr> {
        (self.rec.ipv4 != 0).then(|| Ipv4Addr::from(self.rec.ipv4))
    }
    /// The reserved IPv6 address, if any.
    pub fn ipv6(&self) -> Option<Ipv6Addr> {
        self.table.v6.get(self.rec.ipv6 as usize).copied()
    }
    /// The node it belongs to.
    pub fn node(&self) -> NodeView<'t> {
        NodeView {
            table: self.table,
            rec: &self.table.nodes[self.rec.node as usize],
        }
    }
    /// Whether this is its node's primary interface.
    pub fn is_primary(&self) -> bool {
        self.table.nodes[self.rec.node as usize].primary == self.index
    }
}

impl std::fmt::Debug for NodeView<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("id", &self.id())
            .field("fqdn", &self.fqdn())
            .field("ipv4", &self.ipv4())
            .field("ipv6", &self.ipv6())
            .finish()
    }
}

impl std::fmt::Debug for IfaceView<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Interface")
            .field("mac", &self.mac())
            .field("ipv4", &self.ipv4())
            .field("node", &self.node().id())
            .finish()
    }
}

impl Table {
    /// The table served before the first snapshot: no zones, no subnets, no nodes.
    pub fn empty() -> Self {
        Self {
            generation: 0,
            id: 0,
            dns: compile_dns(&snapshot::DnsSettings::default(), &mut Vec::new()),
            domains: Vec::new(),
            subnets: Vec::new(),
            subnets_v6: Vec::new(),
            subnets6: Vec::new(),
            strings: String::new(),
            nodes: Vec::new(),
            ifaces: Vec::new(),
            v6: Vec::new(),
            extras: Vec::new(),
            by_mac: HashTable::new(),
            by_name: HashTable::new(),
            by_v4: HashTable::new(),
            by_v6: HashTable::new(),
            hasher: DefaultHashBuilder::default(),
            name_seed: 0,
            boot: BootPlan::empty(),
        }
    }

    /// The snapshot generation this table was compiled from (0 for [`Table::empty`]).
    pub fn generation(&self) -> u64 {
        self.generation
    }
    /// This table's identity: distinct for every table compiled in this process, 0 for
    /// [`Table::empty`]. Two tables of one generation (a first push may be generation 0) differ.
    pub fn id(&self) -> u64 {
        self.id
    }
    /// DNS settings.
    pub fn dns(&self) -> &DnsInfo {
        &self.dns
    }
    /// The forward zones: every distinct node and subnet domain, normalized.
    pub fn domains(&self) -> &[Box<str>] {
        &self.domains
    }
    /// IPv4 subnets, sorted by network address.
    pub fn subnets(&self) -> &[SubnetInfo] {
        &self.subnets
    }
    /// IPv6 subnets as (network, prefix length).
    pub fn subnets_v6(&self) -> &[(Ipv6Addr, u8)] {
        &self.subnets_v6
    }

    /// IPv6 subnets with their DHCPv6 settings, sorted by network.
    pub fn subnets6(&self) -> &[SubnetInfo6] {
        &self.subnets6
    }

    /// The IPv6 subnet containing `ip` (the most specific: subnets do not overlap).
    pub fn subnet6_for(&self, ip: Ipv6Addr) -> Option<&SubnetInfo6> {
        let i = self.subnets6.partition_point(|s| s.network <= ip);
        self.subnets6[..i].last().filter(|s| s.contains(ip))
    }
    /// Number of nodes.
    pub fn node_count(&self) -> usize {
        self.nodes.len()
    }
    /// Number of interfaces.
    pub fn interface_count(&self) -> usize {
        self.ifaces.len()
    }
    /// Every node, in snapshot order.
    pub fn nodes(&self) -> impl ExactSizeIterator<Item = NodeView<'_>> {
        self.nodes.iter().map(|rec| NodeView { table: self, rec })
    }
    /// Every interface, in snapshot order.
    pub fn interfaces(&self) -> impl ExactSizeIterator<Item = IfaceView<'_>> {
        (0..self.ifaces.len() as u32).map(|i| self.iface(i))
    }

    /// The interface with this MAC.
    pub fn by_mac(&self, mac: MacAddr) -> Option<IfaceView<'_>> {
        let h = self.hasher.hash_one(mac.0);
        self.by_mac
            .find(h, |&i| self.ifaces[i as usize].mac == mac.0)
            .map(|&i| self.iface(i))
    }

    /// The node with this FQDN: ASCII case-insensitive, trailing dot optional.
    pub fn by_name(&self, fqdn: &str) -> Option<NodeView<'_>> {
        self.by_name_bytes(fqdn.as_bytes())
    }

    /// [`Table::by_name`] for a name in bytes (as it comes off the wire in text form).
    pub fn by_name_bytes(&self, fqdn: &[u8]) -> Option<NodeView<'_>> {
        let key = fqdn.strip_suffix(b".").unwrap_or(fqdn);
        if key.len() > MAX_NAME_LEN {
            return None;
        }
        let arena = self.strings.as_bytes();
        let h = name::hash_folded(self.name_seed, key);
        self.by_name
            .find(h, |s| name::eq_folded(s.name(arena), key))
            .map(|s| NodeView {
                table: self,
                rec: &self.nodes[s.node as usize],
            })
    }

    /// The interface that reserves this IPv4 address (answers PTR, and "reserved for whom?").
    pub fn by_ipv4(&self, ip: Ipv4Addr) -> Option<IfaceView<'_>> {
        let key = u32::from(ip);
        let h = self.hasher.hash_one(key);
        self.by_v4
            .find(h, |&i| self.ifaces[i as usize].ipv4 == key)
            .map(|&i| self.iface(i))
    }

    /// The interface that reserves this IPv6 address.
    pub fn by_ipv6(&self, ip: Ipv6Addr) -> Option<IfaceView<'_>> {
        let h = self.hasher.hash_one(u128::from(ip));
        self.by_v6
            .find(h, |&i| {
                self.v6.get(self.ifaces[i as usize].ipv6 as usize) == Some(&ip)
            })
            .map(|&i| self.iface(i))
    }

    /// The subnet containing `ip` (a relay's giaddr, a receiving interface's address, a
    /// client's address).
    pub fn subnet_for(&self, ip: Ipv4Addr) -> Option<&SubnetInfo> {
        let i = self.subnets.partition_point(|s| s.network <= ip);
        let s = self.subnets.get(i.checked_sub(1)?)?;
        s.contains(ip).then_some(s)
    }

    /// The compiled boot profiles and templates.
    pub fn boot_plan(&self) -> &BootPlan {
        &self.boot
    }

    /// Whether any machine gets a rendered boot configuration (a node with a profile or in
    /// `local` mode, or a subnet's profile for unknown clients). Walks every node.
    pub fn renders_boot(&self) -> bool {
        self.subnets
            .iter()
            .any(|s| s.boot.as_ref().is_some_and(|b| b.unknown_profile.is_some()))
            || self.extras.iter().any(|e| e.intent.renders())
    }

    /// What the client with `mac` is to boot: its node's intent, or for a MAC the snapshot
    /// does not know, its subnet's profile for unknown clients.
    pub fn boot_intent(&self, mac: MacAddr, subnet: Option<&SubnetInfo>) -> Intent {
        Intent::of(self.by_mac(mac), subnet)
    }

    /// Renders `loader`'s configuration for the machine with `mac`, asking from `client` (its
    /// address, which finds an unknown machine's subnet), with URLs naming `at`.
    pub fn render_boot(
        &self,
        loader: Loader,
        mac: MacAddr,
        client: Option<IpAddr>,
        at: Endpoint,
    ) -> Result<Rendered, RenderError> {
        self.render_boot_for(loader, mac, self.by_mac(mac), client, at)
    }

    /// [`Table::render_boot`] for a caller that has looked the MAC up already: `iface` is
    /// `self.by_mac(mac)` (`None`: the snapshot does not know the MAC), so serving one
    /// configuration looks the MAC up once. An interface of another table, or of another MAC,
    /// is looked up again rather than trusted.
    pub fn render_boot_for(
        &self,
        loader: Loader,
        mac: MacAddr,
        iface: Option<IfaceView<'_>>,
        client: Option<IpAddr>,
        at: Endpoint,
    ) -> Result<Rendered, RenderError> {
        let (who, intent, _) = self.subject(mac, iface, client);
        if !intent.renders() {
            return Err(RenderError::NoIntent);
        }
        self.boot
            .render(loader, intent, &who, at)
            .map_err(|(_, e)| RenderError::Failed(e))
    }

    /// The profile whose node files the machine with `mac` gets, and its boot intent: its
    /// node's named profile (in any mode), or for a MAC the snapshot does not know, its
    /// subnet's profile for unknown clients. `iface` and `client` as for
    /// [`Table::render_boot_for`].
    pub fn files_profile(
        &self,
        mac: MacAddr,
        iface: Option<IfaceView<'_>>,
        client: Option<IpAddr>,
    ) -> Option<u32> {
        self.subject(mac, iface, client).2
    }

    /// Renders node file `name` for the machine with `mac`, asking from `client`, with URLs
    /// naming `at`. [`RenderError::NoIntent`] when its profile has no such file (or it has
    /// none).
    pub fn render_file(
        &self,
        name: &str,
        mac: MacAddr,
        client: Option<IpAddr>,
        at: Endpoint,
    ) -> Result<RenderedFile, RenderError> {
        self.render_file_for(name, mac, self.by_mac(mac), client, at)
    }

    /// [`Table::render_file`] for a caller that has looked the MAC up already (`iface` as for
    /// [`Table::render_boot_for`]).
    pub fn render_file_for(
        &self,
        name: &str,
        mac: MacAddr,
        iface: Option<IfaceView<'_>>,
        client: Option<IpAddr>,
        at: Endpoint,
    ) -> Result<RenderedFile, RenderError> {
        let (who, intent, profile) = self.subject(mac, iface, client);
        let profile = profile.ok_or(RenderError::NoIntent)?;
        match self.boot.render_file(profile, name, intent, &who, at) {
            Ok(Some(f)) => Ok(f),
            Ok(None) => Err(RenderError::NoIntent),
            Err((_, e)) => Err(RenderError::Failed(e)),
        }
    }

    /// Who the machine with `mac` is to the templates, its boot intent, and the profile its
    /// node files come from.
    fn subject<'a>(
        &'a self,
        mac: MacAddr,
        iface: Option<IfaceView<'_>>,
        client: Option<IpAddr>,
    ) -> (boot::Subject<'a>, Intent, Option<u32>) {
        let iface = match iface {
            Some(i) if !std::ptr::eq(i.table, self) || i.mac() != mac => self.by_mac(mac),
            Some(i) => Some(self.iface(i.index)),
            None => None,
        };
        let (client4, client6) = match client.map(|ip| ip.to_canonical()) {
            Some(IpAddr::V4(ip)) => (Some(ip), None),
            Some(IpAddr::V6(ip)) => (None, Some(ip)),
            None => (None, None),
        };
        let ipv4 = iface.and_then(|i| i.ipv4()).or(client4);
        let ipv6 = iface.and_then(|i| i.ipv6()).or(client6);
        // The subnet of the family it asked in: a machine booting over IPv6 gets its IPv6
        // subnet's settings (an unknown one, its profile for unknown clients).
        let subnet = match client6 {
            Some(_) => ipv6
                .and_then(|ip| self.subnet6_for(ip))
                .map(boot::SubnetOf::V6),
            None => ipv4
                .and_then(|ip| self.subnet_for(ip))
                .map(boot::SubnetOf::V4),
        };
        let intent = Intent::of_boot(
            iface,
            match subnet {
                Some(boot::SubnetOf::V4(s)) => s.boot.as_ref(),
                Some(boot::SubnetOf::V6(s)) => s.boot.as_ref(),
                None => None,
            },
        );
        let node = iface.map(|i| i.node());
        let profile = match node {
            Some(n) => n.profile(),
            None => match intent {
                Intent::Netboot(p) => Some(p),
                _ => None,
            },
        };
        let who = boot::Subject {
            id: node.map_or("", |n| n.id()),
            hostname: node.map_or("", |n| n.hostname()),
            domain: node.map_or("", |n| n.domain()),
            fqdn: node.map_or("", |n| n.fqdn()),
            mac,
            ipv4,
            ipv6,
            vars: node.and_then(|n| n.extra()).map(|e| &e.vars),
            subnet,
        };
        (who, intent, profile)
    }

    /// Approximate heap bytes the table holds (vectors, arena, indexes).
    pub fn heap_bytes(&self) -> usize {
        use std::mem::size_of;
        let extras: usize = self
            .extras
            .iter()
            .map(|e| {
                size_of::<NodeExtra>()
                    + e.options.iter().map(|o| 24 + o.data.len()).sum::<usize>()
                    + e.boot
                        .files
                        .iter()
                        .flatten()
                        .map(|f| f.len())
                        .sum::<usize>()
            })
            .sum();
        self.strings.capacity()
            + self.nodes.capacity() * size_of::<NodeRec>()
            + self.ifaces.capacity() * size_of::<IfaceRec>()
            + self.v6.capacity() * size_of::<Ipv6Addr>()
            + extras
            + self.by_mac.allocation_size()
            + self.by_name.allocation_size()
            + self.by_v4.allocation_size()
            + self.by_v6.allocation_size()
            + self.subnets.capacity() * size_of::<SubnetInfo>()
    }

    fn iface(&self, index: u32) -> IfaceView<'_> {
        IfaceView {
            table: self,
            rec: &self.ifaces[index as usize],
            index,
        }
    }

    fn str(&self, s: Span) -> &str {
        &self.strings[s.off as usize..(s.off + s.len) as usize]
    }

    /// Validates `snap` and compiles it into a table, or returns every problem found.
    ///
    /// `current` is the generation being served, if any: the new one must be above it.
    pub fn compile(snap: &Snapshot, current: Option<u64>) -> Result<Self, Vec<Problem>> {
        Compiler::new(snap).run(current)
    }
}
