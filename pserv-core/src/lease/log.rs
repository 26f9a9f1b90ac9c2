//! Where the lease set's changes become durable: the ownership boundary between the set's
//! owner (the DHCP service) and what keeps its changes.
//!
//! The owner decides every change on its own [`super::Leases`], appends it to a [`LeaseLog`],
//! and acknowledges the client only once the log has *settled* the change: made it durable, or
//! refused it. Two logs exist:
//! - the local [`crate::journal::Journal`] (the embedded default): it never refuses, never has
//!   other writers, and answers every client;
//! - a cluster's shared store (etcd, in `pserv-cluster`): several instances write it, so a
//!   change can be refused (another instance took the address first), changes made elsewhere
//!   flow back to be applied ([`LeaseLog::take_remote`]), and each instance answers its share
//!   of the clients ([`Share`]).
//!
//! The owner drives a log from one thread, between its own decisions: what it applies from
//! [`LeaseLog::take_remote`] is exactly what the log assumes it has seen when it checks the
//! owner's next change against the others'.

use std::time::Duration;

use super::{Change, Leases};
use crate::journal::{Journal, JournalError, Seq};

/// What a log reports when it cannot take or keep changes: nothing more is acknowledged.
pub type LogError = JournalError;

/// Which clients this instance answers, and whether it may hand out new dynamic addresses.
///
/// A client's bucket is the RFC 3074 hash of its identifier (0-255); `buckets` has a bit per
/// bucket. Reserved nodes need no shared state: an instance that cannot reach its cluster
/// answers every one of them ([`Share::all_reserved`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Share {
    /// Bit `b` set: this instance answers the clients of bucket `b`.
    pub buckets: [u64; 4],
    /// Whether new dynamic leases (and renewals of dynamic leases) may be committed.
    pub allocate: bool,
    /// Whether to answer every reserved node whatever its bucket (set when cut off from the
    /// cluster: the survivors may not have taken this instance's share yet).
    pub all_reserved: bool,
    /// This instance's place among the live ones (index, count): each scans the dynamic
    /// ranges from its own part of them, so that two rarely pick one address at once.
    pub slot: (u32, u32),
    /// The log is behind (cluster mode: more changes waiting than it commits in a few
    /// rounds): new dynamic clients are turned away until it catches up, so that the clients
    /// already in an exchange are answered in time.
    pub busy: bool,
}

impl Share {
    /// Every client, allocation allowed: a lone server.
    pub const ALL: Self = Self {
        buckets: [u64::MAX; 4],
        allocate: true,
        all_reserved: true,
        slot: (0, 1),
        busy: false,
    };

    /// No client at all (not yet a member of the cluster).
    pub const NONE: Self = Self {
        buckets: [0; 4],
        allocate: false,
        all_reserved: false,
        slot: (0, 1),
        busy: false,
    };

    /// An instance cut off from its cluster: no bucket, no dynamic lease, every reserved
    /// node answered.
    pub const CUT_OFF: Self = Self {
        buckets: [0; 4],
        allocate: false,
        all_reserved: true,
        slot: (0, 1),
        busy: false,
    };

    /// Whether this instance answers bucket `b`.
    pub fn answers(&self, bucket: u8) -> bool {
        self.buckets[usize::from(bucket >> 6)] & (1 << (bucket & 63)) != 0
    }

    /// Sets whether it answers bucket `b`.
    pub fn set(&mut self, bucket: u8, on: bool) {
        let w = &mut self.buckets[usize::from(bucket >> 6)];
        if on {
            *w |= 1 << (bucket & 63);
        } else {
            *w &= !(1 << (bucket & 63));
        }
    }

    /// How many buckets it answers.
    pub fn count(&self) -> u32 {
        self.buckets.iter().map(|w| w.count_ones()).sum()
    }
}

impl Default for Share {
    fn default() -> Self {
        Self::ALL
    }
}

/// A log of lease changes. See the module docs.
pub trait LeaseLog: Send {
    /// Queues a change, decided on the owner's set; it is settled once [`LeaseLog::settled`]
    /// reaches the returned position.
    fn append(&mut self, change: &Change) -> Result<Seq, LogError>;

    /// Every change up to this position is settled: durable, unless refused.
    fn settled(&self) -> Seq;

    /// Waits up to `timeout` for `seq` to settle; returns whether it has.
    fn wait_settled_for(&mut self, seq: Seq, timeout: Duration) -> Result<bool, LogError>;

    /// Moves the positions refused since the last call into `out` (in order): their replies
    /// must not leave. A local journal refuses nothing.
    fn take_refused(&mut self, out: &mut Vec<Seq>) {
        let _ = out;
    }

    /// Moves the changes other writers made since the last call into `out`, for the owner to
    /// apply ([`Leases::apply`]) before it decides anything else.
    fn take_remote(&mut self, out: &mut Vec<Change>) {
        let _ = out;
    }

    /// Which clients to answer now.
    fn share(&self) -> Share {
        Share::ALL
    }

    /// Upkeep between appends, given the owner's set as it is after every change appended so
    /// far (the journal compacts here).
    fn upkeep(&mut self, leases: &Leases, now: u64) {
        let _ = (leases, now);
    }

    /// Settles what is queued and stops; reports a failure if there was one.
    fn close(self: Box<Self>) -> Result<(), LogError>;
}

impl LeaseLog for Journal {
    fn append(&mut self, change: &Change) -> Result<Seq, LogError> {
        Self::append(self, change)
    }

    fn settled(&self) -> Seq {
        self.durable()
    }

    fn wait_settled_for(&mut self, seq: Seq, timeout: Duration) -> Result<bool, LogError> {
        self.wait_durable_for(seq, timeout)
    }

    fn upkeep(&mut self, leases: &Leases, now: u64) {
        if self.wants_compaction(leases.len(), now) {
            self.compact(leases.durable_changes(now), now);
        }
    }

    fn close(self: Box<Self>) -> Result<(), LogError> {
        Self::close(*self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn share_bits() {
        let mut s = Share::NONE;
        for b in [0u8, 63, 64, 200, 255] {
            assert!(!s.answers(b));
            s.set(b, true);
            assert!(s.answers(b));
        }
        assert_eq!(s.count(), 5);
        s.set(64, false);
        assert!(!s.answers(64) && s.answers(63));
        assert_eq!(Share::ALL.count(), 256);
    }
}
