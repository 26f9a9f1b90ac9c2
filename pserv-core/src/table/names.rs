//! The names of network boot, in one place: the iPXE binaries pserv's chain hands each
//! architecture, and the per-node configuration names each loader asks for. DHCP formats boot
//! files and URLs from these; the virtual tree (TFTP and HTTP boot) parses requests with
//! them; a round trip is tested here, so the two cannot drift apart.
//!
//! | loader   | served as                                                     |
//! | -------- | ------------------------------------------------------------- |
//! | iPXE     | `ipxe/<mac>` (DHCP points iPXE at `http://server:port/ipxe/<mac-hyphen>`) |
//! | GRUB     | `grub/grub.cfg-01-<mac>`, also `grub.cfg-<mac>`, in any directory |
//! | pxelinux | `pxelinux.cfg/01-<mac>`, in any directory (pxelinux looks beside itself) |
//!
//! A MAC is accepted in colon or hyphen form; what pserv writes uses hyphens.

use crate::MacAddr;
use crate::snapshot::{Arch, Chain};
use crate::table::Loader;

/// The first file pserv's own chain hands an architecture (over TFTP, or as an HTTP boot
/// URL for HTTP clients). The `ipxe` chain: BIOS `undionly.kpxe`, x86-64 UEFI `ipxe.efi`,
/// ARM64 UEFI `ipxe-arm64.efi`, 32-bit UEFI `ipxe-ia32.efi`. The `grub` chain: x86-64 UEFI
/// `shimx64.efi`, ARM64 UEFI `shimaa64.efi` (the distribution's signed shim, which loads
/// [`grub_file`] from its own directory); BIOS and 32-bit UEFI, which have no signed shim,
/// stay on iPXE.
pub fn chain_file(arch: Arch, chain: Chain) -> &'static str {
    match (chain, arch) {
        (_, Arch::X86_64Bios) => "undionly.kpxe",
        (Chain::Ipxe, Arch::X86_64Uefi | Arch::X86_64Http) => "ipxe.efi",
        (_, Arch::Ia32Uefi) => "ipxe-ia32.efi",
        (Chain::Ipxe, Arch::Arm64Uefi | Arch::Arm64Http) => "ipxe-arm64.efi",
        (Chain::Grub, Arch::X86_64Uefi | Arch::X86_64Http) => "shimx64.efi",
        (Chain::Grub, Arch::Arm64Uefi | Arch::Arm64Http) => "shimaa64.efi",
    }
}

/// The signed GRUB the `grub` chain's shim loads from beside itself, for the architectures
/// that chain serves (shim asks for this name).
pub fn grub_file(arch: Arch) -> Option<&'static str> {
    match arch {
        Arch::X86_64Uefi | Arch::X86_64Http => Some("grubx64.efi"),
        Arch::Arm64Uefi | Arch::Arm64Http => Some("grubaa64.efi"),
        Arch::X86_64Bios | Arch::Ia32Uefi => None,
    }
}

/// Whether a name is GRUB's plain `grub.cfg` (in any directory: the prefix a signed GRUB
/// was built with), which names no machine: the client's address does.
pub fn is_plain_grub_cfg(parts: &[&str]) -> bool {
    parts.last() == Some(&"grub.cfg")
}

/// A MAC as served names write it: `52-54-00-aa-00-01`.
fn hyphens(mac: MacAddr) -> String {
    mac.to_string().replace(':', "-")
}

/// The name a loader asks for its configuration, relative to the tree's root (the first of
/// the names it tries, for GRUB).
pub fn config_path(loader: Loader, mac: MacAddr) -> String {
    match loader {
        Loader::Ipxe => format!("ipxe/{}", hyphens(mac)),
        Loader::Grub => format!("grub/grub.cfg-01-{}", hyphens(mac)),
        Loader::Pxelinux => format!("pxelinux.cfg/01-{}", hyphens(mac)),
    }
}

/// A node file's name in the tree (issue 21): `nodes/<mac-hyphen>/<name>`.
pub fn node_file_path(mac: MacAddr, name: &str) -> String {
    format!("nodes/{}/{name}", hyphens(mac))
}

/// Which node file a name asks for: `nodes/<mac>/<name>` at the root of the tree, the MAC
/// in either form. The name is returned as asked (the profile says whether it exists).
pub fn parse_node_file<'a>(parts: &[&'a str]) -> Option<(MacAddr, &'a str)> {
    match parts {
        ["nodes", mac, name] => mac.parse().ok().map(|m| (m, *name)),
        _ => None,
    }
}

/// The HTTP path of a node's iPXE script (what DHCP gives iPXE as its boot file).
pub fn ipxe_script_path(mac: MacAddr) -> String {
    format!("/{}", config_path(Loader::Ipxe, mac))
}

/// Which configuration a name asks for, given the name's path components (already cleaned:
/// no empty, `.` or `..` components).
pub fn parse_config(parts: &[&str]) -> Option<(Loader, MacAddr)> {
    let (&last, dirs) = parts.split_last()?;
    let parent = dirs.last().copied();
    if parent == Some("pxelinux.cfg") {
        let mac = last.strip_prefix("01-")?;
        return mac.parse().ok().map(|m| (Loader::Pxelinux, m));
    }
    if let Some(rest) = last.strip_prefix("grub.cfg-") {
        let mac = rest.strip_prefix("01-").unwrap_or(rest);
        return mac.parse().ok().map(|m| (Loader::Grub, m));
    }
    if parts.len() == 2 && parent == Some("ipxe") {
        let mac = last.strip_prefix("01-").unwrap_or(last);
        return mac.parse().ok().map(|m| (Loader::Ipxe, m));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_pserv_writes_parses_back() {
        let mac = MacAddr([0x52, 0x54, 0, 0xaa, 0, 1]);
        for loader in Loader::ALL {
            let path = config_path(loader, mac);
            let parts: Vec<&str> = path.split('/').collect();
            assert_eq!(parse_config(&parts), Some((loader, mac)), "{path}");
        }
        let script = ipxe_script_path(mac);
        assert_eq!(script, "/ipxe/52-54-00-aa-00-01");
        let parts: Vec<&str> = script.split('/').filter(|p| !p.is_empty()).collect();
        assert_eq!(parse_config(&parts), Some((Loader::Ipxe, mac)));
    }

    #[test]
    fn node_file_names_parse_back() {
        let mac = MacAddr([0x52, 0x54, 0, 0xaa, 0, 1]);
        let path = node_file_path(mac, "user-data");
        assert_eq!(path, "nodes/52-54-00-aa-00-01/user-data");
        let parts: Vec<&str> = path.split('/').collect();
        assert_eq!(parse_node_file(&parts), Some((mac, "user-data")));
        assert_eq!(
            parse_node_file(&["nodes", "52:54:00:AA:00:01", "preseed.cfg"]),
            Some((mac, "preseed.cfg"))
        );
        for bad in [
            &["nodes", "52-54-00-aa-00-01"][..],
            &["x", "nodes", "52-54-00-aa-00-01", "a"],
            &["nodes", "nope", "a"],
            &["nodes", "52-54-00-aa-00-01", "a", "b"],
        ] {
            assert_eq!(parse_node_file(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn chain_files() {
        assert_eq!(chain_file(Arch::X86_64Bios, Chain::Ipxe), "undionly.kpxe");
        assert_eq!(chain_file(Arch::X86_64Http, Chain::Ipxe), "ipxe.efi");
        assert_eq!(chain_file(Arch::Arm64Uefi, Chain::Ipxe), "ipxe-arm64.efi");
        assert_eq!(chain_file(Arch::Ia32Uefi, Chain::Ipxe), "ipxe-ia32.efi");
        // The signed chain: shim for UEFI, iPXE where no signed shim exists.
        assert_eq!(chain_file(Arch::X86_64Uefi, Chain::Grub), "shimx64.efi");
        assert_eq!(chain_file(Arch::X86_64Http, Chain::Grub), "shimx64.efi");
        assert_eq!(chain_file(Arch::Arm64Uefi, Chain::Grub), "shimaa64.efi");
        assert_eq!(chain_file(Arch::Arm64Http, Chain::Grub), "shimaa64.efi");
        assert_eq!(chain_file(Arch::X86_64Bios, Chain::Grub), "undionly.kpxe");
        assert_eq!(chain_file(Arch::Ia32Uefi, Chain::Grub), "ipxe-ia32.efi");
        assert_eq!(grub_file(Arch::X86_64Http), Some("grubx64.efi"));
        assert_eq!(grub_file(Arch::Arm64Uefi), Some("grubaa64.efi"));
        assert_eq!(grub_file(Arch::X86_64Bios), None);
        assert!(is_plain_grub_cfg(&[
            "debian-installer",
            "amd64",
            "grub",
            "grub.cfg"
        ]));
        assert!(is_plain_grub_cfg(&["grub.cfg"]));
        assert!(!is_plain_grub_cfg(&[
            "grub",
            "grub.cfg-01-52-54-00-aa-00-01"
        ]));
    }
}
