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

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};
use pserv_core::journal::{JournalError, Seq};
use pserv_core::lease::{Change, LeaseLog, LogError, Share};

use crate::etcd::{self, Client, Event, Op, WatchMessage};
use crate::record::{KeyKind, Keys, Record, address};
use crate::share;

/// How a cluster instance is set up.
#[derive(Debug, Clone)]
pub struct Config {
    /// etcd client URLs (`http://host:2379`).
    pub endpoints: Vec<String>,
    /// The cluster's name: instances with the same name share leases.
    pub cluster: String,
    /// This instance's name, unique in the cluster.
    pub instance: String,
    /// The heartbeat's TTL: an instance silent this long is taken for dead.
    pub ttl: Duration,
    /// Each etcd request's time limit.
    pub request_timeout: Duration,
    /// Addresses per transaction at most (etcd's `--max-txn-ops`, 128 by default).
    pub max_txn_ops: usize,
    /// Transactions in flight at once (on distinct addresses): etcd puts concurrent ones in
    /// one raft entry and one sync.
    pub pipeline: usize,
}

impl Config {
    /// A configuration with the defaults: a 3 s heartbeat, 2 s requests, 128 operations per
    /// transaction, 4 transactions in flight.
    pub fn new(endpoints: Vec<String>, cluster: &str, instance: &str) -> Self {
        Self {
            endpoints,
            cluster: cluster.to_owned(),
            instance: instance.to_owned(),
            ttl: Duration::from_secs(3),
            request_timeout: Duration::from_secs(2),
            max_txn_ops: 128,
            pipeline: 4,
        }
    }
}

/// A change to one address as the watcher (or a commit) saw it.
#[derive(Debug)]
struct Seen {
    ip: Ipv4Addr,
    /// The store revision this is true as of.
    as_of: i64,
    /// The key's mod revision then (0: absent).
    mod_revision: i64,
    /// What to apply (none: nothing to apply, only the revision to remember).
    change: Option<Change>,
}

#[derive(Debug)]
struct Queued {
    seq: Seq,
    ip: Ipv4Addr,
    change: Change,
    /// The mod revision the owner saw for the address.
    expected: i64,
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
    recheck: Vec<(Ipv4Addr, Change)>,
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

/// The owner's handle (see the module docs).
pub struct ClusterLog {
    shared: Arc<Shared>,
    /// Per address: (as of revision, mod revision) of what the owner has applied.
    seen: HashMap<Ipv4Addr, (i64, i64)>,
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

/// A read-only view of a cluster instance, for status and metrics.
#[derive(Clone)]
pub struct ClusterMonitor {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for ClusterMonitor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterMonitor").finish_non_exhaustive()
    }
}

/// What [`ClusterMonitor::status`] reports.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Status {
    /// The cluster's name.
    pub cluster: String,
    /// This instance.
    pub instance: String,
    /// Whether it reaches etcd (heartbeat and watch): it hands out dynamic leases only then.
    pub healthy: bool,
    /// Whether it has read the cluster's leases.
    pub loaded: bool,
    /// Live members as the watch sees them.
    pub members: Vec<String>,
    /// Client buckets (of 256) this instance answers.
    pub buckets: u32,
    /// The last error talking to etcd.
    pub last_error: Option<String>,
}

impl ClusterMonitor {
    /// The instance's state now.
    pub fn status(&self) -> Status {
        let s = self.shared.state.lock();
        Status {
            cluster: self.shared.config.cluster.clone(),
            instance: self.shared.config.instance.clone(),
            healthy: s.share.allocate,
            loaded: s.loaded,
            members: s.members.iter().cloned().collect(),
            buckets: s.share.count(),
            last_error: s.last_error.clone(),
        }
    }

    /// Counters.
    pub fn stats(&self) -> &Stats {
        &self.shared.stats
    }
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
        ClusterLog {
            shared: shared.clone(),
            seen: HashMap::new(),
            last: 0,
            committers,
        },
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

impl LeaseLog for ClusterLog {
    fn append(&mut self, change: &Change) -> Result<Seq, LogError> {
        let ip = address(change);
        let expected = self.seen.get(&ip).map_or(0, |s| s.1);
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

/// One address's changes in a transaction.
struct Group {
    ip: Ipv4Addr,
    /// The compare: the key's mod revision the first change was based on.
    expected: i64,
    /// The change written (the last one for the address).
    change: Change,
    seqs: Vec<Seq>,
}

/// Revisions the committers produced for one address: a change based on one of them (the
/// owner appended it before it saw that commit's result) is based on the latest.
#[derive(Debug, Default)]
struct Produced {
    from: Vec<i64>,
    latest: i64,
}

/// The committers' shared bookkeeping (inside [`State`]).
#[derive(Debug, Default)]
struct InFlight {
    /// Addresses in a transaction now: their later changes wait, so one address's changes
    /// commit in order.
    ips: std::collections::HashSet<Ipv4Addr>,
    /// Positions in a transaction now.
    seqs: BTreeSet<Seq>,
    produced: HashMap<Ipv4Addr, Produced>,
}

impl InFlight {
    fn based_on(&self, ip: Ipv4Addr, expected: i64) -> i64 {
        match self.produced.get(&ip) {
            Some(p) if p.from.contains(&expected) || p.latest == expected => p.latest,
            _ => expected,
        }
    }

    fn produced(&mut self, ip: Ipv4Addr, based_on: i64, now: i64) {
        let p = self.produced.entry(ip).or_default();
        let prev = p.latest;
        p.from.push(based_on);
        p.from.push(prev);
        if p.from.len() > 8 {
            let cut = p.from.len() - 8;
            p.from.drain(..cut);
        }
        p.latest = now;
    }
}

/// Takes the next batch off the queue: the oldest changes whose addresses are not in a
/// transaction now, up to `max` addresses, grouped by address. Empty: nothing to take.
fn take_batch(s: &mut State, max: usize) -> Vec<Group> {
    let mut groups: Vec<Group> = Vec::new();
    let mut at: HashMap<Ipv4Addr, usize> = HashMap::new();
    let mut rest = VecDeque::with_capacity(s.queue.len());
    while let Some(q) = s.queue.pop_front() {
        if let Some(&i) = at.get(&q.ip) {
            groups[i].change = q.change;
            groups[i].seqs.push(q.seq);
            continue;
        }
        if s.inflight.ips.contains(&q.ip) || groups.len() >= max {
            rest.push_back(q);
            if groups.len() >= max {
                rest.extend(s.queue.drain(..));
            }
            continue;
        }
        at.insert(q.ip, groups.len());
        let expected = s.inflight.based_on(q.ip, q.expected);
        groups.push(Group {
            ip: q.ip,
            expected,
            change: q.change,
            seqs: vec![q.seq],
        });
    }
    s.queue = rest;
    for g in &groups {
        s.inflight.ips.insert(g.ip);
        s.inflight.seqs.extend(g.seqs.iter().copied());
    }
    groups
}

/// One of the committer threads (see the module docs).
fn committer(shared: &Shared) {
    loop {
        let groups = {
            let mut s = shared.state.lock();
            loop {
                if s.queue.is_empty() && s.closing {
                    return;
                }
                let g = take_batch(&mut s, shared.config.max_txn_ops);
                if !g.is_empty() {
                    break g;
                }
                shared.work.wait(&mut s);
            }
        };
        let taken: Vec<(Ipv4Addr, Vec<Seq>)> =
            groups.iter().map(|g| (g.ip, g.seqs.clone())).collect();
        let (refused, produced) = commit(shared, groups);
        let mut s = shared.state.lock();
        for (ip, seqs) in taken {
            s.inflight.ips.remove(&ip);
            for q in seqs {
                s.inflight.seqs.remove(&q);
            }
        }
        for (ip, based_on, now, as_of) in produced {
            s.inflight.produced(ip, based_on, now);
            s.seen.push(Seen {
                ip,
                as_of,
                mod_revision: now,
                change: None,
            });
        }
        s.refused.extend(refused);
        s.refused.sort_unstable();
        // Settled: everything before the oldest change still queued or in a transaction.
        let oldest = [
            s.queue.front().map(|q| q.seq),
            s.inflight.seqs.first().copied(),
        ]
        .into_iter()
        .flatten()
        .min();
        let settled = oldest.map_or(s.appended, |o| o - 1);
        shared.settled.store(settled, Ordering::Release);
        drop(s);
        shared.settled_cv.notify_all();
        // Changes that waited for these addresses may go now.
        shared.work.notify_all();
        recheck(shared);
    }
}

/// Commits one batch: returns the refused positions, and per committed address (address,
/// based on, its mod revision now, as of revision).
#[allow(clippy::type_complexity)]
fn commit(shared: &Shared, groups: Vec<Group>) -> (Vec<Seq>, Vec<(Ipv4Addr, i64, i64, i64)>) {
    let mut recheck = Vec::new();
    let (refused, produced) = commit_groups(shared, groups, &mut recheck);
    if !recheck.is_empty() {
        shared.state.lock().recheck.extend(recheck);
    }
    (refused, produced)
}

/// See [`commit`]; refused addresses go to `rechecked`.
#[allow(clippy::type_complexity)]
fn commit_groups(
    shared: &Shared,
    mut groups: Vec<Group>,
    rechecked: &mut Vec<(Ipv4Addr, Change)>,
) -> (Vec<Seq>, Vec<(Ipv4Addr, i64, i64, i64)>) {
    let mut refused = Vec::new();
    let stats = &shared.stats;
    let keys = &shared.keys;
    let by = &shared.config.instance;
    let mut refuse = |g: Group, refused: &mut Vec<Seq>| {
        stats
            .refused
            .fetch_add(g.seqs.len() as u64, Ordering::Relaxed);
        refused.extend(g.seqs);
        rechecked.push((g.ip, g.change));
    };
    while !groups.is_empty() {
        let compares: Vec<(Vec<u8>, i64)> = groups
            .iter()
            .map(|g| (keys.lease(g.ip), g.expected))
            .collect();
        let success: Vec<Op> = groups
            .iter()
            .map(|g| match Record::of(&g.change, by) {
                Some(r) => Op::Put {
                    key: keys.lease(g.ip),
                    value: r.encode(),
                    lease: None,
                },
                None => Op::Delete {
                    key: keys.lease(g.ip),
                },
            })
            .collect();
        let failure: Vec<Op> = groups
            .iter()
            .map(|g| Op::Get {
                key: keys.lease(g.ip),
            })
            .collect();
        stats.txns.fetch_add(1, Ordering::Relaxed);
        // The reads that say which keys moved run only when a compare fails (a second,
        // read-only transaction): carrying them in every transaction's failure branch cost the
        // etcd leader a parse of as many operations again.
        let result = shared.client.txn(&compares, &success, &[]).and_then(|r| {
            if r.succeeded {
                Ok(r)
            } else {
                shared
                    .client
                    .txn(&[], &failure, &[])
                    .map(|read| etcd::TxnResult {
                        succeeded: false,
                        ..read
                    })
            }
        });
        match result {
            Ok(r) if r.succeeded => {
                let n: usize = groups.iter().map(|g| g.seqs.len()).sum();
                stats.committed.fetch_add(n as u64, Ordering::Relaxed);
                let produced = groups
                    .iter()
                    .map(|g| {
                        let released = matches!(g.change, Change::Released { .. });
                        let now = if released { 0 } else { r.revision };
                        (g.ip, g.expected, now, r.revision)
                    })
                    .collect();
                return (refused, produced);
            }
            Ok(r) => {
                stats.txn_conflicts.fetch_add(1, Ordering::Relaxed);
                let before = groups.len();
                let current = r
                    .gets
                    .iter()
                    .map(|k| k.as_ref().map_or(0, |k| k.mod_revision))
                    .chain(std::iter::repeat(-1));
                let mut keep = Vec::new();
                for (g, now) in groups.into_iter().zip(current) {
                    if now == g.expected {
                        keep.push(g);
                    } else {
                        tracing::debug!(ip = %g.ip, expected = g.expected, now, "address changed by another instance first: refused");
                        refuse(g, &mut refused);
                    }
                }
                if keep.len() == before {
                    // Nothing moved, yet the compares failed: refuse all rather than loop.
                    for g in keep {
                        refuse(g, &mut refused);
                    }
                    return (refused, Vec::new());
                }
                groups = keep;
            }
            Err(e) => {
                stats.txn_errors.fetch_add(1, Ordering::Relaxed);
                shared.error(&e);
                for g in groups {
                    refuse(g, &mut refused);
                }
                return (refused, Vec::new());
            }
        }
    }
    (refused, Vec::new())
}

/// Reads back the addresses whose changes were refused and gives the owner etcd's truth for
/// each (the record, or for an absent key the undoing of the refused change), newer than
/// anything it has seen for them. Failing reads stay queued for the next try.
fn recheck(shared: &Shared) {
    let todo = std::mem::take(&mut shared.state.lock().recheck);
    if todo.is_empty() {
        return;
    }
    let keys = &shared.keys;
    let now = unix_now();
    for chunk in todo.chunks(shared.config.max_txn_ops.max(1)) {
        let gets: Vec<Op> = chunk
            .iter()
            .map(|(ip, _)| Op::Get {
                key: keys.lease(*ip),
            })
            .collect();
        match shared.client.txn(&[], &gets, &[]) {
            Ok(r) => {
                let mut s = shared.state.lock();
                for ((ip, refused), kv) in chunk.iter().zip(r.gets.iter()) {
                    let (mod_revision, change) = match kv {
                        Some(kv) => (
                            kv.mod_revision,
                            decode(shared, &kv.value)
                                .filter(|rec| rec.live(now))
                                .map(|rec| rec.change(*ip))
                                .or_else(|| undo(refused)),
                        ),
                        None => (0, undo(refused)),
                    };
                    s.seen.push(Seen {
                        ip: *ip,
                        as_of: r.revision,
                        mod_revision,
                        change,
                    });
                }
            }
            Err(e) => {
                shared.error(&e);
                shared.state.lock().recheck.extend(chunk.iter().cloned());
                return;
            }
        }
    }
}

/// The change that takes a refused change's lease out of the owner's set (a refused release
/// needs nothing undone: the owner has already let the address go).
fn undo(refused: &Change) -> Option<Change> {
    match refused {
        Change::Bound {
            mac, client_id, ip, ..
        }
        | Change::Declined {
            mac, client_id, ip, ..
        } => Some(Change::Released {
            mac: *mac,
            client_id: client_id.clone(),
            ip: *ip,
        }),
        Change::Released { .. } => None,
    }
}

/// What the watcher knows of each key.
#[derive(Default)]
struct View {
    leases: HashMap<Ipv4Addr, (i64, Option<Record>)>,
}

fn watcher(shared: &Shared) {
    let keys = &shared.keys;
    let mut view = View::default();
    let mut next: Option<i64> = None;
    let backoff = Duration::from_millis(200);
    while !shared.shutdown.load(Ordering::Acquire) {
        let start = match next {
            Some(r) => r,
            None => match load(shared, &mut view) {
                Ok(rev) => rev + 1,
                Err(e) => {
                    shared.error(&e);
                    std::thread::sleep(backoff);
                    continue;
                }
            },
        };
        next = Some(start);
        let mut watch = match shared.client.watch(keys.prefix().as_bytes(), start) {
            Ok(w) => w,
            Err(e) => {
                shared.error(&e);
                set_watching(shared, false);
                std::thread::sleep(backoff);
                continue;
            }
        };
        set_watching(shared, true);
        loop {
            match watch.next_message() {
                Ok(Some(WatchMessage::Events { events, revision })) => {
                    if events.is_empty() {
                        next = Some(next.unwrap_or(0).max(revision + 1));
                        continue;
                    }
                    shared
                        .stats
                        .watch_events
                        .fetch_add(events.len() as u64, Ordering::Relaxed);
                    let mut last = 0;
                    let mut s = shared.state.lock();
                    let mut members_changed = false;
                    for e in events {
                        last = last.max(apply_event(
                            shared,
                            &mut s,
                            &mut view,
                            e,
                            &mut members_changed,
                        ));
                    }
                    if members_changed {
                        shared.recompute(&mut s);
                    }
                    drop(s);
                    next = Some(next.unwrap_or(0).max(last + 1));
                }
                Ok(Some(WatchMessage::Cancelled { compacted, reason })) => {
                    tracing::warn!(?compacted, %reason, "etcd watch cancelled; reading the leases again");
                    next = None;
                    break;
                }
                // The stream ended, or a read timed out (an idle watch is silent; reconnect
                // from the next revision to find out whether the member still answers).
                Ok(None) | Err(_) => break,
            }
        }
    }
}

fn set_watching(shared: &Shared, on: bool) {
    let mut s = shared.state.lock();
    if s.watching != on {
        s.watching = on;
        shared.recompute(&mut s);
    }
}

/// Applies one watch event to the view and passes it on; returns its revision.
fn apply_event(
    shared: &Shared,
    s: &mut State,
    view: &mut View,
    e: Event,
    members_changed: &mut bool,
) -> i64 {
    let keys = &shared.keys;
    match e {
        Event::Put { kv, .. } => match keys.parse(&kv.key) {
            Some(KeyKind::Lease(ip)) => {
                let rec = decode(shared, &kv.value);

                s.seen.push(Seen {
                    ip,
                    as_of: kv.mod_revision,
                    mod_revision: kv.mod_revision,
                    // This instance's own writes too: those it already has are older than
                    // what its commit told it, and skipped; one whose commit it could not
                    // confirm is news.
                    change: rec.as_ref().map(|r| r.change(ip)),
                });
                view.leases.insert(ip, (kv.mod_revision, rec));
                kv.mod_revision
            }
            Some(KeyKind::Member(name)) => {
                *members_changed |= s.members.insert(name);
                kv.mod_revision
            }
            None => kv.mod_revision,
        },
        Event::Delete {
            key,
            revision,
            prev,
        } => match keys.parse(&key) {
            Some(KeyKind::Lease(ip)) => {
                let rec = prev
                    .and_then(|p| decode(shared, &p.value))
                    .or_else(|| view.leases.get(&ip).and_then(|(_, r)| r.clone()));
                s.seen.push(Seen {
                    ip,
                    as_of: revision,
                    mod_revision: 0,
                    change: rec.map(|r| r.released(ip)),
                });
                view.leases.remove(&ip);
                revision
            }
            Some(KeyKind::Member(name)) => {
                *members_changed |= s.members.remove(&name);
                revision
            }
            None => revision,
        },
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

/// Reads every key of the cluster and passes on how it differs from `view`; returns the
/// revision read at.
fn load(shared: &Shared, view: &mut View) -> Result<i64, etcd::Error> {
    let keys = &shared.keys;
    let (kvs, rev) = shared.client.range_prefix(keys.prefix().as_bytes())?;
    shared.stats.loads.fetch_add(1, Ordering::Relaxed);
    let now = unix_now();
    let mut leases = HashMap::new();
    let mut members = BTreeSet::new();
    for kv in kvs {
        match keys.parse(&kv.key) {
            Some(KeyKind::Lease(ip)) => {
                leases.insert(ip, (kv.mod_revision, decode(shared, &kv.value)));
            }
            Some(KeyKind::Member(name)) => {
                members.insert(name);
            }
            None => {}
        }
    }
    let mut s = shared.state.lock();
    for (ip, (modrev, rec)) in &leases {
        if view.leases.get(ip).is_some_and(|(r, _)| r == modrev) {
            continue;
        }
        // Leases already over are remembered only for their revision.
        let live = rec.as_ref().filter(|r| r.live(now));
        s.seen.push(Seen {
            ip: *ip,
            as_of: rev,
            mod_revision: *modrev,
            change: live.map(|r| r.change(*ip)),
        });
    }
    for (ip, (_, rec)) in &view.leases {
        if !leases.contains_key(ip) {
            s.seen.push(Seen {
                ip: *ip,
                as_of: rev,
                mod_revision: 0,
                change: rec.as_ref().map(|r| r.released(*ip)),
            });
        }
    }
    view.leases = leases;
    s.members = members;
    s.loaded = true;
    shared.recompute(&mut s);
    Ok(rev)
}

fn heartbeat(shared: &Shared) {
    let ttl = shared.config.ttl;
    let every = (ttl / 3).max(Duration::from_millis(200));
    let secs = ttl.as_secs().max(1);
    let mut lease: Option<i64> = None;
    while !shared.shutdown.load(Ordering::Acquire) {
        let ok = match lease {
            None => shared.client.grant(secs).and_then(|id| {
                let key = shared.keys.member(&shared.config.instance);
                let value = serde_json::json!({"instance": shared.config.instance}).to_string();
                shared
                    .client
                    .txn(
                        &[],
                        &[Op::Put {
                            key,
                            value: value.into_bytes(),
                            lease: Some(id),
                        }],
                        &[],
                    )
                    .map(|_| {
                        lease = Some(id);
                    })
            }),
            Some(id) => shared.client.keep_alive(id).map(|left| {
                if left <= 0 {
                    // Expired while this instance was away: join again at once.
                    tracing::warn!(instance = %shared.config.instance, "cluster heartbeat lease expired; joining again");
                    lease = None;
                }
            }),
        };
        let rejoin = ok.is_ok() && lease.is_none();
        let mut s = shared.state.lock();
        s.lease_id = lease;
        match ok {
            Ok(()) if lease.is_some() => {
                s.heartbeat_ok = Some(Instant::now());
                if !s.recheck.is_empty() {
                    drop(s);
                    // Refusals left over from a time etcd could not be read.
                    recheck(shared);
                    s = shared.state.lock();
                }
            }
            Ok(()) => {}
            Err(e) => {
                shared
                    .stats
                    .heartbeat_failures
                    .fetch_add(1, Ordering::Relaxed);
                drop(s);
                shared.error(&e);
                s = shared.state.lock();
            }
        }
        shared.recompute(&mut s);
        drop(s);
        if !rejoin {
            let deadline = Instant::now() + every;
            while Instant::now() < deadline && !shared.shutdown.load(Ordering::Acquire) {
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn bound(ip: [u8; 4], mac: u8) -> Change {
        Change::Bound {
            mac: pserv_core::MacAddr([2, 0, 0, 0, 0, mac]),
            client_id: None,
            ip: Ipv4Addr::from(ip),
            start: 1,
            expires: 100,
            hostname: None,
        }
    }

    fn queue(s: &mut State, seq: Seq, change: Change, expected: i64) {
        s.queue.push_back(Queued {
            seq,
            ip: address(&change),
            change,
            expected,
        });
        s.appended = seq;
    }

    #[test]
    fn batches_group_by_address_and_wait_for_addresses_in_flight() {
        let mut s = State::default();
        queue(&mut s, 1, bound([10, 0, 0, 1], 1), 0);
        queue(&mut s, 2, bound([10, 0, 0, 2], 2), 5);
        queue(&mut s, 3, bound([10, 0, 0, 1], 1), 0);
        let g = take_batch(&mut s, 128);
        assert_eq!(g.len(), 2, "two addresses");
        assert_eq!(
            g[0].seqs,
            vec![1, 3],
            "one address's changes share its group"
        );
        assert_eq!(g[1].expected, 5);
        assert!(s.queue.is_empty());
        // While 10.0.0.1 is in flight, its next change waits; others go.
        queue(&mut s, 4, bound([10, 0, 0, 1], 1), 0);
        queue(&mut s, 5, bound([10, 0, 0, 3], 3), 0);
        s.inflight.ips.remove(&Ipv4Addr::new(10, 0, 0, 2));
        let g = take_batch(&mut s, 128);
        assert_eq!(
            g.iter().map(|g| g.seqs.clone()).collect::<Vec<_>>(),
            vec![vec![5]]
        );
        assert_eq!(s.queue.iter().map(|q| q.seq).collect::<Vec<_>>(), vec![4]);
        // At most `max` addresses per batch, in order.
        let mut s = State::default();
        for i in 1..=5u8 {
            queue(&mut s, Seq::from(i), bound([10, 0, 1, i], i), 0);
        }
        let g = take_batch(&mut s, 2);
        assert_eq!(g.iter().map(|g| g.seqs[0]).collect::<Vec<_>>(), vec![1, 2]);
        assert_eq!(
            s.queue.iter().map(|q| q.seq).collect::<Vec<_>>(),
            vec![3, 4, 5]
        );
    }

    #[test]
    fn a_change_based_on_a_revision_this_instance_produced_compares_with_the_latest() {
        let ip = Ipv4Addr::new(10, 0, 0, 1);
        let mut f = InFlight::default();
        assert_eq!(f.based_on(ip, 0), 0);
        // Committed at 7 (based on 0), then at 9 (based on 7).
        f.produced(ip, 0, 7);
        assert_eq!(
            f.based_on(ip, 0),
            7,
            "appended before the owner saw revision 7"
        );
        f.produced(ip, 7, 9);
        assert_eq!(f.based_on(ip, 0), 9);
        assert_eq!(f.based_on(ip, 7), 9);
        assert_eq!(f.based_on(ip, 9), 9);
        // A revision another instance produced is compared as is.
        assert_eq!(f.based_on(ip, 8), 8);
        // A release leaves the key absent: the next change compares with 0.
        f.produced(ip, 9, 0);
        assert_eq!(f.based_on(ip, 9), 0);
    }

    #[test]
    fn a_refused_lease_is_undone_and_a_refused_release_needs_nothing() {
        let b = bound([10, 0, 0, 1], 1);
        assert_eq!(
            undo(&b),
            Some(Change::Released {
                mac: pserv_core::MacAddr([2, 0, 0, 0, 0, 1]),
                client_id: None,
                ip: Ipv4Addr::new(10, 0, 0, 1)
            })
        );
        assert_eq!(undo(&undo(&b).unwrap()), None);
    }

    #[test]
    fn the_owner_applies_only_news() {
        // No threads: the test plays the watcher and the committer.
        let mut log = ClusterLog {
            shared: new_shared(Config::new(vec!["http://127.0.0.1:9".into()], "t", "a")),
            seen: HashMap::new(),
            last: 0,
            committers: Vec::new(),
        };
        let ip = Ipv4Addr::new(10, 0, 0, 1);
        {
            let mut s = log.shared.state.lock();
            s.seen.push(Seen {
                ip,
                as_of: 5,
                mod_revision: 5,
                change: Some(bound([10, 0, 0, 1], 1)),
            });
            // Older than what follows: skipped.
            s.seen.push(Seen {
                ip,
                as_of: 3,
                mod_revision: 3,
                change: Some(bound([10, 0, 0, 1], 2)),
            });
        }
        let mut out = Vec::new();
        log.take_remote(&mut out);
        assert_eq!(out, vec![bound([10, 0, 0, 1], 1)]);
        assert_eq!(log.seen.get(&ip), Some(&(5, 5)));
        // The next change on it compares with revision 5.
        log.append(&bound([10, 0, 0, 1], 3)).unwrap();
        assert_eq!(
            log.shared.state.lock().queue.back().map(|q| q.expected),
            Some(5)
        );
        // Cut off from the start: no dynamic leases, every reserved node answered.
        let share = log.share();
        assert!(!share.allocate && share.all_reserved);
    }
}
