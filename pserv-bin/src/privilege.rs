//! `--user NAME`: pserv started as root binds every socket (ports 53, 67, 69, 514, an
//! interface with SO_BINDTODEVICE), then runs as NAME with no capability at all. Nothing it
//! does after binding needs one: TFTP transfers and DNS forwarding open unprivileged ephemeral
//! sockets, the lease journal is written in a state directory given to NAME first, and the
//! one privileged call on the answer path (an ARP entry for a unicast reply to a client
//! without an address, `CAP_NET_ADMIN`) falls back to a broadcast, as RFC 2131 allows.
//!
//! glibc changes the ids of every thread of the process (the runtime's threads exist already),
//! and the kernel clears every capability set when no uid is 0 any more; both are checked on
//! every thread before pserv says it is ready.

use std::path::Path;

use anyhow::{Context, bail};
use nix::unistd::{Gid, Uid, User, setgroups, setresgid, setresuid};

/// The user `--user` names, looked up before anything is bound or served, so a wrong name or
/// a start without root fails at once.
#[derive(Debug)]
pub(crate) struct Target {
    name: String,
    uid: Uid,
    gid: Gid,
}

/// Checks that `name` can be switched to: pserv runs as root, and `name` is a user other
/// than root.
pub(crate) fn target(name: &str) -> anyhow::Result<Target> {
    if !nix::unistd::geteuid().is_root() {
        bail!("--user {name}: pserv is not running as root, so it has nothing to drop");
    }
    let user = User::from_name(name)
        .with_context(|| format!("--user {name}: looking the user up"))?
        .with_context(|| format!("--user {name}: no such user"))?;
    if user.uid.is_root() {
        bail!("--user {name}: that is root");
    }
    Ok(Target {
        name: name.to_owned(),
        uid: user.uid,
        gid: user.gid,
    })
}

/// Switches the whole process to the target user (its uid, its primary group only), after
/// giving it `state_dir` (when there is one) and the journal's files in it.
pub(crate) fn drop_to(t: &Target, state_dir: Option<&Path>) -> anyhow::Result<()> {
    if let Some(dir) = state_dir {
        give(dir, t.uid, t.gid)?;
    }
    setgroups(&[t.gid]).context("setgroups")?;
    setresgid(t.gid, t.gid, t.gid).context("setresgid")?;
    setresuid(t.uid, t.uid, t.uid).context("setresuid")?;
    check_every_thread(t.uid, t.gid)?;
    tracing::info!(user = %t.name, uid = t.uid.as_raw(), gid = t.gid.as_raw(),
        "running as {}, with no capability", t.name);
    Ok(())
}

/// Gives `dir` and the regular files directly in it (the journal and its compaction file) to
/// the user. Never through a symbolic link, and never a file with other names (hard links):
/// the directory may have been the user's already, and this runs as root.
fn give(dir: &Path, uid: Uid, gid: Gid) -> anyhow::Result<()> {
    use std::os::unix::fs::{MetadataExt, lchown};
    let meta = std::fs::symlink_metadata(dir).with_context(|| format!("{}", dir.display()))?;
    if !meta.is_dir() {
        bail!("{}: not a directory", dir.display());
    }
    let (uid, gid) = (Some(uid.as_raw()), Some(gid.as_raw()));
    lchown(dir, uid, gid).with_context(|| format!("chown {}", dir.display()))?;
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let path = entry?.path();
        let meta = std::fs::symlink_metadata(&path)?;
        if meta.is_file() && meta.nlink() == 1 {
            lchown(&path, uid, gid).with_context(|| format!("chown {}", path.display()))?;
        } else {
            tracing::warn!(path = %path.display(), "--user: not a plain file, left as it is");
        }
    }
    Ok(())
}

/// The ids on one line (`Uid:`, `Gid:`) and the capability sets of one task's `/proc` status.
fn parse_status(status: &str, ids: &str) -> (Vec<u32>, Vec<(String, u64)>) {
    let mut found = Vec::new();
    let mut caps = Vec::new();
    for line in status.lines() {
        if let Some(rest) = line.strip_prefix(ids) {
            found = rest
                .split_whitespace()
                .filter_map(|u| u.parse().ok())
                .collect();
        } else if let Some((key, value)) = line.split_once(':')
            && key.starts_with("Cap")
            && key != "CapBnd"
        {
            caps.push((
                key.to_owned(),
                u64::from_str_radix(value.trim(), 16).unwrap_or(u64::MAX),
            ));
        }
    }
    (found, caps)
}

/// Every thread runs as `uid` and `gid` and holds no capability it could use (permitted,
/// effective, ambient; the inheritable set, which the kernel keeps across the switch, only
/// matters to a program pserv would execute, and it executes none).
fn check_every_thread(uid: Uid, gid: Gid) -> anyhow::Result<()> {
    for task in std::fs::read_dir("/proc/self/task").context("reading /proc/self/task")? {
        let path = task?.path().join("status");
        let Ok(status) = std::fs::read_to_string(&path) else {
            continue; // a thread that just ended
        };
        for (line, want) in [("Uid:", uid.as_raw()), ("Gid:", gid.as_raw())] {
            let (ids, _) = parse_status(&status, line);
            if ids.is_empty() || ids.iter().any(|&i| i != want) {
                bail!("{}: still {line} {ids:?}", path.display());
            }
        }
        let (_, caps) = parse_status(&status, "Uid:");
        if let Some((set, value)) = caps.iter().find(|(k, v)| k != "CapInh" && *v != 0) {
            bail!("{}: {set} is {value:#x}, not empty", path.display());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::parse_status;

    #[test]
    fn reads_ids_and_capability_sets() {
        let status = "Name:\tpserv\nUid:\t1000\t1000\t1000\t1000\nGid:\t1000\t1000\t1000\t1000\n\
                      CapInh:\t0000000000000000\nCapPrm:\t0000000000000400\n\
                      CapEff:\t0000000000000000\nCapBnd:\t000001ffffffffff\nCapAmb:\t0000000000000000\n";
        let (uids, caps) = parse_status(status, "Uid:");
        assert_eq!(uids, [1000, 1000, 1000, 1000]);
        assert_eq!(
            caps,
            [
                ("CapInh".to_owned(), 0),
                ("CapPrm".to_owned(), 0x400),
                ("CapEff".to_owned(), 0),
                ("CapAmb".to_owned(), 0),
            ]
        );
    }
}
