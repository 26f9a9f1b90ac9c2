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

use pserv_boot::tftp::client;
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
    let sock = UdpSocket::bind(SocketAddr::new(source, 0))
        .await
        .map_err(|e| e.to_string())?;
    let req = client::Request {
        blksize,
        window,
        ..client::Request::default()
    };
    client::fetch(&sock, server, file, req, |_| {})
        .await
        .map_err(|e| e.to_string())
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
