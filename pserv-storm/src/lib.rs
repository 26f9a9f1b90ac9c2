//! pserv-storm: drives DHCP the way a rack of machines powering on does, against any server;
//! and syslog load against any receiver ([`syslog`]), counting what pserv streams back.
//!
//! Protocol logic is sans-IO ([`dhcp::Dora`] over `(packet, now)`, [`responder::respond`]);
//! the socket loops are thin ([`dhcp::run`], [`responder::serve`]).

pub mod boot;
pub mod dhcp;
pub mod responder;
pub mod stats;
pub mod syslog;
