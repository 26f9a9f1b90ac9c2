//! Forwarding names outside pserv's zones to the snapshot's `dns.upstreams` (UDP).
//!
//! Only when the snapshot lists upstreams; otherwise such names are REFUSED and pserv is never
//! an open resolver. The UDP loop hands a query over and moves on: the forwarder rewrites its
//! id to a fresh random one, sends it to an upstream from its own socket, and a receiver thread
//! matches the reply (id *and* upstream address, so a spoofed reply from elsewhere is ignored),
//! restores the client's id, clears AA (pserv is not authoritative for it) and sends it to the
//! client from the server's socket. Queries without a reply are forgotten after
//! [`TIMEOUT`]; the client retries.

use std::collections::HashMap;
use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

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

/// How long a forwarded query waits for its upstream.
pub const TIMEOUT: Duration = Duration::from_secs(3);

struct Pending {
    client: SocketAddr,
    client_id: u16,
    upstream: SocketAddr,
    sent: Instant,
}

/// Counters of forwarding.
#[derive(Debug, Default)]
pub struct ForwardCounters {
    /// Queries sent upstream.
    pub sent: AtomicU64,
    /// Replies relayed to clients.
    pub relayed: AtomicU64,
    /// Queries that got no reply in time.
    pub timeouts: AtomicU64,
    /// Replies that matched nothing pending (late, or not from the upstream asked).
    pub unmatched: AtomicU64,
    /// Queries dropped because 65,536 were already in flight or the send failed.
    pub dropped: AtomicU64,
}

/// The forwarder of one server socket.
pub struct Forwarder {
    upstream_sock: UdpSocket,
    pending: Mutex<HashMap<u16, Pending>>,
    rng: Mutex<u64>,
    counters: Arc<ForwardCounters>,
}

impl Forwarder {
    /// A forwarder that answers clients through `server` (a clone of the server socket) and
    /// runs its receiver until `stop` is set.
    pub fn spawn(
        server: UdpSocket,
        stop: Arc<AtomicBool>,
    ) -> std::io::Result<(Arc<Self>, JoinHandle<()>)> {
        // Dual-stack where the host has IPv6 (upstreams of either family, v4 ones as mapped
        // addresses), IPv4 only otherwise.
        let upstream_sock = UdpSocket::bind("[::]:0").or_else(|_| UdpSocket::bind("0.0.0.0:0"))?;
        upstream_sock.set_read_timeout(Some(Duration::from_millis(200)))?;
        crate::udp::grow_buffers(&upstream_sock);
        let seed = random_u64();
        let f = Arc::new(Self {
            upstream_sock,
            pending: Mutex::new(HashMap::new()),
            rng: Mutex::new(seed | 1),
            counters: Arc::default(),
        });
        let me = f.clone();
        let handle = std::thread::Builder::new()
            .name("pserv-dns-fwd".into())
            .spawn(move || me.receive(&server, &stop))?;
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

    /// Sends `query` from `client` to one of `upstreams`.
    pub fn forward(&self, query: &[u8], client: SocketAddr, upstreams: &[SocketAddr]) {
        if query.len() < 12 || upstreams.is_empty() {
            return;
        }
        let r = self.next_random();
        let upstream = self.addr_for(upstreams[(r >> 32) as usize % upstreams.len()]);
        let client_id = u16::from_be_bytes([query[0], query[1]]);
        let id = {
            let mut pending = self.pending.lock();
            let now = Instant::now();
            if pending.len() >= 1 << 15 {
                let before = pending.len();
                pending.retain(|_, p| now.duration_since(p.sent) < TIMEOUT);
                let expired = (before - pending.len()) as u64;
                self.counters.timeouts.fetch_add(expired, Ordering::Relaxed);
            }
            // A random id not in flight (ids are the only thing an off-path spoofer must guess).
            let mut id = r as u16;
            let mut tries = 0;
            while pending.contains_key(&id) {
                id = id.wrapping_add(0x9E37);
                tries += 1;
                if tries > 64 {
                    self.counters.dropped.fetch_add(1, Ordering::Relaxed);
                    return;
                }
            }
            pending.insert(
                id,
                Pending {
                    client,
                    client_id,
                    upstream,
                    sent: now,
                },
            );
            id
        };
        let mut out = query.to_vec();
        out[..2].copy_from_slice(&id.to_be_bytes());
        if self.upstream_sock.send_to(&out, upstream).is_ok() {
            self.counters.sent.fetch_add(1, Ordering::Relaxed);
        } else {
            self.pending.lock().remove(&id);
            self.counters.dropped.fetch_add(1, Ordering::Relaxed);
        }
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

    fn receive(&self, server: &UdpSocket, stop: &AtomicBool) {
        let mut buf = vec![0u8; 65535];
        let mut last_sweep = Instant::now();
        while !stop.load(Ordering::Relaxed) {
            if last_sweep.elapsed() > TIMEOUT {
                let now = Instant::now();
                let mut pending = self.pending.lock();
                let before = pending.len();
                pending.retain(|_, p| now.duration_since(p.sent) < TIMEOUT);
                let expired = (before - pending.len()) as u64;
                self.counters.timeouts.fetch_add(expired, Ordering::Relaxed);
                last_sweep = now;
            }
            let Ok((n, from)) = self.upstream_sock.recv_from(&mut buf) else {
                continue;
            };
            if n < 12 || buf[2] & 0x80 == 0 {
                self.counters.unmatched.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            let id = u16::from_be_bytes([buf[0], buf[1]]);
            let p = {
                let mut pending = self.pending.lock();
                match pending.get(&id) {
                    Some(p) if p.upstream == from => pending.remove(&id),
                    _ => None,
                }
            };
            let Some(p) = p else {
                self.counters.unmatched.fetch_add(1, Ordering::Relaxed);
                continue;
            };
            buf[..2].copy_from_slice(&p.client_id.to_be_bytes());
            buf[2] &= !0x04; // AA: not ours
            if server.send_to(&buf[..n], p.client).is_ok() {
                self.counters.relayed.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}
