//! pserv's authoritative DNS responder.
//!
//! It answers for the forward zones of the snapshot's domains and the reverse zones
//! (`in-addr.arpa`, `ip6.arpa`) of its subnets, from the live [`pserv_core::Table`]:
//! A, AAAA, PTR, SOA (serial = snapshot generation), NS; NXDOMAIN vs NODATA with the SOA for
//! negative caching; REFUSED for names outside its zones (never an open resolver).
//!
//! Layers: [`answer::resolve`] is the pure decision (table, zones, leases, labels, type);
//! [`answer()`] encodes it as hickory records and [`respond`] straight into wire bytes (the UDP
//! fast path, with hickory decoding and encoding for everything unusual); [`Zones`] is
//! compiled once per table generation; [`counters`] is what all of them count. None of these
//! touches a socket. [`udp`] is the batched UDP loop, [`tcp`] the TCP one (connections
//! capped), [`forward`] relays names outside the zones to the snapshot's upstreams, and
//! [`server`] runs them on each address as one service with its own `/metrics` collector.

#![warn(missing_docs)]

pub mod answer;
pub mod counters;
pub mod forward;
mod metrics;
pub mod respond;
pub mod server;
pub mod tcp;
pub mod udp;
pub mod zones;

pub use answer::{Answer, answer};
pub use pserv_core::lease::LeaseBoard;
pub use zones::Zones;
