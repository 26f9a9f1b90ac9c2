//! What the DNS service counts: responses by code, packets, drops, TCP connections, the time
//! each answer took ([`Counters`]), and forwarding ([`ForwardCounters`]). Plain atomics with no
//! I/O: the responder and the I/O loops ([`crate::udp`], [`crate::tcp`], [`crate::forward`])
//! all count here, and none of them imports another to do so.

use std::sync::atomic::{AtomicU64, Ordering};

use hickory_proto::op::ResponseCode;
use pserv_core::histogram::Histogram;

/// Counts of what the responder did.
#[derive(Debug, Default)]
pub struct Counters {
    /// NOERROR answers (including NODATA).
    pub noerror: AtomicU64,
    /// NXDOMAIN answers.
    pub nxdomain: AtomicU64,
    /// REFUSED answers (outside our zones, zone transfers, other classes).
    pub refused: AtomicU64,
    /// FORMERR answers.
    pub formerr: AtomicU64,
    /// NOTIMP answers (opcodes other than QUERY).
    pub notimp: AtomicU64,
    /// BADVERS answers (EDNS version above 0).
    pub badvers: AtomicU64,
    /// SERVFAIL answers (every upstream failed a forwarded query).
    pub servfail: AtomicU64,
    /// Answers that did not fit the client's UDP size and went out truncated (TC).
    pub truncated: AtomicU64,
    /// Queries answered by the fast path.
    pub fast: AtomicU64,
    /// Datagrams dropped: too short to answer, or a response (QR set) sent to us.
    pub dropped: AtomicU64,
    /// Datagrams dropped: longer than the receive buffer (`udp::MAX_QUERY`), so cut short.
    pub oversized: AtomicU64,
    /// Responses the socket refused (send buffer full, errors).
    pub send_errors: AtomicU64,
    /// UDP datagrams received.
    pub udp_in: AtomicU64,
    /// UDP responses sent.
    pub udp_out: AtomicU64,
    /// TCP connections accepted and served.
    pub tcp_accepted: AtomicU64,
    /// New TCP connections closed at once: [`crate::tcp::Limits::max_connections`] were open
    /// and none could be freed.
    pub tcp_over_limit: AtomicU64,
    /// TCP connections closed while waiting on their clients, to make room at the cap.
    pub tcp_evicted: AtomicU64,
    /// Failed accepts (out of descriptors or memory); each pauses accepting briefly.
    pub tcp_accept_errors: AtomicU64,
    /// TCP connections open now.
    pub tcp_open: AtomicU64,
    /// TCP connections closed for idling, a stalled query or a client that does not read.
    pub tcp_timeouts: AtomicU64,
    /// Time from a query's arrival to its answer leaving: UDP per batch (queries forwarded
    /// upstream not included), TCP per read (from the read that completed its queries to
    /// the write of their answers, forwarded ones included).
    pub answer_seconds: Histogram,
}

impl Counters {
    pub(crate) fn count(&self, rcode: ResponseCode) {
        let c = match rcode {
            ResponseCode::NoError => &self.noerror,
            ResponseCode::NXDomain => &self.nxdomain,
            ResponseCode::Refused => &self.refused,
            ResponseCode::FormErr => &self.formerr,
            ResponseCode::NotImp => &self.notimp,
            ResponseCode::BADVERS => &self.badvers,
            ResponseCode::ServFail => &self.servfail,
            _ => return,
        };
        c.fetch_add(1, Ordering::Relaxed);
    }
}

/// Counters of forwarding: one set per UDP socket's forwarder, one for TCP.
#[derive(Debug, Default)]
pub struct ForwardCounters {
    /// Queries sent upstream.
    pub sent: AtomicU64,
    /// Replies relayed to clients.
    pub relayed: AtomicU64,
    /// Queries that got no reply in time.
    pub timeouts: AtomicU64,
    /// Replies that matched nothing pending (late, or not from the upstream asked).
    pub unmatched: AtomicU64,
    /// Queries dropped because 32,768 were already in flight or no id was free.
    pub dropped: AtomicU64,
    /// Queries sent on to the next upstream after one failed to answer in time.
    pub retried: AtomicU64,
    /// Queries answered SERVFAIL: no upstream answered.
    pub failed: AtomicU64,
}
