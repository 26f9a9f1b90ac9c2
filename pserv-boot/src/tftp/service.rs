//! The TFTP service: a thin tokio loop around [`Transfer`]. No protocol decisions here beyond
//! admission: the request socket takes read requests and gives each admitted one a task with
//! its own socket (its transfer ID, RFC 1350 §4), which feeds the transfer packets and timer
//! events and sends what it asks for.
//!
//! Admission: at most [`Config::max_transfers`] at once and [`Config::max_per_client`] per
//! client address (so one machine retrying cannot starve a rack), a request repeated by a
//! client whose transfer is running is ignored (its first OACK or DATA was late, not lost), and
//! write requests are refused. Every refusal and drop is counted by reason; a packet on a
//! transfer's port from anyone but its client gets ERROR 5 (unknown transfer ID), counted.
//!
//! File reads are `pread`s on the runtime's threads: boot files are small and sit in the page
//! cache once the first machine of a rack has fetched them.

use std::collections::HashMap;
use std::io::IoSliceMut;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use nix::sys::socket::{MsgFlags, SockaddrStorage, recvmsg};
use parking_lot::Mutex;
use pserv_core::histogram::Histogram;
use pserv_net::Running;
use pserv_net::metrics::{
    Collector, DescriptorEncoder, MetricType, family, histogram, load, single,
};
use pserv_net::udp::{enable_packet_info, grow_buffers, packet_info, socket_addr};
use tokio::net::UdpSocket;
use tokio_util::sync::CancellationToken;

use super::packet::{self, ErrorCode, Packet};
use super::transfer::{Limits, Transfer, TransferError};
use crate::tree::TreeError;
use crate::vtree::{Content, Tree, Via};

/// The request socket's receive buffer.
const REQUEST_BUFFER: usize = 4 << 20;

/// How the service admits transfers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Config {
    /// What transfers may negotiate.
    pub limits: Limits,
    /// Transfers at once.
    pub max_transfers: usize,
    /// Transfers at once from one client address.
    pub max_per_client: usize,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            limits: Limits::default(),
            max_transfers: 1024,
            max_per_client: 8,
        }
    }
}

/// Why a datagram did not start a transfer, or was not taken by one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum DropReason {
    /// Not a TFTP packet.
    Malformed,
    /// A packet other than a read request on the request port.
    NotARequest,
    /// A write request (the server is read only).
    WriteRefused,
    /// A name that tries to leave the boot directory, or is not a name.
    BadName,
    /// No such file.
    NotFound,
    /// The file could not be read.
    Unreadable,
    /// [`Config::max_transfers`] were running.
    Busy,
    /// [`Config::max_per_client`] were running for this client.
    ClientBusy,
    /// The client repeated a request whose transfer is running.
    Repeated,
    /// A packet on a transfer's port from someone else.
    UnknownTid,
    /// A machine's configuration asked for from an address that is not that machine's.
    NotYours,
}

impl DropReason {
    /// Every reason, in the order of [`Counters::drops`].
    pub const ALL: [Self; 11] = [
        Self::Malformed,
        Self::NotARequest,
        Self::WriteRefused,
        Self::BadName,
        Self::NotFound,
        Self::Unreadable,
        Self::Busy,
        Self::ClientBusy,
        Self::Repeated,
        Self::UnknownTid,
        Self::NotYours,
    ];

    /// Its label in metrics.
    pub fn name(self) -> &'static str {
        match self {
            Self::Malformed => "malformed",
            Self::NotARequest => "not_a_request",
            Self::WriteRefused => "write_refused",
            Self::BadName => "bad_name",
            Self::NotFound => "not_found",
            Self::Unreadable => "unreadable",
            Self::Busy => "busy",
            Self::ClientBusy => "client_busy",
            Self::Repeated => "repeated",
            Self::UnknownTid => "unknown_tid",
            Self::NotYours => "not_yours",
        }
    }
}

/// What the service counts.
#[derive(Debug, Default)]
pub struct Counters {
    /// Transfers started.
    pub started: AtomicU64,
    /// Transfers whose last block was acknowledged.
    pub completed: AtomicU64,
    /// Transfers the client aborted (an ERROR; PXE ROMs do after reading `tsize`).
    pub aborted: AtomicU64,
    /// Transfers that failed: the client stopped acknowledging, or a read failed.
    pub failed: AtomicU64,
    /// Bytes acknowledged by clients.
    pub bytes: AtomicU64,
    /// Transfers running now.
    pub active: AtomicU64,
    /// Drops and refusals, by [`DropReason::ALL`] index.
    pub drops: [AtomicU64; DropReason::ALL.len()],
    /// Duration of completed transfers.
    pub duration_seconds: Histogram,
    /// Timer resends (a window, or the OACK) in all transfers.
    pub timeouts: AtomicU64,
    /// ACKs repeating one already received (clients that timed out waiting for DATA).
    pub duplicate_acks: AtomicU64,
}

impl Counters {
    fn count_drop(&self, d: DropReason) {
        self.drops[d as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// Drops so far, by reason.
    pub fn drops(&self) -> impl Iterator<Item = (DropReason, u64)> + '_ {
        DropReason::ALL
            .iter()
            .map(|d| (*d, self.drops[*d as usize].load(Ordering::Relaxed)))
    }
}

/// How a request ended, for boot-progress events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The client acknowledged the last block.
    Completed,
    /// The client sent an ERROR (a size query ends this way).
    Aborted,
    /// The client stopped acknowledging, or the file could not be read.
    Failed,
    /// No such file in the boot directory.
    NotFound,
    /// Refused: a name out of the directory, a write request, or no room (busy).
    Refused,
}

/// One request's end: what a controller following a machine's boot wants to know.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(tag = "event", rename = "tftp")]
pub struct Fetched {
    /// The client's address and port.
    pub client: SocketAddr,
    /// The name it asked for.
    pub file: String,
    /// The file's size (0 when it was not served).
    pub size: u64,
    /// Bytes the client acknowledged.
    pub bytes: u64,
    /// How it ended.
    pub outcome: Outcome,
    /// From the request to the end.
    pub seconds: f64,
}

/// Called with every request's end (on the runtime: keep it short).
pub type OnFetched = Arc<dyn Fn(&Fetched) + Send + Sync>;

/// Who is being served: client addresses with a running transfer, and counts per address.
#[derive(Debug, Default)]
struct Admission {
    clients: HashMap<SocketAddr, ()>,
    per_ip: HashMap<IpAddr, usize>,
}

/// Starts serving read requests arriving on `sock` from `tree` until `shutdown` (call inside
/// a tokio runtime). The service owns its counters; [`Running::metrics`] encodes them as the
/// `pserv_tftp_*` metrics, and [`Running::join`] resolves once the request loop has stopped
/// (running transfers are abandoned then).
pub fn start(
    sock: UdpSocket,
    tree: Arc<Tree>,
    config: Config,
    on_fetched: OnFetched,
    shutdown: CancellationToken,
) -> std::io::Result<Running> {
    let local = sock.local_addr()?;
    let counters = Arc::new(Counters::default());
    // A thread and a runtime of its own: a lock-step transfer waits a round trip per block,
    // and on a runtime shared with HTTP boot its every wake-up queued behind tasks streaming
    // kernels and initrds (a storm's TFTP phase was most of its time to all booted, with not
    // one packet lost). Its own thread gets the scheduler's share at once.
    let sock = sock.into_std()?;
    let thread = {
        let counters = counters.clone();
        std::thread::Builder::new()
            .name("pserv-tftp".into())
            .spawn(move || -> std::io::Result<()> {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()?;
                rt.block_on(async move {
                    let sock = UdpSocket::from_std(sock)?;
                    serve(sock, tree, config, counters, on_fetched, shutdown).await;
                    Ok(())
                })
            })?
    };
    Ok(Running {
        name: "TFTP",
        addrs: vec![local],
        metrics: Box::new(Metrics(counters)),
        join: Running::join_thread(thread),
    })
}

/// The TFTP service's `/metrics`.
#[derive(Debug)]
struct Metrics(Arc<Counters>);

impl Collector for Metrics {
    #[rustfmt::skip]
    fn encode(&self, mut e: DescriptorEncoder<'_>) -> pserv_net::metrics::Result {
        use MetricType::{Counter, Gauge};
        let (c, e) = (&*self.0, &mut e);
        family(e, "pserv_tftp_transfers", "TFTP transfers by outcome", Counter, "outcome", &[
            ("started", load(&c.started)),
            ("completed", load(&c.completed)),
            ("aborted", load(&c.aborted)),
            ("failed", load(&c.failed)),
        ])?;
        single(e, "pserv_tftp_active", "TFTP transfers running", Gauge, load(&c.active))?;
        single(e, "pserv_tftp_bytes", "Bytes TFTP clients acknowledged", Counter, load(&c.bytes))?;
        let drops: Vec<(&str, u64)> = c.drops().map(|(r, v)| (r.name(), v)).collect();
        family(e, "pserv_tftp_dropped", "TFTP requests refused and packets dropped, by reason", Counter, "reason", &drops)?;
        family(e, "pserv_tftp_trouble", "TFTP signs of loss or delay: the server's timer resending, clients repeating an ACK", Counter, "kind", &[
            ("timeout_resends", load(&c.timeouts)),
            ("duplicate_acks", load(&c.duplicate_acks)),
        ])?;
        histogram(e, "pserv_tftp_transfer_seconds", "Duration of completed TFTP transfers", &c.duration_seconds)
    }
}

/// Serves read requests arriving on `sock` from `tree` until `shutdown`, counting into
/// `counters`; running transfers are abandoned then. [`start`] runs this as a service; this is
/// the loop itself, for a caller that keeps the counters (tests).
pub async fn serve(
    sock: UdpSocket,
    tree: Arc<Tree>,
    config: Config,
    counters: Arc<Counters>,
    on_fetched: OnFetched,
    shutdown: CancellationToken,
) {
    let local_ip = sock
        .local_addr()
        .map_or(IpAddr::from([0, 0, 0, 0]), |a| a.ip());
    // A rack powering on sends its RRQs in one burst: queue them rather than drop them.
    grow_buffers(&sock, REQUEST_BUFFER);
    // On a wildcard address, learn which address each request was sent to (IP_PKTINFO,
    // IPV6_PKTINFO: on a dual-stack socket, IPv4 requests too, IPv4-mapped), so its transfer
    // answers from that address: a client on a host with several addresses drops DATA that
    // comes from another one.
    if local_ip.is_unspecified()
        && let Err(e) = enable_packet_info(&sock)
    {
        tracing::debug!(error = %e, "TFTP: no packet info; transfers answer from the routed address");
    }
    // On a dual-stack socket, IPv4 requests report IP_PKTINFO too: its `ipi_spec_dst` is the
    // interface's address for a broadcast, where IPV6_PKTINFO would give the broadcast.
    if local_ip.is_ipv6() && local_ip.is_unspecified() {
        let _ =
            nix::sys::socket::setsockopt(&sock, nix::sys::socket::sockopt::Ipv4PacketInfo, &true);
    }
    let front = Front {
        sock,
        local_ip,
        tree,
        config,
        counters,
        on_fetched,
        shutdown,
        admission: Arc::default(),
    };
    let mut buf = vec![0u8; 65536];
    let mut out = Vec::with_capacity(128);
    loop {
        let (n, from, to) = tokio::select! {
            r = recv_with_destination(&front.sock, &mut buf) => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::debug!(error = %e, "TFTP receive");
                    continue;
                }
            },
            () = front.shutdown.cancelled() => break,
        };
        front.handle(&buf[..n], from, to, &mut out).await;
    }
}

/// The request port: admits read requests and starts their transfers.
struct Front {
    sock: UdpSocket,
    /// The address `sock` is bound to (unspecified for a wildcard).
    local_ip: IpAddr,
    tree: Arc<Tree>,
    config: Config,
    counters: Arc<Counters>,
    on_fetched: OnFetched,
    shutdown: CancellationToken,
    admission: Arc<Mutex<Admission>>,
}

/// A read request, as read off the request port.
struct ReadRequest {
    name: String,
    options: Vec<(String, String)>,
}

/// A request turned away with an ERROR packet.
struct Refusal {
    reason: DropReason,
    code: ErrorCode,
    message: &'static str,
    /// The boot-progress event's outcome, when the refusal is one.
    outcome: Option<Outcome>,
}

impl Refusal {
    /// No room: too many transfers, or no socket for one.
    const BUSY: Self = Self {
        reason: DropReason::Busy,
        code: ErrorCode::Undefined,
        message: "server busy, try again",
        outcome: Some(Outcome::Refused),
    };

    /// Why the tree did not give a name.
    fn of(e: &TreeError) -> Self {
        let (reason, code, message) = match e {
            TreeError::NotYours => (
                DropReason::NotYours,
                ErrorCode::AccessViolation,
                "access violation",
            ),
            TreeError::Hidden => (
                DropReason::NotYours,
                ErrorCode::FileNotFound,
                "file not found",
            ),
            TreeError::BadName | TreeError::Outside => (
                DropReason::BadName,
                ErrorCode::AccessViolation,
                "access violation",
            ),
            TreeError::NotFound => (
                DropReason::NotFound,
                ErrorCode::FileNotFound,
                "file not found",
            ),
            _ => (
                DropReason::Unreadable,
                ErrorCode::Undefined,
                "cannot read the file",
            ),
        };
        let outcome = if reason == DropReason::NotFound {
            Outcome::NotFound
        } else {
            Outcome::Refused
        };
        Self {
            reason,
            code,
            message,
            outcome: Some(outcome),
        }
    }
}

impl Front {
    /// One datagram on the request port, sent by `from` to the local address `to` (when the
    /// socket reports it).
    async fn handle(
        &self,
        datagram: &[u8],
        from: SocketAddr,
        to: Option<IpAddr>,
        out: &mut Vec<u8>,
    ) {
        let reply_from = match to {
            Some(ip) if self.local_ip.is_unspecified() && !ip.is_unspecified() => ip,
            _ => self.local_ip,
        };
        let Some(request) = self.read_request(datagram, from, out).await else {
            return;
        };
        let release = match self.admit(from) {
            Ok(r) => r,
            // Its first OACK or DATA was late, not lost: the running transfer answers.
            Err(DropReason::Repeated) => {
                self.counters.count_drop(DropReason::Repeated);
                return;
            }
            Err(reason) => {
                let busy = Refusal {
                    reason,
                    ..Refusal::BUSY
                };
                return self.refuse(&busy, &request.name, from, out).await;
            }
        };
        let opened = match self.tree.open(
            &request.name,
            Via::Tftp,
            from.ip().to_canonical(),
            reply_from,
        ) {
            Ok(o) => o,
            Err(e) => {
                drop(release);
                return self
                    .refuse(&Refusal::of(&e), &request.name, from, out)
                    .await;
            }
        };
        self.start_transfer(request, opened, from, reply_from, release, out)
            .await;
    }

    /// Reads a read request; anything else is counted and, for a write request, refused.
    async fn read_request(
        &self,
        datagram: &[u8],
        from: SocketAddr,
        out: &mut Vec<u8>,
    ) -> Option<ReadRequest> {
        match packet::parse(datagram) {
            Ok(Packet::Rrq {
                filename, options, ..
            }) => Some(ReadRequest {
                name: filename.to_owned(),
                options: options_owned(&options),
            }),
            Ok(Packet::Wrq { filename }) => {
                let read_only = Refusal {
                    reason: DropReason::WriteRefused,
                    code: ErrorCode::AccessViolation,
                    message: "read only",
                    outcome: Some(Outcome::Refused),
                };
                self.refuse(&read_only, filename, from, out).await;
                None
            }
            Ok(_) => {
                self.counters.count_drop(DropReason::NotARequest);
                None
            }
            Err(_) => {
                self.counters.count_drop(DropReason::Malformed);
                None
            }
        }
    }

    /// Takes a transfer slot for `from`, all in one lock (held for a few map operations).
    fn admit(&self, from: SocketAddr) -> Result<Release, DropReason> {
        let mut a = self.admission.lock();
        if a.clients.contains_key(&from) {
            return Err(DropReason::Repeated);
        }
        if a.clients.len() >= self.config.max_transfers {
            return Err(DropReason::Busy);
        }
        if a.per_ip.get(&from.ip()).copied().unwrap_or(0) >= self.config.max_per_client {
            return Err(DropReason::ClientBusy);
        }
        a.clients.insert(from, ());
        *a.per_ip.entry(from.ip()).or_default() += 1;
        Ok(Release {
            admission: self.admission.clone(),
            client: from,
        })
    }

    /// Turns a request for `file` away: the event (if the refusal is one), the count, the
    /// ERROR packet.
    async fn refuse(&self, r: &Refusal, file: &str, from: SocketAddr, out: &mut Vec<u8>) {
        if let Some(outcome) = r.outcome {
            (self.on_fetched)(&Fetched {
                client: from,
                file: file.to_owned(),
                size: 0,
                bytes: 0,
                outcome,
                seconds: 0.0,
            });
        }
        self.counters.count_drop(r.reason);
        packet::error(r.code, r.message, out);
        let _ = self.sock.send_to(out, from).await;
    }

    /// Gives an admitted request its own socket (its transfer ID) on the address it reached,
    /// and a task that runs its transfer.
    async fn start_transfer(
        &self,
        request: ReadRequest,
        opened: Content,
        from: SocketAddr,
        reply_from: IpAddr,
        release: Release,
        out: &mut Vec<u8>,
    ) {
        let tid = match UdpSocket::bind(SocketAddr::new(reply_from, 0)).await {
            Ok(s) => s,
            Err(e) => {
                drop(release);
                tracing::warn!(error = %e, "TFTP: no socket for a transfer");
                // Counted, but no event: the file was found and may be asked for again.
                let busy = Refusal {
                    outcome: None,
                    ..Refusal::BUSY
                };
                return self.refuse(&busy, &request.name, from, out).await;
            }
        };
        self.counters.started.fetch_add(1, Ordering::Relaxed);
        self.counters.active.fetch_add(1, Ordering::Relaxed);
        let admitted = Admitted {
            tid,
            client: from,
            request,
            opened,
            release,
        };
        tokio::spawn(transfer(
            admitted,
            self.config.limits,
            self.counters.clone(),
            self.on_fetched.clone(),
            self.shutdown.clone(),
        ));
    }
}

/// What a transfer's task owns.
struct Admitted {
    /// Its own socket: its transfer ID.
    tid: UdpSocket,
    client: SocketAddr,
    request: ReadRequest,
    opened: Content,
    /// Its admission slot, freed when the task ends.
    release: Release,
}

/// One admitted transfer, from its first packet to its event.
async fn transfer(
    admitted: Admitted,
    limits: Limits,
    counters: Arc<Counters>,
    on_fetched: OnFetched,
    shutdown: CancellationToken,
) {
    let Admitted {
        tid,
        client,
        request,
        opened,
        release,
    } = admitted;
    let t0 = Instant::now();
    let opts: Vec<(&str, &str)> = request
        .options
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let mut t = Transfer::new(&opts, opened.size(), limits, t0);
    let result = run(&tid, client, &mut t, &opened, &counters, &shutdown).await;
    let trouble = t.trouble();
    counters
        .timeouts
        .fetch_add(u64::from(trouble.timeouts), Ordering::Relaxed);
    counters
        .duplicate_acks
        .fetch_add(u64::from(trouble.duplicate_acks), Ordering::Relaxed);
    let (outcome, bytes) = match result {
        Ok(bytes) => {
            counters.completed.fetch_add(1, Ordering::Relaxed);
            counters.duration_seconds.observe(t0.elapsed());
            (Outcome::Completed, bytes)
        }
        Err((TransferError::Aborted(_), bytes)) => {
            counters.aborted.fetch_add(1, Ordering::Relaxed);
            (Outcome::Aborted, bytes)
        }
        Err((_, bytes)) => {
            counters.failed.fetch_add(1, Ordering::Relaxed);
            (Outcome::Failed, bytes)
        }
    };
    counters.bytes.fetch_add(bytes, Ordering::Relaxed);
    counters.active.fetch_sub(1, Ordering::Relaxed);
    on_fetched(&Fetched {
        // An IPv4 peer of a dual-stack socket as the IPv4 address it is.
        client: SocketAddr::new(client.ip().to_canonical(), client.port()),
        file: request.name,
        size: opened.size(),
        bytes,
        outcome,
        seconds: t0.elapsed().as_secs_f64(),
    });
    drop(release);
}

/// One datagram: its length, sender, and the local address to answer from (IP_PKTINFO's
/// `ipi_spec_dst`, IPv4-mapped on an IPv6 socket; else IPV6_PKTINFO's address), when the
/// socket reports one that can be bound: a multicast or link-local destination is none (the
/// transfer answers from the routed address).
async fn recv_with_destination(
    sock: &UdpSocket,
    buf: &mut [u8],
) -> std::io::Result<(usize, SocketAddr, Option<IpAddr>)> {
    let fd = sock.as_raw_fd();
    loop {
        sock.readable().await?;
        let got = sock.try_io(tokio::io::Interest::READABLE, || {
            let mut iov = [IoSliceMut::new(&mut *buf)];
            let mut space = nix::cmsg_space!(nix::libc::in6_pktinfo, nix::libc::in_pktinfo);
            let msg = recvmsg::<SockaddrStorage>(fd, &mut iov, Some(&mut space), MsgFlags::empty())
                .map_err(std::io::Error::from)?;
            let from = msg
                .address
                .as_ref()
                .and_then(socket_addr)
                .ok_or_else(|| std::io::Error::other("a datagram without a sender"))?;
            let (mut v4, mut v6) = (None, None);
            for c in msg.cmsgs().into_iter().flatten() {
                match packet_info(std::iter::once(c)) {
                    Some(i) if !i.local.is_unspecified() => v4 = Some(i.local),
                    Some(i) if !i.local6.is_unspecified() => v6 = Some(i.local6),
                    _ => {}
                }
            }
            let to = match (v4, v6) {
                (Some(ip), _) if from.is_ipv6() => Some(IpAddr::V6(ip.to_ipv6_mapped())),
                (Some(ip), _) => Some(IpAddr::V4(ip)),
                (None, v6) => v6.map(IpAddr::V6),
            }
            .filter(|ip| match ip.to_canonical() {
                // A link-local destination would need its interface to answer from.
                IpAddr::V6(a) => !a.is_multicast() && !a.is_unicast_link_local(),
                IpAddr::V4(a) => !a.is_multicast() && !a.is_broadcast(),
            });
            Ok((msg.bytes, from, to))
        });
        match got {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            other => return other,
        }
    }
}

fn options_owned(options: &[(&str, &str)]) -> Vec<(String, String)> {
    options
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

/// Frees a client's admission slot when its transfer ends.
struct Release {
    admission: Arc<Mutex<Admission>>,
    client: SocketAddr,
}

impl std::ops::Drop for Release {
    fn drop(&mut self) {
        let mut a = self.admission.lock();
        a.clients.remove(&self.client);
        if let Some(n) = a.per_ip.get_mut(&self.client.ip()) {
            *n -= 1;
            if *n == 0 {
                a.per_ip.remove(&self.client.ip());
            }
        }
    }
}

/// One transfer's loop: send what is due, then wait for the client or the timer. Returns the
/// bytes acknowledged, with the error if it did not complete.
async fn run(
    sock: &UdpSocket,
    client: SocketAddr,
    t: &mut Transfer,
    file: &Content,
    counters: &Counters,
    shutdown: &CancellationToken,
) -> Result<u64, (TransferError, u64)> {
    let mut out = Vec::with_capacity(usize::from(t.negotiated().blksize) + 4);
    let mut buf = vec![0u8; 1024];
    let mut read = |offset: u64, b: &mut [u8]| file.read_at(offset, b);
    loop {
        loop {
            match t.poll_transmit(&mut read, &mut out) {
                Ok(true) => {
                    // A failed send is a lost packet: the timer resends.
                    let _ = sock.send_to(&out, client).await;
                }
                Ok(false) => break,
                Err(e) => {
                    tracing::warn!(error = %e, "TFTP: reading a file failed");
                    packet::error(ErrorCode::Undefined, "read error", &mut out);
                    let _ = sock.send_to(&out, client).await;
                    return Err((TransferError::TimedOut, t.bytes_acked()));
                }
            }
        }
        if t.is_done() {
            return Ok(t.bytes_acked());
        }
        let Some(deadline) = t.poll_timeout() else {
            return Err((TransferError::TimedOut, t.bytes_acked()));
        };
        tokio::select! {
            r = sock.recv_from(&mut buf) => {
                let Ok((n, from)) = r else { continue };
                if from != client {
                    counters.count_drop(DropReason::UnknownTid);
                    let mut e = Vec::new();
                    packet::error(ErrorCode::UnknownTid, "unknown transfer ID", &mut e);
                    let _ = sock.send_to(&e, from).await;
                    continue;
                }
                let Ok(p) = packet::parse(&buf[..n]) else {
                    counters.count_drop(DropReason::Malformed);
                    continue;
                };
                if let Err(e) = t.handle(&p, Instant::now()) {
                    return Err((e, t.bytes_acked()));
                }
            }
            () = tokio::time::sleep_until(deadline.into()) => {
                if let Err(e) = t.handle_timeout(Instant::now()) {
                    packet::error(ErrorCode::Undefined, "timed out", &mut out);
                    let _ = sock.send_to(&out, client).await;
                    return Err((e, t.bytes_acked()));
                }
            }
            () = shutdown.cancelled() => return Err((TransferError::TimedOut, t.bytes_acked())),
        }
    }
}
