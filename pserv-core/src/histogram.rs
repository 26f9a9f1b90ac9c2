//! A lock-free latency histogram for the hot paths: fixed buckets, three relaxed atomic adds
//! per observation, read by the metrics endpoint (Prometheus buckets: an operator reads p99
//! from them).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds of the buckets, in seconds (the last bucket, `+Inf`, is implicit).
pub const BOUNDS: [f64; 18] = [
    10e-6, 25e-6, 50e-6, 100e-6, 250e-6, 500e-6, 1e-3, 2.5e-3, 5e-3, 10e-3, 25e-3, 50e-3, 100e-3,
    250e-3, 500e-3, 1.0, 2.5, 10.0,
];

/// The same bounds in nanoseconds, for the comparison on the hot path.
const BOUNDS_NS: [u64; 18] = [
    10_000,
    25_000,
    50_000,
    100_000,
    250_000,
    500_000,
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    25_000_000,
    50_000_000,
    100_000_000,
    250_000_000,
    500_000_000,
    1_000_000_000,
    2_500_000_000,
    10_000_000_000,
];

/// A histogram of durations. See the module docs.
#[derive(Debug, Default)]
pub struct Histogram {
    /// Observations per bucket (not cumulative); the last is `+Inf`.
    buckets: [AtomicU64; BOUNDS.len() + 1],
    sum_ns: AtomicU64,
    count: AtomicU64,
}

/// A histogram's state at one moment.
#[derive(Debug, Clone, PartialEq)]
pub struct HistogramSnapshot {
    /// (upper bound in seconds, cumulative count), ending with `f64::INFINITY`.
    pub buckets: Vec<(f64, u64)>,
    /// Sum of the observations, in seconds.
    pub sum: f64,
    /// Number of observations.
    pub count: u64,
}

impl Histogram {
    /// Records one duration.
    pub fn observe(&self, d: Duration) {
        self.observe_n(d, 1);
    }

    /// Records `n` observations of the same duration (a batch answered together).
    pub fn observe_n(&self, d: Duration, n: u64) {
        if n == 0 {
            return;
        }
        let ns = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        let i = BOUNDS_NS.partition_point(|b| *b < ns);
        self.buckets[i].fetch_add(n, Ordering::Relaxed);
        self.sum_ns
            .fetch_add(ns.saturating_mul(n), Ordering::Relaxed);
        self.count.fetch_add(n, Ordering::Relaxed);
    }

    /// The counts so far, cumulative as Prometheus wants them.
    pub fn snapshot(&self) -> HistogramSnapshot {
        let mut total = 0;
        let buckets = BOUNDS
            .iter()
            .copied()
            .chain([f64::INFINITY])
            .zip(&self.buckets)
            .map(|(bound, c)| {
                total += c.load(Ordering::Relaxed);
                (bound, total)
            })
            .collect();
        HistogramSnapshot {
            buckets,
            sum: self.sum_ns.load(Ordering::Relaxed) as f64 / 1e9,
            count: self.count.load(Ordering::Relaxed),
        }
    }
}

impl HistogramSnapshot {
    /// The upper bound of the bucket holding the `q` quantile (0..=1): what an operator reads
    /// as p99 for `q = 0.99`. `None` without observations.
    pub fn quantile_bound(&self, q: f64) -> Option<f64> {
        let last = self.buckets.last()?.1;
        if last == 0 {
            return None;
        }
        let rank = (q * last as f64).ceil() as u64;
        self.buckets
            .iter()
            .find(|(_, c)| *c >= rank.max(1))
            .map(|(b, _)| *b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn observations_land_in_their_bucket_and_quantiles_read_back() {
        let h = Histogram::default();
        for _ in 0..98 {
            h.observe(Duration::from_micros(80));
        }
        h.observe(Duration::from_millis(3));
        h.observe_n(Duration::from_secs(20), 1);
        let s = h.snapshot();
        assert_eq!(s.count, 100);
        assert_eq!(s.buckets.last(), Some(&(f64::INFINITY, 100)));
        assert_eq!(s.quantile_bound(0.5), Some(100e-6));
        assert_eq!(s.quantile_bound(0.99), Some(5e-3));
        assert_eq!(s.quantile_bound(1.0), Some(f64::INFINITY));
        assert!((s.sum - (98.0 * 80e-6 + 3e-3 + 20.0)).abs() < 1e-9);
        // A bound is inclusive: exactly 10 µs is in the first bucket.
        let h = Histogram::default();
        h.observe(Duration::from_micros(10));
        assert_eq!(h.snapshot().buckets[0], (10e-6, 1));
        assert_eq!(Histogram::default().snapshot().quantile_bound(0.99), None);
    }
}
