//! Per-client rate limits: a token bucket per key (a source address, a machine), time passed
//! in, and a bounded number of keys so that a flood from spoofed sources cannot grow memory.
//!
//! A key's bucket holds up to `burst` tokens and refills at `per_second`; each message takes
//! one. When the table is full, buckets that have refilled completely (their sources went
//! quiet) are dropped to make room; if none has, a new key is refused until one does: under a
//! flood of new sources the limiter limits, it does not grow.

use std::collections::HashMap;
use std::hash::Hash;

/// A rate: `per_second` sustained, up to `burst` at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    /// Messages per second, sustained.
    pub per_second: u32,
    /// Messages at once, after a quiet spell.
    pub burst: u32,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    /// Tokens, in thousandths.
    milli: u64,
    /// When `milli` was last brought up to date (ms).
    at: u64,
}

/// Token buckets by key. See the module docs.
#[derive(Debug)]
pub struct RateLimiter<K> {
    limit: Limit,
    max_keys: usize,
    buckets: HashMap<K, Bucket>,
}

impl<K: Hash + Eq> RateLimiter<K> {
    /// A limiter holding at most `max_keys` keys (at least one).
    pub fn new(limit: Limit, max_keys: usize) -> Self {
        Self {
            limit,
            max_keys: max_keys.max(1),
            buckets: HashMap::new(),
        }
    }

    /// The limit applied.
    pub fn limit(&self) -> Limit {
        self.limit
    }

    /// Keys held now.
    pub fn len(&self) -> usize {
        self.buckets.len()
    }

    /// Whether no key is held.
    pub fn is_empty(&self) -> bool {
        self.buckets.is_empty()
    }

    /// Whether one more message from `key` at `now_ms` (a monotonic clock, in milliseconds)
    /// is within the limit; takes its token if it is.
    pub fn allow(&mut self, key: K, now_ms: u64) -> bool {
        let full = u64::from(self.limit.burst) * 1000;
        if full < 1000 {
            return false;
        }
        let rate = u64::from(self.limit.per_second);
        if !self.buckets.contains_key(&key) && self.buckets.len() >= self.max_keys {
            self.buckets.retain(|_, b| {
                let refilled = b
                    .milli
                    .saturating_add(now_ms.saturating_sub(b.at).saturating_mul(rate));
                refilled < full
            });
            if self.buckets.len() >= self.max_keys {
                return false;
            }
        }
        let b = self.buckets.entry(key).or_insert(Bucket {
            milli: full,
            at: now_ms,
        });
        let elapsed = now_ms.saturating_sub(b.at);
        b.milli = b
            .milli
            .saturating_add(elapsed.saturating_mul(rate))
            .min(full);
        b.at = b.at.max(now_ms);
        if b.milli >= 1000 {
            b.milli -= 1000;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_then_the_sustained_rate() {
        let mut r = RateLimiter::new(
            Limit {
                per_second: 10,
                burst: 5,
            },
            16,
        );
        let allowed = (0..20).filter(|_| r.allow("a", 0)).count();
        assert_eq!(allowed, 5, "the burst");
        assert!(r.allow("b", 0), "another key has its own bucket");
        assert!(!r.allow("a", 50), "half a token after 50 ms");
        assert!(r.allow("a", 100), "one token after 100 ms");
        // A second later: ten tokens, capped at the burst.
        let allowed = (0..20).filter(|_| r.allow("a", 1100)).count();
        assert_eq!(allowed, 5);
        // A clock that goes backwards takes nothing and gives nothing.
        assert!(!r.allow("a", 900));
    }

    #[test]
    fn the_key_table_is_bounded_and_quiet_keys_make_room() {
        let limit = Limit {
            per_second: 1,
            burst: 2,
        };
        let mut r = RateLimiter::new(limit, 3);
        for k in 0..3 {
            assert!(r.allow(k, 0));
        }
        // Full of busy keys: a new one is refused, the table does not grow.
        assert!(!r.allow(99, 0));
        assert_eq!(r.len(), 3);
        // Two seconds on every bucket has refilled: quiet keys are dropped for the new one.
        assert!(r.allow(99, 2000));
        assert_eq!(r.len(), 1);
    }

    #[test]
    fn a_zero_burst_allows_nothing() {
        let mut r = RateLimiter::new(
            Limit {
                per_second: 100,
                burst: 0,
            },
            4,
        );
        assert!(!r.allow(1, 0));
        assert!(!r.allow(1, 10_000));
    }
}
