//! The socket side: the only module that touches the network.
//!
//! One thread per socket. It takes a batch of datagrams (`recvmmsg`) with their arrival
//! interface and local address (IP_PKTINFO), asks the [`Server`] what to do with each, appends
//! each lease change to the journal, sends at once what needs no disk (OFFERs, NAKs), and holds
//! each ACK until its change is durable. While the journal's writer thread is in `fdatasync`
//! the loop keeps receiving (non-blocking); only when there is nothing to read does it wait for
//! the disk, so one `fdatasync` covers every ACK queued behind it (group commit) and receiving
//! never stalls behind the disk while there is work.

use std::collections::{HashMap, VecDeque};
use std::io::{IoSlice, IoSliceMut};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use nix::sys::socket::{
    ControlMessage, ControlMessageOwned, MsgFlags, MultiHeaders, SockaddrIn, recvmmsg, sendmsg,
    setsockopt, sockopt,
};
use parking_lot::Mutex;
use pserv_core::Store;
use pserv_core::journal::Journal;
use pserv_core::lease::Change;

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
    /// Replies not sent because their lease could not be made durable.
    pub journal_errors: AtomicU64,
    /// Drops, by reason.
    pub drops: Mutex<HashMap<DropReason, u64>>,
}

/// Called with each lease change once it is durable (for `/v1/events`).
pub type OnChange = Arc<dyn Fn(&Change) + Send + Sync>;

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

/// A running DHCP service.
pub struct Service {
    threads: Vec<JoinHandle<()>>,
    stop: Arc<AtomicBool>,
    /// The bound address.
    pub local: SocketAddr,
    /// Counters.
    pub counters: Arc<Counters>,
}

struct Outgoing {
    seq: u64,
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

fn socket(config: &Config) -> std::io::Result<UdpSocket> {
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
    sock.set_read_timeout(Some(Duration::from_millis(200)))?;
    Ok(sock)
}

impl Service {
    /// Binds and starts answering. `journal` makes leases durable before their ACK.
    pub fn spawn(
        config: Config,
        store: Arc<Store>,
        server: Arc<Mutex<Server>>,
        journal: Arc<Journal>,
        on_change: OnChange,
    ) -> std::io::Result<Self> {
        let sock = socket(&config)?;
        let local = sock.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let counters = Arc::new(Counters::default());
        let thread = {
            let (stop, counters) = (stop.clone(), counters.clone());
            std::thread::Builder::new()
                .name("pserv-dhcp".into())
                .spawn(move || {
                    Loop {
                        sock: &sock,
                        config: &config,
                        local,
                        store: &store,
                        server: &server,
                        journal: &journal,
                        counters: &counters,
                        on_change: &on_change,
                        pending: VecDeque::new(),
                    }
                    .run(&stop);
                })?
        };
        Ok(Self {
            threads: vec![thread],
            stop,
            local,
            counters,
        })
    }

    /// Stops receiving; replies already decided are still sent once durable.
    pub fn shutdown(self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads {
            let _ = t.join();
        }
    }
}

/// Datagrams per system call.
const BATCH: usize = 32;
/// How long the loop waits for the disk before looking at the socket again.
const DISK_SLICE: Duration = Duration::from_micros(300);
/// Socket buffers asked for: a few thousand requests can queue during a burst.
const SOCKET_BUFFER: usize = 4 << 20;

struct Loop<'a> {
    sock: &'a UdpSocket,
    config: &'a Config,
    local: SocketAddr,
    store: &'a Store,
    server: &'a Mutex<Server>,
    journal: &'a Journal,
    counters: &'a Counters,
    on_change: &'a OnChange,
    /// Replies (and reply-less changes) waiting for their change to be durable, in journal
    /// order.
    pending: VecDeque<Outgoing>,
}

impl Loop<'_> {
    fn run(&mut self, stop: &AtomicBool) {
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
        while !stop.load(Ordering::Relaxed) || !self.pending.is_empty() {
            // Block for work only when no ACK is waiting on the disk.
            let flags = if self.pending.is_empty() {
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
                            *self
                                .counters
                                .drops
                                .lock()
                                .entry(DropReason::Oversized)
                                .or_default() += 1;
                            continue;
                        }
                        if let Some(from) = m.address {
                            got.push((slot, m.bytes, SocketAddrV4::from(from), meta));
                        }
                    }
                }
            }
            if !got.is_empty() {
                self.counters
                    .received
                    .fetch_add(got.len() as u64, Ordering::Relaxed);
                let table = self.store.load();
                let now = unix_now();
                for (slot, n, from, meta) in &got {
                    let outcome = self
                        .server
                        .lock()
                        .handle(&table, now, meta, &bufs[*slot][..*n]);
                    self.decide(outcome, *from, meta.ifindex);
                }
            } else if let Some(first) = self.pending.front() {
                // Nothing to read: wait for the disk, in short slices so that requests arriving
                // meanwhile are not left in the socket queue.
                if self
                    .journal
                    .wait_durable_for(first.seq, DISK_SLICE)
                    .is_err()
                {
                    let lost = self.pending.len() as u64;
                    self.counters
                        .journal_errors
                        .fetch_add(lost, Ordering::Relaxed);
                    self.pending.clear();
                }
            }
            self.flush_durable();
        }
    }

    fn decide(&mut self, outcome: Outcome, from: SocketAddrV4, ifindex: u32) {
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
                    to,
                    bytes: r.bytes,
                    ifindex,
                    change: None,
                    kind: r.kind,
                };
                match r.change {
                    None => self.send(&out),
                    Some(c) => match self.journal.append(&c) {
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
                if let Ok(seq) = self.journal.append(&c) {
                    self.pending.push_back(Outgoing {
                        seq,
                        bytes: Vec::new(),
                        to: from,
                        ifindex: 0,
                        change: Some(c),
                        kind: dhcproto::v4::MessageType::Release,
                    });
                }
            }
            Outcome::Drop(reason) => {
                *self.counters.drops.lock().entry(reason).or_default() += 1;
            }
        }
    }

    /// Sends every held reply whose change is now on disk, and announces the change.
    fn flush_durable(&mut self) {
        let durable = self.journal.durable();
        while self.pending.front().is_some_and(|o| o.seq <= durable) {
            let Some(out) = self.pending.pop_front() else {
                break;
            };
            if let Some(c) = &out.change {
                (self.on_change)(c);
            }
            if !out.bytes.is_empty() {
                self.send(&out);
            }
        }
    }

    fn send(&self, out: &Outgoing) {
        let to = SockaddrIn::from(out.to);
        let iov = [IoSlice::new(&out.bytes)];
        // Broadcasts leave by the interface the request came in on.
        let info = nix::libc::in_pktinfo {
            ipi_ifindex: out.ifindex as i32,
            ipi_spec_dst: nix::libc::in_addr { s_addr: 0 },
            ipi_addr: nix::libc::in_addr { s_addr: 0 },
        };
        let cmsgs = [ControlMessage::Ipv4PacketInfo(&info)];
        let cm: &[ControlMessage<'_>] = if out.ifindex > 0 && out.to.ip().is_broadcast() {
            &cmsgs
        } else {
            &[]
        };
        let c = self.counters;
        match sendmsg(
            self.sock.as_raw_fd(),
            &iov,
            cm,
            MsgFlags::empty(),
            Some(&to),
        ) {
            Ok(_) => {
                c.sent.fetch_add(1, Ordering::Relaxed);
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
