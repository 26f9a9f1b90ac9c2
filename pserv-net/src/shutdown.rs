//! Shutdown that reaches threads blocked in a receive.
//!
//! Services stop on one [`CancellationToken`]. Tasks await it; a thread blocked in
//! `recvmmsg` cannot, so [`wake_on_cancel`] shuts the receive side of its socket
//! (`shutdown(SHUT_RD)`) the moment the token is cancelled, whoever cancels it. On Linux that
//! wakes every receive blocked on the socket at once (the call returns an empty datagram,
//! which [`crate::udp::RecvBatch`] does not count) and later receives return at once;
//! datagrams already queued are still delivered and sending is unaffected, so a service can
//! still send the replies it has decided. No thread then needs a short read timeout to notice
//! its shutdown.

use std::net::UdpSocket;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};

use tokio_util::sync::CancellationToken;

/// Shuts the receive side of `sock` (a clone of the socket is kept) when `token` is
/// cancelled, waking any thread blocked receiving on it. Spawns a small thread that sleeps
/// until then (no runtime needed); if the token is already cancelled, it happens at once.
pub fn wake_on_cancel(token: &CancellationToken, sock: &UdpSocket) -> std::io::Result<()> {
    let sock = sock.try_clone()?;
    let cancelled = token.clone().cancelled_owned();
    std::thread::Builder::new()
        .name("pserv-wake".into())
        .spawn(move || {
            block_on(cancelled);
            // ENOTCONN for an unconnected UDP socket, but the receive side is shut and its
            // waiters are woken all the same (Linux inet_shutdown).
            let _ = nix::sys::socket::shutdown(sock.as_raw_fd(), nix::sys::socket::Shutdown::Read);
        })?;
    Ok(())
}

/// Runs a future to completion on this thread, parking between polls.
fn block_on<F: Future>(fut: F) -> F::Output {
    struct Unpark(std::thread::Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut fut = std::pin::pin!(fut);
    loop {
        if let Poll::Ready(v) = fut.as_mut().poll(&mut cx) {
            return v;
        }
        std::thread::park();
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;
    use crate::udp::{RecvBatch, Wait};

    #[test]
    fn a_blocked_receive_wakes_at_cancel_and_queued_datagrams_still_arrive() {
        let sock = UdpSocket::bind("127.0.0.1:0").expect("bind");
        let client = UdpSocket::bind("127.0.0.1:0").expect("bind");
        client
            .send_to(b"queued", sock.local_addr().expect("addr"))
            .expect("send");
        let token = CancellationToken::new();
        wake_on_cancel(&token, &sock).expect("wake");
        let receiver = std::thread::spawn(move || {
            let mut batch = RecvBatch::<4>::new(64);
            let mut got = Vec::new();
            // Blocks (no read timeout) until the datagram, then until the wake-up.
            for _ in 0..10 {
                let n = batch.recv(&sock, Wait::ForOne).expect("recv");
                if n == 0 {
                    return (got, Instant::now());
                }
                for d in batch.datagrams() {
                    got.push(batch.payload(d).to_vec());
                }
            }
            panic!("no wake-up");
        });
        std::thread::sleep(Duration::from_millis(100));
        let cancelled_at = Instant::now();
        token.cancel();
        let (got, woke_at) = receiver.join().expect("receiver");
        assert_eq!(got, vec![b"queued".to_vec()]);
        assert!(woke_at.duration_since(cancelled_at) < Duration::from_millis(50));
    }
}
