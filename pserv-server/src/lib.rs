//! pserv as a library: the whole server — DHCPv4, authoritative DNS, network boot (TFTP, HTTP
//! boot, per-node boot files) and the control API — from one [`Config`], inside the
//! embedder's own tokio runtime.
//!
//! ```no_run
//! # async fn run() -> Result<(), pserv_server::Error> {
//! let config = pserv_server::Config::resolve(Default::default(), Default::default())
//!     .expect("the defaults are valid");
//! let server = pserv_server::serve(config).await?; // loopback, unprivileged ports
//! println!("DNS on {:?}, DHCP on {}, control API on {}", server.dns, server.dhcp, server.control);
//! server.shutdown().await?; // flushes and closes the lease journal
//! # Ok(()) }
//! ```
//!
//! Ownership: the DHCP service's lease owner ([`pserv_core::lease::Owner`]) holds the dynamic
//! leases and their log (the journal, or etcd in cluster mode); DNS, boot and the control API
//! read the lease view it publishes ([`pserv_core::lease::LeaseBoard`]) and the table the store
//! publishes. Every service starts from sockets [`serve`] has already bound and stops on
//! one shutdown signal ([`Handle::shutdown_token`]). The `pserv` binary is a thin CLI over this.
//!
//! - [`config`]: the TOML file and the flags, resolved into a validated [`Config`].
//! - [`serve`] and [`Handle`]: start, publish from code, stop.
//! - the control API's routes and its HTTP server, and the `/metrics` encoding (private).

#![warn(missing_docs)]

pub mod config;
mod control;
mod events;
mod metrics;
mod page;
mod serve;
mod views;

pub use config::{Config, ConfigError};
pub use serve::{BOOT_LOG, DHCP_LOG, Error, Handle, ReloadError, serve};
