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
use nix::unistd::{Gid, Uid, User, chown, setgroups, setresgid, setresuid};

/// Switches the whole process to `name` (its uid, its primary group only), after giving it
/// `state_dir` and the files in it.
pub(crate) fn drop_to(name: &str, state_dir: &Path) -> anyhow::Result<()> {
    if !nix::unistd::geteuid().is_root() {
        bail!("--user {name}: pserv is not running as root, so it has nothing to drop");
    }
    let user = User::from_name(name)
        .with_context(|| format!("--user {name}: looking the user up"))?
        .with_context(|| format!("--user {name}: no such user"))?;
    if user.uid.is_root() {
        bail!("--user {name}: that is root");
    }
    give(state_dir, user.uid, user.gid)?;
    setgroups(&[user.gid]).context("setgroups")?;
    setresgid(user.gid, user.gid, user.gid).context("setresgid")?;
    setresuid(user.uid, user.uid, user.uid).context("setresuid")?;
    check_every_thread(user.uid)?;
    tracing::info!(user = name, uid = user.uid.as_raw(), gid = user.gid.as_raw(),
        state_dir = %state_dir.display(), "running as {name}, with no capability");
    Ok(())
}

/// Gives `dir` and what is directly in it (the journal and its compaction files) to the user.
fn give(dir: &Path, uid: Uid, gid: Gid) -> anyhow::Result<()> {
    chown(dir, Some(uid), Some(gid)).with_context(|| format!("chown {}", dir.display()))?;
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let path = entry?.path();
        chown(&path, Some(uid), Some(gid)).with_context(|| format!("chown {}", path.display()))?;
    }
    Ok(())
}

/// The `Uid:` line's ids and the capability sets of one task's `/proc` status.
fn parse_status(status: &str) -> (Vec<u32>, Vec<(String, u64)>) {
    let mut uids = Vec::new();
    let mut caps = Vec::new();
    for line in status.lines() {
        if let Some(rest) = line.strip_prefix("Uid:") {
            uids = rest
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
    (uids, caps)
}

/// Every thread runs as `uid` and holds no capability (inheritable, permitted, effective,
/// ambient).
fn check_every_thread(uid: Uid) -> anyhow::Result<()> {
    for task in std::fs::read_dir("/proc/self/task").context("reading /proc/self/task")? {
        let path = task?.path().join("status");
        let Ok(status) = std::fs::read_to_string(&path) else {
            continue; // a thread that just ended
        };
        let (uids, caps) = parse_status(&status);
        if uids.is_empty() || uids.iter().any(|&u| u != uid.as_raw()) {
            bail!("{}: still running as {uids:?}", path.display());
        }
        if let Some((set, value)) = caps.iter().find(|(_, v)| *v != 0) {
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
        let (uids, caps) = parse_status(status);
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
