//! pserv's authoritative DNS responder.
//!
//! It answers for the forward zones of the snapshot's domains and the reverse zones
//! (`in-addr.arpa`, `ip6.arpa`) of its subnets, from the live [`pserv_core::Table`]:
//! A, AAAA, PTR, SOA (serial = snapshot generation), NS; NXDOMAIN vs NODATA with the SOA for
//! negative caching; REFUSED for names outside its zones (never an open resolver).
//!
//! Layers: [`answer()`] is pure (table, zones, leases, name, type) -> records; [`Zones`] is
//! compiled once per table generation; [`server`] is the hickory socket layer.

#![warn(missing_docs)]

pub mod answer;
pub mod server;
pub mod zones;

pub use answer::{Answer, LeaseLookup, NoLeases, answer};
pub use zones::Zones;
