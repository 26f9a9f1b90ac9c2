//! The snapshot contract: the JSON a controller pushes, as serde types.
//!
//! These types are the wire form only. They say nothing about validity beyond "the JSON has the
//! right shape": every semantic rule lives in [`crate::Table::compile`], which turns a snapshot
//! into the table the responders read. Unknown fields are rejected everywhere, so a typo never
//! silently drops a setting; [`Snapshot::from_json`] names the offending field by its path.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use serde::{Deserialize, Serialize};

use crate::MacAddr;

/// The bundled example snapshot: one IPv4 provisioning subnet with PXE and a dynamic pool, one
/// IPv6 subnet, a node with two interfaces, one with its own boot file and options, and one known
/// node without a reservation. `pserv serve` with no arguments serves it.
pub const EXAMPLE_JSON: &str = include_str!("example.json");

/// One whole push from the controller. It replaces the previous snapshot entirely.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Snapshot {
    /// Strictly increasing across pushes; becomes the SOA serial.
    pub generation: u64,
    /// Zone-wide DNS settings.
    #[serde(default)]
    pub dns: DnsSettings,
    /// The networks pserv serves.
    #[serde(default)]
    pub subnets: Vec<Subnet>,
    /// Every machine the controller knows.
    #[serde(default)]
    pub nodes: Vec<Node>,
    /// Named boot profiles (kernel, initrds, command line) that nodes and subnets' unknown
    /// clients refer to.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub boot_profiles: BTreeMap<String, BootProfile>,
    /// Overrides of pserv's built-in netboot template, per loader.
    #[serde(default, skip_serializing_if = "BootTemplates::is_empty")]
    pub boot_templates: BootTemplates,
}

/// What a netbooting machine loads: a kernel, its initrds, and its command line.
///
/// `kernel` and each `initrd` are a path in the boot directory or an absolute `http(s)://` URL.
/// `cmdline` is a template (the same variables as the loader templates, see the README), so
/// `hostname={{ node.hostname }}` gives every node its own line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BootProfile {
    /// The kernel.
    pub kernel: String,
    /// Initrds, loaded in order.
    #[serde(default)]
    pub initrd: Vec<String>,
    /// The kernel command line (a template).
    #[serde(default)]
    pub cmdline: String,
    /// Defaults for `vars`; a node's own `vars` win.
    #[serde(default)]
    pub vars: BTreeMap<String, String>,
    /// The machine's installer or first-boot files (preseed, kickstart, cloud-init's
    /// `user-data`/`meta-data`/`network-config`, Ignition), by served name: templates with
    /// the same variables, rendered per node and served at `/nodes/<mac-hyphen>/<name>`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_files: BTreeMap<String, String>,
}

/// Template overrides of the netboot form, per loader (the local-boot forms are fixed).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BootTemplates {
    /// The per-node iPXE script.
    #[serde(default)]
    pub ipxe: Option<String>,
    /// GRUB's `grub.cfg-01-<mac>`.
    #[serde(default)]
    pub grub: Option<String>,
    /// pxelinux's `pxelinux.cfg/01-<mac>`.
    #[serde(default)]
    pub pxelinux: Option<String>,
}

impl BootTemplates {
    /// Whether no loader is overridden.
    pub fn is_empty(&self) -> bool {
        self.ipxe.is_none() && self.grub.is_none() && self.pxelinux.is_none()
    }
}

/// A node's boot intent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BootMode {
    /// Serve the node's profile (the default when a profile applies).
    Netboot,
    /// Serve each loader's boot-from-disk form.
    Local,
    /// No boot fields in DHCP at all: the firmware falls through to its next boot device.
    Ignore,
}

impl BootMode {
    /// The contract's name for the mode.
    pub fn name(self) -> &'static str {
        match self {
            Self::Netboot => "netboot",
            Self::Local => "local",
            Self::Ignore => "ignore",
        }
    }
}

/// Which boot chain UEFI machines are handed (issue 22): pserv's iPXE, or the distribution's
/// signed shim and GRUB, which boot with Secure Boot on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Chain {
    /// iPXE (`undionly.kpxe`, `ipxe.efi`), which fetches its per-node script over HTTP.
    #[default]
    Ipxe,
    /// UEFI machines get shim (`shimx64.efi`, `shimaa64.efi`), which loads the signed GRUB
    /// beside it, which reads its per-node configuration; BIOS machines stay on iPXE.
    Grub,
}

impl Chain {
    /// The contract's name for the chain.
    pub fn name(self) -> &'static str {
        match self {
            Self::Ipxe => "ipxe",
            Self::Grub => "grub",
        }
    }
}

/// Zone-wide DNS settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DnsSettings {
    /// TTL of every answer, and the SOA minimum (the negative-caching TTL).
    #[serde(default = "default_ttl")]
    pub ttl: u32,
    /// The SOA MNAME: the primary name server's name.
    #[serde(default = "default_mname")]
    pub soa_mname: String,
    /// The SOA RNAME: the zone administrator's mailbox, in domain-name form.
    #[serde(default = "default_rname")]
    pub soa_rname: String,
    /// Resolvers to forward names outside pserv's zones to (`IP` or `IP:PORT`);
    /// empty means such names are REFUSED.
    #[serde(default)]
    pub upstreams: Vec<String>,
}

impl Default for DnsSettings {
    fn default() -> Self {
        Self {
            ttl: default_ttl(),
            soa_mname: default_mname(),
            soa_rname: default_rname(),
            upstreams: Vec::new(),
        }
    }
}

fn default_ttl() -> u32 {
    30
}
fn default_mname() -> String {
    "pserv.invalid.".to_owned()
}
fn default_rname() -> String {
    "hostmaster.invalid.".to_owned()
}

/// One network: its addressing, DHCP settings and boot options.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Subnet {
    /// The network, e.g. `10.20.0.0/16` (IPv4 for DHCP; IPv6 subnets carry reservations and a
    /// reverse zone only).
    pub cidr: String,
    /// Default gateways (DHCP option 3): one address, or a list in order of preference.
    #[serde(default)]
    pub router: Option<Routers>,
    /// Allows routers outside the subnet (a gateway on another prefix, reached by the
    /// client's own static route). Without it, a router outside is a validation problem.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub router_outside_subnet: bool,
    /// Ignores the RFC 3527 link-selection sub-option (option 82.5) in requests relayed by a
    /// relay on this subnet (its giaddr), for relays that are not trusted to choose a link:
    /// their clients are placed by giaddr.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub ignore_link_selection: bool,
    /// DNS servers (DHCPv4 option 6, DHCPv6 option 23), of the subnet's family.
    #[serde(default)]
    pub dns_servers: Vec<IpAddr>,
    /// Domain name (DHCP option 15), and the zone dynamic clients' names live in.
    #[serde(default)]
    pub domain: Option<String>,
    /// Lease time (option 51; on an IPv6 subnet the valid lifetime).
    #[serde(default = "default_lease_seconds")]
    pub lease_seconds: u32,
    /// IPv6 subnets: the preferred lifetime of an address (the valid one is `lease_seconds`);
    /// defaults to `lease_seconds`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preferred_seconds: Option<u32>,
    /// T1 (option 58; IPv6: the IA_NA's T1); defaults to 50% of the lease time (IPv6: of the
    /// preferred lifetime, RFC 8415 §21.4).
    #[serde(default)]
    pub renew_seconds: Option<u32>,
    /// T2 (option 59; IPv6: the IA_NA's T2); defaults to 87.5% of the lease time (IPv6: 80% of
    /// the preferred lifetime).
    #[serde(default)]
    pub rebind_seconds: Option<u32>,
    /// Address ranges for dynamic leases; none means only nodes are served.
    #[serde(default)]
    pub dynamic: Vec<DynamicRange>,
    /// What to do with a MAC the snapshot does not know (`serve` when absent; a proxyDHCP
    /// subnet leases nothing, so `serve` there is a problem).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unknown_clients: Option<UnknownClients>,
    /// How long a DECLINEd address stays out of the pool.
    #[serde(default = "default_decline_seconds")]
    pub decline_seconds: u32,
    /// Whether dynamic clients' own hostnames (option 12) are published in DNS.
    #[serde(default)]
    pub dynamic_dns: bool,
    /// Extra DHCP options for every client of this subnet.
    #[serde(default)]
    pub options: Vec<OptionSpec>,
    /// Network-boot settings.
    #[serde(default)]
    pub boot: Option<SubnetBoot>,
    /// proxyDHCP (issue 23): another server hands out this subnet's addresses; pserv answers
    /// only the boot part (PXE 2.1 proxy offers on port 67, the boot server on 4011) and
    /// never offers, ACKs or NAKs an address here.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub proxy_dhcp: bool,
}

fn default_lease_seconds() -> u32 {
    3600
}
fn default_decline_seconds() -> u32 {
    86400
}

/// A subnet's routers: `"10.0.0.1"` or `["10.0.0.1", "10.0.0.254"]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Routers {
    /// One router.
    One(Ipv4Addr),
    /// Several, in order of preference.
    Many(Vec<Ipv4Addr>),
}

impl Routers {
    /// The addresses, in order.
    pub fn addresses(&self) -> &[Ipv4Addr] {
        match self {
            Self::One(ip) => std::slice::from_ref(ip),
            Self::Many(v) => v,
        }
    }
}

impl From<Ipv4Addr> for Routers {
    fn from(ip: Ipv4Addr) -> Self {
        Self::One(ip)
    }
}

/// An inclusive range of addresses handed out as dynamic leases.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DynamicRange {
    /// First address of the range (of the subnet's family).
    pub start: IpAddr,
    /// Last address of the range (inclusive).
    pub end: IpAddr,
}

/// A subnet's policy for MACs the controller does not know.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UnknownClients {
    /// Give them a dynamic lease (enlistment, commissioning).
    #[default]
    Serve,
    /// Do not answer: only machines the controller knows may boot.
    Ignore,
}

/// An extra DHCP option: either a typed `value` for the common RFC 2132 codes, or raw `hex`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OptionSpec {
    /// The option code (1..=254).
    pub code: u8,
    /// A typed value (addresses, integers, strings, domain lists), typed by `code`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<serde_json::Value>,
    /// Raw option bytes as hex, for any code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hex: Option<String>,
}

/// A client architecture that picks a boot file (DHCP option 93, RFC 4578 and the IANA registry).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Arch {
    /// Legacy BIOS (type 0, and clients that send no option 93).
    #[serde(rename = "x86_64-bios")]
    X86_64Bios,
    /// x86-64 UEFI (types 7 and 9).
    #[serde(rename = "x86_64-uefi")]
    X86_64Uefi,
    /// 32-bit x86 UEFI (type 6).
    #[serde(rename = "ia32-uefi")]
    Ia32Uefi,
    /// ARM64 UEFI (type 11).
    #[serde(rename = "arm64-uefi")]
    Arm64Uefi,
    /// x86-64 UEFI HTTP boot (type 16).
    #[serde(rename = "x86_64-http")]
    X86_64Http,
    /// ARM64 UEFI HTTP boot (type 19).
    #[serde(rename = "arm64-http")]
    Arm64Http,
}

impl Arch {
    /// Every architecture, in table order.
    pub const ALL: [Self; 6] = [
        Self::X86_64Bios,
        Self::X86_64Uefi,
        Self::Ia32Uefi,
        Self::Arm64Uefi,
        Self::X86_64Http,
        Self::Arm64Http,
    ];

    /// The architecture for a DHCP option 93 value; `None` (no option) means BIOS.
    pub fn from_client_arch(code: Option<u16>) -> Option<Self> {
        match code {
            None | Some(0) => Some(Self::X86_64Bios),
            Some(6) => Some(Self::Ia32Uefi),
            Some(7 | 9) => Some(Self::X86_64Uefi),
            Some(11) => Some(Self::Arm64Uefi),
            Some(16) => Some(Self::X86_64Http),
            Some(19) => Some(Self::Arm64Http),
            Some(_) => None,
        }
    }

    /// Whether this is an HTTP-boot client (which also gets option 60 "HTTPClient").
    pub fn is_http(self) -> bool {
        matches!(self, Self::X86_64Http | Self::Arm64Http)
    }

    /// The contract's key for this architecture.
    pub fn key(self) -> &'static str {
        match self {
            Self::X86_64Bios => "x86_64-bios",
            Self::X86_64Uefi => "x86_64-uefi",
            Self::Ia32Uefi => "ia32-uefi",
            Self::Arm64Uefi => "arm64-uefi",
            Self::X86_64Http => "x86_64-http",
            Self::Arm64Http => "arm64-http",
        }
    }
}

/// A subnet's network-boot settings.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubnetBoot {
    /// TFTP/HTTP server address: siaddr and option 66.
    #[serde(default)]
    pub next_server: Option<Ipv4Addr>,
    /// Goes in the BOOTP sname field.
    #[serde(default)]
    pub server_name: Option<String>,
    /// Boot file per client architecture.
    #[serde(default)]
    pub files: BTreeMap<Arch, String>,
    /// What an iPXE client gets instead of a boot file, so it does not chain-load itself.
    #[serde(default)]
    pub ipxe_url: Option<String>,
    /// The boot profile MACs the snapshot does not know get; without one they get no boot
    /// offer (unless the subnet names explicit `files`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unknown_profile: Option<String>,
    /// The boot chain pserv hands UEFI machines where no file is named (`ipxe` when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chain: Option<Chain>,
}

/// One machine the controller knows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Node {
    /// The controller's identifier for the machine; named in every problem about it.
    pub id: String,
    /// Host label (one RFC 1123 label).
    pub hostname: String,
    /// The DNS domain; the node's FQDN is `hostname.domain`.
    pub domain: String,
    /// Network interfaces; the primary one carries the node's DNS name.
    #[serde(default)]
    pub interfaces: Vec<Interface>,
    /// Per-node boot settings, overriding the subnet's.
    #[serde(default)]
    pub boot: Option<NodeBoot>,
    /// Per-node DHCP options; these win over the subnet's.
    #[serde(default)]
    pub options: Vec<OptionSpec>,
}

/// One network interface of a node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Interface {
    /// Hardware address: the DHCP client's identity.
    pub mac: MacAddr,
    /// Reserved IPv4 address; without one the interface gets a dynamic lease.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipv4: Option<Ipv4Addr>,
    /// Reserved IPv6 address (published in DNS).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipv6: Option<Ipv6Addr>,
    /// Whether this interface carries the node's DNS name. At most one per node; when none is
    /// marked, the first interface is primary.
    #[serde(default)]
    pub primary: bool,
}

/// A node's own boot settings.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeBoot {
    /// One boot file for every architecture; overrides the subnet's files.
    #[serde(default)]
    pub file: Option<String>,
    /// Boot file per architecture; overrides `file` for those architectures.
    #[serde(default)]
    pub files: BTreeMap<Arch, String>,
    /// The iPXE script URL for this node; overrides the subnet's.
    #[serde(default)]
    pub ipxe_url: Option<String>,
    /// Boot intent: `netboot` (the default when `profile` is set), `local` or `ignore`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<BootMode>,
    /// The boot profile to netboot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<String>,
    /// Per-node template variables (`{{ vars.name }}`), over the profile's defaults.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub vars: BTreeMap<String, String>,
    /// The boot chain for this node; overrides the subnet's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chain: Option<Chain>,
}

/// A snapshot that is not even well-formed JSON of the contract's shape.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {message}")]
pub struct ParseError {
    /// Where in the document, e.g. `nodes[3].interfaces[0].mac` (`.` for the top level).
    pub path: String,
    /// What is wrong there.
    pub message: String,
}

impl Snapshot {
    /// Parses a snapshot from JSON bytes.
    ///
    /// The fast path is a plain serde parse; only when that fails is the document parsed again
    /// with path tracking, so that the error names the offending field (`nodes[3].macc`).
    pub fn from_json(bytes: &[u8]) -> Result<Self, ParseError> {
        match serde_json::from_slice(bytes) {
            Ok(s) => Ok(s),
            Err(fast) => {
                let de = &mut serde_json::Deserializer::from_slice(bytes);
                match serde_path_to_error::deserialize::<_, Self>(de) {
                    Err(e) => Err(ParseError {
                        path: e.path().to_string(),
                        message: e.into_inner().to_string(),
                    }),
                    // Cannot happen (same input, same types), but never trust that blindly.
                    Ok(_) => Err(ParseError {
                        path: ".".to_owned(),
                        message: fast.to_string(),
                    }),
                }
            }
        }
    }

    /// Serialises the snapshot as JSON.
    pub fn to_json(&self) -> Vec<u8> {
        // Serialising these plain types cannot fail: no maps with non-string keys, no I/O.
        serde_json::to_vec(self).unwrap_or_default()
    }
}

/// A parsed upstream resolver address, `IP` or `IP:PORT` (port 53 by default).
pub fn parse_upstream(s: &str) -> Option<std::net::SocketAddr> {
    if let Ok(sa) = s.parse::<std::net::SocketAddr>() {
        return Some(sa);
    }
    s.parse::<IpAddr>()
        .ok()
        .map(|ip| std::net::SocketAddr::new(ip, 53))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_field_is_named_by_path() {
        let j = br#"{"generation":1,"nodes":[{"id":"a","hostname":"a","domain":"maas",
            "interfaces":[{"mac":"52:54:00:00:00:01","ipv4":"10.0.0.5","primray":true}]}]}"#;
        let e = Snapshot::from_json(j).unwrap_err();
        assert_eq!(e.path, "nodes[0].interfaces[0].primray");
        assert!(e.message.contains("primray"), "{e}");
    }

    #[test]
    fn bad_mac_is_named_by_path() {
        let j = br#"{"generation":1,"nodes":[{"id":"a","hostname":"a","domain":"maas",
            "interfaces":[{"mac":"52:54:00:00:00"}]}]}"#;
        let e = Snapshot::from_json(j).unwrap_err();
        assert_eq!(e.path, "nodes[0].interfaces[0].mac");
    }

    #[test]
    fn unknown_arch_key_rejected() {
        let j = br#"{"generation":1,"subnets":[{"cidr":"10.0.0.0/24",
            "boot":{"files":{"x86_64-bois":"a"}}}]}"#;
        let e = Snapshot::from_json(j).unwrap_err();
        assert!(e.path.starts_with("subnets[0].boot.files"), "{e}");
    }

    #[test]
    fn client_arch_mapping() {
        assert_eq!(Arch::from_client_arch(None), Some(Arch::X86_64Bios));
        assert_eq!(Arch::from_client_arch(Some(9)), Some(Arch::X86_64Uefi));
        assert_eq!(Arch::from_client_arch(Some(11)), Some(Arch::Arm64Uefi));
        assert_eq!(Arch::from_client_arch(Some(19)), Some(Arch::Arm64Http));
        assert_eq!(Arch::from_client_arch(Some(2)), None);
    }

    #[test]
    fn upstream_forms() {
        assert_eq!(
            parse_upstream("10.0.0.1"),
            Some("10.0.0.1:53".parse().unwrap())
        );
        assert_eq!(
            parse_upstream("[::1]:5353"),
            Some("[::1]:5353".parse().unwrap())
        );
        assert_eq!(parse_upstream("dns.example"), None);
    }
}
