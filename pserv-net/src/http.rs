//! The HTTP/1.1 accept loop of the control API and of HTTP boot: hyper under an axum router,
//! with the limits that `axum::serve` does not set.
//!
//! - at most [`Limits::max_connections`] connections; more are closed as soon as they are
//!   accepted;
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
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::tcp::accept_or_pause;
use crate::zerocopy::ZeroCopy;

/// Time to send a request's headers.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// Time in-flight requests get at shutdown.
pub const DRAIN: Duration = Duration::from_secs(2);

/// Bounds on one HTTP server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Its name in logs.
    pub what: &'static str,
    /// Connections served at once.
    pub max_connections: usize,
    /// Bodies from [`crate::zerocopy::load`] sent with `sendfile(2)` (HTTP boot's files).
    pub zero_copy: bool,
}

/// Counters of an HTTP server's connections.
#[derive(Debug, Default)]
pub struct ConnCounters {
    /// Connections closed at accept: the cap was reached.
    pub over_limit: AtomicU64,
    /// Failed accepts.
    pub accept_errors: AtomicU64,
}

/// The local address a connection was accepted on (a request extension): the address a
/// client reached, which HTTP boot's URLs name.
#[derive(Debug, Clone, Copy)]
pub struct LocalAddr(pub std::net::SocketAddr);

/// Serves `router` on `listener` until `stop` resolves; then drains (see the module docs).
pub async fn serve(
    listener: TcpListener,
    router: Router,
    counters: Arc<ConnCounters>,
    limits: Limits,
    stop: impl Future<Output = ()>,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let graceful = GracefulShutdown::new();
    let mut stop = std::pin::pin!(stop);
    loop {
        let accepted = tokio::select! {
            a = accept_or_pause(&listener, &counters.accept_errors, limits.what) => a,
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
        // Handlers may ask who is asking (`ConnectInfo`), as with axum::serve.
        let service = TowerToHyperService::new(tower::ServiceExt::map_request(
            router.clone(),
            move |mut req: hyper::Request<hyper::body::Incoming>| {
                req.extensions_mut()
                    .insert(axum::extract::ConnectInfo(peer));
                if let Some(l) = local {
                    req.extensions_mut().insert(l);
                }
                req
            },
        ));
        if limits.zero_copy {
            spawn_conn(&graceful, ZeroCopy(stream), service, permit, limits.what);
        } else {
            spawn_conn(&graceful, stream, service, permit, limits.what);
        }
    }
    if tokio::time::timeout(DRAIN, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::debug!(
            "{}: connections still open at shutdown (event streams) dropped",
            limits.what
        );
    }
}

/// Serves one accepted connection on its own task, watched for a graceful shutdown; its slot is
/// freed when it ends.
fn spawn_conn<S, H>(
    graceful: &GracefulShutdown,
    stream: S,
    service: H,
    permit: tokio::sync::OwnedSemaphorePermit,
    what: &'static str,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    H: hyper::service::HttpService<hyper::body::Incoming> + Send + 'static,
    H::Future: Send + 'static,
    H::ResBody: Send + 'static,
    <H::ResBody as hyper::body::Body>::Data: Send,
    <H::ResBody as hyper::body::Body>::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .serve_connection(TokioIo::new(stream), service);
    let conn = graceful.watch(conn);
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!(error = %e, "{what} connection ended");
        }
        drop(permit);
    });
}
