//! Shared by the tests that run the binary on loopback: `pserv serve` on ports the kernel
//! picks, stopped by its PID when dropped.

#![allow(dead_code, clippy::unwrap_used)]

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::Duration;

use pserv_tests::process::{Process, Signal};

pub(crate) const PSERV: &str = env!("CARGO_BIN_EXE_pserv");

/// A running `pserv serve`, stopped by its PID on drop.
pub(crate) struct Server {
    pub(crate) process: Process,
    /// The control API's base URL.
    pub(crate) control: String,
    pub(crate) dns: SocketAddr,
    pub(crate) dhcp: SocketAddr,
    /// TFTP, when started with a boot directory.
    pub(crate) tftp: Option<SocketAddr>,
    /// HTTP boot, likewise.
    pub(crate) boot_http: Option<SocketAddr>,
    /// The syslog receiver, likewise.
    pub(crate) syslog: Option<SocketAddr>,
}

impl Server {
    /// `pserv serve` on loopback (DNS, DHCP, the control API and syslog on ports the kernel picks)
    /// with `args` added; returns once it printed where it listens.
    pub(crate) fn start(args: &[&str]) -> Self {
        Self::start_in(Command::new(PSERV), args)
    }

    /// [`Server::start`] run through `cmd`: the binary itself, or a command that executes it
    /// with the arguments that follow (a shell that sets a limit first).
    pub(crate) fn start_in(mut cmd: Command, args: &[&str]) -> Self {
        let mut process = Process::spawn(
            cmd.arg("serve")
                .args(["--dns-listen", "127.0.0.1:0"])
                .args(["--control-listen", "127.0.0.1:0"])
                .args(["--dhcp-listen", "127.0.0.1:0"])
                .args(["--syslog-listen", "127.0.0.1:0"])
                .args(args)
                .env("RUST_LOG", "warn")
                .stdout(Stdio::piped())
                .stderr(Stdio::null()),
        );
        let banner = pserv_tests::read_banner(process.child());
        Self {
            process,
            control: banner.control,
            dns: banner.dns,
            dhcp: banner.dhcp,
            tftp: banner.tftp,
            boot_http: banner.boot_http,
            syslog: banner.syslog,
        }
    }

    /// The control API's URL for `path`.
    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}{path}", self.control)
    }

    /// One sample of `/metrics` (0 if absent); see [`pserv_tests::metric`].
    pub(crate) fn metric(&self, name: &str) -> u64 {
        let mut r = ureq::get(&self.url("/metrics")).call().unwrap();
        pserv_tests::metric(&r.body_mut().read_to_string().unwrap(), name)
    }

    pub(crate) fn signal(&self, sig: Signal) {
        self.process.signal(sig);
    }

    /// SIGTERM, then the exit status (bounded wait).
    pub(crate) fn stop(mut self) -> std::process::ExitStatus {
        self.process
            .terminate(Duration::from_secs(10))
            .expect("pserv did not stop on SIGTERM")
    }
}
