//! The PXE boot server on UDP port 4011 (proxyDHCP, issue 23): the second DHCP front end. It
//! holds no lease and needs no owner: each datagram is answered from the served table by
//! [`Server::boot_server`] and the reply goes back where it came from (PXE 2.1: the client's
//! source address and port); the address a machine shows there is recorded on the lease
//! board the virtual tree reads. A thin loop on its own thread, like the DHCP front end.

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use pserv_core::Store;
use pserv_core::lease::{LeaseBoard, Now};
use pserv_net::Running;
use pserv_net::metrics::{Collector, DescriptorEncoder, MetricType, family, load};
use pserv_net::udp::{RecvBatch, Wait};
use tokio_util::sync::CancellationToken;

use crate::io::{self, Counters};
use crate::server::{DropReason, Meta, Outcome, Server};

/// What the boot server reads and writes.
pub struct Setup {
    /// The served table.
    pub store: Arc<Store>,
    /// The decision-maker (and its boot chain), as the DHCP front end's.
    pub server: Server,
    /// Where sightings go (the DHCP service's board).
    pub board: Arc<LeaseBoard>,
    /// The server identifier when the socket is a wildcard and IP_PKTINFO says nothing.
    pub server_id: Option<Ipv4Addr>,
    /// Each ACK decided.
    pub on_proxy: crate::proxy::OnProxy,
}

/// Binds the boot server's socket: as the DHCP socket is bound (IP_PKTINFO, so the reply
/// names the address it reached), on its own address.
pub fn bind(listen: SocketAddr) -> std::io::Result<UdpSocket> {
    io::bind(&io::Config {
        listen,
        interface: None,
        server_id: None,
    })
}

/// Answers boot-server requests on `sock` (from [`bind`]) until `shutdown`.
pub fn start(
    sock: UdpSocket,
    setup: Setup,
    shutdown: CancellationToken,
) -> std::io::Result<Running> {
    let local = sock.local_addr()?;
    pserv_net::wake_on_cancel(&shutdown, &sock)?;
    let counters = Arc::new(Counters::default());
    let front = counters.clone();
    let fixed = match local {
        SocketAddr::V4(a) if !a.ip().is_unspecified() => Some(*a.ip()),
        _ => None,
    };
    let thread = std::thread::Builder::new()
        .name("pserv-pxe".into())
        .spawn(move || -> Result<(), pserv_core::journal::JournalError> {
            let mut batch = RecvBatch::<8>::new(1500);
            while !shutdown.is_cancelled() {
                let got = batch.recv(&sock, Wait::ForOne).unwrap_or(0);
                if got == 0 {
                    continue;
                }
                let table = setup.store.load();
                let now = Now::read().unix;
                for d in batch.datagrams() {
                    if d.truncated {
                        front.count_drop(DropReason::Oversized);
                        if crate::log::enabled() {
                            crate::log::oversized(d.from);
                        }
                        continue;
                    }
                    let SocketAddr::V4(from) = d.from else { continue };
                    front.received.fetch_add(1, Ordering::Relaxed);
                    let local = fixed
                        .or_else(|| d.info.map(|i| i.local).filter(|l| !l.is_unspecified()))
                        .or(setup.server_id)
                        .unwrap_or(Ipv4Addr::UNSPECIFIED);
                    let meta = Meta {
                        local: setup.server_id.unwrap_or(local),
                        ifindex: d.info.map_or(0, |i| i.ifindex),
                    };
                    let (outcome, seen) = setup.server.boot_server(&table, &meta, *from.ip(), batch.payload(d));
                    if crate::log::enabled() {
                        crate::log::request(batch.payload(d), from, &outcome);
                    }
                    if let Some(s) = seen {
                        io::sight(&setup.board, &front, s, now);
                    }
                    match outcome {
                        Outcome::Reply(r) => match sock.send_to(&r.bytes, from) {
                            Ok(_) => {
                                if let Some(a) = &r.proxy {
                                    (setup.on_proxy)(a);
                                }
                                front.sent.fetch_add(1, Ordering::Relaxed);
                                front.acks.fetch_add(1, Ordering::Relaxed);
                            }
                            Err(e) => {
                                tracing::debug!(error = %e, to = %from, "PXE boot server reply not sent");
                                front.send_errors.fetch_add(1, Ordering::Relaxed);
                            }
                        },
                        Outcome::Drop(reason) => front.count_drop(reason),
                        Outcome::Change(_) | Outcome::Seen(_) => {}
                    }
                }
            }
            Ok(())
        })?;
    Ok(Running {
        name: "PXE boot server",
        addrs: vec![local],
        metrics: Box::new(Metrics(counters)),
        join: Running::join_thread(thread),
    })
}

/// The boot server's `/metrics`.
#[derive(Debug)]
struct Metrics(Arc<Counters>);

impl Collector for Metrics {
    #[rustfmt::skip]
    fn encode(&self, mut e: DescriptorEncoder<'_>) -> pserv_net::metrics::Result {
        use MetricType::Counter;
        let (c, e) = (&*self.0, &mut e);
        family(e, "pserv_pxe_packets", "PXE boot server (UDP 4011) packets by direction", Counter, "direction", &[
            ("in", load(&c.received)),
            ("out", load(&c.sent)),
        ])?;
        let mut drops: Vec<(&str, u64)> = c.drops().map(|(r, v)| (r.name(), v)).collect();
        drops.push(("SendError", load(&c.send_errors)));
        drops.sort_unstable();
        family(e, "pserv_pxe_dropped", "PXE boot server requests dropped, by reason", Counter, "reason", &drops)?;
        family(e, "pserv_pxe_sightings", "Addresses machines showed at the PXE boot server, recorded for the address check of their files", Counter, "result", &[
            ("recorded", load(&c.sightings)),
            ("refused", load(&c.sightings_refused)),
        ])
    }
}
