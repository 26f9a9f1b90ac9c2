//! The one place pserv uses `unsafe`: an ARP entry for a client that has no address yet.
//!
//! RFC 2131 §4.1 asks the server to unicast an OFFER/ACK to a client without an address (when
//! it did not ask for broadcast) at its hardware address and `yiaddr`. The kernel can only send
//! there once its ARP table maps `yiaddr` to `chaddr`; this module sets that entry with the
//! `SIOCSARP` ioctl, as dnsmasq and ISC dhcpd do. When it fails (no privilege, unknown
//! interface) the caller broadcasts instead, which the RFC allows.
#![allow(unsafe_code)]

use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;

/// Maps `ip` to `mac` on interface `ifindex` in the kernel's ARP table (a complete, non-
/// permanent entry). Returns whether it worked.
pub(crate) fn set_entry(sock: &impl AsRawFd, ifindex: u32, ip: Ipv4Addr, mac: [u8; 6]) -> bool {
    if ifindex == 0 {
        return false;
    }
    let mut name = [0 as libc::c_char; libc::IF_NAMESIZE];
    // SAFETY: `name` is IF_NAMESIZE bytes, as if_indextoname requires; it writes a
    // NUL-terminated name or returns null.
    let found = unsafe { libc::if_indextoname(ifindex, name.as_mut_ptr()) };
    if found.is_null() {
        return false;
    }
    // SAFETY: arpreq is plain old data; all-zero is a valid value for every field.
    let mut req: libc::arpreq = unsafe { std::mem::zeroed() };
    let pa = libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: 0,
        sin_addr: libc::in_addr {
            s_addr: u32::from(ip).to_be(),
        },
        sin_zero: [0; 8],
    };
    // SAFETY: sockaddr_in and sockaddr have the same size on Linux; arp_pa holds an AF_INET
    // address by the ioctl's contract.
    req.arp_pa = unsafe { std::mem::transmute::<libc::sockaddr_in, libc::sockaddr>(pa) };
    req.arp_ha.sa_family = libc::ARPHRD_ETHER;
    for (d, s) in req.arp_ha.sa_data.iter_mut().zip(mac) {
        *d = s as libc::c_char;
    }
    req.arp_flags = libc::ATF_COM;
    req.arp_dev = name;
    // SAFETY: a valid socket descriptor and a fully initialised arpreq that outlives the call.
    let rc = unsafe {
        libc::ioctl(
            sock.as_raw_fd(),
            libc::SIOCSARP,
            &req as *const libc::arpreq,
        )
    };
    rc == 0
}
