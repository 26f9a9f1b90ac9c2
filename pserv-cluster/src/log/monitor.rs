//! A read-only view of a cluster instance for status and metrics: [`ClusterMonitor`] reads
//! the shared state and the counters; it changes nothing and reaches no etcd.

use std::sync::Arc;

use super::{Shared, Stats};

/// A read-only view of a cluster instance, for status and metrics.
#[derive(Clone)]
pub struct ClusterMonitor {
    pub(super) shared: Arc<Shared>,
}

impl std::fmt::Debug for ClusterMonitor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterMonitor").finish_non_exhaustive()
    }
}

/// What [`ClusterMonitor::status`] reports.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Status {
    /// The cluster's name.
    pub cluster: String,
    /// This instance.
    pub instance: String,
    /// Whether it reaches etcd (heartbeat and watch): it hands out dynamic leases only then.
    pub healthy: bool,
    /// Whether it has read the cluster's leases.
    pub loaded: bool,
    /// Live members as the watch sees them.
    pub members: Vec<String>,
    /// Client buckets (of 256) this instance answers.
    pub buckets: u32,
    /// The last error talking to etcd.
    pub last_error: Option<String>,
}

impl ClusterMonitor {
    /// The instance's state now.
    pub fn status(&self) -> Status {
        let s = self.shared.state.lock();
        Status {
            cluster: self.shared.config.cluster.clone(),
            instance: self.shared.config.instance.clone(),
            healthy: s.share.allocate,
            loaded: s.loaded,
            members: s.members.iter().cloned().collect(),
            buckets: s.share.count(),
            last_error: s.last_error.clone(),
        }
    }

    /// Counters.
    pub fn stats(&self) -> &Stats {
        &self.shared.stats
    }
}
