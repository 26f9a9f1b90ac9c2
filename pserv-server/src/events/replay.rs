//! The replay buffer behind `/v1/events`: numbered events, the oldest dropped first, and the
//! listeners that read it from where they start.
//!
//! [`Ring`] is the buffer alone (no lock, no clock, no I/O): push, and read after a number.
//! [`Events`] puts it under one short lock with a wake-up for listeners; a [`Listener`] keeps
//! its own position, so it never gets an event twice, never skips one silently, and never
//! holds the emitting service up.
//!
//! Invariants:
//! - numbers are given in emit order, from 1, without holes; the buffer holds a contiguous
//!   run of them ending with the newest, and always holds the newest once one was emitted;
//! - a listener delivers numbers in increasing order; between two it delivers, every number
//!   was either delivered, filtered out by its kinds, or counted in a [`Gap`] it delivered
//!   first.

use std::collections::VecDeque;
use std::fmt;
use std::num::NonZeroUsize;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use parking_lot::Mutex;
use serde::{Serialize, Serializer};
use tokio::sync::Notify;

use super::{Event, KINDS};

/// Events a listener copies out of the buffer per lock.
const BATCH: usize = 256;

/// An event's id on the stream, `<boot>-<seq>`: the run of the server that emitted it and its
/// number in that run (from 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct EventId {
    /// The run: its start time in microseconds since the Unix epoch, made unique per process.
    pub(crate) boot: u64,
    /// The event's number in that run; 0 is "before the first".
    pub(crate) seq: u64,
}

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.boot, self.seq)
    }
}

impl Serialize for EventId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// A `Last-Event-ID` or `?since=` that is not an id pserv gives.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{0:?} is not an event id: give an `id:` of the stream (<boot>-<seq>) or 0 for every event kept"
)]
pub(crate) struct BadId(pub(crate) String);

impl FromStr for EventId {
    type Err = BadId;

    fn from_str(s: &str) -> Result<Self, BadId> {
        let number = |n: &str| {
            (!n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
                .then(|| n.parse().ok())
                .flatten()
        };
        s.split_once('-')
            .and_then(|(boot, seq)| {
                Some(Self {
                    boot: number(boot)?,
                    seq: number(seq)?,
                })
            })
            .ok_or_else(|| BadId(s.to_owned()))
    }
}

/// Where a listener starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Since {
    /// With the next event emitted: no `Last-Event-ID`, no `?since=`.
    Now,
    /// With the oldest event kept: `?since=0`.
    Oldest,
    /// Right after this event (of this run or, then told with a gap, of another).
    After(EventId),
}

impl FromStr for Since {
    type Err = BadId;

    fn from_str(s: &str) -> Result<Self, BadId> {
        match s.trim() {
            "0" => Ok(Self::Oldest),
            id => id.parse().map(Self::After),
        }
    }
}

/// How much the replay buffer keeps: at most `events` events, and no more than `bytes` of
/// them by [`Event::weight`] (whichever is reached first; the newest event is always kept).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Retention {
    /// Events kept at most.
    pub(crate) events: NonZeroUsize,
    /// Bytes kept at most.
    pub(crate) bytes: usize,
}

/// Why a listener's stream has a hole: the first thing the stream says after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum GapReason {
    /// The listener resumed after an event the buffer no longer holds.
    Expired,
    /// The listener resumed after an event of another run (the server restarted, or this is
    /// another instance): what it missed is unknown.
    Restart,
    /// The listener read more slowly than events came and the buffer dropped some it had not
    /// read yet.
    Lagged,
}

impl GapReason {
    /// Every reason, in the order of [`Stats::gaps`].
    pub(crate) const ALL: [Self; 3] = [Self::Expired, Self::Restart, Self::Lagged];

    /// Its name (label and JSON).
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Expired => "expired",
            Self::Restart => "restart",
            Self::Lagged => "lagged",
        }
    }
}

/// The `gap` event: the listener missed events; the stream goes on with the oldest kept.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "event", rename = "gap")]
pub(crate) struct Gap {
    reason: GapReason,
    /// The last id the listener had: the one it resumed after, or the last one it was given.
    since: EventId,
    /// The first event it gets after this notice (`None`: none kept yet).
    oldest: Option<EventId>,
    /// How many events it missed (`None` after a restart: unknown).
    missed: Option<u64>,
    /// The notice's own id: the position right before `oldest`, so resuming from it does not
    /// report the same gap again.
    #[serde(skip)]
    id: EventId,
}

/// What a listener reads: an event, or the notice of a gap.
#[derive(Debug, Clone)]
pub(crate) enum Item {
    /// An event and its id.
    Event(EventId, Arc<Event>),
    /// Events were missed.
    Gap(Gap),
}

impl Item {
    /// Its id on the stream (SSE `id:`).
    pub(crate) fn id(&self) -> EventId {
        match self {
            Self::Event(id, _) => *id,
            Self::Gap(g) => g.id,
        }
    }

    /// Its name on the stream (SSE `event:`).
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Self::Event(_, e) => e.kind(),
            Self::Gap(_) => "gap",
        }
    }

    /// Its body (SSE `data:`).
    pub(crate) fn to_json(&self) -> serde_json::Result<String> {
        match self {
            Self::Event(_, e) => serde_json::to_string(&**e),
            Self::Gap(g) => serde_json::to_string(g),
        }
    }
}

/// The kinds a listener wants (`?kind=a,b`); gaps are always delivered.
#[derive(Debug, Clone, Default)]
pub(crate) struct Kinds(Option<Vec<&'static str>>);

impl Kinds {
    /// Every kind.
    pub(crate) fn all() -> Self {
        Self(None)
    }

    /// The kinds of a comma-separated list, each one of [`KINDS`].
    pub(crate) fn parse(list: &str) -> Result<Self, String> {
        let mut kinds = Vec::new();
        for name in list.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            let Some(k) = KINDS.iter().find(|k| **k == name) else {
                return Err(format!(
                    "unknown event kind {name:?}; kinds: {}",
                    KINDS.join(", ")
                ));
            };
            kinds.push(*k);
        }
        if kinds.is_empty() {
            return Err(format!("no event kind given; kinds: {}", KINDS.join(", ")));
        }
        Ok(Self(Some(kinds)))
    }

    fn admits(&self, kind: &str) -> bool {
        self.0.as_ref().is_none_or(|ks| ks.contains(&kind))
    }
}

/// The buffer: items numbered from 1 in push order, the oldest dropped first to stay within
/// its bound.
#[derive(Debug)]
struct Ring<T> {
    /// Each item with its weight, oldest first.
    items: VecDeque<(T, usize)>,
    bound: Retention,
    /// The sum of the items' weights.
    bytes: usize,
    /// The number the next item gets.
    next: u64,
}

/// What a read found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Read {
    /// Items after the position asked for that the buffer no longer holds.
    missed: u64,
    /// The position after the last item read.
    next: u64,
}

impl<T> Ring<T> {
    fn new(bound: Retention) -> Self {
        Self {
            // Grown as needed up to the bound, so a large bound costs nothing until used.
            items: VecDeque::with_capacity(bound.events.get().min(1024)),
            bound,
            bytes: 0,
            next: 1,
        }
    }

    /// Appends an item; returns the last one dropped to make room, for the caller to drop
    /// outside its lock (any other is dropped here: only an item heavier than several others
    /// drops more than one).
    fn push(&mut self, item: T, weight: usize) -> Option<T> {
        let mut dropped = None;
        while self.items.len() >= self.bound.events.get()
            || (!self.items.is_empty() && self.bytes + weight > self.bound.bytes)
        {
            let Some((old, w)) = self.items.pop_front() else {
                break;
            };
            self.bytes -= w;
            dropped = Some(old);
        }
        self.items.push_back((item, weight));
        self.bytes += weight;
        self.next += 1;
        dropped
    }

    /// The number of the oldest item held (`next` when empty).
    fn oldest(&self) -> u64 {
        self.next - self.items.len() as u64
    }

    /// Hands `f` at most `max` items from number `from` on (from the oldest held, when older
    /// ones were dropped), with their numbers.
    fn read(&self, from: u64, max: usize, mut f: impl FnMut(u64, &T)) -> Read {
        let oldest = self.oldest();
        let start = from.clamp(oldest, self.next);
        let mut next = start;
        for (item, _) in self.items.range((start - oldest) as usize..).take(max) {
            f(next, item);
            next += 1;
        }
        Read {
            missed: oldest.saturating_sub(from),
            next,
        }
    }
}

/// What the buffer and its listeners have done (for `/metrics`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Stats {
    /// Events emitted since start.
    pub(crate) emitted: u64,
    /// Events kept.
    pub(crate) buffered: usize,
    /// Their weight.
    pub(crate) bytes: usize,
    /// Listeners connected.
    pub(crate) listeners: usize,
    /// Gap notices sent, by [`GapReason::ALL`].
    pub(crate) gaps: [u64; 3],
}

#[derive(Debug)]
struct Shared {
    boot: u64,
    ring: Mutex<Ring<Arc<Event>>>,
    /// Wakes the listeners waiting for the next event.
    wake: Notify,
    /// Listeners alive: with none, an emit wakes nobody.
    listeners: AtomicUsize,
    /// Gap notices, by [`GapReason::ALL`].
    gaps: [AtomicU64; 3],
}

impl Shared {
    fn count_gap(&self, reason: GapReason) {
        self.gaps[reason as usize].fetch_add(1, Ordering::Relaxed);
    }
}

/// The event stream's source: cheap to clone, one per server.
#[derive(Debug, Clone)]
pub(crate) struct Events(Arc<Shared>);

impl Events {
    /// A buffer keeping what `bound` allows, for a run named by its start time.
    pub(crate) fn new(bound: Retention) -> Self {
        Self(Arc::new(Shared {
            boot: boot_id(),
            ring: Mutex::new(Ring::new(bound)),
            wake: Notify::new(),
            listeners: AtomicUsize::new(0),
            gaps: Default::default(),
        }))
    }

    /// Announces an event: it gets the next number and is kept for listeners to come.
    pub(crate) fn emit(&self, event: impl FnOnce() -> Event) {
        let event = Arc::new(event());
        let weight = event.weight();
        let dropped = self.0.ring.lock().push(event, weight);
        // The oldest event is freed here, outside the lock.
        drop(dropped);
        // A listener counts itself before it first reads the buffer, and reads it under the
        // lock this emit just released: either it saw this event, or this load sees it.
        if self.0.listeners.load(Ordering::Relaxed) != 0 {
            self.0.wake.notify_waiters();
        }
    }

    /// A listener starting at `since`, wanting `kinds`. A start the buffer cannot honour
    /// (events dropped since, or an id of another run) makes its first item a [`Gap`].
    pub(crate) fn listen(&self, since: Since, kinds: Kinds) -> Listener {
        let shared = &*self.0;
        shared.listeners.fetch_add(1, Ordering::Relaxed);
        let (oldest, next) = {
            let ring = shared.ring.lock();
            (ring.oldest(), ring.next)
        };
        let at = |seq| EventId {
            boot: shared.boot,
            seq,
        };
        let (start, gap) = match since {
            Since::Now => (next, None),
            Since::Oldest => (oldest, None),
            Since::After(id) if id.boot != shared.boot => {
                let kept = (oldest < next).then(|| at(oldest));
                (oldest, Some((GapReason::Restart, id, kept, None)))
            }
            Since::After(id) => {
                let want = id.seq.saturating_add(1);
                if want < oldest {
                    let missed = oldest - want;
                    (
                        oldest,
                        Some((GapReason::Expired, id, Some(at(oldest)), Some(missed))),
                    )
                } else {
                    (want.min(next), None)
                }
            }
        };
        let mut pending = VecDeque::new();
        if let Some((reason, since, oldest, missed)) = gap {
            shared.count_gap(reason);
            pending.push_back(Item::Gap(Gap {
                reason,
                since,
                oldest,
                missed,
                id: at(start - 1),
            }));
        }
        Listener {
            shared: self.0.clone(),
            cursor: Cursor {
                next: start,
                pending,
                kinds,
            },
        }
    }

    /// Counts for `/metrics`.
    pub(crate) fn stats(&self) -> Stats {
        let s = &*self.0;
        let (emitted, buffered, bytes) = {
            let ring = s.ring.lock();
            (ring.next - 1, ring.items.len(), ring.bytes)
        };
        Stats {
            emitted,
            buffered,
            bytes,
            listeners: s.listeners.load(Ordering::Relaxed),
            gaps: [0, 1, 2].map(|i| s.gaps[i].load(Ordering::Relaxed)),
        }
    }
}

/// The run's name: the start time in microseconds, above any other run's in this process (two
/// servers embedded in one process are two runs).
fn boot_id() -> u64 {
    static LAST: AtomicU64 = AtomicU64::new(0);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX));
    let claim = |last: u64| now.max(last.saturating_add(1));
    match LAST.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |l| Some(claim(l))) {
        Ok(last) | Err(last) => claim(last),
    }
}

/// One listener's position and what it has read but not yet delivered.
#[derive(Debug)]
struct Cursor {
    /// The number of the next event it reads.
    next: u64,
    pending: VecDeque<Item>,
    kinds: Kinds,
}

impl Cursor {
    /// Reads the next batch from the buffer (a gap notice first, when events it had not read
    /// were dropped).
    fn fill(&mut self, shared: &Shared) {
        let boot = shared.boot;
        let Self {
            next,
            pending,
            kinds,
        } = self;
        let read = shared.ring.lock().read(*next, BATCH, |seq, e| {
            if kinds.admits(e.kind()) {
                pending.push_back(Item::Event(EventId { boot, seq }, e.clone()));
            }
        });
        if read.missed > 0 {
            shared.count_gap(GapReason::Lagged);
            let oldest = *next + read.missed;
            pending.push_front(Item::Gap(Gap {
                reason: GapReason::Lagged,
                since: EventId {
                    boot,
                    seq: *next - 1,
                },
                oldest: Some(EventId { boot, seq: oldest }),
                missed: Some(read.missed),
                id: EventId {
                    boot,
                    seq: oldest - 1,
                },
            }));
        }
        *next = read.next;
    }
}

/// A listener: every event from its start on, in order, each once, gaps told.
#[derive(Debug)]
pub(crate) struct Listener {
    shared: Arc<Shared>,
    cursor: Cursor,
}

impl Listener {
    /// The next item; waits for the next event when it has read them all.
    pub(crate) async fn next(&mut self) -> Item {
        loop {
            if let Some(item) = self.cursor.pending.pop_front() {
                return item;
            }
            // Registered before reading, so an event emitted after the read wakes it.
            let notified = self.shared.wake.notified();
            let mut notified = std::pin::pin!(notified);
            notified.as_mut().enable();
            self.cursor.fill(&self.shared);
            if self.cursor.pending.is_empty() {
                notified.await;
            }
        }
    }

    /// The next item if one is there now, without waiting.
    pub(crate) fn try_next(&mut self) -> Option<Item> {
        if self.cursor.pending.is_empty() {
            self.cursor.fill(&self.shared);
        }
        self.cursor.pending.pop_front()
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.shared.listeners.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::events::SnapshotPublished;

    fn bound(events: usize, bytes: usize) -> Retention {
        Retention {
            events: NonZeroUsize::new(events).unwrap(),
            bytes,
        }
    }

    /// Every item `read` hands out from `from`, and what it reports.
    fn read_all(ring: &Ring<u64>, from: u64) -> (Vec<(u64, u64)>, Read) {
        let mut got = Vec::new();
        let read = ring.read(from, usize::MAX, |seq, v| got.push((seq, *v)));
        (got, read)
    }

    #[test]
    fn the_ring_numbers_every_item_and_keeps_the_newest_through_wrap_around() {
        let mut ring = Ring::new(bound(4, usize::MAX));
        assert_eq!((ring.oldest(), ring.next), (1, 1));
        assert_eq!(read_all(&ring, 1).0, []);
        for v in 1..=10u64 {
            let dropped = ring.push(v * 100, 1);
            // The fifth push drops the first, and so on: the one dropped is handed back.
            assert_eq!(dropped, (v > 4).then(|| (v - 4) * 100));
            assert_eq!(ring.items.len(), v.min(4) as usize);
        }
        assert_eq!((ring.oldest(), ring.next), (7, 11));
        let (got, read) = read_all(&ring, 7);
        assert_eq!(got, [(7, 700), (8, 800), (9, 900), (10, 1000)]);
        assert_eq!(
            read,
            Read {
                missed: 0,
                next: 11
            }
        );
    }

    #[test]
    fn reading_after_every_position_gets_exactly_the_rest_or_counts_what_was_dropped() {
        let mut ring = Ring::new(bound(5, usize::MAX));
        for v in 1..=12u64 {
            ring.push(v, 1);
        }
        // Held: 8..=12.
        for from in 0..=14u64 {
            let (got, read) = read_all(&ring, from);
            let first = from.clamp(8, 13);
            let want: Vec<_> = (first..=12).map(|s| (s, s)).collect();
            assert_eq!(got, want, "from {from}");
            assert_eq!(read.missed, 8u64.saturating_sub(from), "from {from}");
            assert_eq!(read.next, 13u64.max(first), "from {from}");
        }
        // A batch stops at `max` and says where to go on.
        let mut got = Vec::new();
        let read = ring.read(9, 2, |seq, _| got.push(seq));
        assert_eq!(
            (got, read),
            (
                vec![9, 10],
                Read {
                    missed: 0,
                    next: 11
                }
            )
        );
    }

    #[test]
    fn the_byte_bound_drops_the_oldest_and_always_keeps_the_newest() {
        let mut ring = Ring::new(bound(100, 10));
        for v in 1..=5u64 {
            ring.push(v, 3);
        }
        // 3 items of 3 bytes fit in 10.
        assert_eq!((ring.oldest(), ring.bytes), (3, 9));
        // One heavier than the bound alone empties the rest, and is kept.
        assert_eq!(ring.push(6, 50), Some(5));
        assert_eq!((ring.oldest(), ring.items.len(), ring.bytes), (6, 1, 50));
        assert_eq!(ring.push(7, 1), Some(6));
        assert_eq!((ring.oldest(), ring.bytes), (7, 1));
    }

    #[test]
    fn ids_are_boot_dash_seq_and_since_takes_them_or_zero() {
        let id = EventId {
            boot: 1_767_225_600_123_456,
            seq: 42,
        };
        assert_eq!(id.to_string(), "1767225600123456-42");
        assert_eq!("1767225600123456-42".parse::<EventId>(), Ok(id));
        assert_eq!(" 0 ".parse::<Since>(), Ok(Since::Oldest));
        assert_eq!(
            "7-0".parse::<Since>(),
            Ok(Since::After(EventId { boot: 7, seq: 0 }))
        );
        for bad in [
            "",
            "42",
            "-1",
            "1-",
            "-",
            "1-2-3",
            "a-1",
            "1-+2",
            "1 -2",
            "99999999999999999999-1",
        ] {
            assert!(bad.parse::<Since>().is_err(), "{bad:?}");
        }
        assert!(
            boot_id() < boot_id(),
            "two runs in one process get two names"
        );
    }

    #[test]
    fn kinds_are_checked_and_gaps_pass_every_filter() {
        assert!(Kinds::parse("snapshot, bound").is_ok());
        let e = Kinds::parse("snapshot,bonud").unwrap_err();
        assert!(
            e.contains("\"bonud\"") && e.contains("quarantine_ended"),
            "{e}"
        );
        assert!(Kinds::parse(",").is_err());
    }

    fn snapshot(generation: u64) -> Event {
        Event::Snapshot(SnapshotPublished {
            generation,
            nodes: 1,
        })
    }

    fn events(n: usize) -> Events {
        Events::new(bound(n, usize::MAX))
    }

    /// What a listener has ready now, as (id seq, kind, body).
    async fn drain(l: &mut Listener) -> Vec<(u64, &'static str, serde_json::Value)> {
        let mut out = Vec::new();
        while let Ok(item) =
            tokio::time::timeout(std::time::Duration::from_millis(20), l.next()).await
        {
            let body = serde_json::from_str(&item.to_json().unwrap()).unwrap();
            out.push((item.id().seq, item.kind(), body));
        }
        out
    }

    fn generations(items: &[(u64, &str, serde_json::Value)]) -> Vec<(u64, u64)> {
        items
            .iter()
            .filter(|(_, k, _)| *k == "snapshot")
            .map(|(seq, _, v)| (*seq, v["generation"].as_u64().unwrap()))
            .collect()
    }

    #[tokio::test]
    async fn a_listener_resumes_after_its_last_id_with_exactly_what_it_missed() {
        let ev = events(100);
        let boot = ev.0.boot;
        ev.emit(|| snapshot(1));
        let mut live = ev.listen(Since::Now, Kinds::all());
        for g in 2..=4 {
            ev.emit(|| snapshot(g));
        }
        assert_eq!(
            generations(&drain(&mut live).await),
            [(2, 2), (3, 3), (4, 4)]
        );
        // Resuming after every id of the run: the rest, and nothing else.
        for last in 0..=4u64 {
            let mut l = ev.listen(Since::After(EventId { boot, seq: last }), Kinds::all());
            let want: Vec<_> = (last + 1..=4).map(|g| (g, g)).collect();
            assert_eq!(generations(&drain(&mut l).await), want, "after {last}");
        }
        // `?since=0`: everything kept; then live, with no hole and no repeat.
        let mut all = ev.listen(Since::Oldest, Kinds::all());
        let first = drain(&mut all).await;
        ev.emit(|| snapshot(5));
        let then = drain(&mut all).await;
        assert_eq!(generations(&first), [(1, 1), (2, 2), (3, 3), (4, 4)]);
        assert_eq!(generations(&then), [(5, 5)]);
    }

    #[tokio::test]
    async fn a_waiting_listener_wakes_for_an_event_emitted_elsewhere() {
        let ev = events(4);
        let mut l = ev.listen(Since::Now, Kinds::all());
        let emitter = ev.clone();
        let task = tokio::spawn(async move { l.next().await.id().seq });
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        std::thread::spawn(move || emitter.emit(|| snapshot(9)))
            .join()
            .unwrap();
        let seq = tokio::time::timeout(std::time::Duration::from_secs(2), task)
            .await
            .expect("woken")
            .unwrap();
        assert_eq!(seq, 1);
        assert_eq!(ev.stats().listeners, 0, "a dropped listener is not counted");
    }

    #[tokio::test]
    async fn resuming_before_the_oldest_kept_says_so_then_replays_what_is_kept() {
        let ev = events(3);
        let boot = ev.0.boot;
        for g in 1..=10 {
            ev.emit(|| snapshot(g));
        }
        // Kept: 8, 9, 10. After 4, events 5, 6 and 7 are gone.
        let mut l = ev.listen(Since::After(EventId { boot, seq: 4 }), Kinds::all());
        let got = drain(&mut l).await;
        let (seq, kind, gap) = &got[0];
        assert_eq!(*kind, "gap");
        assert_eq!(
            *seq, 7,
            "the notice's id is the position before the oldest kept"
        );
        assert_eq!(
            *gap,
            serde_json::json!({"event": "gap", "reason": "expired", "since": format!("{boot}-4"),
                               "oldest": format!("{boot}-8"), "missed": 3})
        );
        assert_eq!(generations(&got[1..]), [(8, 8), (9, 9), (10, 10)]);
        // After the last one dropped (7): nothing missed, no notice.
        let mut l = ev.listen(Since::After(EventId { boot, seq: 7 }), Kinds::all());
        assert_eq!(
            generations(&drain(&mut l).await),
            [(8, 8), (9, 9), (10, 10)]
        );
        // `?since=0` is "what you have", never a gap.
        let mut l = ev.listen(Since::Oldest, Kinds::all());
        assert_eq!(drain(&mut l).await.len(), 3);
        assert_eq!(ev.stats().gaps, [1, 0, 0]);
    }

    #[tokio::test]
    async fn an_id_of_another_run_is_a_restart_gap_then_everything_kept() {
        let ev = events(10);
        let boot = ev.0.boot;
        let other = EventId {
            boot: boot - 1,
            seq: 99,
        };
        // Nothing emitted yet in this run: the notice says so, and its id is this run's 0.
        let mut l = ev.listen(Since::After(other), Kinds::all());
        let got = drain(&mut l).await;
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].0, 0);
        assert_eq!(
            got[0].2,
            serde_json::json!({"event": "gap", "reason": "restart", "since": format!("{}-99", boot - 1),
                               "oldest": null, "missed": null})
        );
        ev.emit(|| snapshot(1));
        ev.emit(|| snapshot(2));
        let mut l = ev.listen(Since::After(other), Kinds::all());
        let got = drain(&mut l).await;
        assert_eq!(got[0].2["oldest"], format!("{boot}-1"));
        assert_eq!(generations(&got[1..]), [(1, 1), (2, 2)]);
    }

    #[tokio::test]
    async fn a_listener_that_falls_behind_is_told_how_many_it_lost() {
        let ev = events(4);
        let boot = ev.0.boot;
        let mut l = ev.listen(Since::Now, Kinds::all());
        ev.emit(|| snapshot(1));
        assert_eq!(l.next().await.id().seq, 1);
        for g in 2..=10 {
            ev.emit(|| snapshot(g));
        }
        let got = drain(&mut l).await;
        assert_eq!(
            got[0].2,
            serde_json::json!({"event": "gap", "reason": "lagged", "since": format!("{boot}-1"),
                               "oldest": format!("{boot}-7"), "missed": 5})
        );
        assert_eq!(got[0].0, 6);
        assert_eq!(generations(&got[1..]), [(7, 7), (8, 8), (9, 9), (10, 10)]);
        assert_eq!(ev.stats().gaps, [0, 0, 1]);
    }

    #[tokio::test]
    async fn a_kind_filter_skips_other_kinds_but_never_a_gap() {
        let ev = events(2);
        let boot = ev.0.boot;
        for g in 1..=5 {
            ev.emit(|| snapshot(g));
        }
        let mut l = ev.listen(
            Since::After(EventId { boot, seq: 1 }),
            Kinds::parse("bound").unwrap(),
        );
        let got = drain(&mut l).await;
        assert_eq!(got.len(), 1);
        assert_eq!((got[0].1, got[0].2["missed"].as_u64()), ("gap", Some(2)));
        let mut l = ev.listen(Since::Oldest, Kinds::parse("snapshot").unwrap());
        assert_eq!(generations(&drain(&mut l).await), [(4, 4), (5, 5)]);
    }

    #[test]
    fn stats_count_what_was_emitted_and_what_is_kept() {
        let ev = events(3);
        for g in 1..=5 {
            ev.emit(|| snapshot(g));
        }
        let s = ev.stats();
        assert_eq!((s.emitted, s.buffered, s.listeners), (5, 3, 0));
        assert_eq!(s.bytes, 3 * snapshot(0).weight());
    }

    /// What an emit costs in CPU, against the channel it replaced (a broadcast, skipped while
    /// nobody listened), on an HTTP boot event (what a boot server emits per request):
    /// `cargo test -p pserv-server --release --lib -- --ignored emit_cost --nocapture`.
    #[test]
    #[ignore = "a measurement: run it in release"]
    fn emit_cost() {
        use tokio::sync::broadcast;

        // Emits per round; the best of five rounds is reported, in CPU time of the emitting
        // threads (other processes share the cores: wall time would count their turns).
        const N: u32 = 400_000;
        /// This thread's CPU time so far, in ns (Linux: /proc/thread-self/schedstat).
        fn cpu_ns() -> u64 {
            let s = std::fs::read_to_string("/proc/thread-self/schedstat").unwrap();
            s.split(' ').next().unwrap().parse().unwrap()
        }
        let served = pserv_boot::http::Served {
            client: "10.20.30.40:49152".parse().unwrap(),
            method: "GET".into(),
            path: "/images/jammy/vmlinuz".into(),
            status: 200,
            bytes: 14_000_000,
        };
        let event = || Event::Http(served.clone());
        let ns = |what: &str, threads: u32, f: &(dyn Fn() + Sync)| {
            let round = || {
                let cpu: u64 = std::thread::scope(|s| {
                    let runs: Vec<_> = (0..threads)
                        .map(|_| {
                            s.spawn(|| {
                                let t = cpu_ns();
                                (0..N / threads).for_each(|_| f());
                                cpu_ns() - t
                            })
                        })
                        .collect();
                    runs.into_iter().map(|r| r.join().unwrap()).sum()
                });
                cpu as f64 / f64::from(N)
            };
            let per = (0..5).map(|_| round()).fold(f64::INFINITY, f64::min);
            eprintln!("{what:<58} {per:>7.1} ns/emit");
        };
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();

        // Before: a broadcast channel of 4096, nothing built while nobody listened.
        let (tx, rx) = broadcast::channel::<Arc<Event>>(4096);
        drop(rx);
        let before = |tx: &broadcast::Sender<Arc<Event>>| {
            if tx.receiver_count() != 0 {
                let _ = tx.send(Arc::new(event()));
            }
        };
        ns("before (broadcast), nobody listening", 1, &|| before(&tx));
        let mut rx = tx.subscribe();
        let reader = rt.spawn(async move {
            let mut n = 0u64;
            loop {
                match rx.recv().await {
                    Ok(_) => n += 1,
                    Err(broadcast::error::RecvError::Lagged(_)) => {}
                    Err(broadcast::error::RecvError::Closed) => return n,
                }
            }
        });
        ns("before (broadcast), one listener reading", 1, &|| {
            before(&tx);
        });
        drop(tx);
        rt.block_on(reader).unwrap();

        // What any kept event costs: built, then freed once the buffer drops it.
        ns("building and freeing the event alone", 1, &|| {
            drop(std::hint::black_box(Arc::new(event())));
        });
        // After: every event numbered and kept, listeners or not; the default bound first
        // (then others: a larger buffer frees colder events).
        use crate::config::{DEFAULT_EVENTS_BUFFER, DEFAULT_EVENTS_BUFFER_BYTES};
        let ev = Events::new(bound(DEFAULT_EVENTS_BUFFER, DEFAULT_EVENTS_BUFFER_BYTES));
        ns(
            "after (replay buffer, default bound), nobody listening",
            1,
            &|| {
                ev.emit(event);
            },
        );
        for kept in [1_000, 100_000] {
            let other = Events::new(bound(kept, 64 << 20));
            ns(&format!("after, {kept} kept, nobody listening"), 1, &|| {
                other.emit(event);
            });
        }
        ns("after, nobody listening, 2 threads emitting", 2, &|| {
            ev.emit(event);
        });
        let mut l = ev.listen(Since::Now, Kinds::all());
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let reader = {
            let stop = stop.clone();
            rt.spawn(async move {
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let _ = l.next().await;
                    n += 1;
                }
                n
            })
        };
        ns("after, one listener reading", 1, &|| ev.emit(event));
        ns(
            "after, one listener reading, 2 threads emitting",
            2,
            &|| {
                ev.emit(event);
            },
        );
        stop.store(true, Ordering::Relaxed);
        ev.emit(event);
        let read = rt.block_on(reader).unwrap();
        let s = ev.stats();
        eprintln!(
            "buffer: {} events, {} bytes ({} per event); the listener read {read}, gaps {:?}",
            s.buffered,
            s.bytes,
            s.bytes / s.buffered.max(1),
            s.gaps
        );
    }
}
