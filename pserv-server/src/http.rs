//! The control API's HTTP/1.1 server: hyper under the axum router, with the limits that
//! `axum::serve` does not set.
//!
//! - at most `max_connections` connections ([`MAX_CONNECTIONS`] for the control API); more are
//!   closed as soon as they are accepted;
//! - [`HEADER_TIMEOUT`] to send a request's headers (a slowloris client holding connections
//!   open by trickling headers is cut off);
//! - after a failed accept (out of descriptors) a pause, not a spin;
//! - on shutdown, idle connections close and in-flight requests get [`DRAIN`] to finish;
//!   event streams (`/v1/events`) never finish on their own, so after that the rest are
//!   dropped rather than holding the process up.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use pserv_dns::tcp::accept_or_pause;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

/// Connections served at once.
pub(crate) const MAX_CONNECTIONS: usize = 256;
/// Time to send a request's headers.
pub(crate) const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// Time in-flight requests get at shutdown.
pub(crate) const DRAIN: Duration = Duration::from_secs(2);

/// Counters of the control API's connections.
#[derive(Debug, Default)]
pub(crate) struct ConnCounters {
    /// Connections closed at accept: the cap was reached.
    pub(crate) over_limit: AtomicU64,
    /// Failed accepts.
    pub(crate) accept_errors: AtomicU64,
}

/// The local address a connection was accepted on (a request extension): the address a
/// client reached, which HTTP boot's URLs name.
#[derive(Debug, Clone, Copy)]
pub(crate) struct LocalAddr(pub(crate) std::net::SocketAddr);

/// Serves `router` on `listener` until `stop` resolves.
pub(crate) async fn serve(
    listener: TcpListener,
    router: Router,
    counters: Arc<ConnCounters>,
    max_connections: usize,
    stop: impl Future<Output = ()>,
) {
    let slots = Arc::new(Semaphore::new(max_connections));
    let graceful = GracefulShutdown::new();
    let mut stop = std::pin::pin!(stop);
    loop {
        let accepted = tokio::select! {
            a = accept_or_pause(&listener, &counters.accept_errors, "control API") => a,
            () = &mut stop => break,
        };
        let Some((stream, peer)) = accepted else {
            continue;
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            counters.over_limit.fetch_add(1, Ordering::Relaxed);
            continue;
        };
        let local = stream.local_addr().ok().map(LocalAddr);
        let conn = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(HEADER_TIMEOUT)
            .serve_connection(
                TokioIo::new(stream),
                // Handlers may ask who is asking (`ConnectInfo`), as with axum::serve.
                TowerToHyperService::new(tower::ServiceExt::map_request(
                    router.clone(),
                    move |mut req: hyper::Request<hyper::body::Incoming>| {
                        req.extensions_mut()
                            .insert(axum::extract::ConnectInfo(peer));
                        if let Some(l) = local {
                            req.extensions_mut().insert(l);
                        }
                        req
                    },
                )),
            );
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "control API connection ended");
            }
            drop(permit);
        });
    }
    if tokio::time::timeout(DRAIN, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::debug!("control API: connections still open at shutdown (event streams) dropped");
    }
}
