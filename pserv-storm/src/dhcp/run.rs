//! The thin loop around [`Dora`]: one UDP socket bound to the relay address on port 67, or
//! 547 for DHCPv6 (where servers send relayed replies), batched sends (`sendmmsg`) and
//! receives (`recvmmsg`), a large receive buffer, and a live progress line.

use std::io::{IoSlice, IoSliceMut, Write};
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::{AsFd, AsRawFd};
use std::time::{Duration, Instant};

use anyhow::Context;
use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::socket::{MsgFlags, MultiHeaders, SockaddrStorage, recvmmsg, sendmmsg};

use super::{Config, Dora, Family, Report, V4, V6};

/// Datagrams per `sendmmsg` / `recvmmsg`.
const BATCH: usize = 64;
/// Receive buffer asked for (root gets it whatever `rmem_max` says).
const RCVBUF: usize = 32 << 20;

/// A UDP socket with large buffers, bound to `addr`.
pub fn socket(addr: SocketAddr) -> anyhow::Result<UdpSocket> {
    let s = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::DGRAM,
        Some(socket2::Protocol::UDP),
    )?;
    s.set_reuse_address(true)?;
    // SO_RCVBUFFORCE needs CAP_NET_ADMIN; without it the kernel caps at rmem_max.
    if nix::sys::socket::setsockopt(&s, nix::sys::socket::sockopt::RcvBufForce, &RCVBUF).is_err() {
        let _ = s.set_recv_buffer_size(RCVBUF);
    }
    let _ = s.set_send_buffer_size(RCVBUF);
    s.bind(&addr.into())
        .with_context(|| format!("binding {addr}"))?;
    s.set_nonblocking(true)?;
    Ok(s.into())
}

/// Runs one DORA storm against `servers` from `sock`, printing a progress line to stderr
/// every second when `progress` is set. Returns the report. With several servers every
/// request goes to each, as a relay configured with several helper addresses forwards it
/// (servers that share a subnet decide among themselves who answers). IPv6 servers get
/// DHCPv6 exchanges.
pub fn run(sock: &UdpSocket, servers: &[SocketAddr], cfg: Config, progress: bool) -> Report {
    if servers.first().is_some_and(SocketAddr::is_ipv6) {
        run_as::<V6>(sock, servers, cfg, progress)
    } else {
        run_as::<V4>(sock, servers, cfg, progress)
    }
}

fn run_as<F: Family>(
    sock: &UdpSocket,
    servers: &[SocketAddr],
    cfg: Config,
    progress: bool,
) -> Report {
    let fd = sock.as_raw_fd();
    let t0 = Instant::now();
    let mut dora = Dora::<F>::new(cfg, t0);
    let mut outs: Vec<Vec<u8>> = (0..BATCH).map(|_| Vec::with_capacity(320)).collect();
    let mut bufs: Box<[[u8; 1500]; BATCH]> = Box::new([[0u8; 1500]; BATCH]);
    let mut rheaders = MultiHeaders::<SockaddrStorage>::preallocate(BATCH, None);
    let mut sheaders = MultiHeaders::<SockaddrStorage>::preallocate(BATCH, None);
    let dests: Vec<Vec<Option<SockaddrStorage>>> = servers
        .iter()
        .map(|s| vec![Some(SockaddrStorage::from(*s)); BATCH])
        .collect();
    let mut next_line = t0 + Duration::from_secs(1);
    let mut last_acks = 0;
    loop {
        let now = Instant::now();
        dora.handle_timeout(now);
        if dora.finished(now) {
            break;
        }
        // Send what is due, in batches.
        let mut sent_any = false;
        loop {
            let mut k = 0;
            while k < BATCH && dora.poll_transmit(now, &mut outs[k]) {
                k += 1;
            }
            if k == 0 {
                break;
            }
            sent_any = true;
            for dest in &dests {
                let mut done = 0;
                while done < k {
                    let slices: Vec<[IoSlice<'_>; 1]> =
                        outs[done..k].iter().map(|o| [IoSlice::new(o)]).collect();
                    match sendmmsg(
                        fd,
                        &mut sheaders,
                        &slices,
                        &dest[done..k],
                        [],
                        MsgFlags::empty(),
                    ) {
                        Ok(r) => done += r.count().max(1),
                        // A full send buffer: the rest of the batch is lost, as on a wire; the
                        // exchanges time out and count as drops.
                        Err(Errno::EAGAIN) => break,
                        Err(Errno::EINTR) => {}
                        Err(_) => done += 1,
                    }
                }
            }
            if k < BATCH {
                break;
            }
        }
        // Take every reply waiting.
        let mut got_any = false;
        for _ in 0..16 {
            let mut iovs = bufs.each_mut().map(|b| [IoSliceMut::new(&mut b[..])]);
            let n = match recvmmsg(
                fd,
                &mut rheaders,
                iovs.iter_mut(),
                MsgFlags::MSG_DONTWAIT,
                None,
            ) {
                Ok(msgs) => msgs.map(|m| m.bytes).collect::<Vec<_>>(),
                Err(_) => break,
            };
            if n.is_empty() {
                break;
            }
            got_any = true;
            let at = Instant::now();
            for (i, len) in n.iter().enumerate() {
                dora.handle(&bufs[i][..*len], at);
            }
            if n.len() < BATCH {
                break;
            }
        }
        let now = Instant::now();
        if progress && now >= next_line {
            let t = dora.tally();
            eprint!(
                "\r{:>5.1}s  sent {:>9}  acks {:>9} ({:>7}/s)  drops DO {} RA {}  naks {}  wrong {}   ",
                now.duration_since(t0).as_secs_f64(),
                t.discovers,
                t.acks,
                t.acks - last_acks,
                t.discover_drops,
                t.request_drops,
                t.naks,
                t.outside_subnet + t.duplicates
            );
            let _ = std::io::stderr().flush();
            last_acks = t.acks;
            next_line += Duration::from_secs(1);
        }
        if !sent_any && !got_any {
            // Sleep until a reply, the next send, or at most 1 ms (timeouts, the end).
            let wait = dora
                .poll_due(now)
                .map_or(Duration::from_millis(1), |d| {
                    d.saturating_duration_since(now)
                })
                .min(Duration::from_millis(1));
            if wait >= Duration::from_millis(1) {
                let mut fds = [PollFd::new(sock.as_fd(), PollFlags::POLLIN)];
                let _ = poll(&mut fds, PollTimeout::from(1u8));
            } else if wait > Duration::from_micros(50) {
                // Below poll's resolution: a short sleep keeps the offered rate even.
                std::thread::sleep(wait);
            }
        }
    }
    if progress {
        eprintln!();
    }
    dora.report(Instant::now())
}
