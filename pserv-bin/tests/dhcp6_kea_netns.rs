//! DHCPv6 against a reference (issue 27): the same scripted exchanges, relayed from one
//! link address, answered by pserv and by ISC Kea's kea-dhcp6 (Debian's 2.2) in turn, in
//! network namespaces this test creates, with the same subnet, pool, lifetimes and DNS
//! servers. Each reply is reduced to its shape (message type, status codes, the IA_NA's
//! timers and addresses, the options that answer what was asked) and the two servers'
//! shapes must match where RFC 8415 says what to answer; where it leaves room, both are
//! printed (the test's output is the record of how they differ).
//!
//! Needs root and kea-dhcp6 (`.ci/run` installs kea-dhcp6-server and never starts it); runs,
//! never skips, when `CI=true`. Every packet stays inside the namespaces.

#![allow(clippy::unwrap_used)]

use std::net::{Ipv6Addr, SocketAddr, UdpSocket};
use std::process::Stdio;
use std::time::Duration;

use dhcproto::v6::{DhcpOption, DhcpOptions, IAAddr, IANA, Message, MessageType, ORO, OptionCode};
use dhcproto::{Decodable, Decoder, Encodable};
use pserv_storm::dhcp::wire6;
use pserv_tests::process::Process;
use pserv_tests::{have_root, have_tool, in_ci};

mod netns;
use netns::{Net, Pserv};

const P6: &str = "fd00:73";

fn ready() -> bool {
    if !have_root("DHCPv6 against kea-dhcp6 in network namespaces") || !have_tool("ip") {
        return false;
    }
    if !have_tool("kea-dhcp6") {
        assert!(!in_ci(), "CI installs kea-dhcp6-server");
        eprintln!("SKIP: the DHCPv6 differential test needs kea-dhcp6 (see .ci/run)");
        return false;
    }
    true
}

/// A DUID-LL of MAC 02:00:00:00:00:`n`.
fn duid(n: u8) -> Vec<u8> {
    vec![0, 3, 0, 1, 2, 0, 0, 0, 0, n]
}

fn ia(addrs: &[Ipv6Addr]) -> DhcpOption {
    let mut opts = DhcpOptions::new();
    for a in addrs {
        opts.insert(DhcpOption::IAAddr(IAAddr {
            addr: *a,
            preferred_life: 0,
            valid_life: 0,
            opts: DhcpOptions::new(),
        }));
    }
    DhcpOption::IANA(IANA {
        id: 1,
        t1: 0,
        t2: 0,
        opts,
    })
}

/// A client message relayed from the link address `{P6}::2`, as a relay agent frames it.
fn relayed(kind: MessageType, client: &[u8], opts: Vec<DhcpOption>, xid: u8) -> Vec<u8> {
    let mut m = Message::new_with_id(kind, [7, 7, xid]);
    if !client.is_empty() {
        m.opts_mut().insert(DhcpOption::ClientId(client.to_vec()));
    }
    m.opts_mut().insert(DhcpOption::ElapsedTime(0));
    for o in opts {
        m.opts_mut().insert(o);
    }
    let inner = m.to_vec().unwrap();
    let link: Ipv6Addr = format!("{P6}::2").parse().unwrap();
    let mut out = vec![12, 0];
    out.extend_from_slice(&link.octets());
    out.extend_from_slice(&"fe80::1".parse::<Ipv6Addr>().unwrap().octets());
    out.extend_from_slice(&9u16.to_be_bytes());
    out.extend_from_slice(&(inner.len() as u16).to_be_bytes());
    out.extend_from_slice(&inner);
    out
}

/// The client message inside a RELAY-REPL.
fn unwrap_reply(b: &[u8]) -> Option<Message> {
    if b.first() != Some(&wire6::RELAY_REPL) {
        return None;
    }
    let body = wire6::relay_message(b)?;
    Message::decode(&mut Decoder::new(body)).ok()
}

/// What a reply is, for comparison.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Shape {
    kind: MessageType,
    /// The message's status code (none for Success given or left out).
    status: Option<u16>,
    /// The IA_NA: its status (none for Success), T1, T2, and its addresses with non-zero
    /// valid lifetimes.
    ia: Option<(Option<u16>, u32, u32, Vec<Ipv6Addr>)>,
    rapid_commit: bool,
    dns_servers: bool,
}

fn status_of(opts: &DhcpOptions) -> Option<u16> {
    match opts.get(OptionCode::StatusCode) {
        Some(DhcpOption::StatusCode(s)) => Some(u16::from(s.status)).filter(|c| *c != 0),
        _ => None,
    }
}

fn shape(m: &Message) -> Shape {
    let o = m.opts();
    Shape {
        kind: m.msg_type(),
        status: status_of(o),
        ia: match o.get(OptionCode::IANA) {
            Some(DhcpOption::IANA(ia)) => Some((
                status_of(&ia.opts),
                ia.t1,
                ia.t2,
                ia.opts
                    .iter()
                    .filter_map(|x| match x {
                        DhcpOption::IAAddr(a) if a.valid_life > 0 => Some(a.addr),
                        _ => None,
                    })
                    .collect(),
            )),
            _ => None,
        },
        rapid_commit: o.get(OptionCode::RapidCommit).is_some(),
        dns_servers: o.get(OptionCode::DomainNameServers).is_some(),
    }
}

/// The server under test, reached from the relay's socket.
struct Peer {
    sock: UdpSocket,
    to: SocketAddr,
}

impl Peer {
    /// Sends `msg` and returns the reply inside the RELAY-REPL, or `None` after 1.5 s.
    fn ask(&self, msg: &[u8]) -> Option<Message> {
        self.sock.send_to(msg, self.to).unwrap();
        let mut buf = [0u8; 1500];
        loop {
            match self.sock.recv_from(&mut buf) {
                Ok((n, _)) => {
                    let m = unwrap_reply(&buf[..n]);
                    if m.as_ref().is_some_and(|m| m.xid()[2] == msg[41]) {
                        return m;
                    }
                }
                Err(_) => return None,
            }
        }
    }
}

/// One step of the script: its name, whether RFC 8415 fixes the answer (else it may differ),
/// and the shape each server gave.
type Step = (&'static str, bool, Option<Shape>);

/// The script, against one server. Its addresses come from the server's own answers, so the
/// two runs follow the same path whatever each allocates.
fn script(peer: &Peer) -> Vec<Step> {
    let mut steps: Vec<Step> = Vec::new();
    let oro = || {
        DhcpOption::ORO(ORO {
            opts: vec![OptionCode::DomainNameServers],
        })
    };
    let a = duid(1);
    // §18.3.1: SOLICIT, an ADVERTISE offering an address with the subnet's timers.
    let adv = peer.ask(&relayed(MessageType::Solicit, &a, vec![ia(&[]), oro()], 1));
    steps.push((
        "SOLICIT -> ADVERTISE (18.3.1)",
        true,
        adv.as_ref().map(shape),
    ));
    let adv = adv.expect("an ADVERTISE");
    let sid = match adv.opts().get(OptionCode::ServerId) {
        Some(DhcpOption::ServerId(s)) => s.clone(),
        _ => panic!("no server id: {adv:?}"),
    };
    let addr = shape(&adv).ia.and_then(|i| i.3.first().copied()).unwrap();
    // §18.3.2: REQUEST for it, a REPLY committing it.
    let req = |kind, addrs: &[Ipv6Addr], server: Option<&[u8]>, xid| {
        let mut opts = vec![ia(addrs), oro()];
        if let Some(s) = server {
            opts.push(DhcpOption::ServerId(s.to_vec()));
        }
        relayed(kind, &a, opts, xid)
    };
    let rep = peer.ask(&req(MessageType::Request, &[addr], Some(&sid), 2));
    steps.push(("REQUEST -> REPLY (18.3.2)", true, rep.as_ref().map(shape)));
    // §16.4: a REQUEST naming another server is discarded.
    let other = peer.ask(&req(
        MessageType::Request,
        &[addr],
        Some(&[0, 4, 9, 9, 9]),
        3,
    ));
    steps.push((
        "REQUEST for another server: discarded (16.4)",
        true,
        other.as_ref().map(shape),
    ));
    // §18.3.4: RENEW, the same address with fresh lifetimes.
    let renew = peer.ask(&req(MessageType::Renew, &[addr], Some(&sid), 4));
    steps.push(("RENEW -> REPLY (18.3.4)", true, renew.as_ref().map(shape)));
    // §18.3.3: CONFIRM of an address on the link: Success; off the link: NotOnLink.
    let on = peer.ask(&req(MessageType::Confirm, &[addr], None, 5));
    steps.push((
        "CONFIRM on link -> Success (18.3.3)",
        true,
        on.as_ref().map(shape),
    ));
    let off = peer.ask(&req(
        MessageType::Confirm,
        &["2001:db8:99::1".parse().unwrap()],
        None,
        6,
    ));
    steps.push((
        "CONFIRM off link -> NotOnLink (18.3.3)",
        true,
        off.as_ref().map(shape),
    ));
    // §18.3.6: INFORMATION-REQUEST: configuration, no addresses.
    let info = peer.ask(&relayed(
        MessageType::InformationRequest,
        &duid(9),
        vec![oro()],
        7,
    ));
    steps.push((
        "INFORMATION-REQUEST -> REPLY (18.3.6)",
        true,
        info.as_ref().map(shape),
    ));
    // §18.3.1 with Rapid Commit (enabled on the subnet): a REPLY at once.
    let rc = peer.ask(&relayed(
        MessageType::Solicit,
        &duid(2),
        vec![ia(&[]), oro(), DhcpOption::RapidCommit],
        8,
    ));
    steps.push((
        "SOLICIT + Rapid Commit -> REPLY (18.3.1)",
        true,
        rc.as_ref().map(shape),
    ));
    // §18.3.5: REBIND by a client the server has no binding for, naming an address of the
    // pool: the RFC lets the server give it (or return it at lifetime 0).
    let rebind = peer.ask(&relayed(
        MessageType::Rebind,
        &duid(3),
        vec![ia(&[format!("{P6}::1:77").parse().unwrap()]), oro()],
        9,
    ));
    steps.push((
        "REBIND without a binding (18.3.5: room)",
        false,
        rebind.as_ref().map(shape),
    ));
    // §18.3.7: RELEASE: Success.
    let rel = peer.ask(&req(MessageType::Release, &[addr], Some(&sid), 10));
    // (Kea adds the released IA back, empty, which §18.3.7 neither asks nor forbids.)
    steps.push((
        "RELEASE -> Success (18.3.7: room)",
        false,
        rel.as_ref().map(shape),
    ));
    // §16.2: a SOLICIT without a client identifier is discarded.
    let anon = peer.ask(&relayed(MessageType::Solicit, &[], vec![ia(&[])], 11));
    steps.push((
        "SOLICIT without client id: discarded (16.2)",
        true,
        anon.as_ref().map(shape),
    ));
    steps
}

/// Lifetimes and timers as both servers are given them.
const T1: u32 = 1000;
const T2: u32 = 2000;

fn kea_config(dir: &std::path::Path) -> std::path::PathBuf {
    let conf = dir.join("kea-dhcp6.json");
    std::fs::write(
        &conf,
        format!(
            r#"{{ "Dhcp6": {{
  "interfaces-config": {{ "interfaces": [ "vsrv/{P6}::1" ] }},
  "data-directory": "{d}",
  "lease-database": {{ "type": "memfile", "persist": true, "name": "{d}/leases6.csv", "lfc-interval": 0 }},
  "preferred-lifetime": 3000, "valid-lifetime": 4000, "renew-timer": {T1}, "rebind-timer": {T2},
  "subnet6": [ {{ "id": 1, "subnet": "{P6}::/64", "rapid-commit": true,
    "pools": [ {{ "pool": "{P6}::1:0 - {P6}::1:ffff" }} ],
    "option-data": [ {{ "name": "dns-servers", "data": "{P6}::53" }} ] }} ],
  "loggers": [ {{ "name": "kea-dhcp6", "output_options": [ {{ "output": "{d}/kea.log" }} ], "severity": "WARN" }} ]
}} }}"#,
            d = dir.display()
        ),
    )
    .unwrap();
    conf
}

fn pserv_snapshot(dir: &std::path::Path) -> std::path::PathBuf {
    let snap = dir.join("snap.json");
    std::fs::write(
        &snap,
        format!(
            r#"{{"generation": 1, "subnets": [{{"cidr": "{P6}::/64", "dns_servers": ["{P6}::53"],
  "lease_seconds": 4000, "preferred_seconds": 3000, "renew_seconds": {T1}, "rebind_seconds": {T2},
  "dynamic": [{{"start": "{P6}::1:0", "end": "{P6}::1:ffff"}}]}}]}}"#
        ),
    )
    .unwrap();
    snap
}

/// The relay's socket on `{P6}::2`, port 547, inside the client namespace.
fn relay_socket(net: &Net) -> UdpSocket {
    net.cli.enter(|| {
        let s = UdpSocket::bind(format!("[{P6}::2]:547")).unwrap();
        s.set_read_timeout(Some(Duration::from_millis(1500)))
            .unwrap();
        s
    })
}

#[test]
fn pserv_and_kea_dhcp6_answer_the_same_script_alike() {
    if !ready() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let net = Net::new("k6", 73);
    for (ns, dev, host) in [(&net.srv, "vsrv", 1), (&net.cli, "vcli", 2)] {
        ns.ip(&[
            "-6",
            "addr",
            "add",
            &format!("{P6}::{host}/64"),
            "dev",
            dev,
            "nodad",
        ]);
    }
    let to: SocketAddr = format!("[{P6}::1]:547").parse().unwrap();

    let theirs = {
        let kea_dir = dir.path().join("kea");
        std::fs::create_dir_all(&kea_dir).unwrap();
        let conf = kea_config(&kea_dir);
        let _kea = Process::spawn(
            net.srv
                .exec("kea-dhcp6")
                .arg("-c")
                .arg(&conf)
                .env("KEA_LOCKFILE_DIR", &kea_dir)
                .env("KEA_PIDFILE_DIR", &kea_dir)
                .stdout(Stdio::null())
                .stderr(Stdio::null()),
        );
        // Kea answers once its sockets are open: ask until the first ADVERTISE.
        let peer = Peer {
            sock: relay_socket(&net),
            to,
        };
        let probe = relayed(MessageType::Solicit, &duid(200), vec![ia(&[])], 200);
        let up = (0..20).any(|_| peer.ask(&probe).is_some());
        assert!(
            up,
            "kea-dhcp6 did not answer: {}",
            std::fs::read_to_string(kea_dir.join("kea.log")).unwrap_or_default()
        );
        script(&peer)
    };
    let ours = {
        let snap = pserv_snapshot(dir.path());
        let _pserv = Pserv::start_with(
            &net,
            &snap,
            &dir.path().join("state"),
            &["--dhcp6-listen", &format!("[{P6}::1]:547")],
        );
        let peer = Peer {
            sock: relay_socket(&net),
            to,
        };
        script(&peer)
    };

    let mut differ = Vec::new();
    for ((name, fixed, mine), (_, _, kea)) in ours.iter().zip(&theirs) {
        // Addresses are each server's own choice: compare how many, and the rest exactly.
        let strip = |s: &Option<Shape>| {
            s.clone().map(|mut s| {
                if let Some(ia) = &mut s.ia {
                    ia.3 = vec![Ipv6Addr::UNSPECIFIED; ia.3.len()];
                }
                s
            })
        };
        eprintln!("{name}\n  pserv {mine:?}\n  kea   {kea:?}");
        if strip(mine) != strip(kea) {
            if *fixed {
                differ.push(*name);
            } else {
                eprintln!("  (differs where the RFC leaves room)");
            }
        }
    }
    assert!(
        differ.is_empty(),
        "pserv and kea-dhcp6 differ at {differ:?}"
    );
    // The script's answers themselves, not only their agreement.
    let get = |name: &str| ours.iter().find(|s| s.0 == name).unwrap().2.clone();
    let adv = get("SOLICIT -> ADVERTISE (18.3.1)").unwrap();
    assert_eq!((adv.kind, adv.dns_servers), (MessageType::Advertise, true));
    assert!(
        matches!(&adv.ia, Some((None, T1, T2, a)) if a.len() == 1),
        "{adv:?}"
    );
    assert!(get("REQUEST for another server: discarded (16.4)").is_none());
    assert_eq!(
        get("CONFIRM off link -> NotOnLink (18.3.3)")
            .unwrap()
            .status,
        Some(4)
    );
    assert!(
        get("SOLICIT + Rapid Commit -> REPLY (18.3.1)")
            .unwrap()
            .rapid_commit
    );
    // Both say Success to the RELEASE and give no address or configuration with it.
    for (name, steps) in [("pserv", &ours), ("kea", &theirs)] {
        let rel = steps.iter().find(|s| s.0.starts_with("RELEASE")).unwrap();
        let rel = rel
            .2
            .clone()
            .unwrap_or_else(|| panic!("{name}: no reply to RELEASE"));
        assert_eq!(
            (rel.kind, rel.status, rel.dns_servers),
            (MessageType::Reply, None, false),
            "{name}"
        );
        assert!(rel.ia.is_none_or(|ia| ia.3.is_empty()), "{name}");
    }
}
