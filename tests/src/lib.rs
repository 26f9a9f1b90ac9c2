//! Helpers for pserv's end-to-end tests: finding real peers and deciding whether a test that
//! needs one may skip.

use std::process::Command;

/// Whether this run is CI (`CI=true`): there, a missing peer or privilege is a failure, never a
/// skip.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// Whether `tool` is on the PATH (found, never run: a DHCP client run "to see if it works"
/// would start asking on the host's own network). In CI a missing tool panics; elsewhere the
/// caller skips with the printed message.
pub fn have_tool(tool: &str) -> bool {
    use std::os::unix::fs::PermissionsExt;
    let path = std::env::var_os("PATH").unwrap_or_default();
    let ok = std::env::split_paths(&path)
        .chain(["/sbin".into(), "/usr/sbin".into()])
        .map(|dir| dir.join(tool))
        .any(|p| {
            p.metadata()
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        });
    if !ok {
        assert!(
            !in_ci(),
            "{tool} is required in CI (.ci/run installs it with apt-get)"
        );
        eprintln!("SKIP: {tool} not found; install it (see .ci/run) to run this test");
    }
    ok
}

/// Whether we are root. In CI, not being root is a failure; elsewhere the caller skips.
pub fn have_root(what: &str) -> bool {
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
    if !root {
        assert!(!in_ci(), "{what} needs root, and CI runs as root");
        eprintln!("SKIP: {what} needs root (network namespaces / privileged ports)");
    }
    root
}
