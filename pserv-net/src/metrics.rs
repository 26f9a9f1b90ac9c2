//! Encoding a service's own counters for `/metrics` (the Prometheus text exposition, through
//! `prometheus-client`): each service implements a [`Collector`] over its atomics with these
//! helpers, read at scrape time, so the hot paths keep plain atomics and nothing is
//! registered per request.

use std::sync::atomic::{AtomicU64, Ordering};

pub use prometheus_client::collector::Collector;
pub use prometheus_client::encoding::DescriptorEncoder;
use prometheus_client::encoding::{EncodeCounterValue, EncodeGaugeValue, NoLabelSet};
pub use prometheus_client::metrics::MetricType;
use pserv_core::histogram::Histogram;

/// What encoding returns.
pub type Result = std::result::Result<(), std::fmt::Error>;

/// Reads a counter.
pub fn load(a: &AtomicU64) -> u64 {
    a.load(Ordering::Relaxed)
}

/// One metric without labels. Counter names are given without `_total`: the encoder adds it.
pub fn single<V: EncodeCounterValue + EncodeGaugeValue>(
    e: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    kind: MetricType,
    v: V,
) -> Result {
    let mut m = e.encode_descriptor(name, help, None, kind)?;
    match kind {
        MetricType::Counter => m.encode_counter::<NoLabelSet, _, u64>(&v, None),
        _ => m.encode_gauge(&v),
    }
}

/// One metric family with one label.
pub fn family(
    e: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    kind: MetricType,
    label: &str,
    values: &[(&str, u64)],
) -> Result {
    let mut d = e.encode_descriptor(name, help, None, kind)?;
    for (value, v) in values {
        let labels = [(label, *value)];
        let mut m = d.encode_family(&labels)?;
        match kind {
            MetricType::Counter => m.encode_counter::<NoLabelSet, _, u64>(v, None)?,
            _ => m.encode_gauge(v)?,
        }
    }
    Ok(())
}

/// A latency histogram.
pub fn histogram(e: &mut DescriptorEncoder<'_>, name: &str, help: &str, h: &Histogram) -> Result {
    let s = h.snapshot();
    // The encoder sums the buckets into the cumulative `le` series itself: give it each
    // bucket's own count.
    let mut below = 0;
    let own: Vec<(f64, u64)> = s
        .buckets
        .iter()
        .map(|(bound, cumulative)| {
            let n = cumulative - below;
            below = *cumulative;
            (*bound, n)
        })
        .collect();
    let mut m = e.encode_descriptor(name, help, None, MetricType::Histogram)?;
    m.encode_histogram::<NoLabelSet>(s.sum, s.count, &own, None)
}
