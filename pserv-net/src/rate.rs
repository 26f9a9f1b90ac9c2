//! Per-client rate limits for what machines report (syslog lines, boot progress): a token
//! bucket per key (a sender's address, a machine), in a table of bounded size.
//!
//! Each key may send [`Limits::burst`] messages at once and [`Limits::rate`] per second after
//! that.
//!
//! Memory is bounded whoever sends: at most [`Limits::max_sources`] buckets are kept. A bucket
//! that has filled up again is the same as no bucket, so idle ones are swept out when the table
//! is full (at most once per [`SWEEP_INTERVAL`], so a flood of new addresses cannot make every
//! datagram pay for a sweep). When more sources than that are active at once (a flood from
//! spoofed addresses), messages from sources not yet in the table are refused
//! ([`Limited::TooManySources`]) until older ones go idle; sources already in it are unaffected.
//!
//! Time is an argument: nothing here reads a clock.

use std::collections::HashMap;
use std::hash::Hash;
use std::time::{Duration, Instant};

/// How often, at most, a full table is swept for idle sources.
pub const SWEEP_INTERVAL: Duration = Duration::from_secs(1);

/// The limit's settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limits {
    /// Messages per second each source may send, sustained.
    pub rate: f64,
    /// Messages a source may send at once (the bucket's size).
    pub burst: u32,
    /// Sources tracked at most.
    pub max_sources: usize,
}

/// Why a message was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limited {
    /// Its source is over its rate.
    RateLimited,
    /// The table is full of active sources and this one is not in it.
    TooManySources,
}

/// One source's bucket.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    /// Messages it may still send, as of `at`.
    tokens: f64,
    at: Instant,
}

impl Bucket {
    /// Its tokens at `now` (never more than the burst).
    fn tokens_at(&self, now: Instant, limits: &Limits) -> f64 {
        let refill = now.saturating_duration_since(self.at).as_secs_f64() * limits.rate;
        (self.tokens + refill).min(f64::from(limits.burst))
    }
}

/// The buckets of every key seen lately.
#[derive(Debug)]
pub struct RateLimiter<K> {
    limits: Limits,
    buckets: HashMap<K, Bucket>,
    /// No sweep before then (the last one was recent).
    next_sweep: Option<Instant>,
}

impl<K: Hash + Eq> RateLimiter<K> {
    /// An empty table with these limits.
    pub fn new(limits: Limits) -> Self {
        Self {
            limits,
            buckets: HashMap::new(),
            next_sweep: None,
        }
    }

    /// The limits.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Sources tracked now.
    pub fn sources(&self) -> usize {
        self.buckets.len()
    }

    /// Takes one message from `source` at `now`: `Ok` if it may pass.
    pub fn admit(&mut self, now: Instant, source: K) -> Result<(), Limited> {
        let limits = self.limits;
        if let Some(b) = self.buckets.get_mut(&source) {
            let tokens = b.tokens_at(now, &limits);
            b.at = now;
            if tokens >= 1.0 {
                b.tokens = tokens - 1.0;
                return Ok(());
            }
            b.tokens = tokens;
            return Err(Limited::RateLimited);
        }
        if self.buckets.len() >= limits.max_sources {
            self.sweep(now);
            if self.buckets.len() >= limits.max_sources {
                return Err(Limited::TooManySources);
            }
        }
        if limits.burst == 0 {
            return Err(Limited::RateLimited);
        }
        self.buckets.insert(
            source,
            Bucket {
                tokens: f64::from(limits.burst) - 1.0,
                at: now,
            },
        );
        Ok(())
    }

    /// Drops the buckets that have filled up again (as if never seen), unless a sweep ran less
    /// than [`SWEEP_INTERVAL`] ago.
    fn sweep(&mut self, now: Instant) {
        if self.next_sweep.is_some_and(|t| now < t) {
            return;
        }
        self.next_sweep = Some(now + SWEEP_INTERVAL);
        let limits = self.limits;
        let full = f64::from(limits.burst);
        self.buckets.retain(|_, b| b.tokens_at(now, &limits) < full);
    }
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr};

    use super::*;

    fn ip(n: u32) -> IpAddr {
        IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + n))
    }

    #[test]
    fn a_burst_passes_then_the_rate_holds() {
        let limits = Limits {
            rate: 10.0,
            burst: 5,
            max_sources: 16,
        };
        let mut l = RateLimiter::new(limits);
        let t0 = Instant::now();
        for _ in 0..5 {
            assert_eq!(l.admit(t0, ip(1)), Ok(()));
        }
        assert_eq!(l.admit(t0, ip(1)), Err(Limited::RateLimited));
        // Another source has its own bucket.
        assert_eq!(l.admit(t0, ip(2)), Ok(()));
        // 100 ms at 10/s: one more.
        let t1 = t0 + Duration::from_millis(100);
        assert_eq!(l.admit(t1, ip(1)), Ok(()));
        assert_eq!(l.admit(t1, ip(1)), Err(Limited::RateLimited));
        // A long pause refills to the burst, no further.
        let t2 = t1 + Duration::from_secs(60);
        let passed = (0..20).filter(|_| l.admit(t2, ip(1)).is_ok()).count();
        assert_eq!(passed, 5);
        // Refused messages do not dig the hole deeper: 1 s at 10/s gives 10, capped at 5.
        let t3 = t2 + Duration::from_secs(1);
        assert_eq!((0..20).filter(|_| l.admit(t3, ip(1)).is_ok()).count(), 5);
    }

    #[test]
    fn the_table_is_bounded_and_idle_sources_make_room() {
        let limits = Limits {
            rate: 1.0,
            burst: 2,
            max_sources: 100,
        };
        let mut l = RateLimiter::new(limits);
        let t0 = Instant::now();
        // A spoofed flood: each address once.
        for n in 0..100 {
            assert_eq!(l.admit(t0, ip(n)), Ok(()));
        }
        assert_eq!(l.admit(t0, ip(1000)), Err(Limited::TooManySources));
        assert_eq!(l.sources(), 100);
        // A source in the table is unaffected.
        assert_eq!(l.admit(t0, ip(5)), Ok(()));
        // Within the sweep interval, no new sweep: still refused.
        let t1 = t0 + Duration::from_millis(500);
        assert_eq!(l.admit(t1, ip(1001)), Err(Limited::TooManySources));
        // After the buckets refilled (1 s for one token, 2 s for ip(5)'s two), the next new
        // source sweeps them out.
        let t2 = t0 + Duration::from_millis(1500);
        assert_eq!(l.admit(t2, ip(1002)), Ok(()));
        assert_eq!(l.sources(), 2, "ip(5) is still refilling; ip(1002) is new");
        for n in 2000..2098 {
            assert_eq!(l.admit(t2, ip(n)), Ok(()));
        }
        assert_eq!(l.sources(), 100);
    }

    #[test]
    fn a_flood_of_new_sources_costs_one_sweep_per_interval() {
        let limits = Limits {
            rate: 1.0,
            burst: 10,
            max_sources: 1000,
        };
        let mut l = RateLimiter::new(limits);
        let t0 = Instant::now();
        for n in 0..1000 {
            let _ = l.admit(t0, ip(n));
        }
        // 100,000 new sources within the interval: all refused, quickly (no sweep each).
        let started = std::time::Instant::now();
        for n in 0..100_000 {
            assert_eq!(
                l.admit(t0 + Duration::from_millis(1), ip(10_000 + n)),
                Err(Limited::TooManySources)
            );
        }
        assert!(started.elapsed() < Duration::from_secs(2));
        assert_eq!(l.sources(), 1000);
    }
}
