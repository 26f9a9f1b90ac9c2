//! One relay socket for every simulated machine's DHCP: requests go out from the relay
//! address (giaddr), and replies, which servers send to giaddr:67, are handed to the machine
//! waiting on their xid. The same for DHCPv6 on the relay's port 547, the xid read inside the
//! RELAY-REPL ([`xid6`]).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio::sync::mpsc;

/// The shared socket and who waits for which xid.
pub struct Mux {
    sock: Arc<UdpSocket>,
    /// Where each request goes: the DHCP server, and a proxyDHCP server beside it (a relay
    /// configured with both forwards to both).
    servers: Vec<SocketAddr>,
    waiting: Mutex<HashMap<u32, mpsc::UnboundedSender<Vec<u8>>>>,
    /// A message's transaction id.
    xid: fn(&[u8]) -> Option<u32>,
}

/// A DHCPv4 message's xid.
pub fn xid4(b: &[u8]) -> Option<u32> {
    Some(u32::from_be_bytes(b.get(4..8)?.try_into().ok()?))
}

/// The transaction id of the client message inside a DHCPv6 relay message (RELAY-FORW or
/// RELAY-REPL, one layer).
pub fn xid6(b: &[u8]) -> Option<u32> {
    let m = crate::dhcp::wire6::relay_message(b)?;
    Some(u32::from_be_bytes([0, *m.get(1)?, *m.get(2)?, *m.get(3)?]))
}

impl Mux {
    /// Takes `sock` (bound to giaddr:67, or the relay's address and port 547) and starts the
    /// receive task; requests go to every one of `servers`; `xid` reads a message's
    /// transaction id ([`xid4`], [`xid6`]).
    pub fn start(
        sock: UdpSocket,
        servers: Vec<SocketAddr>,
        xid: fn(&[u8]) -> Option<u32>,
    ) -> Arc<Self> {
        let mux = Arc::new(Self {
            sock: Arc::new(sock),
            servers,
            waiting: Mutex::new(HashMap::new()),
            xid,
        });
        let m = mux.clone();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 1500];
            loop {
                let Ok((n, _)) = m.sock.recv_from(&mut buf).await else {
                    continue;
                };
                let Some(xid) = (m.xid)(&buf[..n]) else {
                    continue;
                };
                let tx = m.waiting.lock().ok().and_then(|w| w.get(&xid).cloned());
                if let Some(tx) = tx {
                    let _ = tx.send(buf[..n].to_vec());
                }
            }
        });
        mux
    }

    /// Registers `xid`: replies to it arrive on the returned receiver until [`Mux::done`].
    pub fn open(&self, xid: u32) -> mpsc::UnboundedReceiver<Vec<u8>> {
        let (tx, rx) = mpsc::unbounded_channel();
        if let Ok(mut w) = self.waiting.lock() {
            w.insert(xid, tx);
        }
        rx
    }

    /// Stops listening for `xid`.
    pub fn done(&self, xid: u32) {
        if let Ok(mut w) = self.waiting.lock() {
            w.remove(&xid);
        }
    }

    /// Sends `msg` to the servers, then waits for a reply on `rx` that `accept` takes; resends
    /// up to `tries` times, as firmware does (RFC 2131 §4.1): the first wait is `wait`, each
    /// next one doubles (up to 64 s), each randomized by up to ±1 s so that a rack's retries
    /// do not arrive in one burst again.
    pub async fn exchange<T>(
        &self,
        msg: &[u8],
        rx: &mut mpsc::UnboundedReceiver<Vec<u8>>,
        wait: Duration,
        tries: u32,
        mut accept: impl FnMut(&[u8]) -> Option<T>,
    ) -> Option<T> {
        let seed = (self.xid)(msg).unwrap_or(1) | 1;
        for k in 0..tries.max(1) {
            if k > 0 {
                super::resends(1);
            }
            for server in &self.servers {
                let _ = self.sock.send_to(msg, server).await;
            }
            let deadline = tokio::time::Instant::now() + backoff(wait, k, seed);
            loop {
                match tokio::time::timeout_at(deadline, rx.recv()).await {
                    Ok(Some(reply)) => {
                        if let Some(t) = accept(&reply) {
                            return Some(t);
                        }
                    }
                    Ok(None) => return None,
                    Err(_) => break,
                }
            }
        }
        None
    }
}

/// The wait after send `k` (0-based): `wait * 2^k`, at most 64 s, plus a jitter in
/// [-1 s, +1 s] drawn from `seed` and `k` (never below half the unjittered wait).
pub fn backoff(wait: Duration, k: u32, seed: u32) -> Duration {
    let base = wait
        .saturating_mul(1 << k.min(6))
        .min(Duration::from_secs(64));
    // xorshift32 over the seed and the attempt.
    let mut x = seed ^ k.wrapping_mul(0x9e37_79b9);
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    let jitter_ms = i64::from(x % 2001) - 1000;
    let ms = (base.as_millis() as i64 + jitter_ms).max(base.as_millis() as i64 / 2);
    Duration::from_millis(ms as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_with_bounded_jitter() {
        let w = Duration::from_secs(4);
        for seed in [1, 7, 0xdead_beef, 12345] {
            for (k, base) in [
                (0, 4000),
                (1, 8000),
                (2, 16000),
                (3, 32000),
                (4, 64000),
                (9, 64000),
            ] {
                let d = backoff(w, k, seed).as_millis() as i64;
                assert!((d - base).abs() <= 1000, "k={k} seed={seed}: {d} ms");
            }
        }
        // Different machines draw different jitters.
        let spread: std::collections::HashSet<_> =
            (1..50u32).map(|s| backoff(w, 0, s * 2 + 1)).collect();
        assert!(spread.len() > 40);
        // A short wait never goes to zero.
        assert!(backoff(Duration::from_millis(100), 0, 3) >= Duration::from_millis(50));
    }
}
