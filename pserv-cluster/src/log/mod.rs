//! The cluster's [`LeaseLog`]: lease changes committed to etcd, other instances' changes fed
//! back, and this instance's share of the clients.
//!
//! Three threads serve one [`ClusterLog`]:
//! - the **committer** takes every change queued since its last transaction (group commit, up
//!   to `max_txn_ops` addresses) and commits them in one etcd transaction that compares every
//!   address key's revision with the one the owner's decision was based on. If another
//!   instance changed one of them first, the transaction fails as a whole; the committer reads
//!   which keys moved (a read-only transaction on the same keys), refuses the changes on
//!   those, and commits the rest again. A transaction whose outcome is unknown (etcd
//!   unreachable) refuses its changes: no ACK leaves for a lease etcd may not hold.
//! - the **watcher** reads the cluster's keys once, then follows them with a watch from the
//!   revision it read at: other instances' leases flow to the owner, members come and go. A
//!   watch that breaks resumes from the next revision; one whose revisions were compacted
//!   away reads everything again and passes on the difference.
//! - the **heartbeat** keeps this instance's etcd lease (and so its `members/` key) alive. It
//!   decides health: an instance whose heartbeat has not succeeded for two thirds of the TTL,
//!   or whose watch is down, is cut off. It then takes no dynamic lease and answers every
//!   reserved node (its share moves to the survivors once its key expires).
//!
//! Revisions: the owner's view of each address carries the revision of the key it last
//! applied (from the watch, or from its own commits). [`ClusterLog::append`] captures that
//! revision for the compare, on the owner's thread, after the owner applied everything
//! [`LeaseLog::take_remote`] gave it: the compare holds only if nobody changed the address
//! since what the owner saw.
//!
//! One module per job: `config` the settings; `owner` the [`ClusterLog`] the DHCP owner
//! drives (its [`LeaseLog`] methods); `committer`, `watcher` and `heartbeat` the three
//! threads; `monitor` the read-only status view. This module holds what they share (the
//! state behind one mutex, the health decision) and [`join`], which starts them; it makes
//! no etcd request itself.
//!
//! [`LeaseLog`]: pserv_core::lease::LeaseLog
//! [`LeaseLog::take_remote`]: pserv_core::lease::LeaseLog::take_remote
//! [`ClusterLog::append`]: pserv_core::lease::LeaseLog::append

mod committer;
mod config;
mod heartbeat;
mod monitor;
mod owner;
mod watcher;

use std::collections::{BTreeSet, VecDeque};
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

use parking_lot::{Condvar, Mutex};
use pserv_core::journal::{JournalError, Seq};
use pserv_core::lease::{Change, Share};

use crate::etcd::{self, Client, KeyRevision};
use crate::record::{Keys, Record};
use crate::share;

pub use config::Config;
pub use monitor::{ClusterMonitor, Status};
pub use owner::ClusterLog;

use committer::{InFlight, committer};
use heartbeat::heartbeat;
use watcher::watcher;

/// A change to one address as the watcher (or a commit) saw it.
#[derive(Debug)]
struct Seen {
    ip: IpAddr,
    /// The store revision this is true as of.
    as_of: i64,
    /// Where the key stood then.
    mod_revision: KeyRevision,
    /// What to apply (none: nothing to apply, only the revision to remember).
    change: Option<Change>,
}

#[derive(Debug)]
struct Queued {
    seq: Seq,
    ip: IpAddr,
    change: Change,
    /// Where the owner saw the address's key stand.
    expected: KeyRevision,
}

#[derive(Debug, Default)]
struct State {
    queue: VecDeque<Queued>,
    refused: Vec<Seq>,
    seen: Vec<Seen>,
    members: BTreeSet<String>,
    /// The watcher has read the whole prefix once.
    loaded: bool,
    watching: bool,
    heartbeat_ok: Option<Instant>,
    share: Share,
    last_error: Option<String>,
    closing: bool,
    failed: Option<JournalError>,
    /// The heartbeat's etcd lease, while it holds.
    lease_id: Option<i64>,
    /// The last position appended.
    appended: Seq,
    /// Addresses whose change was refused, with that change: their truth is read back from
    /// etcd and given to the owner (whose set still holds the refused change).
    recheck: Vec<(IpAddr, Change)>,
    inflight: InFlight,
}

/// Counters of a cluster instance.
#[derive(Debug, Default)]
pub struct Stats {
    /// Transactions sent.
    pub txns: AtomicU64,
    /// Transactions whose compares failed (another instance changed an address first).
    pub txn_conflicts: AtomicU64,
    /// Transactions that failed to reach etcd.
    pub txn_errors: AtomicU64,
    /// Changes committed.
    pub committed: AtomicU64,
    /// Changes refused (conflict or unknown outcome).
    pub refused: AtomicU64,
    /// Watch events received.
    pub watch_events: AtomicU64,
    /// Full reads of the prefix (start, compaction).
    pub loads: AtomicU64,
    /// Records that could not be decoded (skipped).
    pub bad_records: AtomicU64,
    /// Heartbeats that failed.
    pub heartbeat_failures: AtomicU64,
}

struct Shared {
    config: Config,
    keys: Keys,
    client: Client,
    state: Mutex<State>,
    /// Wakes the committer.
    work: Condvar,
    /// Wakes waiters on `settled`.
    settled_cv: Condvar,
    settled: AtomicU64,
    stats: Stats,
    shutdown: AtomicBool,
}

/// Joins the cluster: returns at once (the threads reach etcd in the background), with no
/// share and no allocation until the cluster's leases are read and the heartbeat holds.
pub fn join(config: Config) -> std::io::Result<(ClusterLog, ClusterMonitor)> {
    let shared = new_shared(config);
    let mut committers = Vec::new();
    for i in 0..shared.config.pipeline.max(1) {
        let s = shared.clone();
        committers.push(
            std::thread::Builder::new()
                .name(format!("pserv-etcd-txn{i}"))
                .spawn(move || committer(&s))?,
        );
    }
    {
        let s = shared.clone();
        std::thread::Builder::new()
            .name("pserv-etcd-watch".into())
            .spawn(move || watcher(&s))?;
    }
    {
        let s = shared.clone();
        std::thread::Builder::new()
            .name("pserv-etcd-beat".into())
            .spawn(move || heartbeat(&s))?;
    }
    Ok((
        ClusterLog::new(shared.clone(), committers),
        ClusterMonitor { shared },
    ))
}

fn new_shared(config: Config) -> Arc<Shared> {
    Arc::new(Shared {
        keys: Keys::new(&config.cluster),
        client: Client::new(config.endpoints.clone(), config.request_timeout),
        config,
        state: Mutex::new(State {
            share: Share::CUT_OFF,
            ..State::default()
        }),
        work: Condvar::new(),
        settled_cv: Condvar::new(),
        settled: AtomicU64::new(0),
        stats: Stats::default(),
        shutdown: AtomicBool::new(false),
    })
}

impl Shared {
    fn error(&self, e: &etcd::Error) {
        tracing::warn!(error = %e, instance = %self.config.instance, "etcd");
        self.state.lock().last_error = Some(e.to_string());
    }

    /// Recomputes the share from health and membership.
    fn recompute(&self, s: &mut State) {
        let fresh = self.config.ttl.mul_f64(2.0 / 3.0);
        let healthy = s.loaded
            && s.watching
            && s.heartbeat_ok.is_some_and(|t| t.elapsed() < fresh)
            && s.failed.is_none();
        let share = if healthy {
            let me = &self.config.instance;
            let mut all: Vec<&str> = s.members.iter().map(String::as_str).collect();
            if !s.members.contains(me) {
                all.push(me);
                all.sort_unstable();
            }
            let index = all.iter().position(|m| m == me).unwrap_or(0);
            Share {
                buckets: share::buckets(me, s.members.iter().map(String::as_str)),
                allocate: true,
                all_reserved: false,
                slot: (index as u32, all.len() as u32),
                busy: false,
            }
        } else {
            Share::CUT_OFF
        };
        if share.allocate != s.share.allocate {
            if share.allocate {
                tracing::info!(instance = %self.config.instance, members = ?s.members, "cluster: serving dynamic leases");
            } else {
                tracing::warn!(instance = %self.config.instance, "cluster: cut off from etcd; no dynamic leases until it is back");
            }
        }
        s.share = share;
    }
}

fn decode(shared: &Shared, bytes: &[u8]) -> Option<Record> {
    match Record::decode(bytes) {
        Ok(r) => Some(r),
        Err(e) => {
            shared.stats.bad_records.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(error = %e, "undecodable lease record in etcd: skipped");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    /// A lease of `ip` to the client with MAC 02:00:00:00:00:`mac`.
    pub(super) fn bound(ip: [u8; 4], mac: u8) -> Change {
        Change::Bound {
            mac: pserv_core::MacAddr([2, 0, 0, 0, 0, mac]),
            client_id: None,
            ip: Ipv4Addr::from(ip),
            start: 1,
            expires: 100,
            hostname: None,
        }
    }
}
