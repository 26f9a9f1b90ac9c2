//! The virtual tree TFTP and HTTP boot both serve: the boot directory's files, plus each
//! machine's configuration rendered from the served table under the names real loaders ask
//! for:
//!
//! - `pxelinux.cfg/01-<mac-hyphen>` (pxelinux, lpxelinux; in any directory: pxelinux looks
//!   beside itself),
//! - `grub.cfg-01-<mac-hyphen>` and `grub.cfg-<mac>` in any directory (GRUB netboot images;
//!   GRUB 2 asks for the first, MAAS-style images for the second), and plain `grub.cfg` in
//!   any directory for the machine asking (by its reservation or live lease): a signed GRUB
//!   reads it under the prefix its distribution built in (Debian's
//!   `/debian-installer/amd64/grub`, Ubuntu's `/grub`), so no hand-written file is needed,
//! - `ipxe/<mac>` (the per-node iPXE script pserv's DHCP points iPXE at), with the MAC in
//!   colon or hyphen form,
//! - `nodes/<mac>/<name>`: the machine's node files (preseed, kickstart, cloud-init), from
//!   the profile it names (issue 21).
//!
//! A configuration is served only to the machine it is for: the client's address must be
//! the MAC's reservation or its live lease, of either family (a loopback client, the
//! operator on the host, is trusted); another address is refused (a node file: answered as not found, see
//! [`TreeError::Hidden`]). A MAC with nothing to render (no profile, not `local`, or `ignore`) falls back
//! to the boot directory, so static files an operator keeps there still work.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Component;
use std::sync::Arc;

use pserv_core::lease::LeaseBoard;
use pserv_core::snapshot::BootMode;
use pserv_core::table::{Endpoint, Intent, Loader, RenderError, names};
use pserv_core::{MacAddr, Store};

use crate::tree::{BootDir, Opened, TreeError};

/// How a name was asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Via {
    /// TFTP.
    Tftp,
    /// HTTP boot.
    Http,
}

/// What a name stands for.
#[derive(Debug)]
pub enum Content {
    /// A file of the boot directory.
    File(Opened),
    /// A rendered configuration.
    Config(Arc<[u8]>),
}

impl Content {
    /// Its size in bytes.
    pub fn size(&self) -> u64 {
        match self {
            Self::File(o) => o.size,
            Self::Config(b) => b.len() as u64,
        }
    }

    /// Reads at `offset` into `buf` (a short read only at the end).
    pub fn read_at(&self, offset: u64, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Self::File(o) => std::os::unix::fs::FileExt::read_at(&o.file, buf, offset),
            Self::Config(b) => {
                let start = usize::try_from(offset).unwrap_or(usize::MAX).min(b.len());
                let n = buf.len().min(b.len() - start);
                buf[..n].copy_from_slice(&b[start..start + n]);
                Ok(n)
            }
        }
    }
}

/// A configuration served: the boot-progress event a controller follows.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(tag = "event", rename = "boot_config")]
pub struct ConfigServed {
    /// `ipxe`, `grub` or `pxelinux`.
    pub loader: &'static str,
    /// How it was fetched.
    pub via: Via,
    /// The machine.
    pub mac: MacAddr,
    /// Its node id (`None` for an unknown machine).
    pub node: Option<String>,
    /// `netboot` or `local`.
    pub mode: &'static str,
    /// The profile rendered (netboot only).
    pub profile: Option<String>,
    /// The client's address.
    pub client: IpAddr,
    /// The file's size.
    pub bytes: u64,
    /// The snapshot generation it was rendered from.
    pub generation: u64,
}

/// A node file served (issue 21): the `node_file` event a controller follows.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(tag = "event", rename = "node_file")]
pub struct FileServed {
    /// Its node id (`None` for an unknown machine served its subnet's profile's files).
    pub node: Option<String>,
    /// The machine.
    pub mac: MacAddr,
    /// The client's address.
    pub client: IpAddr,
    /// The file's served name.
    pub file: String,
    /// How it was fetched.
    pub via: Via,
    /// The file's size.
    pub bytes: u64,
    /// The snapshot generation it was rendered from.
    pub generation: u64,
}

/// What the tree announces: a configuration or a node file served.
#[derive(Debug, Clone, PartialEq)]
pub enum Served {
    /// A loader's configuration.
    Config(ConfigServed),
    /// A node file.
    File(FileServed),
}

/// Called with every configuration and node file served (keep it short).
pub type OnServed = Arc<dyn Fn(Served) + Send + Sync>;

/// The URLs the tree's templates name, beside the address a request reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Urls {
    /// The HTTP boot port.
    pub http_port: u16,
    /// The syslog receiver, when one runs (an unspecified address: the address the machine
    /// reached pserv at).
    pub syslog: Option<SocketAddr>,
}

/// A machine that asked from its own address: who it is to the snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Machine {
    /// Its node id (`None` for a machine on a dynamic lease the snapshot does not know).
    pub node: Option<String>,
    /// Its MAC.
    pub mac: MacAddr,
    /// The generation the answer was read from.
    pub generation: u64,
}

/// The virtual tree. See the module docs.
pub struct Tree {
    dir: Option<BootDir>,
    store: Arc<Store>,
    board: Arc<LeaseBoard>,
    urls: Urls,
    on_served: OnServed,
}

impl std::fmt::Debug for Tree {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tree")
            .field("dir", &self.dir)
            .field("urls", &self.urls)
            .finish_non_exhaustive()
    }
}

/// A name's path components, cleaned (`None` for a name that climbs out).
fn components(name: &str) -> Option<Vec<String>> {
    let rel = BootDir::clean(name).ok()?;
    Some(
        rel.components()
            .filter_map(|c| match c {
                Component::Normal(p) => p.to_str().map(str::to_owned),
                _ => None,
            })
            .collect(),
    )
}

/// Which configuration a name asks for, if it names one.
pub fn config_name(name: &str) -> Option<(Loader, MacAddr)> {
    let parts = components(name)?;
    let parts: Vec<&str> = parts.iter().map(String::as_str).collect();
    names::parse_config(&parts)
}

/// Whether a name is GRUB's plain `grub.cfg`, in any directory (see
/// [`names::is_plain_grub_cfg`]).
pub fn is_grub_cfg(name: &str) -> bool {
    // Every TFTP and HTTP request asks this: only a name ending so is split and checked.
    name.ends_with("grub.cfg")
        && components(name).is_some_and(|parts| {
            let parts: Vec<&str> = parts.iter().map(String::as_str).collect();
            names::is_plain_grub_cfg(&parts)
        })
}

/// Which node file a name asks for (`nodes/<mac>/<name>`), if it names one.
pub fn node_file_name(name: &str) -> Option<(MacAddr, String)> {
    let parts = components(name)?;
    let parts: Vec<&str> = parts.iter().map(String::as_str).collect();
    names::parse_node_file(&parts).map(|(m, f)| (m, f.to_owned()))
}

/// Seconds since the Unix epoch (sightings count for a while from when they were made).
fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The server address a request reached, for the URLs rendered for it (an IPv4 peer on a
/// dual-stack socket, IPv4-mapped, as IPv4).
fn server_address(local: IpAddr) -> IpAddr {
    match local.to_canonical() {
        IpAddr::V4(ip) if ip.is_unspecified() => Ipv4Addr::LOCALHOST.into(),
        IpAddr::V6(ip) if ip.is_unspecified() => Ipv6Addr::LOCALHOST.into(),
        ip => ip,
    }
}

/// The addresses a machine is known by, per family: its reservation and its live lease (or,
/// for IPv4 on a proxyDHCP subnet, the address it showed in its PXE exchange).
#[derive(Debug, Clone, Copy, Default)]
struct Known {
    reserved4: Option<Ipv4Addr>,
    leased4: Option<Ipv4Addr>,
    reserved6: Option<Ipv6Addr>,
    leased6: Option<Ipv6Addr>,
}

impl Known {
    fn v4(&self) -> Option<Ipv4Addr> {
        self.reserved4.or(self.leased4)
    }

    fn v6(&self) -> Option<Ipv6Addr> {
        self.reserved6.or(self.leased6)
    }

    fn is_empty(&self) -> bool {
        self.v4().is_none() && self.v6().is_none()
    }

    /// The machine's own address, if `client` is one of them (or this host, trusted: then
    /// its IPv4 address, else its IPv6 one, else the loopback address it asked from).
    fn own(&self, client: IpAddr) -> Option<IpAddr> {
        let client = client.to_canonical();
        match client {
            ip if ip.is_loopback() => self
                .v4()
                .map(IpAddr::V4)
                .or(self.v6().map(IpAddr::V6))
                .or(Some(ip)),
            IpAddr::V4(ip) if Some(ip) == self.reserved4 || Some(ip) == self.leased4 => {
                Some(client)
            }
            IpAddr::V6(ip) if Some(ip) == self.reserved6 || Some(ip) == self.leased6 => {
                Some(client)
            }
            _ => None,
        }
    }

    /// The address that finds the machine's subnet: of the family it asked in (this host:
    /// its IPv4 address, else its IPv6 one).
    fn for_subnet(&self, client: IpAddr) -> Option<IpAddr> {
        match client.to_canonical() {
            IpAddr::V6(ip) if !ip.is_loopback() => Some(IpAddr::V6(self.v6().unwrap_or(ip))),
            IpAddr::V4(ip) if !ip.is_loopback() => Some(IpAddr::V4(self.v4().unwrap_or(ip))),
            _ => self.v4().map(IpAddr::V4).or(self.v6().map(IpAddr::V6)),
        }
    }
}

impl Tree {
    /// A tree over `dir` (if any) and the configurations and node files of the table `store`
    /// serves, whose URLs name `urls`; `board` holds the live leases the address check reads.
    pub fn new(
        dir: Option<BootDir>,
        store: Arc<Store>,
        board: Arc<LeaseBoard>,
        urls: Urls,
        on_served: OnServed,
    ) -> Self {
        Self {
            dir,
            store,
            board,
            urls,
            on_served,
        }
    }

    /// What `name` stands for, asked by `client` over `via` at the server address `local`.
    pub fn open(
        &self,
        name: &str,
        via: Via,
        client: IpAddr,
        local: IpAddr,
    ) -> Result<Content, TreeError> {
        if let Some((loader, mac)) = config_name(name) {
            match self.render(loader, mac, via, client, local) {
                Ok(c) => return Ok(c),
                // Nothing to render for this MAC: the boot directory may still hold the name.
                Err(TreeError::NotFound) => {}
                Err(e) => return Err(e),
            }
        }
        // A signed GRUB reads `grub.cfg` under the prefix its distribution built in: the
        // machine asking is known by its address (reservation or live lease).
        if is_grub_cfg(name)
            && let Some(mac) = self.mac_at(client)
        {
            match self.render(Loader::Grub, mac, via, client, local) {
                Ok(c) => return Ok(c),
                Err(TreeError::NotFound) => {}
                Err(e) => return Err(e),
            }
        }
        if let Some((mac, file)) = node_file_name(name) {
            match self.node_file(mac, &file, via, client, local) {
                Ok(c) => return Ok(c),
                Err(TreeError::NotFound) => {}
                Err(e) => return Err(e),
            }
        }
        match &self.dir {
            Some(d) => d.open(name).map(Content::File),
            None => Err(TreeError::NotFound),
        }
    }

    /// The machine with `mac`, if `client` is its own address: the MAC's reservation or its
    /// live lease (a loopback client, the operator on this host, is trusted). For the
    /// progress endpoint: [`TreeError::Hidden`] from any other address, and
    /// [`TreeError::NotFound`] for a MAC that is neither a node's nor a lease's.
    pub fn machine(&self, mac: MacAddr, client: IpAddr) -> Result<Machine, TreeError> {
        let table = self.store.load();
        let iface = table.by_mac(mac);
        let known = self.known(mac, iface);
        if iface.is_none() && known.is_empty() {
            return Err(TreeError::NotFound);
        }
        if known.own(client).is_none() {
            return Err(TreeError::Hidden);
        }
        Ok(Machine {
            node: iface.map(|i| i.node().id().to_owned()),
            mac,
            generation: table.generation(),
        })
    }

    /// The MAC whose reservation or live lease `client` is (none for loopback, the operator
    /// on this host, who gets the boot directory's file).
    fn mac_at(&self, client: IpAddr) -> Option<MacAddr> {
        let table = self.store.load();
        let ip = match client.to_canonical() {
            ip if ip.is_loopback() => return None,
            IpAddr::V6(ip) => {
                return table
                    .by_ipv6(ip)
                    .map(|i| i.mac())
                    .or_else(|| self.board.holder6(ip).and_then(|l| l.mac));
            }
            IpAddr::V4(ip) => ip,
        };
        table
            .by_ipv4(ip)
            .map(|i| i.mac())
            .or_else(|| self.board.holder(ip).map(|l| l.mac))
            .or_else(|| {
                // A sighting names only a machine without a reservation.
                self.board
                    .sighted_at(ip, unix_now())
                    .filter(|m| table.by_mac(*m).and_then(|i| i.ipv4()).is_none())
            })
    }

    /// The addresses the machine with `mac` (`iface` in the table) is known by: per family
    /// its reservation and its bound lease, and for an IPv4 machine without a reservation
    /// and a lease (on a proxyDHCP subnet), the address it showed in its PXE exchange. A
    /// reserved machine is known by its reservation and lease alone: a sighting, the
    /// machine's word, never widens it. Nor does a DHCPv6 lease for a machine with an IPv6
    /// reservation: the MAC of a DHCPv6 lease is the client's word (its DUID, its link-local
    /// address), and another host claiming it gets a lease of its own, on another address
    /// (the reservation goes to the machine's first IA_NA alone).
    fn known(&self, mac: MacAddr, iface: Option<pserv_core::table::IfaceView<'_>>) -> Known {
        let reserved4 = iface.and_then(|i| i.ipv4());
        let reserved6 = iface.and_then(|i| i.ipv6());
        let leased4 = self.board.address_of(mac).or_else(|| {
            reserved4
                .is_none()
                .then(|| self.board.sighted(mac, unix_now()))
                .flatten()
        });
        Known {
            reserved4,
            leased4,
            reserved6,
            leased6: reserved6
                .is_none()
                .then(|| self.board.address6_of(mac))
                .flatten(),
        }
    }

    fn endpoint(&self, local: IpAddr) -> Endpoint {
        Endpoint {
            server: server_address(local),
            http_port: self.urls.http_port,
            syslog: self.urls.syslog,
        }
    }

    fn node_file(
        &self,
        mac: MacAddr,
        file: &str,
        via: Via,
        client: IpAddr,
        local: IpAddr,
    ) -> Result<Content, TreeError> {
        let table = self.store.load();
        let iface = table.by_mac(mac);
        let known = self.known(mac, iface);
        // Whether the machine has such a file at all, before judging the address.
        let Some(profile) = table.files_profile(mac, iface, known.for_subnet(client)) else {
            return Err(TreeError::NotFound);
        };
        if !table.boot_plan().has_node_file(profile, file) {
            return Err(TreeError::NotFound);
        }
        let Some(from) = known.own(client) else {
            return Err(TreeError::Hidden);
        };
        match table.render_file_for(file, mac, iface, Some(from), self.endpoint(local)) {
            Ok(r) => {
                let bytes: Arc<[u8]> = r.text.into_bytes().into();
                (self.on_served)(Served::File(FileServed {
                    node: r.node,
                    mac,
                    client,
                    file: file.to_owned(),
                    via,
                    bytes: bytes.len() as u64,
                    generation: table.generation(),
                }));
                Ok(Content::Config(bytes))
            }
            Err(RenderError::NoIntent) => Err(TreeError::NotFound),
            Err(RenderError::Failed(e)) => {
                tracing::warn!(%mac, file, error = %e, "node file");
                Err(TreeError::Render(e))
            }
        }
    }

    fn render(
        &self,
        loader: Loader,
        mac: MacAddr,
        via: Via,
        client: IpAddr,
        local: IpAddr,
    ) -> Result<Content, TreeError> {
        let table = self.store.load();
        // The one lookup of the MAC in the table: the address check, the intent and the
        // rendering all read this interface.
        let iface = table.by_mac(mac);
        let known = self.known(mac, iface);
        // Whether there is anything to render at all, before judging the address.
        let boot = match known.for_subnet(client) {
            Some(IpAddr::V4(ip)) => table.subnet_for(ip).and_then(|s| s.boot.as_ref()),
            Some(IpAddr::V6(ip)) => table.subnet6_for(ip).and_then(|s| s.boot.as_ref()),
            None => None,
        };
        if !Intent::of_boot(iface, boot).renders() {
            return Err(TreeError::NotFound);
        }
        let Some(from) = known.own(client) else {
            return Err(TreeError::NotYours);
        };
        match table.render_boot_for(loader, mac, iface, Some(from), self.endpoint(local)) {
            Ok(r) => {
                let bytes: Arc<[u8]> = r.text.into_bytes().into();
                (self.on_served)(Served::Config(ConfigServed {
                    loader: loader.name(),
                    via,
                    mac,
                    node: r.node,
                    mode: match r.mode {
                        BootMode::Local => "local",
                        _ => "netboot",
                    },
                    profile: r.profile,
                    client,
                    bytes: bytes.len() as u64,
                    generation: table.generation(),
                }));
                Ok(Content::Config(bytes))
            }
            Err(RenderError::NoIntent) => Err(TreeError::NotFound),
            Err(RenderError::Failed(e)) => {
                tracing::warn!(%mac, loader = loader.name(), error = %e, "boot config");
                Err(TreeError::Render(e))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn loader_names() {
        let m: MacAddr = "52:54:00:aa:00:01".parse().unwrap();
        for (name, loader) in [
            ("pxelinux.cfg/01-52-54-00-aa-00-01", Loader::Pxelinux),
            ("/boot/pxelinux.cfg/01-52-54-00-AA-00-01", Loader::Pxelinux),
            ("grub/grub.cfg-01-52-54-00-aa-00-01", Loader::Grub),
            ("/grub/grub.cfg-52:54:00:aa:00:01", Loader::Grub),
            ("ipxe/52-54-00-aa-00-01", Loader::Ipxe),
            ("/ipxe/52:54:00:aa:00:01", Loader::Ipxe),
        ] {
            assert_eq!(config_name(name), Some((loader, m)), "{name}");
        }
        for name in [
            "pxelinux.cfg/default",
            "pxelinux.cfg/C0A80001",
            "pxelinux.cfg/52-54-00-aa-00-01",
            "grub/grub.cfg",
            "ipxe/x/52-54-00-aa-00-01",
            "a/ipxe/52-54-00-aa-00-01",
            "undionly.kpxe",
            "../pxelinux.cfg/01-52-54-00-aa-00-01",
        ] {
            assert_eq!(config_name(name), None, "{name}");
        }
    }

    #[test]
    fn config_content_reads_like_a_file() {
        let c = Content::Config(Arc::from(&b"hello world"[..]));
        let mut b = [0u8; 4];
        assert_eq!(c.read_at(0, &mut b).unwrap(), 4);
        assert_eq!(&b, b"hell");
        assert_eq!(c.read_at(8, &mut b).unwrap(), 3);
        assert_eq!(&b[..3], b"rld");
        assert_eq!(c.read_at(11, &mut b).unwrap(), 0);
        assert_eq!(c.read_at(u64::MAX, &mut b).unwrap(), 0);
        assert_eq!(c.size(), 11);
    }
}
