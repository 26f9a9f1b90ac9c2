//! Forwarding names outside pserv's zones to the snapshot's `dns.upstreams`, with one policy
//! for queries that came over UDP and over TCP: the upstreams are tried in the snapshot's order,
//! each given [`TIMEOUT`], over UDP under a fresh random id; the first reply is relayed with the
//! client's id restored and AA cleared (pserv is not authoritative for it); when every upstream
//! has failed the client gets SERVFAIL, counted with the other response codes.
//!
//! Only when the snapshot lists upstreams; otherwise such names are REFUSED and pserv is never
//! an open resolver. The UDP loop hands a query over and moves on: [`Forwarder`] sends it from
//! its own socket, and a receiver thread matches replies (id *and* upstream address, so a
//! spoofed reply from elsewhere is ignored) and moves timed-out queries to the next upstream
//! (its read timeout paces that sweep; the shutdown signal wakes it at once).
//! TCP connections await [`ask_in_turn`] instead.

use std::collections::HashMap;
use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, MessageType, Metadata, ResponseCode};
use parking_lot::Mutex;
use tokio_util::sync::CancellationToken;

use crate::counters::{Counters, ForwardCounters};

/// 64 unpredictable bits: std's `RandomState` keys come from the operating system's random
/// source (each `new()` after the first per thread steps its key), hashed with the clock.
pub(crate) fn random_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::hash::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    h.finish()
}

/// How long a forwarded query waits for each upstream before the next is tried.
pub const TIMEOUT: Duration = Duration::from_secs(2);

/// Queries in flight at most per UDP socket; more are dropped (counted).
const MAX_PENDING: usize = 1 << 15;

/// The upstream socket's buffers: room for the replies to a burst of forwarded queries.
const SOCKET_BUFFER: usize = 4 << 20;

struct Pending {
    client: SocketAddr,
    client_id: u16,
    /// The query as the client sent it.
    query: Box<[u8]>,
    /// The upstreams in order, and the one asked now.
    upstreams: Arc<[SocketAddr]>,
    tried: usize,
    sent: Instant,
}

/// The forwarder of one server socket.
pub struct Forwarder {
    upstream_sock: UdpSocket,
    pending: Mutex<HashMap<u16, Pending>>,
    rng: Mutex<u64>,
    counters: Arc<ForwardCounters>,
    /// The responder's counters, where SERVFAIL is counted.
    responses: Arc<Counters>,
}

impl Forwarder {
    /// A forwarder that answers clients through `server` (a clone of the server socket) and
    /// runs its receiver until `shutdown`.
    pub fn spawn(
        server: UdpSocket,
        responses: Arc<Counters>,
        shutdown: CancellationToken,
    ) -> std::io::Result<(Arc<Self>, JoinHandle<()>)> {
        // Dual-stack where the host has IPv6 (upstreams of either family, v4 ones as mapped
        // addresses), IPv4 only otherwise.
        let upstream_sock = UdpSocket::bind("[::]:0").or_else(|_| UdpSocket::bind("0.0.0.0:0"))?;
        // The read timeout is the sweep's clock only: shutdown wakes the receiver at once.
        upstream_sock.set_read_timeout(Some(SWEEP_WAKE))?;
        pserv_net::udp::grow_buffers(&upstream_sock, SOCKET_BUFFER);
        pserv_net::wake_on_cancel(&shutdown, &upstream_sock)?;
        let seed = random_u64();
        let f = Arc::new(Self {
            upstream_sock,
            pending: Mutex::new(HashMap::new()),
            rng: Mutex::new(seed | 1),
            counters: Arc::default(),
            responses,
        });
        let me = f.clone();
        let handle = std::thread::Builder::new()
            .name("pserv-dns-fwd".into())
            .spawn(move || me.receive(&server, &shutdown))?;
        Ok((f, handle))
    }

    /// The forwarding counters.
    pub fn counters(&self) -> &Arc<ForwardCounters> {
        &self.counters
    }

    fn next_random(&self) -> u64 {
        let mut x = self.rng.lock();
        *x ^= *x << 13;
        *x ^= *x >> 7;
        *x ^= *x << 17;
        *x
    }

    /// Sends `query` from `client` to the first of `upstreams`; the receiver moves it on.
    pub fn forward(&self, query: &[u8], client: SocketAddr, upstreams: &[SocketAddr]) {
        if query.len() < 12 || upstreams.is_empty() {
            return;
        }
        let p = Pending {
            client,
            client_id: u16::from_be_bytes([query[0], query[1]]),
            query: query.into(),
            upstreams: upstreams.into(),
            tried: 0,
            sent: Instant::now(),
        };
        let mut pending = self.pending.lock();
        if pending.len() >= MAX_PENDING {
            drop(pending);
            self.counters.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        self.send(&mut pending, p);
    }

    /// Sends `p` to its current upstream under a fresh id not in flight (ids are the only thing
    /// an off-path spoofer must guess) and records it.
    fn send(&self, pending: &mut HashMap<u16, Pending>, mut p: Pending) {
        let mut id = self.next_random() as u16;
        let mut tries = 0;
        while pending.contains_key(&id) {
            id = id.wrapping_add(0x9E37);
            tries += 1;
            if tries > 64 {
                self.counters.dropped.fetch_add(1, Ordering::Relaxed);
                return;
            }
        }
        let upstream = self.addr_for(p.upstreams[p.tried]);
        let mut out = p.query.to_vec();
        out[..2].copy_from_slice(&id.to_be_bytes());
        p.sent = Instant::now();
        // A failed send is a failed attempt: the sweep moves it on like a timeout.
        if self.upstream_sock.send_to(&out, upstream).is_ok() {
            self.counters.sent.fetch_add(1, Ordering::Relaxed);
        } else {
            p.sent = Instant::now() - TIMEOUT;
        }
        pending.insert(id, p);
    }

    /// An upstream address in the family of the upstream socket.
    fn addr_for(&self, upstream: SocketAddr) -> SocketAddr {
        match (self.upstream_sock.local_addr(), upstream) {
            (Ok(SocketAddr::V6(_)), SocketAddr::V4(v4)) => {
                SocketAddr::new(v4.ip().to_ipv6_mapped().into(), v4.port())
            }
            _ => upstream,
        }
    }

    /// Moves every query whose upstream has not answered in time to the next one, and answers
    /// SERVFAIL for those that have none left.
    fn sweep(&self, server: &UdpSocket) {
        let now = Instant::now();
        let mut pending = self.pending.lock();
        let late: Vec<u16> = pending
            .iter()
            .filter(|(_, p)| now.duration_since(p.sent) >= TIMEOUT)
            .map(|(id, _)| *id)
            .collect();
        for id in late {
            let Some(mut p) = pending.remove(&id) else {
                continue;
            };
            self.counters.timeouts.fetch_add(1, Ordering::Relaxed);
            p.tried += 1;
            if p.tried < p.upstreams.len() {
                self.counters.retried.fetch_add(1, Ordering::Relaxed);
                self.send(&mut pending, p);
            } else {
                self.counters.failed.fetch_add(1, Ordering::Relaxed);
                self.responses.count(ResponseCode::ServFail);
                let answer = servfail(&p.query);
                if !answer.is_empty() {
                    let _ = server.send_to(&answer, p.client);
                }
            }
        }
    }

    fn receive(&self, server: &UdpSocket, shutdown: &CancellationToken) {
        let mut buf = vec![0u8; 65535];
        let mut last_sweep = Instant::now();
        while !shutdown.is_cancelled() {
            if last_sweep.elapsed() >= SWEEP {
                self.sweep(server);
                last_sweep = Instant::now();
            }
            let Ok((n, from)) = self.upstream_sock.recv_from(&mut buf) else {
                continue;
            };
            if n == 0 && shutdown.is_cancelled() {
                // The wake-up of a receive shut for shutdown, not a datagram.
                break;
            }
            if n < 12 || buf[2] & 0x80 == 0 {
                self.counters.unmatched.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            let id = u16::from_be_bytes([buf[0], buf[1]]);
            let p = {
                let mut pending = self.pending.lock();
                match pending.get(&id) {
                    Some(p) if self.addr_for(p.upstreams[p.tried]) == from => pending.remove(&id),
                    _ => None,
                }
            };
            let Some(p) = p else {
                self.counters.unmatched.fetch_add(1, Ordering::Relaxed);
                continue;
            };
            relayed(&mut buf[..n], p.client_id);
            if server.send_to(&buf[..n], p.client).is_ok() {
                self.counters.relayed.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// How often the receiver looks for queries that timed out.
const SWEEP: Duration = Duration::from_millis(100);
/// How long the receiver waits for a reply before it looks at the clock: the sweep runs every
/// [`SWEEP`] under traffic and at least this often without.
const SWEEP_WAKE: Duration = Duration::from_millis(200);

/// An upstream's reply made the client's: its id back, AA cleared.
fn relayed(reply: &mut [u8], client_id: u16) {
    reply[..2].copy_from_slice(&client_id.to_be_bytes());
    reply[2] &= !0x04;
}

/// SERVFAIL for `query` (which decoded: it was answered as far as the forwarding decision);
/// empty if it does not decode.
pub fn servfail(query: &[u8]) -> Vec<u8> {
    let Ok(q) = Message::from_vec(query) else {
        return Vec::new();
    };
    let mut m = Message::new(q.metadata.id, MessageType::Response, q.metadata.op_code);
    m.metadata = Metadata::response_from_request(&q.metadata);
    m.metadata.response_code = ResponseCode::ServFail;
    m.queries = q.queries;
    m.to_vec().unwrap_or_default()
}

/// The TCP side of the policy: asks each upstream in turn over UDP, from a fresh socket (a
/// random source port) with a fresh random id, so an off-path spoofer must guess both. Returns
/// the relayed reply, or SERVFAIL (counted) when every upstream failed.
pub async fn ask_in_turn(
    query: &[u8],
    upstreams: &[SocketAddr],
    counters: &ForwardCounters,
    responses: &Counters,
) -> Vec<u8> {
    for (i, upstream) in upstreams.iter().enumerate() {
        if i > 0 {
            counters.retried.fetch_add(1, Ordering::Relaxed);
        }
        match ask_one(query, *upstream, counters).await {
            Some(reply) => {
                counters.relayed.fetch_add(1, Ordering::Relaxed);
                return reply;
            }
            None => {
                counters.timeouts.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
    counters.failed.fetch_add(1, Ordering::Relaxed);
    responses.count(ResponseCode::ServFail);
    servfail(query)
}

async fn ask_one(
    query: &[u8],
    upstream: SocketAddr,
    counters: &ForwardCounters,
) -> Option<Vec<u8>> {
    if query.len() < 12 {
        return None;
    }
    let id = (random_u64() as u16).to_be_bytes();
    let mut ours = query.to_vec();
    ours[..2].copy_from_slice(&id);
    let bind: SocketAddr = if upstream.is_ipv4() {
        ([0, 0, 0, 0], 0).into()
    } else {
        ([0u16; 8], 0).into()
    };
    let sock = tokio::net::UdpSocket::bind(bind).await.ok()?;
    sock.send_to(&ours, upstream).await.ok()?;
    counters.sent.fetch_add(1, Ordering::Relaxed);
    let mut buf = vec![0u8; 65535];
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    loop {
        let (n, from) = tokio::time::timeout_at(deadline, sock.recv_from(&mut buf))
            .await
            .ok()?
            .ok()?;
        if from == upstream && n >= 12 && buf[..2] == id && buf[2] & 0x80 != 0 {
            buf.truncate(n);
            relayed(&mut buf, u16::from_be_bytes([query[0], query[1]]));
            return Some(buf);
        }
    }
}
