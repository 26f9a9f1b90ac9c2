//! The service: UDP ([`crate::udp`], batched, a thread per socket) and TCP ([`crate::tcp`],
//! on the tokio runtime) on every address, started from sockets already bound and stopped by
//! one shutdown signal.

use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::sync::Arc;
use std::thread::JoinHandle;

use pserv_core::Store;
use pserv_core::lease::LeaseBoard;
use tokio_util::sync::CancellationToken;

use crate::counters::{Counters, ForwardCounters};
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

/// A running DNS service: UDP and TCP on the given addresses.
pub struct Service {
    tcp: Vec<tokio::task::JoinHandle<()>>,
    udp: Vec<JoinHandle<()>>,
    shutdown: CancellationToken,
    /// The addresses actually bound (port 0 resolved).
    pub local: Vec<SocketAddr>,
    responder: Arc<Responder>,
    /// Forwarding: TCP's, then one set per UDP socket.
    forward: Vec<Arc<ForwardCounters>>,
}

impl Service {
    /// Serves `sockets` until `shutdown` is cancelled. Must be called inside a tokio runtime
    /// (TCP runs on it; UDP has its own threads).
    pub fn spawn(
        sockets: Sockets,
        responder: Arc<Responder>,
        limits: Limits,
        shutdown: CancellationToken,
    ) -> std::io::Result<Self> {
        let local = sockets.local_addrs();
        // Queries that came over TCP share one set of forwarding counters, whatever the socket.
        let tcp_forward = Arc::new(ForwardCounters::default());
        let mut forward = vec![tcp_forward.clone()];
        let mut tcp = Vec::new();
        let mut udp = Vec::new();
        for (sock, listener) in sockets.pairs {
            listener.set_nonblocking(true)?;
            let listener = tokio::net::TcpListener::from_std(listener)?;
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
        Ok(Self {
            tcp,
            udp,
            shutdown,
            local,
            responder,
            forward,
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
        self.responder.counters().clone()
    }

    /// Forwarding counters: TCP's, then one set per UDP socket.
    pub fn forward_counters(&self) -> Vec<Arc<ForwardCounters>> {
        self.forward.clone()
    }

    /// Waits until the shutdown signal has stopped everything: the UDP threads finish their
    /// batch; TCP stops accepting and closes its connections.
    pub async fn stopped(mut self) {
        self.shutdown.cancelled().await;
        let threads = std::mem::take(&mut self.udp);
        let _ = tokio::task::spawn_blocking(move || {
            for t in threads {
                let _ = t.join();
            }
        })
        .await;
        for t in self.tcp.drain(..) {
            let _ = t.await;
        }
    }

    /// Cancels the service's shutdown signal and waits for it to stop.
    pub async fn shutdown(self) {
        self.shutdown.cancel();
        self.stopped().await;
    }
}
