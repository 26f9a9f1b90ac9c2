//! The committer threads: each takes a batch of queued changes (group commit, one group per
//! address, addresses already in a transaction left for later), commits it in one etcd
//! transaction comparing every address key's revision, sorts out conflicts (a read-only
//! transaction says which keys moved; those changes are refused, the rest committed again),
//! advances the settled position, and reads back the truth of refused addresses for the
//! owner. They do not watch etcd or decide health: a failure is counted and reported, and
//! its changes refused.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::atomic::Ordering;

use pserv_core::journal::Seq;
use pserv_core::lease::Change;

use pserv_core::lease::owner::unix_now;

use super::{Seen, Shared, State, decode};
use crate::etcd::{self, KeyRevision, Op};
use crate::record::Record;

/// One address's changes in a transaction.
struct Group {
    ip: IpAddr,
    /// The compare: where the key stood for the first change.
    expected: KeyRevision,
    /// The change written (the last one for the address).
    change: Change,
    seqs: Vec<Seq>,
}

/// Revisions the committers produced for one address: a change based on one of them (the
/// owner appended it before it saw that commit's result) is based on the latest.
#[derive(Debug, Default)]
struct Produced {
    from: Vec<KeyRevision>,
    latest: KeyRevision,
}

/// The committers' shared bookkeeping (inside [`State`]).
#[derive(Debug, Default)]
pub(super) struct InFlight {
    /// Addresses in a transaction now: their later changes wait, so one address's changes
    /// commit in order.
    ips: std::collections::HashSet<IpAddr>,
    /// Positions in a transaction now.
    seqs: BTreeSet<Seq>,
    produced: HashMap<IpAddr, Produced>,
}

impl InFlight {
    fn based_on(&self, ip: IpAddr, expected: KeyRevision) -> KeyRevision {
        match self.produced.get(&ip) {
            Some(p) if p.from.contains(&expected) || p.latest == expected => p.latest,
            _ => expected,
        }
    }

    fn produced(&mut self, ip: IpAddr, based_on: KeyRevision, now: KeyRevision) {
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
    let mut at: HashMap<IpAddr, usize> = HashMap::new();
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
pub(super) fn committer(shared: &Shared) {
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
        let taken: Vec<(IpAddr, Vec<Seq>)> =
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
fn commit(
    shared: &Shared,
    groups: Vec<Group>,
) -> (Vec<Seq>, Vec<(IpAddr, KeyRevision, KeyRevision, i64)>) {
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
    rechecked: &mut Vec<(IpAddr, Change)>,
) -> (Vec<Seq>, Vec<(IpAddr, KeyRevision, KeyRevision, i64)>) {
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
        let compares: Vec<(Vec<u8>, KeyRevision)> = groups
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
                        let released =
                            matches!(g.change, Change::Released { .. } | Change::Released6 { .. });
                        let now = if released {
                            KeyRevision::Absent
                        } else {
                            KeyRevision::At(r.revision)
                        };
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
                    .map(|k| Some(KeyRevision::of(k.as_ref())))
                    .chain(std::iter::repeat(None));
                let mut keep = Vec::new();
                for (g, now) in groups.into_iter().zip(current) {
                    if now == Some(g.expected) {
                        keep.push(g);
                    } else {
                        tracing::debug!(ip = %g.ip, expected = ?g.expected, ?now, "address changed by another instance first: refused");
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
pub(super) fn recheck(shared: &Shared) {
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
                            KeyRevision::At(kv.mod_revision),
                            decode(shared, &kv.value)
                                .filter(|rec| rec.live(now))
                                .and_then(|rec| rec.change(*ip))
                                .or_else(|| undo(refused)),
                        ),
                        None => (KeyRevision::Absent, undo(refused)),
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
        Change::Bound6 { duid, iaid, ip, .. } | Change::Declined6 { duid, iaid, ip, .. } => {
            Some(Change::Released6 {
                duid: duid.clone(),
                iaid: *iaid,
                ip: *ip,
            })
        }
        Change::Released { .. } | Change::Released6 { .. } => None,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::log::Queued;
    use crate::log::tests::bound;
    use crate::record::address;
    use KeyRevision::{Absent, At};
    use std::net::Ipv4Addr;

    fn queue(s: &mut State, seq: Seq, change: Change, expected: KeyRevision) {
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
        queue(&mut s, 1, bound([10, 0, 0, 1], 1), Absent);
        queue(&mut s, 2, bound([10, 0, 0, 2], 2), At(5));
        queue(&mut s, 3, bound([10, 0, 0, 1], 1), Absent);
        let g = take_batch(&mut s, 128);
        assert_eq!(g.len(), 2, "two addresses");
        assert_eq!(
            g[0].seqs,
            vec![1, 3],
            "one address's changes share its group"
        );
        assert_eq!(g[1].expected, At(5));
        assert!(s.queue.is_empty());
        // While 10.0.0.1 is in flight, its next change waits; others go.
        queue(&mut s, 4, bound([10, 0, 0, 1], 1), Absent);
        queue(&mut s, 5, bound([10, 0, 0, 3], 3), Absent);
        s.inflight.ips.remove(&IpAddr::from([10, 0, 0, 2]));
        let g = take_batch(&mut s, 128);
        assert_eq!(
            g.iter().map(|g| g.seqs.clone()).collect::<Vec<_>>(),
            vec![vec![5]]
        );
        assert_eq!(s.queue.iter().map(|q| q.seq).collect::<Vec<_>>(), vec![4]);
        // At most `max` addresses per batch, in order.
        let mut s = State::default();
        for i in 1..=5u8 {
            queue(&mut s, Seq::from(i), bound([10, 0, 1, i], i), Absent);
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
        let ip = IpAddr::from([10, 0, 0, 1]);
        let mut f = InFlight::default();
        assert_eq!(f.based_on(ip, Absent), Absent);
        // Committed at 7 (based on 0), then at 9 (based on 7).
        f.produced(ip, Absent, At(7));
        assert_eq!(
            f.based_on(ip, Absent),
            At(7),
            "appended before the owner saw revision 7"
        );
        f.produced(ip, At(7), At(9));
        assert_eq!(f.based_on(ip, Absent), At(9));
        assert_eq!(f.based_on(ip, At(7)), At(9));
        assert_eq!(f.based_on(ip, At(9)), At(9));
        // A revision another instance produced is compared as is.
        assert_eq!(f.based_on(ip, At(8)), At(8));
        // A release leaves the key absent: the next change expects it absent.
        f.produced(ip, At(9), Absent);
        assert_eq!(f.based_on(ip, At(9)), Absent);
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
}
