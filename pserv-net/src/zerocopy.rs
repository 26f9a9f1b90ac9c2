//! Files sent from memory without a copy: the bulk path of HTTP boot (a rack pulling the same
//! kernels and initrds).
//!
//! A file is loaded once into a sealed memfd ([`load`]): its content can no longer change,
//! grow or shrink, so a read-only mapping of it is plain immutable memory, handed out as
//! [`Bytes`] that hyper writes like any other body. Every mapping is listed in a process-wide
//! registry while it lives. [`ZeroCopy`], the stream a connection is served on, looks each
//! write's buffers up there: bytes that lie inside a mapping are sent with `sendfile(2)` from
//! the memfd (the kernel hands its pages to the socket), everything else is written as usual.
//! The registry entry goes before the mapping is unmapped, and a buffer being written keeps its
//! mapping alive, so an address is never taken for another file's.
//!
//! Measured (issue 28): 1,000 clients pulling a 12 MiB file at once over a veth pair, the server
//! on one core: the copy from user memory into the socket was 15% of the server's CPU, and
//! nginx with `sendfile on` took 0.6x the time of nginx with it off.
//!
//! This module is one of the two that use `unsafe` (the other is pserv-dhcp's ARP ioctl): the
//! mapping and unmapping of the sealed memfd, and the slice over it.
#![allow(unsafe_code)]

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, IoSlice, Read};
use std::num::NonZeroUsize;
use std::os::fd::{AsFd, OwnedFd};
use std::pin::Pin;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::task::{Context, Poll};

use axum::body::Bytes;
use nix::fcntl::{FcntlArg, SealFlag, fcntl};
use nix::sys::memfd::{MFdFlags, memfd_create};
use nix::sys::mman::{MapFlags, ProtFlags, mmap, munmap};
use tokio::io::{AsyncRead, AsyncWrite, Interest, ReadBuf};
use tokio::net::TcpStream;

/// Files smaller than this are not worth a memfd: their copy costs little, and a body that
/// goes out with its headers in one write is not held back by Nagle's algorithm behind them.
pub const MIN_SIZE: u64 = 256 << 10;

/// One live mapping: its length and the memfd behind it.
struct Region {
    len: usize,
    fd: Arc<OwnedFd>,
}

/// Every live mapping, by address.
static REGIONS: RwLock<BTreeMap<usize, Region>> = RwLock::new(BTreeMap::new());

/// Set once `sendfile` was refused (a seccomp filter, an odd kernel): writes are plain since.
static REFUSED: AtomicBool = AtomicBool::new(false);

/// The memfd and mapping behind a loaded file's [`Bytes`].
struct Sealed {
    addr: usize,
    len: usize,
    _fd: Arc<OwnedFd>,
}

impl AsRef<[u8]> for Sealed {
    fn as_ref(&self) -> &[u8] {
        // SAFETY: `addr..addr + len` is a live read-only mapping of a memfd sealed against
        // writes, growth and shrinking (see `load`): immutable memory for as long as `self`
        // lives, which is as long as this borrow.
        unsafe { std::slice::from_raw_parts(self.addr as *const u8, self.len) }
    }
}

impl Drop for Sealed {
    fn drop(&mut self) {
        // Out of the registry first: once unmapped, the address may be reused for anything.
        REGIONS
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&self.addr);
        if let Some(addr) = NonNull::new(self.addr as *mut std::ffi::c_void) {
            // SAFETY: the mapping `load` made, unmapped once; no slice of it outlives `self`
            // (every `Bytes` over it holds `self`).
            let _ = unsafe { munmap(addr, self.len) };
        }
    }
}

/// `size` bytes of `file`, in memory that [`ZeroCopy`] sends without copying. Blocking (run it
/// off the runtime). An error when the file is shorter than `size` (`UnexpectedEof`), smaller
/// than [`MIN_SIZE`] (`Unsupported`) or the memfd cannot be made; the caller reads the file the
/// ordinary way then.
pub fn load(file: &File, size: u64) -> io::Result<Bytes> {
    if size < MIN_SIZE {
        return Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "a small file stays on the heap",
        ));
    }
    let Some(len) = usize::try_from(size).ok().and_then(NonZeroUsize::new) else {
        return Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "too large to map",
        ));
    };
    let flags = MFdFlags::MFD_CLOEXEC | MFdFlags::MFD_ALLOW_SEALING;
    // Not executable, said at creation (Linux 6.3 warns otherwise, and refuses where
    // vm.memfd_noexec is 2); older kernels do not know the flag.
    let noexec = MFdFlags::from_bits_retain(nix::libc::MFD_NOEXEC_SEAL);
    let fd = match memfd_create(c"pserv-boot-file", flags | noexec) {
        Err(nix::errno::Errno::EINVAL) => memfd_create(c"pserv-boot-file", flags)?,
        r => r?,
    };
    let mut memfd = File::from(fd);
    let copied = io::copy(&mut file.take(size), &mut memfd)?;
    if copied != size {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!("{copied} bytes read of {size}"),
        ));
    }
    fcntl(
        &memfd,
        FcntlArg::F_ADD_SEALS(
            SealFlag::F_SEAL_WRITE
                | SealFlag::F_SEAL_GROW
                | SealFlag::F_SEAL_SHRINK
                | SealFlag::F_SEAL_SEAL,
        ),
    )?;
    let fd = Arc::new(OwnedFd::from(memfd));
    // SAFETY: a read-only mapping of a memfd sealed against writes, growth and shrinking:
    // its `len` bytes exist and never change for the mapping's life. Private, because kernels
    // before 6.7 refuse any shared mapping of a write-sealed memfd; read faults still map the
    // memfd's own pages, and sendfile reads the memfd, not the mapping.
    let addr = unsafe {
        mmap(
            None,
            len,
            ProtFlags::PROT_READ,
            MapFlags::MAP_PRIVATE,
            fd.as_fd(),
            0,
        )
    }?;
    let sealed = Sealed {
        addr: addr.as_ptr() as usize,
        len: len.get(),
        _fd: fd.clone(),
    };
    REGIONS
        .write()
        .unwrap_or_else(PoisonError::into_inner)
        .insert(
            sealed.addr,
            Region {
                len: sealed.len,
                fd,
            },
        );
    Ok(Bytes::from_owner(sealed))
}

/// The memfd and offset behind `buf`, if it lies wholly inside a loaded file.
fn behind(buf: &[u8]) -> Option<(Arc<OwnedFd>, usize)> {
    let (addr, len) = (buf.as_ptr() as usize, buf.len());
    let regions = REGIONS.read().unwrap_or_else(PoisonError::into_inner);
    let (start, r) = regions.range(..=addr).next_back()?;
    (addr - start + len <= r.len).then(|| (r.fd.clone(), addr - start))
}

/// A TCP stream whose writes send loaded files' bytes with `sendfile(2)` (see the module docs)
/// and everything else as a plain stream does.
#[derive(Debug)]
pub struct ZeroCopy(pub TcpStream);

impl ZeroCopy {
    /// The first non-empty buffer sent from its memfd, if it lies in one.
    fn send_mapped(&self, cx: &mut Context<'_>, buf: &[u8]) -> Option<Poll<io::Result<usize>>> {
        if REFUSED.load(Ordering::Relaxed) {
            return None;
        }
        let (fd, offset) = behind(buf)?;
        let mut offset = i64::try_from(offset).ok()?;
        loop {
            match self.0.poll_write_ready(cx) {
                Poll::Pending => return Some(Poll::Pending),
                Poll::Ready(Err(e)) => return Some(Poll::Ready(Err(e))),
                Poll::Ready(Ok(())) => {}
            }
            let sent = self.0.try_io(Interest::WRITABLE, || {
                nix::sys::sendfile::sendfile64(&self.0, fd.as_fd(), Some(&mut offset), buf.len())
                    .map_err(io::Error::from)
            });
            match sent {
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                    ) =>
                {
                    continue;
                }
                // sendfile refused here (a seccomp filter, an odd kernel): plain writes, now
                // and from now on.
                Err(e)
                    if matches!(
                        e.raw_os_error(),
                        Some(nix::libc::EINVAL | nix::libc::ENOSYS | nix::libc::EPERM)
                    ) =>
                {
                    if !REFUSED.swap(true, Ordering::Relaxed) {
                        tracing::warn!(error = %e, "sendfile refused: boot files are copied into sockets");
                    }
                    return None;
                }
                r => return Some(Poll::Ready(r)),
            }
        }
    }
}

impl AsyncRead for ZeroCopy {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for ZeroCopy {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if let Some(p) = self.send_mapped(cx, buf) {
            return p;
        }
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let bufs = {
            let skip = bufs.iter().take_while(|b| b.is_empty()).count();
            &bufs[skip..]
        };
        let Some(first) = bufs.first() else {
            return Poll::Ready(Ok(0));
        };
        if let Some(p) = self.send_mapped(cx, first) {
            return p;
        }
        // The first buffer (sendfile declined it, or it is plain) and the plain ones after it,
        // written together up to the next mapped one.
        let sendfile = !REFUSED.load(Ordering::Relaxed);
        let plain = 1 + bufs[1..]
            .iter()
            .take_while(|b| !sendfile || b.is_empty() || behind(b).is_none())
            .count();
        Pin::new(&mut self.0).poll_write_vectored(cx, &bufs[..plain])
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::io::Write;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    fn file_of(content: &[u8]) -> File {
        let mut f = tempfile::tempfile().unwrap();
        f.write_all(content).unwrap();
        f.sync_all().unwrap();
        let mut f2 = f.try_clone().unwrap();
        std::io::Seek::seek(&mut f2, std::io::SeekFrom::Start(0)).unwrap();
        f2
    }

    #[test]
    fn a_loaded_file_is_its_content_and_leaves_the_registry_when_dropped() {
        let content: Vec<u8> = (0..400_000u32).map(|i| (i * 7) as u8).collect();
        let bytes = load(&file_of(&content), content.len() as u64).unwrap();
        assert_eq!(&bytes[..], &content[..]);
        let tail = bytes.slice(399_000..);
        assert_eq!(behind(&tail).unwrap().1, 399_000);
        assert!(behind(&content).is_none());
        drop(bytes);
        // A slice keeps the mapping (and its entry) alive.
        assert!(behind(&tail).is_some());
        let start = tail.as_ptr() as usize - 399_000;
        drop(tail);
        let left = REGIONS
            .read()
            .unwrap()
            .get(&start)
            .is_some_and(|r| r.len == content.len());
        assert!(!left);
        // Shorter than said: refused; small: left to the heap.
        let e = load(&file_of(&content[..300_000]), 400_000).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof);
        let e = load(&file_of(b"abc"), 3).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::Unsupported);
    }

    /// Writes plain and mapped buffers mixed, as hyper does, through a loopback connection;
    /// what arrives is what was written.
    async fn round_trip(bytes: &Bytes, content: &[u8]) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let reader = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut got = Vec::new();
            // Read late, so the sender meets a full socket buffer.
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            s.read_to_end(&mut got).await.unwrap();
            got
        });
        let mut w = ZeroCopy(TcpStream::connect(addr).await.unwrap());
        let mid = bytes.slice(1000..2_000_000);
        let mut parts: Vec<&[u8]> = vec![&mid, b"HEAD", &mid, b"middle", &bytes[2_000_000..]];
        while !parts.is_empty() {
            let slices: Vec<IoSlice<'_>> = parts.iter().map(|p| IoSlice::new(p)).collect();
            let mut n = w.write_vectored(&slices).await.unwrap();
            assert!(n > 0);
            while n > 0 {
                if n >= parts[0].len() {
                    n -= parts[0].len();
                    parts.remove(0);
                } else {
                    parts[0] = &parts[0][n..];
                    n = 0;
                }
            }
        }
        w.shutdown().await.unwrap();
        drop(w);
        let got = reader.await.unwrap();
        let mut want = content[1000..2_000_000].to_vec();
        want.extend_from_slice(b"HEAD");
        want.extend_from_slice(&content[1000..2_000_000]);
        want.extend_from_slice(b"middle");
        want.extend_from_slice(&content[2_000_000..]);
        assert_eq!(got.len(), want.len());
        assert!(got == want);
    }

    #[tokio::test]
    async fn writes_mix_plain_and_mapped_buffers_and_arrive_whole_with_or_without_sendfile() {
        let content: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
        let bytes = load(&file_of(&content), content.len() as u64).unwrap();
        round_trip(&bytes, &content).await;
        // sendfile refused (as under a seccomp filter): the same bytes, written plainly.
        REFUSED.store(true, Ordering::Relaxed);
        round_trip(&bytes, &content).await;
        REFUSED.store(false, Ordering::Relaxed);
    }
}
