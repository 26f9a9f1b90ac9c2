//! Cluster mode: several pserv instances on one subnet share the only state pserv owns,
//! dynamic leases, on etcd.
//!
//! - [`log::ClusterLog`] is a [`pserv_core::lease::LeaseLog`]: the DHCP service appends each
//!   lease change and acknowledges the client once etcd has committed it in a transaction
//!   that succeeds only if no other instance changed the address since (compare on the key's
//!   revision), many changes per transaction.
//! - Each instance keeps a watched view of every instance's leases (fed back to its DHCP
//!   service, and through it to DNS, `/v1/leases` and `/v1/events`).
//! - Liveness is one etcd lease per instance; the live members split the 256 client buckets
//!   by rendezvous hashing ([`share`]); an instance cut off from etcd stops handing out
//!   dynamic addresses and keeps answering reserved nodes.
//!
//! [`etcd`] is a small client of etcd's JSON gateway, [`record`] the key layout.

#![warn(missing_docs)]

pub mod etcd;
pub mod log;
pub mod record;
pub mod share;

pub use log::{ClusterLog, ClusterMonitor, Config, Status, join};
