//! The virtual tree TFTP and HTTP boot both serve: the boot directory's files, plus each
//! machine's configuration rendered from the served table under the names real loaders ask
//! for:
//!
//! - `pxelinux.cfg/01-<mac-hyphen>` (pxelinux, lpxelinux; in any directory: pxelinux looks
//!   beside itself),
//! - `grub/grub.cfg-01-<mac-hyphen>` and `grub/grub.cfg-<mac>` (GRUB netboot images; GRUB
//!   2 asks for the first, MAAS-style images for the second),
//! - `ipxe/<mac>` (the per-node iPXE script pserv's DHCP points iPXE at), with the MAC in
//!   colon or hyphen form.
//!
//! A configuration is served only to the machine it is for: the client's address must be
//! the MAC's reservation or its live lease (a loopback client, the operator on the host, is
//! trusted). A MAC with nothing to render (no profile, not `local`, or `ignore`) falls back
//! to the boot directory, so static files an operator keeps there still work.

use std::net::{IpAddr, Ipv4Addr};
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

/// Called with every configuration served (keep it short).
pub type OnConfig = Arc<dyn Fn(&ConfigServed) + Send + Sync>;

/// The virtual tree. See the module docs.
pub struct Tree {
    dir: Option<BootDir>,
    store: Arc<Store>,
    board: Arc<LeaseBoard>,
    http_port: u16,
    on_config: OnConfig,
}

impl std::fmt::Debug for Tree {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tree")
            .field("dir", &self.dir)
            .field("http_port", &self.http_port)
            .finish_non_exhaustive()
    }
}

/// Which configuration a name asks for, if it names one.
pub fn config_name(name: &str) -> Option<(Loader, MacAddr)> {
    let rel = BootDir::clean(name).ok()?;
    let parts: Vec<&str> = rel
        .components()
        .filter_map(|c| match c {
            Component::Normal(p) => p.to_str(),
            _ => None,
        })
        .collect();
    names::parse_config(&parts)
}

impl Tree {
    /// A tree over `dir` (if any) and the configurations of the table `store` serves, whose
    /// URLs name `http_port`; `board` holds the live leases the address check reads.
    pub fn new(
        dir: Option<BootDir>,
        store: Arc<Store>,
        board: Arc<LeaseBoard>,
        http_port: u16,
        on_config: OnConfig,
    ) -> Self {
        Self {
            dir,
            store,
            board,
            http_port,
            on_config,
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
        match &self.dir {
            Some(d) => d.open(name).map(Content::File),
            None => Err(TreeError::NotFound),
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
        let client4 = match client {
            IpAddr::V4(ip) => Some(ip),
            IpAddr::V6(ip) => ip.to_ipv4_mapped(),
        };
        // The one lookup of the MAC in the table: the address check, the intent and the
        // rendering all read this interface.
        let iface = table.by_mac(mac);
        let reserved = iface.and_then(|i| i.ipv4());
        let leased = self.board.address_of(mac);
        // The machine's own address, if the request came from it (or from this host).
        let from = match client4 {
            Some(ip) if ip.is_loopback() => reserved.or(leased).or(Some(ip)),
            Some(ip) if Some(ip) == reserved || Some(ip) == leased => Some(ip),
            _ => None,
        };
        let server = match local {
            IpAddr::V4(ip) if !ip.is_unspecified() => ip,
            IpAddr::V6(ip) => ip.to_ipv4_mapped().unwrap_or(Ipv4Addr::LOCALHOST),
            _ => Ipv4Addr::LOCALHOST,
        };
        let at = Endpoint {
            server,
            http_port: self.http_port,
        };
        // Whether there is anything to render at all, before judging the address.
        let subnet = reserved
            .or(leased)
            .or(client4)
            .and_then(|ip| table.subnet_for(ip));
        if !Intent::of(iface, subnet).renders() {
            return Err(TreeError::NotFound);
        }
        let Some(from) = from else {
            return Err(TreeError::NotYours);
        };
        match table.render_boot_for(loader, mac, iface, Some(from), at) {
            Ok(r) => {
                let bytes: Arc<[u8]> = r.text.into_bytes().into();
                (self.on_config)(&ConfigServed {
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
                });
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
