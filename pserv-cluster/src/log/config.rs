//! How a cluster instance is set up: the etcd endpoints, the names, and the limits the
//! threads work within. Plain data: nothing here reaches etcd or checks the values (a
//! `pipeline` of 0 is read as 1 where the threads start).

use std::time::Duration;

/// How a cluster instance is set up.
#[derive(Debug, Clone)]
pub struct Config {
    /// etcd client URLs (`http://host:2379`).
    pub endpoints: Vec<String>,
    /// The cluster's name: instances with the same name share leases.
    pub cluster: String,
    /// This instance's name, unique in the cluster.
    pub instance: String,
    /// The heartbeat's TTL: an instance silent this long is taken for dead.
    pub ttl: Duration,
    /// Each etcd request's time limit.
    pub request_timeout: Duration,
    /// Addresses per transaction at most (etcd's `--max-txn-ops`, 128 by default).
    pub max_txn_ops: usize,
    /// Transactions in flight at once (on distinct addresses): etcd puts concurrent ones in
    /// one raft entry and one sync.
    pub pipeline: usize,
}

impl Config {
    /// A configuration with the defaults: a 3 s heartbeat, 2 s requests, 128 operations per
    /// transaction, 4 transactions in flight.
    pub fn new(endpoints: Vec<String>, cluster: &str, instance: &str) -> Self {
        Self {
            endpoints,
            cluster: cluster.to_owned(),
            instance: instance.to_owned(),
            ttl: Duration::from_secs(3),
            request_timeout: Duration::from_secs(2),
            max_txn_ops: 128,
            pipeline: 4,
        }
    }
}
