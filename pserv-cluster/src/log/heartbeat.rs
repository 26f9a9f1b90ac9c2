//! The heartbeat thread: keeps this instance's etcd lease, and with it its `members/` key,
//! alive (granting a new one and joining again when it expired), records when it last
//! succeeded for the health decision, and retries refusals left over from a time etcd could
//! not be read. It commits no lease change and reads no watch.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::Shared;
use super::committer::recheck;
use crate::etcd::Op;

pub(super) fn heartbeat(shared: &Shared) {
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
