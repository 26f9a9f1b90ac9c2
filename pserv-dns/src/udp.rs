//! The UDP loop: one thread per socket, batched system calls.
//!
//! `recvmmsg` takes up to [`BATCH`] queries in one call (blocking until at least one is there),
//! the table is loaded once for the batch, every query is answered synchronously into its own
//! buffer, and `sendmmsg` sends the batch back in as few calls as it can
//! ([`pserv_net::udp::RecvBatch`], [`pserv_net::udp::SendBatch`]). That is how NSD gets under
//! the kernel's per-packet cost; hickory's task-per-packet server cannot batch.
//!
//! The shutdown signal wakes a blocked receive at once ([`pserv_net::wake_on_cancel`]): the
//! thread ends after the batch it is answering.

use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::thread::JoinHandle;
use std::time::Instant;

use pserv_net::udp::{RecvBatch, SendBatch, Wait, grow_buffers};
use tokio_util::sync::CancellationToken;

use crate::counters::{Counters, ForwardCounters};
use crate::forward::Forwarder;
use crate::respond::{Action, Responder};

/// Queries per system call.
pub const BATCH: usize = 64;
/// Largest query we read; larger datagrams are truncated by the kernel, dropped and counted
/// (`Counters::oversized`).
const MAX_QUERY: usize = 4096;
/// Socket buffer size asked for: room for a few thousand queries in flight, so a burst from
/// many clients is queued rather than dropped while a batch is being answered.
const SOCKET_BUFFER: usize = 4 << 20;

/// One socket's running threads.
#[derive(Debug)]
pub struct Threads {
    /// The UDP loop and its forwarder's receiver; both end at the shutdown signal.
    pub threads: [JoinHandle<()>; 2],
    /// The forwarder's counters.
    pub forward: Arc<ForwardCounters>,
}

/// Starts the loop for `sock` (and its forwarder) on their own threads; they stop at
/// `shutdown`.
pub fn spawn(
    sock: UdpSocket,
    responder: Arc<Responder>,
    shutdown: CancellationToken,
) -> std::io::Result<Threads> {
    grow_buffers(&sock, SOCKET_BUFFER);
    pserv_net::wake_on_cancel(&shutdown, &sock)?;
    let (forwarder, fwd) = Forwarder::spawn(
        sock.try_clone()?,
        responder.counters().clone(),
        shutdown.clone(),
    )?;
    let forward = forwarder.counters().clone();
    let udp = std::thread::Builder::new()
        .name("pserv-dns-udp".into())
        .spawn(move || run(&sock, &responder, &forwarder, &shutdown))?;
    Ok(Threads {
        threads: [udp, fwd],
        forward,
    })
}

/// An answer waiting to leave; its buffer is reused batch after batch.
struct Reply {
    bytes: Vec<u8>,
    to: SocketAddr,
}

fn run(
    sock: &UdpSocket,
    responder: &Responder,
    forwarder: &Forwarder,
    shutdown: &CancellationToken,
) {
    let mut batch = RecvBatch::<BATCH>::new(MAX_QUERY);
    let mut send = SendBatch::<BATCH>::new();
    let mut replies: Vec<Reply> = (0..BATCH)
        .map(|_| Reply {
            bytes: Vec::with_capacity(1232),
            to: SocketAddr::from(([0, 0, 0, 0], 0)),
        })
        .collect();
    let counters: &Counters = responder.counters();

    while !shutdown.is_cancelled() {
        if let Err(e) = batch.recv(sock, Wait::ForOne) {
            // Transient per-datagram errors (e.g. ECONNREFUSED from an earlier ICMP) are
            // reported on the next call; log and carry on.
            tracing::debug!(error = %e, "DNS UDP receive");
            continue;
        }
        let arrived = Instant::now();
        let mut received = 0;
        // One table for the whole batch: a swap is seen by the next batch.
        let table = responder.store().load();
        let zones = responder.zones_for(&table);
        let mut k = 0;
        for d in batch.datagrams() {
            if d.truncated {
                // Longer than any query we take: not judged by its first part.
                counters.oversized.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            received += 1;
            let query = batch.payload(d);
            // Answers go to slot k, so a dropped query leaves no hole.
            let reply = &mut replies[k];
            match responder.respond_udp(&table, &zones, query, &mut reply.bytes) {
                Action::Send => {
                    reply.to = d.from;
                    k += 1;
                }
                Action::Drop => {}
                Action::Forward => forwarder.forward(query, d.from, &table.dns().upstreams),
            }
        }
        drop(table);
        counters.udp_in.fetch_add(received, Ordering::Relaxed);
        if k == 0 {
            continue;
        }
        let mut sent = 0;
        send.send(
            sock,
            &replies[..k],
            |r| (&r.bytes, r.to),
            |_, result| match result {
                Ok(()) => sent += 1,
                Err(e) => {
                    // This response fails (e.g. its client is gone); the rest still go.
                    tracing::debug!(error = %e, "DNS UDP send");
                    counters.send_errors.fetch_add(1, Ordering::Relaxed);
                }
            },
        );
        counters.udp_out.fetch_add(sent, Ordering::Relaxed);
        // The batch's answers left together: each took the batch's time.
        counters
            .answer_seconds
            .observe_n(arrived.elapsed(), k as u64);
    }
}
