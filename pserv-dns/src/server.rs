//! The service: the batched UDP loop ([`crate::udp`]) for UDP, [`crate::tcp`] for TCP.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;

use pserv_core::Store;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::answer::LeaseLookup;
use crate::respond::{Counters, Responder};
use crate::tcp::Limits;

/// Binds UDP and TCP on one port. For port 0 the UDP socket picks the port and TCP follows it;
/// if TCP finds that port taken (another program's TCP), it tries again with a fresh port.
async fn bind_pair(addr: SocketAddr) -> std::io::Result<(std::net::UdpSocket, TcpListener)> {
    let mut attempt = 0;
    loop {
        let sock = std::net::UdpSocket::bind(addr)?;
        match TcpListener::bind(sock.local_addr()?).await {
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
    tcp_stop: watch::Sender<bool>,
    udp: Vec<JoinHandle<()>>,
    stop: Arc<AtomicBool>,
    /// The addresses actually bound (port 0 resolved).
    pub local: Vec<SocketAddr>,
    responder: Arc<Responder>,
}

impl Service {
    /// Binds UDP and TCP on every address and starts answering from `store`, with the default
    /// TCP [`Limits`]. Must be called inside a tokio runtime (TCP runs on it; UDP has its own
    /// threads).
    pub async fn bind(
        addrs: &[SocketAddr],
        store: Arc<Store>,
        leases: Arc<dyn LeaseLookup>,
    ) -> std::io::Result<Self> {
        Self::bind_with(addrs, store, leases, Limits::default()).await
    }

    /// [`Service::bind`] with the given TCP limits.
    pub async fn bind_with(
        addrs: &[SocketAddr],
        store: Arc<Store>,
        leases: Arc<dyn LeaseLookup>,
        limits: Limits,
    ) -> std::io::Result<Self> {
        let responder = Arc::new(Responder::new(store, leases));
        let stop = Arc::new(AtomicBool::new(false));
        let (tcp_stop, stopped) = watch::channel(false);
        let mut tcp = Vec::new();
        let mut udp = Vec::new();
        let mut local = Vec::new();
        for addr in addrs {
            let (sock, listener) = bind_pair(*addr).await?;
            let bound = sock.local_addr()?;
            tcp.push(tokio::spawn(crate::tcp::serve(
                listener,
                responder.clone(),
                limits,
                stopped.clone(),
            )));
            udp.extend(crate::udp::spawn(sock, responder.clone(), stop.clone())?);
            local.push(bound);
        }
        Ok(Self {
            tcp,
            tcp_stop,
            udp,
            stop,
            local,
            responder,
        })
    }

    /// The responder's counters.
    pub fn counters(&self) -> Arc<Counters> {
        self.responder.counters().clone()
    }

    /// Forwarding counters, one set per UDP socket.
    pub fn forward_counters(&self) -> Vec<Arc<crate::forward::ForwardCounters>> {
        self.responder.forward_counters()
    }

    /// Stops answering: the UDP threads finish their batch; TCP stops accepting and closes
    /// its connections.
    pub async fn shutdown(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.tcp_stop.send(true);
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
}
