//! A TFTP read client, as firmware and load generators use one: RRQ with options (blksize,
//! tsize, windowsize), OACK handling, an ACK per window (RFC 7440), a re-ACK of the last block
//! in order after a gap or a silence, and a bounded number of silences before it gives up.
//! Against a server that ignores the options it reads 512-byte blocks at a window of 1, as
//! RFC 2347 says.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::UdpSocket;

use super::packet::{self, Packet};

/// What a read asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Request {
    /// Block size asked for (RFC 2348); 512 asks for none.
    pub blksize: u16,
    /// Window asked for (RFC 7440); 1 asks for none.
    pub window: u16,
    /// How long to wait for the server before resending.
    pub timeout: Duration,
    /// Silences in a row before giving up.
    pub retries: u32,
}

impl Default for Request {
    fn default() -> Self {
        Self {
            blksize: 1468,
            window: 1,
            timeout: Duration::from_secs(1),
            retries: 5,
        }
    }
}

/// Why a read failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FetchError {
    /// The server sent an ERROR packet.
    #[error("TFTP error {code}: {message}")]
    Server {
        /// Its code.
        code: u16,
        /// Its message.
        message: String,
    },
    /// No answer within the retries.
    #[error("timed out")]
    TimedOut,
    /// A socket error.
    #[error("{0}")]
    Io(String),
}

/// Reads `file` from `server` on `sock` (whose local address is the client's). Calls `sink`
/// with each block's data in order, and returns the byte count.
pub async fn fetch(
    sock: &UdpSocket,
    server: SocketAddr,
    file: &str,
    req: Request,
    sink: impl FnMut(&[u8]),
) -> Result<u64, FetchError> {
    fetch_counting(sock, server, file, req, sink, &mut 0).await
}

/// [`fetch`], adding to `resends` each time it sent again after a silence (the RRQ or its last
/// ACK): the client's view of loss and delay.
pub async fn fetch_counting(
    sock: &UdpSocket,
    server: SocketAddr,
    file: &str,
    req: Request,
    mut sink: impl FnMut(&[u8]),
    resends: &mut u32,
) -> Result<u64, FetchError> {
    let io = |e: std::io::Error| FetchError::Io(e.to_string());
    let mut out = Vec::with_capacity(64);
    let (b, w) = (req.blksize.to_string(), req.window.to_string());
    let mut opts = vec![("tsize", "0")];
    if req.blksize != 512 {
        opts.push(("blksize", b.as_str()));
    }
    if req.window > 1 {
        opts.push(("windowsize", w.as_str()));
    }
    packet::rrq(file, &opts, &mut out);
    sock.send_to(&out, server).await.map_err(io)?;
    let mut peer: Option<SocketAddr> = None;
    let (mut bsize, mut win) = (512usize, 1u16);
    let mut expected: u16 = 1;
    let mut in_window: u16 = 0;
    let mut total: u64 = 0;
    let mut silences = 0;
    let mut buf = vec![0u8; 65536 + 4];
    loop {
        let got = tokio::time::timeout(req.timeout, sock.recv_from(&mut buf)).await;
        let (n, from) = match got {
            Ok(Ok(x)) => x,
            Ok(Err(e)) => return Err(io(e)),
            Err(_) => {
                silences += 1;
                if silences >= req.retries {
                    return Err(FetchError::TimedOut);
                }
                // Resend what was sent last (the RRQ, or the last ACK).
                *resends += 1;
                let _ = sock.send_to(&out, peer.unwrap_or(server)).await;
                continue;
            }
        };
        // Another transfer ID (a duplicate answer to a resent RRQ): not this transfer.
        if peer.is_some_and(|p| p != from) {
            continue;
        }
        silences = 0;
        match packet::parse(&buf[..n]) {
            Ok(Packet::Oack) if peer.is_none() => {
                peer = Some(from);
                // name\0value\0 pairs.
                let mut it = buf[2..n].split(|&c| c == 0);
                while let (Some(k), Some(v)) = (it.next(), it.next()) {
                    let v: usize = std::str::from_utf8(v)
                        .ok()
                        .and_then(|v| v.parse().ok())
                        .unwrap_or(0);
                    match k.to_ascii_lowercase().as_slice() {
                        b"blksize" if v >= 8 => bsize = v,
                        b"windowsize" => win = v.clamp(1, 65535) as u16,
                        _ => {}
                    }
                }
                packet::ack(0, &mut out);
                sock.send_to(&out, from).await.map_err(io)?;
            }
            Ok(Packet::Data { block, data }) => {
                if peer.is_none() {
                    peer = Some(from);
                }
                if block == expected {
                    sink(data);
                    total += data.len() as u64;
                    expected = expected.wrapping_add(1);
                    in_window += 1;
                    let last = data.len() < bsize;
                    if last || in_window >= win {
                        in_window = 0;
                        packet::ack(block, &mut out);
                        sock.send_to(&out, from).await.map_err(io)?;
                    }
                    if last {
                        return Ok(total);
                    }
                } else if block != expected.wrapping_sub(1) || win > 1 {
                    // A gap (or, in a window, a resent block): ACK what arrived in order.
                    in_window = 0;
                    packet::ack(expected.wrapping_sub(1), &mut out);
                    sock.send_to(&out, from).await.map_err(io)?;
                }
            }
            Ok(Packet::Error { code, message }) => {
                return Err(FetchError::Server {
                    code,
                    message: message.to_owned(),
                });
            }
            _ => {}
        }
    }
}
