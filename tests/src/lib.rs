//! Helpers for pserv's end-to-end tests: finding real peers, deciding whether a test that
//! needs one may skip, and reading what the binary prints and reports; and, in modules, the
//! one set every test builds on:
//!
//! - [`process`]: processes a test starts, stopped by their PID when their guard drops;
//! - [`netns`]: network namespaces and the links between them, deleted when dropped, so every
//!   packet stays on loopback or inside namespaces the test made;
//! - [`dhcp`]: the builder of DHCP client messages, malformed variants, a relayed DORA;
//! - [`dns`]: raw DNS queries and answers.
//!
//! This crate depends on no pserv crate, so any pserv crate's tests may use it.

pub mod dhcp;
pub mod dns;
pub mod netns;
pub mod process;
pub mod webdriver;

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

/// The addresses `pserv serve` printed once it was ready.
#[derive(Debug, Clone)]
pub struct Banner {
    /// The control API's base URL, e.g. `http://127.0.0.1:5380`.
    pub control: String,
    /// The DNS address (the first one printed).
    pub dns: std::net::SocketAddr,
    /// The DHCP address.
    pub dhcp: std::net::SocketAddr,
    /// The TFTP address, when it serves a boot directory.
    pub tftp: Option<std::net::SocketAddr>,
    /// The HTTP boot address, when it serves a boot directory.
    pub boot_http: Option<std::net::SocketAddr>,
    /// The syslog receiver's address, with boot serving.
    pub syslog: Option<std::net::SocketAddr>,
}

/// Reads a starting `pserv serve`'s stdout up to its control-API line (printed last), then keeps
/// draining stdout (and stderr, if piped) so the server never blocks on a full pipe. Panics, with
/// whatever the server wrote to a piped stderr, if it exits first.
pub fn read_banner(child: &mut std::process::Child) -> Banner {
    use std::io::{BufRead, BufReader, Read};
    let mut stderr = child.stderr.take();
    let mut lines = BufReader::new(child.stdout.take().expect("stdout is piped")).lines();
    let (mut dns, mut dhcp, mut tftp, mut boot_http, mut syslog) = (None, None, None, None, None);
    let control = loop {
        let Some(Ok(line)) = lines.next() else {
            let mut err = String::new();
            if let Some(e) = stderr.as_mut() {
                let _ = e.read_to_string(&mut err);
            }
            panic!("pserv exited before it was ready: {err}");
        };
        let addr = |rest: &str| rest.split(' ').next().and_then(|a| a.parse().ok());
        if let Some(rest) = line.strip_prefix("control API on ") {
            break rest.split(':').take(3).collect::<Vec<_>>().join(":");
        } else if let Some(rest) = line.strip_prefix("DNS on ") {
            dns = dns.or_else(|| addr(rest));
        } else if let Some(rest) = line.strip_prefix("DHCP on ") {
            dhcp = addr(rest);
        } else if let Some(rest) = line.strip_prefix("TFTP on ") {
            tftp = addr(rest);
        } else if let Some(rest) = line.strip_prefix("HTTP boot on http://") {
            boot_http = addr(&rest.replace('/', " "));
        } else if let Some(rest) = line.strip_prefix("syslog on ") {
            syslog = addr(rest);
        }
    };
    std::thread::spawn(move || lines.for_each(drop));
    if let Some(mut e) = stderr {
        std::thread::spawn(move || std::io::copy(&mut e, &mut std::io::sink()));
    }
    Banner {
        control,
        dns: dns.expect("pserv printed its DNS address"),
        dhcp: dhcp.expect("pserv printed its DHCP address"),
        tftp,
        boot_http,
        syslog,
    }
}

/// One sample of a Prometheus text exposition: the value on the line that starts with `name`
/// (the metric with its labels, e.g. `pserv_dns_tcp_open ` or
/// `pserv_dhcp_dropped_total{reason="Malformed"}`); 0 if there is none.
pub fn metric(text: &str, name: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|v| v.trim().parse().ok()))
        .unwrap_or(0)
}

/// A QEMU serial console written to `path` so far, as text: ANSI escape sequences (CSI:
/// ESC `[` parameters final-byte) and carriage returns removed. Empty if there is no file yet.
pub fn serial_console(path: &std::path::Path) -> String {
    let raw = std::fs::read(path).unwrap_or_default();
    let text = String::from_utf8_lossy(&raw);
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            if chars.peek() == Some(&'[') {
                chars.next();
                for d in chars.by_ref() {
                    if d.is_ascii_alphabetic() {
                        break;
                    }
                }
            }
            continue;
        }
        if c != '\r' {
            out.push(c);
        }
    }
    out
}

/// Writes to `out` an initramfs (built in `work`) of a static `busybox` and an `/init` that
/// prints `PSERV-BOOTED host=<pserv.host= from the command line>` on `/dev/<tty>` and powers
/// off: enough of a system to prove a netboot reached userspace with the command line the
/// server rendered.
pub fn initramfs(
    work: &std::path::Path,
    busybox: &std::path::Path,
    tty: &str,
    out: &std::path::Path,
) {
    for d in ["bin", "dev", "proc", "sys"] {
        std::fs::create_dir_all(work.join(d)).expect("the initramfs tree");
    }
    std::fs::copy(busybox, work.join("bin/busybox")).expect("a static busybox");
    std::fs::write(
        work.join("init"),
        format!(
            "#!/bin/busybox sh\n\
             /bin/busybox mount -t proc proc /proc\n\
             /bin/busybox mount -t devtmpfs dev /dev 2>/dev/null\n\
             h=none\n\
             for x in $(/bin/busybox cat /proc/cmdline); do\n\
             \x20 case \"$x\" in pserv.host=*) h=\"${{x#pserv.host=}}\" ;; esac\n\
             done\n\
             echo \"PSERV-BOOTED host=$h\" > /dev/{tty}\n\
             /bin/busybox sync\n\
             /bin/busybox poweroff -f\n"
        ),
    )
    .expect("the initramfs's /init");
    crate::process::run(&[
        "chmod",
        "755",
        work.join("init").to_str().expect("a UTF-8 path"),
    ]);
    crate::process::run(&[
        "mknod",
        work.join("dev/console").to_str().expect("a UTF-8 path"),
        "c",
        "5",
        "1",
    ]);
    let status = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "cd '{}' && find . | cpio -o -H newc --quiet | gzip -1 > '{}'",
            work.display(),
            out.display()
        ))
        .status()
        .expect("running cpio");
    assert!(status.success());
}

/// `GET /v1/events` on a control API at `addr` (`host:port`), read up to the end of the
/// response head: what tests follow the event stream with. [`EventStream::seen`] holds every
/// byte read so far.
pub struct EventStream {
    stream: std::net::TcpStream,
    /// Everything read so far, the response head included.
    pub seen: Vec<u8>,
}

impl EventStream {
    /// Connects, asks for the stream and reads its response head (reads time out after
    /// `timeout`).
    pub fn open(addr: &str, timeout: std::time::Duration) -> Self {
        use std::io::Write;
        let mut stream = std::net::TcpStream::connect(addr).expect("the control API");
        stream
            .set_read_timeout(Some(timeout))
            .expect("a read timeout");
        write!(
            stream,
            "GET /v1/events HTTP/1.1\r\nHost: {addr}\r\nAccept: text/event-stream\r\n\r\n"
        )
        .expect("the request");
        let mut s = Self {
            stream,
            seen: Vec::new(),
        };
        while !s.text().contains("\r\n\r\n") {
            assert!(
                s.read_more().expect("the response head") > 0,
                "stream closed"
            );
        }
        s
    }

    /// Reads what has arrived into [`EventStream::seen`]; 0 once the stream is closed.
    pub fn read_more(&mut self) -> std::io::Result<usize> {
        use std::io::Read;
        let mut buf = [0u8; 4096];
        let n = self.stream.read(&mut buf)?;
        self.seen.extend_from_slice(&buf[..n]);
        Ok(n)
    }

    /// Everything read so far, as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.seen).into_owned()
    }
}

/// A plain `GET path` of an HTTP/1.1 server at `addr`, read to the end (`Connection: close`):
/// the whole response, head and body.
pub fn http_get(addr: std::net::SocketAddr, path: &str) -> String {
    http_get_as(addr, path, None)
}

/// [`http_get`] with `Authorization: Bearer TOKEN` when a token is given.
pub fn http_get_as(addr: std::net::SocketAddr, path: &str, token: Option<&str>) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).expect("the server");
    s.set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .expect("a read timeout");
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: pserv\r\n{auth}Connection: close\r\n\r\n"
    )
    .expect("the request");
    let mut out = String::new();
    s.read_to_string(&mut out).expect("the response");
    out
}
