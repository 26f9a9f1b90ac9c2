//! UDP for servers: binding, buffers, IP_PKTINFO, and batched receive and send.
//!
//! A service thread takes a batch of datagrams with one `recvmmsg` ([`RecvBatch`]), decides
//! them all, and sends the answers with as few `sendmmsg` calls as it can ([`SendBatch`]).
//! Transient errors (a datagram's sender went away, an interrupted call) never end a loop:
//! they are reported per datagram and the next call goes on.

use std::io::{IoSlice, IoSliceMut};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6, UdpSocket};
use std::os::fd::{AsFd, AsRawFd};

use nix::errno::Errno;
use nix::sys::socket::{
    ControlMessage, ControlMessageOwned, MsgFlags, MultiHeaders, SockaddrIn, SockaddrStorage,
    recvmmsg, sendmmsg, sendmsg, setsockopt, sockopt,
};

/// How a server's UDP socket is set up.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Options {
    /// Allow sending to broadcast addresses (DHCP).
    pub broadcast: bool,
    /// Report each datagram's arrival interface and local address (IPv4 `IP_PKTINFO`).
    pub packet_info: bool,
    /// Bind to this network interface only (`SO_BINDTODEVICE`).
    pub device: Option<String>,
    /// Socket buffers to ask for, both ways ([`grow_buffers`]); `None` keeps the defaults.
    pub buffers: Option<usize>,
}

/// Binds a UDP socket on `addr` with `options`. No `SO_REUSEADDR`: a second server on the same
/// port must fail loudly, not share it.
pub fn bind(addr: SocketAddr, options: &Options) -> std::io::Result<UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let sock = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if options.broadcast {
        sock.set_broadcast(true)?;
    }
    if let Some(dev) = &options.device {
        sock.bind_device(Some(dev.as_bytes()))?;
    }
    sock.bind(&addr.into())?;
    let sock: UdpSocket = sock.into();
    if options.packet_info {
        enable_packet_info(&sock)?;
    }
    if let Some(size) = options.buffers {
        grow_buffers(&sock, size);
    }
    Ok(sock)
}

/// Binds a UDP socket for the tokio runtime (call inside one).
pub fn bind_tokio(addr: SocketAddr, options: &Options) -> std::io::Result<tokio::net::UdpSocket> {
    let sock = bind(addr, options)?;
    sock.set_nonblocking(true)?;
    tokio::net::UdpSocket::from_std(sock)
}

/// Turns on `IP_PKTINFO` (IPv4) or `IPV6_RECVPKTINFO` (IPv6, by the socket's family): each
/// datagram then says which interface it came in on and which local address it was sent to
/// ([`PacketInfo`]).
pub fn enable_packet_info(sock: &impl AsFd) -> std::io::Result<()> {
    let v6 = nix::sys::socket::getsockname::<SockaddrStorage>(sock.as_fd().as_raw_fd())
        .map(|a| a.as_sockaddr_in6().is_some())
        .unwrap_or(false);
    if v6 {
        setsockopt(sock, sockopt::Ipv6RecvPacketInfo, &true).map_err(std::io::Error::from)
    } else {
        setsockopt(sock, sockopt::Ipv4PacketInfo, &true).map_err(std::io::Error::from)
    }
}

/// Joins the DHCPv6 servers' group, `ff02::1:2` (RFC 8415 §7.1), on interface `ifindex`.
pub fn join_dhcp6_group(sock: &UdpSocket, ifindex: u32) -> std::io::Result<()> {
    socket2::SockRef::from(sock)
        .join_multicast_v6(&Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 1, 2), ifindex)
}

/// Raises both socket buffers to `size`: past `net.core.rmem_max` where allowed (root: the
/// FORCE options, as NSD does), else to whatever the limit permits. A burst from a rack
/// powering on is then queued rather than dropped.
pub fn grow_buffers(sock: &impl AsFd, size: usize) {
    if setsockopt(sock, sockopt::RcvBufForce, &size).is_err() {
        let _ = setsockopt(sock, sockopt::RcvBuf, &size);
    }
    if setsockopt(sock, sockopt::SndBufForce, &size).is_err() {
        let _ = setsockopt(sock, sockopt::SndBuf, &size);
    }
}

/// Where a datagram arrived (`IP_PKTINFO`, `IPV6_PKTINFO`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PacketInfo {
    /// The interface it came in on.
    pub ifindex: u32,
    /// IPv4: the local address it was sent to (`ipi_spec_dst`): for a broadcast, the
    /// interface's address a reply should come from. Unspecified for IPv6.
    pub local: Ipv4Addr,
    /// IPv6: the address it was sent to (a multicast group, or one of ours). Unspecified for
    /// IPv4.
    pub local6: Ipv6Addr,
}

/// Reads the `IP_PKTINFO` control message out of a received message's control messages.
pub fn packet_info(cmsgs: impl Iterator<Item = ControlMessageOwned>) -> Option<PacketInfo> {
    cmsgs.into_iter().find_map(|c| match c {
        ControlMessageOwned::Ipv4PacketInfo(i) => Some(PacketInfo {
            ifindex: u32::try_from(i.ipi_ifindex).unwrap_or(0),
            local: Ipv4Addr::from(u32::from_be(i.ipi_spec_dst.s_addr)),
            local6: Ipv6Addr::UNSPECIFIED,
        }),
        ControlMessageOwned::Ipv6PacketInfo(i) => Some(PacketInfo {
            ifindex: i.ipi6_ifindex,
            local: Ipv4Addr::UNSPECIFIED,
            local6: Ipv6Addr::from(i.ipi6_addr.s6_addr),
        }),
        _ => None,
    })
}

/// A `nix` socket address as a std one (IPv4 or IPv6; `None` for any other family).
pub fn socket_addr(s: &SockaddrStorage) -> Option<SocketAddr> {
    if let Some(v4) = s.as_sockaddr_in() {
        return Some(SocketAddrV4::from(*v4).into());
    }
    s.as_sockaddr_in6().map(|v6| SocketAddrV6::from(*v6).into())
}

/// One datagram of a [`RecvBatch`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Datagram {
    /// Its buffer slot ([`RecvBatch::payload`]).
    slot: usize,
    /// Its length (as received: at most the buffer size).
    pub len: usize,
    /// Who sent it.
    pub from: SocketAddr,
    /// Where it arrived, when the socket reports it ([`enable_packet_info`]).
    pub info: Option<PacketInfo>,
    /// Longer than the buffer: the kernel cut it short (judge it by nothing but that).
    pub truncated: bool,
}

/// Buffers and headers for receiving up to `N` datagrams with one `recvmmsg`.
pub struct RecvBatch<const N: usize> {
    bufs: Vec<u8>,
    size: usize,
    headers: MultiHeaders<SockaddrStorage>,
    got: Vec<Datagram>,
}

impl<const N: usize> std::fmt::Debug for RecvBatch<N> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecvBatch")
            .field("size", &self.size)
            .field("got", &self.got.len())
            .finish_non_exhaustive()
    }
}

/// Whether a receive may wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wait {
    /// Block until at least one datagram is there (or the socket's read timeout, or a
    /// shutdown wake-up).
    ForOne,
    /// Take what is queued now, if anything.
    No,
}

impl<const N: usize> RecvBatch<N> {
    /// Room for `N` datagrams of up to `size` bytes each, with room for `IP_PKTINFO`.
    pub fn new(size: usize) -> Self {
        Self {
            bufs: vec![0; N * size],
            size,
            // Room for either family's packet info (in6_pktinfo is the larger).
            headers: MultiHeaders::preallocate(N, Some(nix::cmsg_space!(nix::libc::in6_pktinfo))),
            got: Vec::with_capacity(N),
        }
    }

    /// Receives a batch from `sock`, replacing the last one. Returns how many datagrams came
    /// (an empty datagram, which a socket woken for shutdown reports, is not one).
    /// Would-block and interrupted calls are an empty batch, not an error.
    pub fn recv(&mut self, sock: &impl AsRawFd, wait: Wait) -> std::io::Result<usize> {
        self.got.clear();
        let flags = match wait {
            Wait::ForOne => MsgFlags::MSG_WAITFORONE,
            Wait::No => MsgFlags::MSG_DONTWAIT,
        };
        // nix ties the slices' lifetime to the call: built per call, on the stack.
        let mut chunks = self.bufs.chunks_exact_mut(self.size);
        let mut iovs: [[IoSliceMut<'_>; 1]; N] =
            std::array::from_fn(|_| [IoSliceMut::new(chunks.next().unwrap_or(&mut []))]);
        let msgs = match recvmmsg(
            sock.as_raw_fd(),
            &mut self.headers,
            iovs.iter_mut(),
            flags,
            None,
        ) {
            Ok(m) => m,
            Err(Errno::EAGAIN | Errno::EINTR) => return Ok(0),
            Err(e) => return Err(e.into()),
        };
        for (slot, m) in msgs.enumerate() {
            // An empty datagram is what a socket woken for shutdown reports (with a stale
            // sender): no protocol pserv speaks has an empty message, so none is one.
            if m.bytes == 0 {
                continue;
            }
            let Some(from) = m.address.as_ref().and_then(socket_addr) else {
                continue;
            };
            let info = m.cmsgs().ok().and_then(packet_info);
            self.got.push(Datagram {
                slot,
                len: m.bytes,
                from,
                info,
                truncated: m.flags.contains(MsgFlags::MSG_TRUNC),
            });
        }
        Ok(self.got.len())
    }

    /// The datagrams of the last receive.
    pub fn datagrams(&self) -> &[Datagram] {
        &self.got
    }

    /// A datagram's bytes.
    pub fn payload(&self, d: &Datagram) -> &[u8] {
        let at = d.slot * self.size;
        &self.bufs[at..at + d.len.min(self.size)]
    }
}

/// Headers for sending up to `N` datagrams with one `sendmmsg`.
pub struct SendBatch<const N: usize> {
    headers: MultiHeaders<SockaddrStorage>,
    /// The destinations of one call, reused: only as many are written as there are datagrams
    /// (a batch of one does not fill `N` addresses of 128 bytes each).
    addrs: Vec<Option<SockaddrStorage>>,
}

impl<const N: usize> std::fmt::Debug for SendBatch<N> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SendBatch").finish_non_exhaustive()
    }
}

impl<const N: usize> Default for SendBatch<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> SendBatch<N> {
    /// Headers for `N` datagrams per system call.
    pub fn new() -> Self {
        Self {
            headers: MultiHeaders::preallocate(N, None),
            addrs: Vec::with_capacity(N),
        }
    }

    /// Sends one datagram per item (`datagram` gives its bytes and destination), in as few
    /// calls as the batch size allows, and reports each item's fate to `sent`. A datagram
    /// that fails (its destination unreachable, say) is reported and skipped; the rest are
    /// still sent.
    pub fn send<T>(
        &mut self,
        sock: &impl AsRawFd,
        items: &[T],
        datagram: impl Fn(&T) -> (&[u8], SocketAddr),
        mut sent: impl FnMut(&T, Result<(), Errno>),
    ) {
        let mut at = 0;
        while at < items.len() {
            let end = (at + N).min(items.len());
            let chunk = &items[at..end];
            let iovs: [[IoSlice<'_>; 1]; N] = std::array::from_fn(|i| {
                [IoSlice::new(
                    chunk.get(i).map_or(&[][..], |t| datagram(t).0),
                )]
            });
            self.addrs.clear();
            self.addrs.extend(
                chunk
                    .iter()
                    .map(|t| Some(SockaddrStorage::from(datagram(t).1))),
            );
            match sendmmsg(
                sock.as_raw_fd(),
                &mut self.headers,
                &iovs[..chunk.len()],
                &self.addrs,
                [],
                MsgFlags::empty(),
            ) {
                Ok(r) => {
                    // A short count: the next one failed; the next call reports why.
                    let n = r.count().clamp(1, chunk.len());
                    for t in &chunk[..n] {
                        sent(t, Ok(()));
                    }
                    at += n;
                }
                Err(Errno::EINTR) => {}
                Err(e) => {
                    sent(&chunk[0], Err(e));
                    at += 1;
                }
            }
        }
    }
}

/// Sends one IPv4 datagram out of interface `ifindex` (`IP_PKTINFO`): a broadcast leaves by
/// the interface its request came in on.
pub fn send_from_interface(
    sock: &impl AsRawFd,
    bytes: &[u8],
    to: SocketAddrV4,
    ifindex: u32,
) -> Result<(), Errno> {
    let info = nix::libc::in_pktinfo {
        ipi_ifindex: i32::try_from(ifindex).unwrap_or(0),
        ipi_spec_dst: nix::libc::in_addr { s_addr: 0 },
        ipi_addr: nix::libc::in_addr { s_addr: 0 },
    };
    sendmsg(
        sock.as_raw_fd(),
        &[IoSlice::new(bytes)],
        &[ControlMessage::Ipv4PacketInfo(&info)],
        MsgFlags::empty(),
        Some(&SockaddrIn::from(to)),
    )
    .map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair() -> (UdpSocket, UdpSocket) {
        let opts = Options {
            packet_info: true,
            buffers: Some(1 << 20),
            ..Options::default()
        };
        let server = bind("127.0.0.1:0".parse().expect("addr"), &opts).expect("bind");
        let client = UdpSocket::bind("127.0.0.1:0").expect("bind");
        (server, client)
    }

    #[test]
    fn batch_receives_with_packet_info_and_flags_truncation() {
        let (server, client) = pair();
        let to = server.local_addr().expect("addr");
        client.send_to(b"one", to).expect("send");
        client.send_to(&[7u8; 100], to).expect("send");
        std::thread::sleep(std::time::Duration::from_millis(20));
        let mut batch = RecvBatch::<4>::new(64);
        assert_eq!(batch.recv(&server, Wait::ForOne).expect("recv"), 2);
        let d = batch.datagrams().to_vec();
        assert_eq!(batch.payload(&d[0]), b"one");
        assert!(!d[0].truncated && d[1].truncated);
        assert_eq!(batch.payload(&d[1]).len(), 64);
        assert_eq!(d[0].from, client.local_addr().expect("addr"));
        let info = d[0].info.expect("IP_PKTINFO");
        assert_eq!(info.local, Ipv4Addr::LOCALHOST);
        assert!(info.ifindex > 0);
        // Nothing queued: an empty batch, not an error.
        assert_eq!(batch.recv(&server, Wait::No).expect("recv"), 0);
    }

    #[test]
    fn send_batch_reports_each_datagram() {
        let (server, client) = pair();
        let to = client.local_addr().expect("addr");
        let items: Vec<Vec<u8>> = (0..5u8).map(|i| vec![i; 10]).collect();
        let mut ok = 0;
        SendBatch::<2>::new().send(
            &server,
            &items,
            |b| (b.as_slice(), to),
            |_, r| {
                assert!(r.is_ok());
                ok += 1;
            },
        );
        assert_eq!(ok, 5);
        let mut buf = [0u8; 64];
        for i in 0..5u8 {
            let (n, _) = client.recv_from(&mut buf).expect("recv");
            assert_eq!(&buf[..n], &[i; 10]);
        }
    }
}
