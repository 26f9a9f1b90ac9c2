//! The DNS service's `/metrics`: its responder's counters and its forwarders', read at each
//! scrape ([`crate::server::start`] returns it as the service's collector).

use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use pserv_net::metrics::{
    Collector, DescriptorEncoder, MetricType, Result, family, histogram, load, single,
};

use crate::counters::{Counters, ForwardCounters};

/// The collector of one DNS service.
#[derive(Debug)]
pub(crate) struct Metrics {
    /// Responses, packets, drops, TCP connections, answer times.
    pub(crate) counters: Arc<Counters>,
    /// Forwarding: TCP's, then one set per UDP socket (summed at each scrape).
    pub(crate) forward: Vec<Arc<ForwardCounters>>,
}

impl Collector for Metrics {
    #[rustfmt::skip]
    fn encode(&self, mut e: DescriptorEncoder<'_>) -> Result {
        use MetricType::{Counter, Gauge};
        let (c, fwd, e) = (&*self.counters, &self.forward, &mut e);
        family(e, "pserv_dns_responses", "DNS responses by rcode", Counter, "rcode", &[
            ("noerror", load(&c.noerror)),
            ("nxdomain", load(&c.nxdomain)),
            ("refused", load(&c.refused)),
            ("formerr", load(&c.formerr)),
            ("notimp", load(&c.notimp)),
            ("badvers", load(&c.badvers)),
            ("servfail", load(&c.servfail)),
        ])?;
        family(e, "pserv_dns_packets", "DNS packets by direction", Counter, "direction", &[
            ("in", load(&c.udp_in)),
            ("out", load(&c.udp_out)),
        ])?;
        family(e, "pserv_dns_dropped", "DNS packets dropped by reason", Counter, "reason", &[
            ("unanswerable", load(&c.dropped)),
            ("send_error", load(&c.send_errors)),
            ("oversized", load(&c.oversized)),
        ])?;
        single(e, "pserv_dns_fast_path", "Queries answered by the UDP fast path", Counter, load(&c.fast))?;
        single(e, "pserv_dns_truncated", "UDP answers sent truncated", Counter, load(&c.truncated))?;
        family(e, "pserv_dns_tcp_connections", "DNS TCP connections: accepted, and closed by the server by reason", Counter, "outcome", &[
            ("accepted", load(&c.tcp_accepted)),
            ("over_limit", load(&c.tcp_over_limit)),
            ("evicted", load(&c.tcp_evicted)),
            ("timed_out", load(&c.tcp_timeouts)),
        ])?;
        single(e, "pserv_dns_tcp_accept_errors", "Failed TCP accepts (descriptors, memory)", Counter, load(&c.tcp_accept_errors))?;
        single(e, "pserv_dns_tcp_open", "DNS TCP connections open", Gauge, load(&c.tcp_open))?;
        let sum = |f: fn(&ForwardCounters) -> &AtomicU64| fwd.iter().map(|c| load(f(c))).sum::<u64>();
        family(e, "pserv_dns_forwarded", "Queries forwarded to upstreams, by outcome", Counter, "outcome", &[
            ("sent", sum(|c| &c.sent)),
            ("relayed", sum(|c| &c.relayed)),
            ("timeout", sum(|c| &c.timeouts)),
            ("retried", sum(|c| &c.retried)),
            ("failed", sum(|c| &c.failed)),
            ("unmatched", sum(|c| &c.unmatched)),
            ("dropped", sum(|c| &c.dropped)),
        ])?;
        histogram(e, "pserv_dns_answer_seconds", "Time from a DNS query's arrival to its answer leaving", &c.answer_seconds)
    }
}
