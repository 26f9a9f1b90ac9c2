//! The owner's side of the cluster log: [`ClusterLog`], the [`LeaseLog`] the DHCP service
//! drives on its own thread. It queues each change with the revision the owner's view has for
//! the address (the compare the committer will send), hands back refusals and other
//! instances' changes, and reports the share. It never talks to etcd itself, except to
//! revoke the heartbeat's lease on a clean close.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use pserv_core::journal::{JournalError, Seq};
use pserv_core::lease::{Change, LeaseLog, LogError, Share};

use super::{Queued, Shared};
use crate::etcd::KeyRevision;
use crate::record::address;

/// The owner's handle (see the module docs).
pub struct ClusterLog {
    shared: Arc<Shared>,
    /// Per address: (as of revision, mod revision) of what the owner has applied.
    seen: HashMap<IpAddr, (i64, KeyRevision)>,
    last: Seq,
    committers: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for ClusterLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterLog")
            .field("instance", &self.shared.config.instance)
            .finish_non_exhaustive()
    }
}

impl ClusterLog {
    /// The handle over `shared`, which `committers` serve.
    pub(super) fn new(shared: Arc<Shared>, committers: Vec<JoinHandle<()>>) -> Self {
        Self {
            shared,
            seen: HashMap::new(),
            last: 0,
            committers,
        }
    }
}

impl LeaseLog for ClusterLog {
    fn append(&mut self, change: &Change) -> Result<Seq, LogError> {
        let ip = address(change);
        let expected = self.seen.get(&ip).map_or(KeyRevision::Absent, |s| s.1);
        let mut s = self.shared.state.lock();
        if let Some(e) = &s.failed {
            return Err(e.clone());
        }
        if s.closing {
            return Err(JournalError("the cluster log is closing".into()));
        }
        self.last += 1;
        s.appended = self.last;
        s.queue.push_back(Queued {
            seq: self.last,
            ip,
            change: change.clone(),
            expected,
        });
        drop(s);
        self.shared.work.notify_one();
        Ok(self.last)
    }

    fn settled(&self) -> Seq {
        self.shared.settled.load(Ordering::Acquire)
    }

    fn wait_settled_for(&mut self, seq: Seq, timeout: Duration) -> Result<bool, LogError> {
        let deadline = Instant::now() + timeout;
        let mut s = self.shared.state.lock();
        while self.settled() < seq {
            if self
                .shared
                .settled_cv
                .wait_until(&mut s, deadline)
                .timed_out()
            {
                break;
            }
        }
        Ok(self.settled() >= seq)
    }

    fn take_refused(&mut self, out: &mut Vec<Seq>) {
        out.append(&mut self.shared.state.lock().refused);
    }

    fn take_remote(&mut self, out: &mut Vec<Change>) {
        let seen = std::mem::take(&mut self.shared.state.lock().seen);
        for s in seen {
            let known = self.seen.get(&s.ip).copied();
            // Old news: the owner already knows the address as of this revision or later
            // (its own commit, usually).
            if known.is_some_and(|(as_of, _)| as_of >= s.as_of) {
                continue;
            }
            self.seen.insert(s.ip, (s.as_of, s.mod_revision));
            if let Some(c) = s.change {
                out.push(c);
            }
        }
    }

    fn share(&self) -> Share {
        let s = self.shared.state.lock();
        let mut share = s.share;
        // More waiting than a few rounds of transactions: take no new client until it drains
        // (what is queued would be answered later than clients wait).
        let c = &self.shared.config;
        share.busy = s.queue.len() > 2 * c.max_txn_ops * c.pipeline.max(1);
        share
    }

    fn close(mut self: Box<Self>) -> Result<(), LogError> {
        {
            let mut s = self.shared.state.lock();
            s.closing = true;
        }
        self.shared.work.notify_all();
        for h in self.committers.drain(..) {
            let _ = h.join();
        }
        self.shared.shutdown.store(true, Ordering::Release);
        // A clean stop hands this instance's share over at once.
        let lease = self.shared.state.lock().lease_id.take();
        if let Some(id) = lease {
            let _ = self.shared.client.revoke(id);
        }
        let failed = self.shared.state.lock().failed.clone();
        failed.map_or(Ok(()), Err)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::log::tests::bound;
    use crate::log::{Config, Seen, new_shared};

    #[test]
    fn the_owner_applies_only_news() {
        // No threads: the test plays the watcher and the committer.
        let mut log = ClusterLog {
            shared: new_shared(Config::new(vec!["http://127.0.0.1:9".into()], "t", "a")),
            seen: HashMap::new(),
            last: 0,
            committers: Vec::new(),
        };
        let ip = IpAddr::from([10, 0, 0, 1]);
        {
            let mut s = log.shared.state.lock();
            s.seen.push(Seen {
                ip,
                as_of: 5,
                mod_revision: KeyRevision::At(5),
                change: Some(bound([10, 0, 0, 1], 1)),
            });
            // Older than what follows: skipped.
            s.seen.push(Seen {
                ip,
                as_of: 3,
                mod_revision: KeyRevision::At(3),
                change: Some(bound([10, 0, 0, 1], 2)),
            });
        }
        let mut out = Vec::new();
        log.take_remote(&mut out);
        assert_eq!(out, vec![bound([10, 0, 0, 1], 1)]);
        assert_eq!(log.seen.get(&ip), Some(&(5, KeyRevision::At(5))));
        // The next change on it compares with revision 5.
        log.append(&bound([10, 0, 0, 1], 3)).unwrap();
        assert_eq!(
            log.shared.state.lock().queue.back().map(|q| q.expected),
            Some(KeyRevision::At(5))
        );
        // Cut off from the start: no dynamic leases, every reserved node answered.
        let share = log.share();
        assert!(!share.allocate && share.all_reserved);
    }
}
