//! One relay socket for every simulated machine's DHCP: requests go out from the relay
//! address (giaddr), and replies, which servers send to giaddr:67, are handed to the machine
//! waiting on their xid.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio::sync::mpsc;

/// The shared socket and who waits for which xid.
pub struct Mux {
    sock: Arc<UdpSocket>,
    server: SocketAddr,
    waiting: Mutex<HashMap<u32, mpsc::UnboundedSender<Vec<u8>>>>,
}

impl Mux {
    /// Takes `sock` (bound to giaddr:67) and starts the receive task.
    pub fn start(sock: UdpSocket, server: SocketAddr) -> Arc<Self> {
        let mux = Arc::new(Self {
            sock: Arc::new(sock),
            server,
            waiting: Mutex::new(HashMap::new()),
        });
        let m = mux.clone();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 1500];
            loop {
                let Ok((n, _)) = m.sock.recv_from(&mut buf).await else {
                    continue;
                };
                if n < 8 {
                    continue;
                }
                let xid = u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]);
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

    /// Sends `msg` to the server, then waits up to `wait` for a reply on `rx` that `accept`
    /// takes; resends up to `tries` times (firmware retries DISCOVER and REQUEST).
    pub async fn exchange<T>(
        &self,
        msg: &[u8],
        rx: &mut mpsc::UnboundedReceiver<Vec<u8>>,
        wait: Duration,
        tries: u32,
        mut accept: impl FnMut(&[u8]) -> Option<T>,
    ) -> Option<T> {
        for _ in 0..tries.max(1) {
            let _ = self.sock.send_to(msg, self.server).await;
            let deadline = tokio::time::Instant::now() + wait;
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
