//! pserv's edge: everything that touches a socket, written once for every service (DHCP, DNS,
//! TFTP, HTTP boot, the control API).
//!
//! - [`udp`]: binding with the options a server socket needs (broadcast, IP_PKTINFO, a device,
//!   large buffers), batched receive (`recvmmsg`, with each datagram's arrival interface and
//!   local address) and batched send (`sendmmsg`), and the one-off send from a named interface.
//! - [`tcp`]: binding listeners for the runtime, and the accept that pauses instead of spinning
//!   when the process is out of descriptors.
//! - [`http`] (feature `http`): the capped HTTP/1.1 accept loop the control API and HTTP boot
//!   run on (connection cap, header timeout, bounded graceful shutdown).
//! - [`zerocopy`] (feature `http`): files held in sealed memfds and sent with `sendfile(2)`
//!   (HTTP boot's kernels and initrds).
//! - [`shutdown`]: one shutdown signal that also wakes threads blocked in a receive, so a
//!   service notices it at once rather than at its next read timeout.
//! - [`rate`]: per-client rate limits (token buckets by key, bounded), for the endpoints
//!   machines report to (boot progress, syslog).
//! - [`service`]: the shape every service returns once started ([`service::Running`]), and
//!   [`metrics`]: the helpers each service's own `/metrics` collector is written with.
//!
//! Protocol decisions never live here: this crate moves bytes and reports where they came from.

#![warn(missing_docs)]

#[cfg(feature = "http")]
pub mod http;
pub mod metrics;
pub mod rate;
pub mod service;
pub mod shutdown;
pub mod tcp;
pub mod udp;
#[cfg(feature = "http")]
pub mod zerocopy;

pub use service::Running;
pub use shutdown::wake_on_cancel;
