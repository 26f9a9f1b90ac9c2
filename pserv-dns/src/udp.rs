//! The UDP loop: one thread per socket, batched system calls.
//!
//! `recvmmsg` takes up to [`BATCH`] queries in one call (blocking until at least one is there),
//! the table is loaded once for the batch, every query is answered synchronously into its own
//! buffer, and `sendmmsg` sends the batch back in one call. That is how NSD gets under the
//! kernel's per-packet cost; hickory's task-per-packet server cannot batch.

use std::io::{IoSlice, IoSliceMut};
use std::net::UdpSocket;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::socket::{MsgFlags, MultiHeaders, SockaddrStorage, recvmmsg, sendmmsg};
use tokio_util::sync::CancellationToken;

use crate::counters::ForwardCounters;
use crate::forward::Forwarder;
use crate::respond::{Action, Responder};

fn socket_addr(s: &SockaddrStorage) -> Option<std::net::SocketAddr> {
    if let Some(v4) = s.as_sockaddr_in() {
        return Some(std::net::SocketAddrV4::from(*v4).into());
    }
    s.as_sockaddr_in6()
        .map(|v6| std::net::SocketAddrV6::from(*v6).into())
}

/// Queries per system call.
pub const BATCH: usize = 64;
/// Largest query we read; larger datagrams are truncated by the kernel and fail to parse.
const MAX_QUERY: usize = 4096;
/// How often a blocked receive wakes to check for shutdown.
const WAKE: Duration = Duration::from_millis(200);

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
    sock.set_read_timeout(Some(WAKE))?;
    grow_buffers(&sock);
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

/// Socket buffer size asked for: room for a few thousand queries in flight, so a burst from
/// many clients is queued rather than dropped while a batch is being answered.
const SOCKET_BUFFER: usize = 4 << 20;

/// Raises the socket buffers past `net.core.rmem_max` where allowed (root: the FORCE options,
/// as NSD does), else to whatever the limit permits.
pub(crate) fn grow_buffers(sock: &UdpSocket) {
    use nix::sys::socket::{setsockopt, sockopt};
    if setsockopt(sock, sockopt::RcvBufForce, &SOCKET_BUFFER).is_err() {
        let _ = setsockopt(sock, sockopt::RcvBuf, &SOCKET_BUFFER);
    }
    if setsockopt(sock, sockopt::SndBufForce, &SOCKET_BUFFER).is_err() {
        let _ = setsockopt(sock, sockopt::SndBuf, &SOCKET_BUFFER);
    }
}

fn run(
    sock: &UdpSocket,
    responder: &Responder,
    forwarder: &Forwarder,
    shutdown: &CancellationToken,
) {
    let fd = sock.as_raw_fd();
    let mut bufs: Box<[[u8; MAX_QUERY]; BATCH]> = Box::new([[0u8; MAX_QUERY]; BATCH]);
    let mut outs: Vec<Vec<u8>> = (0..BATCH).map(|_| Vec::with_capacity(1232)).collect();
    let mut rheaders = MultiHeaders::<SockaddrStorage>::preallocate(BATCH, None);
    let mut sheaders = MultiHeaders::<SockaddrStorage>::preallocate(BATCH, None);
    // Per kept datagram: its buffer slot (skipped ones leave gaps), length and sender.
    let mut slots = [0usize; BATCH];
    let mut lens = [0usize; BATCH];
    let mut from: Vec<Option<SockaddrStorage>> = vec![None; BATCH];
    let mut to: Vec<Option<SockaddrStorage>> = vec![None; BATCH];
    let counters = responder.counters().clone();

    while !shutdown.is_cancelled() {
        // nix ties the I/O slices' lifetime to the call: build them per batch, on the stack.
        let mut iovs = bufs.each_mut().map(|b| [IoSliceMut::new(&mut b[..])]);
        let received = recvmmsg(
            fd,
            &mut rheaders,
            iovs.iter_mut(),
            MsgFlags::MSG_WAITFORONE,
            None,
        );
        let n = match received {
            Ok(msgs) => {
                let mut n = 0;
                for (slot, m) in msgs.enumerate() {
                    if m.flags.contains(MsgFlags::MSG_TRUNC) {
                        // Longer than any query we take: not judged by its first part.
                        counters.oversized.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                    slots[n] = slot;
                    lens[n] = m.bytes;
                    from[n] = m.address;
                    n += 1;
                }
                n
            }
            Err(Errno::EAGAIN | Errno::EINTR) => continue,
            Err(e) => {
                // Transient per-datagram errors (e.g. ECONNREFUSED from an earlier ICMP) are
                // reported on the next call; log and carry on.
                tracing::debug!(error = %e, "DNS UDP receive");
                continue;
            }
        };
        let arrived = Instant::now();
        counters.udp_in.fetch_add(n as u64, Ordering::Relaxed);
        // One table for the whole batch: a swap is seen by the next batch.
        let table = responder.store().load();
        let zones = responder.zones_for(&table);
        let mut k = 0;
        for i in 0..n {
            let query = &bufs[slots[i]][..lens[i].min(MAX_QUERY)];
            // Answers go to slot k (k <= i), so a dropped query leaves no hole.
            match responder.respond_udp(&table, &zones, query, &mut outs[k]) {
                Action::Send => {
                    to[k] = from[i];
                    k += 1;
                }
                Action::Drop => {}
                Action::Forward => {
                    if let Some(client) = from[i].as_ref().and_then(socket_addr) {
                        forwarder.forward(query, client, &table.dns().upstreams);
                    }
                }
            }
        }
        drop(table);
        let mut sent = 0;
        while sent < k {
            let slices: Vec<[IoSlice<'_>; 1]> =
                outs[sent..k].iter().map(|o| [IoSlice::new(o)]).collect();
            match sendmmsg(
                fd,
                &mut sheaders,
                &slices,
                &to[sent..k],
                [],
                MsgFlags::empty(),
            ) {
                Ok(r) => {
                    let done = r.count();
                    if done == 0 {
                        break;
                    }
                    sent += done;
                    counters.udp_out.fetch_add(done as u64, Ordering::Relaxed);
                }
                Err(Errno::EINTR) => {}
                Err(e) => {
                    // The first unsent response fails (e.g. its client is gone); skip it.
                    tracing::debug!(error = %e, "DNS UDP send");
                    counters.send_errors.fetch_add(1, Ordering::Relaxed);
                    sent += 1;
                }
            }
        }
        // The batch's answers left together: each took the batch's time.
        counters
            .answer_seconds
            .observe_n(arrived.elapsed(), k as u64);
    }
}
