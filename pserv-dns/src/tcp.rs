//! DNS over TCP (RFC 1035 §4.2.2, RFC 7766): two-byte length, message, in order.
//!
//! pserv's own accept loop rather than hickory-server's, for defences that one lacks:
//! - a cap on open connections. At the cap, every connection that is waiting on its client
//!   (to start or finish sending a query, or to read an answer) is closed, as RFC 7766
//!   §6.2.3 allows under pressure, so a flood of stalled connections cannot lock out a real
//!   client: the new connection takes a freed slot. Only if none frees within [`SLOT_WAIT`]
//!   is it closed.
//! - a pause after a failed accept (out of descriptors), where a loop that retries at once
//!   spins a core while the backlog stays full.
//! - [`Limits::idle`] for a connection to start its next query, to finish sending it, and to
//!   read the answer; then it is closed.
//!
//! Every such close is counted.
//!
//! Answers come from [`Responder::respond_tcp`] (the same decisions as UDP, never truncated);
//! names outside pserv's zones go to the snapshot's upstreams over UDP, and the reply is
//! relayed with AA cleared (SERVFAIL if no upstream answers in time).

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use hickory_proto::op::{Message, MessageType, Metadata, ResponseCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, Semaphore, watch};
use tokio::task::JoinSet;
use tokio::time::timeout;

use crate::respond::{Action, Responder};

/// Bounds on the TCP service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Connections open at once; more are closed as soon as they are accepted.
    pub max_connections: usize,
    /// How long a connection may wait to send its next query, to finish sending one, or to
    /// read an answer.
    pub idle: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_connections: 1024,
            idle: Duration::from_secs(10),
        }
    }
}

/// How long accepting pauses after a failed accept.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// At the cap, how long a new connection waits for a slot that closing idle ones frees.
pub const SLOT_WAIT: Duration = Duration::from_millis(200);

/// Accepts and serves connections on `listener` until `stop` says so; then closes them all.
pub(crate) async fn serve(
    listener: TcpListener,
    responder: Arc<Responder>,
    limits: Limits,
    mut stop: watch::Receiver<bool>,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    // Tells connections waiting on their clients to close: the cap is reached.
    let pressure = Arc::new(Notify::new());
    let mut conns = JoinSet::new();
    let counters = responder.counters().clone();
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = stop.wait_for(|s| *s) => break,
        };
        // Reap finished connections so the set does not grow.
        while conns.try_join_next().is_some() {}
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) if is_per_connection(&e) => continue,
            Err(e) => {
                counters.tcp_accept_errors.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(error = %e, "DNS TCP accept failed; pausing accepts");
                tokio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
        };
        let permit = match slots.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(_) => {
                pressure.notify_waiters();
                match timeout(SLOT_WAIT, slots.clone().acquire_owned()).await {
                    Ok(Ok(p)) => p,
                    _ => {
                        counters.tcp_over_limit.fetch_add(1, Ordering::Relaxed);
                        drop(stream);
                        continue;
                    }
                }
            }
        };
        counters.tcp_accepted.fetch_add(1, Ordering::Relaxed);
        counters.tcp_open.fetch_add(1, Ordering::Relaxed);
        let (responder, pressure) = (responder.clone(), pressure.clone());
        conns.spawn(async move {
            if let Err(e) = connection(stream, &responder, limits.idle, &pressure).await {
                tracing::debug!(%peer, error = %e, "DNS TCP connection closed");
            }
            responder
                .counters()
                .tcp_open
                .fetch_sub(1, Ordering::Relaxed);
            drop(permit);
        });
    }
    conns.shutdown().await;
}

/// Whether an accept error concerns one connection only (it went away before we accepted
/// it), so accepting may go on at once; any other (out of descriptors or memory) calls for a
/// pause.
pub fn is_per_connection(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionRefused
            | io::ErrorKind::Interrupted
            | io::ErrorKind::WouldBlock
    )
}

/// Serves one connection's queries in order until it closes, idles, misbehaves, or is told
/// to make room while it waits on its client.
async fn connection(
    mut s: TcpStream,
    responder: &Responder,
    idle: Duration,
    pressure: &Notify,
) -> io::Result<()> {
    s.set_nodelay(true)?;
    let counters = responder.counters();
    let timed_out = || {
        counters.tcp_timeouts.fetch_add(1, Ordering::Relaxed);
        io::Error::new(io::ErrorKind::TimedOut, "idle")
    };
    let evicted = || {
        counters.tcp_evicted.fetch_add(1, Ordering::Relaxed);
        io::Error::other("closed to make room")
    };
    let mut query = Vec::with_capacity(512);
    let mut out = Vec::with_capacity(512);
    loop {
        let mut len = [0u8; 2];
        let read = tokio::select! {
            r = timeout(idle, s.read_exact(&mut len)) => r,
            () = pressure.notified() => return Err(evicted()),
        };
        match read {
            Err(_) => return Err(timed_out()),
            Ok(Err(e)) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(()),
            Ok(r) => r?,
        };
        query.resize(usize::from(u16::from_be_bytes(len)), 0);
        tokio::select! {
            r = timeout(idle, s.read_exact(&mut query)) => r.map_err(|_| timed_out())??,
            () = pressure.notified() => return Err(evicted()),
        };
        let action = {
            let table = responder.store().load_full();
            let zones = responder.zones_for(&table);
            match responder.respond_tcp(&table, &zones, &query, &mut out) {
                Action::Forward => Some(table.dns().upstreams.clone()),
                Action::Send => None,
                // Not a query we can answer (a response, a runt): end the conversation.
                Action::Drop => return Ok(()),
            }
        };
        if let Some(upstreams) = action {
            out = forward(responder, &query, &upstreams).await;
        }
        let Ok(n) = u16::try_from(out.len()) else {
            return Ok(());
        };
        if n == 0 {
            return Ok(());
        }
        let mut framed = Vec::with_capacity(out.len() + 2);
        framed.extend_from_slice(&n.to_be_bytes());
        framed.extend_from_slice(&out);
        // A client that pipelines queries and never reads stalls here: evictable too.
        tokio::select! {
            r = timeout(idle, s.write_all(&framed)) => r.map_err(|_| timed_out())??,
            () = pressure.notified() => return Err(evicted()),
        };
    }
}

/// Asks the first upstream over UDP, from a fresh socket (a random source port) with a fresh
/// random id, so an off-path spoofer must guess both; the reply with the client's id restored
/// and AA cleared, or SERVFAIL if none comes in time.
async fn forward(responder: &Responder, query: &[u8], upstreams: &[SocketAddr]) -> Vec<u8> {
    let id = (crate::forward::random_u64() as u16).to_be_bytes();
    let mut ours = query.to_vec();
    ours[..2].copy_from_slice(&id);
    let reply = async {
        let upstream = *upstreams.first()?;
        let bind: SocketAddr = if upstream.is_ipv4() {
            ([0, 0, 0, 0], 0).into()
        } else {
            ([0u16; 8], 0).into()
        };
        let sock = tokio::net::UdpSocket::bind(bind).await.ok()?;
        sock.send_to(&ours, upstream).await.ok()?;
        let mut buf = vec![0u8; 65535];
        let deadline = tokio::time::Instant::now() + crate::forward::TIMEOUT;
        loop {
            let (n, from) = tokio::time::timeout_at(deadline, sock.recv_from(&mut buf))
                .await
                .ok()?
                .ok()?;
            if from == upstream && n >= 12 && buf[..2] == id && buf[2] & 0x80 != 0 {
                buf.truncate(n);
                buf[..2].copy_from_slice(&query[..2]);
                buf[2] &= !0x04; // AA: pserv is not authoritative for it
                return Some(buf);
            }
        }
    }
    .await;
    if let Some(r) = reply {
        return r;
    }
    responder.counters().count(ResponseCode::ServFail);
    servfail(query)
}

/// SERVFAIL for `query` (which decoded: it was answered as far as the forwarding decision).
fn servfail(query: &[u8]) -> Vec<u8> {
    let Ok(q) = Message::from_vec(query) else {
        return Vec::new();
    };
    let mut m = Message::new(q.metadata.id, MessageType::Response, q.metadata.op_code);
    m.metadata = Metadata::response_from_request(&q.metadata);
    m.metadata.response_code = ResponseCode::ServFail;
    m.queries = q.queries;
    m.to_vec().unwrap_or_default()
}
