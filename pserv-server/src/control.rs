//! The control API: snapshot pushes, status, leases, events, metrics.
//!
//! Every route sits behind the token check when a token is configured (required off loopback).
//! A push is parsed, validated and compiled on a blocking thread, then swapped in; responders
//! never wait for it. Leases are read from the published lease view: the API never locks
//! anything the DHCP service holds.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{DefaultBodyLimit, Query, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use pserv_core::histogram::Histogram;
use pserv_core::journal::JournalMonitor;

/// Where the status and metrics read the lease log's health: the local journal, or the
/// cluster instance.
#[derive(Debug, Clone)]
pub(crate) enum LeaseMonitor {
    /// The local journal.
    Journal(JournalMonitor),
    /// Cluster mode.
    Cluster(pserv_cluster::ClusterMonitor),
}
use pserv_core::lease::LeaseBoard;
use pserv_core::{PublishError, Published, Snapshot, Store};
use serde_json::{Value, json};

use crate::events::{Event, Events, Kinds, Since};

/// Connections the control API serves at once.
pub(crate) const MAX_CONNECTIONS: usize = 256;

/// Outcome counts of snapshot pushes (API, SIGHUP, start-up, code).
#[derive(Debug, Default)]
pub(crate) struct PushStats {
    pub(crate) ok: AtomicU64,
    pub(crate) invalid: AtomicU64,
    pub(crate) stale: AtomicU64,
    pub(crate) malformed: AtomicU64,
    /// Parse+validate+compile+swap time of accepted snapshots.
    pub(crate) publish_seconds: Histogram,
    pub(crate) last_publish_us: AtomicU64,
    /// When the served snapshot was published (Unix seconds; 0 before the first).
    pub(crate) published_at: AtomicU64,
}

/// Publishes snapshots: counts each outcome, times it, announces it.
#[derive(Debug)]
pub(crate) struct Publisher {
    pub(crate) store: Arc<Store>,
    pub(crate) pushes: PushStats,
    pub(crate) events: Events,
}

impl Publisher {
    /// Validates, compiles and publishes a snapshot from JSON (blocking: call off the async
    /// threads).
    pub(crate) fn publish_json(&self, bytes: &[u8]) -> Result<Published, PublishError> {
        self.count(Instant::now(), self.store.publish_json(bytes))
    }

    /// The same for a snapshot built in code.
    pub(crate) fn publish(&self, snap: &Snapshot) -> Result<Published, PublishError> {
        self.count(Instant::now(), self.store.publish(snap))
    }

    fn count(
        &self,
        t0: Instant,
        result: Result<Published, PublishError>,
    ) -> Result<Published, PublishError> {
        let p = &self.pushes;
        match &result {
            Ok(published) => {
                p.ok.fetch_add(1, Ordering::Relaxed);
                let took = t0.elapsed();
                p.publish_seconds.observe(took);
                p.last_publish_us
                    .store(took.as_micros() as u64, Ordering::Relaxed);
                p.published_at
                    .store(pserv_core::lease::owner::unix_now(), Ordering::Relaxed);
                self.events.emit(|| Event::from(published));
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
}

/// Everything the control plane reads and changes, given whole at construction.
#[derive(Debug)]
pub(crate) struct App {
    pub(crate) publisher: Arc<Publisher>,
    /// The published lease view (the DHCP service owns the leases).
    pub(crate) leases: Arc<LeaseBoard>,
    /// Each service's own metrics.
    pub(crate) service_metrics: Vec<Arc<dyn prometheus_client::collector::Collector>>,
    pub(crate) lease_log: LeaseMonitor,
    pub(crate) connections: Arc<pserv_net::http::ConnCounters>,
    pub(crate) token: Option<String>,
    pub(crate) started: Instant,
    /// Each service's name and addresses, the control API last (for the status).
    pub(crate) listening: Vec<(&'static str, Vec<std::net::SocketAddr>)>,
}

impl App {
    /// Whether a snapshot is served (the services start only after the first one, so this is
    /// readiness).
    pub(crate) fn is_ready(&self) -> bool {
        self.publisher.store.generation().is_some()
    }

    /// The router, with the token check and the body limit.
    pub(crate) fn router(self: &Arc<Self>, max_body: usize) -> Router {
        Router::new()
            .route("/v1/snapshot", put(put_snapshot))
            .route("/v1/status", get(status))
            .route("/v1/leases", get(leases))
            .route("/v1/nodes", get(nodes))
            .route("/v1/events", get(events))
            .route("/v1/subnets", get(crate::views::subnets))
            .route("/v1/counters", get(crate::views::counters))
            .route("/metrics", get(metrics))
            .layer(DefaultBodyLimit::max(max_body))
            .layer(middleware::from_fn(move |req: Request, next: Next| {
                refuse_declared_oversize(req, next, max_body)
            }))
            .layer(middleware::from_fn_with_state(self.clone(), auth))
            // The status page's files hold no data (it reads the API with the token): outside
            // the token check, so a browser can load the page that asks for the token.
            .merge(crate::page::router())
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
    let publisher = app.publisher.clone();
    let result = tokio::task::spawn_blocking(move || publisher.publish_json(&body)).await;
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
    let store = &app.publisher.store;
    let t = store.load();
    let counts = app.leases.counts();
    let journal_error = match &app.lease_log {
        LeaseMonitor::Journal(j) => j.failure().map(|e| e.to_string()),
        LeaseMonitor::Cluster(_) => None,
    };
    let cluster = match &app.lease_log {
        LeaseMonitor::Cluster(c) => serde_json::to_value(c.status()).unwrap_or_default(),
        LeaseMonitor::Journal(_) => serde_json::Value::Null,
    };
    let body = json!({
        "ready": app.is_ready(),
        "generation": store.generation(),
        "nodes": t.node_count(),
        "interfaces": t.interface_count(),
        "subnets": t.subnets().len(),
        "leases": {"bound": counts.bound, "offered": counts.offered},
        "leases6": {"bound": app.leases.counts6().bound, "offered": app.leases.counts6().offered},
        "journal_error": journal_error,
        "cluster": cluster,
        "uptime_seconds": app.started.elapsed().as_secs(),
        "published_at": Some(app.publisher.pushes.published_at.load(Ordering::Relaxed))
            .filter(|&t| t > 0),
        "services": app.listening.iter()
            .map(|(name, addrs)| json!({"name": name, "addrs": addrs}))
            .collect::<Vec<_>>(),
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

/// `GET /v1/leases`'s query: with any of it, one page of dynamic leases (see [`lease_page`]).
/// Other parameters are ignored, as they always were here (a cache-buster must not break a
/// script that reads the array).
#[derive(Debug, Default, serde::Deserialize)]
struct LeasesQuery {
    /// Case-insensitive text to find in a lease's MAC (either form), address or hostname.
    query: Option<String>,
    /// The page, from 0.
    page: Option<usize>,
    /// Leases per page (default 50, at most 500).
    per_page: Option<usize>,
}

/// Every lease, dynamic and reserved, as one array; or, with `query`, `page` or `per_page`,
/// one page of the dynamic leases (ordered by address) that match.
async fn leases(
    State(app): State<Arc<App>>,
    query: Result<Query<LeasesQuery>, QueryRejection>,
) -> Response {
    let q = match query {
        Ok(Query(q)) => q,
        Err(e) => return bad_query(&e),
    };
    if q.query.is_some() || q.page.is_some() || q.per_page.is_some() {
        return lease_page(&app, q);
    }
    let table = app.publisher.store.load_full();
    let dynamic = dynamic_leases(&app).into_iter().map(|(_, mut v, _)| {
        v["reserved"] = json!(false);
        v
    });
    let reserved = table.interfaces().flat_map(|i| {
        let node = i.node();
        let row = |ip: std::net::IpAddr| {
            json!({"mac": i.mac(), "ip": ip, "state": "reserved", "hostname": node.fqdn(),
                    "node": node.id(), "reserved": true})
        };
        [
            i.ipv4().map(|a| row(a.into())),
            i.ipv6().map(|a| row(a.into())),
        ]
        .into_iter()
        .flatten()
    });
    let all: Vec<Value> = dynamic.chain(reserved).collect();
    axum::Json(Value::Array(all)).into_response()
}

/// Every dynamic lease of both families as its JSON row (DHCPv6 ones with their DUID and IAID,
/// and their MAC where one is known), with its address and the text a search looks in.
fn dynamic_leases(app: &App) -> Vec<(std::net::IpAddr, Value, String)> {
    let v4 = app.leases.leases().into_iter().map(|l| {
        let mut v = json!({"mac": l.mac, "ip": l.ip, "state": l.state, "expires": l.expires,
               "hostname": l.hostname});
        if let Some(id) = &l.client_id {
            v["client_id"] = json!(id);
        }
        let text = format!("{} {} {}", l.mac, l.ip, l.hostname.as_deref().unwrap_or(""));
        (std::net::IpAddr::from(l.ip), v, text)
    });
    let v6 = app.leases.leases6().into_iter().map(|l| {
        let v = json!({"mac": l.mac, "ip": l.ip, "state": l.state, "expires": l.expires,
               "hostname": l.hostname, "duid": l.duid, "iaid": l.iaid});
        let mac = l.mac.map(|m| m.to_string()).unwrap_or_default();
        let text = format!(
            "{mac} {} {} {}",
            l.ip,
            l.hostname.as_deref().unwrap_or(""),
            l.duid
        );
        (std::net::IpAddr::from(l.ip), v, text)
    });
    v4.chain(v6).collect()
}

/// One page of the dynamic leases that match `q`, ordered by address, with how many match.
fn lease_page(app: &App, q: LeasesQuery) -> Response {
    let per_page = q.per_page.unwrap_or(50).clamp(1, MAX_PER_PAGE);
    let page = q.page.unwrap_or(0);
    let needle = q.query.unwrap_or_default().trim().to_ascii_lowercase();
    let needle_mac = needle.replace('-', ":");
    let mut leases = dynamic_leases(app);
    leases.retain(|(_, _, text)| {
        let text = text.to_ascii_lowercase();
        needle.is_empty() || text.contains(&needle) || text.contains(&needle_mac)
    });
    leases.sort_unstable_by_key(|(ip, _, _)| *ip);
    let total = leases.len();
    let shown: Vec<Value> = leases
        .into_iter()
        .skip(page.saturating_mul(per_page))
        .take(per_page)
        .map(|(_, mut v, _)| {
            // The page's rows name no identifiers (as before); DHCPv6 ones keep their DUID.
            if let Some(o) = v.as_object_mut() {
                o.remove("client_id");
            }
            v
        })
        .collect();
    axum::Json(json!({"total": total, "page": page, "per_page": per_page, "leases": shown}))
        .into_response()
}

/// A query string that does not parse: 400, saying what is wrong.
fn bad_query(e: &QueryRejection) -> Response {
    bad_request(e.body_text())
}

/// A request the API cannot take: 400, saying why.
fn bad_request(error: String) -> Response {
    (StatusCode::BAD_REQUEST, axum::Json(json!({"error": error}))).into_response()
}

/// `GET /v1/nodes`'s query.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct NodesQuery {
    /// Case-insensitive text to find in a node's id, FQDN, MAC (either form) or address.
    query: Option<String>,
    /// The page, from 0.
    page: Option<usize>,
    /// Nodes per page (default 50, at most 500).
    per_page: Option<usize>,
}

/// The most nodes one page holds.
const MAX_PER_PAGE: usize = 500;

/// The served table's nodes, searched and paged on the server (for the status page and for
/// scripts): each with its primary interface's MAC and address (or its live lease's), boot
/// mode and profile. A search reads every node once, without allocating per node unless the
/// query names a MAC or an address.
async fn nodes(
    State(app): State<Arc<App>>,
    query: Result<Query<NodesQuery>, QueryRejection>,
) -> Response {
    let q = match query {
        Ok(Query(q)) => q,
        Err(e) => return bad_query(&e),
    };
    let per_page = q.per_page.unwrap_or(50).clamp(1, MAX_PER_PAGE);
    let page = q.page.unwrap_or(0);
    let needle = q.query.unwrap_or_default().trim().to_ascii_lowercase();
    // A MAC written with hyphens is searched as written with colons.
    let needle_mac = needle.replace('-', ":");
    let table = app.publisher.store.load_full();
    let board = app.leases.clone();
    let body = tokio::task::spawn_blocking(move || {
        let t0 = Instant::now();
        let plan = table.boot_plan();
        let matches = |n: &pserv_core::table::NodeView<'_>| {
            if needle.is_empty()
                || n.id().to_ascii_lowercase().contains(&needle)
                || n.fqdn().contains(&needle)
            {
                return true;
            }
            let Some(i) = n.primary() else { return false };
            (needle_mac.contains(':') && i.mac().to_string().contains(&needle_mac))
                || (needle.contains('.')
                    && i.ipv4().is_some_and(|ip| ip.to_string().contains(&needle)))
        };
        let mut total = 0usize;
        let mut shown = Vec::with_capacity(per_page);
        let first = page.saturating_mul(per_page);
        for n in table.nodes().filter(|n| matches(n)) {
            if total >= first && shown.len() < per_page {
                let primary = n.primary();
                let mac = primary.map(|i| i.mac());
                let reserved = primary.and_then(|i| i.ipv4());
                let leased = mac.and_then(|m| board.address_of(m));
                let (mode, profile) = match n.boot_intent() {
                    pserv_core::table::Intent::Netboot(p) => ("netboot", plan.profile_name(p)),
                    pserv_core::table::Intent::Local => {
                        ("local", n.profile().and_then(|p| plan.profile_name(p)))
                    }
                    pserv_core::table::Intent::Ignore => ("ignore", None),
                    pserv_core::table::Intent::Legacy => ("none", None),
                };
                shown.push(json!({
                    "id": n.id(), "hostname": n.hostname(), "fqdn": n.fqdn(), "mac": mac,
                    "ipv4": reserved.or(leased), "reserved": reserved.is_some(),
                    "mode": mode, "profile": profile,
                }));
            }
            total += 1;
        }
        json!({ "total": total, "page": page, "per_page": per_page,
                "generation": table.generation(), "nodes": shown,
                "took_ms": t0.elapsed().as_secs_f64() * 1e3 })
    })
    .await;
    match body {
        Ok(v) => axum::Json(v).into_response(),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

/// `GET /v1/events`'s query.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct EventsQuery {
    /// Resume after this id; `0`: from the oldest event kept.
    since: Option<String>,
    /// Only these kinds, comma-separated.
    kind: Option<String>,
    /// After an event, wait this long (milliseconds, at most 1,000) and send it with every
    /// event that came meanwhile in one write: for a listener that renders (the status page)
    /// rather than reacts, fewer, larger reads. 0 (the default): no wait.
    batch_ms: Option<u64>,
}

/// The most bytes of events one write of the stream carries.
const STREAM_CHUNK: usize = 256 * 1024;

/// How often a quiet stream sends a comment, so proxies and clients see it alive.
const STREAM_KEEP_ALIVE: Duration = Duration::from_secs(15);

/// Appends `item` in the event-stream format: `id:`, `event:` and one `data:` line (JSON has
/// no raw line break).
fn write_sse(out: &mut String, item: &crate::events::Item) {
    use std::fmt::Write;
    match item.to_json() {
        Ok(data) => {
            let _ = write!(
                out,
                "id: {}\nevent: {}\ndata: {data}\n\n",
                item.id(),
                item.kind()
            );
        }
        // Not for the types streamed (no map has a non-string key); skipped if it were.
        Err(e) => tracing::warn!(kind = item.kind(), error = %e, "encoding an event"),
    }
}

/// The event stream: live, or resumed after an id (`Last-Event-ID`, else `?since=`), each
/// event with its `id:`; a `gap` event where events were missed (see `crate::events`).
async fn events(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    query: Result<Query<EventsQuery>, QueryRejection>,
) -> Response {
    let query = match query {
        Ok(Query(q)) => q,
        Err(e) => return bad_query(&e),
    };
    // On reconnecting, an EventSource sends the last id it got while its URL still holds the
    // `since` it was opened with: the header is the newer of the two.
    let last_id = match headers.get("last-event-id").map(|v| v.to_str()) {
        Some(Ok(id)) if !id.is_empty() => Some(id),
        Some(Err(_)) => return bad_request("Last-Event-ID is not text".to_owned()),
        _ => None,
    };
    let since = match last_id.or(query.since.as_deref()).map(str::parse) {
        None => Since::Now,
        Some(Ok(since)) => since,
        Some(Err(e)) => return bad_request(format!("{e}")),
    };
    let kinds = match query.kind.as_deref().map(Kinds::parse) {
        None => Kinds::all(),
        Some(Ok(kinds)) => kinds,
        Some(Err(e)) => return bad_request(e),
    };
    let batch = Duration::from_millis(query.batch_ms.unwrap_or(0).min(1000));
    let listener = app.publisher.events.listen(since, kinds);
    // Every event there is when one is written goes in the same write (a replay, a burst),
    // up to STREAM_CHUNK bytes: one read for the listener, one send for the server.
    let stream = futures_util::stream::unfold(listener, move |mut listener| async move {
        let Ok(first) = tokio::time::timeout(STREAM_KEEP_ALIVE, listener.next()).await else {
            return Some((Ok::<_, Infallible>(Bytes::from_static(b":\n\n")), listener));
        };
        let mut out = String::with_capacity(512);
        write_sse(&mut out, &first);
        if !batch.is_zero() {
            tokio::time::sleep(batch).await;
        }
        while out.len() < STREAM_CHUNK
            && let Some(item) = listener.try_next()
        {
            write_sse(&mut out, &item);
        }
        Some((Ok(Bytes::from(out)), listener))
    });
    (
        [
            (header::CONTENT_TYPE, "text/event-stream"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        axum::body::Body::from_stream(stream),
    )
        .into_response()
}

async fn metrics(State(app): State<Arc<App>>, _h: HeaderMap) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        crate::metrics::render(&app),
    )
        .into_response()
}
