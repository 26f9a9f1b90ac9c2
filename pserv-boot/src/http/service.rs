//! The HTTP boot listener: every path is a name of the virtual tree, answered as [`plan`]
//! decides, on pserv's capped accept loop ([`pserv_net::http::serve`]), except
//! `/nodes/<mac>/progress`, where machines report their installation's progress
//! ([`progress`]): from the machine's own address only (404 from any other, as its node
//! files), at most [`PROGRESS_LIMIT`] per machine (429 over it), every result counted.

use std::io::SeekFrom;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use parking_lot::Mutex;
use pserv_core::MacAddr;
use pserv_net::Running;
use pserv_net::http::{ConnCounters, Limits};
use pserv_net::metrics::{Collector, DescriptorEncoder, MetricType, family, load, single};
use pserv_net::rate::{self, RateLimiter};
use pserv_net::service::StopError;
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio::net::TcpListener;
use tokio_util::io::ReaderStream;
use tokio_util::sync::CancellationToken;

use super::cache::FileCache;
use super::progress::{self, MAX_BODY};
use super::{Plan, plan};
use crate::tree::TreeError;
use crate::vtree::{Content, Tree, Via};

/// Connections HTTP boot serves at once (a rack powering on fetches kernels together).
const MAX_CONNECTIONS: usize = 2048;

/// Boot files kept in memory at most (bytes): kernels, initrds, iPXE, shims.
const CACHE_BUDGET: u64 = 1 << 30;

/// The largest file kept in memory; bigger ones (installer ISOs) stream from disk.
const CACHE_MAX_FILE: u64 = 256 << 20;

/// What HTTP boot counts.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    /// Responses by class: 200, 206, 404, other errors.
    pub(crate) ok: AtomicU64,
    pub(crate) partial: AtomicU64,
    pub(crate) not_found: AtomicU64,
    pub(crate) refused: AtomicU64,
    /// Body bytes planned (Content-Length of GETs).
    pub(crate) bytes: AtomicU64,
    /// Files answered from the content cache, and files read into it.
    pub(crate) cache_hits: AtomicU64,
    pub(crate) cache_loads: AtomicU64,
    /// Progress reports by result (issue 21).
    pub(crate) progress: ProgressCounters,
}

/// What the progress endpoint counts.
#[derive(Debug, Default)]
pub(crate) struct ProgressCounters {
    /// Reports that became events.
    pub(crate) accepted: AtomicU64,
    /// From an address that is not the machine's (answered 404).
    pub(crate) not_yours: AtomicU64,
    /// For a MAC that is neither a node's nor a lease's (404).
    pub(crate) unknown: AtomicU64,
    /// Over the machine's rate (429).
    pub(crate) rate_limited: AtomicU64,
    /// No stage, a bad stage, an unreadable body, a method other than GET or POST.
    pub(crate) bad_request: AtomicU64,
    /// A body over 4 KiB (413).
    pub(crate) too_large: AtomicU64,
}

/// A progress report accepted: the `progress` event a controller follows (issue 21).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "event", rename = "progress")]
pub struct Progress {
    /// The node (`None` for a machine on a dynamic lease the snapshot does not know).
    pub node: Option<String>,
    /// The machine.
    pub mac: MacAddr,
    /// The address it reported from.
    pub client: IpAddr,
    /// The stage it reported.
    pub stage: String,
    /// Its message, if any.
    pub message: Option<String>,
    /// The snapshot generation the machine was looked up in.
    pub generation: u64,
}

/// Called with every progress report accepted (on the runtime: keep it short).
pub type OnProgress = Arc<dyn Fn(&Progress) + Send + Sync>;

/// What a machine may report, per machine and address: an installer reports a few stages a
/// minute; a burst covers a script that reports every step at once.
/// At most 65,536 machines are tracked at once (the limiter's bound).
pub const PROGRESS_LIMIT: rate::Limits = rate::Limits {
    rate: 5.0,
    burst: 50,
    max_sources: 65_536,
};

/// One request answered: the boot-progress event a controller follows.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "event", rename = "http")]
pub struct Served {
    /// The client's address and port.
    pub client: SocketAddr,
    /// The request's method.
    pub method: String,
    /// The path asked for, as sent (not decoded).
    pub path: String,
    /// The response's status.
    pub status: u16,
    /// The body's length for a GET (0 for anything else).
    pub bytes: u64,
}

/// Called with every request answered (on the runtime: keep it short).
pub type OnServed = Arc<dyn Fn(&Served) + Send + Sync>;

/// Starts serving `tree` on `listener` until `shutdown` (call inside a tokio runtime), at most
/// 2048 connections at once. [`Running::metrics`] encodes the `pserv_boot_http_*` metrics;
/// [`Running::join`] resolves once the accept loop has stopped and the connections have
/// drained ([`pserv_net::http::DRAIN`] at most).
pub fn start(
    listener: TcpListener,
    tree: Arc<Tree>,
    on_served: OnServed,
    on_progress: OnProgress,
    shutdown: CancellationToken,
) -> std::io::Result<Running> {
    let local = listener.local_addr()?;
    let runtime = tokio::runtime::Handle::try_current().map_err(std::io::Error::other)?;
    let counters = Arc::new(Counters::default());
    let connections = Arc::new(ConnCounters::default());
    let router = Router::new().fallback(fetch).with_state(Boot {
        tree,
        counters: counters.clone(),
        cache: Arc::new(FileCache::new(CACHE_BUDGET, CACHE_MAX_FILE)),
        on_served,
        on_progress,
        limiter: Arc::new(Mutex::new(RateLimiter::new(PROGRESS_LIMIT))),
    });
    let task = runtime.spawn(pserv_net::http::serve(
        listener,
        router,
        connections.clone(),
        Limits {
            what: "HTTP boot",
            max_connections: MAX_CONNECTIONS,
            zero_copy: true,
        },
        shutdown.cancelled_owned(),
    ));
    Ok(Running {
        name: "HTTP boot",
        addrs: vec![local],
        metrics: Box::new(Metrics {
            counters,
            connections,
        }),
        join: Box::pin(async move { task.await.map_err(|e| Box::new(e) as StopError) }),
    })
}

/// HTTP boot's `/metrics`: its responses and its listener's connections.
#[derive(Debug)]
struct Metrics {
    counters: Arc<Counters>,
    connections: Arc<ConnCounters>,
}

impl Collector for Metrics {
    #[rustfmt::skip]
    fn encode(&self, mut e: DescriptorEncoder<'_>) -> pserv_net::metrics::Result {
        use MetricType::Counter;
        let (b, c, e) = (&*self.counters, &*self.connections, &mut e);
        family(e, "pserv_boot_http_responses", "HTTP boot responses by kind", Counter, "kind", &[
            ("ok", load(&b.ok)),
            ("partial", load(&b.partial)),
            ("not_found", load(&b.not_found)),
            ("refused", load(&b.refused)),
        ])?;
        single(e, "pserv_boot_http_bytes", "HTTP boot body bytes sent or being sent", Counter, load(&b.bytes))?;
        family(e, "pserv_boot_http_cache", "HTTP boot files answered from memory (hit) and files read into memory (load)", Counter, "result", &[
            ("hit", load(&b.cache_hits)),
            ("load", load(&b.cache_loads)),
        ])?;
        let p = &b.progress;
        family(e, "pserv_boot_progress_requests", "Boot progress reports by result (accepted ones became events)", Counter, "result", &[
            ("accepted", load(&p.accepted)),
            ("not_yours", load(&p.not_yours)),
            ("unknown", load(&p.unknown)),
            ("rate_limited", load(&p.rate_limited)),
            ("bad_request", load(&p.bad_request)),
            ("too_large", load(&p.too_large)),
        ])?;
        family(e, "pserv_boot_http_connections_dropped", "HTTP boot connections closed at accept, by reason", Counter, "reason", &[
            ("over_limit", load(&c.over_limit)),
            ("accept_error", load(&c.accept_errors)),
        ])
    }
}

/// What the handler holds.
#[derive(Clone)]
struct Boot {
    tree: Arc<Tree>,
    counters: Arc<Counters>,
    cache: Arc<FileCache>,
    on_served: OnServed,
    on_progress: OnProgress,
    limiter: Arc<Mutex<RateLimiter<(IpAddr, MacAddr)>>>,
}

fn status(code: StatusCode, c: &Counters) -> Response {
    let counter = match code {
        StatusCode::NOT_FOUND => &c.not_found,
        _ => &c.refused,
    };
    counter.fetch_add(1, Ordering::Relaxed);
    plain(code)
}

/// A status with its reason as a plain-text body.
fn plain(code: StatusCode) -> Response {
    (
        code,
        [(header::CONTENT_TYPE, "text/plain")],
        code.canonical_reason().unwrap_or(""),
    )
        .into_response()
}

async fn fetch(
    State(boot): State<Boot>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    req: Request,
) -> Response {
    // An IPv4 peer of a dual-stack listener as the IPv4 address it is, in events and checks.
    let client = SocketAddr::new(client.ip().to_canonical(), client.port());
    let local = req
        .extensions()
        .get::<pserv_net::http::LocalAddr>()
        .map_or(std::net::IpAddr::from([0, 0, 0, 0]), |l| l.0.ip());
    let method = req.method().as_str().to_owned();
    let path = req.uri().path().to_owned();
    let response = match percent_decode(&path).as_deref().and_then(progress_mac) {
        Some(mac) => progress(&boot, mac, client.ip(), req).await,
        None => {
            let range = req
                .headers()
                .get(header::RANGE)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            drop(req);
            answer(&boot, &method, &path, range.as_deref(), client, local).await
        }
    };
    let bytes = if method == "GET" {
        response
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    } else {
        0
    };
    (boot.on_served)(&Served {
        client,
        method,
        path,
        status: response.status().as_u16(),
        bytes,
    });
    response
}

async fn answer(
    boot: &Boot,
    method: &str,
    path: &str,
    range: Option<&str>,
    client: SocketAddr,
    local: std::net::IpAddr,
) -> Response {
    let c = &boot.counters;
    let Some(decoded) = percent_decode(path) else {
        return status(StatusCode::BAD_REQUEST, c);
    };
    let opened = match boot.tree.open(&decoded, Via::Http, client.ip(), local) {
        Ok(o) => o,
        Err(TreeError::NotFound) => return status(StatusCode::NOT_FOUND, c),
        Err(TreeError::Hidden) => {
            c.refused.fetch_add(1, Ordering::Relaxed);
            return plain(StatusCode::NOT_FOUND);
        }
        Err(TreeError::BadName | TreeError::Outside | TreeError::NotYours) => {
            return status(StatusCode::FORBIDDEN, c);
        }
        Err(_) => return status(StatusCode::INTERNAL_SERVER_ERROR, c),
    };
    let size = opened.size();
    let config = matches!(opened, Content::Config(_));
    let p = plan(method, range, size);
    let content_range = p.content_range();
    match p {
        Plan::MethodNotAllowed => {
            let mut r = status(StatusCode::METHOD_NOT_ALLOWED, c);
            r.headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
            r
        }
        Plan::Unsatisfiable { .. } => {
            let mut r = status(StatusCode::RANGE_NOT_SATISFIABLE, c);
            if let Some(cr) = content_range.and_then(|v| HeaderValue::from_str(&v).ok()) {
                r.headers_mut().insert(header::CONTENT_RANGE, cr);
            }
            r
        }
        Plan::Bytes {
            status: code,
            start,
            len,
            body,
            ..
        } => {
            let code = if code == 206 {
                c.partial.fetch_add(1, Ordering::Relaxed);
                StatusCode::PARTIAL_CONTENT
            } else {
                c.ok.fetch_add(1, Ordering::Relaxed);
                StatusCode::OK
            };
            let body = if body {
                c.bytes.fetch_add(len, Ordering::Relaxed);
                match opened {
                    Content::File(o) => {
                        if let Some(all) = boot.cache.get(&o.file, size, c).await {
                            // `plan` keeps the range inside the file.
                            let e = ((start + len) as usize).min(all.len());
                            Body::from(all.slice((start as usize).min(e)..e))
                        } else {
                            let mut f = tokio::fs::File::from_std(o.file);
                            if f.seek(SeekFrom::Start(start)).await.is_err() {
                                return status(StatusCode::INTERNAL_SERVER_ERROR, c);
                            }
                            Body::from_stream(ReaderStream::with_capacity(f.take(len), 256 << 10))
                        }
                    }
                    Content::Config(bytes) => {
                        // `plan` keeps the range inside the content.
                        let (s, e) = (start as usize, (start + len) as usize);
                        Body::from(bytes.get(s..e).unwrap_or_default().to_vec())
                    }
                }
            } else {
                Body::empty()
            };
            let mut r = Response::new(body);
            *r.status_mut() = code;
            let h = r.headers_mut();
            h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
            h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
            h.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static(if config {
                    "text/plain; charset=utf-8"
                } else {
                    "application/octet-stream"
                }),
            );
            if let Some(cr) = content_range.and_then(|v| HeaderValue::from_str(&v).ok()) {
                h.insert(header::CONTENT_RANGE, cr);
            }
            r
        }
    }
}

/// The MAC of a progress endpoint's path (`/nodes/<mac>/progress`), if the path is one.
fn progress_mac(path: &str) -> Option<MacAddr> {
    let rest = path.strip_suffix("/progress")?;
    let mac = rest.trim_start_matches('/').strip_prefix("nodes/")?;
    mac.parse().ok()
}

/// A progress report: checked, rate limited, announced. Nothing is stored.
async fn progress(boot: &Boot, mac: MacAddr, client: IpAddr, req: Request) -> Response {
    let p = &boot.counters.progress;
    let count = |c: &AtomicU64, code: StatusCode| {
        c.fetch_add(1, Ordering::Relaxed);
        plain(code)
    };
    let method = req.method().as_str().to_owned();
    let query = req.uri().query().map(str::to_owned);
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    if method != "GET" && method != "POST" {
        let mut r = count(&p.bad_request, StatusCode::METHOD_NOT_ALLOWED);
        r.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET, POST"));
        return r;
    }
    let Ok(body) = axum::body::to_bytes(req.into_body(), MAX_BODY).await else {
        return count(&p.too_large, StatusCode::PAYLOAD_TOO_LARGE);
    };
    let machine = match boot.tree.machine(mac, client) {
        Ok(m) => m,
        Err(TreeError::Hidden) => return count(&p.not_yours, StatusCode::NOT_FOUND),
        Err(_) => return count(&p.unknown, StatusCode::NOT_FOUND),
    };
    let report = match progress::parse(&method, query.as_deref(), content_type.as_deref(), &body) {
        Ok(r) => r,
        Err(e) => {
            p.bad_request.fetch_add(1, Ordering::Relaxed);
            return (
                StatusCode::BAD_REQUEST,
                [(header::CONTENT_TYPE, "text/plain")],
                format!("{e}\n"),
            )
                .into_response();
        }
    };
    if boot
        .limiter
        .lock()
        .admit(Instant::now(), (client, mac))
        .is_err()
    {
        return count(&p.rate_limited, StatusCode::TOO_MANY_REQUESTS);
    }
    p.accepted.fetch_add(1, Ordering::Relaxed);
    (boot.on_progress)(&Progress {
        node: machine.node,
        mac,
        client,
        stage: report.stage,
        message: report.message,
        generation: machine.generation,
    });
    StatusCode::NO_CONTENT.into_response()
}

/// `%XX` escapes decoded; `None` for a bad escape or a result that is not UTF-8.
fn percent_decode(path: &str) -> Option<String> {
    let b = path.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::percent_decode;

    #[test]
    fn escapes_decode_and_bad_ones_are_refused() {
        assert_eq!(percent_decode("/a%20b").as_deref(), Some("/a b"));
        assert_eq!(percent_decode("/%2e%2e/x").as_deref(), Some("/../x"));
        assert_eq!(percent_decode("/%zz"), None);
        assert_eq!(percent_decode("/%4"), None);
        assert_eq!(percent_decode("/%ff"), None);
    }
}
