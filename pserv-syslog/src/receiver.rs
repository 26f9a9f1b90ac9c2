//! The receiver's decisions, sans-IO: [`Receiver::handle`] takes one datagram, its sender and
//! the time, and answers with the message to deliver or why it was dropped, counting both.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use crate::limit::{Limited, Limits, RateLimiter};
use crate::message::{Message, is_empty, parse};

/// Why a datagram was not delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum DropReason {
    /// Nothing in it but newlines and NULs.
    Empty,
    /// Its source is over the per-source rate.
    RateLimited,
    /// Too many sources active at once, and this one is new ([`crate::limit`]).
    TooManySources,
}

impl DropReason {
    /// Every reason, in the order of [`Counters::dropped`].
    pub const ALL: [Self; 3] = [Self::Empty, Self::RateLimited, Self::TooManySources];

    /// Its label in metrics.
    pub fn name(self) -> &'static str {
        match self {
            Self::Empty => "empty",
            Self::RateLimited => "rate_limited",
            Self::TooManySources => "too_many_sources",
        }
    }
}

impl From<Limited> for DropReason {
    fn from(l: Limited) -> Self {
        match l {
            Limited::RateLimited => Self::RateLimited,
            Limited::TooManySources => Self::TooManySources,
        }
    }
}

/// What the receiver counts. Every datagram is `received`, then either an event or dropped for
/// one reason: `received = events + sum(dropped)`.
#[derive(Debug, Default)]
pub struct Counters {
    /// Datagrams handled.
    pub received: AtomicU64,
    /// Messages delivered.
    pub events: AtomicU64,
    /// Delivered messages without a valid `<PRI>` (delivered raw).
    pub malformed: AtomicU64,
    /// Delivered messages cut to [`crate::MAX_MESSAGE`].
    pub truncated: AtomicU64,
    /// Drops, by [`DropReason::ALL`] index.
    pub dropped: [AtomicU64; DropReason::ALL.len()],
    /// Sources the rate limit tracks now.
    pub sources: AtomicU64,
}

fn bump(a: &AtomicU64) {
    a.fetch_add(1, Ordering::Relaxed);
}

/// The receiver: the rate limit's table and the counters.
#[derive(Debug)]
pub struct Receiver {
    limiter: RateLimiter<std::net::IpAddr>,
    counters: Arc<Counters>,
}

impl Receiver {
    /// A receiver with these limits and fresh counters.
    pub fn new(limits: Limits) -> Self {
        Self {
            limiter: RateLimiter::new(limits),
            counters: Arc::default(),
        }
    }

    /// Its counters.
    pub fn counters(&self) -> &Arc<Counters> {
        &self.counters
    }

    /// One datagram from `source` at `now`: the message to deliver, or why not. An empty
    /// datagram is dropped before it costs its source a token; the limit is applied before the
    /// datagram is parsed.
    pub fn handle<'a>(
        &mut self,
        now: Instant,
        source: IpAddr,
        datagram: &'a [u8],
    ) -> Result<Message<'a>, DropReason> {
        let c = &*self.counters;
        bump(&c.received);
        let outcome = if is_empty(datagram) {
            Err(DropReason::Empty)
        } else {
            let admitted = self.limiter.admit(now, source.to_canonical());
            c.sources
                .store(self.limiter.sources() as u64, Ordering::Relaxed);
            admitted.map_err(DropReason::from)
        };
        match outcome {
            Ok(()) => {
                let m = parse(datagram);
                bump(&c.events);
                if m.malformed {
                    bump(&c.malformed);
                }
                if m.truncated {
                    bump(&c.truncated);
                }
                Ok(m)
            }
            Err(reason) => {
                bump(&c.dropped[reason as usize]);
                Err(reason)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;
    use std::time::Duration;

    use super::*;

    fn load(a: &AtomicU64) -> u64 {
        a.load(Ordering::Relaxed)
    }

    #[test]
    fn every_datagram_is_an_event_or_a_counted_drop() {
        let mut r = Receiver::new(Limits {
            rate: 1.0,
            burst: 3,
            max_sources: 2,
        });
        let t0 = Instant::now();
        let a: IpAddr = "10.0.0.1".parse().expect("ip");
        let b: IpAddr = "10.0.0.2".parse().expect("ip");
        let c: IpAddr = "10.0.0.3".parse().expect("ip");
        assert_eq!(r.handle(t0, a, b"\n\0"), Err(DropReason::Empty));
        let m = r.handle(t0, a, b"<13>app: one").expect("delivered");
        assert_eq!(m.message, "one");
        assert!(r.handle(t0, a, b"no pri").expect("delivered").malformed);
        assert!(r.handle(t0, a, &[b'x'; 9000]).expect("delivered").truncated);
        assert_eq!(r.handle(t0, a, b"<13>x"), Err(DropReason::RateLimited));
        assert!(r.handle(t0, b, b"<13>x").is_ok());
        assert_eq!(r.handle(t0, c, b"<13>x"), Err(DropReason::TooManySources));
        // The same source as IPv4 and as IPv4-mapped IPv6 shares one bucket.
        let mapped = IpAddr::V6(Ipv4Addr::new(10, 0, 0, 1).to_ipv6_mapped());
        assert_eq!(r.handle(t0, mapped, b"<13>x"), Err(DropReason::RateLimited));
        assert!(
            r.handle(t0 + Duration::from_secs(1), mapped, b"<13>x")
                .is_ok()
        );
        let k = r.counters();
        let dropped: Vec<u64> = k.dropped.iter().map(load).collect();
        assert_eq!(
            (
                load(&k.received),
                load(&k.events),
                load(&k.malformed),
                load(&k.truncated)
            ),
            (9, 5, 2, 1)
        );
        assert_eq!(dropped, [1, 2, 1]);
        assert_eq!(
            load(&k.received),
            load(&k.events) + dropped.iter().sum::<u64>()
        );
        assert_eq!(load(&k.sources), 2);
    }
}
