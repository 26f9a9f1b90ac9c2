//! One read transfer as a state machine over `(packet, now)`: option negotiation (RFC 2347:
//! blksize 2348, tsize and timeout 2349, windowsize 7440), a window of DATA blocks, ACKs that
//! move it on, retransmission of the window on timeout with exponential backoff, and failure
//! after too many. No socket and no clock: the caller feeds packets and `now`, asks
//! [`Transfer::poll_transmit`] for what to send and [`Transfer::poll_timeout`] when to call
//! [`Transfer::handle_timeout`].
//!
//! Duplicate ACKs never trigger a retransmission (the sorcerer's apprentice bug of RFC 1350,
//! fixed by RFC 1123 §4.2.3.1): only the timer does. An ACK inside the window that is not its
//! last block (a client that lost the rest, RFC 7440 §4) starts the next window after it.
//! Block numbers are counted on 64 bits here and sent modulo 2^16 (roll-over to 0), so files of
//! any size transfer.

use std::time::{Duration, Instant};

use super::packet::{self, Packet};

/// Bounds the server puts on what clients may negotiate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest block size granted (1468 fits an Ethernet frame with IPv4/UDP headers).
    pub max_blksize: u16,
    /// Largest window granted.
    pub max_windowsize: u16,
    /// Retransmission timeout when the client asks for none.
    pub default_timeout: Duration,
    /// The backoff never waits longer than this between retransmissions.
    pub max_timeout: Duration,
    /// Retransmissions of one window before the transfer fails.
    pub max_retries: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_blksize: 1468,
            max_windowsize: 64,
            default_timeout: Duration::from_secs(1),
            max_timeout: Duration::from_secs(8),
            max_retries: 5,
        }
    }
}

/// What the transfer runs with after negotiation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Negotiated {
    /// Bytes per DATA block.
    pub blksize: u16,
    /// Blocks sent before waiting for an ACK.
    pub windowsize: u16,
    /// Retransmission timeout before backoff.
    pub timeout: Duration,
    /// Whether the OACK carries the file size.
    pub tsize: bool,
}

/// How a transfer ended without completing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TransferError {
    /// The client sent an ERROR (PXE ROMs do this after reading `tsize` from the OACK, to
    /// learn a file's size before fetching it).
    #[error("the client aborted: {0}")]
    Aborted(String),
    /// No ACK came after the last retransmission.
    #[error("the client stopped acknowledging")]
    TimedOut,
    /// A packet a reading client never sends (DATA, a request on the transfer's port).
    #[error("unexpected packet from the client")]
    Unexpected,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// The OACK is out (or due); waiting for ACK 0.
    Negotiating,
    /// Sending windows of DATA.
    Sending,
    /// The last block is acknowledged.
    Done,
    /// Ended without completing.
    Failed,
}

/// One read transfer. See the module docs.
#[derive(Debug, Clone)]
pub struct Transfer {
    size: u64,
    blksize: u64,
    window: u64,
    timeout: Duration,
    tsize: bool,
    /// Which of blksize, windowsize and timeout the client asked for (and the OACK echoes).
    accepted: [bool; 3],
    limits: Limits,
    state: State,
    /// Whether the OACK is due to be (re)sent.
    oack_due: bool,
    /// The highest block acknowledged in order (0 before any).
    acked: u64,
    /// The next block [`Transfer::poll_transmit`] hands out, and the last of this window.
    next: u64,
    window_end: u64,
    /// The number of the final block (it is shorter than `blksize`, possibly empty).
    last_block: u64,
    deadline: Option<Instant>,
    retries: u32,
    /// What went wrong on the way, for the profile of a storm (see [`Transfer::trouble`]).
    trouble: Trouble,
}

/// Signs of loss or delay in one transfer: how often the server's timer resent (the window or
/// the OACK), and how many ACKs repeated one already received (a client that timed out and
/// re-acknowledged: its DATA was late or lost).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Trouble {
    /// Timer expiries that resent.
    pub timeouts: u32,
    /// ACKs for a block already acknowledged.
    pub duplicate_acks: u32,
}

fn parse_num(v: &str) -> Option<u64> {
    v.trim().parse().ok()
}

impl Transfer {
    /// A transfer of a file of `size` bytes for a read request with `options`, negotiated
    /// within `limits`. Options the server does not know, or with values out of range, are
    /// left out of the OACK (RFC 2347); with none accepted there is no OACK and DATA starts
    /// at once.
    pub fn new(options: &[(&str, &str)], size: u64, limits: Limits, now: Instant) -> Self {
        let mut blksize = 512u64;
        let mut window = 1u64;
        let mut timeout = limits.default_timeout;
        let mut tsize = false;
        let mut accepted = [false; 3];
        for (name, value) in options {
            let v = parse_num(value);
            if name.eq_ignore_ascii_case("blksize") {
                if let Some(b) = v.filter(|b| (8..=65464).contains(b)) {
                    blksize = b.min(u64::from(limits.max_blksize.max(8)));
                    accepted[0] = true;
                }
            } else if name.eq_ignore_ascii_case("windowsize") {
                if let Some(w) = v.filter(|w| (1..=65535).contains(w)) {
                    window = w.min(u64::from(limits.max_windowsize.max(1)));
                    accepted[1] = true;
                }
            } else if name.eq_ignore_ascii_case("timeout") {
                if let Some(t) = v.filter(|t| (1..=255).contains(t)) {
                    timeout = Duration::from_secs(t);
                    accepted[2] = true;
                }
            } else if name.eq_ignore_ascii_case("tsize") && v.is_some() {
                tsize = true;
            }
        }
        let any = tsize || accepted.contains(&true);
        let last_block = size / blksize + 1;
        let mut t = Self {
            size,
            blksize,
            window,
            timeout,
            tsize,
            accepted,
            limits,
            state: if any {
                State::Negotiating
            } else {
                State::Sending
            },
            oack_due: any,
            acked: 0,
            next: 1,
            window_end: 0,
            last_block,
            deadline: Some(now + timeout),
            retries: 0,
            trouble: Trouble::default(),
        };
        if !any {
            t.window_end = window.min(last_block);
        }
        t
    }

    /// What was negotiated.
    pub fn negotiated(&self) -> Negotiated {
        Negotiated {
            blksize: self.blksize as u16,
            windowsize: self.window as u16,
            timeout: self.timeout,
            tsize: self.tsize,
        }
    }

    /// Whether the last block has been acknowledged.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Whether the transfer is over (done or failed): the caller forgets it.
    pub fn is_over(&self) -> bool {
        matches!(self.state, State::Done | State::Failed)
    }

    /// Bytes the client has acknowledged.
    pub fn bytes_acked(&self) -> u64 {
        (self.acked * self.blksize).min(self.size)
    }

    /// Takes a packet from the client. `Ok(true)` when it moved the transfer on (new blocks
    /// may be due: call [`Transfer::poll_transmit`]), `Ok(false)` for a duplicate or stale ACK
    /// (ignored on purpose), `Err` when the transfer is over.
    pub fn handle(&mut self, packet: &Packet<'_>, now: Instant) -> Result<bool, TransferError> {
        if self.is_over() {
            return Ok(false);
        }
        match packet {
            Packet::Ack { block } => Ok(self.handle_ack(*block, now)),
            Packet::Error { message, .. } => {
                self.state = State::Failed;
                Err(TransferError::Aborted((*message).to_owned()))
            }
            _ => {
                self.state = State::Failed;
                Err(TransferError::Unexpected)
            }
        }
    }

    fn handle_ack(&mut self, block: u16, now: Instant) -> bool {
        if self.state == State::Negotiating {
            if block != 0 {
                return false;
            }
            self.state = State::Sending;
            self.oack_due = false;
            self.start_window(now);
            return true;
        }
        // The 64-bit block this ACK names: the one at or after `acked` with these low bits.
        let ahead = u64::from(block.wrapping_sub(self.acked as u16));
        let b = self.acked + ahead;
        if ahead == 0 || b > self.window_end {
            // A duplicate, or an ACK for nothing we sent (an old one from before a roll-over).
            if ahead == 0 {
                self.trouble.duplicate_acks += 1;
            }
            return false;
        }
        self.acked = b;
        self.retries = 0;
        if self.acked >= self.last_block {
            self.state = State::Done;
            self.deadline = None;
            return true;
        }
        self.start_window(now);
        true
    }

    /// The next window starts after the last acknowledged block.
    fn start_window(&mut self, now: Instant) {
        self.next = self.acked + 1;
        self.window_end = (self.acked + self.window).min(self.last_block);
        self.deadline = Some(now + self.backoff());
    }

    fn backoff(&self) -> Duration {
        let factor = 1u32 << self.retries.min(16);
        self.timeout
            .saturating_mul(factor)
            .min(self.limits.max_timeout.max(self.timeout))
    }

    /// Timer resends and duplicate ACKs so far.
    pub fn trouble(&self) -> Trouble {
        self.trouble
    }

    /// When [`Transfer::handle_timeout`] is due, if ever.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.is_over() { None } else { self.deadline }
    }

    /// The timer: at its deadline the window (or the OACK) is sent again, with a longer wait;
    /// after [`Limits::max_retries`] the transfer fails.
    pub fn handle_timeout(&mut self, now: Instant) -> Result<(), TransferError> {
        let Some(deadline) = self.poll_timeout() else {
            return Ok(());
        };
        if now < deadline {
            return Ok(());
        }
        if self.retries >= self.limits.max_retries {
            self.state = State::Failed;
            return Err(TransferError::TimedOut);
        }
        self.retries += 1;
        self.trouble.timeouts += 1;
        match self.state {
            State::Negotiating => self.oack_due = true,
            _ => self.next = self.acked + 1,
        }
        self.deadline = Some(now + self.backoff());
        Ok(())
    }

    /// Writes the next packet to send into `out` (cleared first) and returns true, or returns
    /// false when nothing is due. `read(offset, buf)` fills `buf` with the file's bytes at
    /// `offset` and returns how many it read (fewer only at the end of the file).
    pub fn poll_transmit(
        &mut self,
        read: &mut dyn FnMut(u64, &mut [u8]) -> std::io::Result<usize>,
        out: &mut Vec<u8>,
    ) -> std::io::Result<bool> {
        if self.is_over() {
            return Ok(false);
        }
        if self.oack_due {
            self.oack_due = false;
            let mut opts: Vec<(&str, u64)> = Vec::with_capacity(4);
            if self.accepted[0] {
                opts.push(("blksize", self.blksize));
            }
            if self.accepted[1] {
                opts.push(("windowsize", self.window));
            }
            if self.accepted[2] {
                opts.push(("timeout", self.timeout.as_secs()));
            }
            if self.tsize {
                opts.push(("tsize", self.size));
            }
            packet::oack(&opts, out);
            return Ok(true);
        }
        if self.state != State::Sending || self.next > self.window_end {
            return Ok(false);
        }
        let block = self.next;
        self.next += 1;
        let offset = (block - 1) * self.blksize;
        let len = self.size.saturating_sub(offset).min(self.blksize) as usize;
        packet::data_header(block as u16, out);
        let at = out.len();
        out.resize(at + len, 0);
        let mut done = 0;
        while done < len {
            let n = read(offset + done as u64, &mut out[at + done..])?;
            if n == 0 {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "the file is shorter than its size",
                ));
            }
            done += n;
        }
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::tftp::packet::parse;
    use proptest::prelude::*;

    fn file(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i * 7 + i / 251) as u8).collect()
    }

    /// Everything due now, as parsed (opcode, block or 0, payload).
    fn drain(t: &mut Transfer, f: &[u8]) -> Vec<(u16, u16, Vec<u8>)> {
        let mut out = Vec::new();
        let mut sent = Vec::new();
        let mut read = |off: u64, buf: &mut [u8]| {
            let off = off as usize;
            let n = buf.len().min(f.len() - off);
            buf[..n].copy_from_slice(&f[off..off + n]);
            Ok(n)
        };
        while t.poll_transmit(&mut read, &mut out).unwrap() {
            let op = u16::from_be_bytes([out[0], out[1]]);
            let block = if op == 3 {
                u16::from_be_bytes([out[2], out[3]])
            } else {
                0
            };
            let payload = if op == 3 {
                out[4..].to_vec()
            } else {
                out[2..].to_vec()
            };
            sent.push((op, block, payload));
        }
        sent
    }

    fn ack(t: &mut Transfer, block: u16, now: Instant) -> bool {
        t.handle(&Packet::Ack { block }, now).unwrap()
    }

    #[test]
    fn plain_rfc1350_lock_step_with_a_short_last_block() {
        let f = file(1100);
        let now = Instant::now();
        let mut t = Transfer::new(&[], f.len() as u64, Limits::default(), now);
        let mut got = Vec::new();
        for (b, want) in [(1u16, 512usize), (2, 512), (3, 76)] {
            let s = drain(&mut t, &f);
            assert_eq!(s.len(), 1, "one block at a time");
            assert_eq!((s[0].0, s[0].1, s[0].2.len()), (3, b, want));
            got.extend_from_slice(&s[0].2);
            assert!(ack(&mut t, b, now));
        }
        assert!(t.is_done());
        assert_eq!(got, f);
        assert_eq!(t.bytes_acked(), 1100);
    }

    #[test]
    fn trouble_counts_timer_resends_and_repeated_acks() {
        let f = file(1100);
        let now = Instant::now();
        let mut t = Transfer::new(&[], f.len() as u64, Limits::default(), now);
        drain(&mut t, &f);
        // The client's ACK was late: the timer resends block 1, then the ACK comes twice.
        t.handle_timeout(now + Duration::from_secs(1)).unwrap();
        assert_eq!(drain(&mut t, &f)[0].1, 1);
        assert!(ack(&mut t, 1, now));
        assert!(!ack(&mut t, 1, now));
        assert_eq!(
            t.trouble(),
            Trouble {
                timeouts: 1,
                duplicate_acks: 1
            }
        );
    }

    #[test]
    fn a_multiple_of_the_block_size_ends_with_an_empty_block() {
        let f = file(1024);
        let now = Instant::now();
        let mut t = Transfer::new(&[], 1024, Limits::default(), now);
        for b in 1..=2u16 {
            assert_eq!(drain(&mut t, &f)[0].2.len(), 512);
            ack(&mut t, b, now);
        }
        let last = drain(&mut t, &f);
        assert_eq!((last[0].1, last[0].2.len()), (3, 0));
        ack(&mut t, 3, now);
        assert!(t.is_done());
    }

    #[test]
    fn options_are_negotiated_within_limits_and_the_oack_waits_for_ack_zero() {
        let now = Instant::now();
        let opts = [
            ("BLKSIZE", "9000"),
            ("tsize", "0"),
            ("windowsize", "16"),
            ("timeout", "3"),
            ("multicast", ""),
        ];
        let mut t = Transfer::new(&opts, 5000, Limits::default(), now);
        let n = t.negotiated();
        assert_eq!(
            (n.blksize, n.windowsize, n.timeout, n.tsize),
            (1468, 16, Duration::from_secs(3), true)
        );
        let f = file(5000);
        let s = drain(&mut t, &f);
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].0, 6, "OACK");
        let body = String::from_utf8(s[0].2.clone()).unwrap();
        assert_eq!(
            body,
            "blksize\u{0}1468\u{0}windowsize\u{0}16\u{0}timeout\u{0}3\u{0}tsize\u{0}5000\u{0}"
        );
        assert!(drain(&mut t, &f).is_empty(), "no DATA before ACK 0");
        assert!(
            !ack(&mut t, 1, now),
            "an ACK of a block never sent is ignored"
        );
        assert!(ack(&mut t, 0, now));
        let w = drain(&mut t, &f);
        assert_eq!(
            w.iter().map(|p| p.1).collect::<Vec<_>>(),
            vec![1, 2, 3, 4],
            "the whole file fits one window"
        );
        assert_eq!(w.iter().map(|p| p.2.len()).sum::<usize>(), 5000);
        ack(&mut t, 4, now);
        assert!(t.is_done());
        // An option at its default value is still acknowledged.
        let mut t = Transfer::new(&[("blksize", "512")], 10, Limits::default(), now);
        assert_eq!(
            drain(&mut t, &file(10))[0].2,
            b"blksize\x00512\x00".to_vec()
        );
        // Out-of-range values are left out; with nothing accepted there is no OACK.
        let t = Transfer::new(
            &[("blksize", "4"), ("windowsize", "0"), ("timeout", "300")],
            10,
            Limits::default(),
            now,
        );
        assert_eq!(t.negotiated().blksize, 512);
        let mut t = t;
        assert_eq!(drain(&mut t, &file(10))[0].0, 3, "DATA at once");
    }

    #[test]
    fn duplicate_acks_never_retransmit_and_a_partial_ack_restarts_the_window() {
        let now = Instant::now();
        let f = file(512 * 10);
        let mut t = Transfer::new(
            &[("windowsize", "4")],
            f.len() as u64,
            Limits::default(),
            now,
        );
        drain(&mut t, &f); // OACK
        ack(&mut t, 0, now);
        assert_eq!(drain(&mut t, &f).len(), 4);
        // The client got 1 and 2 only.
        assert!(ack(&mut t, 2, now));
        let w = drain(&mut t, &f);
        assert_eq!(w.iter().map(|p| p.1).collect::<Vec<_>>(), vec![3, 4, 5, 6]);
        // The same ACK again (the sorcerer's apprentice): nothing is sent.
        assert!(!ack(&mut t, 2, now));
        assert!(drain(&mut t, &f).is_empty());
        assert!(ack(&mut t, 6, now));
        assert_eq!(
            drain(&mut t, &f).iter().map(|p| p.1).collect::<Vec<_>>(),
            vec![7, 8, 9, 10]
        );
        // Block 11 is the empty last one (10 * 512 bytes exactly).
        ack(&mut t, 10, now);
        let last = drain(&mut t, &f);
        assert_eq!((last.len(), last[0].1, last[0].2.len()), (1, 11, 0));
        ack(&mut t, 11, now);
        assert!(t.is_done());
    }

    #[test]
    fn timeouts_resend_the_window_with_backoff_then_fail() {
        let t0 = Instant::now();
        let f = file(2000);
        let limits = Limits {
            max_retries: 3,
            ..Limits::default()
        };
        let mut t = Transfer::new(&[], 2000, limits, t0);
        assert_eq!(drain(&mut t, &f).len(), 1);
        let mut now = t0;
        let mut waits = Vec::new();
        loop {
            let due = t.poll_timeout().unwrap();
            waits.push(due - now);
            now = due;
            match t.handle_timeout(now) {
                Ok(()) => {
                    let again = drain(&mut t, &f);
                    assert_eq!((again.len(), again[0].1), (1, 1), "block 1 again");
                }
                Err(e) => {
                    assert_eq!(e, TransferError::TimedOut);
                    break;
                }
            }
        }
        let s = Duration::from_secs;
        assert_eq!(waits, vec![s(1), s(2), s(4), s(8)]);
        assert!(t.is_over());
        assert_eq!(t.poll_timeout(), None);
        // Before the deadline the timer does nothing.
        let mut t = Transfer::new(&[], 10, Limits::default(), t0);
        drain(&mut t, &file(10));
        t.handle_timeout(t0 + Duration::from_millis(999)).unwrap();
        assert!(drain(&mut t, &file(10)).is_empty());
    }

    #[test]
    fn a_client_error_ends_the_transfer() {
        let now = Instant::now();
        let mut t = Transfer::new(&[("tsize", "0")], 10, Limits::default(), now);
        let e = t
            .handle(&parse(b"\0\x05\0\x08size only\0").unwrap(), now)
            .unwrap_err();
        assert_eq!(e, TransferError::Aborted("size only".into()));
        assert!(t.is_over());
    }

    #[test]
    fn block_numbers_roll_over_past_65535() {
        let now = Instant::now();
        let size = 512 * 70_000 + 3;
        let mut t = Transfer::new(&[], size, Limits::default(), now);
        let mut out = Vec::new();
        let mut read = |_: u64, buf: &mut [u8]| Ok(buf.len());
        for b in 1..=70_001u64 {
            assert!(t.poll_transmit(&mut read, &mut out).unwrap());
            assert_eq!(u16::from_be_bytes([out[2], out[3]]), b as u16);
            assert!(ack(&mut t, b as u16, now), "block {b}");
        }
        assert!(t.is_done());
    }

    proptest! {
        /// Whatever the client does with ACKs (duplicates, stale, out of order, partial
        /// windows), the bytes handed out for each block are the file's, the server never has
        /// more than a window outstanding, and ACKing every block in order completes it.
        #[test]
        fn any_ack_sequence_keeps_the_invariants(
            size in 0usize..20_000,
            blk in prop_oneof![Just("512"), Just("1468"), Just("8")],
            win in 1u16..20,
            acks in proptest::collection::vec(any::<u16>(), 0..60),
        ) {
            let f = file(size);
            let now = Instant::now();
            let w = win.to_string();
            let mut t = Transfer::new(&[("blksize", blk), ("windowsize", &w)], size as u64, Limits::default(), now);
            let bs = usize::from(t.negotiated().blksize);
            drain(&mut t, &f);
            ack(&mut t, 0, now);
            for a in acks {
                for (op, block, data) in drain(&mut t, &f) {
                    prop_assert_eq!(op, 3);
                    let b = block as usize; // small files: no roll-over
                    let off = (b - 1) * bs;
                    prop_assert_eq!(&data[..], &f[off..(off + bs).min(size)]);
                }
                prop_assert!(t.window_end - t.acked <= u64::from(win));
                let _ = t.handle(&Packet::Ack { block: a }, now);
            }
            // Now a well-behaved client: ACK what arrives, in order.
            let mut rounds = 0;
            while !t.is_done() {
                rounds += 1;
                prop_assert!(rounds < 10_000);
                let sent = drain(&mut t, &f);
                if sent.is_empty() {
                    // Nothing due: the timer resends from the last ACK.
                    let due = t.poll_timeout().unwrap();
                    t.handle_timeout(due).unwrap();
                    continue;
                }
                ack(&mut t, sent.last().unwrap().1, now);
            }
        }
    }
}
