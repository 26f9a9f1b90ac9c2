//! `pserv boot-dir`: a boot directory assembled from the distribution's installed packages
//! (issue 22), so an operator does not have to know which file of which package each
//! firmware's first step needs, nor the names shim and GRUB expect beside each other.
//!
//! Every piece is copied under the name pserv's DHCP hands out ([`names::chain_file`]) or
//! the name the piece before it asks for (shim loads `grubx64.efi` from its own directory).
//! A piece already there with the same bytes is left alone; one with different bytes is
//! kept unless `force` is given (an operator's own build of iPXE is not silently replaced).
//! Files are written to a temporary name and renamed, so a server serving the directory
//! never sees half a file.

use std::fmt;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use pserv_core::snapshot::{Arch, Chain};
use pserv_core::table::names;

/// What a piece is for: the boot paths it completes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum BootPath {
    /// BIOS machines (both chains: there is no signed chain for BIOS).
    Bios,
    /// x86-64 UEFI on the `ipxe` chain (Secure Boot off).
    UefiIpxe,
    /// x86-64 UEFI on the `grub` chain: Debian's signed shim and GRUB (Secure Boot on or off).
    UefiGrub,
    /// ARM64 UEFI on the `grub` chain.
    Arm64Grub,
    /// pxelinux, for nodes or subnets that name it as their boot file.
    Pxelinux,
}

impl BootPath {
    /// Every boot path, in report order.
    pub const ALL: [Self; 5] = [
        Self::Bios,
        Self::UefiIpxe,
        Self::UefiGrub,
        Self::Arm64Grub,
        Self::Pxelinux,
    ];

    /// How the report names it.
    pub fn describe(self) -> &'static str {
        match self {
            Self::Bios => "BIOS (iPXE)",
            Self::UefiIpxe => "x86-64 UEFI, ipxe chain",
            Self::UefiGrub => "x86-64 UEFI, grub chain (Secure Boot)",
            Self::Arm64Grub => "ARM64 UEFI, grub chain (Secure Boot)",
            Self::Pxelinux => "pxelinux (BIOS, named as a boot file)",
        }
    }
}

/// One file of a boot directory: its name there, where packages install it, which package.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Piece {
    /// The name in the boot directory.
    pub name: &'static str,
    /// Where the package installs it, tried in order (relative to each root).
    pub sources: &'static [&'static str],
    /// The Debian package that has it (`apt-get install` this).
    pub package: &'static str,
    /// The boot path it belongs to.
    pub path: BootPath,
    /// Whether the path works without it (MokManager: only a machine with a key change
    /// awaiting approval asks for it; Debian packages no signed one for ARM64).
    pub optional: bool,
}

/// Every piece `pserv boot-dir` knows, from Debian 12's packages (Ubuntu's have the same
/// paths). Debian packages no iPXE for ARM64: ARM64 machines take the `grub` chain.
pub fn pieces() -> [Piece; 10] {
    let grub = |arch| names::chain_file(arch, Chain::Grub);
    let ipxe = |arch| names::chain_file(arch, Chain::Ipxe);
    let grub_x64 = names::grub_file(Arch::X86_64Uefi).unwrap_or("grubx64.efi");
    let grub_aa64 = names::grub_file(Arch::Arm64Uefi).unwrap_or("grubaa64.efi");
    [
        Piece {
            name: ipxe(Arch::X86_64Bios),
            sources: &["usr/lib/ipxe/undionly.kpxe"],
            package: "ipxe",
            path: BootPath::Bios,
            optional: false,
        },
        Piece {
            name: ipxe(Arch::X86_64Uefi),
            sources: &["usr/lib/ipxe/ipxe.efi"],
            package: "ipxe",
            path: BootPath::UefiIpxe,
            optional: false,
        },
        Piece {
            name: grub(Arch::X86_64Uefi),
            sources: &["usr/lib/shim/shimx64.efi.signed"],
            package: "shim-signed",
            path: BootPath::UefiGrub,
            optional: false,
        },
        // MokManager: shim runs it from its own directory when a key change awaits approval.
        Piece {
            name: "mmx64.efi",
            sources: &["usr/lib/shim/mmx64.efi.signed"],
            package: "shim-signed",
            path: BootPath::UefiGrub,
            optional: true,
        },
        // The network image (its prefix is /debian-installer/amd64/grub on Debian).
        Piece {
            name: grub_x64,
            sources: &["usr/lib/grub/x86_64-efi-signed/grubnetx64.efi.signed"],
            package: "grub-efi-amd64-signed",
            path: BootPath::UefiGrub,
            optional: false,
        },
        Piece {
            name: grub(Arch::Arm64Uefi),
            sources: &["usr/lib/shim/shimaa64.efi.signed"],
            package: "shim-signed:arm64",
            path: BootPath::Arm64Grub,
            optional: false,
        },
        Piece {
            name: "mmaa64.efi",
            sources: &["usr/lib/shim/mmaa64.efi.signed"],
            package: "shim-signed:arm64",
            path: BootPath::Arm64Grub,
            optional: true,
        },
        Piece {
            name: grub_aa64,
            sources: &["usr/lib/grub/arm64-efi-signed/grubnetaa64.efi.signed"],
            package: "grub-efi-arm64-signed:arm64",
            path: BootPath::Arm64Grub,
            optional: false,
        },
        Piece {
            name: "pxelinux.0",
            sources: &["usr/lib/PXELINUX/pxelinux.0"],
            package: "pxelinux",
            path: BootPath::Pxelinux,
            optional: false,
        },
        Piece {
            name: "ldlinux.c32",
            sources: &["usr/lib/syslinux/modules/bios/ldlinux.c32"],
            package: "syslinux-common",
            path: BootPath::Pxelinux,
            optional: false,
        },
    ]
}

/// What happened to one piece.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Copied in from this source.
    Copied(PathBuf),
    /// Already there with the same bytes.
    Unchanged(PathBuf),
    /// Already there with different bytes, replaced (`force`).
    Replaced(PathBuf),
    /// Already there with different bytes and kept: the operator's file wins without `force`.
    Kept(PathBuf),
    /// No root has it: the package is not installed.
    Missing,
}

/// The report of one run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// Every piece and what happened to it.
    pub pieces: Vec<(Piece, Outcome)>,
}

impl Report {
    /// Whether every piece of a boot path is in the directory (copied, unchanged, replaced or
    /// kept as the operator had it).
    pub fn ready(&self, path: BootPath) -> bool {
        self.pieces
            .iter()
            .filter(|(p, _)| p.path == path && !p.optional)
            .all(|(_, o)| *o != Outcome::Missing)
    }

    /// Pieces kept because they differ from the package's: the run did not finish its job.
    pub fn kept(&self) -> usize {
        self.pieces
            .iter()
            .filter(|(_, o)| matches!(o, Outcome::Kept(_)))
            .count()
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (p, o) in &self.pieces {
            match o {
                Outcome::Copied(s) => {
                    writeln!(f, "copied     {:<14} from {}", p.name, s.display())?;
                }
                Outcome::Unchanged(_) => writeln!(f, "unchanged  {}", p.name)?,
                Outcome::Replaced(s) => {
                    writeln!(
                        f,
                        "replaced   {:<14} from {} (--force)",
                        p.name,
                        s.display()
                    )?;
                }
                Outcome::Kept(s) => writeln!(
                    f,
                    "kept       {:<14} differs from {}: left as it is (--force replaces it)",
                    p.name,
                    s.display()
                )?,
                Outcome::Missing => writeln!(
                    f,
                    "missing    {:<14} for {}{}: apt-get install {}",
                    p.name,
                    p.path.describe(),
                    if p.optional { " (optional)" } else { "" },
                    p.package
                )?,
            }
        }
        for path in BootPath::ALL {
            let state = if self.ready(path) {
                "ready"
            } else {
                "not ready"
            };
            writeln!(f, "{state:<10} {}", path.describe())?;
        }
        Ok(())
    }
}

/// Fills `dir` (created if absent) with every piece found under `roots` (each a directory
/// standing for `/`: the system's own root, or a package unpacked with `dpkg-deb -x`; the
/// first that has a piece wins). See the module docs.
pub fn assemble(dir: &Path, roots: &[PathBuf], force: bool) -> io::Result<Report> {
    std::fs::create_dir_all(dir)?;
    let mut report = Report { pieces: Vec::new() };
    for piece in pieces() {
        let source = roots
            .iter()
            .flat_map(|r| piece.sources.iter().map(move |s| r.join(s)))
            .find(|p| p.is_file());
        let Some(source) = source else {
            report.pieces.push((piece, Outcome::Missing));
            continue;
        };
        let want = std::fs::read(&source)?;
        let dest = dir.join(piece.name);
        let outcome = match std::fs::read(&dest) {
            Ok(have) if have == want => Outcome::Unchanged(source),
            Ok(_) if !force => Outcome::Kept(source),
            Ok(_) => {
                write_atomically(&dest, &want)?;
                Outcome::Replaced(source)
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                write_atomically(&dest, &want)?;
                Outcome::Copied(source)
            }
            Err(e) => return Err(io::Error::new(e.kind(), format!("{}: {e}", dest.display()))),
        };
        report.pieces.push((piece, outcome));
    }
    Ok(report)
}

/// Writes `bytes` to a temporary file beside `dest`, then renames it over `dest`.
fn write_atomically(dest: &Path, bytes: &[u8]) -> io::Result<()> {
    let name = dest.file_name().and_then(|n| n.to_str()).unwrap_or("piece");
    let tmp = dest.with_file_name(format!(".{name}.pserv-tmp"));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, dest)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", dest.display())))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn install(root: &Path, rel: &str, bytes: &[u8]) {
        let p = root.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, bytes).unwrap();
    }

    #[test]
    fn copies_what_is_installed_and_names_the_package_of_what_is_not() {
        let root = tempfile::tempdir().unwrap();
        install(root.path(), "usr/lib/ipxe/undionly.kpxe", b"undi");
        install(root.path(), "usr/lib/ipxe/ipxe.efi", b"ipxe");
        install(root.path(), "usr/lib/shim/shimx64.efi.signed", b"shim");
        install(root.path(), "usr/lib/shim/mmx64.efi.signed", b"mok");
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("boot");
        let r = assemble(&out, &[root.path().to_owned()], false).unwrap();
        assert_eq!(std::fs::read(out.join("shimx64.efi")).unwrap(), b"shim");
        assert_eq!(std::fs::read(out.join("undionly.kpxe")).unwrap(), b"undi");
        assert!(r.ready(BootPath::Bios) && r.ready(BootPath::UefiIpxe));
        assert!(!r.ready(BootPath::UefiGrub), "no GRUB yet");
        let text = r.to_string();
        assert!(
            text.contains("missing    grubx64.efi    for x86-64 UEFI, grub chain (Secure Boot): apt-get install grub-efi-amd64-signed"),
            "{text}"
        );
        assert!(
            text.contains("apt-get install grub-efi-arm64-signed:arm64"),
            "{text}"
        );
        // No temporary file is left behind.
        assert!(
            std::fs::read_dir(&out).unwrap().all(|e| !e
                .unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with('.'))
        );

        // A second run changes nothing; a later root adds what the first lacked.
        let arm = tempfile::tempdir().unwrap();
        install(
            arm.path(),
            "usr/lib/grub/x86_64-efi-signed/grubnetx64.efi.signed",
            b"grub",
        );
        let r = assemble(
            &out,
            &[root.path().to_owned(), arm.path().to_owned()],
            false,
        )
        .unwrap();
        assert!(r.ready(BootPath::UefiGrub));
        assert!(
            r.pieces
                .iter()
                .filter(|(p, _)| p.name == "shimx64.efi")
                .all(|(_, o)| matches!(o, Outcome::Unchanged(_)))
        );
        assert_eq!(std::fs::read(out.join("grubx64.efi")).unwrap(), b"grub");

        // ARM64 without MokManager (Debian signs none for it) is ready all the same.
        install(arm.path(), "usr/lib/shim/shimaa64.efi.signed", b"shim64");
        install(
            arm.path(),
            "usr/lib/grub/arm64-efi-signed/grubnetaa64.efi.signed",
            b"grub64",
        );
        let r = assemble(
            &out,
            &[root.path().to_owned(), arm.path().to_owned()],
            false,
        )
        .unwrap();
        assert!(r.ready(BootPath::Arm64Grub), "{r}");
        assert!(
            r.to_string().contains(
                "missing    mmaa64.efi     for ARM64 UEFI, grub chain (Secure Boot) (optional)"
            ),
            "{r}"
        );
    }

    #[test]
    fn a_different_file_is_kept_unless_forced() {
        let root = tempfile::tempdir().unwrap();
        install(root.path(), "usr/lib/ipxe/ipxe.efi", b"debian's");
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("ipxe.efi"), b"my own build").unwrap();
        let r = assemble(dir.path(), &[root.path().to_owned()], false).unwrap();
        assert_eq!(r.kept(), 1);
        assert!(r.to_string().contains("kept       ipxe.efi"), "{r}");
        assert_eq!(
            std::fs::read(dir.path().join("ipxe.efi")).unwrap(),
            b"my own build"
        );
        let r = assemble(dir.path(), &[root.path().to_owned()], true).unwrap();
        assert_eq!(r.kept(), 0);
        assert_eq!(
            std::fs::read(dir.path().join("ipxe.efi")).unwrap(),
            b"debian's"
        );
    }

    #[test]
    fn names_match_what_dhcp_hands_out() {
        let names: Vec<&str> = pieces().iter().map(|p| p.name).collect();
        for arch in [Arch::X86_64Bios, Arch::X86_64Uefi, Arch::Arm64Uefi] {
            assert!(
                names.contains(&names::chain_file(arch, Chain::Grub)),
                "{arch:?}"
            );
        }
        assert!(names.contains(&names::chain_file(Arch::X86_64Uefi, Chain::Ipxe)));
        assert!(names.contains(&"grubx64.efi") && names.contains(&"grubaa64.efi"));
    }
}
