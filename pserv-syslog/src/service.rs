//! The service: one thread receiving in batches ([`pserv_net::udp::RecvBatch`], one
//! `recvmmsg` for up to [`BATCH`] datagrams), each datagram through the [`Receiver`], each
//! message resolved to its node and handed to the callback as a [`LogLine`]. Started from a
//! socket already bound, stopped by the shutdown token (which wakes the blocked receive at
//! once: [`pserv_net::wake_on_cancel`]); its metrics are its own collector.
//!
//! The thread holds no lock and writes nothing to disk: a message that is not taken by the
//! callback's listeners is gone.

use std::net::{IpAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

use pserv_core::MacAddr;
use pserv_net::Running;
use pserv_net::metrics::{Collector, DescriptorEncoder, MetricType, Result, family, load, single};
use pserv_net::udp::{RecvBatch, Wait, grow_buffers};
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::limit::Limits;
use crate::message::{Facility, MAX_MESSAGE, Message, Severity};
use crate::receiver::{Counters, DropReason, Receiver};

/// Datagrams per system call.
pub const BATCH: usize = 64;
/// The pause after a batch that was not full. A receive woken by the first datagram of a burst
/// takes one or two; pausing lets the rest queue, so at high rates each wake-up (of this thread,
/// and of the event stream it feeds) carries tens of messages. Logs are not in a hurry: this is
/// the most a message waits for it. The socket buffer holds a few seconds' worth meanwhile.
const COALESCE: Duration = Duration::from_millis(1);
/// Socket receive buffer asked for: a rack's worth of installers starting together queue
/// rather than drop while a batch is handed out.
const SOCKET_BUFFER: usize = 8 << 20;

/// Who sent from this address: the node id (when the address is a node's, or a lease of a
/// node's interface) and the MAC (a node's interface or a lease's holder). Called once per
/// delivered message, on the service's thread: keep it short.
pub type Resolve = Arc<dyn Fn(IpAddr) -> (Option<String>, Option<MacAddr>) + Send + Sync>;

/// Called with every message delivered, on the service's thread: keep it short.
pub type OnLog = Arc<dyn Fn(&LogLine) + Send + Sync>;

/// What the service needs besides its socket.
pub struct Setup {
    /// The per-source rate limit.
    pub limits: Limits,
    /// The sender's node and MAC.
    pub resolve: Resolve,
    /// Where each message goes.
    pub on_log: OnLog,
}

impl std::fmt::Debug for Setup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Setup")
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

/// One message, as `/v1/events` streams it (`"event": "log"`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "event", rename = "log")]
pub struct LogLine {
    /// The sender's node, when its address is a node's (reservation, or a lease of one of the
    /// node's interfaces).
    pub node: Option<String>,
    /// The sender's MAC, when its address is a node's or a lease's.
    pub mac: Option<MacAddr>,
    /// The sender's address.
    pub client: IpAddr,
    /// `None` when malformed.
    pub facility: Option<Facility>,
    /// `None` when malformed.
    pub severity: Option<Severity>,
    /// The name the sender gave itself, if any.
    pub hostname: Option<String>,
    /// The program, if the message names one.
    pub app: Option<String>,
    /// The text (all of the datagram's when malformed).
    pub message: String,
    /// No valid `<PRI>`: delivered raw.
    pub malformed: bool,
    /// Cut to 8 KiB.
    pub truncated: bool,
}

impl LogLine {
    /// The event for message `m` from `client`, resolved to `node` and `mac`.
    pub fn new(
        m: &Message<'_>,
        client: IpAddr,
        node: Option<String>,
        mac: Option<MacAddr>,
    ) -> Self {
        Self {
            node,
            mac,
            client,
            facility: m.facility,
            severity: m.severity,
            hostname: m.hostname.as_deref().map(str::to_owned),
            app: m.app.as_deref().map(str::to_owned),
            message: m.message.clone().into_owned(),
            malformed: m.malformed,
            truncated: m.truncated,
        }
    }
}

/// Starts receiving on `sock` until `shutdown` is cancelled. The join resolves once the thread
/// has finished its batch (it needs a tokio runtime to be awaited).
pub fn start(
    sock: UdpSocket,
    setup: Setup,
    shutdown: CancellationToken,
) -> std::io::Result<Running> {
    let local = sock.local_addr()?;
    grow_buffers(&sock, SOCKET_BUFFER);
    pserv_net::wake_on_cancel(&shutdown, &sock)?;
    let receiver = Receiver::new(setup.limits);
    let counters = receiver.counters().clone();
    let thread = std::thread::Builder::new()
        .name("pserv-syslog".into())
        .spawn(move || {
            run(&sock, receiver, &setup, &shutdown);
            Ok::<(), std::convert::Infallible>(())
        })?;
    Ok(Running {
        name: "syslog",
        addrs: vec![local],
        metrics: Box::new(Metrics { counters }),
        join: Running::join_thread(thread),
    })
}

fn run(sock: &UdpSocket, mut receiver: Receiver, setup: &Setup, shutdown: &CancellationToken) {
    // One byte over the limit: a longer datagram is seen as one (and cut by the parser).
    let mut batch = RecvBatch::<BATCH>::new(MAX_MESSAGE + 1);
    while !shutdown.is_cancelled() {
        let got = match batch.recv(sock, Wait::ForOne) {
            Ok(n) => n,
            Err(e) => {
                // Per-datagram errors are reported on the next call: log and carry on.
                tracing::debug!(error = %e, "syslog receive");
                continue;
            }
        };
        // One clock read per batch: the rate limit's time.
        let now = Instant::now();
        for d in batch.datagrams() {
            let client = d.from.ip().to_canonical();
            if let Ok(m) = receiver.handle(now, client, batch.payload(d)) {
                let (node, mac) = (setup.resolve)(client);
                (setup.on_log)(&LogLine::new(&m, client, node, mac));
            }
        }
        if got < BATCH && !shutdown.is_cancelled() {
            std::thread::sleep(COALESCE);
        }
    }
}

/// The service's `/metrics`.
#[derive(Debug)]
struct Metrics {
    counters: Arc<Counters>,
}

impl Collector for Metrics {
    #[rustfmt::skip]
    fn encode(&self, mut e: DescriptorEncoder<'_>) -> Result {
        use MetricType::{Counter, Gauge};
        let (c, e) = (&*self.counters, &mut e);
        let dropped: Vec<(&str, u64)> = DropReason::ALL
            .iter()
            .zip(&c.dropped)
            .map(|(r, n): (&DropReason, &AtomicU64)| (r.name(), load(n)))
            .collect();
        single(e, "pserv_syslog_received", "Syslog datagrams received", Counter, load(&c.received))?;
        single(e, "pserv_syslog_events", "Syslog messages delivered as log events", Counter, load(&c.events))?;
        single(e, "pserv_syslog_malformed", "Syslog messages delivered raw (no valid <PRI>)", Counter, load(&c.malformed))?;
        single(e, "pserv_syslog_truncated", "Syslog messages cut to 8 KiB", Counter, load(&c.truncated))?;
        family(e, "pserv_syslog_dropped", "Syslog datagrams dropped, by reason", Counter, "reason", &dropped)?;
        single(e, "pserv_syslog_sources", "Sources the per-source rate limit tracks", Gauge, load(&c.sources))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::time::Duration;

    use super::*;

    fn sorted_lines(lines: &Mutex<Vec<LogLine>>) -> Vec<LogLine> {
        let mut v = lines.lock().expect("lock").clone();
        v.sort_by(|a, b| a.message.cmp(&b.message));
        v
    }

    #[tokio::test]
    async fn datagrams_become_resolved_log_lines_and_metrics() {
        let sock = UdpSocket::bind("127.0.0.1:0").expect("bind");
        let to = sock.local_addr().expect("addr");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let mac: MacAddr = "52:54:00:12:34:56".parse().expect("mac");
        let setup = Setup {
            limits: Limits {
                burst: 4,
                rate: 0.001,
                ..crate::DEFAULT_LIMITS
            },
            resolve: Arc::new(move |ip| {
                if ip == IpAddr::from([127, 0, 0, 1]) {
                    (Some("4y3h7n".to_owned()), Some(mac))
                } else {
                    (None, None)
                }
            }),
            on_log: {
                let lines = lines.clone();
                Arc::new(move |l: &LogLine| lines.lock().expect("lock").push(l.clone()))
            },
        };
        let token = CancellationToken::new();
        let running = start(sock, setup, token.clone()).expect("start");
        assert_eq!(running.addrs, [to]);
        let client = UdpSocket::bind("127.0.0.1:0").expect("bind");
        for d in [
            &b"<13>Dec  3 14:00:01 anna[123]: a first\n"[..],
            b"b no pri",
            b"\n",
            b"<14>1 - h app - - - c third",
            b"<13>d fourth",
            b"<13>e over the burst",
        ] {
            client.send_to(d, to).expect("send");
        }
        let mut big = b"<13>f ".to_vec();
        big.resize(20_000, b'z');
        let other = UdpSocket::bind("127.0.0.2:0").expect("bind");
        other.send_to(&big, to).expect("send");
        for _ in 0..200 {
            if lines.lock().expect("lock").len() == 5 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let got = sorted_lines(&lines);
        assert_eq!(got.len(), 5, "{got:#?}");
        let first = serde_json::to_value(&got[0]).expect("json");
        assert_eq!(
            first,
            serde_json::json!({
                "event": "log", "node": "4y3h7n", "mac": "52:54:00:12:34:56",
                "client": "127.0.0.1", "facility": "user", "severity": "notice",
                "hostname": null, "app": "anna", "message": "a first",
                "malformed": false, "truncated": false,
            })
        );
        assert!(got[1].malformed && got[1].facility.is_none());
        assert_eq!(got[1].message, "b no pri");
        assert_eq!(
            (got[2].hostname.as_deref(), got[2].app.as_deref()),
            (Some("h"), Some("app"))
        );
        let big = &got[4];
        assert!(big.truncated && big.node.is_none() && big.mac.is_none());
        assert_eq!(big.client, IpAddr::from([127, 0, 0, 2]));
        assert_eq!(big.message.len(), MAX_MESSAGE - 4);

        let mut registry = prometheus_client::registry::Registry::default();
        registry.register_collector(running.metrics);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).expect("encode");
        for line in [
            "pserv_syslog_received_total 7",
            "pserv_syslog_events_total 5",
            "pserv_syslog_malformed_total 1",
            "pserv_syslog_truncated_total 1",
            "pserv_syslog_dropped_total{reason=\"empty\"} 1",
            "pserv_syslog_dropped_total{reason=\"rate_limited\"} 1",
            "pserv_syslog_dropped_total{reason=\"too_many_sources\"} 0",
            "pserv_syslog_sources 2",
        ] {
            assert!(text.contains(line), "{line} in\n{text}");
        }
        token.cancel();
        tokio::time::timeout(Duration::from_secs(5), running.join)
            .await
            .expect("stopped in time")
            .expect("stopped cleanly");
    }
}
