//! `/metrics`: the Prometheus text exposition, encoded by `prometheus-client` from a collector
//! that reads the services' own counters at scrape time (the hot paths keep their plain
//! atomics; nothing is registered per request).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use prometheus_client::registry::Registry;
use pserv_net::metrics::{
    Collector, DescriptorEncoder, MetricType, Result, family, histogram, load, single,
};

use crate::control::{App, LeaseMonitor};
use crate::events::GapReason;

/// The whole exposition for one scrape.
pub(crate) fn render(app: &Arc<App>) -> String {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(Scrape(app.clone())));
    for c in &app.service_metrics {
        registry.register_collector(Box::new(Service(c.clone())));
    }
    let mut out = String::with_capacity(8192);
    if let Err(e) = prometheus_client::encoding::prometheus_text::encode(&mut out, &registry) {
        tracing::warn!(error = %e, "encoding /metrics");
    }
    out
}

#[derive(Debug)]
struct Scrape(Arc<App>);

/// A service's own collector, shared between scrapes.
#[derive(Debug)]
struct Service(Arc<dyn Collector>);

impl Collector for Service {
    fn encode(&self, e: DescriptorEncoder<'_>) -> Result {
        self.0.encode(e)
    }
}

impl Collector for Scrape {
    fn encode(&self, mut e: DescriptorEncoder<'_>) -> Result {
        let app = &*self.0;
        let store = &app.publisher.store;
        let t = store.load();
        use MetricType::{Counter, Gauge};
        single(
            &mut e,
            "pserv_ready",
            "1 once a snapshot is served",
            Gauge,
            u64::from(app.is_ready()),
        )?;
        single(
            &mut e,
            "pserv_snapshot_generation",
            "Generation of the served snapshot",
            Gauge,
            t.generation(),
        )?;
        single(
            &mut e,
            "pserv_nodes",
            "Nodes in the served snapshot",
            Gauge,
            t.node_count() as u64,
        )?;
        single(
            &mut e,
            "pserv_uptime_seconds",
            "Seconds since start",
            Gauge,
            app.started.elapsed().as_secs(),
        )?;
        let counts = app.leases.counts();
        family(
            &mut e,
            "pserv_leases",
            "Dynamic leases by state",
            Gauge,
            "state",
            &[
                ("bound", counts.bound as u64),
                ("offered", counts.offered as u64),
                ("declined", counts.declined as u64),
            ],
        )?;

        let p = &app.publisher.pushes;
        family(
            &mut e,
            "pserv_snapshot_pushes",
            "Snapshot publishes by result",
            Counter,
            "result",
            &[
                ("ok", load(&p.ok)),
                ("invalid", load(&p.invalid)),
                ("stale", load(&p.stale)),
                ("malformed", load(&p.malformed)),
            ],
        )?;
        histogram(
            &mut e,
            "pserv_snapshot_publish_seconds",
            "Parse+validate+compile+swap time of accepted snapshots",
            &p.publish_seconds,
        )?;
        single(
            &mut e,
            "pserv_snapshot_last_publish_seconds",
            "The last accepted snapshot's publish time",
            Gauge,
            load(&p.last_publish_us) as f64 / 1e6,
        )?;

        let ev = app.publisher.events.stats();
        single(
            &mut e,
            "pserv_events",
            "Events emitted on /v1/events (each numbered, kept in the replay buffer)",
            Counter,
            ev.emitted,
        )?;
        single(
            &mut e,
            "pserv_events_buffered",
            "Events the replay buffer keeps for listeners that resume",
            Gauge,
            ev.buffered as u64,
        )?;
        single(
            &mut e,
            "pserv_events_buffered_bytes",
            "About the memory those events hold",
            Gauge,
            ev.bytes as u64,
        )?;
        single(
            &mut e,
            "pserv_events_listeners",
            "Listeners connected to /v1/events",
            Gauge,
            ev.listeners as u64,
        )?;
        let gaps = GapReason::ALL.map(|r| (r.name(), ev.gaps[r as usize]));
        family(
            &mut e,
            "pserv_events_gaps",
            "Gap notices sent on /v1/events: a resume older than the buffer (expired), an id of \
             another run (restart), a listener that fell behind (lagged)",
            Counter,
            "reason",
            &gaps,
        )?;

        let c = &app.connections;
        family(
            &mut e,
            "pserv_control_connections_dropped",
            "Control API connections closed at accept, by reason",
            Counter,
            "reason",
            &[
                ("over_limit", load(&c.over_limit)),
                ("accept_error", load(&c.accept_errors)),
            ],
        )?;
        let j = match &app.lease_log {
            LeaseMonitor::Journal(j) => j,
            LeaseMonitor::Cluster(c) => return cluster(&mut e, c),
        };
        let s = j.stats();
        single(
            &mut e,
            "pserv_journal_commits",
            "Group commits (fdatasync) of the lease journal",
            Counter,
            s.flushes,
        )?;
        single(
            &mut e,
            "pserv_journal_records",
            "Lease changes made durable",
            Counter,
            s.records,
        )?;
        single(
            &mut e,
            "pserv_journal_compactions",
            "Lease journal compactions",
            Counter,
            s.compactions,
        )?;
        single(
            &mut e,
            "pserv_journal_compaction_failures",
            "Compactions that could not start (descriptors, disk); retried, not fatal",
            Counter,
            s.compaction_failures,
        )?;
        single(
            &mut e,
            "pserv_journal_bytes",
            "Lease journal file size",
            Gauge,
            s.bytes,
        )?;
        single(
            &mut e,
            "pserv_journal_failed",
            "1 once the lease journal has failed: no dynamic lease is acknowledged",
            Gauge,
            u64::from(j.failure().is_some()),
        )?;
        Ok(())
    }
}

#[rustfmt::skip]
fn cluster(e: &mut DescriptorEncoder<'_>, c: &pserv_cluster::ClusterMonitor) -> Result {
    use MetricType::{Counter, Gauge};
    let st = c.status();
    let s = c.stats();
    let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
    single(e, "pserv_cluster_healthy", "1 while this instance reaches etcd (heartbeat and watch) and hands out dynamic leases; 0 when cut off", Gauge, u64::from(st.healthy))?;
    single(e, "pserv_cluster_members", "Live cluster members as this instance's watch sees them", Gauge, st.members.len() as u64)?;
    single(e, "pserv_cluster_buckets", "Client buckets (of 256) this instance answers", Gauge, u64::from(st.buckets))?;
    single(e, "pserv_cluster_txns", "etcd transactions sent (each commits many lease changes)", Counter, load(&s.txns))?;
    single(e, "pserv_cluster_txn_conflicts", "Transactions whose compares failed: another instance changed an address first", Counter, load(&s.txn_conflicts))?;
    single(e, "pserv_cluster_txn_errors", "Transactions that did not reach etcd (their changes are refused)", Counter, load(&s.txn_errors))?;
    single(e, "pserv_cluster_committed", "Lease changes committed to etcd", Counter, load(&s.committed))?;
    single(e, "pserv_cluster_refused", "Lease changes refused (conflict or unknown outcome): no reply left for them", Counter, load(&s.refused))?;
    single(e, "pserv_cluster_watch_events", "Changes received from the etcd watch", Counter, load(&s.watch_events))?;
    single(e, "pserv_cluster_loads", "Full reads of the cluster's keys (start, after a compaction)", Counter, load(&s.loads))?;
    single(e, "pserv_cluster_heartbeat_failures", "Heartbeats that failed", Counter, load(&s.heartbeat_failures))?;
    single(e, "pserv_cluster_bad_records", "Lease records in etcd that could not be read (skipped)", Counter, load(&s.bad_records))?;
    Ok(())
}
