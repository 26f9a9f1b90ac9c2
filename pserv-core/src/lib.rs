//! pserv's core: everything both responders share, and nothing that touches a socket.
//!
//! - [`snapshot`]: the JSON contract a controller pushes (serde types, unknown fields rejected).
//! - [`Table::compile`]: validation and compilation in one pass. It reports *every* problem
//!   ([`Problem`]) or yields an immutable [`Table`] holding every index the hot paths need.
//! - [`Store`]: the served table behind one atomic pointer; a publish swaps it whole.
//! - [`lease`]: dynamic leases for machines the controller does not know, and [`journal`]: their
//!   append-only, group-committed, compacted log, so a restart (even after `kill -9`) recovers
//!   every acknowledged lease.
//!
//! Time is always passed in (`now`, in seconds), never read inside the logic, so every rule is
//! testable on virtual time.

#![warn(missing_docs)]

pub mod histogram;
pub mod journal;
pub mod lease;
mod mac;
pub mod name;
pub mod option;
mod problem;
pub mod snapshot;
mod store;
pub mod table;

pub use mac::{MacAddr, MacParseError};
pub use problem::{Problem, Site};
pub use snapshot::Snapshot;
pub use store::{PublishError, Published, Store};
pub use table::{Table, validate};
