//! Network namespaces a test creates, and the links between them. Every packet a namespaced
//! test sends stays inside namespaces it made: links are created directly inside them (a veth
//! pair's ends are born in their namespaces, a bridge and its taps in one), so nothing is ever
//! added to the host's own namespace, and a [`Netns`] deletes its namespace when dropped.
//!
//! Deleting a namespace while a process still runs in it only removes its name; the namespace
//! (and its links) lives until that process exits. So whatever owns both processes and
//! namespaces must drop the [`Process`](crate::process::Process)es first: declare them first.
//!
//! A test process killed outright (SIGKILL, a machine restarting mid-run) never drops its
//! namespaces: the first [`Netns::new`] of every test process deletes the ones whose creator
//! (the PID in their name) is gone.

use std::ffi::OsStr;
use std::io::Read;
use std::net::{Ipv6Addr, SocketAddrV6};
use std::process::{Command, Output};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::process::run;

/// Makes every name this process creates distinct (tests of one binary run in parallel).
static NEXT: AtomicU32 = AtomicU32::new(0);

/// A network namespace this test created, with loopback up; deleted on drop.
#[derive(Debug)]
pub struct Netns {
    name: String,
}

impl Netns {
    /// A new namespace named `ps<pid>-<n><tag>` (the tag only helps a reader of
    /// `ip netns list`).
    pub fn new(tag: &str) -> Self {
        static SWEPT: std::sync::Once = std::sync::Once::new();
        SWEPT.call_once(remove_orphans);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let name = format!("ps{}-{n}{tag}", std::process::id());
        run(&["ip", "netns", "add", &name]);
        let ns = Self { name };
        ns.ip(&["link", "set", "lo", "up"]);
        ns
    }

    /// Its name, for `ip netns exec` and `/run/netns/<name>`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `ip -n <this> <args>`, asserting it succeeded.
    pub fn ip(&self, args: &[&str]) -> Output {
        let mut all = vec!["ip", "-n", &self.name];
        all.extend_from_slice(args);
        run(&all)
    }

    /// A command running `program` inside this namespace (`ip netns exec` execs it: the child's
    /// PID is the program's).
    pub fn exec(&self, program: impl AsRef<OsStr>) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name]).arg(program);
        c
    }

    /// Runs `f` on a thread that entered this namespace; the rest of the process stays where
    /// it is. See [`enter`].
    pub fn enter<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        enter(&self.name, f)
    }

    /// Adds `cidr` (e.g. `10.71.0.1/16`) to `dev`.
    pub fn addr(&self, dev: &str, cidr: &str) {
        self.ip(&["addr", "add", cidr, "dev", dev]);
    }

    /// Sets `dev` up.
    pub fn up(&self, dev: &str) {
        self.ip(&["link", "set", dev, "up"]);
    }

    /// A veth pair, both ends up: `ifname` here and `peer_ifname` in `peer`.
    pub fn veth(&self, ifname: &str, peer: &Self, peer_ifname: &str) {
        self.ip(&[
            "link",
            "add",
            "name",
            ifname,
            "type",
            "veth",
            "peer",
            "name",
            peer_ifname,
            "netns",
            &peer.name,
        ]);
        self.up(ifname);
        peer.up(peer_ifname);
    }

    /// A bridge named `name`, up.
    pub fn bridge(&self, name: &str) {
        self.ip(&["link", "add", "name", name, "type", "bridge"]);
        self.up(name);
    }

    /// Plugs namespace `other` into this namespace's bridge `bridge` with a veth pair whose
    /// end in `other` is `ifname` (both ends up).
    pub fn plug(&self, bridge: &str, other: &Self, ifname: &str) {
        let port = format!("p{}", NEXT.fetch_add(1, Ordering::Relaxed));
        self.veth(&port, other, ifname);
        self.ip(&["link", "set", &port, "master", bridge]);
    }

    /// A tap device `name` on this namespace's bridge `bridge`, up (for QEMU's `-netdev tap`).
    pub fn tap(&self, name: &str, bridge: &str) {
        self.ip(&["tuntap", "add", "dev", name, "mode", "tap"]);
        self.ip(&["link", "set", name, "master", bridge]);
        self.up(name);
    }

    /// Answers IPv6 router solicitations arriving on `ifname` until the guard is stopped or
    /// dropped; see [`RouterAnswers`].
    pub fn answer_router_solicitations(&self, ifname: &'static str) -> RouterAnswers {
        RouterAnswers::start(self, ifname)
    }
}

/// Answers IPv6 router solicitations on a namespace's interface with a router advertisement
/// that offers nothing (no prefix, no DHCPv6, router lifetime 0), until stopped.
///
/// iPXE configures IPv6 beside DHCP and boots only when both are done; on a network with no
/// IPv6 router it solicits for about 13 s first (under QEMU's TCG as on hardware). This
/// answer ends that wait at once. A test stops it before the booted system configures its own
/// network, so that sees the network as it would without it.
#[derive(Debug)]
pub struct RouterAnswers {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<usize>>,
}

impl RouterAnswers {
    fn start(ns: &Netns, ifname: &'static str) -> Self {
        use socket2::{Domain, Protocol, Socket, Type};
        // A socket belongs to the namespace it was created in, whichever thread uses it.
        let (sock, index) = ns.enter(move || {
            let s = Socket::new(Domain::IPV6, Type::RAW, Some(Protocol::ICMPV6))
                .expect("a raw ICMPv6 socket");
            let index = nix::net::if_::if_nametoindex(ifname)
                .unwrap_or_else(|e| panic!("no interface {ifname}: {e}"));
            (s, index)
        });
        let all_routers = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 2);
        sock.join_multicast_v6(&all_routers, index)
            .expect("joining all-routers");
        sock.set_multicast_if_v6(index).expect("IPV6_MULTICAST_IF");
        // Neighbour discovery messages carry hop limit 255 (RFC 4861).
        sock.set_multicast_hops_v6(255)
            .expect("IPV6_MULTICAST_HOPS");
        sock.set_read_timeout(Some(Duration::from_millis(200)))
            .expect("SO_RCVTIMEO");
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            // Type 134, code 0, checksum (the kernel fills it in), current hop limit 0, flags 0
            // (neither managed nor other configuration), router lifetime 0, reachable time 0,
            // retransmission timer 0; no options.
            let advert = [134u8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
            let all_nodes =
                SocketAddrV6::new(Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1), 0, 0, index);
            let mut buf = [0u8; 1500];
            let mut answered = 0;
            while !stopped.load(Ordering::Relaxed) {
                // A raw ICMPv6 socket reads from the ICMPv6 header on: type 133 is a router
                // solicitation.
                if let Ok(n) = (&sock).read(&mut buf)
                    && n > 0
                    && buf[0] == 133
                    && sock.send_to(&advert, &all_nodes.into()).is_ok()
                {
                    answered += 1;
                }
            }
            answered
        });
        Self {
            stop,
            thread: Some(thread),
        }
    }

    /// Stops answering; how many solicitations were answered (0 once stopped).
    pub fn stop(&mut self) -> usize {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.take().map_or(0, |t| t.join().unwrap_or(0))
    }
}

impl Drop for RouterAnswers {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Deletes the namespaces named `ps<pid>-...` (ours) whose process no longer runs.
fn remove_orphans() {
    let Ok(dir) = std::fs::read_dir("/run/netns") else {
        return;
    };
    for entry in dir.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .strip_prefix("ps")
            .and_then(|r| r.split_once('-'))
            .and_then(|(pid, _)| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            let _ = Command::new("ip").args(["netns", "del", &name]).status();
        }
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// Runs `f` on a new thread that entered namespace `name` (only that thread moves), and
/// returns what `f` returned. For code that must be in a namespace but outlives a borrow of
/// its [`Netns`] (a thread started for a background load).
pub fn enter<T: Send + 'static>(name: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let path = format!("/run/netns/{name}");
    std::thread::spawn(move || {
        let file = std::fs::File::open(&path).unwrap_or_else(|e| panic!("opening {path}: {e}"));
        nix::sched::setns(file, nix::sched::CloneFlags::CLONE_NEWNET)
            .unwrap_or_else(|e| panic!("entering {path}: {e}"));
        f()
    })
    .join()
    .unwrap_or_else(|e| std::panic::resume_unwind(e))
}

/// udhcpc on `iface` in namespace `ns`, sending `hostname`, `(tries, interval)`: that many
/// DISCOVERs that many seconds apart, killed (by `timeout`) after `limit` seconds: the address
/// it got, if any (it configures nothing).
pub fn udhcpc(
    ns: &Netns,
    iface: &str,
    hostname: &str,
    (tries, interval): (u32, u32),
    limit: u32,
) -> Option<String> {
    let out = Command::new("timeout")
        .arg(limit.to_string())
        .args(["ip", "netns", "exec", ns.name(), "udhcpc", "-i", iface])
        .args(["-n", "-q", "-f"])
        .args(["-t", &tries.to_string(), "-T", &interval.to_string()])
        .args(["-s", "/bin/true", "-x", &format!("hostname:{hostname}")])
        .output()
        .expect("running udhcpc");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    leased(&text)
}

/// The address in udhcpc's "udhcpc: lease of 10.x.y.z obtained from ..., lease time 600".
pub fn leased(udhcpc_output: &str) -> Option<String> {
    udhcpc_output
        .lines()
        .find_map(|l| l.split("lease of ").nth(1))
        .and_then(|r| r.split_whitespace().next())
        .map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root() -> bool {
        crate::have_root("namespace helper tests") && crate::have_tool("ip")
    }

    fn listed(name: &str) -> bool {
        let out = run(&["ip", "netns", "list"]);
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .any(|w| w == name)
    }

    /// Sends a datagram from `from` (address `from_ip`) to `to` (address `to_ip`): the
    /// sender's address as the receiver saw it.
    fn exchange(from: &Netns, from_ip: &'static str, to: &Netns, to_ip: &'static str) -> String {
        let sock = to.enter(move || std::net::UdpSocket::bind((to_ip, 9999)).unwrap());
        sock.set_read_timeout(Some(std::time::Duration::from_secs(2)))
            .unwrap();
        from.enter(move || {
            let s = std::net::UdpSocket::bind((from_ip, 0)).unwrap();
            s.send_to(b"hi", (to_ip, 9999)).unwrap();
        });
        let mut buf = [0u8; 8];
        let (n, sender) = sock.recv_from(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"hi");
        sender.ip().to_string()
    }

    #[test]
    fn two_namespaces_talk_over_a_veth_pair_and_are_gone_after_drop() {
        if !root() {
            return;
        }
        let (a, b) = (Netns::new("a"), Netns::new("b"));
        a.veth("va", &b, "vb");
        a.addr("va", "10.250.0.1/24");
        b.addr("vb", "10.250.0.2/24");
        assert_eq!(exchange(&a, "10.250.0.1", &b, "10.250.0.2"), "10.250.0.1");
        // Nothing of the pair in the host's namespace.
        let host = run(&["ip", "-br", "link"]);
        assert!(!String::from_utf8_lossy(&host.stdout).contains("va@"));
        let names = (a.name().to_owned(), b.name().to_owned());
        drop((a, b));
        assert!(!listed(&names.0) && !listed(&names.1));
    }

    #[test]
    fn a_bridge_joins_plugged_namespaces() {
        if !root() {
            return;
        }
        let hub = Netns::new("hub");
        hub.bridge("br0");
        let (x, y) = (Netns::new("x"), Netns::new("y"));
        hub.plug("br0", &x, "vx");
        hub.plug("br0", &y, "vy");
        x.addr("vx", "10.251.0.1/24");
        y.addr("vy", "10.251.0.2/24");
        assert_eq!(exchange(&x, "10.251.0.1", &y, "10.251.0.2"), "10.251.0.1");
        let links = hub.ip(&["-br", "link", "show", "master", "br0"]);
        assert_eq!(String::from_utf8_lossy(&links.stdout).lines().count(), 2);
    }

    #[test]
    fn udhcpc_output_names_the_lease() {
        let text = "udhcpc: sending discover\nudhcpc: lease of 10.71.0.10 obtained from 10.71.0.1, lease time 600\n";
        assert_eq!(leased(text).as_deref(), Some("10.71.0.10"));
        assert_eq!(leased("udhcpc: no lease, failing\n"), None);
    }
}
