//! The boot directory: read-only files served by name, confined to one directory.
//!
//! A client's name is cleaned the way boot loaders need (a leading `/`, `\` separators from
//! Windows-minded ROMs, empty and `.` components) and refused if it tries to leave the tree:
//! `..` components, NUL bytes, and symbolic links whose target lies outside the directory (the
//! resolved path must stay under the directory's own resolved path). Only regular files are
//! served. Every refusal is a [`TreeError`] the caller maps to a TFTP error or an HTTP status.

use std::fs::File;
use std::io;
use std::path::{Component, Path, PathBuf};

/// Why a name was not served.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TreeError {
    /// The name is empty, has a NUL, or climbs out with `..`.
    #[error("invalid file name")]
    BadName,
    /// Nothing by that name (or it is not a regular file).
    #[error("file not found")]
    NotFound,
    /// It resolves outside the boot directory (a symbolic link pointing out).
    #[error("outside the boot directory")]
    Outside,
    /// The file exists but cannot be read.
    #[error("cannot read: {0}")]
    Io(io::Error),
    /// A machine's configuration, asked for from an address that is not that machine's.
    #[error("not this client's configuration")]
    NotYours,
    /// A machine's node file, asked for from an address that is not that machine's: answered
    /// as if it did not exist (the file may hold secrets; its existence says which MACs are
    /// nodes), and counted as a refusal.
    #[error("not this client's file")]
    Hidden,
    /// A configuration failed to render.
    #[error("rendering failed: {0}")]
    Render(String),
}

/// A boot directory. See the module docs.
#[derive(Debug, Clone)]
pub struct BootDir {
    root: PathBuf,
}

/// An opened file and its size.
#[derive(Debug)]
pub struct Opened {
    /// The file, positioned at its start.
    pub file: File,
    /// Its size in bytes, when opened.
    pub size: u64,
}

impl BootDir {
    /// The directory at `root`, which must exist.
    pub fn new(root: &Path) -> io::Result<Self> {
        let root = root.canonicalize()?;
        if !root.is_dir() {
            return Err(io::Error::new(
                io::ErrorKind::NotADirectory,
                format!("{} is not a directory", root.display()),
            ));
        }
        Ok(Self { root })
    }

    /// The directory, resolved.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The clean relative path a client's name stands for.
    pub fn clean(name: &str) -> Result<PathBuf, TreeError> {
        if name.is_empty() || name.contains('\0') {
            return Err(TreeError::BadName);
        }
        let name = name.replace('\\', "/");
        let mut out = PathBuf::new();
        for c in Path::new(&name).components() {
            match c {
                Component::Normal(part) => out.push(part),
                Component::RootDir | Component::CurDir => {}
                Component::ParentDir | Component::Prefix(_) => return Err(TreeError::BadName),
            }
        }
        if out.as_os_str().is_empty() {
            return Err(TreeError::BadName);
        }
        Ok(out)
    }

    /// Opens the file a client's name stands for, read only.
    pub fn open(&self, name: &str) -> Result<Opened, TreeError> {
        let rel = Self::clean(name)?;
        let real = match self.root.join(&rel).canonicalize() {
            Ok(p) => p,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(TreeError::NotFound),
            Err(e) => return Err(TreeError::Io(e)),
        };
        if !real.starts_with(&self.root) {
            return Err(TreeError::Outside);
        }
        let file = File::open(&real).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => TreeError::NotFound,
            _ => TreeError::Io(e),
        })?;
        let meta = file.metadata().map_err(TreeError::Io)?;
        if !meta.is_file() {
            return Err(TreeError::NotFound);
        }
        Ok(Opened {
            file,
            size: meta.len(),
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn names_are_cleaned_and_escapes_refused() {
        let ok = |n: &str| BootDir::clean(n).unwrap();
        assert_eq!(ok("pxelinux.0"), PathBuf::from("pxelinux.0"));
        assert_eq!(
            ok("/pxelinux.cfg/01-aa"),
            PathBuf::from("pxelinux.cfg/01-aa")
        );
        assert_eq!(
            ok("\\EFI\\boot\\grubx64.efi"),
            PathBuf::from("EFI/boot/grubx64.efi")
        );
        assert_eq!(ok("a//./b"), PathBuf::from("a/b"));
        for bad in [
            "",
            "/",
            ".",
            "../etc/passwd",
            "a/../../b",
            "a/..",
            "x\0y",
            "..\\x",
        ] {
            assert!(
                matches!(BootDir::clean(bad), Err(TreeError::BadName)),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn files_inside_are_served_and_nothing_outside() {
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("secret"), b"no").unwrap();
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("images")).unwrap();
        std::fs::write(dir.path().join("images/vmlinuz"), b"kernel").unwrap();
        std::os::unix::fs::symlink("images/vmlinuz", dir.path().join("linux")).unwrap();
        std::os::unix::fs::symlink(outside.path().join("secret"), dir.path().join("leak")).unwrap();
        std::os::unix::fs::symlink(outside.path(), dir.path().join("out")).unwrap();
        let tree = BootDir::new(dir.path()).unwrap();
        assert_eq!(tree.open("/images/vmlinuz").unwrap().size, 6);
        assert_eq!(
            tree.open("linux").unwrap().size,
            6,
            "a link inside the tree is fine"
        );
        assert!(matches!(tree.open("leak"), Err(TreeError::Outside)));
        assert!(matches!(tree.open("out/secret"), Err(TreeError::Outside)));
        assert!(
            matches!(tree.open("images"), Err(TreeError::NotFound)),
            "a directory"
        );
        assert!(matches!(tree.open("nope"), Err(TreeError::NotFound)));
        assert!(matches!(tree.open("../secret"), Err(TreeError::BadName)));
        assert!(BootDir::new(&dir.path().join("images/vmlinuz")).is_err());
    }
}
