//! Helpers for pserv's end-to-end tests: finding real peers, deciding whether a test that
//! needs one may skip, and reading what the binary prints and reports.

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
}

/// Reads a starting `pserv serve`'s stdout up to its control-API line (printed last), then keeps
/// draining stdout (and stderr, if piped) so the server never blocks on a full pipe. Panics, with
/// whatever the server wrote to a piped stderr, if it exits first.
pub fn read_banner(child: &mut std::process::Child) -> Banner {
    use std::io::{BufRead, BufReader, Read};
    let mut stderr = child.stderr.take();
    let mut lines = BufReader::new(child.stdout.take().expect("stdout is piped")).lines();
    let (mut dns, mut dhcp, mut tftp, mut boot_http) = (None, None, None, None);
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

/// Malformed DHCP datagrams, each with the reason pserv counts its drop under
/// (`pserv_dhcp_dropped_total{reason="..."}`), made from valid DISCOVERs that `discover`
/// builds for a MAC: garbage, all-ones, a bare header, a BOOTREPLY, a hardware type other than
/// Ethernet, an option overflowing the packet, an option length dhcproto would assert on, a
/// hardware length over 16, and a DISCOVER padded past the 1,500-byte receive buffer.
pub fn malformed_dhcp(discover: impl Fn([u8; 6]) -> Vec<u8>) -> Vec<(Vec<u8>, &'static str)> {
    let end = |p: &[u8]| {
        p.iter()
            .rposition(|b| *b == 255)
            .expect("a DISCOVER ends with option 255")
    };
    let mut reply = discover([2, 0, 0, 0, 0, 8]);
    reply[0] = 2;
    let mut htype = discover([2, 0, 0, 0, 0, 9]);
    htype[1] = 6;
    let mut overflow = discover([2, 0, 0, 0, 0, 7]);
    overflow.truncate(end(&overflow));
    overflow.extend_from_slice(&[61, 200, 1, 2, 3]);
    let mut opt94 = discover([2, 0, 0, 0, 0, 6]);
    let at = end(&opt94);
    opt94.splice(at..at, [94, 2, 1, 2]);
    let mut hlen = discover([2, 0, 0, 0, 0, 5]);
    hlen[2] = 200;
    let mut oversized = discover([2, 0, 0, 0, 0, 4]);
    oversized.resize(4000, 0);
    vec![
        (vec![0u8; 10], "Malformed"),
        (vec![0xffu8; 600], "Malformed"),
        (vec![0x01u8; 240], "Malformed"),
        (overflow, "Malformed"),
        (hlen, "Malformed"),
        (reply, "NotAClientRequest"),
        (htype, "NotAClientRequest"),
        (opt94, "BadOptionLength"),
        (oversized, "Oversized"),
    ]
}

/// A DHCP client message from `mac` as a relay at `relay` (giaddr) forwards it, with `opts`
/// after the message type; its xid is made from the MAC.
pub fn relayed_dhcp(
    kind: dhcproto::v4::MessageType,
    mac: [u8; 6],
    relay: std::net::Ipv4Addr,
    opts: Vec<dhcproto::v4::DhcpOption>,
) -> Vec<u8> {
    use dhcproto::Encodable;
    use dhcproto::v4::{DhcpOption, Message, Opcode};
    use std::net::Ipv4Addr;
    let mut m = Message::new_with_id(
        u32::from_be_bytes([mac[2], mac[3], mac[4], mac[5]]),
        Ipv4Addr::UNSPECIFIED,
        Ipv4Addr::UNSPECIFIED,
        Ipv4Addr::UNSPECIFIED,
        relay,
        &mac,
    );
    m.set_opcode(Opcode::BootRequest);
    m.opts_mut().insert(DhcpOption::MessageType(kind));
    for o in opts {
        m.opts_mut().insert(o);
    }
    m.to_vec().expect("a DHCP message encodes")
}

/// DISCOVER then REQUEST of the offered address for `mac`, relayed from `relay` over `sock`
/// to `server` (whose identifier is 127.0.0.1 on loopback), with `extra` options in both; the
/// ACKed address, or `None` when a reply is missing, is not an OFFER then an ACK, or does not
/// decode.
pub fn relayed_dora(
    sock: &std::net::UdpSocket,
    server: std::net::SocketAddr,
    mac: [u8; 6],
    relay: std::net::Ipv4Addr,
    extra: Vec<dhcproto::v4::DhcpOption>,
) -> Option<std::net::Ipv4Addr> {
    use dhcproto::Decodable;
    use dhcproto::v4::{DhcpOption, Message, MessageType};
    let discover = relayed_dhcp(MessageType::Discover, mac, relay, extra.clone());
    sock.send_to(&discover, server).ok()?;
    let mut buf = [0u8; 1500];
    let n = sock.recv(&mut buf).ok()?;
    let offer = Message::from_bytes(&buf[..n]).ok()?;
    if offer.opts().msg_type() != Some(MessageType::Offer) {
        return None;
    }
    let mut opts = vec![
        DhcpOption::RequestedIpAddress(offer.yiaddr()),
        DhcpOption::ServerIdentifier(std::net::Ipv4Addr::new(127, 0, 0, 1)),
    ];
    opts.extend(extra);
    sock.send_to(
        &relayed_dhcp(MessageType::Request, mac, relay, opts),
        server,
    )
    .ok()?;
    let n = sock.recv(&mut buf).ok()?;
    let ack = Message::from_bytes(&buf[..n]).ok()?;
    (ack.opts().msg_type() == Some(MessageType::Ack)).then(|| ack.yiaddr())
}
