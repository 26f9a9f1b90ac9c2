//! A TFTP load generator for `bench/tftp.sh`: N clients fetching one file over and over for a
//! bounded time, against any server, each transfer checked for its length.
//!
//! ```text
//! tftp_load ADDR FILE SIZE CLIENTS SECONDS BLKSIZE WINDOWSIZE
//! ```
//!
//! Each client sends from its own address (127.2.x.y against a loopback server), as the
//! machines of a rack do. Options asked for: blksize, tsize, and windowsize when above 1. A server that ignores
//! them is served at 512-byte blocks and a window of 1, as RFC 2347 says. A client ACKs the
//! last block of each window (RFC 7440) and re-ACKs the last block in order after a gap or a
//! 1 s silence; five silences in a row, an ERROR, or a wrong length is a failed transfer.
//! Prints one line: `ok=N failed=N bytes=N seconds=S mbps=X p50_ms=X p99_ms=X`.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use pserv_boot::tftp::packet::{self, Packet};
use tokio::net::UdpSocket;

#[derive(Default)]
struct Tally {
    ok: u64,
    failed: u64,
    bytes: u64,
    times: Vec<Duration>,
}

async fn fetch(
    server: SocketAddr,
    source: std::net::IpAddr,
    file: &str,
    blksize: u16,
    window: u16,
) -> Result<u64, String> {
    let bind = SocketAddr::new(source, 0);
    let sock = UdpSocket::bind(bind).await.map_err(|e| e.to_string())?;
    let mut out = Vec::with_capacity(64);
    let (b, w) = (blksize.to_string(), window.to_string());
    let mut opts = vec![("blksize", b.as_str()), ("tsize", "0")];
    if window > 1 {
        opts.push(("windowsize", w.as_str()));
    }
    packet::rrq(file, &opts, &mut out);
    sock.send_to(&out, server)
        .await
        .map_err(|e| e.to_string())?;
    let mut peer: Option<SocketAddr> = None;
    let (mut bsize, mut win) = (512usize, 1u16);
    let mut expected: u16 = 1;
    let mut in_window: u16 = 0;
    let mut total: u64 = 0;
    let mut silences = 0;
    let mut buf = vec![0u8; 70_000];
    loop {
        let got = tokio::time::timeout(Duration::from_secs(1), sock.recv_from(&mut buf)).await;
        let (n, from) = match got {
            Ok(Ok(x)) => x,
            Ok(Err(e)) => return Err(e.to_string()),
            Err(_) => {
                silences += 1;
                if silences >= 5 {
                    return Err("timed out".into());
                }
                // Resend what we last sent (the RRQ, or the last ACK).
                let to = peer.unwrap_or(server);
                let _ = sock.send_to(&out, to).await;
                continue;
            }
        };
        if peer.is_some_and(|p| p != from) {
            continue;
        }
        silences = 0;
        match packet::parse(&buf[..n]) {
            Ok(Packet::Oack) if peer.is_none() => {
                peer = Some(from);
                // Read the negotiated values back from the raw OACK: name\0value\0 pairs.
                let mut it = buf[2..n].split(|&c| c == 0);
                while let (Some(k), Some(v)) = (it.next(), it.next()) {
                    let v: usize = std::str::from_utf8(v)
                        .ok()
                        .and_then(|v| v.parse().ok())
                        .unwrap_or(0);
                    match k.to_ascii_lowercase().as_slice() {
                        b"blksize" => bsize = v,
                        b"windowsize" => win = v.max(1) as u16,
                        _ => {}
                    }
                }
                packet::ack(0, &mut out);
                sock.send_to(&out, from).await.map_err(|e| e.to_string())?;
            }
            Ok(Packet::Data { block, data }) => {
                if peer.is_none() {
                    peer = Some(from);
                }
                if block == expected {
                    total += data.len() as u64;
                    expected = expected.wrapping_add(1);
                    in_window += 1;
                    let last = data.len() < bsize;
                    if last || in_window >= win {
                        in_window = 0;
                        packet::ack(block, &mut out);
                        sock.send_to(&out, from).await.map_err(|e| e.to_string())?;
                    }
                    if last {
                        return Ok(total);
                    }
                } else if block != expected.wrapping_sub(1) || win > 1 {
                    // A gap (or, in a window, a resent block): ACK what arrived in order.
                    in_window = 0;
                    packet::ack(expected.wrapping_sub(1), &mut out);
                    sock.send_to(&out, from).await.map_err(|e| e.to_string())?;
                }
            }
            Ok(Packet::Error { code, message }) => {
                return Err(format!("error {code}: {message}"));
            }
            _ => {}
        }
    }
}

fn main() {
    let a: Vec<String> = std::env::args().collect();
    if a.len() != 8 {
        eprintln!("usage: tftp_load ADDR FILE SIZE CLIENTS SECONDS BLKSIZE WINDOWSIZE");
        std::process::exit(2);
    }
    let server: SocketAddr = a[1].parse().expect("ADDR is IP:PORT");
    let file = a[2].clone();
    let size: u64 = a[3].parse().expect("SIZE");
    let clients: usize = a[4].parse().expect("CLIENTS");
    let seconds: f64 = a[5].parse().expect("SECONDS");
    let blksize: u16 = a[6].parse().expect("BLKSIZE");
    let window: u16 = a[7].parse().expect("WINDOWSIZE");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let t0 = Instant::now();
    let deadline = t0 + Duration::from_secs_f64(seconds);
    let tally = rt.block_on(async {
        let mut tasks = Vec::new();
        for i in 0..clients {
            let file = file.clone();
            // Each client its own source address, as machines are: on loopback, 127.2.x.y;
            // elsewhere the wildcard.
            let source: std::net::IpAddr = if server.ip().is_loopback() {
                std::net::Ipv4Addr::new(127, 2, (i / 250) as u8, (i % 250 + 1) as u8).into()
            } else if server.is_ipv4() {
                std::net::Ipv4Addr::UNSPECIFIED.into()
            } else {
                std::net::Ipv6Addr::UNSPECIFIED.into()
            };
            tasks.push(tokio::spawn(async move {
                let mut t = Tally::default();
                while Instant::now() < deadline {
                    let start = Instant::now();
                    match fetch(server, source, &file, blksize, window).await {
                        Ok(n) if n == size => {
                            t.ok += 1;
                            t.bytes += n;
                            t.times.push(start.elapsed());
                        }
                        Ok(n) => {
                            eprintln!("wrong length {n}, expected {size}");
                            t.failed += 1;
                        }
                        Err(e) => {
                            eprintln!("failed: {e}");
                            t.failed += 1;
                        }
                    }
                }
                t
            }));
        }
        let mut all = Tally::default();
        for task in tasks {
            if let Ok(t) = task.await {
                all.ok += t.ok;
                all.failed += t.failed;
                all.bytes += t.bytes;
                all.times.extend(t.times);
            }
        }
        all
    });
    let secs = t0.elapsed().as_secs_f64();
    let mut times = tally.times;
    times.sort();
    let pct = |p: f64| {
        times
            .get(((times.len() as f64 * p) as usize).min(times.len().saturating_sub(1)))
            .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
    };
    println!(
        "ok={} failed={} bytes={} seconds={secs:.2} mbps={:.1} p50_ms={:.0} p99_ms={:.0}",
        tally.ok,
        tally.failed,
        tally.bytes,
        tally.bytes as f64 / secs / 1e6,
        pct(0.5),
        pct(0.99)
    );
}
