//! The control API: snapshot pushes, status, leases, events, metrics.
//!
//! Every route sits behind the token check when a token is configured (required off loopback).
//! A push is parsed, validated and compiled on a blocking thread, then swapped in; responders
//! never wait for it.

use std::convert::Infallible;
use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use futures_util::Stream;
use parking_lot::Mutex;
use pserv_core::lease::{LeaseState, Leases};
use pserv_core::{PublishError, Published, Store};
use pserv_dhcp::Server;
use pserv_dns::forward::ForwardCounters;
use pserv_dns::respond::Counters;
use serde_json::{Value, json};
use tokio::sync::broadcast;
use tokio_stream::StreamExt as _;
use tokio_stream::wrappers::BroadcastStream;

/// Outcome counts of snapshot pushes (API, SIGHUP, start-up).
#[derive(Debug, Default)]
pub(crate) struct PushStats {
    ok: AtomicU64,
    invalid: AtomicU64,
    stale: AtomicU64,
    malformed: AtomicU64,
    /// Sum and count of validate+compile+swap durations, in microseconds.
    swap_us_sum: AtomicU64,
    last_swap_us: AtomicU64,
}

/// One DNS service's counters: its responses, and its sockets' forwarding.
type DnsCounters = (Arc<Counters>, Vec<Arc<ForwardCounters>>);

/// Everything the control plane reads and changes.
pub(crate) struct App {
    /// The served table.
    pub store: Arc<Store>,
    /// The DHCP server, whose dynamic leases the API lists.
    pub dhcp: Arc<Mutex<Server>>,
    dhcp_counters: Mutex<Option<Arc<pserv_dhcp::io::Counters>>>,
    /// Weak: shutdown unwraps the journal's `Arc` to close it.
    journal: Mutex<std::sync::Weak<pserv_core::journal::Journal>>,
    connections: Arc<crate::http::ConnCounters>,
    token: Option<String>,
    started: Instant,
    pushes: PushStats,
    events: broadcast::Sender<Arc<str>>,
    dns: Mutex<Vec<DnsCounters>>,
    ready: AtomicBool,
}

impl App {
    /// The control plane over `store` and `leases`.
    pub(crate) fn new(
        store: Arc<Store>,
        dhcp: Arc<Mutex<Server>>,
        token: Option<String>,
    ) -> Arc<Self> {
        let (events, _) = broadcast::channel(4096);
        Arc::new(Self {
            store,
            dhcp,
            dhcp_counters: Mutex::new(None),
            journal: Mutex::new(std::sync::Weak::new()),
            connections: Arc::default(),
            token,
            started: Instant::now(),
            pushes: PushStats::default(),
            events,
            dns: Mutex::new(Vec::new()),
            ready: AtomicBool::new(false),
        })
    }

    /// Registers a DNS service's counters for `/metrics`.
    pub(crate) fn add_dns(&self, counters: Arc<Counters>, forwarding: Vec<Arc<ForwardCounters>>) {
        self.dns.lock().push((counters, forwarding));
    }

    /// Registers the DHCP service's counters for `/metrics`.
    pub(crate) fn set_dhcp_counters(&self, c: Arc<pserv_dhcp::io::Counters>) {
        *self.dhcp_counters.lock() = Some(c);
    }

    /// Registers the lease journal for `/metrics`.
    pub(crate) fn set_journal(&self, j: &Arc<pserv_core::journal::Journal>) {
        *self.journal.lock() = Arc::downgrade(j);
    }

    /// The control API server's connection counters (it fills them; `/metrics` reads them).
    pub(crate) fn control_connections(&self) -> Arc<crate::http::ConnCounters> {
        self.connections.clone()
    }

    /// Whether a snapshot has been published.
    pub(crate) fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }

    /// Validates, compiles and publishes a snapshot (blocking: call off the async threads).
    /// Counts the outcome and tells `/v1/events` listeners.
    pub(crate) fn publish(&self, bytes: &[u8]) -> Result<Published, PublishError> {
        let t0 = Instant::now();
        let result = self.store.publish_json(bytes);
        let p = &self.pushes;
        match &result {
            Ok(published) => {
                p.ok.fetch_add(1, Ordering::Relaxed);
                let us = t0.elapsed().as_micros() as u64;
                p.swap_us_sum.fetch_add(us, Ordering::Relaxed);
                p.last_swap_us.store(us, Ordering::Relaxed);
                self.ready.store(true, Ordering::Relaxed);
                self.emit(
                    "snapshot",
                    &json!({"event": "snapshot", "generation": published.generation,
                            "nodes": published.nodes}),
                );
            }
            Err(PublishError::Invalid(_)) => {
                p.invalid.fetch_add(1, Ordering::Relaxed);
            }
            Err(PublishError::Stale { .. }) => {
                p.stale.fetch_add(1, Ordering::Relaxed);
            }
            Err(_) => {
                p.malformed.fetch_add(1, Ordering::Relaxed);
            }
        }
        result
    }

    /// Sends an event to `/v1/events` listeners (none listening is fine).
    pub(crate) fn emit(&self, kind: &str, body: &Value) {
        let line: Arc<str> = format!("{kind}\n{body}").into();
        let _ = self.events.send(line);
    }

    /// The router, with the token check and the body limit.
    pub(crate) fn router(self: &Arc<Self>, max_body: usize) -> Router {
        Router::new()
            .route("/v1/snapshot", put(put_snapshot))
            .route("/v1/status", get(status))
            .route("/v1/leases", get(leases))
            .route("/v1/events", get(events))
            .route("/metrics", get(metrics))
            .layer(DefaultBodyLimit::max(max_body))
            .layer(middleware::from_fn(move |req: Request, next: Next| {
                refuse_declared_oversize(req, next, max_body)
            }))
            .layer(middleware::from_fn_with_state(self.clone(), auth))
            .with_state(self.clone())
    }
}

/// A body whose declared length is over the limit is refused before a byte of it is read
/// (the body limit alone would read up to the limit first).
async fn refuse_declared_oversize(req: Request, next: Next, max: usize) -> Response {
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max as u64) {
        return (
            StatusCode::PAYLOAD_TOO_LARGE,
            axum::Json(json!({"error": format!("the body is larger than {max} bytes")})),
        )
            .into_response();
    }
    next.run(req).await
}

/// Constant-time comparison, so the token cannot be guessed byte by byte from timings.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn auth(State(app): State<Arc<App>>, req: Request, next: Next) -> Response {
    if let Some(token) = &app.token {
        let given = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        if !given.is_some_and(|g| same(g.as_bytes(), token.as_bytes())) {
            let mut r = (
                StatusCode::UNAUTHORIZED,
                axum::Json(json!({"error": "missing or wrong bearer token"})),
            )
                .into_response();
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer"),
            );
            return r;
        }
    }
    next.run(req).await
}

async fn put_snapshot(State(app): State<Arc<App>>, body: Bytes) -> Response {
    let a = app.clone();
    let result = tokio::task::spawn_blocking(move || a.publish(&body)).await;
    let Ok(result) = result else {
        return (StatusCode::INTERNAL_SERVER_ERROR, "publish task failed").into_response();
    };
    match result {
        Ok(p) => (
            StatusCode::OK,
            axum::Json(json!({
                "generation": p.generation,
                "nodes": p.nodes,
                "interfaces": p.interfaces,
                "parse_ms": p.parse.as_secs_f64() * 1e3,
                "compile_ms": p.compile.as_secs_f64() * 1e3,
                "swap_us": p.swap.as_secs_f64() * 1e6,
            })),
        )
            .into_response(),
        Err(PublishError::Stale {
            generation,
            current,
        }) => (
            StatusCode::CONFLICT,
            axum::Json(json!({
                "error": format!("generation {generation} is not above the current generation {current}"),
                "generation": generation,
                "current": current,
            })),
        )
            .into_response(),
        Err(PublishError::Invalid(problems)) => (
            StatusCode::UNPROCESSABLE_ENTITY,
            axum::Json(json!({"problems": problems})),
        )
            .into_response(),
        Err(PublishError::Parse(e)) => (
            StatusCode::UNPROCESSABLE_ENTITY,
            axum::Json(json!({"problems": [{"message": e.to_string(), "path": e.path, "nodes": []}]})),
        )
            .into_response(),
        Err(e) => (StatusCode::UNPROCESSABLE_ENTITY, axum::Json(json!({"error": e.to_string()})))
            .into_response(),
    }
}

async fn status(State(app): State<Arc<App>>) -> Response {
    let t = app.store.load();
    let (bound, offered) = lease_counts(&app.dhcp.lock().leases);
    let body = json!({
        "ready": app.is_ready(),
        "generation": t.is_loaded().then(|| t.generation()),
        "nodes": t.node_count(),
        "interfaces": t.interface_count(),
        "subnets": t.subnets().len(),
        "leases": {"bound": bound, "offered": offered},
        "uptime_seconds": app.started.elapsed().as_secs(),
        "version": env!("CARGO_PKG_VERSION"),
    });
    // Not ready (no snapshot yet): 503, so a load balancer or readiness probe waits.
    let code = if app.is_ready() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, axum::Json(body)).into_response()
}

fn lease_counts(l: &Leases) -> (usize, usize) {
    let bound = l.iter().filter(|l| l.state == LeaseState::Bound).count();
    (bound, l.len() - bound)
}

async fn leases(State(app): State<Arc<App>>) -> Response {
    let table = app.store.load_full();
    let dynamic: Vec<Value> = app
        .dhcp
        .lock()
        .leases
        .iter()
        .map(|l| {
            json!({"mac": l.mac, "ip": l.ip, "state": l.state, "expires": l.expires,
                   "hostname": l.hostname, "reserved": false})
        })
        .collect();
    let reserved = table.interfaces().filter_map(|i| {
        let ip = i.ipv4()?;
        let node = i.node();
        Some(
            json!({"mac": i.mac(), "ip": ip, "state": "reserved", "hostname": node.fqdn(),
                    "node": node.id(), "reserved": true}),
        )
    });
    let all: Vec<Value> = dynamic.into_iter().chain(reserved).collect();
    axum::Json(Value::Array(all)).into_response()
}

async fn events(State(app): State<Arc<App>>) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let stream = BroadcastStream::new(app.events.subscribe()).filter_map(|line| {
        // A listener too slow to keep up misses events (counted by the channel), never
        // blocks the server.
        let line = line.ok()?;
        let (kind, data) = line.split_once('\n')?;
        Some(Ok(Event::default().event(kind).data(data)))
    });
    Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}

async fn metrics(State(app): State<Arc<App>>, _h: HeaderMap) -> Response {
    let mut m = String::with_capacity(4096);
    let t = app.store.load();
    let mut gauge = |name: &str, help: &str, value: String| {
        let _ = writeln!(
            m,
            "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}"
        );
    };
    gauge(
        "pserv_ready",
        "1 once a snapshot is served",
        u8::from(app.is_ready()).to_string(),
    );
    gauge(
        "pserv_snapshot_generation",
        "Generation of the served snapshot",
        t.generation().to_string(),
    );
    gauge(
        "pserv_nodes",
        "Nodes in the served snapshot",
        t.node_count().to_string(),
    );
    gauge(
        "pserv_uptime_seconds",
        "Seconds since start",
        app.started.elapsed().as_secs().to_string(),
    );
    let (bound, offered, declined) = {
        let d = app.dhcp.lock();
        let (b, o) = lease_counts(&d.leases);
        (b, o, d.leases.declined().count())
    };
    let _ = writeln!(
        m,
        "# HELP pserv_leases Dynamic leases by state\n# TYPE pserv_leases gauge"
    );
    let _ = writeln!(m, "pserv_leases{{state=\"bound\"}} {bound}");
    let _ = writeln!(m, "pserv_leases{{state=\"offered\"}} {offered}");
    let _ = writeln!(m, "pserv_leases{{state=\"declined\"}} {declined}");

    let p = &app.pushes;
    let _ = writeln!(
        m,
        "# HELP pserv_snapshot_pushes_total Snapshot publishes by result\n# TYPE pserv_snapshot_pushes_total counter"
    );
    for (result, c) in [
        ("ok", &p.ok),
        ("invalid", &p.invalid),
        ("stale", &p.stale),
        ("malformed", &p.malformed),
    ] {
        let _ = writeln!(
            m,
            "pserv_snapshot_pushes_total{{result=\"{result}\"}} {}",
            c.load(Ordering::Relaxed)
        );
    }
    let _ = writeln!(
        m,
        "# HELP pserv_snapshot_publish_seconds Parse+validate+compile+swap time of accepted snapshots\n# TYPE pserv_snapshot_publish_seconds summary"
    );
    let _ = writeln!(
        m,
        "pserv_snapshot_publish_seconds_sum {}",
        p.swap_us_sum.load(Ordering::Relaxed) as f64 / 1e6
    );
    let _ = writeln!(
        m,
        "pserv_snapshot_publish_seconds_count {}",
        p.ok.load(Ordering::Relaxed)
    );
    let _ = writeln!(
        m,
        "# HELP pserv_snapshot_last_publish_seconds The last accepted snapshot's publish time\n# TYPE pserv_snapshot_last_publish_seconds gauge"
    );
    let _ = writeln!(
        m,
        "pserv_snapshot_last_publish_seconds {}",
        p.last_swap_us.load(Ordering::Relaxed) as f64 / 1e6
    );

    let dns = app.dns.lock();
    let sum = |f: &dyn Fn(&Counters) -> &AtomicU64| -> u64 {
        dns.iter().map(|(c, _)| f(c).load(Ordering::Relaxed)).sum()
    };
    let _ = writeln!(
        m,
        "# HELP pserv_dns_responses_total DNS responses by rcode\n# TYPE pserv_dns_responses_total counter"
    );
    for (rcode, v) in [
        ("noerror", sum(&|c| &c.noerror)),
        ("nxdomain", sum(&|c| &c.nxdomain)),
        ("refused", sum(&|c| &c.refused)),
        ("formerr", sum(&|c| &c.formerr)),
        ("notimp", sum(&|c| &c.notimp)),
        ("badvers", sum(&|c| &c.badvers)),
    ] {
        let _ = writeln!(m, "pserv_dns_responses_total{{rcode=\"{rcode}\"}} {v}");
    }
    let _ = writeln!(
        m,
        "# HELP pserv_dns_packets_total DNS packets by direction\n# TYPE pserv_dns_packets_total counter"
    );
    let _ = writeln!(
        m,
        "pserv_dns_packets_total{{direction=\"in\"}} {}",
        sum(&|c| &c.udp_in)
    );
    let _ = writeln!(
        m,
        "pserv_dns_packets_total{{direction=\"out\"}} {}",
        sum(&|c| &c.udp_out)
    );
    let _ = writeln!(
        m,
        "# HELP pserv_dns_dropped_total DNS packets dropped by reason\n# TYPE pserv_dns_dropped_total counter"
    );
    let _ = writeln!(
        m,
        "pserv_dns_dropped_total{{reason=\"unanswerable\"}} {}",
        sum(&|c| &c.dropped)
    );
    let _ = writeln!(
        m,
        "pserv_dns_dropped_total{{reason=\"send_error\"}} {}",
        sum(&|c| &c.send_errors)
    );
    let _ = writeln!(
        m,
        "pserv_dns_dropped_total{{reason=\"oversized\"}} {}",
        sum(&|c| &c.oversized)
    );
    let _ = writeln!(
        m,
        "# HELP pserv_dns_fast_path_total Queries answered by the UDP fast path\n# TYPE pserv_dns_fast_path_total counter"
    );
    let _ = writeln!(m, "pserv_dns_fast_path_total {}", sum(&|c| &c.fast));
    let _ = writeln!(
        m,
        "# HELP pserv_dns_truncated_total UDP answers sent truncated\n# TYPE pserv_dns_truncated_total counter"
    );
    let _ = writeln!(m, "pserv_dns_truncated_total {}", sum(&|c| &c.truncated));
    let _ = writeln!(
        m,
        "# HELP pserv_dns_tcp_connections_total DNS TCP connections: accepted, and closed by the server by reason\n# TYPE pserv_dns_tcp_connections_total counter"
    );
    for (what, v) in [
        ("accepted", sum(&|c| &c.tcp_accepted)),
        ("over_limit", sum(&|c| &c.tcp_over_limit)),
        ("evicted", sum(&|c| &c.tcp_evicted)),
        ("timed_out", sum(&|c| &c.tcp_timeouts)),
    ] {
        let _ = writeln!(
            m,
            "pserv_dns_tcp_connections_total{{outcome=\"{what}\"}} {v}"
        );
    }
    let _ = writeln!(
        m,
        "# HELP pserv_dns_tcp_accept_errors_total Failed TCP accepts (descriptors, memory)\n# TYPE pserv_dns_tcp_accept_errors_total counter\npserv_dns_tcp_accept_errors_total {}",
        sum(&|c| &c.tcp_accept_errors)
    );
    let _ = writeln!(
        m,
        "# HELP pserv_dns_tcp_open DNS TCP connections open\n# TYPE pserv_dns_tcp_open gauge\npserv_dns_tcp_open {}",
        sum(&|c| &c.tcp_open)
    );
    let fwd = |f: &dyn Fn(&ForwardCounters) -> &AtomicU64| -> u64 {
        dns.iter()
            .flat_map(|(_, f)| f.iter())
            .map(|c| f(c).load(Ordering::Relaxed))
            .sum()
    };
    let _ = writeln!(
        m,
        "# HELP pserv_dns_forwarded_total Queries forwarded to upstreams, by outcome\n# TYPE pserv_dns_forwarded_total counter"
    );
    for (what, v) in [
        ("sent", fwd(&|c| &c.sent)),
        ("relayed", fwd(&|c| &c.relayed)),
        ("timeout", fwd(&|c| &c.timeouts)),
        ("unmatched", fwd(&|c| &c.unmatched)),
        ("dropped", fwd(&|c| &c.dropped)),
    ] {
        let _ = writeln!(m, "pserv_dns_forwarded_total{{outcome=\"{what}\"}} {v}");
    }
    drop(dns);
    if let Some(c) = app.dhcp_counters.lock().clone() {
        dhcp_metrics(&mut m, &c);
    }
    let _ = writeln!(
        m,
        "# HELP pserv_control_connections_dropped_total Control API connections closed at accept, by reason\n# TYPE pserv_control_connections_dropped_total counter"
    );
    for (reason, v) in [
        ("over_limit", &app.connections.over_limit),
        ("accept_error", &app.connections.accept_errors),
    ] {
        let _ = writeln!(
            m,
            "pserv_control_connections_dropped_total{{reason=\"{reason}\"}} {}",
            v.load(Ordering::Relaxed)
        );
    }
    let journal = app.journal.lock().upgrade();
    if let Some(j) = journal {
        journal_metrics(&mut m, &j.stats());
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], m).into_response()
}

fn journal_metrics(m: &mut String, s: &pserv_core::journal::JournalStats) {
    for (name, help, kind, v) in [
        (
            "pserv_journal_commits_total",
            "Group commits (fdatasync) of the lease journal",
            "counter",
            s.flushes,
        ),
        (
            "pserv_journal_records_total",
            "Lease changes made durable",
            "counter",
            s.records,
        ),
        (
            "pserv_journal_compactions_total",
            "Lease journal compactions",
            "counter",
            s.compactions,
        ),
        (
            "pserv_journal_compaction_failures_total",
            "Compactions that could not start (descriptors, disk); retried, not fatal",
            "counter",
            s.compaction_failures,
        ),
        (
            "pserv_journal_bytes",
            "Lease journal file size",
            "gauge",
            s.bytes,
        ),
    ] {
        let _ = writeln!(m, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}");
    }
}

fn dhcp_metrics(m: &mut String, c: &pserv_dhcp::io::Counters) {
    let r = |a: &AtomicU64| a.load(Ordering::Relaxed);
    let family = |m: &mut String, name: &str, help: &str| {
        let _ = writeln!(m, "# HELP {name} {help}\n# TYPE {name} counter");
    };
    family(m, "pserv_dhcp_packets_total", "DHCP packets by direction");
    let _ = writeln!(
        m,
        "pserv_dhcp_packets_total{{direction=\"in\"}} {}",
        r(&c.received)
    );
    let _ = writeln!(
        m,
        "pserv_dhcp_packets_total{{direction=\"out\"}} {}",
        r(&c.sent)
    );
    family(m, "pserv_dhcp_replies_total", "DHCP replies by type");
    for (kind, v) in [("offer", &c.offers), ("ack", &c.acks), ("nak", &c.naks)] {
        let _ = writeln!(m, "pserv_dhcp_replies_total{{type=\"{kind}\"}} {}", r(v));
    }
    family(
        m,
        "pserv_dhcp_hardware_unicast_total",
        "Replies unicast to a client without an address (ARP entry set)",
    );
    let _ = writeln!(
        m,
        "pserv_dhcp_hardware_unicast_total {}",
        r(&c.hardware_unicasts)
    );
    family(
        m,
        "pserv_dhcp_dropped_total",
        "DHCP packets dropped, by reason",
    );
    let mut drops: Vec<(String, u64)> = c
        .drops
        .lock()
        .iter()
        .map(|(k, v)| (format!("{k:?}"), *v))
        .collect();
    drops.push(("SendError".into(), r(&c.send_errors)));
    drops.push(("JournalError".into(), r(&c.journal_errors)));
    drops.sort();
    for (reason, v) in drops {
        let _ = writeln!(m, "pserv_dhcp_dropped_total{{reason=\"{reason}\"}} {v}");
    }
}
