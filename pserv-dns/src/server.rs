//! The service: UDP ([`crate::udp`], batched, a thread per socket) and TCP ([`crate::tcp`],
//! on the tokio runtime) on every address, started from sockets already bound and stopped by
//! one shutdown signal.
//!
//! [`start`] gives the shape every pserv service has ([`pserv_net::Running`]: addresses, its
//! own metrics collector, a join); [`Service`] is the same service for tests and embedders
//! that read its counters directly.

use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::sync::Arc;
use std::thread::JoinHandle;

use pserv_core::Store;
use pserv_core::lease::LeaseBoard;
use pserv_net::Running;
use pserv_net::service::Join;
use tokio_util::sync::CancellationToken;

use crate::counters::{Counters, ForwardCounters};
use crate::metrics::Metrics;
use crate::respond::Responder;
use crate::tcp::Limits;

/// The DNS sockets: UDP and TCP on one port per address, bound and not yet served.
#[derive(Debug)]
pub struct Sockets {
    pairs: Vec<(UdpSocket, TcpListener)>,
}

impl Sockets {
    /// Binds UDP and TCP on one port per address. For port 0 the UDP socket picks the port
    /// and TCP follows it; if TCP finds that port taken (another program's TCP), it tries
    /// again with a fresh port.
    pub fn bind(addrs: &[SocketAddr]) -> std::io::Result<Self> {
        let mut pairs = Vec::with_capacity(addrs.len());
        for addr in addrs {
            pairs.push(bind_pair(*addr)?);
        }
        Ok(Self { pairs })
    }

    /// The bound addresses (port 0 resolved).
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.pairs
            .iter()
            .filter_map(|(u, _)| u.local_addr().ok())
            .collect()
    }
}

fn bind_pair(addr: SocketAddr) -> std::io::Result<(UdpSocket, TcpListener)> {
    let mut attempt = 0;
    loop {
        let sock = UdpSocket::bind(addr)?;
        match TcpListener::bind(sock.local_addr()?) {
            Ok(listener) => return Ok((sock, listener)),
            Err(e) if addr.port() == 0 && attempt < 16 => {
                tracing::debug!(error = %e, "TCP port taken; picking another");
                attempt += 1;
            }
            Err(e) => return Err(e),
        }
    }
}

/// Serves `sockets` until `shutdown` is cancelled, answering from `responder`. Must be called
/// inside a tokio runtime (TCP runs on it; UDP has its own threads). The join resolves once
/// the UDP threads have finished their batch and TCP has closed its connections.
pub fn start(
    sockets: Sockets,
    responder: Arc<Responder>,
    limits: Limits,
    shutdown: CancellationToken,
) -> std::io::Result<Running> {
    let parts = Parts::start(sockets, responder, limits, shutdown)?;
    Ok(Running {
        name: "DNS",
        addrs: parts.local,
        metrics: Box::new(Metrics {
            counters: parts.counters,
            forward: parts.forward,
        }),
        join: parts.join,
    })
}

/// What a started service is made of, before it is wrapped as a [`Running`] or a [`Service`].
struct Parts {
    local: Vec<SocketAddr>,
    counters: Arc<Counters>,
    /// TCP's, then one set per UDP socket.
    forward: Vec<Arc<ForwardCounters>>,
    join: Join,
}

impl Parts {
    fn start(
        sockets: Sockets,
        responder: Arc<Responder>,
        limits: Limits,
        shutdown: CancellationToken,
    ) -> std::io::Result<Self> {
        let local = sockets.local_addrs();
        // The service's own token, cancelled with the caller's: if a part cannot start, the
        // parts already started stop, and nothing else does.
        let shutdown = shutdown.child_token();
        let started = shutdown.clone().drop_guard();
        // Queries that came over TCP share one set of forwarding counters, whatever the socket.
        let tcp_forward = Arc::new(ForwardCounters::default());
        let mut forward = vec![tcp_forward.clone()];
        let mut tcp = Vec::new();
        let mut udp = Vec::new();
        for (sock, listener) in sockets.pairs {
            let listener = pserv_net::tcp::from_std(listener)?;
            tcp.push(tokio::spawn(crate::tcp::serve(
                listener,
                responder.clone(),
                tcp_forward.clone(),
                limits,
                shutdown.clone(),
            )));
            let threads = crate::udp::spawn(sock, responder.clone(), shutdown.clone())?;
            udp.extend(threads.threads);
            forward.push(threads.forward);
        }
        started.disarm();
        Ok(Self {
            local,
            counters: responder.counters().clone(),
            forward,
            join: Box::pin(stopped(shutdown, udp, tcp)),
        })
    }
}

/// Waits for the shutdown signal, then for the UDP threads (joined off the runtime's threads)
/// and the TCP tasks.
async fn stopped(
    shutdown: CancellationToken,
    udp: Vec<JoinHandle<()>>,
    tcp: Vec<tokio::task::JoinHandle<()>>,
) -> Result<(), pserv_net::service::StopError> {
    shutdown.cancelled().await;
    let panicked = tokio::task::spawn_blocking(move || {
        udp.into_iter()
            .map(JoinHandle::join)
            .filter(Result::is_err)
            .count()
    })
    .await?;
    let mut failed = 0;
    for t in tcp {
        failed += usize::from(t.await.is_err());
    }
    match (panicked, failed) {
        (0, 0) => Ok(()),
        _ => Err(format!("{panicked} UDP threads and {failed} TCP tasks of DNS panicked").into()),
    }
}

/// A running DNS service: UDP and TCP on the given addresses, with its counters at hand.
pub struct Service {
    join: Join,
    shutdown: CancellationToken,
    /// The addresses actually bound (port 0 resolved).
    pub local: Vec<SocketAddr>,
    counters: Arc<Counters>,
    forward: Vec<Arc<ForwardCounters>>,
}

impl std::fmt::Debug for Service {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Service")
            .field("local", &self.local)
            .finish_non_exhaustive()
    }
}

impl Service {
    /// Serves `sockets` until `shutdown` is cancelled, as [`start`] does. Must be called inside
    /// a tokio runtime (TCP runs on it; UDP has its own threads).
    pub fn spawn(
        sockets: Sockets,
        responder: Arc<Responder>,
        limits: Limits,
        shutdown: CancellationToken,
    ) -> std::io::Result<Self> {
        let parts = Parts::start(sockets, responder, limits, shutdown.clone())?;
        Ok(Self {
            join: parts.join,
            shutdown,
            local: parts.local,
            counters: parts.counters,
            forward: parts.forward,
        })
    }

    /// Binds every address and serves answers from `store` (and `leases` for dynamic names),
    /// with the default TCP [`Limits`] and a shutdown signal of its own
    /// ([`Service::shutdown`]). Must be called inside a tokio runtime.
    pub async fn bind(
        addrs: &[SocketAddr],
        store: Arc<Store>,
        leases: Arc<LeaseBoard>,
    ) -> std::io::Result<Self> {
        Self::bind_with(addrs, store, leases, Limits::default()).await
    }

    /// [`Service::bind`] with the given TCP limits.
    pub async fn bind_with(
        addrs: &[SocketAddr],
        store: Arc<Store>,
        leases: Arc<LeaseBoard>,
        limits: Limits,
    ) -> std::io::Result<Self> {
        let sockets = Sockets::bind(addrs)?;
        let responder = Arc::new(Responder::new(store, leases));
        Self::spawn(sockets, responder, limits, CancellationToken::new())
    }

    /// The responder's counters.
    pub fn counters(&self) -> Arc<Counters> {
        self.counters.clone()
    }

    /// Forwarding counters: TCP's, then one set per UDP socket.
    pub fn forward_counters(&self) -> Vec<Arc<ForwardCounters>> {
        self.forward.clone()
    }

    /// Waits until the shutdown signal has stopped everything: the UDP threads finish their
    /// batch; TCP stops accepting and closes its connections.
    pub async fn stopped(self) {
        if let Err(e) = self.join.await {
            tracing::warn!(error = %e, "DNS service stopped");
        }
    }

    /// Cancels the service's shutdown signal and waits for it to stop.
    pub async fn shutdown(self) {
        self.shutdown.cancel();
        self.stopped().await;
    }
}
