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
//! relayed with AA cleared, under the same policy as UDP ([`crate::forward`]).

use std::io;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, Semaphore};
use tokio::task::JoinSet;
use tokio::time::{Instant, timeout, timeout_at};
use tokio_util::sync::CancellationToken;

use pserv_net::tcp::accept_or_pause;

use crate::counters::ForwardCounters;
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

/// At the cap, how long a new connection waits for a slot that closing idle ones frees.
pub const SLOT_WAIT: Duration = Duration::from_millis(200);

/// Accepts and serves connections on `listener` until `shutdown`; then closes them all.
/// Queries forwarded upstream are counted in `forward`.
pub(crate) async fn serve(
    listener: TcpListener,
    responder: Arc<Responder>,
    forward: Arc<ForwardCounters>,
    limits: Limits,
    shutdown: CancellationToken,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    // Tells connections waiting on their clients to close: the cap is reached.
    let pressure = Arc::new(Notify::new());
    let mut conns = JoinSet::new();
    let counters = responder.counters().clone();
    loop {
        let accepted = tokio::select! {
            a = accept_or_pause(&listener, &counters.tcp_accept_errors, "DNS TCP") => a,
            () = shutdown.cancelled() => break,
        };
        // Reap finished connections so the set does not grow.
        while conns.try_join_next().is_some() {}
        let Some((stream, peer)) = accepted else {
            continue;
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
        let (responder, forward, pressure) = (responder.clone(), forward.clone(), pressure.clone());
        conns.spawn(async move {
            if let Err(e) = connection(stream, &responder, &forward, limits.idle, &pressure).await {
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

/// Bytes asked of the socket per read: many pipelined queries at once.
const READ_CHUNK: usize = 16 << 10;
/// Pending answers are written once this many bytes wait, or when no complete query is left.
const FLUSH_AT: usize = 16 << 10;

/// Serves one connection's queries in order until it closes, idles, misbehaves, or is told
/// to make room while it waits on its client. Reads and writes are batched: one read takes
/// every pipelined query that has arrived, and their answers leave in one write.
async fn connection(
    mut s: TcpStream,
    responder: &Responder,
    forward: &ForwardCounters,
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
    let mut input: Vec<u8> = Vec::with_capacity(READ_CHUNK);
    let mut pending: Vec<u8> = Vec::with_capacity(FLUSH_AT);
    let mut out = Vec::with_capacity(512);
    // When the first bytes of a query still incomplete arrived: the whole query must follow
    // within `idle`, however slowly it trickles.
    let mut partial_since: Option<Instant> = None;
    loop {
        let mut at = 0;
        let mut close = false;
        let arrived = std::time::Instant::now();
        let mut answered = 0;
        while let Some(len) = complete_frame(&input[at..]) {
            let query = &input[at + 2..at + 2 + len];
            at += 2 + len;
            let upstreams = {
                let table = responder.store().load_full();
                let zones = responder.zones_for(&table);
                match responder.respond_tcp(&table, &zones, query, &mut out) {
                    Action::Forward => Some(table.dns().upstreams.clone()),
                    Action::Send => None,
                    // Not a query we can answer (a response, a runt): end the conversation.
                    Action::Drop => {
                        close = true;
                        break;
                    }
                }
            };
            if let Some(upstreams) = upstreams {
                out = crate::forward::ask_in_turn(query, &upstreams, forward, counters).await;
            }
            match u16::try_from(out.len()) {
                Ok(n) if n > 0 => {
                    pending.extend_from_slice(&n.to_be_bytes());
                    pending.extend_from_slice(&out);
                    answered += 1;
                }
                _ => {
                    close = true;
                    break;
                }
            }
            if pending.len() >= FLUSH_AT {
                flush(&mut s, &mut pending, idle, pressure, &timed_out, &evicted).await?;
            }
        }
        input.drain(..at);
        // Nothing complete left: send what is pending before waiting on the client.
        flush(&mut s, &mut pending, idle, pressure, &timed_out, &evicted).await?;
        counters
            .answer_seconds
            .observe_n(arrived.elapsed(), answered);
        if close {
            return Ok(());
        }
        partial_since = if input.is_empty() {
            None
        } else {
            partial_since.or_else(|| Some(Instant::now()))
        };
        let deadline = partial_since.unwrap_or_else(Instant::now) + idle;
        input.reserve(READ_CHUNK);
        let read = tokio::select! {
            r = timeout_at(deadline, s.read_buf(&mut input)) => r.map_err(|_| timed_out())??,
            () = pressure.notified() => return Err(evicted()),
        };
        if read == 0 {
            return Ok(());
        }
    }
}

/// The length of the first message in `buf` if all of it has arrived.
fn complete_frame(buf: &[u8]) -> Option<usize> {
    let len = usize::from(u16::from_be_bytes([*buf.first()?, *buf.get(1)?]));
    (buf.len() >= 2 + len).then_some(len)
}

/// Writes the pending answers. A client that pipelines queries and never reads stalls here,
/// so this waits at most `idle` and yields to eviction.
async fn flush(
    s: &mut TcpStream,
    pending: &mut Vec<u8>,
    idle: Duration,
    pressure: &Notify,
    timed_out: &impl Fn() -> io::Error,
    evicted: &impl Fn() -> io::Error,
) -> io::Result<()> {
    if pending.is_empty() {
        return Ok(());
    }
    tokio::select! {
        r = timeout(idle, s.write_all(pending)) => r.map_err(|_| timed_out())??,
        () = pressure.notified() => return Err(evicted()),
    };
    pending.clear();
    Ok(())
}
