//! pserv's syslog receiver: what installers and booted machines log over UDP, delivered as
//! `log` events (nothing is written to disk).
//!
//! - [`message`]: one datagram read into facility, severity, hostname, app and text, sans-IO
//!   ([`parse`]; RFC 3164 as senders really write it, and RFC 5424), never refusing one: a
//!   datagram with no valid `<PRI>` is delivered raw and marked malformed, one over
//!   [`MAX_MESSAGE`] is cut and marked truncated.
//! - [`limit`]: the per-source token bucket, in a table of bounded size.
//! - [`receiver`]: the decisions, sans-IO: [`Receiver::handle`] takes the time, the sender and
//!   the datagram and answers with the message or a counted [`DropReason`].
//! - [`service`]: the thread that receives in batches and hands each message, with the node the
//!   sender's address resolves to, to a callback; it starts and stops like every pserv service.
//!
//! What this crate does not do: resolve nodes (the caller's resolver does, from the table and
//! the leases), or encode and stream events (the caller's callback does).

#![warn(missing_docs)]

pub mod limit;
pub mod message;
pub mod receiver;
pub mod service;

pub use limit::{DEFAULT_LIMITS, Limits};
pub use message::{Facility, MAX_MESSAGE, Message, Severity, parse};
pub use receiver::{Counters, DropReason, Receiver};
pub use service::{LogLine, OnLog, Resolve, Setup, start};
