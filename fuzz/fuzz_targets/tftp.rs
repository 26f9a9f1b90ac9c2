//! TFTP: a read request, then any datagrams from the client, into one transfer of a file the
//! fuzzer sizes. Invariants: parsing and the transfer never panic; every DATA block carries
//! exactly the file's bytes for its number; the window never exceeds what was negotiated; a
//! transfer that says it is done has had every block acknowledged.
#![no_main]

use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use pserv_boot::tftp::packet::{self, Packet};
use pserv_boot::tftp::{Limits, Transfer};

fuzz_target!(|data: &[u8]| {
    let Some((&size_byte, rest)) = data.split_first() else {
        return;
    };
    let size = usize::from(size_byte) * 97;
    let file: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
    // Datagrams are separated by 0xfe bytes in the input; the first must be a read request.
    let mut parts = rest.split(|b| *b == 0xfe);
    let Some(first) = parts.next() else {
        return;
    };
    let Ok(Packet::Rrq { options, .. }) = packet::parse(first) else {
        return;
    };
    let t0 = Instant::now();
    let mut t = Transfer::new(&options, size as u64, Limits::default(), t0);
    let n = t.negotiated();
    let bs = usize::from(n.blksize);
    let mut out = Vec::new();
    let mut now = t0;
    let mut read = |off: u64, buf: &mut [u8]| {
        let off = off as usize;
        let k = buf.len().min(file.len().saturating_sub(off));
        buf[..k].copy_from_slice(&file[off..off + k]);
        Ok(k)
    };
    for part in parts {
        let mut sent = 0usize;
        while t
            .poll_transmit(&mut read, &mut out)
            .expect("in-memory reads succeed")
        {
            sent += 1;
            assert!(
                sent <= usize::from(n.windowsize) + 1,
                "more than a window at once"
            );
            if let Ok(Packet::Data { block, data }) = packet::parse(&out) {
                assert!(data.len() <= bs);
                // Small files only: no roll-over, so the block number is the position.
                let off = (usize::from(block) - 1) * bs;
                assert_eq!(data, &file[off..(off + bs).min(size)]);
            }
        }
        match packet::parse(part) {
            Ok(p) => {
                let _ = t.handle(&p, now);
            }
            Err(_) => {
                // A datagram that is not TFTP: the server drops it; time passes.
                now += Duration::from_millis(700);
                let _ = t.handle_timeout(now);
            }
        }
        if t.is_done() {
            assert_eq!(t.bytes_acked(), size as u64);
        }
    }
});
