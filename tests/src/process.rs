//! Processes a test starts, each owned by a [`Process`]: when the guard drops (the test ended or
//! panicked) the process is stopped by its PID — SIGTERM, then SIGKILL after a grace period —
//! and reaped. Nothing here finds a process by name, so a test can only ever stop what it
//! started.
//!
//! A process started through `ip netns exec` is the process itself (`ip` execs it), so its PID
//! is the one to signal; a program run through `timeout` gets the SIGTERM passed on (QEMU
//! under `timeout`), which is why the first signal is SIGTERM and not SIGKILL.

use std::process::{Child, Command, ExitStatus, Output};
use std::time::{Duration, Instant};

use nix::sys::signal;
use nix::unistd::Pid;

pub use nix::sys::signal::Signal;

/// How long a dropped [`Process`] has to exit after SIGTERM before it gets SIGKILL.
pub const GRACE: Duration = Duration::from_secs(5);

/// A child process stopped by its PID when dropped (see the module doc).
#[derive(Debug)]
pub struct Process {
    /// `None` once waited for by [`Process::output`].
    child: Option<Child>,
}

impl Process {
    /// Starts `cmd`; panics, naming it, if it cannot be started.
    pub fn spawn(cmd: &mut Command) -> Self {
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
        Self::new(child)
    }

    /// Takes ownership of an already started child.
    pub fn new(child: Child) -> Self {
        Self { child: Some(child) }
    }

    fn child_ref(&self) -> &Child {
        self.child
            .as_ref()
            .expect("the process is owned until output()")
    }

    /// The child itself, e.g. to take its piped stdout.
    pub fn child(&mut self) -> &mut Child {
        self.child
            .as_mut()
            .expect("the process is owned until output()")
    }

    /// Its PID.
    pub fn id(&self) -> u32 {
        self.child_ref().id()
    }

    /// Sends `sig` to it (by PID). Panics if it is gone: a test signals a process it expects
    /// to be running.
    pub fn signal(&self, sig: Signal) {
        let pid = Pid::from_raw(i32::try_from(self.id()).expect("a PID fits in an i32"));
        signal::kill(pid, sig).unwrap_or_else(|e| panic!("{sig} to {pid}: {e}"));
    }

    /// Its exit status, if it has exited (reaped); `None` while it runs.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child().try_wait().ok().flatten()
    }

    /// `kill -9`: SIGKILL, then reaps it.
    pub fn kill(&mut self) {
        if let Some(c) = self.child.as_mut() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM, then waits up to `grace`: the exit status if it exited in time; otherwise
    /// SIGKILL, reaped, and `None`. An already exited process returns its status.
    pub fn terminate(&mut self, grace: Duration) -> Option<ExitStatus> {
        if let Some(s) = self.exited() {
            return Some(s);
        }
        let pid = Pid::from_raw(i32::try_from(self.id()).expect("a PID fits in an i32"));
        let _ = signal::kill(pid, Signal::SIGTERM);
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if let Some(s) = self.exited() {
                return Some(s);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.kill();
        None
    }

    /// Waits for it to exit on its own and collects its piped output.
    pub fn output(mut self) -> Output {
        let child = self
            .child
            .take()
            .expect("the process is owned until output()");
        child.wait_with_output().expect("waiting for a child")
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if self.child.is_some() {
            self.terminate(GRACE);
        }
    }
}

/// Runs `args` (the program first) to completion and asserts it succeeded: for set-up
/// commands (`ip`, `chmod`) whose failure makes the rest of a test meaningless.
pub fn run(args: &[&str]) -> Output {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("cannot run {args:?}: {e}"));
    assert!(out.status.success(), "{args:?}: {out:?}");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dropped_process_is_stopped_by_its_pid() {
        let p = Process::spawn(Command::new("sleep").arg("30"));
        let pid = p.id();
        assert!(std::path::Path::new(&format!("/proc/{pid}")).exists());
        drop(p);
        // Reaped: no zombie left under this PID (unless the PID was already reused).
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        assert!(!stat.contains("(sleep)"), "{stat}");
    }

    #[test]
    fn terminate_reports_a_clean_exit_and_kill_ends_one_that_ignores_sigterm() {
        let mut p = Process::spawn(Command::new("sleep").arg("30"));
        // sleep dies of SIGTERM: exited in time, by a signal.
        let s = p
            .terminate(Duration::from_secs(5))
            .expect("sleep stops on SIGTERM");
        assert!(!s.success());
        let mut stubborn =
            Process::spawn(Command::new("sh").args(["-c", "trap '' TERM; exec sleep 30"]));
        std::thread::sleep(Duration::from_millis(100));
        let t = Instant::now();
        assert_eq!(stubborn.terminate(Duration::from_millis(300)), None);
        assert!(t.elapsed() < Duration::from_secs(5));
        assert!(stubborn.exited().is_some());
    }

    #[test]
    fn output_collects_what_it_wrote() {
        let p = Process::spawn(
            Command::new("echo")
                .arg("hi")
                .stdout(std::process::Stdio::piped()),
        );
        let out = p.output();
        assert!(out.status.success());
        assert_eq!(out.stdout, b"hi\n");
    }
}
