//! The Debian package (issue 26), built by `pkg/deb/build.sh` from this build's binary:
//! - its control data, conffile and contents (binary, unit, config, man pages, completions),
//!   checked with dpkg-deb, wherever dpkg-deb exists;
//! - installed with `dpkg -i` on the machine, when `CI=true` and as root only (a test does not
//!   install packages on a developer's machine): the `pserv` user and its state directory,
//!   the config readable by root and the pserv group only, the unit verified by
//!   `systemd-analyze verify` and neither enabled nor started, the shipped config served by
//!   the pserv user with only CAP_NET_BIND_SERVICE; then `dpkg --purge` takes every file back.

#![allow(clippy::unwrap_used)]

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::{Command, Stdio};

use pserv_tests::process::{Process, Signal};
use pserv_tests::{have_root, have_tool, in_ci};

const PSERV: &str = env!("CARGO_BIN_EXE_pserv");

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{cmd:?}: {out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn build(out: &Path) -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let printed = run(Command::new(root.join("pkg/deb/build.sh"))
        .env("PSERV_BIN", PSERV)
        .env("PSERV_DEB_DIR", out));
    printed.lines().last().unwrap().to_owned()
}

#[test]
fn the_debian_package_installs_a_least_privilege_service_and_purges_clean() {
    if !(have_tool("dpkg-deb") && have_tool("gzip") && have_tool("strip")) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let deb = build(dir.path());
    let info = run(Command::new("dpkg-deb").args(["--info", &deb]));
    for want in [
        "Package: pserv",
        "Depends: libc6",
        "Section: net",
        "conffiles",
        "postinst",
    ] {
        assert!(info.contains(want), "{want}: {info}");
    }
    let conffiles = run(Command::new("dpkg-deb").args(["--info", &deb, "conffiles"]));
    assert_eq!(conffiles.trim(), "/etc/pserv/pserv.toml");
    let contents = run(Command::new("dpkg-deb").args(["--contents", &deb]));
    for path in [
        "./usr/bin/pserv",
        "./usr/lib/systemd/system/pserv.service",
        "./etc/pserv/pserv.toml",
        "./usr/share/man/man1/pserv.1.gz",
        "./usr/share/man/man1/pserv-serve.1.gz",
        "./usr/share/bash-completion/completions/pserv",
        "./usr/share/zsh/vendor-completions/_pserv",
        "./usr/share/fish/vendor_completions.d/pserv.fish",
        "./usr/share/doc/pserv/copyright",
    ] {
        assert!(
            contents.contains(path),
            "{path} not in the package: {contents}"
        );
    }
    // The unit as shipped: the pserv user, one capability, the sandbox.
    let x = dir.path().join("x");
    run(Command::new("dpkg-deb").args(["-x", &deb]).arg(&x));
    let unit = std::fs::read_to_string(x.join("usr/lib/systemd/system/pserv.service")).unwrap();
    for line in [
        "User=pserv",
        "AmbientCapabilities=CAP_NET_BIND_SERVICE\n",
        "CapabilityBoundingSet=CAP_NET_BIND_SERVICE\n",
        "StateDirectory=pserv",
        "ProtectSystem=strict",
        "ProtectHome=yes",
        "PrivateTmp=yes",
        "NoNewPrivileges=yes",
        "SystemCallFilter=@system-service",
        "Type=notify",
    ] {
        assert!(unit.contains(line), "{line}");
    }
    // The shipped config is valid as it is (its addresses on loopback, its state elsewhere).
    serve_on_loopback(
        Command::new(PSERV)
            .arg("serve")
            .arg("--config")
            .arg(x.join("etc/pserv/pserv.toml"))
            .arg("--state-dir")
            .arg(dir.path().join("state")),
    );

    if !(in_ci() && have_root("installing the package (dpkg -i)") && have_tool("dpkg")) {
        eprintln!("not installing the package: only as root with CI=true");
        return;
    }
    let installed = Command::new("dpkg")
        .args(["-s", "pserv"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap()
        .success();
    // A fresh CI machine has no pserv: one there is a failed earlier run, never skipped.
    assert!(!installed, "pserv is already installed on this machine");
    // Purged however the test ends, a failed install included.
    let purge = scopeguard(|| {
        let _ = Command::new("dpkg").args(["--purge", "pserv"]).output();
    });
    run(Command::new("dpkg").args(["-i", &deb]));
    // Installed, neither enabled nor started.
    assert!(!Path::new("/etc/systemd/system/multi-user.target.wants/pserv.service").exists());
    assert!(!running("/usr/bin/pserv"), "installing started pserv");
    let user = run(Command::new("getent").args(["passwd", "pserv"]));
    assert!(
        user.contains("/usr/sbin/nologin") || user.contains("/bin/false"),
        "{user}"
    );
    let state = std::fs::metadata("/var/lib/pserv").unwrap();
    let config = std::fs::metadata("/etc/pserv/pserv.toml").unwrap();
    assert_eq!(state.mode() & 0o777, 0o750);
    assert_eq!(config.mode() & 0o777, 0o640);
    assert_eq!(config.uid(), 0);
    let uid: u32 = user.split(':').nth(2).unwrap().parse().unwrap();
    assert_eq!(state.uid(), uid);
    if have_tool("systemd-analyze") {
        run(Command::new("systemd-analyze").args([
            "verify",
            "--man=no",
            "/usr/lib/systemd/system/pserv.service",
        ]));
    }
    // The package's own binary, as the unit runs it: the pserv user, CAP_NET_BIND_SERVICE only.
    serve_on_loopback(
        Command::new("setpriv")
            .args(["--reuid", "pserv", "--regid", "pserv", "--init-groups"])
            .args([
                "--inh-caps=-all,+net_bind_service",
                "--ambient-caps=-all,+net_bind_service",
            ])
            .args([
                "/usr/bin/pserv",
                "serve",
                "--config",
                "/etc/pserv/pserv.toml",
            ]),
    );
    assert!(Path::new("/var/lib/pserv/leases.journal").exists());
    drop(purge);
    for gone in [
        "/usr/bin/pserv",
        "/etc/pserv",
        "/var/lib/pserv",
        "/usr/lib/systemd/system/pserv.service",
    ] {
        assert!(!Path::new(gone).exists(), "{gone} after purge");
    }
}

/// Runs `pserv serve` (as `cmd` starts it) with every address on loopback until it is ready,
/// then stops it: it must exit cleanly.
fn serve_on_loopback(cmd: &mut Command) {
    let mut p = Process::spawn(
        cmd.args([
            "--dns-listen",
            "127.0.0.1:0",
            "--dhcp-listen",
            "127.0.0.1:0",
        ])
        .args(["--control-listen", "127.0.0.1:0"])
        .stdout(Stdio::piped()),
    );
    let banner = pserv_tests::read_banner(p.child());
    assert!(banner.control.contains("127.0.0.1"));
    p.signal(Signal::SIGTERM);
    assert!(
        p.terminate(std::time::Duration::from_secs(10))
            .is_some_and(|s| s.success())
    );
}

/// Whether a process runs the program at `exe`.
fn running(exe: &str) -> bool {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .any(|e| std::fs::read_link(e.path().join("exe")).is_ok_and(|p| p == Path::new(exe)))
}

/// Runs `f` when dropped (the purge, however the test ends).
fn scopeguard(f: impl FnOnce()) -> impl Drop {
    struct Guard<F: FnOnce()>(Option<F>);
    impl<F: FnOnce()> Drop for Guard<F> {
        fn drop(&mut self) {
            if let Some(f) = self.0.take() {
                f();
            }
        }
    }
    Guard(Some(f))
}
