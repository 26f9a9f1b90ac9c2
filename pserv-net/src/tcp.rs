//! TCP listeners for the runtime, and an accept that survives running out of descriptors.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};

/// How long accepting pauses after a failed accept.
pub const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// The accept queue asked for (the kernel caps it at `net.core.somaxconn`, 4096 by default).
/// A rack powering on opens a connection per request, a thousand at once: with the standard
/// library's 128, the kernel drops the SYNs past it and each of those clients waits out a
/// 1 s (then 3 s) SYN retransmission for a file that takes microseconds to serve.
pub const BACKLOG: i32 = 4096;

/// Binds a listener on `addr` for the tokio runtime (call inside one), with SO_REUSEADDR (as
/// the standard library sets it) and a [`BACKLOG`]-deep accept queue.
pub fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let sock = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    sock.set_reuse_address(true)?;
    sock.bind(&addr.into())?;
    sock.listen(BACKLOG)?;
    from_std(sock.into())
}

/// Hands a bound std listener to the runtime (call inside one).
pub fn from_std(listener: std::net::TcpListener) -> io::Result<TcpListener> {
    listener.set_nonblocking(true)?;
    TcpListener::from_std(listener)
}

/// Accepts one connection. A failure that concerns that connection only (it went away first)
/// is skipped; any other (out of descriptors or memory) is counted in `errors`, logged, and
/// pauses accepting for [`ACCEPT_BACKOFF`], where retrying at once would spin a core while the
/// backlog stays full. `None`: nothing accepted, call again.
pub async fn accept_or_pause(
    listener: &TcpListener,
    errors: &AtomicU64,
    what: &str,
) -> Option<(TcpStream, SocketAddr)> {
    match listener.accept().await {
        Ok(a) => Some(a),
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::ConnectionAborted
                    | io::ErrorKind::ConnectionReset
                    | io::ErrorKind::ConnectionRefused
                    | io::ErrorKind::Interrupted
                    | io::ErrorKind::WouldBlock
            ) =>
        {
            None
        }
        Err(e) => {
            errors.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(error = %e, "{what} accept failed; pausing accepts");
            tokio::time::sleep(ACCEPT_BACKOFF).await;
            None
        }
    }
}
