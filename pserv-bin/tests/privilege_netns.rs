//! Least privilege, tested (issue 26), with real clients across a veth pair between two
//! namespaces this test creates:
//! - pserv started as an unprivileged user holding only `CAP_NET_BIND_SERVICE` (what the
//!   package's unit gives it, set here with `setpriv`) serves every protocol on its privileged
//!   ports: a DORA from udhcpc on the interface it is bound to, a DNS query from dig, a TFTP
//!   and an HTTP boot fetch from curl, a syslog message that becomes a `log` event;
//! - pserv started as root with `--user` binds the same ports, then runs as that user with no
//!   capability in any set on any thread (`/proc/PID/task/*/status`), and still serves: a DORA
//!   journaled in the state directory it gave the user, and DNS.
//!
//! Needs root; runs (never skips) when `CI=true`.

#![allow(clippy::unwrap_used)]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use pserv_tests::dns::Dig;
use pserv_tests::process::Process;
use pserv_tests::{have_root, have_tool};

mod netns;
use netns::{Lab, udhcpc};

/// The unprivileged user both runs end up as.
const USER: &str = "nobody";

/// The test's files, readable by `USER`: the binary copied out of the build tree (which
/// another user may not reach), the snapshot, a boot directory; and a state directory.
struct Files {
    bin: PathBuf,
    boot: PathBuf,
    state: PathBuf,
}

fn files(lab: &Lab) -> Files {
    let dir = lab.dir.path();
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let bin = dir.join("pserv");
    std::fs::copy(netns::PSERV, &bin).unwrap();
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(&lab.snap, std::fs::Permissions::from_mode(0o644)).unwrap();
    let boot = dir.join("boot");
    std::fs::create_dir_all(&boot).unwrap();
    std::fs::write(boot.join("hello.txt"), b"served to anyone who asks\n").unwrap();
    let state = dir.join("state-unprivileged");
    std::fs::create_dir_all(&state).unwrap();
    let user = nix::unistd::User::from_name(USER).unwrap().unwrap();
    nix::unistd::chown(&state, Some(user.uid), Some(user.gid)).unwrap();
    Files { bin, boot, state }
}

/// `pserv serve` on every privileged port of the lab's server address, with `extra` flags,
/// run through `wrap` (a privilege-changing command, or none).
fn serve(lab: &Lab, f: &Files, state: &Path, wrap: &[&str], extra: &[&str]) -> (Process, String) {
    let p = lab.p();
    let mut cmd = lab
        .net
        .srv
        .exec(wrap.first().copied().unwrap_or(f.bin.to_str().unwrap()));
    if !wrap.is_empty() {
        cmd.args(&wrap[1..]).arg(&f.bin);
    }
    cmd.arg("serve")
        .args(["--snapshot", lab.snap.to_str().unwrap()])
        .args(["--boot-dir", f.boot.to_str().unwrap()])
        .args(["--dhcp-listen", "0.0.0.0:67", "--dhcp-interface", "vsrv"])
        .args(["--dns-listen", &format!("{p}.0.1:53")])
        .args(["--tftp-listen", &format!("{p}.0.1:69")])
        .args(["--boot-http-listen", &format!("{p}.0.1:80")])
        .args(["--syslog-listen", &format!("{p}.0.1:514")])
        .args(["--control-listen", "127.0.0.1:5380"])
        .args(["--state-dir", state.to_str().unwrap()])
        .args(extra)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut process = Process::spawn(&mut cmd);
    let control = pserv_tests::read_banner(process.child()).control;
    (process, control)
}

/// `/proc/PID/task/*/status` of every thread: (uids, [(capability set, value)]).
fn threads(pid: u32) -> Vec<(String, Vec<(String, u64)>)> {
    let mut out = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let Ok(status) = std::fs::read_to_string(task.unwrap().path().join("status")) else {
            continue;
        };
        let uid = status
            .lines()
            .find_map(|l| l.strip_prefix("Uid:"))
            .unwrap()
            .trim()
            .to_owned();
        let caps = status
            .lines()
            .filter_map(|l| l.split_once(':'))
            .filter(|(k, _)| k.starts_with("Cap") && *k != "CapBnd")
            .map(|(k, v)| (k.to_owned(), u64::from_str_radix(v.trim(), 16).unwrap()))
            .collect();
        out.push((uid, caps));
    }
    out
}

/// `curl URL` from the client namespace: the body.
fn curl(lab: &Lab, url: &str) -> String {
    let out = lab
        .net
        .cli
        .exec("curl")
        .args(["-s", "--max-time", "10", url])
        .output()
        .unwrap();
    assert!(out.status.success(), "curl {url}: {out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The client side of every protocol, from the client namespace: the address it leased.
fn use_every_service(lab: &Lab) -> String {
    let p = lab.p();
    let leased = udhcpc(&lab.net).expect("a DHCP lease");
    assert_eq!(leased, format!("{p}.0.10"));
    lab.net.cli.addr("vcli", &format!("{leased}/16"));
    let dig = Dig::new(format!("{p}.0.1:53").parse().unwrap()).in_netns(&lab.net.cli);
    assert_eq!(dig.short(&["node1.lab", "A"]), leased);
    let tftp = curl(lab, &format!("tftp://{p}.0.1/hello.txt"));
    assert_eq!(tftp, "served to anyone who asks\n");
    let http = curl(lab, &format!("http://{p}.0.1/hello.txt"));
    assert_eq!(http, tftp);
    leased
}

#[test]
fn unprivileged_with_only_net_bind_service_serves_every_protocol() {
    if !(have_root("least-privilege tests (network namespaces, setpriv)")
        && have_tool("ip")
        && have_tool("setpriv")
        && have_tool("udhcpc")
        && have_tool("dig")
        && have_tool("curl"))
    {
        return;
    }
    let lab = Lab::new("u", 79);
    let f = files(&lab);
    let wrap = [
        "setpriv",
        "--reuid",
        USER,
        "--regid",
        "nogroup",
        "--clear-groups",
        "--inh-caps=-all,+net_bind_service",
        "--ambient-caps=-all,+net_bind_service",
        "--bounding-set=-all,+net_bind_service",
        "--no-new-privs",
    ];
    let (pserv, control) = serve(&lab, &f, &f.state, &wrap, &[]);
    // Exactly the one capability, on every thread.
    const NET_BIND_SERVICE: u64 = 1 << 10;
    for (uid, caps) in threads(pserv.id()) {
        assert!(uid.starts_with("65534"), "{uid}");
        for (set, value) in caps {
            let want = if set == "CapInh" || set == "CapAmb" || set == "CapPrm" || set == "CapEff" {
                NET_BIND_SERVICE
            } else {
                0
            };
            assert_eq!(value, want, "{set}");
        }
    }
    let leased = use_every_service(&lab);
    // A syslog message from the machine becomes a `log` event for its node.
    let p = lab.p().to_owned();
    lab.net.cli.enter(move || {
        let sock = std::net::UdpSocket::bind(format!("{p}.0.10:0")).unwrap();
        sock.send_to(
            b"<14>installer: hello from an unprivileged pserv",
            format!("{p}.0.1:514"),
        )
        .unwrap();
    });
    let t0 = Instant::now();
    loop {
        let out = lab
            .net
            .srv
            .exec("curl")
            .args(["-s", "--max-time", "1"])
            .arg(format!("{control}/v1/events?since=0&kind=log"))
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        if text.contains("hello from an unprivileged pserv") {
            assert!(text.contains("\"node\":\"n1\""), "{text}");
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "no log event: {text}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // The journal is the unprivileged process's own.
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(f.state.join("leases.journal")).unwrap();
    assert_eq!(meta.uid(), 65534, "{leased}");
}

#[test]
fn started_as_root_user_drops_every_capability_after_binding() {
    if !(have_root("least-privilege tests (network namespaces)")
        && have_tool("ip")
        && have_tool("udhcpc")
        && have_tool("dig")
        && have_tool("curl"))
    {
        return;
    }
    let lab = Lab::new("r", 80);
    let f = files(&lab);
    // A state directory root creates: --user gives it to the user.
    // A state directory the user already had (an earlier run), in which it planted links to
    // root's files under the journal's names: root must follow none of them, and give away
    // nothing but the directory and its plain files.
    let state = lab.dir.path().join("state-root");
    std::fs::create_dir_all(&state).unwrap();
    let victim = lab.dir.path().join("root-owned");
    std::fs::write(&victim, b"root's\n").unwrap();
    std::os::unix::fs::symlink(&victim, state.join("leases.compacting")).unwrap();
    std::os::unix::fs::symlink(&victim, state.join("planted")).unwrap();
    let (pserv, _control) = serve(&lab, &f, &state, &[], &["--user", USER]);
    let v = std::fs::metadata(&victim).unwrap();
    assert_eq!(
        (v.uid(), std::fs::read(&victim).unwrap()),
        (0, b"root's\n".to_vec())
    );
    for (uid, caps) in threads(pserv.id()) {
        assert_eq!(uid.split_whitespace().collect::<Vec<_>>(), ["65534"; 4]);
        for (set, value) in caps {
            assert_eq!(value, 0, "{set} on a thread");
        }
    }
    use_every_service(&lab);
    let meta = std::fs::metadata(state.join("leases.journal")).unwrap();
    use std::os::unix::fs::MetadataExt;
    assert_eq!(meta.uid(), 65534, "the journal is the user's");
    // The ACK for the reserved node is not journaled (reservations are not leases): a
    // dynamic client's is, written by the user.
    lab.net.set_client_mac("52:54:00:bb:00:02");
    let dynamic = udhcpc(&lab.net).expect("a dynamic lease");
    assert!(
        dynamic.starts_with(&format!("{}.200.", lab.p())),
        "{dynamic}"
    );
    let journal = std::fs::metadata(state.join("leases.journal")).unwrap();
    assert!(
        journal.len() > meta.len(),
        "the dynamic lease was journaled by the user"
    );
}
