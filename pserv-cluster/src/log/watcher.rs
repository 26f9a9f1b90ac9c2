//! The watcher thread: reads the cluster's keys once, then follows them with a watch from
//! the revision it read at. Other instances' leases become `Seen` entries for the owner,
//! member keys the membership the share is computed from. A broken watch resumes from the
//! next revision; a compacted one reads everything again and passes on the difference. It
//! writes nothing to etcd.

use std::collections::{BTreeSet, HashMap};
use std::net::IpAddr;
use std::sync::atomic::Ordering;
use std::time::Duration;

use pserv_core::lease::owner::unix_now;

use super::{Seen, Shared, State, decode};
use crate::etcd::{self, Event, KeyRevision, WatchMessage};
use crate::record::{KeyKind, Record};

/// What the watcher knows of each key.
#[derive(Default)]
struct View {
    leases: HashMap<IpAddr, (i64, Option<Record>)>,
}

pub(super) fn watcher(shared: &Shared) {
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
                    mod_revision: KeyRevision::At(kv.mod_revision),
                    // This instance's own writes too: those it already has are older than
                    // what its commit told it, and skipped; one whose commit it could not
                    // confirm is news.
                    change: rec.as_ref().and_then(|r| r.change(ip)),
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
                    mod_revision: KeyRevision::Absent,
                    change: rec.and_then(|r| r.released(ip)),
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
            mod_revision: KeyRevision::At(*modrev),
            change: live.and_then(|r| r.change(*ip)),
        });
    }
    for (ip, (_, rec)) in &view.leases {
        if !leases.contains_key(ip) {
            s.seen.push(Seen {
                ip: *ip,
                as_of: rev,
                mod_revision: KeyRevision::Absent,
                change: rec.as_ref().and_then(|r| r.released(*ip)),
            });
        }
    }
    view.leases = leases;
    s.members = members;
    s.loaded = true;
    shared.recompute(&mut s);
    Ok(rev)
}
