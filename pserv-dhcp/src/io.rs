//! The socket side: the only module that touches the network or reads the clock.
//!
//! The service owns the lease set ([`Server`]) and its [`Journal`]: nothing else holds them.
//! It starts from a socket already bound ([`bind`]) and stops at one shutdown signal, after
//! sending every reply already decided once durable, publishing the last lease view, and
//! closing the journal ([`Service::join`] reports a failure to flush it).
//!
//! One thread per socket. It takes a batch of datagrams (`recvmmsg`) with their arrival
//! interface and local address (IP_PKTINFO), asks the [`Server`] what to do with each, appends
//! each lease change to the journal, sends at once what needs no disk (OFFERs, NAKs), and holds
//! each ACK until its change is durable. Readers (DNS, the control API) see the leases through
//! the [`LeaseBoard`]: the loop publishes what changed before it sends replies whose changes
//! became durable (so an acknowledged lease resolves by the time its client has the ACK),
//! after leases end on time, and otherwise at most every [`PUBLISH_EVERY`]. While the
//! journal's writer thread is in `fdatasync` the loop keeps receiving (non-blocking); only when there is nothing to read does it wait for
//! the disk, so one `fdatasync` covers every ACK queued behind it (group commit) and receiving
//! never stalls behind the disk while there is work.

use std::collections::VecDeque;
use std::io::{IoSlice, IoSliceMut};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use nix::sys::socket::{
    ControlMessage, ControlMessageOwned, MsgFlags, MultiHeaders, SockaddrIn, recvmmsg, sendmmsg,
    sendmsg, setsockopt, sockopt,
};
use pserv_core::Store;
use pserv_core::histogram::Histogram;
use pserv_core::journal::JournalError;
use pserv_core::lease::LeaseLog;
use pserv_core::lease::{Change, LeaseBoard, LeaseEvent};
use tokio_util::sync::CancellationToken;

use crate::reply::Destination;
use crate::server::{DropReason, Meta, Outcome, Server};

/// The DHCP server port.
pub const SERVER_PORT: u16 = 67;
/// The DHCP client port.
pub const CLIENT_PORT: u16 = 68;

/// Counters of the DHCP service.
#[derive(Debug, Default)]
pub struct Counters {
    /// Datagrams received.
    pub received: AtomicU64,
    /// Replies sent.
    pub sent: AtomicU64,
    /// Replies by kind: offers, acks, naks.
    pub offers: AtomicU64,
    /// ACKs sent.
    pub acks: AtomicU64,
    /// NAKs sent.
    pub naks: AtomicU64,
    /// Replies that could not be sent.
    pub send_errors: AtomicU64,
    /// Replies unicast to a client without an address (after setting its ARP entry).
    pub hardware_unicasts: AtomicU64,
    /// Lease changes (ACKs, RELEASEs, DECLINEs) that could not be made durable: no reply was
    /// sent and no event announced.
    pub journal_errors: AtomicU64,
    /// Lease changes the cluster's store refused (another instance changed the address
    /// first): no reply was sent; the client retries and is answered from the newer state.
    pub refused: AtomicU64,
    /// Changes other instances made, applied to this instance's lease set (cluster mode).
    pub remote_changes: AtomicU64,
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

/// Called with each lease event: a change once it is durable, an end on time (for
/// `/v1/events`). Runs on the DHCP thread: keep it short.
pub type OnEvent = Arc<dyn Fn(&LeaseEvent) + Send + Sync>;

/// How the service is set up.
#[derive(Clone)]
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
    /// The lease set, as recovered from the journal: the service owns it from here on.
    pub server: Server,
    /// Where lease changes become durable, owned likewise: the local journal, or a cluster's
    /// shared store.
    pub log: Box<dyn LeaseLog>,
    /// Where the service publishes lease views for readers.
    pub board: Arc<LeaseBoard>,
    /// Lease events.
    pub on_event: OnEvent,
    /// Where the service counts (shared with whoever reports them).
    pub counters: Arc<Counters>,
}

/// A running DHCP service.
pub struct Service {
    thread: JoinHandle<Result<(), JournalError>>,
    /// The bound address.
    pub local: SocketAddr,
    /// Counters.
    pub counters: Arc<Counters>,
}

struct Outgoing {
    seq: u64,
    /// When its request arrived.
    arrived: Instant,
    bytes: Vec<u8>,
    to: SocketAddrV4,
    /// Send from this interface (broadcasts) when known.
    ifindex: u32,
    change: Option<Change>,
    kind: dhcproto::v4::MessageType,
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Binds the DHCP socket for `config` (broadcast allowed, IP_PKTINFO, large buffers, bound to
/// the interface if one is named).
pub fn bind(config: &Config) -> std::io::Result<UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let sock = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
    // No SO_REUSEADDR: a second DHCP server on the same port must fail loudly, not share it.
    sock.set_broadcast(true)?;
    if let Some(dev) = &config.interface {
        sock.bind_device(Some(dev.as_bytes()))?;
    }
    sock.bind(&config.listen.into())?;
    let sock: UdpSocket = sock.into();
    setsockopt(&sock, sockopt::Ipv4PacketInfo, &true).map_err(std::io::Error::from)?;
    // Past net.core.rmem_max where allowed (root), else whatever the limit permits.
    if setsockopt(&sock, sockopt::RcvBufForce, &SOCKET_BUFFER).is_err() {
        let _ = setsockopt(&sock, sockopt::RcvBuf, &SOCKET_BUFFER);
    }
    if setsockopt(&sock, sockopt::SndBufForce, &SOCKET_BUFFER).is_err() {
        let _ = setsockopt(&sock, sockopt::SndBuf, &SOCKET_BUFFER);
    }
    sock.set_read_timeout(Some(IDLE_WAKE))?;
    Ok(sock)
}

impl Service {
    /// Starts answering on `sock` (from [`bind`]) until `shutdown`.
    pub fn spawn(
        sock: UdpSocket,
        setup: Setup,
        shutdown: CancellationToken,
    ) -> std::io::Result<Self> {
        let local = sock.local_addr()?;
        let counters = setup.counters.clone();
        let thread = {
            let counters = counters.clone();
            std::thread::Builder::new()
                .name("pserv-dhcp".into())
                .spawn(move || {
                    let Setup {
                        config,
                        store,
                        server,
                        log,
                        board,
                        on_event,
                        counters: _,
                    } = setup;
                    let mut l = Loop {
                        sock: &sock,
                        config: &config,
                        local,
                        store: &store,
                        server,
                        log,
                        board: &board,
                        counters: &counters,
                        on_event: &on_event,
                        pending: VecDeque::new(),
                        refused: VecDeque::new(),
                        scratch_seqs: Vec::new(),
                        scratch_changes: Vec::new(),
                        outbox: Vec::with_capacity(BATCH),
                        send_headers: MultiHeaders::preallocate(BATCH, None),
                        last_publish: Instant::now(),
                        wake: IDLE_WAKE,
                    };
                    l.run(&shutdown);
                    l.publish();
                    // Everything queued is made durable before the service ends.
                    l.log.close()
                })?
        };
        Ok(Self {
            thread,
            local,
            counters,
        })
    }

    /// Waits for the service to end (after its shutdown signal): replies already decided are
    /// sent once durable and the journal is flushed and closed. Blocks: call it off the async
    /// threads. A journal that failed, or failed to flush, is an error.
    pub fn join(self) -> Result<(), JournalError> {
        self.thread
            .join()
            .unwrap_or_else(|_| Err(JournalError("the DHCP thread panicked".into())))
    }
}

/// How often changes that need no disk (offers, one per DISCOVER) are published at most; a
/// durable change (before its reply leaves) or an end publishes at once. Offers published
/// together share one pass over the changed clients, and a DISCOVER flood does not pay a
/// board write per packet.
pub const PUBLISH_EVERY: Duration = Duration::from_millis(10);
/// How long a receive blocks when nothing is waiting to be published or made durable (then
/// the loop wakes for the shutdown signal and the lease timer, which counts in seconds).
const IDLE_WAKE: Duration = Duration::from_millis(200);

/// Datagrams per system call.
const BATCH: usize = 32;
/// How long the loop waits for the disk before looking at the socket again. Requests that
/// arrive meanwhile wait at most this long, and are then taken together: one wake-up per slice
/// rather than per datagram (at 8k DORA/s, 300 µs slices cost 30% more CPU than 1 ms ones).
const DISK_SLICE: Duration = Duration::from_millis(1);
/// Socket buffers asked for: a few thousand requests can queue during a burst.
const SOCKET_BUFFER: usize = 4 << 20;

struct Loop<'a> {
    sock: &'a UdpSocket,
    config: &'a Config,
    local: SocketAddr,
    store: &'a Store,
    /// The lease set: owned here, and only here.
    server: Server,
    log: Box<dyn LeaseLog>,
    board: &'a LeaseBoard,
    counters: &'a Counters,
    on_event: &'a OnEvent,
    /// Replies (and reply-less changes) waiting for their change to be durable, in journal
    /// order.
    pending: VecDeque<Outgoing>,
    /// Positions the log refused, not yet matched with `pending` (in order).
    refused: VecDeque<u64>,
    /// Scratch for the log's refusals and remote changes.
    scratch_seqs: Vec<u64>,
    scratch_changes: Vec<Change>,
    /// Replies ready to leave, sent together (`sendmmsg`) once the pass has decided them all.
    outbox: Vec<Outgoing>,
    /// Headers for the batched sends.
    send_headers: MultiHeaders<SockaddrIn>,
    last_publish: Instant,
    /// The socket's receive timeout now.
    wake: Duration,
}

impl Loop<'_> {
    fn run(&mut self, shutdown: &CancellationToken) {
        let fd = self.sock.as_raw_fd();
        let mut bufs: Box<[[u8; 1500]; BATCH]> = Box::new([[0u8; 1500]; BATCH]);
        let mut headers = MultiHeaders::<SockaddrIn>::preallocate(
            BATCH,
            Some(nix::cmsg_space!(nix::libc::in_pktinfo)),
        );
        let fixed_local = match self.local {
            SocketAddr::V4(a) if !a.ip().is_unspecified() => Some(*a.ip()),
            _ => None,
        };
        let default_local = fixed_local
            .or(self.config.server_id)
            .unwrap_or(Ipv4Addr::UNSPECIFIED);
        // (buffer slot, length, sender, arrival): skipped datagrams leave gaps in the slots.
        let mut got: Vec<(usize, usize, SocketAddrV4, Meta)> = Vec::with_capacity(BATCH);
        while !shutdown.is_cancelled() || !self.pending.is_empty() {
            // Block for work only when no ACK is waiting on the disk.
            // Whether this pass's receive blocked (a timeout then means the loop is idle).
            let waited = self.pending.is_empty();
            let flags = if waited {
                MsgFlags::MSG_WAITFORONE
            } else {
                MsgFlags::MSG_DONTWAIT
            };
            got.clear();
            {
                let mut iovs = bufs.each_mut().map(|b| [IoSliceMut::new(&mut b[..])]);
                if let Ok(msgs) = recvmmsg(fd, &mut headers, iovs.iter_mut(), flags, None) {
                    for (slot, m) in msgs.enumerate() {
                        let mut meta = Meta {
                            local: default_local,
                            ifindex: 0,
                        };
                        if let Ok(cmsgs) = m.cmsgs() {
                            for c in cmsgs {
                                if let ControlMessageOwned::Ipv4PacketInfo(info) = c {
                                    meta.ifindex = info.ipi_ifindex as u32;
                                    let spec =
                                        Ipv4Addr::from(u32::from_be(info.ipi_spec_dst.s_addr));
                                    if fixed_local.is_none() && !spec.is_unspecified() {
                                        meta.local = self.config.server_id.unwrap_or(spec);
                                    }
                                }
                            }
                        }
                        if m.flags.contains(MsgFlags::MSG_TRUNC) {
                            self.counters.count_drop(DropReason::Oversized);
                            continue;
                        }
                        if let Some(from) = m.address {
                            got.push((slot, m.bytes, SocketAddrV4::from(from), meta));
                        }
                    }
                }
            }
            let now = unix_now();
            self.take_remote();
            if !got.is_empty() {
                let arrived = Instant::now();
                self.counters
                    .received
                    .fetch_add(got.len() as u64, Ordering::Relaxed);
                let table = self.store.load();
                for (slot, n, from, meta) in &got {
                    let outcome = self.server.handle(&table, now, meta, &bufs[*slot][..*n]);
                    self.decide(outcome, *from, meta.ifindex, arrived);
                }
            } else if let Some(first) = self.pending.front() {
                // Nothing to read: wait for the disk, in slices so that requests arriving
                // meanwhile are not left in the socket queue long.
                let seq = first.seq;
                if self.log.wait_settled_for(seq, DISK_SLICE).is_err() {
                    let lost = self.pending.len() as u64;
                    self.counters
                        .journal_errors
                        .fetch_add(lost, Ordering::Relaxed);
                    self.pending.clear();
                }
            }
            self.flush_durable();
            self.send_outbox();
            self.handle_timers(now);
            if self.server.has_unpublished() && self.last_publish.elapsed() >= PUBLISH_EVERY {
                self.publish();
            }
            // With something left to publish, wake in time to publish it. The long wait comes
            // back only once a blocking receive timed out with nothing to do, so that steady
            // traffic does not pay a system call per pass to switch back and forth.
            let idle = waited && got.is_empty() && self.pending.is_empty();
            self.wake_within(if self.server.has_unpublished() || !idle {
                PUBLISH_EVERY
            } else {
                IDLE_WAKE
            });
            // Between appends: the set is the one after every change queued so far.
            self.log.upkeep(self.server.leases(), now);
        }
    }

    /// Applies what other instances changed (cluster mode), announces it, and takes the
    /// current share of clients: before any decision of this pass, as the log requires.
    fn take_remote(&mut self) {
        self.log.take_remote(&mut self.scratch_changes);
        if !self.scratch_changes.is_empty() {
            self.counters
                .remote_changes
                .fetch_add(self.scratch_changes.len() as u64, Ordering::Relaxed);
            for c in self.scratch_changes.drain(..) {
                self.server.apply_remote(&c);
                (self.on_event)(&LeaseEvent::Changed(c));
            }
        }
        self.server.set_share(self.log.share());
    }

    /// Ends what is due (leases, offers, quarantines) and announces each end.
    fn handle_timers(&mut self, now: u64) {
        if self.server.poll_timeout().is_none_or(|t| t > now) {
            return;
        }
        let ended = self.server.handle_timeout(now);
        if ended.is_empty() {
            return;
        }
        self.publish();
        for e in ended {
            (self.on_event)(&LeaseEvent::Ended(e));
        }
    }

    /// Sets how long a blocking receive waits (only when it changes: it is a system call).
    fn wake_within(&mut self, d: Duration) {
        if self.wake != d && self.sock.set_read_timeout(Some(d)).is_ok() {
            self.wake = d;
        }
    }

    /// Publishes the lease view as it is now.
    fn publish(&mut self) {
        self.server.publish(self.board);
        self.last_publish = Instant::now();
    }

    fn decide(&mut self, outcome: Outcome, from: SocketAddrV4, ifindex: u32, arrived: Instant) {
        match outcome {
            Outcome::Reply(r) => {
                let mut to = address(r.dest, from, self.local.port());
                if let Destination::Hardware { yiaddr, chaddr } = r.dest
                    && to.ip().is_broadcast()
                    && crate::arp::set_entry(self.sock, ifindex, yiaddr, chaddr)
                {
                    // RFC 2131 §4.1: unicast to the client's hardware address and yiaddr.
                    to = SocketAddrV4::new(yiaddr, CLIENT_PORT);
                    self.counters
                        .hardware_unicasts
                        .fetch_add(1, Ordering::Relaxed);
                }
                let out = Outgoing {
                    seq: 0,
                    arrived,
                    to,
                    bytes: r.bytes,
                    ifindex,
                    change: None,
                    kind: r.kind,
                };
                match r.change {
                    None => self.outbox.push(out),
                    Some(c) => match self.log.append(&c) {
                        Ok(seq) => self.pending.push_back(Outgoing {
                            seq,
                            change: Some(c),
                            ..out
                        }),
                        Err(e) => {
                            tracing::error!(error = %e, "lease not journaled: no ACK");
                            self.counters.journal_errors.fetch_add(1, Ordering::Relaxed);
                        }
                    },
                }
            }
            Outcome::Change(c) => {
                // No reply; announced once durable.
                match self.log.append(&c) {
                    Ok(seq) => self.pending.push_back(Outgoing {
                        seq,
                        arrived,
                        bytes: Vec::new(),
                        to: from,
                        ifindex: 0,
                        change: Some(c),
                        kind: dhcproto::v4::MessageType::Release,
                    }),
                    Err(e) => {
                        tracing::error!(error = %e, change = ?c, "lease change not journaled");
                        self.counters.journal_errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            Outcome::Drop(reason) => {
                self.counters.count_drop(reason);
            }
        }
    }

    /// Sends every held reply whose change is now on disk, and announces the change. The
    /// lease view is published first, so a client holding its ACK finds its lease in DNS.
    fn flush_durable(&mut self) {
        let durable = self.log.settled();
        if self.pending.front().is_none_or(|o| o.seq > durable) {
            return;
        }
        // Refusals are reported no later than their positions settle.
        self.log.take_refused(&mut self.scratch_seqs);
        if !self.scratch_seqs.is_empty() {
            // Several transactions may settle out of order: keep the refusals sorted.
            self.refused.extend(self.scratch_seqs.drain(..));
            self.refused.make_contiguous().sort_unstable();
        }
        self.publish();
        while self.pending.front().is_some_and(|o| o.seq <= durable) {
            let Some(mut out) = self.pending.pop_front() else {
                break;
            };
            while self.refused.front().is_some_and(|r| *r < out.seq) {
                self.refused.pop_front();
            }
            if self.refused.front() == Some(&out.seq) {
                self.refused.pop_front();
                self.counters.refused.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            if let Some(c) = out.change.take() {
                (self.on_event)(&LeaseEvent::Changed(c));
            }
            if !out.bytes.is_empty() {
                self.outbox.push(out);
            }
        }
    }

    /// Sends every reply in the outbox: runs of unicasts in one `sendmmsg` each, broadcasts
    /// (which name their interface) one by one.
    fn send_outbox(&mut self) {
        let fd = self.sock.as_raw_fd();
        let outbox = std::mem::take(&mut self.outbox);
        let mut at = 0;
        while at < outbox.len() {
            if outbox[at].needs_interface() {
                let r = self.send_one(&outbox[at]);
                self.sent(&outbox[at], r);
                at += 1;
                continue;
            }
            let end = outbox[at..]
                .iter()
                .take(BATCH)
                .position(Outgoing::needs_interface)
                .map_or((at + BATCH).min(outbox.len()), |p| at + p);
            let mut iovs = [[IoSlice::new(&[])]; BATCH];
            let mut addrs = [None; BATCH];
            for (i, o) in outbox[at..end].iter().enumerate() {
                iovs[i] = [IoSlice::new(&o.bytes)];
                addrs[i] = Some(SockaddrIn::from(o.to));
            }
            let n = end - at;
            match sendmmsg(
                fd,
                &mut self.send_headers,
                &iovs[..n],
                &addrs[..n],
                [],
                MsgFlags::empty(),
            ) {
                Ok(r) => {
                    // A short count: the next one failed; the next call reports why.
                    let sent = r.count().max(1).min(n);
                    for o in &outbox[at..at + sent] {
                        self.sent(o, Ok(()));
                    }
                    at += sent;
                }
                Err(nix::errno::Errno::EINTR) => {}
                Err(e) => {
                    self.sent(&outbox[at], Err(e));
                    at += 1;
                }
            }
        }
        // The allocation is kept for the next pass.
        self.outbox = outbox;
        self.outbox.clear();
    }

    /// Sends one broadcast from the interface its request came in on.
    fn send_one(&self, out: &Outgoing) -> nix::Result<()> {
        let to = SockaddrIn::from(out.to);
        let iov = [IoSlice::new(&out.bytes)];
        let info = nix::libc::in_pktinfo {
            ipi_ifindex: out.ifindex as i32,
            ipi_spec_dst: nix::libc::in_addr { s_addr: 0 },
            ipi_addr: nix::libc::in_addr { s_addr: 0 },
        };
        let cmsgs = [ControlMessage::Ipv4PacketInfo(&info)];
        sendmsg(
            self.sock.as_raw_fd(),
            &iov,
            &cmsgs,
            MsgFlags::empty(),
            Some(&to),
        )
        .map(|_| ())
    }

    /// Counts a reply sent, or not.
    fn sent(&self, out: &Outgoing, result: nix::Result<()>) {
        let c = self.counters;
        match result {
            Ok(()) => {
                c.sent.fetch_add(1, Ordering::Relaxed);
                c.reply_seconds.observe(out.arrived.elapsed());
                let by_kind = match out.kind {
                    dhcproto::v4::MessageType::Offer => &c.offers,
                    dhcproto::v4::MessageType::Ack => &c.acks,
                    _ => &c.naks,
                };
                by_kind.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => {
                tracing::debug!(error = %e, to = %out.to, "DHCP reply not sent");
                c.send_errors.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

impl Outgoing {
    /// A broadcast leaves by the interface its request came in on (IP_PKTINFO), so it is sent
    /// on its own.
    fn needs_interface(&self) -> bool {
        self.ifindex > 0 && self.to.ip().is_broadcast()
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
        // entry (see `Loop::decide`); this is the broadcast it falls back to.
        Destination::Hardware { .. } | Destination::Broadcast => {
            SocketAddrV4::new(Ipv4Addr::BROADCAST, CLIENT_PORT)
        }
    }
}
