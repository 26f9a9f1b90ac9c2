//! Shared by the tests that run the binary on loopback: `pserv serve` on ports the kernel
//! picks, and raw DNS queries and answers.

#![allow(dead_code, clippy::unwrap_used)]

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub(crate) const PSERV: &str = env!("CARGO_BIN_EXE_pserv");

/// A running `pserv serve`, killed on drop.
pub(crate) struct Server {
    pub(crate) child: Child,
    /// The control API's base URL.
    pub(crate) control: String,
    pub(crate) dns: SocketAddr,
    pub(crate) dhcp: SocketAddr,
    /// TFTP, when started with a boot directory.
    pub(crate) tftp: Option<SocketAddr>,
    /// HTTP boot, likewise.
    pub(crate) boot_http: Option<SocketAddr>,
}

impl Server {
    /// `pserv serve` on loopback (DNS, DHCP and the control API on ports the kernel picks)
    /// with `args` added; returns once it printed where it listens.
    pub(crate) fn start(args: &[&str]) -> Self {
        Self::start_in(Command::new(PSERV), args)
    }

    /// [`Server::start`] run through `cmd`: the binary itself, or a command that executes it
    /// with the arguments that follow (a shell that sets a limit first).
    pub(crate) fn start_in(mut cmd: Command, args: &[&str]) -> Self {
        let mut child = cmd
            .arg("serve")
            .args(["--dns-listen", "127.0.0.1:0"])
            .args(["--control-listen", "127.0.0.1:0"])
            .args(["--dhcp-listen", "127.0.0.1:0"])
            .args(args)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let banner = pserv_tests::read_banner(&mut child);
        Self {
            child,
            control: banner.control,
            dns: banner.dns,
            dhcp: banner.dhcp,
            tftp: banner.tftp,
            boot_http: banner.boot_http,
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

    pub(crate) fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([&format!("-{sig}"), &self.child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok);
    }

    /// SIGTERM, then the exit status (bounded wait).
    pub(crate) fn stop(mut self) -> std::process::ExitStatus {
        self.signal("TERM");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                return s;
            }
            assert!(Instant::now() < deadline, "pserv did not stop on SIGTERM");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A DNS query (no flags) for `name` A, with `id`.
pub(crate) fn a_query(id: u16, name: &str) -> Vec<u8> {
    let mut q = id.to_be_bytes().to_vec();
    q.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0, 0, 0]);
    for l in name.split('.') {
        q.push(l.len() as u8);
        q.extend_from_slice(l.as_bytes());
    }
    q.extend_from_slice(&[0, 0, 1, 0, 1]);
    q
}

/// The address in a NOERROR reply with exactly one answer (an A record, last in the message);
/// otherwise the rcode.
pub(crate) fn a_answer(reply: &[u8]) -> Result<[u8; 4], u8> {
    let rcode = reply[3] & 0x0f;
    let answers = u16::from_be_bytes([reply[6], reply[7]]);
    if rcode != 0 || answers != 1 {
        return Err(rcode);
    }
    let n = reply.len();
    Ok(reply[n - 4..n].try_into().unwrap())
}
