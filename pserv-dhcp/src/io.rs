//! The socket side: the only module that touches the network.
//!
//! One receive thread decodes nothing itself: it reads a datagram with its arrival interface
//! and local address (IP_PKTINFO), asks the [`Server`] what to do, appends any lease change to
//! the journal, and hands the reply to the send thread. The send thread waits until the
//! reply's change is durable (group commit: one `fdatasync` covers every reply queued behind
//! it), then sends it out of the interface the request came in on. Receiving never waits for
//! the disk.

use std::collections::HashMap;
use std::io::{IoSlice, IoSliceMut};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use nix::sys::socket::{
    ControlMessage, ControlMessageOwned, MsgFlags, SockaddrIn, recvmsg, sendmsg, setsockopt,
    sockopt,
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
        let send_sock = sock.try_clone()?;
        let stop = Arc::new(AtomicBool::new(false));
        let counters = Arc::new(Counters::default());
        let (tx, rx) = mpsc::channel::<Outgoing>();
        let recv = {
            let (stop, counters, journal) = (stop.clone(), counters.clone(), journal.clone());
            let cfg = config.clone();
            std::thread::Builder::new()
                .name("pserv-dhcp-recv".into())
                .spawn(move || {
                    receive(
                        &sock, &cfg, local, &store, &server, &journal, &tx, &counters, &stop,
                    );
                })?
        };
        let send = {
            let counters = counters.clone();
            std::thread::Builder::new()
                .name("pserv-dhcp-send".into())
                .spawn(move || transmit(&send_sock, &rx, &journal, &counters, &on_change))?
        };
        Ok(Self {
            threads: vec![recv, send],
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

#[allow(clippy::too_many_arguments)]
fn receive(
    sock: &UdpSocket,
    config: &Config,
    local: SocketAddr,
    store: &Store,
    server: &Mutex<Server>,
    journal: &Journal,
    tx: &mpsc::Sender<Outgoing>,
    counters: &Counters,
    stop: &AtomicBool,
) {
    let mut buf = vec![0u8; 1500];
    let mut cmsg = nix::cmsg_space!(nix::libc::in_pktinfo);
    let fixed_local = match local {
        SocketAddr::V4(a) if !a.ip().is_unspecified() => Some(*a.ip()),
        _ => None,
    };
    while !stop.load(Ordering::Relaxed) {
        let (n, from, meta) = {
            let mut iov = [IoSliceMut::new(&mut buf)];
            let Ok(msg) = recvmsg::<SockaddrIn>(
                sock.as_raw_fd(),
                &mut iov,
                Some(&mut cmsg),
                MsgFlags::empty(),
            ) else {
                continue;
            };
            let mut meta = Meta {
                local: fixed_local
                    .or(config.server_id)
                    .unwrap_or(Ipv4Addr::UNSPECIFIED),
                ifindex: 0,
            };
            if let Ok(cmsgs) = msg.cmsgs() {
                for c in cmsgs {
                    if let ControlMessageOwned::Ipv4PacketInfo(info) = c {
                        meta.ifindex = info.ipi_ifindex as u32;
                        let spec = Ipv4Addr::from(u32::from_be(info.ipi_spec_dst.s_addr));
                        if fixed_local.is_none() && !spec.is_unspecified() {
                            meta.local = config.server_id.unwrap_or(spec);
                        }
                    }
                }
            }
            let Some(from) = msg.address else { continue };
            (msg.bytes, SocketAddrV4::from(from), meta)
        };
        counters.received.fetch_add(1, Ordering::Relaxed);
        let table = store.load();
        let outcome = server.lock().handle(&table, unix_now(), &meta, &buf[..n]);
        drop(table);
        match outcome {
            Outcome::Reply(r) => {
                let seq = match &r.change {
                    Some(c) => match journal.append(c) {
                        Ok(seq) => seq,
                        Err(e) => {
                            tracing::error!(error = %e, "lease not journaled: no ACK");
                            counters.journal_errors.fetch_add(1, Ordering::Relaxed);
                            continue;
                        }
                    },
                    None => 0,
                };
                let to = address(r.dest, from, local.port());
                let _ = tx.send(Outgoing {
                    seq,
                    bytes: r.bytes,
                    to,
                    ifindex: meta.ifindex,
                    change: r.change,
                    kind: r.kind,
                });
            }
            Outcome::Change(c) => {
                if let Ok(seq) = journal.append(&c) {
                    // No reply; still announced once durable.
                    let _ = tx.send(Outgoing {
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
                *counters.drops.lock().entry(reason).or_default() += 1;
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
        // Unicast to a client without an address needs an ARP entry (an ioctl this crate does
        // not make: unsafe code is forbidden); RFC 2131 allows broadcasting instead.
        Destination::Hardware { .. } | Destination::Broadcast => {
            SocketAddrV4::new(Ipv4Addr::BROADCAST, CLIENT_PORT)
        }
    }
}

fn transmit(
    sock: &UdpSocket,
    rx: &mpsc::Receiver<Outgoing>,
    journal: &Journal,
    counters: &Counters,
    on_change: &OnChange,
) {
    for out in rx {
        if out.seq > 0 && journal.wait_durable(out.seq).is_err() {
            counters.journal_errors.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        if let Some(c) = &out.change {
            on_change(c);
        }
        if out.bytes.is_empty() {
            continue;
        }
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
        match sendmsg(sock.as_raw_fd(), &iov, cm, MsgFlags::empty(), Some(&to)) {
            Ok(_) => {
                counters.sent.fetch_add(1, Ordering::Relaxed);
                let c = match out.kind {
                    dhcproto::v4::MessageType::Offer => &counters.offers,
                    dhcproto::v4::MessageType::Ack => &counters.acks,
                    _ => &counters.naks,
                };
                c.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => {
                tracing::debug!(error = %e, to = %out.to, "DHCP reply not sent");
                counters.send_errors.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}
