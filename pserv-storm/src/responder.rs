//! A stateless do-nothing DHCP responder: every DISCOVER gets an OFFER and every REQUEST an
//! ACK, the address a hash of the MAC in a pool, nothing remembered and nothing written. It
//! is the ceiling a server could reach on this machine's network path, so a run against it
//! shows whether the generator, not the server, is the limit.

use std::io::{IoSlice, IoSliceMut};
use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use nix::sys::socket::{MsgFlags, MultiHeaders, SockaddrIn, recvmmsg, sendmmsg};
use nix::sys::time::TimeSpec;

use crate::dhcp::wire;

/// Where the responder hands out addresses.
#[derive(Debug, Clone, Copy)]
pub struct Pool {
    /// The first address.
    pub start: Ipv4Addr,
    /// How many.
    pub size: u32,
}

/// The reply to one request, if any: pure (request bytes in, reply bytes out).
pub fn respond(req: &[u8], pool: Pool, server: Ipv4Addr, out: &mut Vec<u8>) -> bool {
    let Some(r) = wire::parse_request(req) else {
        return false;
    };
    let hashed = {
        let m = r.mac;
        let h = u32::from_be_bytes([m[2], m[3], m[4], m[5]]) ^ (u32::from(m[1]) << 24);
        Ipv4Addr::from(u32::from(pool.start) + h % pool.size.max(1))
    };
    match r.kind {
        wire::DISCOVER => wire::reply(out, &r, wire::OFFER, hashed, server),
        wire::REQUEST => wire::reply(out, &r, wire::ACK, r.requested.unwrap_or(hashed), server),
        _ => return false,
    }
    true
}

/// Answers on `sock` for `seconds`, then returns how many replies it sent.
pub fn serve(sock: &UdpSocket, pool: Pool, server: Ipv4Addr, seconds: f64) -> u64 {
    const BATCH: usize = 64;
    let fd = sock.as_raw_fd();
    let mut bufs: Box<[[u8; 1500]; BATCH]> = Box::new([[0u8; 1500]; BATCH]);
    let mut outs: Vec<Vec<u8>> = (0..BATCH).map(|_| Vec::with_capacity(320)).collect();
    let mut to: Vec<Option<SockaddrIn>> = vec![None; BATCH];
    let mut rheaders = MultiHeaders::<SockaddrIn>::preallocate(BATCH, None);
    let mut sheaders = MultiHeaders::<SockaddrIn>::preallocate(BATCH, None);
    let end = Instant::now() + Duration::from_secs_f64(seconds);
    let mut sent = 0u64;
    let _ = sock.set_nonblocking(false);
    let _ = sock.set_read_timeout(Some(Duration::from_millis(100)));
    while Instant::now() < end {
        let mut iovs = bufs.each_mut().map(|b| [IoSliceMut::new(&mut b[..])]);
        let got: Vec<(usize, Option<SockaddrIn>)> = match recvmmsg(
            fd,
            &mut rheaders,
            iovs.iter_mut(),
            MsgFlags::MSG_WAITFORONE,
            Some(TimeSpec::from_duration(Duration::from_millis(100))),
        ) {
            Ok(m) => m.map(|m| (m.bytes, m.address)).collect(),
            Err(_) => continue,
        };
        let mut k = 0;
        for (i, (len, from)) in got.iter().enumerate() {
            if respond(&bufs[i][..*len], pool, server, &mut outs[k]) {
                // Relayed: to the relay's server port; else back to the sender.
                let giaddr = Ipv4Addr::new(bufs[i][24], bufs[i][25], bufs[i][26], bufs[i][27]);
                to[k] = if giaddr.is_unspecified() {
                    *from
                } else {
                    Some(SockaddrIn::from(SocketAddrV4::new(giaddr, 67)))
                };
                k += 1;
            }
        }
        let slices: Vec<[IoSlice<'_>; 1]> = outs[..k].iter().map(|o| [IoSlice::new(o)]).collect();
        if let Ok(r) = sendmmsg(fd, &mut sheaders, &slices, &to[..k], [], MsgFlags::empty()) {
            sent += r.count() as u64;
        }
    }
    sent
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn offers_then_acks_the_requested_address() {
        let pool = Pool {
            start: Ipv4Addr::new(10, 1, 0, 0),
            size: 65536,
        };
        let c = wire::Client {
            xid: 7,
            mac: [2, 0, 0, 0, 0, 9],
            giaddr: Ipv4Addr::new(10, 0, 0, 2),
            arch: None,
            ipxe: false,
        };
        let (mut req, mut out) = (Vec::new(), Vec::new());
        wire::discover(&mut req, &c);
        assert!(respond(&req, pool, Ipv4Addr::new(10, 0, 0, 1), &mut out));
        let offer = wire::parse_reply(&out).unwrap();
        assert_eq!(offer.kind, wire::OFFER);
        assert_eq!(offer.yiaddr, Ipv4Addr::new(10, 1, 0, 9));
        wire::request(&mut req, &c, offer.yiaddr, Ipv4Addr::new(10, 0, 0, 1));
        assert!(respond(&req, pool, Ipv4Addr::new(10, 0, 0, 1), &mut out));
        assert_eq!(wire::parse_reply(&out).unwrap().kind, wire::ACK);
        assert!(!respond(
            b"nonsense",
            pool,
            Ipv4Addr::new(10, 0, 0, 1),
            &mut out
        ));
    }
}
