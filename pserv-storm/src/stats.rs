//! Accounting: latency samples and their percentiles.

use std::time::Duration;

use serde::Serialize;

/// Latency samples, in microseconds, kept whole: percentiles are exact, not bucketed. A run
/// of millions of exchanges keeps a few megabytes.
#[derive(Debug, Default, Clone)]
pub struct Samples(Vec<u32>);

impl Samples {
    /// Records one latency.
    pub fn record(&mut self, d: Duration) {
        self.0
            .push(u32::try_from(d.as_micros()).unwrap_or(u32::MAX));
    }

    /// How many were recorded.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether none were.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// p50, p99 and max (milliseconds), or zeros with no sample.
    pub fn summary(&self) -> Latency {
        let mut v = self.0.clone();
        v.sort_unstable();
        // Nearest rank: the smallest sample with at least p of the samples at or below it.
        let at = |p: f64| {
            if v.is_empty() {
                return 0.0;
            }
            let rank = ((p * v.len() as f64).ceil() as usize).clamp(1, v.len());
            f64::from(v[rank - 1]) / 1000.0
        };
        Latency {
            samples: v.len() as u64,
            p50_ms: at(0.50),
            p99_ms: at(0.99),
            max_ms: v.last().map_or(0.0, |m| f64::from(*m) / 1000.0),
        }
    }
}

/// A latency distribution's summary.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Latency {
    /// Number of samples.
    pub samples: u64,
    /// Median, milliseconds.
    pub p50_ms: f64,
    /// 99th percentile, milliseconds.
    pub p99_ms: f64,
    /// Largest, milliseconds.
    pub max_ms: f64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let mut s = Samples::default();
        assert_eq!(s.summary().p99_ms, 0.0);
        for us in 1..=100u64 {
            s.record(Duration::from_micros(us * 1000));
        }
        let l = s.summary();
        assert_eq!(l.samples, 100);
        assert_eq!(l.p50_ms, 50.0);
        assert_eq!(l.p99_ms, 99.0);
        assert_eq!(l.max_ms, 100.0);
        let mut one = Samples::default();
        one.record(Duration::from_micros(1500));
        assert_eq!(one.summary().p50_ms, 1.5);
        assert_eq!(one.summary().p99_ms, 1.5);
    }
}
