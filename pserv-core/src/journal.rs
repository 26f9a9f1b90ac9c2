//! The lease journal: append-only, group-committed, compacted, crash-safe.
//!
//! Every [`Change`] is appended as one framed record: `len: u32 LE`, `crc32: u32 LE` of the
//! payload, then the payload. One writer thread takes every record queued since its last
//! `fdatasync`, writes them with one `write` and makes them durable with one `fdatasync` (group
//! commit): many leases share one disk flush, so durability costs latency, not throughput.
//! [`Journal::append`] returns a sequence number; the record is durable once
//! [`Journal::durable`] reaches it ([`Journal::wait_durable`] blocks for that;
//! [`Journal::wait_durable_for`] blocks at most a while, so an event loop can wait in slices).
//!
//! Recovery ([`Journal::open`]) replays records up to the first torn or corrupt one (a crash
//! mid-write leaves at most the unacknowledged tail damaged) into the one [`Leases`] it returns,
//! then writes the live set to a fresh file and atomically renames it over the old one. The same
//! compaction runs when the lease set's owner asks ([`Journal::wants_compaction`],
//! [`Journal::compact`] with its set's durable changes) once the file has grown past both a floor
//! and a multiple of the live set, so the journal stays bounded. The journal keeps no copy of the
//! lease set and reads no clock: `now` comes with each request.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, Read, Write};
use std::net::Ipv4Addr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use parking_lot::{Condvar, Mutex};

use crate::MacAddr;
use crate::lease::{Change, ClientId, Duid, Leases};

/// Journals are written with this; one that may hold DHCPv6 records (tags 10-12) must not be
/// opened by a binary that does not know them (it would take the first one for a torn tail and
/// compact away everything after it), so they have their own magic.
const MAGIC: &[u8; 8] = b"PSRVJL02";
/// Journals of the binaries before DHCPv6: read, and rewritten with [`MAGIC`] when compacted.
const MAGIC_V1: &[u8; 8] = b"PSRVJL01";
const TAG_BOUND: u8 = 1;
const TAG_RELEASED: u8 = 2;
const TAG_DECLINED: u8 = 3;
/// Added to a tag for a record that carries a client identifier.
const ID_TAG_OFFSET: u8 = 3;
/// DHCPv6 records (issue 27): the client's DUID and IAID, an IPv6 address, the MAC when known.
const TAG_BOUND6: u8 = 10;
const TAG_RELEASED6: u8 = 11;
const TAG_DECLINED6: u8 = 12;
/// The largest payload a valid record has (a Bound with a 255-byte hostname and a 255-byte
/// client identifier).
const MAX_PAYLOAD: u32 = 1 + 6 + 4 + 8 + 8 + 1 + 255 + 1 + 255;

/// Batches smaller than this wait [`Options::linger`] for company before their sync.
const LINGER_BELOW: u64 = 64;

/// A position in the journal: records up to and including it are durable once
/// [`Journal::durable`] reaches it.
pub type Seq = u64;

/// Tuning for a journal.
#[derive(Debug, Clone)]
pub struct Options {
    /// Compact when the file is larger than this...
    pub compact_min_bytes: u64,
    /// ...and larger than this many times the live set's size.
    pub compact_ratio: u64,
    /// Whether to `fdatasync` (false only for tests and benchmarks that say so).
    pub sync: bool,
    /// After the first record of a batch arrives, wait this long for more before syncing, so
    /// that at moderate rates several records share one `fdatasync` (under load batches fill
    /// by themselves while the previous sync runs). Adds at most this much to an ACK's latency.
    /// The default, 3 ms, is a fraction of the 4 s a DHCP client waits before it retransmits;
    /// against 1 ms it cuts the syncs (and the writer's CPU) from ~690 to ~280 a second at 8k
    /// ACKs/s.
    pub linger: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            compact_min_bytes: 8 << 20,
            compact_ratio: 4,
            sync: true,
            linger: Duration::from_millis(3),
        }
    }
}

/// What [`Journal::open`] found.
#[derive(Debug, Default)]
pub struct Recovery {
    /// The recovered lease set (bound leases and quarantines live at `now`), for its owner.
    pub leases: Leases,
    /// Records replayed.
    pub records: u64,
    /// Bytes of torn or corrupt tail dropped.
    pub dropped_tail_bytes: u64,
    /// Replay conflicts (an address bound to two MACs at once): zero in a correct history.
    pub conflicts: u64,
}

/// The journal is unusable after a write or sync failure: nothing more is acknowledged.
#[derive(Debug, Clone, thiserror::Error)]
#[error("lease journal failed: {0}")]
pub struct JournalError(pub Arc<str>);

struct Queue {
    buf: Vec<u8>,
    /// Records in `buf`.
    records: u64,
    last: Seq,
    /// A compaction asked for at a position in `buf`.
    compact: Option<Compaction>,
    shutdown: bool,
}

/// A compaction request: `changes` recreate the lease set after every record before byte `at`
/// of the queue's buffer (and none after); `now` is when it was asked for.
struct Compaction {
    at: usize,
    changes: Vec<Change>,
    now: u64,
}

struct Shared {
    queue: Mutex<Queue>,
    work: Condvar,
    durable: AtomicU64,
    /// Guards nothing but the wait on `durable_cv`.
    durable_lock: Mutex<()>,
    durable_cv: Condvar,
    failed: Mutex<Option<JournalError>>,
    /// Set with `failed`, so the hot path and readers check it without the lock.
    has_failed: AtomicBool,
    stats: Stats,
    /// Bytes queued for the writer, not yet in the file (for the compaction trigger).
    queued_bytes: AtomicU64,
    /// A compaction is queued or running.
    compacting: AtomicBool,
    /// After a compaction could not start: not before this time (Unix seconds).
    compact_after: AtomicU64,
}

#[derive(Default)]
struct Stats {
    flushes: AtomicU64,
    records: AtomicU64,
    compactions: AtomicU64,
    compaction_failures: AtomicU64,
    bytes: AtomicU64,
}

/// Counters of the journal's work.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct JournalStats {
    /// `fdatasync` calls (group commits).
    pub flushes: u64,
    /// Records made durable.
    pub records: u64,
    /// Compactions done.
    pub compactions: u64,
    /// Compactions that could not start (no temporary file: out of descriptors, disk full);
    /// the journal went on appending to its file and tried again later.
    pub compaction_failures: u64,
    /// Current file size.
    pub bytes: u64,
}

/// An open journal with its writer thread. Dropping it flushes what is queued and stops the
/// thread.
pub struct Journal {
    shared: Arc<Shared>,
    writer: Option<JoinHandle<()>>,
    compact_min_bytes: u64,
    compact_ratio: u64,
}

impl std::fmt::Debug for Journal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Journal")
            .field("durable", &self.durable())
            .finish_non_exhaustive()
    }
}

impl Journal {
    /// Opens (or creates) the journal at `path`, recovers the live lease set, rewrites the file
    /// compacted, and starts the writer thread. `now` decides what has ended.
    pub fn open(path: &Path, options: Options, now: u64) -> io::Result<(Self, Recovery)> {
        // Never through a symbolic link: the directory may be writable by the user pserv runs
        // as (`--user`), and this may run as root.
        let (records, dropped_tail_bytes) = match OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(path)
        {
            Ok(f) => read_records(f)?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => (Vec::new(), 0),
            Err(e) => return Err(e),
        };
        let leases = Leases::restore(&records, now);
        let live = leases.durable_changes(now);
        let recovery = Recovery {
            conflicts: leases.replay_stats().conflicts,
            leases,
            records: records.len() as u64,
            dropped_tail_bytes,
        };
        if dropped_tail_bytes > 0 {
            tracing::warn!(
                path = %path.display(),
                dropped_tail_bytes,
                "lease journal had a torn tail (a crash mid-write); it held no acknowledged lease"
            );
        }
        // The directory stays open, so a compaction needs no new descriptor after its rename.
        let dir = if options.sync {
            Some(File::open(parent_dir(path))?)
        } else {
            None
        };
        let file = write_compacted(path, dir.as_ref(), &live).map_err(CompactError::into_inner)?;
        let size = file.metadata()?.len();
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue {
                buf: Vec::with_capacity(64 << 10),
                records: 0,
                last: 0,
                compact: None,
                shutdown: false,
            }),
            work: Condvar::new(),
            durable: AtomicU64::new(0),
            durable_lock: Mutex::new(()),
            durable_cv: Condvar::new(),
            failed: Mutex::new(None),
            has_failed: AtomicBool::new(false),
            stats: Stats::default(),
            queued_bytes: AtomicU64::new(0),
            compacting: AtomicBool::new(false),
            compact_after: AtomicU64::new(0),
        });
        shared.stats.bytes.store(size, Ordering::Relaxed);
        let (compact_min_bytes, compact_ratio) = (options.compact_min_bytes, options.compact_ratio);
        let writer = Writer {
            shared: shared.clone(),
            path: path.to_owned(),
            dir,
            file,
            size,
            options,
        };
        let handle = std::thread::Builder::new()
            .name("pserv-journal".into())
            .spawn(move || writer.run())?;
        Ok((
            Self {
                shared,
                writer: Some(handle),
                compact_min_bytes,
                compact_ratio,
            },
            recovery,
        ))
    }

    /// Queues a change; it is durable once [`Journal::durable`] reaches the returned sequence.
    pub fn append(&self, change: &Change) -> Result<Seq, JournalError> {
        if let Some(e) = self.failure() {
            return Err(e);
        }
        let mut q = self.shared.queue.lock();
        encode(change, &mut q.buf);
        q.records += 1;
        q.last += 1;
        self.shared
            .queued_bytes
            .store(q.buf.len() as u64, Ordering::Relaxed);
        let seq = q.last;
        drop(q);
        self.shared.work.notify_one();
        Ok(seq)
    }

    /// Whether the file has grown enough to be worth compacting, for a lease set of `live`
    /// leases: past both [`Options::compact_min_bytes`] and [`Options::compact_ratio`] times the
    /// live set, with no compaction under way and none failed in the last second.
    pub fn wants_compaction(&self, live: usize, now: u64) -> bool {
        let size = self.shared.stats.bytes.load(Ordering::Relaxed)
            + self.shared.queued_bytes.load(Ordering::Relaxed);
        // Rough live size: records are ~40 bytes; precision does not matter for a trigger.
        let live_bytes = (live as u64 + 1) * 48;
        size > self.compact_min_bytes
            && size > live_bytes.saturating_mul(self.compact_ratio)
            && !self.shared.compacting.load(Ordering::Relaxed)
            && now >= self.shared.compact_after.load(Ordering::Relaxed)
    }

    /// Rewrites the journal as `changes` ([`Leases::durable_changes`] of the owner's set), which
    /// must recreate the lease set after every change appended so far and none after (the owner
    /// calls this between appends). The writer thread does the work; appends go on meanwhile.
    /// A compaction that cannot start (no temporary file: out of descriptors, disk full) is
    /// counted and logged, appends go on to the current file, and
    /// [`Journal::wants_compaction`] says yes again a second later.
    pub fn compact(&self, changes: Vec<Change>, now: u64) {
        if self.shared.compacting.swap(true, Ordering::Relaxed) {
            return;
        }
        let mut q = self.shared.queue.lock();
        let at = q.buf.len();
        q.compact = Some(Compaction { at, changes, now });
        drop(q);
        self.shared.work.notify_one();
    }

    /// The highest sequence known durable.
    pub fn durable(&self) -> Seq {
        self.shared.durable.load(Ordering::Acquire)
    }

    /// Blocks until `seq` is durable, or the journal fails.
    pub fn wait_durable(&self, seq: Seq) -> Result<(), JournalError> {
        self.wait(seq, None).map(drop)
    }

    /// Like [`Journal::wait_durable`], but gives up after `timeout`; returns whether `seq` is
    /// durable (an event loop waits in short slices so it can keep receiving).
    pub fn wait_durable_for(&self, seq: Seq, timeout: Duration) -> Result<bool, JournalError> {
        self.wait(seq, Some(std::time::Instant::now() + timeout))
    }

    /// Waits until `seq` is durable (true), the deadline passes (false), or the journal fails.
    fn wait(&self, seq: Seq, deadline: Option<std::time::Instant>) -> Result<bool, JournalError> {
        let mut guard = self.shared.durable_lock.lock();
        loop {
            if self.durable() >= seq {
                return Ok(true);
            }
            if let Some(e) = &*self.shared.failed.lock() {
                return Err(e.clone());
            }
            match deadline {
                None => self.shared.durable_cv.wait(&mut guard),
                Some(d) => {
                    if self.shared.durable_cv.wait_until(&mut guard, d).timed_out() {
                        return Ok(self.durable() >= seq);
                    }
                }
            }
        }
    }

    /// Whether the journal has failed (then nothing more will be acknowledged).
    pub fn failure(&self) -> Option<JournalError> {
        self.shared.failure()
    }

    /// Counters.
    pub fn stats(&self) -> JournalStats {
        self.shared.stats()
    }

    /// A read-only handle on the journal's counters and health, for metrics and status: it
    /// takes no lock that appending takes.
    pub fn monitor(&self) -> JournalMonitor {
        JournalMonitor {
            shared: self.shared.clone(),
        }
    }

    /// Flushes everything queued, stops the writer, and reports a failure if there was one.
    pub fn close(mut self) -> Result<(), JournalError> {
        self.stop();
        self.failure().map_or(Ok(()), Err)
    }

    fn stop(&mut self) {
        self.shared.queue.lock().shutdown = true;
        self.shared.work.notify_one();
        if let Some(h) = self.writer.take() {
            let _ = h.join();
        }
    }
}

impl Drop for Journal {
    fn drop(&mut self) {
        self.stop();
    }
}

/// See [`Journal::monitor`].
#[derive(Clone)]
pub struct JournalMonitor {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for JournalMonitor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JournalMonitor").finish_non_exhaustive()
    }
}

impl JournalMonitor {
    /// Counters.
    pub fn stats(&self) -> JournalStats {
        self.shared.stats()
    }

    /// Whether the journal has failed, and why.
    pub fn failure(&self) -> Option<JournalError> {
        self.shared.failure()
    }
}

impl Shared {
    fn failure(&self) -> Option<JournalError> {
        if !self.has_failed.load(Ordering::Acquire) {
            return None;
        }
        self.failed.lock().clone()
    }

    fn stats(&self) -> JournalStats {
        let s = &self.stats;
        JournalStats {
            flushes: s.flushes.load(Ordering::Relaxed),
            records: s.records.load(Ordering::Relaxed),
            compactions: s.compactions.load(Ordering::Relaxed),
            compaction_failures: s.compaction_failures.load(Ordering::Relaxed),
            bytes: s.bytes.load(Ordering::Relaxed),
        }
    }
}

/// The writer thread's state: the open file and the live set it compacts from.
struct Writer {
    shared: Arc<Shared>,
    path: PathBuf,
    /// The journal's directory, held open to sync renames; `None` without `options.sync`.
    dir: Option<File>,
    file: File,
    size: u64,
    options: Options,
}

impl Writer {
    fn run(mut self) {
        let mut buf = Vec::with_capacity(64 << 10);
        loop {
            let (last, records, compact, shutdown) = {
                let mut q = self.shared.queue.lock();
                while q.buf.is_empty() && q.compact.is_none() && !q.shutdown {
                    self.shared.work.wait(&mut q);
                }
                if !q.shutdown && !self.options.linger.is_zero() && q.records < LINGER_BELOW {
                    // A small batch: give its neighbours a moment to join it.
                    drop(q);
                    std::thread::sleep(self.options.linger);
                    q = self.shared.queue.lock();
                }
                std::mem::swap(&mut q.buf, &mut buf);
                self.shared.queued_bytes.store(0, Ordering::Relaxed);
                let records = std::mem::take(&mut q.records);
                (q.last, records, q.compact.take(), q.shutdown)
            };
            if !buf.is_empty() || compact.is_some() {
                if let Err(e) = self.write_batch(&buf, compact) {
                    self.fail(&e);
                    return;
                }
                let s = &self.shared.stats;
                s.flushes.fetch_add(1, Ordering::Relaxed);
                s.records.fetch_add(records, Ordering::Relaxed);
                s.bytes.store(self.size, Ordering::Relaxed);
                buf.clear();
                self.publish(last);
            }
            if shutdown {
                return;
            }
        }
    }

    /// Makes one batch durable; with a compaction, the records before its position go to the
    /// old file, the compacted set replaces it, and the rest follow in the new file.
    fn write_batch(&mut self, buf: &[u8], compact: Option<Compaction>) -> io::Result<()> {
        let Some(c) = compact else {
            return self.commit(buf);
        };
        let (head, tail) = buf.split_at(c.at.min(buf.len()));
        if !head.is_empty() {
            self.commit(head)?;
        }
        let result = self.compact(&c);
        self.shared.compacting.store(false, Ordering::Relaxed);
        result?;
        if !tail.is_empty() {
            self.commit(tail)?;
        }
        Ok(())
    }

    fn commit(&mut self, buf: &[u8]) -> io::Result<()> {
        self.file.write_all(buf)?;
        if self.options.sync {
            self.file.sync_data()?;
        }
        self.size += buf.len() as u64;
        Ok(())
    }

    /// Makes `seq` visible as durable, then wakes blocked waiters.
    fn publish(&self, seq: Seq) {
        {
            let _g = self.shared.durable_lock.lock();
            self.shared.durable.store(seq, Ordering::Release);
        }
        self.shared.durable_cv.notify_all();
    }

    fn fail(&self, e: &io::Error) {
        tracing::error!(path = %self.path.display(), error = %e, "lease journal write failed; no more leases will be acknowledged");
        *self.shared.failed.lock() = Some(JournalError(e.to_string().into()));
        self.shared.has_failed.store(true, Ordering::Release);
        let _g = self.shared.durable_lock.lock();
        self.shared.durable_cv.notify_all();
    }

    /// Writes the compacted set. Only a failure after the rename, when the file on disk is the
    /// new one, is a journal failure; one that could not start is counted and retried later.
    fn compact(&mut self, c: &Compaction) -> io::Result<()> {
        match write_compacted(&self.path, self.dir.as_ref(), &c.changes) {
            Ok(file) => self.file = file,
            Err(CompactError::NotStarted(e)) => {
                tracing::warn!(path = %self.path.display(), error = %e,
                    "lease journal compaction could not start; appending to the current file, retrying in 1 s");
                self.shared
                    .stats
                    .compaction_failures
                    .fetch_add(1, Ordering::Relaxed);
                self.shared
                    .compact_after
                    .store(c.now + 1, Ordering::Relaxed);
                return Ok(());
            }
            Err(CompactError::AfterRename(e)) => return Err(e),
        }
        self.size = self.file.metadata()?.len();
        self.shared
            .stats
            .compactions
            .fetch_add(1, Ordering::Relaxed);
        self.shared.stats.bytes.store(self.size, Ordering::Relaxed);
        Ok(())
    }
}

/// Where a compaction failed: before its rename (nothing changed; the old file is whole) or
/// after it (the new file is in place but may not be durable).
enum CompactError {
    NotStarted(io::Error),
    AfterRename(io::Error),
}

impl CompactError {
    fn into_inner(self) -> io::Error {
        match self {
            Self::NotStarted(e) | Self::AfterRename(e) => e,
        }
    }
}

fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    }
}

/// Writes `changes` to a temporary file, renames it over `path`, and returns the new file, its
/// position at the end, for appending. With the journal's directory open (`dir`, present when
/// the journal syncs), the file is made durable before the rename and the directory after it.
/// Needs one new descriptor, before the rename.
fn write_compacted(
    path: &Path,
    dir: Option<&File>,
    changes: &[Change],
) -> Result<File, CompactError> {
    let tmp = path.with_extension("compacting");
    let mut buf = Vec::with_capacity(MAGIC.len() + changes.len() * 48);
    buf.extend_from_slice(MAGIC);
    for c in changes {
        encode(c, &mut buf);
    }
    let written = (|| {
        // A fresh file, never one that was there (a link planted in the directory would
        // otherwise be followed and the file it names truncated).
        match fs::remove_file(&tmp) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&tmp)?;
        f.write_all(&buf)?;
        if dir.is_some() {
            f.sync_all()?;
        }
        fs::rename(&tmp, path)?;
        Ok(f)
    })();
    let f = match written {
        Ok(f) => f,
        Err(e) => {
            let _ = fs::remove_file(&tmp);
            return Err(CompactError::NotStarted(e));
        }
    };
    if let Some(dir) = dir {
        dir.sync_all().map_err(CompactError::AfterRename)?;
    }
    Ok(f)
}

/// Appends one framed record. A change whose client sent an identifier is written with the
/// `_ID` form of its tag: the same fields, then the identifier (`len: u8`, bytes). Changes
/// without one keep the first format, so journals of either age replay.
fn encode(change: &Change, out: &mut Vec<u8>) {
    let at = out.len();
    out.extend_from_slice(&[0; 8]);
    let id = match change {
        Change::Bound { client_id, .. }
        | Change::Released { client_id, .. }
        | Change::Declined { client_id, .. } => client_id.as_ref(),
        Change::Bound6 { .. } | Change::Released6 { .. } | Change::Declined6 { .. } => None,
    };
    let with_id = if id.is_some() { ID_TAG_OFFSET } else { 0 };
    match change {
        Change::Bound {
            mac,
            ip,
            start,
            expires,
            hostname,
            ..
        } => {
            out.push(TAG_BOUND + with_id);
            out.extend_from_slice(&mac.0);
            out.extend_from_slice(&ip.octets());
            out.extend_from_slice(&start.to_le_bytes());
            out.extend_from_slice(&expires.to_le_bytes());
            put_hostname(hostname.as_deref(), out);
        }
        Change::Released { mac, ip, .. } => {
            out.push(TAG_RELEASED + with_id);
            out.extend_from_slice(&mac.0);
            out.extend_from_slice(&ip.octets());
        }
        Change::Declined { mac, ip, until, .. } => {
            out.push(TAG_DECLINED + with_id);
            out.extend_from_slice(&mac.0);
            out.extend_from_slice(&ip.octets());
            out.extend_from_slice(&until.to_le_bytes());
        }
        // [tag] [duid len] [duid] [iaid] [ip] then per kind; Bound6: [has mac] [mac] [start]
        // [expires] [hostname len] [hostname]; Declined6: [until].
        Change::Bound6 {
            duid,
            iaid,
            mac,
            ip,
            start,
            expires,
            hostname,
        } => {
            out.push(TAG_BOUND6);
            encode6_head(duid, *iaid, ip, out);
            out.push(u8::from(mac.is_some()));
            out.extend_from_slice(&mac.map_or([0; 6], |m| m.0));
            out.extend_from_slice(&start.to_le_bytes());
            out.extend_from_slice(&expires.to_le_bytes());
            put_hostname(hostname.as_deref(), out);
        }
        Change::Released6 { duid, iaid, ip } => {
            out.push(TAG_RELEASED6);
            encode6_head(duid, *iaid, ip, out);
        }
        Change::Declined6 {
            duid,
            iaid,
            ip,
            until,
        } => {
            out.push(TAG_DECLINED6);
            encode6_head(duid, *iaid, ip, out);
            out.extend_from_slice(&until.to_le_bytes());
        }
    }
    if let Some(id) = id {
        // A `ClientId` is 1 to 255 bytes.
        let b = id.as_bytes();
        out.push(b.len() as u8);
        out.extend_from_slice(b);
    }
    let payload = &out[at + 8..];
    let len = payload.len() as u32;
    let crc = crc32fast::hash(payload);
    out[at..at + 4].copy_from_slice(&len.to_le_bytes());
    out[at + 4..at + 8].copy_from_slice(&crc.to_le_bytes());
}

/// A record's hostname: its length (a byte; a longer name is cut at 255 bytes), then its bytes.
fn put_hostname(hostname: Option<&str>, out: &mut Vec<u8>) {
    let h = hostname.unwrap_or("").as_bytes();
    let h = &h[..h.len().min(255)];
    out.push(h.len() as u8);
    out.extend_from_slice(h);
}

/// A record's hostname from its bytes: none when empty, `None` (a damaged record) when they
/// are not UTF-8.
fn hostname_of(h: &[u8]) -> Option<Option<Box<str>>> {
    if h.is_empty() {
        return Some(None);
    }
    Some(Some(std::str::from_utf8(h).ok()?.into()))
}

/// A DHCPv6 record's common head: the DUID (a length byte, 3 to 130 bytes), the IAID and the
/// address.
fn encode6_head(duid: &Duid, iaid: u32, ip: &std::net::Ipv6Addr, out: &mut Vec<u8>) {
    let d = duid.as_bytes();
    out.push(d.len() as u8);
    out.extend_from_slice(d);
    out.extend_from_slice(&iaid.to_le_bytes());
    out.extend_from_slice(&ip.octets());
}

/// Decodes a DHCPv6 record's payload after its tag.
fn decode6(tag: u8, p: &[u8]) -> Option<Change> {
    let dlen = usize::from(*p.first()?);
    let duid = Duid::new(p.get(1..1 + dlen)?)?;
    let rest = p.get(1 + dlen..)?;
    let iaid = u32::from_le_bytes(rest.get(..4)?.try_into().ok()?);
    let ip = std::net::Ipv6Addr::from(<[u8; 16]>::try_from(rest.get(4..20)?).ok()?);
    let rest = &rest[20..];
    let u64_at = |at: usize| Some(u64::from_le_bytes(rest.get(at..at + 8)?.try_into().ok()?));
    match tag {
        TAG_BOUND6 => {
            let mac = match *rest.first()? {
                0 => None,
                1 => Some(MacAddr(rest.get(1..7)?.try_into().ok()?)),
                _ => return None,
            };
            let (start, expires) = (u64_at(7)?, u64_at(15)?);
            let hlen = usize::from(*rest.get(23)?);
            if rest.len() != 24 + hlen {
                return None;
            }
            let h = &rest[24..];
            let hostname = hostname_of(h)?;
            Some(Change::Bound6 {
                duid,
                iaid,
                mac,
                ip,
                start,
                expires,
                hostname,
            })
        }
        TAG_RELEASED6 if rest.is_empty() => Some(Change::Released6 { duid, iaid, ip }),
        TAG_DECLINED6 if rest.len() == 8 => Some(Change::Declined6 {
            duid,
            iaid,
            ip,
            until: u64_at(0)?,
        }),
        _ => None,
    }
}

/// Decodes one payload; `None` if it is not a well-formed record.
fn decode(p: &[u8]) -> Option<Change> {
    let (&tag, rest) = p.split_first()?;
    if (TAG_BOUND6..=TAG_DECLINED6).contains(&tag) {
        return decode6(tag, rest);
    }
    let (tag, rest, client_id) = if tag > ID_TAG_OFFSET {
        // The identifier is last: its length byte is found by trying the fixed part's size.
        let body = match tag - ID_TAG_OFFSET {
            TAG_BOUND => 27 + usize::from(*rest.get(26)?),
            TAG_RELEASED => 10,
            TAG_DECLINED => 18,
            _ => return None,
        };
        let idlen = usize::from(*rest.get(body)?);
        if rest.len() != body + 1 + idlen {
            return None;
        }
        let id = ClientId::new(&rest[body + 1..])?;
        (tag - ID_TAG_OFFSET, &rest[..body], Some(id))
    } else {
        (tag, rest, None)
    };
    let mac = MacAddr(rest.get(..6)?.try_into().ok()?);
    let ip = Ipv4Addr::from(<[u8; 4]>::try_from(rest.get(6..10)?).ok()?);
    let u64_at = |at: usize| Some(u64::from_le_bytes(rest.get(at..at + 8)?.try_into().ok()?));
    match tag {
        TAG_BOUND => {
            let start = u64_at(10)?;
            let expires = u64_at(18)?;
            let hlen = usize::from(*rest.get(26)?);
            let h = rest.get(27..27 + hlen)?;
            if rest.len() != 27 + hlen {
                return None;
            }
            let hostname = hostname_of(h)?;
            Some(Change::Bound {
                mac,
                client_id,
                ip,
                start,
                expires,
                hostname,
            })
        }
        TAG_RELEASED if rest.len() == 10 => Some(Change::Released { mac, client_id, ip }),
        TAG_DECLINED if rest.len() == 18 => Some(Change::Declined {
            mac,
            client_id,
            ip,
            until: u64_at(10)?,
        }),
        _ => None,
    }
}

/// Reads every intact record; returns them and how many bytes of damaged tail followed.
fn read_records(f: File) -> io::Result<(Vec<Change>, u64)> {
    let total = f.metadata()?.len();
    let mut r = BufReader::with_capacity(1 << 16, f);
    let mut magic = [0u8; 8];
    if total < MAGIC.len() as u64 {
        // A crash while creating the file: nothing in it was ever acknowledged.
        return Ok((Vec::new(), total));
    }
    r.read_exact(&mut magic)?;
    if &magic != MAGIC && &magic != MAGIC_V1 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "not a pserv lease journal (bad magic); refusing to overwrite it",
        ));
    }
    let mut good = MAGIC.len() as u64;
    let mut out = Vec::new();
    let mut payload = Vec::with_capacity(MAX_PAYLOAD as usize);
    loop {
        let mut head = [0u8; 8];
        if read_full(&mut r, &mut head)? < 8 {
            break;
        }
        let len = u32::from_le_bytes([head[0], head[1], head[2], head[3]]);
        let crc = u32::from_le_bytes([head[4], head[5], head[6], head[7]]);
        if len == 0 || len > MAX_PAYLOAD {
            break;
        }
        payload.resize(len as usize, 0);
        if read_full(&mut r, &mut payload)? < payload.len() || crc32fast::hash(&payload) != crc {
            break;
        }
        let Some(change) = decode(&payload) else {
            break;
        };
        out.push(change);
        good += 8 + u64::from(len);
    }
    Ok((out, total - good))
}

/// Reads until `buf` is full or EOF; returns the bytes read.
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bound(n: u8, host: Option<&str>) -> Change {
        Change::Bound {
            mac: MacAddr([2, 0, 0, 0, 0, n]),
            client_id: None,
            ip: Ipv4Addr::new(10, 0, 0, n),
            start: 1_000,
            expires: 1_000_000 + u64::from(n),
            hostname: host.map(Into::into),
        }
    }

    #[test]
    fn records_round_trip() {
        let changes = [
            bound(1, Some("host-a")),
            bound(2, None),
            Change::Released {
                mac: MacAddr([2, 0, 0, 0, 0, 1]),
                client_id: None,
                ip: Ipv4Addr::new(10, 0, 0, 1),
            },
            Change::Declined {
                mac: MacAddr([2, 0, 0, 0, 0, 2]),
                client_id: None,
                ip: Ipv4Addr::new(10, 0, 0, 2),
                until: 77,
            },
        ];
        // The same, from clients that sent an identifier (the format's second form), with a
        // long hostname and the longest identifier.
        let id = |n: usize| ClientId::new(&vec![0xab; n]);
        let with_id: Vec<Change> = changes
            .iter()
            .cloned()
            .zip([1, 7, 255, 2])
            .map(|(mut c, n)| {
                match &mut c {
                    Change::Bound {
                        client_id,
                        hostname,
                        ..
                    } => {
                        *client_id = id(n);
                        *hostname = Some("h".repeat(255).into());
                    }
                    Change::Released { client_id, .. } | Change::Declined { client_id, .. } => {
                        *client_id = id(n);
                    }
                    _ => {}
                }
                c
            })
            .collect();
        for c in changes.iter().chain(&with_id) {
            let mut buf = Vec::new();
            encode(c, &mut buf);
            assert_eq!(decode(&buf[8..]).as_ref(), Some(c));
            assert_eq!(
                u32::from_le_bytes(buf[..4].try_into().unwrap()) as usize,
                buf.len() - 8
            );
        }
    }

    #[test]
    fn journals_of_the_binaries_before_dhcpv6_are_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.journal");
        let mut buf = MAGIC_V1.to_vec();
        encode(&bound(1, Some("a")), &mut buf);
        std::fs::write(&path, &buf).unwrap();
        let (changes, damaged) = read_records(File::open(&path).unwrap()).unwrap();
        assert_eq!((changes, damaged), (vec![bound(1, Some("a"))], 0));
        std::fs::write(&path, b"PSRVJL99").unwrap();
        assert!(read_records(File::open(&path).unwrap()).is_err());
    }

    #[test]
    fn dhcpv6_records_round_trip_and_cut_ones_are_refused() {
        let duid = |n: usize| Duid::new(&vec![0x42; n]).unwrap();
        let ip: std::net::Ipv6Addr = "fd00:20::1234".parse().unwrap();
        let changes = [
            Change::Bound6 {
                duid: duid(14),
                iaid: 7,
                mac: Some(MacAddr([2, 0, 0, 0, 0, 9])),
                ip,
                start: 5,
                expires: 4005,
                hostname: Some("h".repeat(255).into()),
            },
            Change::Bound6 {
                duid: duid(130),
                iaid: u32::MAX,
                mac: None,
                ip,
                start: 5,
                expires: 4005,
                hostname: None,
            },
            Change::Released6 {
                duid: duid(3),
                iaid: 0,
                ip,
            },
            Change::Declined6 {
                duid: duid(10),
                iaid: 1,
                ip,
                until: 99,
            },
        ];
        for c in &changes {
            let mut buf = Vec::new();
            encode(c, &mut buf);
            let p = &buf[8..];
            assert!(p.len() <= MAX_PAYLOAD as usize);
            assert_eq!(decode(p).as_ref(), Some(c));
            for cut in 1..p.len() {
                assert_eq!(decode(&p[..cut]), None, "{c:?} cut to {cut}");
            }
        }
    }

    #[test]
    fn decode_rejects_garbage_without_panicking() {
        for p in [&[][..], &[1], &[1; 10], &[9; 30], &[2; 12], &[3; 10]] {
            assert_eq!(decode(p), None, "{p:?}");
        }
        let mut buf = Vec::new();
        encode(&bound(3, Some("x")), &mut buf);
        let p = &buf[8..];
        assert_eq!(decode(&p[..p.len() - 1]), None, "hostname cut short");
        let mut c = bound(4, Some("y"));
        if let Change::Bound { client_id, .. } = &mut c {
            *client_id = ClientId::new(&[0, 1, 2, 3]);
        }
        let mut buf = Vec::new();
        encode(&c, &mut buf);
        let p = &buf[8..];
        assert_eq!(decode(p).as_ref(), Some(&c));
        for cut in 1..=4 {
            assert_eq!(decode(&p[..p.len() - cut]), None, "identifier cut by {cut}");
        }
        let mut empty = p.to_vec();
        let at = empty.len() - 5;
        empty.truncate(at + 1);
        empty[at] = 0;
        assert_eq!(decode(&empty), None, "an empty identifier");
    }
}
