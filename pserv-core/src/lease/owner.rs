//! The lease owner: one sans-IO state machine that every DHCP front end drives.
//!
//! The [`Owner`] holds the dynamic lease set and the [`LeaseLog`] its changes go to, and does
//! everything between a front end's decision and its reply leaving, with no socket and no
//! clock of its own (the shape of quinn's `Endpoint`):
//!
//! - **in**: [`Owner::handle_log`] before a pass of decisions (other instances' changes are
//!   applied and announced, the log's share of the clients is taken); the front end decides
//!   on [`Owner::leases_mut`] and hands each outcome to [`Owner::handle_decision`] (a reply,
//!   the lease change that must be durable before it leaves, or both);
//!   [`Owner::handle_settled`] after the log has made progress; [`Owner::handle_timeout`]
//!   for leases, offers and quarantines ending and for the publish cadence.
//! - **out**: [`Owner::poll_transmit`] yields replies that may leave now (those whose change
//!   the log settled, in the log's order, and those that needed none); replies whose change
//!   the log *refused* (another instance changed the address first) never come out.
//!   [`Owner::poll_event`] yields lease events (a change once durable, a remote change, an end
//!   on time). [`Owner::poll_timeout`] says when to call [`Owner::handle_timeout`] next.
//!
//! Invariants: a reply with a change comes out only after the log settled the change and the
//! lease view was published with it ([`LeaseBoard`]: a client holding its ACK finds its name
//! in DNS); replies come out in the order their changes were appended; a change the log could
//! not take, or a log that failed, loses the replies waiting on it (counted in
//! [`Counters::journal_errors`]) and never a lease already durable. Views are published after
//! changes settle, after ends, and otherwise at most every [`PUBLISH_EVERY`], so a DISCOVER
//! flood does not pay a board write per offer.
//!
//! **Front ends.** The DHCPv4 loop (`pserv_dhcp::io`) keeps only receive and send: it feeds
//! datagrams to its protocol logic with `owner.leases_mut()` and hands the outcome here. A
//! proxyDHCP front end (ports 67/4011) needs no lease and drives no owner. A DHCPv6 front end
//! drives the same owner type with its own reply type `R`: an IPv6 lease enters as a change
//! keyed by (DUID, IAID) (a `Change` variant, journaled by the same log with its own record
//! tag) decided on the same `Leases`, so `handle_decision`, settlement, refusals, remote
//! changes, ends and publishing are written once for both families. Its socket can be polled
//! by the same thread as the IPv4 one (one owner, one log), which keeps the rule that one
//! thread owns the lease set.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::{Change, LeaseBoard, LeaseEvent, LeaseLog, Leases, LogError};
use crate::journal::Seq;

/// How often changes that need no disk (offers, one per DISCOVER) are published at most; a
/// settled change (before its reply leaves) or an end publishes at once.
pub const PUBLISH_EVERY: Duration = Duration::from_millis(10);

/// The time, as the edge read it: the lease rules count in Unix seconds, the publish cadence
/// in a monotonic clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Now {
    /// Unix seconds (lease, offer and quarantine ends).
    pub unix: u64,
    /// The monotonic clock (publish cadence).
    pub mono: Instant,
}

impl Now {
    /// Reads both clocks (for the I/O loops; protocol logic takes `Now` as an argument).
    pub fn read() -> Self {
        Self {
            unix: unix_now(),
            mono: Instant::now(),
        }
    }
}

/// The wall clock in Unix seconds (0 before 1970), for the edges that pass it in as `now`
/// (the service loops, recovery at start-up, the cluster's threads).
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// What the owner counts: atomics, so a metrics scrape takes no lock the owner's thread takes.
#[derive(Debug, Default)]
pub struct Counters {
    /// Lease changes that could not be made durable: no reply was sent and no event announced.
    pub journal_errors: AtomicU64,
    /// Lease changes the cluster's store refused (another instance changed the address
    /// first): no reply was sent; the client retries and is answered from the newer state.
    pub refused: AtomicU64,
    /// Changes other instances made, applied to this instance's lease set (cluster mode).
    pub remote_changes: AtomicU64,
}

/// A reply (or a reply-less change) waiting for its change to settle.
#[derive(Debug)]
struct Held<R> {
    seq: Seq,
    change: Change,
    reply: Option<R>,
    /// One of a group's changes before its last ([`Owner::handle_decisions`]): the group's
    /// reply, held by the last, leaves only if this one is accepted too.
    grouped: bool,
}

/// The owner of the dynamic leases. See the module docs.
pub struct Owner<R> {
    leases: Leases,
    log: Box<dyn LeaseLog>,
    board: Arc<LeaseBoard>,
    /// Waiting on the log, in append order.
    pending: VecDeque<Held<R>>,
    /// Positions the log refused, not yet matched with `pending` (sorted).
    refused: VecDeque<Seq>,
    /// Replies that may leave.
    ready: VecDeque<R>,
    events: VecDeque<LeaseEvent>,
    last_publish: Instant,
    counters: Arc<Counters>,
    /// Scratch for the log's refusals and remote changes.
    scratch_seqs: Vec<Seq>,
    scratch_changes: Vec<Change>,
    /// A change of the group being settled was refused: the group's reply is dropped.
    group_failed: bool,
}

impl<R> std::fmt::Debug for Owner<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Owner")
            .field("leases", &self.leases.len())
            .field("pending", &self.pending.len())
            .field("ready", &self.ready.len())
            .finish_non_exhaustive()
    }
}

impl<R> Owner<R> {
    /// Takes `leases` (as recovered) and the `log` their changes go to, and publishes the set
    /// to `board` at once.
    pub fn new(
        mut leases: Leases,
        log: Box<dyn LeaseLog>,
        board: Arc<LeaseBoard>,
        now: Now,
    ) -> Self {
        leases.publish(&board);
        Self {
            leases,
            log,
            board,
            pending: VecDeque::new(),
            refused: VecDeque::new(),
            ready: VecDeque::new(),
            events: VecDeque::new(),
            last_publish: now.mono,
            counters: Arc::default(),
            scratch_seqs: Vec::new(),
            scratch_changes: Vec::new(),
            group_failed: false,
        }
    }

    /// The lease set, read-only.
    pub fn leases(&self) -> &Leases {
        &self.leases
    }

    /// The lease set, for a front end to decide on. Every change it makes that must last is
    /// handed back through [`Owner::handle_decision`].
    pub fn leases_mut(&mut self) -> &mut Leases {
        &mut self.leases
    }

    /// What the owner counts.
    pub fn counters(&self) -> &Arc<Counters> {
        &self.counters
    }

    /// Whether replies or changes wait on the log (the front end should not block on its
    /// socket for long, and should [`Owner::wait_settled`] when it has nothing to read).
    pub fn is_waiting(&self) -> bool {
        !self.pending.is_empty()
    }

    /// Whether the lease set changed since the last publish.
    pub fn has_unpublished(&self) -> bool {
        self.leases.has_unpublished()
    }

    /// Before a pass of decisions: applies and announces what other instances changed, and
    /// takes the log's current share of the clients (cluster mode; a local journal has
    /// neither).
    pub fn handle_log(&mut self) {
        self.log.take_remote(&mut self.scratch_changes);
        if !self.scratch_changes.is_empty() {
            self.counters
                .remote_changes
                .fetch_add(self.scratch_changes.len() as u64, Ordering::Relaxed);
            for c in self.scratch_changes.drain(..) {
                self.leases.apply(&c);
                self.events.push_back(LeaseEvent::Changed(c));
            }
        }
        self.leases.set_share(self.log.share());
    }

    /// A front end's decision: `reply` may leave once `change` is durable (at once without a
    /// change); a change without a reply (RELEASE, DECLINE) is announced once durable.
    pub fn handle_decision(&mut self, change: Option<Change>, reply: Option<R>) {
        let Some(change) = change else {
            self.ready.extend(reply);
            return;
        };
        match self.log.append(&change) {
            Ok(seq) => self.pending.push_back(Held {
                seq,
                change,
                reply,
                grouped: false,
            }),
            Err(e) => {
                tracing::error!(error = %e, change = ?change, "lease change not journaled: no reply");
                self.counters.journal_errors.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// A reply that needs several changes durable (a DHCPv6 REPLY for several IAs): it leaves
    /// once all of them have settled, and never if the log refused or failed any of them.
    pub fn handle_decisions(&mut self, changes: Vec<Change>, reply: Option<R>) {
        let n = changes.len();
        if n <= 1 {
            return self.handle_decision(changes.into_iter().next(), reply);
        }
        let mut reply = reply;
        for (i, change) in changes.into_iter().enumerate() {
            let last = i + 1 == n;
            match self.log.append(&change) {
                Ok(seq) => self.pending.push_back(Held {
                    seq,
                    change,
                    reply: if last { reply.take() } else { None },
                    grouped: !last,
                }),
                Err(e) => {
                    tracing::error!(error = %e, change = ?change, "lease change not journaled: no reply");
                    self.counters.journal_errors.fetch_add(1, Ordering::Relaxed);
                    // The rest still goes to the log (their leases are set), without the reply.
                    reply = None;
                }
            }
        }
    }

    /// Blocks up to `timeout` for the oldest waiting change to settle (call when there is
    /// nothing else to do). A failed log loses every waiting reply (counted).
    pub fn wait_settled(&mut self, timeout: Duration) {
        let Some(first) = self.pending.front() else {
            return;
        };
        if self.log.wait_settled_for(first.seq, timeout).is_err() {
            self.counters
                .journal_errors
                .fetch_add(self.pending.len() as u64, Ordering::Relaxed);
            self.pending.clear();
        }
    }

    /// Releases what the log has settled: publishes the view first, then makes each settled
    /// reply ready and announces its change; refused ones are dropped (counted).
    pub fn handle_settled(&mut self, now: Now) {
        let settled = self.log.settled();
        if self.pending.front().is_none_or(|h| h.seq > settled) {
            return;
        }
        // Refusals are reported no later than their positions settle.
        self.log.take_refused(&mut self.scratch_seqs);
        if !self.scratch_seqs.is_empty() {
            // Transactions may settle out of order: keep the refusals sorted.
            self.refused.extend(self.scratch_seqs.drain(..));
            self.refused.make_contiguous().sort_unstable();
        }
        self.publish(now);
        while let Some(held) = self.pending.pop_front_if(|h| h.seq <= settled) {
            while self.refused.pop_front_if(|r| *r < held.seq).is_some() {}
            let refused = self.refused.pop_front_if(|r| *r == held.seq).is_some();
            // A group's reply leaves only if every change of the group was accepted.
            let group_failed = std::mem::replace(&mut self.group_failed, held.grouped && refused);
            let group_failed = group_failed || refused;
            if held.grouped && group_failed {
                self.group_failed = true;
            }
            if refused {
                self.counters.refused.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            self.events.push_back(LeaseEvent::Changed(held.change));
            if !group_failed {
                self.ready.extend(held.reply);
            }
        }
    }

    /// When [`Owner::handle_timeout`] has something to do: the publish cadence while the set
    /// has unpublished changes, else the next lease, offer or quarantine end.
    pub fn poll_timeout(&mut self, now: Now) -> Option<Instant> {
        let end = self
            .leases
            .poll_timeout()
            .map(|t| now.mono + Duration::from_secs(t.saturating_sub(now.unix)));
        let publish = self
            .leases
            .has_unpublished()
            .then(|| self.last_publish + PUBLISH_EVERY);
        match (end, publish) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Ends what is due (each end published, then announced) and publishes on cadence.
    pub fn handle_timeout(&mut self, now: Now) {
        if self.leases.poll_timeout().is_some_and(|t| t <= now.unix) {
            let ended = self.leases.expire(now.unix);
            if !ended.is_empty() {
                self.publish(now);
                self.events.extend(ended.into_iter().map(LeaseEvent::Ended));
            }
        }
        if self.leases.has_unpublished()
            && now.mono.saturating_duration_since(self.last_publish) >= PUBLISH_EVERY
        {
            self.publish(now);
        }
    }

    /// The next reply that may leave.
    pub fn poll_transmit(&mut self) -> Option<R> {
        self.ready.pop_front()
    }

    /// The next lease event.
    pub fn poll_event(&mut self) -> Option<LeaseEvent> {
        self.events.pop_front()
    }

    /// Upkeep between passes, with the set as it is after every change appended so far (the
    /// journal compacts here).
    pub fn upkeep(&mut self, now: Now) {
        self.log.upkeep(&self.leases, now.unix);
    }

    /// Publishes the view, settles what is queued and closes the log. Replies still waiting
    /// are not sent: drive [`Owner::wait_settled`] until [`Owner::is_waiting`] is false first.
    pub fn close(mut self, now: Now) -> Result<(), LogError> {
        self.publish(now);
        self.log.close()
    }

    fn publish(&mut self, now: Now) {
        self.leases.publish(&self.board);
        self.last_publish = now.mono;
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use parking_lot::Mutex;

    use super::*;
    use crate::MacAddr;
    use crate::journal::JournalError;
    use crate::lease::{Client, Share};

    /// What the fake log was asked and told, shared with the test.
    #[derive(Default)]
    struct Script {
        appended: Vec<Change>,
        settled: Seq,
        refused: Vec<Seq>,
        remote: Vec<Change>,
        share: Option<Share>,
        /// `append` fails from this position on.
        fail_append_at: Option<Seq>,
        /// `wait_settled_for` fails.
        fail_wait: bool,
        closed: bool,
    }

    struct FakeLog(Arc<Mutex<Script>>);

    impl LeaseLog for FakeLog {
        fn append(&mut self, change: &Change) -> Result<Seq, LogError> {
            let mut s = self.0.lock();
            let seq = s.appended.len() as Seq + 1;
            if s.fail_append_at.is_some_and(|f| seq >= f) {
                return Err(JournalError("disk full".into()));
            }
            s.appended.push(change.clone());
            Ok(seq)
        }
        fn settled(&self) -> Seq {
            self.0.lock().settled
        }
        fn wait_settled_for(&mut self, seq: Seq, _: Duration) -> Result<bool, LogError> {
            let s = self.0.lock();
            if s.fail_wait {
                return Err(JournalError("fdatasync failed".into()));
            }
            Ok(s.settled >= seq)
        }
        fn take_refused(&mut self, out: &mut Vec<Seq>) {
            out.append(&mut self.0.lock().refused);
        }
        fn take_remote(&mut self, out: &mut Vec<Change>) {
            out.append(&mut self.0.lock().remote);
        }
        fn share(&self) -> Share {
            self.0.lock().share.unwrap_or(Share::ALL)
        }
        fn close(self: Box<Self>) -> Result<(), LogError> {
            self.0.lock().closed = true;
            Ok(())
        }
    }

    fn bound(n: u8, expires: u64) -> Change {
        Change::Bound {
            mac: MacAddr([2, 0, 0, 0, 0, n]),
            client_id: None,
            ip: Ipv4Addr::new(10, 0, 0, n),
            start: 1_000,
            expires,
            hostname: None,
        }
    }

    fn setup() -> (
        Owner<&'static str>,
        Arc<Mutex<Script>>,
        Arc<LeaseBoard>,
        Now,
    ) {
        let script = Arc::new(Mutex::new(Script::default()));
        let board = Arc::new(LeaseBoard::new());
        let now = Now {
            unix: 1_000,
            mono: Instant::now(),
        };
        let owner = Owner::new(
            Leases::new(),
            Box::new(FakeLog(script.clone())),
            board.clone(),
            now,
        );
        (owner, script, board, now)
    }

    fn drain<R>(o: &mut Owner<R>) -> Vec<R> {
        std::iter::from_fn(|| o.poll_transmit()).collect()
    }

    fn events<R>(o: &mut Owner<R>) -> Vec<&'static str> {
        std::iter::from_fn(|| o.poll_event())
            .map(|e| e.kind())
            .collect()
    }

    /// Decides a change on the set, as a front end would, and hands it over with `reply`.
    fn decide(o: &mut Owner<&'static str>, change: Change, reply: Option<&'static str>) {
        o.leases_mut().apply(&change);
        o.handle_decision(Some(change), reply);
    }

    #[test]
    fn a_reply_without_a_change_leaves_at_once() {
        let (mut o, _, _, _) = setup();
        o.handle_decision(None, Some("offer"));
        assert!(!o.is_waiting());
        assert_eq!(drain(&mut o), ["offer"]);
    }

    #[test]
    fn an_ack_waits_for_its_change_and_is_published_before_it_leaves() {
        let (mut o, script, board, now) = setup();
        decide(&mut o, bound(1, 2_000), Some("ack"));
        o.handle_settled(now);
        assert!(o.is_waiting());
        assert!(drain(&mut o).is_empty());
        assert!(board.holder(Ipv4Addr::new(10, 0, 0, 1)).is_none());
        script.lock().settled = 1;
        o.handle_settled(now);
        assert!(board.holder(Ipv4Addr::new(10, 0, 0, 1)).is_some());
        assert_eq!(drain(&mut o), ["ack"]);
        assert_eq!(events(&mut o), ["bound"]);
        assert!(!o.is_waiting());
    }

    #[test]
    fn replies_leave_in_append_order_as_the_log_settles() {
        let (mut o, script, _, now) = setup();
        for (n, r) in [(1, "a"), (2, "b"), (3, "c")] {
            decide(&mut o, bound(n, 2_000), Some(r));
        }
        script.lock().settled = 2;
        o.handle_settled(now);
        assert_eq!(drain(&mut o), ["a", "b"]);
        script.lock().settled = 3;
        o.handle_settled(now);
        assert_eq!(drain(&mut o), ["c"]);
    }

    #[test]
    fn refused_changes_send_nothing_even_when_refusals_arrive_out_of_order() {
        let (mut o, script, _, now) = setup();
        for (n, r) in [(1, "a"), (2, "b"), (3, "c"), (4, "d"), (5, "e")] {
            decide(&mut o, bound(n, 2_000), Some(r));
        }
        {
            // Two transactions settled out of order: the later one's refusal first.
            let mut s = script.lock();
            s.refused = vec![4, 2];
            s.settled = 5;
        }
        o.handle_settled(now);
        assert_eq!(drain(&mut o), ["a", "c", "e"]);
        assert_eq!(events(&mut o), ["bound", "bound", "bound"]);
        assert_eq!(o.counters().refused.load(Ordering::Relaxed), 2);
    }

    #[test]
    fn a_group_reply_leaves_only_if_every_change_of_it_is_accepted() {
        let (mut o, script, _, now) = setup();
        o.handle_decisions(vec![bound(1, 2_000), bound(2, 2_000)], Some("a"));
        o.handle_decisions(vec![bound(3, 2_000), bound(4, 2_000)], Some("b"));
        o.handle_decisions(vec![bound(5, 2_000)], Some("c"));
        o.handle_decisions(vec![bound(6, 2_000), bound(7, 2_000)], Some("d"));
        {
            // The first group's first change refused, settled apart from its second.
            let mut s = script.lock();
            s.refused = vec![1];
            s.settled = 1;
        }
        o.handle_settled(now);
        assert!(drain(&mut o).is_empty());
        {
            let mut s = script.lock();
            s.refused = vec![7];
            s.settled = 7;
        }
        o.handle_settled(now);
        assert_eq!(drain(&mut o), ["b", "c"]);
        assert_eq!(o.counters().refused.load(Ordering::Relaxed), 2);
    }

    #[test]
    fn a_refusal_of_a_position_without_a_waiting_reply_is_skipped() {
        let (mut o, script, _, now) = setup();
        decide(&mut o, bound(1, 2_000), Some("a"));
        decide(&mut o, bound(2, 2_000), Some("b"));
        {
            let mut s = script.lock();
            // A refusal older than anything waiting (its reply was lost already) is skipped.
            s.refused = vec![0, 2];
            s.settled = 2;
        }
        o.handle_settled(now);
        assert_eq!(drain(&mut o), ["a"]);
    }

    #[test]
    fn a_change_the_log_cannot_take_loses_its_reply_only() {
        let (mut o, script, _, now) = setup();
        decide(&mut o, bound(1, 2_000), Some("a"));
        script.lock().fail_append_at = Some(2);
        decide(&mut o, bound(2, 2_000), Some("b"));
        script.lock().settled = 1;
        o.handle_settled(now);
        assert_eq!(drain(&mut o), ["a"]);
        assert_eq!(o.counters().journal_errors.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn a_failed_log_loses_every_waiting_reply() {
        let (mut o, script, _, now) = setup();
        decide(&mut o, bound(1, 2_000), Some("a"));
        decide(&mut o, bound(2, 2_000), None);
        script.lock().fail_wait = true;
        o.wait_settled(Duration::from_millis(1));
        assert!(!o.is_waiting());
        o.handle_settled(now);
        assert!(drain(&mut o).is_empty());
        assert!(events(&mut o).is_empty());
        assert_eq!(o.counters().journal_errors.load(Ordering::Relaxed), 2);
    }

    #[test]
    fn a_change_without_a_reply_is_announced_once_durable() {
        let (mut o, script, _, now) = setup();
        let release = Change::Released {
            mac: MacAddr([2, 0, 0, 0, 0, 1]),
            client_id: None,
            ip: Ipv4Addr::new(10, 0, 0, 1),
        };
        o.handle_decision(Some(release), None);
        o.handle_settled(now);
        assert!(events(&mut o).is_empty());
        script.lock().settled = 1;
        o.handle_settled(now);
        assert!(drain(&mut o).is_empty());
        assert_eq!(events(&mut o), ["released"]);
    }

    #[test]
    fn remote_changes_are_applied_announced_and_counted_and_the_share_taken() {
        let (mut o, script, _, _) = setup();
        let share = Share::CUT_OFF;
        {
            let mut s = script.lock();
            s.remote = vec![bound(7, 2_000)];
            s.share = Some(share);
        }
        o.handle_log();
        let client = Client {
            mac: MacAddr([2, 0, 0, 0, 0, 7]),
            id: None,
        };
        assert_eq!(
            o.leases().lease(&client).map(|l| l.ip),
            Some(Ipv4Addr::new(10, 0, 0, 7))
        );
        assert_eq!(o.leases().share(), share);
        assert_eq!(events(&mut o), ["bound"]);
        assert_eq!(o.counters().remote_changes.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn leases_end_on_virtual_time_published_then_announced() {
        let (mut o, script, board, now) = setup();
        decide(&mut o, bound(1, 1_060), Some("ack"));
        script.lock().settled = 1;
        o.handle_settled(now);
        let _ = (drain(&mut o), events(&mut o));
        let due = o.poll_timeout(now).expect("a lease ends");
        assert_eq!(due, now.mono + Duration::from_secs(60));
        let early = Now {
            unix: 1_059,
            mono: now.mono + Duration::from_secs(59),
        };
        o.handle_timeout(early);
        assert!(events(&mut o).is_empty());
        let late = Now {
            unix: 1_060,
            mono: now.mono + Duration::from_secs(60),
        };
        o.handle_timeout(late);
        assert_eq!(events(&mut o), ["expired"]);
        assert!(board.holder(Ipv4Addr::new(10, 0, 0, 1)).is_none());
        assert!(o.poll_timeout(late).is_none());
    }

    #[test]
    fn offers_are_published_on_cadence_not_per_change() {
        let (mut o, _, board, now) = setup();
        // An offer: decided on the set, no durable change.
        o.leases_mut().apply(&bound(3, 2_000));
        o.handle_decision(None, Some("offer"));
        assert_eq!(o.poll_timeout(now), Some(now.mono + PUBLISH_EVERY));
        o.handle_timeout(now);
        assert!(board.holder(Ipv4Addr::new(10, 0, 0, 3)).is_none());
        let later = Now {
            unix: now.unix,
            mono: now.mono + PUBLISH_EVERY,
        };
        o.handle_timeout(later);
        assert!(board.holder(Ipv4Addr::new(10, 0, 0, 3)).is_some());
        assert!(!o.has_unpublished());
    }

    #[test]
    fn close_publishes_and_closes_the_log() {
        let (mut o, script, board, now) = setup();
        o.leases_mut().apply(&bound(4, 2_000));
        o.close(now).expect("close");
        assert!(script.lock().closed);
        assert!(board.holder(Ipv4Addr::new(10, 0, 0, 4)).is_some());
    }
}
