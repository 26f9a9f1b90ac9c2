//! HTTP boot: the boot directory over HTTP, on its own listener (read only, no token, apart
//! from the control API). The answer is [`pserv_boot::http::plan`]'s; this module opens the
//! file, writes the headers and streams the byte range. Never a redirect: UEFI HTTP boot
//! clients do not follow them (a directory is 404, not a 301 to its slash).

use std::io::SeekFrom;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use pserv_boot::http::{Plan, plan};
use pserv_boot::tree::TreeError;
use pserv_boot::vtree::{Content, Tree, Via};
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio_util::io::ReaderStream;

use crate::control::Events;

/// Connections HTTP boot serves at once (a rack powering on fetches kernels together).
pub(crate) const MAX_CONNECTIONS: usize = 2048;

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
}

/// Boot files kept in memory, so that a rack fetching the same kernel and initrd is answered
/// without a file read (and a blocking-pool hop) per chunk: the profile of 50 clients
/// fetching one 12 MB file through `tokio::fs` spent ~60% of the CPU in the page-cache copy,
/// the copy between buffers and the thread hops. An entry is one file's inode, size and mtime,
/// so a file rewritten or replaced is read again; concurrent first fetches read it once.
pub(crate) struct FileCache {
    entries: parking_lot::Mutex<CacheState>,
    /// Bytes kept at most, and the largest file kept (bigger ones stream from disk).
    budget: u64,
    max_file: u64,
}

type CacheKey = (u64, u64, u64, i64, i64);

#[derive(Default)]
struct CacheState {
    map: std::collections::HashMap<CacheKey, (Arc<tokio::sync::OnceCell<Bytes>>, u64)>,
    /// Bytes in loaded entries.
    total: u64,
    tick: u64,
}

impl FileCache {
    /// A cache of at most `budget` bytes, of files up to `max_file` bytes.
    pub(crate) fn new(budget: u64, max_file: u64) -> Self {
        Self {
            entries: parking_lot::Mutex::default(),
            budget,
            max_file,
        }
    }

    /// The whole content of `file` (of `size` bytes), from memory; `None` when it is not to be
    /// cached (too big) or cannot be read (the caller streams it instead).
    async fn get(&self, file: &std::fs::File, size: u64, c: &Counters) -> Option<Bytes> {
        use std::os::unix::fs::MetadataExt;
        if size > self.max_file || size > self.budget {
            return None;
        }
        let m = file.metadata().ok()?;
        let key = (m.dev(), m.ino(), m.size(), m.mtime(), m.mtime_nsec());
        let cell = {
            let mut st = self.entries.lock();
            st.tick += 1;
            let tick = st.tick;
            let e = st
                .map
                .entry(key)
                .or_insert_with(|| (Arc::new(tokio::sync::OnceCell::new()), tick));
            e.1 = tick;
            e.0.clone()
        };
        if let Some(b) = cell.get() {
            c.cache_hits.fetch_add(1, Ordering::Relaxed);
            return Some(b.clone());
        }
        let file = file.try_clone().ok()?;
        let bytes = cell
            .get_or_try_init(|| async move {
                let r = tokio::task::spawn_blocking(move || {
                    let mut buf = Vec::with_capacity(size as usize);
                    std::io::Read::read_to_end(&mut std::io::Read::take(&file, size), &mut buf)
                        .map(|_| Bytes::from(buf))
                })
                .await;
                match r {
                    Ok(Ok(b)) if b.len() as u64 == size => {
                        c.cache_loads.fetch_add(1, Ordering::Relaxed);
                        self.admit(key, size);
                        Ok(b)
                    }
                    _ => Err(()),
                }
            })
            .await;
        match bytes {
            Ok(b) => Some(b.clone()),
            Err(()) => {
                self.entries.lock().map.remove(&key);
                None
            }
        }
    }

    /// Counts a loaded entry in, evicting the least recently used ones past the budget.
    fn admit(&self, key: CacheKey, size: u64) {
        let mut st = self.entries.lock();
        st.total += size;
        while st.total > self.budget {
            let victim = st
                .map
                .iter()
                .filter(|(k, (cell, _))| **k != key && cell.initialized())
                .min_by_key(|(_, (_, t))| *t)
                .map(|(k, (cell, _))| (*k, cell.get().map_or(0, |b| b.len() as u64)));
            let Some((k, len)) = victim else { break };
            st.map.remove(&k);
            st.total -= len;
        }
    }
}

#[derive(Clone)]
struct Boot {
    tree: Arc<Tree>,
    counters: Arc<Counters>,
    cache: Arc<FileCache>,
    events: Events,
}

/// One fetch, as a boot-progress event.
#[derive(serde::Serialize)]
#[serde(tag = "event", rename = "http")]
struct Fetched<'a> {
    client: SocketAddr,
    method: &'a str,
    path: &'a str,
    status: u16,
    bytes: u64,
}

/// The router: every path is a file of the boot directory.
pub(crate) fn router(tree: Arc<Tree>, counters: Arc<Counters>, events: Events) -> Router {
    Router::new().fallback(fetch).with_state(Boot {
        tree,
        counters,
        // Up to 1 GiB of boot files, each up to 256 MiB (kernels, initrds, iPXE, shims;
        // installer ISOs stream from disk).
        cache: Arc::new(FileCache::new(1 << 30, 256 << 20)),
        events,
    })
}

fn status(code: StatusCode, c: &Counters) -> Response {
    let counter = match code {
        StatusCode::NOT_FOUND => &c.not_found,
        _ => &c.refused,
    };
    counter.fetch_add(1, Ordering::Relaxed);
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
    let local = req
        .extensions()
        .get::<pserv_net::http::LocalAddr>()
        .map_or(std::net::IpAddr::from([0, 0, 0, 0]), |l| l.0.ip());
    let method = req.method().as_str().to_owned();
    let path = req.uri().path().to_owned();
    let range = req
        .headers()
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    drop(req);
    let response = answer(&boot, &method, &path, range.as_deref(), client, local).await;
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
    boot.events.emit(
        "http",
        &Fetched {
            client,
            method: &method,
            path: &path,
            status: response.status().as_u16(),
            bytes,
        },
    );
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

#[cfg(test)]
mod cache_tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[tokio::test]
    async fn files_are_read_once_again_when_changed_and_evicted_past_the_budget() {
        let dir = tempfile::tempdir().unwrap();
        let c = Counters::default();
        let cache = FileCache::new(3000, 2000);
        let write = |name: &str, fill: u8, len: usize| {
            let p = dir.path().join(name);
            std::fs::write(&p, vec![fill; len]).unwrap();
            std::fs::File::open(p).unwrap()
        };
        let a = write("a", 1, 1000);
        assert_eq!(
            &cache.get(&a, 1000, &c).await.unwrap()[..],
            &[1u8; 1000][..]
        );
        assert_eq!(cache.get(&a, 1000, &c).await.unwrap().len(), 1000);
        assert_eq!((load(&c.cache_loads), load(&c.cache_hits)), (1, 1));
        // Replaced (a new inode): read again, the new content.
        let a2 = write("a.new", 2, 1000);
        std::fs::rename(dir.path().join("a.new"), dir.path().join("a")).unwrap();
        assert_eq!(cache.get(&a2, 1000, &c).await.unwrap()[0], 2);
        assert_eq!(load(&c.cache_loads), 2);
        // Too big for one entry: streamed, not cached.
        let big = write("big", 3, 2500);
        assert!(cache.get(&big, 2500, &c).await.is_none());
        // Past the budget (3000): the least recently used entry goes.
        let b = write("b", 4, 1500);
        assert!(cache.get(&b, 1500, &c).await.is_some());
        let st = cache.entries.lock();
        assert!(st.total <= 3000, "{}", st.total);
        assert_eq!(st.map.len(), 2, "the oldest entry was evicted");
    }

    fn load(a: &AtomicU64) -> u64 {
        a.load(Ordering::Relaxed)
    }
}
