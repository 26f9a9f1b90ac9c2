//! Network boot serving for pserv (issue 11, in progress).
//!
//! - [`tftp`]: a read-only TFTP server as a sans-IO state machine: packets (RFC 1350) and
//!   option negotiation (RFC 2347 with blksize, tsize, timeout and windowsize: RFC 2348, 2349,
//!   7440) over `(packet, now)`, retransmission with backoff, duplicate ACKs ignored (no
//!   sorcerer's apprentice). No sockets and no clock here; the socket loop, the virtual tree of
//!   boot files and HTTP boot are still to come.
//! - [`tree`]: the boot directory, read only and confined (no `..`, no symbolic link out).
//! - [`vtree`]: what TFTP and HTTP serve: the boot directory plus every machine's rendered
//!   pxelinux, GRUB and iPXE configuration, each only to its own machine.
//! - [`http`]: HTTP boot responses as a pure decision (GET/HEAD, one byte range, no
//!   redirects); its listener is still to come.
//!
//! Nothing here panics on a malformed packet: it is an error value the caller counts.

#![warn(missing_docs)]

pub mod http;
pub mod tftp;
pub mod tree;
pub mod vtree;
