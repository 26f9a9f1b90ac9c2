//! pserv's DHCPv4 responder.
//!
//! - [`server`]: the sans-IO server, sole owner of the dynamic leases.
//!   `Server::handle(table, now, meta, packet)` decides the reply (DISCOVER/OFFER, REQUEST in
//!   every state, ACK/NAK, RELEASE, DECLINE, INFORM; PXE and iPXE boot files; relays, option
//!   82, link and subnet selection) and the lease change that must be durable before the reply
//!   leaves; `poll_timeout`/`handle_timeout(now)` end leases, offers and quarantines on time;
//!   `publish` writes what changed to the readers' [`pserv_core::lease::LeaseBoard`].
//! - [`io`]: binds the socket and runs the loop that owns the server and the lease journal,
//!   until its shutdown signal.
//! - [`reply`]: RFC 2131 §4.1 reply addressing as a pure function.
//! - [`guard`]: option-length checks in front of dhcproto's decoder, which asserts on some
//!   malformed lengths.
//!
//! This crate never panics on a malformed packet: it is a counted drop.

#![warn(missing_docs)]

mod arp;
pub mod guard;
pub mod io;
pub mod reply;
pub mod server;

pub use reply::Destination;
pub use server::{BootChain, DropReason, Meta, Outcome, Reply, Server};
