//! pserv's DHCPv4 responder.
//!
//! - [`server`]: the sans-IO decision. `Server::handle(table, leases, now, meta, packet)`
//!   decides the reply (DISCOVER/OFFER, REQUEST in every state, ACK/NAK, RELEASE, DECLINE,
//!   INFORM; PXE and iPXE boot files; relays, option 82, link and subnet selection) on the
//!   lease set it is lent, and the lease change that must be durable before the reply leaves.
//!   `build` encodes replies and `boot` picks their boot fields (private).
//! - [`io`]: the DHCPv4 front end: receives, hands each request to the server with the lease
//!   owner's set ([`pserv_core::lease::Owner`], which holds the leases and their log, and
//!   decides when each reply may leave), and sends.
//! - [`reply`]: RFC 2131 §4.1 reply addressing as a pure function.
//! - [`v6`]: the sans-IO DHCPv6 server (RFC 8415), a second front end on the same lease
//!   owner.
//! - [`guard`]: option-length checks in front of dhcproto's decoder, which asserts on some
//!   malformed lengths.
//!
//! This crate never panics on a malformed packet: it is a counted drop.

#![warn(missing_docs)]

mod arp;
mod boot;
pub mod boot_server;
mod build;
pub mod guard;
pub mod io;
pub mod log;
pub mod proxy;
pub mod reply;
pub mod server;
pub mod v6;

pub use boot::BootChain;
pub use reply::Destination;
pub use server::{DropReason, Meta, Outcome, Reply, Server, Standalone};
