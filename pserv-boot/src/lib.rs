//! Network boot serving for pserv: TFTP and HTTP boot of one virtual tree, the boot directory
//! plus each machine's rendered loader configuration.
//!
//! - [`tftp`]: a read-only TFTP server. The core is sans-IO: packets (RFC 1350) and option
//!   negotiation (RFC 2347 with blksize, tsize, timeout and windowsize: RFC 2348, 2349, 7440)
//!   over `(packet, now)`, retransmission with backoff, duplicate ACKs ignored (no sorcerer's
//!   apprentice). [`tftp::service`] is the thin tokio loop around it (admission, one socket per
//!   transfer, answering from the address the request reached), started with
//!   [`tftp::service::start`]; [`tftp::client`] is a read client for load generators and tests.
//! - [`http`]: HTTP boot. [`http::plan`] decides a response (GET/HEAD, one byte range, never a
//!   redirect) as a pure function; [`http::start`] runs the listener on pserv's capped accept
//!   loop, with boot files a rack fetches together kept in memory (weighed by size, read once
//!   however many machines ask at once, read again when replaced).
//! - [`tree`]: the boot directory, read only and confined (no `..`, no symbolic link out).
//! - [`assemble`]: `pserv boot-dir`, a boot directory filled from the distribution's
//!   packages (iPXE, signed shim and GRUB for Secure Boot, pxelinux).
//! - [`vtree`]: what TFTP and HTTP serve: the boot directory plus every machine's rendered
//!   pxelinux, GRUB and iPXE configuration, each only to its own machine, under the names of
//!   [`pserv_core::table::names`].
//!
//! Both services take already bound sockets and the shutdown token and return a
//! [`pserv_net::Running`] (their addresses, their own `/metrics` collector, a join), report each
//! request's end through a callback (the boot-progress events) and count every refusal.
//!
//! Not here: the templates and boot profiles (compiled and rendered by `pserv_core::table`),
//! the DHCP options that point a machine at these files (pserv-dhcp), socket helpers
//! (pserv-net), and the event stream itself (pserv-server). Nothing here panics on a malformed
//! packet or request: it is an error value the caller counts or a refusal the client gets.

#![warn(missing_docs)]

pub mod assemble;
pub mod http;
pub mod tftp;
pub mod tree;
pub mod vtree;
