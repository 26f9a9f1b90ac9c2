//! The DHCPv4 front end: receive, decide, send. The only module of this crate that touches
//! the network or reads the clock.
//!
//! One thread per socket. It takes a batch of datagrams ([`pserv_net::udp::RecvBatch`], with
//! each one's arrival interface and local address), asks the [`Server`] what to do with each
//! on the lease owner's set, and hands every outcome to the [`Owner`]: the owner holds the
//! leases and their log, and says which replies may leave (at once for OFFERs and NAKs; once
//! durable for ACKs) and which lease events to announce. Everything between a decision and
//! its reply leaving (the durability queue, refusals, other instances' changes, lease ends,
//! publishing the view) is the owner's, unit-tested on virtual time in `pserv-core`.
//!
//! While the log's writer is in `fdatasync` the loop keeps receiving (non-blocking); only when
//! there is nothing to read does it wait for the disk, in [`DISK_SLICE`]s, so one `fdatasync`
//! covers every ACK queued behind it (group commit) and receiving never stalls behind the disk
//! while there is work. The shutdown signal wakes a blocked receive at once
//! ([`pserv_net::wake_on_cancel`]); the loop then sends every reply already decided once
//! durable, publishes the last lease view, and closes the log (the join reports a failure to
//! flush it).

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use pserv_core::Store;
use pserv_core::histogram::Histogram;
use pserv_core::journal::JournalError;
use pserv_core::lease::owner::PUBLISH_EVERY;
use pserv_core::lease::{LeaseBoard, LeaseEvent, LeaseLog, Leases, Now, Owner};
use pserv_net::Running;
use pserv_net::metrics::{
    Collector, DescriptorEncoder, MetricType, family, histogram, load, single,
};
use pserv_net::udp::{self, PacketInfo, RecvBatch, SendBatch, Wait};
use tokio_util::sync::CancellationToken;

use crate::reply::Destination;
use crate::server::{DropReason, Meta, Outcome, Server};
use crate::v6::{DropReason6, Meta6, Netboot6, Outcome6, Server6};

/// The DHCP server port.
pub const SERVER_PORT: u16 = 67;
/// The DHCP client port.
pub const CLIENT_PORT: u16 = 68;

/// Counters of the DHCPv4 front end (the lease owner counts its own: journal errors,
/// refusals, remote changes).
#[derive(Debug, Default)]
pub struct Counters {
    /// Datagrams received.
    pub received: AtomicU64,
    /// Replies sent.
    pub sent: AtomicU64,
    /// OFFERs sent.
    pub offers: AtomicU64,
    /// ACKs sent.
    pub acks: AtomicU64,
    /// NAKs sent.
    pub naks: AtomicU64,
    /// proxyDHCP offers sent (port 67) and boot-server ACKs (port 4011).
    pub proxy_offers: AtomicU64,
    /// SELECTING REQUESTs without option 50, answered as what they mean to be.
    pub selecting_without_address: AtomicU64,
    /// proxyDHCP sightings recorded, and refused (the table full).
    pub sightings: AtomicU64,
    /// See `sightings`.
    pub sightings_refused: AtomicU64,
    /// Replies that could not be sent.
    pub send_errors: AtomicU64,
    /// Replies unicast to a client without an address (after setting its ARP entry).
    pub hardware_unicasts: AtomicU64,
    /// Drops, by reason (indexed by [`DropReason::index`]): atomics, so a metrics scrape
    /// takes no lock the DHCP loop takes.
    pub drops: [AtomicU64; DropReason::ALL.len()],
    /// Time from a request's arrival to its reply leaving, the wait for the journal included.
    pub reply_seconds: Histogram,
}

impl Counters {
    /// Counts a drop.
    pub fn count_drop(&self, reason: DropReason) {
        self.drops[reason.index()].fetch_add(1, Ordering::Relaxed);
    }

    /// Drops so far, by reason.
    pub fn drops(&self) -> impl Iterator<Item = (DropReason, u64)> + '_ {
        DropReason::ALL
            .iter()
            .map(|r| (*r, self.drops[r.index()].load(Ordering::Relaxed)))
    }
}

/// Called with each lease event: a change once it is durable, a remote change, an end on
/// time (for `/v1/events`). Runs on the DHCP thread: keep it short.
pub type OnEvent = Arc<dyn Fn(&LeaseEvent) + Send + Sync>;

/// How the service is set up.
#[derive(Debug, Clone)]
pub struct Config {
    /// Address to bind (`0.0.0.0:67` on a real network).
    pub listen: SocketAddr,
    /// Bind to this interface only (SO_BINDTODEVICE).
    pub interface: Option<String>,
    /// Server identifier when the arrival address is unknown (e.g. a wildcard bind without
    /// IP_PKTINFO).
    pub server_id: Option<Ipv4Addr>,
}

/// What the service owns and shares.
pub struct Setup {
    /// How it is set up.
    pub config: Config,
    /// The served table.
    pub store: Arc<Store>,
    /// The decision-maker (and its boot chain).
    pub server: Server,
    /// The lease set, as recovered: the service's lease owner owns it from here on.
    pub leases: Leases,
    /// Where lease changes become durable, owned likewise: the local journal, or a cluster's
    /// shared store.
    pub log: Box<dyn LeaseLog>,
    /// Where the owner publishes lease views for readers.
    pub board: Arc<LeaseBoard>,
    /// Lease events.
    pub on_event: OnEvent,
    /// proxyDHCP answers (see [`crate::proxy`]).
    pub on_proxy: crate::proxy::OnProxy,
    /// Netbooting machines' ACKs (see [`crate::server::Netboot`]).
    pub on_netboot: OnNetboot,
    /// DHCPv6, on the same thread and lease owner (issue 27), when it listens.
    pub v6: Option<Setup6>,
}

/// The DHCPv6 side of the service: its socket (from [`bind6`]) and decision-maker. It shares
/// the DHCPv4 side's thread, lease owner and log: one owner, one durability pipeline.
pub struct Setup6 {
    /// The socket.
    pub sock: UdpSocket,
    /// The decision-maker (the server's DUID, the boot chain).
    pub server: Server6,
    /// Netbooting machines' REPLYs, once sent.
    pub on_netboot: OnNetboot6,
}

/// Called with each netbooting machine's DHCPv6 REPLY once it has been sent.
pub type OnNetboot6 = Arc<dyn Fn(&Netboot6) + Send + Sync>;

/// How the DHCPv6 socket is set up.
#[derive(Debug, Clone)]
pub struct Config6 {
    /// Address to bind (`[::]:547` on a real network).
    pub listen: SocketAddr,
    /// The interface to serve (and join `ff02::1:2` on); every multicast interface when
    /// none is named.
    pub interface: Option<String>,
}

/// The DHCPv6 server port.
pub const SERVER_PORT6: u16 = 547;

/// Counters of the DHCPv6 front end.
#[derive(Debug, Default)]
pub struct Counters6 {
    /// Datagrams received.
    pub received: AtomicU64,
    /// Replies sent.
    pub sent: AtomicU64,
    /// ADVERTISEs sent.
    pub advertises: AtomicU64,
    /// REPLYs sent.
    pub replies: AtomicU64,
    /// Replies that could not be sent.
    pub send_errors: AtomicU64,
    /// Drops, by reason (indexed by [`DropReason6::index`]).
    pub drops: [AtomicU64; DropReason6::ALL.len()],
    /// Time from a request's arrival to its reply leaving, the wait for the log included.
    pub reply_seconds: Histogram,
}

/// Binds the DHCPv6 socket for `config`: IPv6 only, IPV6_RECVPKTINFO, large buffers, and on
/// port 547 the servers' multicast group joined on the named interface (or every interface
/// that has multicast).
pub fn bind6(config: &Config6) -> std::io::Result<UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let sock = Socket::new(Domain::IPV6, Type::DGRAM, Some(Protocol::UDP))?;
    sock.set_only_v6(true)?;
    if let Some(dev) = &config.interface {
        sock.bind_device(Some(dev.as_bytes()))?;
    }
    sock.bind(&config.listen.into())?;
    let sock: UdpSocket = sock.into();
    udp::enable_packet_info(&sock)?;
    udp::grow_buffers(&sock, SOCKET_BUFFER);
    sock.set_read_timeout(Some(IDLE_WAKE))?;
    if config.listen.port() == SERVER_PORT6 {
        let mut joined = 0;
        for (name, index) in interfaces() {
            if config.interface.as_ref().is_some_and(|i| *i != name) {
                continue;
            }
            match udp::join_dhcp6_group(&sock, index) {
                Ok(()) => joined += 1,
                Err(e) => tracing::debug!(interface = %name, error = %e, "ff02::1:2 not joined"),
            }
        }
        if joined == 0 {
            return Err(std::io::Error::other(
                "DHCPv6: could not join ff02::1:2 on any interface",
            ));
        }
    }
    Ok(sock)
}

/// The interfaces that can take multicast, by name and index.
fn interfaces() -> Vec<(String, u32)> {
    let Ok(addrs) = nix::ifaddrs::getifaddrs() else {
        return Vec::new();
    };
    let mut out: Vec<(String, u32)> = Vec::new();
    for a in addrs {
        let up = a.flags.contains(nix::net::if_::InterfaceFlags::IFF_UP)
            && a.flags
                .contains(nix::net::if_::InterfaceFlags::IFF_MULTICAST);
        if !up || out.iter().any(|(n, _)| *n == a.interface_name) {
            continue;
        }
        if let Ok(i) = nix::net::if_::if_nametoindex(a.interface_name.as_str()) {
            out.push((a.interface_name, i));
        }
    }
    out
}

/// The global IPv6 addresses of each interface, read again at most every few seconds: what
/// a request that arrived by multicast on an interface is answered as (its link, and the host
/// of its boot URLs).
#[derive(Debug, Default)]
struct LinkAddrs {
    by_index: std::collections::HashMap<u32, Vec<Ipv6Addr>>,
    read_at: Option<Instant>,
}

impl LinkAddrs {
    const REFRESH: Duration = Duration::from_secs(5);

    fn global_on(
        &mut self,
        ifindex: u32,
        table: &pserv_core::Table,
        now: Instant,
    ) -> Option<Ipv6Addr> {
        let stale = self
            .read_at
            .is_none_or(|t| now.duration_since(t) > Self::REFRESH);
        if stale
            || (!self.by_index.contains_key(&ifindex)
                && self
                    .read_at
                    .is_none_or(|t| now.duration_since(t) > Duration::from_secs(1)))
        {
            self.read(now);
        }
        let addrs = self.by_index.get(&ifindex)?;
        addrs
            .iter()
            .find(|a| table.subnet6_for(**a).is_some())
            .or_else(|| addrs.first())
            .copied()
    }

    fn read(&mut self, now: Instant) {
        self.read_at = Some(now);
        self.by_index.clear();
        let Ok(addrs) = nix::ifaddrs::getifaddrs() else {
            return;
        };
        for a in addrs {
            let Some(ip) = a
                .address
                .as_ref()
                .and_then(|s| s.as_sockaddr_in6())
                .map(|s| s.ip())
            else {
                continue;
            };
            if ip.is_loopback() || ip.is_unspecified() || ip.segments()[0] & 0xffc0 == 0xfe80 {
                continue;
            }
            if let Ok(i) = nix::net::if_::if_nametoindex(a.interface_name.as_str()) {
                self.by_index.entry(i).or_default().push(ip);
            }
        }
    }
}

/// Called with each netbooting machine's ACK once it has been sent.
pub type OnNetboot = Arc<dyn Fn(&crate::server::Netboot) + Send + Sync>;

/// Datagrams per system call.
const BATCH: usize = 32;
/// The receive buffer: an Ethernet frame's payload. Longer datagrams are cut short by the
/// kernel and dropped as [`DropReason::Oversized`].
const DATAGRAM: usize = 1500;
/// How long the loop waits for the disk before looking at the socket again. Requests that
/// arrive meanwhile wait at most this long, and are then taken together: one wake-up per slice
/// rather than per datagram (at 8k DORA/s, 300 µs slices cost 30% more CPU than 1 ms ones).
const DISK_SLICE: Duration = Duration::from_millis(1);
/// How long a receive blocks when nothing is waiting to be published or made durable: the
/// resolution of the lease clock (leases end in whole seconds). Shutdown does not wait for it.
const IDLE_WAKE: Duration = Duration::from_millis(200);
/// Socket buffers asked for: a few thousand requests can queue during a burst.
const SOCKET_BUFFER: usize = 4 << 20;

/// Binds the DHCP socket for `config` (broadcast allowed, IP_PKTINFO, large buffers, bound to
/// the interface if one is named).
pub fn bind(config: &Config) -> std::io::Result<UdpSocket> {
    let sock = udp::bind(
        config.listen,
        &udp::Options {
            broadcast: true,
            packet_info: true,
            device: config.interface.clone(),
            buffers: Some(SOCKET_BUFFER),
        },
    )?;
    sock.set_read_timeout(Some(IDLE_WAKE))?;
    Ok(sock)
}

/// Starts answering on `sock` (from [`bind`]) until `shutdown`. The join resolves once every
/// reply already decided has left (once durable) and the log is closed; a log that failed, or
/// failed to flush, is its error.
pub fn start(
    sock: UdpSocket,
    setup: Setup,
    shutdown: CancellationToken,
) -> std::io::Result<Running> {
    let local = sock.local_addr()?;
    pserv_net::wake_on_cancel(&shutdown, &sock)?;
    let Setup {
        config,
        store,
        server,
        leases,
        log,
        board,
        on_event,
        on_proxy,
        on_netboot,
        v6,
    } = setup;
    let sightings = board.clone();
    let owner = Owner::new(leases, log, board, Now::read());
    let counters = Arc::new(Counters::default());
    let counters6 = Arc::new(Counters6::default());
    let metrics = Metrics {
        front: counters.clone(),
        front6: v6.is_some().then(|| counters6.clone()),
        owner: owner.counters().clone(),
    };
    let mut addrs = vec![local];
    if let Some(v6) = &v6 {
        pserv_net::wake_on_cancel(&shutdown, &v6.sock)?;
        addrs.push(v6.sock.local_addr()?);
    }
    let fixed_local = match local {
        SocketAddr::V4(a) if !a.ip().is_unspecified() => Some(*a.ip()),
        _ => None,
    };
    let default_local = fixed_local
        .or(config.server_id)
        .unwrap_or(Ipv4Addr::UNSPECIFIED);
    let front = counters.clone();
    let thread = std::thread::Builder::new()
        .name("pserv-dhcp".into())
        .spawn(move || -> Result<(), JournalError> {
            // Built on its thread: the batch headers are not `Send`.
            let mut l = Loop {
                sock,
                default_local,
                fixed_local,
                config,
                port: local.port(),
                store,
                server,
                owner,
                sightings,
                counters: front,
                on_event,
                on_proxy,
                on_netboot,
                outbox: Vec::with_capacity(BATCH),
                outbox6: Vec::new(),
                send: SendBatch::new(),
                wake: IDLE_WAKE,
                v6: v6.map(|s| Front6 {
                    bound: s.sock.local_addr().ok().and_then(|a| match a.ip() {
                        std::net::IpAddr::V6(ip) if !ip.is_unspecified() => Some(ip),
                        _ => None,
                    }),
                    on_547: s.sock.local_addr().is_ok_and(|a| a.port() == SERVER_PORT6),
                    sock: s.sock,
                    server: s.server,
                    on_netboot: s.on_netboot,
                    counters: counters6,
                    links: LinkAddrs::default(),
                    batch: RecvBatch::new(DATAGRAM6),
                }),
            };
            l.run(&shutdown);
            // Everything queued is settled before the service ends.
            l.owner.close(Now::read())
        })?;
    Ok(Running {
        name: "DHCP",
        addrs,
        metrics: Box::new(metrics),
        join: Running::join_thread(thread),
    })
}

/// A reply of either family waiting for its changes to be durable.
#[derive(Debug)]
enum Out {
    V4(Outgoing),
    V6(Outgoing6),
}

/// A DHCPv6 reply waiting to leave: to the datagram's source (a client's link-local address
/// with its scope, or a relay), from the port it was sent to.
#[derive(Debug)]
struct Outgoing6 {
    arrived: Instant,
    bytes: Vec<u8>,
    to: SocketAddrV6,
    kind: dhcproto::v6::MessageType,
    netboot: Option<Box<Netboot6>>,
}

/// The DHCPv6 side of the loop.
struct Front6 {
    sock: UdpSocket,
    server: Server6,
    on_netboot: OnNetboot6,
    counters: Arc<Counters6>,
    links: LinkAddrs,
    batch: RecvBatch<BATCH>,
    /// The address the socket is bound to, unless it is a wildcard.
    bound: Option<Ipv6Addr>,
    /// Bound to port 547 (else tests or an unprivileged run: clients unicast to it).
    on_547: bool,
}

/// A DHCPv6 datagram at most (relay layers add to a client's message).
const DATAGRAM6: usize = 4096;

/// A reply waiting to leave.
#[derive(Debug)]
struct Outgoing {
    /// When its request arrived.
    arrived: Instant,
    bytes: Vec<u8>,
    to: SocketAddrV4,
    /// Send from this interface (broadcasts) when known.
    ifindex: u32,
    kind: dhcproto::v4::MessageType,
    /// A proxyDHCP offer.
    proxy: bool,
    /// A netbooting machine's ACK, announced once it has left.
    netboot: Option<Box<crate::server::Netboot>>,
}

impl Outgoing {
    /// A broadcast leaves by the interface its request came in on (IP_PKTINFO), so it is sent
    /// on its own.
    fn needs_interface(&self) -> bool {
        self.ifindex > 0 && self.to.ip().is_broadcast()
    }
}

struct Loop {
    sock: UdpSocket,
    config: Config,
    /// The socket's port: 67 on a real network (replies go to the RFC 2131 destinations),
    /// another in tests (replies go back to the sender).
    port: u16,
    /// The address the socket is bound to, unless it is a wildcard.
    fixed_local: Option<Ipv4Addr>,
    /// The server identifier when IP_PKTINFO says nothing better.
    default_local: Ipv4Addr,
    store: Arc<Store>,
    server: Server,
    /// The lease set and its log: owned here, and only here.
    owner: Owner<Out>,
    /// Where proxyDHCP sightings go (the owner's board: the virtual tree reads it).
    sightings: Arc<LeaseBoard>,
    counters: Arc<Counters>,
    on_event: OnEvent,
    on_proxy: crate::proxy::OnProxy,
    on_netboot: OnNetboot,
    /// Replies ready to leave, sent together once the pass has decided them all.
    outbox: Vec<Outgoing>,
    outbox6: Vec<Outgoing6>,
    /// DHCPv6, when it listens.
    v6: Option<Front6>,
    send: SendBatch<BATCH>,
    /// The socket's receive timeout now.
    wake: Duration,
}

impl Loop {
    fn run(&mut self, shutdown: &CancellationToken) {
        let mut batch = RecvBatch::<BATCH>::new(DATAGRAM);
        while !shutdown.is_cancelled() || self.owner.is_waiting() {
            // Block for work only when no reply waits on the log. Whether this pass's receive
            // blocked (a timeout then means the loop is idle).
            let waited = !self.owner.is_waiting();
            // With DHCPv6 too, both sockets are waited on together (poll), then read without
            // blocking; alone, the DHCPv4 socket's own blocking receive waits.
            let wait = if waited && self.v6.is_none() {
                Wait::ForOne
            } else {
                Wait::No
            };
            if waited && let Some(v6) = &self.v6 {
                use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
                let mut fds = [
                    PollFd::new(std::os::fd::AsFd::as_fd(&self.sock), PollFlags::POLLIN),
                    PollFd::new(std::os::fd::AsFd::as_fd(&v6.sock), PollFlags::POLLIN),
                ];
                let ms = u16::try_from(self.wake.as_millis()).unwrap_or(u16::MAX);
                let _ = poll(&mut fds, PollTimeout::from(ms));
            }
            let got = match batch.recv(&self.sock, wait) {
                Ok(n) => n,
                Err(e) => {
                    tracing::debug!(error = %e, "DHCP receive");
                    0
                }
            };

            let now = Now::read();
            self.owner.handle_log();
            if got > 0 {
                let table = self.store.load();
                let mut received = 0;
                for d in batch.datagrams() {
                    if d.truncated {
                        self.counters.count_drop(DropReason::Oversized);
                        if crate::log::enabled() {
                            crate::log::oversized(d.from);
                        }
                        continue;
                    }
                    let SocketAddr::V4(from) = d.from else {
                        continue;
                    };
                    received += 1;
                    let meta = self.meta(d.info);
                    let outcome = self.server.handle(
                        &table,
                        self.owner.leases_mut(),
                        now.unix,
                        &meta,
                        batch.payload(d),
                    );
                    if crate::log::enabled() {
                        crate::log::request(batch.payload(d), from, &outcome);
                    }
                    if let Outcome::Seen(s) = outcome {
                        sight(&self.sightings, &self.counters, s, now.unix);
                        continue;
                    }
                    self.queue(outcome, from, meta.ifindex, now.mono);
                }
                self.counters
                    .received
                    .fetch_add(received, Ordering::Relaxed);
            }
            let got6 = self.receive6(now);
            if got == 0 && got6 == 0 {
                // Nothing to read: wait for the disk, in slices so that requests arriving
                // meanwhile are not left in the socket queue long.
                self.owner.wait_settled(DISK_SLICE);
            }
            self.owner.handle_settled(now);
            self.owner.handle_timeout(now);
            while let Some(e) = self.owner.poll_event() {
                (self.on_event)(&e);
            }
            while let Some(out) = self.owner.poll_transmit() {
                match out {
                    Out::V4(o) => self.outbox.push(o),
                    Out::V6(o) => self.outbox6.push(o),
                }
            }
            self.send_outbox();
            self.send_outbox6();
            // With something left to publish, wake in time to publish it. The long wait comes
            // back only once a blocking receive timed out with nothing to do, so that steady
            // traffic does not pay a system call per pass to switch back and forth.
            let idle = waited && got == 0 && got6 == 0 && !self.owner.is_waiting();
            self.wake_within(if self.owner.has_unpublished() || !idle {
                PUBLISH_EVERY
            } else {
                IDLE_WAKE
            });
            // Between appends: the set is the one after every change queued so far.
            self.owner.upkeep(now);
        }
    }

    /// Where a datagram arrived, as the server needs it.
    fn meta(&self, info: Option<PacketInfo>) -> Meta {
        let mut meta = Meta {
            local: self.default_local,
            ifindex: 0,
        };
        if let Some(info) = info {
            meta.ifindex = info.ifindex;
            if self.fixed_local.is_none() && !info.local.is_unspecified() {
                meta.local = self.config.server_id.unwrap_or(info.local);
            }
        }
        meta
    }

    /// Sets how long a blocking receive waits (only when it changes: it is a system call).
    fn wake_within(&mut self, d: Duration) {
        if self.wake != d && self.sock.set_read_timeout(Some(d)).is_ok() {
            self.wake = d;
        }
    }

    /// Addresses an outcome's reply and queues the outcome with the owner (which releases
    /// the reply once its change is durable); a drop is counted.
    fn queue(&mut self, outcome: Outcome, from: SocketAddrV4, ifindex: u32, arrived: Instant) {
        match outcome {
            Outcome::Reply(r) => {
                if let Some(a) = &r.proxy {
                    (self.on_proxy)(a);
                }
                if r.lenient {
                    self.counters
                        .selecting_without_address
                        .fetch_add(1, Ordering::Relaxed);
                }
                let mut to = address(r.dest, from, self.port);
                if let Destination::Hardware { yiaddr, chaddr } = r.dest
                    && to.ip().is_broadcast()
                    && crate::arp::set_entry(&self.sock, ifindex, yiaddr, chaddr)
                {
                    // RFC 2131 §4.1: unicast to the client's hardware address and yiaddr.
                    to = SocketAddrV4::new(yiaddr, CLIENT_PORT);
                    self.counters
                        .hardware_unicasts
                        .fetch_add(1, Ordering::Relaxed);
                }
                let out = Outgoing {
                    arrived,
                    to,
                    bytes: r.bytes,
                    ifindex,
                    kind: r.kind,
                    proxy: r.proxy.is_some(),
                    netboot: r.netboot,
                };
                self.owner.handle_decision(r.change, Some(Out::V4(out)));
            }
            // No reply; announced once durable.
            Outcome::Change(c) => self.owner.handle_decision(Some(c), None),
            Outcome::Drop(reason) => self.counters.count_drop(reason),
            Outcome::Seen(_) => {}
        }
    }

    /// Receives and decides one batch of DHCPv6 datagrams (none when it does not listen).
    fn receive6(&mut self, now: Now) -> usize {
        let Some(v6) = &mut self.v6 else {
            return 0;
        };
        let got = match v6.batch.recv(&v6.sock, Wait::No) {
            Ok(n) => n,
            Err(e) => {
                tracing::debug!(error = %e, "DHCPv6 receive");
                0
            }
        };
        if got == 0 {
            return 0;
        }
        let table = self.store.load();
        let (bound, on_547) = (v6.bound, v6.on_547);
        let mut decided = Vec::with_capacity(got);
        for d in v6.batch.datagrams() {
            let SocketAddr::V6(from) = d.from else {
                continue;
            };
            if d.truncated {
                v6.counters.drops[DropReason6::Malformed.index()].fetch_add(1, Ordering::Relaxed);
                continue;
            }
            // The server's address on the request's link: where it was sent, if to one of
            // ours; else a global address of the interface it came in on.
            let server = match d.info {
                Some(i) if is_unicast_global(i.local6) => Some(i.local6),
                Some(i) => v6.links.global_on(i.ifindex, &table, now.mono).or(bound),
                None => bound,
            };
            let meta = Meta6 {
                source: *from.ip(),
                server,
                // Off port 547 (tests, unprivileged runs) clients unicast to the socket: taken
                // as multicast, as DHCPv4 answers the sender there.
                multicast: !on_547 || d.info.is_none_or(|i| i.local6.is_multicast()),
            };
            let outcome = v6.server.handle(
                &table,
                self.owner.leases_mut(),
                now.unix,
                &meta,
                v6.batch.payload(d),
            );
            decided.push((outcome, from));
        }
        v6.counters
            .received
            .fetch_add(decided.len() as u64, Ordering::Relaxed);
        for (outcome, from) in decided {
            match outcome {
                Outcome6::Reply(r) => {
                    let out = Some(Out::V6(Outgoing6 {
                        arrived: now.mono,
                        bytes: r.bytes,
                        to: from,
                        kind: r.kind,
                        netboot: r.netboot,
                    }));
                    // The reply leaves once every IA's change is durable, never if the log
                    // refused one of them.
                    self.owner.handle_decisions(r.changes, out);
                }
                Outcome6::Drop(reason) => {
                    if let Some(v6) = &self.v6 {
                        v6.counters.drops[reason.index()].fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }
        got
    }

    /// Sends every DHCPv6 reply ready, one by one (to the datagram's source).
    fn send_outbox6(&mut self) {
        let Some(v6) = &self.v6 else {
            self.outbox6.clear();
            return;
        };
        for o in self.outbox6.drain(..) {
            let c = &v6.counters;
            match v6.sock.send_to(&o.bytes, o.to) {
                Ok(_) => {
                    c.sent.fetch_add(1, Ordering::Relaxed);
                    c.reply_seconds.observe(o.arrived.elapsed());
                    let by_kind = if o.kind == dhcproto::v6::MessageType::Advertise {
                        &c.advertises
                    } else {
                        &c.replies
                    };
                    by_kind.fetch_add(1, Ordering::Relaxed);
                    if let Some(n) = &o.netboot {
                        (v6.on_netboot)(n);
                    }
                }
                Err(e) => {
                    tracing::debug!(target: crate::log::TARGET, error = %e, to = %o.to, "DHCPv6 reply not sent");
                    c.send_errors.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }

    /// Sends every reply in the outbox: runs of unicasts in one `sendmmsg` each, broadcasts
    /// (which name their interface) one by one.
    fn send_outbox(&mut self) {
        let outbox = std::mem::take(&mut self.outbox);
        let counters = &self.counters;
        let on_netboot = &self.on_netboot;
        let mut rest = &outbox[..];
        while !rest.is_empty() {
            let run = rest
                .iter()
                .position(Outgoing::needs_interface)
                .unwrap_or(rest.len());
            if run == 0 {
                let o = &rest[0];
                count_sent(
                    counters,
                    on_netboot,
                    o,
                    udp::send_from_interface(&self.sock, &o.bytes, o.to, o.ifindex),
                );
                rest = &rest[1..];
                continue;
            }
            self.send.send(
                &self.sock,
                &rest[..run],
                |o| (&o.bytes, SocketAddr::V4(o.to)),
                |o, r| count_sent(counters, on_netboot, o, r),
            );
            rest = &rest[run..];
        }
        // The allocation is kept for the next pass.
        self.outbox = outbox;
        self.outbox.clear();
    }
}

/// Records a proxyDHCP sighting on the board the virtual tree reads, counted.
pub(crate) fn sight(board: &LeaseBoard, c: &Counters, s: crate::proxy::Sighting, now: u64) {
    let counter = if board.sight(s.mac, s.ip, now) {
        &c.sightings
    } else {
        &c.sightings_refused
    };
    counter.fetch_add(1, Ordering::Relaxed);
}

/// Counts a reply sent, or not.
/// Counts a reply sent (or not), and announces a netbooting machine's ACK that left.
fn count_sent(c: &Counters, on_netboot: &OnNetboot, out: &Outgoing, result: nix::Result<()>) {
    match result {
        Ok(()) => {
            if let Some(n) = &out.netboot {
                on_netboot(n);
            }
            c.sent.fetch_add(1, Ordering::Relaxed);
            c.reply_seconds.observe(out.arrived.elapsed());
            let by_kind = match (out.proxy, out.kind) {
                (true, _) => &c.proxy_offers,
                (_, dhcproto::v4::MessageType::Offer) => &c.offers,
                (_, dhcproto::v4::MessageType::Ack) => &c.acks,
                _ => &c.naks,
            };
            by_kind.fetch_add(1, Ordering::Relaxed);
        }
        Err(e) => {
            tracing::debug!(target: crate::log::TARGET, error = %e, to = %out.to, "DHCP reply not sent");
            c.send_errors.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// The socket address for a destination. On a port other than 67 (tests, unprivileged runs)
/// replies go back to the sender, as no client listens on 68 there.
fn address(dest: Destination, from: SocketAddrV4, port: u16) -> SocketAddrV4 {
    if port != SERVER_PORT {
        return from;
    }
    match dest {
        Destination::Relay(g) => SocketAddrV4::new(g, SERVER_PORT),
        Destination::Unicast(ip) => SocketAddrV4::new(ip, CLIENT_PORT),
        // The caller unicasts to a client without an address only if it could make the ARP
        // entry (see `Loop::queue`); this is the broadcast it falls back to.
        Destination::Hardware { .. } | Destination::Broadcast => {
            SocketAddrV4::new(Ipv4Addr::BROADCAST, CLIENT_PORT)
        }
    }
}

/// Whether `a` is an address of ours a unicast request was sent to (not a group, not
/// link-local).
fn is_unicast_global(a: Ipv6Addr) -> bool {
    !a.is_unspecified() && !a.is_multicast() && a.segments()[0] & 0xffc0 != 0xfe80
}

/// The DHCP service's `/metrics`: the front ends' counters and their lease owner's.
#[derive(Debug)]
struct Metrics {
    front: Arc<Counters>,
    front6: Option<Arc<Counters6>>,
    owner: Arc<pserv_core::lease::owner::Counters>,
}

impl Collector for Metrics {
    #[rustfmt::skip]
    fn encode(&self, mut e: DescriptorEncoder<'_>) -> pserv_net::metrics::Result {
        use MetricType::Counter;
        let (c, o, e) = (&*self.front, &*self.owner, &mut e);
        family(e, "pserv_dhcp_packets", "DHCP packets by direction", Counter, "direction", &[
            ("in", load(&c.received)),
            ("out", load(&c.sent)),
        ])?;
        family(e, "pserv_dhcp_replies", "DHCP replies by type", Counter, "type", &[
            ("offer", load(&c.offers)),
            ("ack", load(&c.acks)),
            ("nak", load(&c.naks)),
            ("proxy_offer", load(&c.proxy_offers)),
        ])?;
        family(e, "pserv_dhcp_lenient", "Requests RFC 2131 says a client must not send, answered as what they mean to be", Counter, "case", &[
            ("selecting_without_requested_address", load(&c.selecting_without_address)),
        ])?;
        family(e, "pserv_dhcp_proxy_sightings", "proxyDHCP: addresses machines showed in their PXE exchange, recorded for the address check of their files (refused: the table was full)", Counter, "result", &[
            ("recorded", load(&c.sightings)),
            ("refused", load(&c.sightings_refused)),
        ])?;
        single(e, "pserv_dhcp_hardware_unicast", "Replies unicast to a client without an address (ARP entry set)", Counter, load(&c.hardware_unicasts))?;
        let mut drops: Vec<(&str, u64)> = c.drops().map(|(r, v)| (r.name(), v)).collect();
        drops.push(("SendError", load(&c.send_errors)));
        drops.push(("JournalError", load(&o.journal_errors)));
        drops.push(("ClusterRefused", load(&o.refused)));
        drops.sort_unstable();
        family(e, "pserv_dhcp_dropped", "DHCP packets dropped, by reason", Counter, "reason", &drops)?;
        single(e, "pserv_dhcp_remote_changes", "Lease changes other cluster instances made, applied here", Counter, load(&o.remote_changes))?;
        histogram(e, "pserv_dhcp_reply_seconds", "Time from a DHCP request's arrival to its reply leaving, the wait for the journal included", &c.reply_seconds)?;
        let Some(c6) = &self.front6 else {
            return Ok(());
        };
        family(e, "pserv_dhcp6_packets", "DHCPv6 packets by direction", Counter, "direction", &[
            ("in", load(&c6.received)),
            ("out", load(&c6.sent)),
        ])?;
        family(e, "pserv_dhcp6_replies", "DHCPv6 replies by type", Counter, "type", &[
            ("advertise", load(&c6.advertises)),
            ("reply", load(&c6.replies)),
        ])?;
        let mut drops: Vec<(&str, u64)> = DropReason6::ALL.iter().map(|r| (r.name(), load(&c6.drops[r.index()]))).collect();
        drops.push(("SendError", load(&c6.send_errors)));
        drops.sort_unstable();
        family(e, "pserv_dhcp6_dropped", "DHCPv6 packets dropped, by reason", Counter, "reason", &drops)?;
        histogram(e, "pserv_dhcp6_reply_seconds", "Time from a DHCPv6 request's arrival to its reply leaving, the wait for the log included", &c6.reply_seconds)
    }
}
