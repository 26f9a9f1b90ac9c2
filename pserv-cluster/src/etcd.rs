//! A small client for etcd's v3 API through its JSON gateway (`POST /v3/...`): ranges,
//! transactions with compares, leases with keep-alive, and watches. Keys and values travel in
//! base64, 64-bit integers as strings, fields at their default value are left out: the
//! gateway's proto3 JSON mapping.
//!
//! Several endpoints may be given; a request that cannot reach one moves on to the next, and
//! the client sticks with the one that answered.

use std::io::{BufRead, BufReader, Read};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::{Value, json};

/// What can go wrong talking to etcd.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No endpoint answered.
    #[error("etcd unreachable ({endpoint}): {reason}")]
    Unreachable {
        /// The last endpoint tried.
        endpoint: String,
        /// Why.
        reason: String,
    },
    /// etcd answered with an error.
    #[error("etcd error from {endpoint}: HTTP {status}: {message}")]
    Server {
        /// Which endpoint.
        endpoint: String,
        /// HTTP status.
        status: u16,
        /// etcd's message.
        message: String,
    },
    /// etcd answered with something this client cannot read.
    #[error("etcd answer not understood: {0}")]
    Protocol(String),
}

/// One key-value pair.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kv {
    /// The key.
    pub key: Vec<u8>,
    /// The value.
    pub value: Vec<u8>,
    /// The revision of its last change.
    pub mod_revision: i64,
}

/// One change a watch reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A key was written (`kv`), over `prev` if it existed.
    Put {
        /// The key as written.
        kv: Kv,
        /// What it held before, if anything.
        prev: Option<Kv>,
    },
    /// A key was deleted at `revision`; `prev` is what it held.
    Delete {
        /// The key.
        key: Vec<u8>,
        /// The revision of the deletion.
        revision: i64,
        /// What it held.
        prev: Option<Kv>,
    },
}

/// One operation of a transaction.
#[derive(Debug, Clone)]
pub enum Op {
    /// Write `value` at `key`, attached to an etcd lease when given.
    Put {
        /// The key.
        key: Vec<u8>,
        /// The value.
        value: Vec<u8>,
        /// The etcd lease to attach the key to.
        lease: Option<i64>,
    },
    /// Delete `key`.
    Delete {
        /// The key.
        key: Vec<u8>,
    },
    /// Read `key`.
    Get {
        /// The key.
        key: Vec<u8>,
    },
}

/// What a transaction did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnResult {
    /// Whether every compare held (then the success branch ran).
    pub succeeded: bool,
    /// The store's revision after the transaction.
    pub revision: i64,
    /// The keys the branch that ran read (`Op::Get`), in order: `None` where absent.
    pub gets: Vec<Option<Kv>>,
}

/// What one endpoint gave: an answer (success or an error worth reporting), or a reason to
/// try the next endpoint.
enum Attempt<T> {
    Answer(Result<T, Error>),
    Next(Error),
}

/// A client of one etcd cluster.
pub struct Client {
    endpoints: Vec<String>,
    current: AtomicUsize,
    agent: ureq::Agent,
    /// For watches: no overall timeout (they stream for as long as they live).
    stream_agent: ureq::Agent,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("endpoints", &self.endpoints)
            .finish_non_exhaustive()
    }
}

fn b64(bytes: &[u8]) -> String {
    B64.encode(bytes)
}

fn unb64(v: &Value) -> Result<Vec<u8>, Error> {
    match v.as_str() {
        None => Ok(Vec::new()),
        Some(s) => B64
            .decode(s)
            .map_err(|e| Error::Protocol(format!("base64: {e}"))),
    }
}

/// A 64-bit integer as the gateway writes it: a string (absent: 0).
fn int(v: &Value) -> i64 {
    match v {
        Value::String(s) => s.parse().unwrap_or(0),
        Value::Number(n) => n.as_i64().unwrap_or(0),
        _ => 0,
    }
}

fn kv(v: &Value) -> Result<Kv, Error> {
    Ok(Kv {
        key: unb64(&v["key"])?,
        value: unb64(&v["value"])?,
        mod_revision: int(&v["mod_revision"]),
    })
}

/// The end of the range of every key starting with `prefix` (etcd's `range_end`).
pub fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    // Every byte 0xff: to the end of the keyspace.
    vec![0]
}

impl Client {
    /// A client of the cluster at `endpoints` (`http://host:port`), each request bounded by
    /// `timeout`.
    pub fn new(endpoints: Vec<String>, timeout: Duration) -> Self {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(timeout))
            .build()
            .into();
        // A watch is silent while nothing changes: a read that waits this long ends the
        // stream, and the watcher resumes it (finding out whether the member still answers).
        let stream_agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(timeout))
            .timeout_per_read(Some(timeout * 2))
            .build()
            .into();
        Self {
            endpoints: endpoints
                .into_iter()
                .map(|e| e.trim_end_matches('/').to_owned())
                .collect(),
            current: AtomicUsize::new(0),
            agent,
            stream_agent,
        }
    }

    /// The endpoints.
    pub fn endpoints(&self) -> &[String] {
        &self.endpoints
    }

    /// Tries the endpoints in turn from the current one until one gives an answer (returned
    /// with the endpoint's index); with none left, the last reason to move on.
    fn on_endpoints<T>(
        &self,
        mut attempt: impl FnMut(&String) -> Attempt<T>,
    ) -> Result<(usize, T), Error> {
        let n = self.endpoints.len().max(1);
        let start = self.current.load(Ordering::Relaxed);
        let mut last = Error::Unreachable {
            endpoint: String::new(),
            reason: "no endpoints".into(),
        };
        for i in 0..n {
            let at = (start + i) % n;
            let Some(endpoint) = self.endpoints.get(at) else {
                break;
            };
            match attempt(endpoint) {
                Attempt::Answer(answer) => return answer.map(|t| (at, t)),
                Attempt::Next(why) => last = why,
            }
        }
        Err(last)
    }

    /// POSTs `body` to `path` on the current endpoint, moving on to the next ones when it
    /// cannot be reached; returns the parsed answer.
    fn call(&self, path: &str, body: &Value) -> Result<Value, Error> {
        let (at, value) = self.on_endpoints(|endpoint| {
            let url = format!("{endpoint}{path}");
            let mut resp = match self.agent.post(&url).send_json(body) {
                Ok(r) => r,
                Err(e) => {
                    return Attempt::Next(Error::Unreachable {
                        endpoint: endpoint.clone(),
                        reason: e.to_string(),
                    });
                }
            };
            let status = resp.status().as_u16();
            let value: Value = match resp.body_mut().with_config().limit(1 << 30).read_json() {
                Ok(v) => v,
                Err(e) => return Attempt::Answer(Err(Error::Protocol(format!("{url}: {e}")))),
            };
            if status == 200 {
                return Attempt::Answer(Ok(value));
            }
            let message = value["message"]
                .as_str()
                .or(value["error"].as_str())
                .unwrap_or("")
                .to_owned();
            let e = Error::Server {
                endpoint: endpoint.clone(),
                status,
                message,
            };
            match &e {
                // A member without a leader (cut off from its peers) cannot serve: try the
                // others.
                Error::Server {
                    status, message, ..
                } if *status == 503 || message.contains("no leader") => Attempt::Next(e),
                _ => Attempt::Answer(Err(e)),
            }
        })?;
        self.current.store(at, Ordering::Relaxed);
        Ok(value)
    }

    /// Every key starting with `prefix`, and the store's revision they were read at.
    pub fn range_prefix(&self, prefix: &[u8]) -> Result<(Vec<Kv>, i64), Error> {
        let v = self.call(
            "/v3/kv/range",
            &json!({"key": b64(prefix), "range_end": b64(&prefix_end(prefix))}),
        )?;
        let kvs = v["kvs"]
            .as_array()
            .map(|a| a.iter().map(kv).collect::<Result<Vec<_>, _>>())
            .transpose()?
            .unwrap_or_default();
        Ok((kvs, int(&v["header"]["revision"])))
    }

    /// Runs a transaction: if every key in `compares` has the given mod revision (0: absent),
    /// `success` runs, else `failure`.
    pub fn txn(
        &self,
        compares: &[(Vec<u8>, i64)],
        success: &[Op],
        failure: &[Op],
    ) -> Result<TxnResult, Error> {
        let compare: Vec<Value> = compares
            .iter()
            .map(|(k, rev)| {
                json!({"key": b64(k), "target": "MOD", "result": "EQUAL",
                       "mod_revision": rev.to_string()})
            })
            .collect();
        let v = self.call(
            "/v3/kv/txn",
            &json!({"compare": compare, "success": ops(success), "failure": ops(failure)}),
        )?;
        let succeeded = v["succeeded"].as_bool().unwrap_or(false);
        let mut gets = Vec::new();
        for r in v["responses"].as_array().into_iter().flatten() {
            if let Some(range) = r.get("response_range") {
                gets.push(match range["kvs"].as_array().and_then(|a| a.first()) {
                    Some(k) => Some(kv(k)?),
                    None => None,
                });
            }
        }
        Ok(TxnResult {
            succeeded,
            revision: int(&v["header"]["revision"]),
            gets,
        })
    }

    /// Grants an etcd lease of `ttl` seconds; returns its id.
    pub fn grant(&self, ttl: u64) -> Result<i64, Error> {
        let v = self.call("/v3/lease/grant", &json!({"TTL": ttl.to_string()}))?;
        match int(&v["ID"]) {
            0 => Err(Error::Protocol(format!("lease grant without an ID: {v}"))),
            id => Ok(id),
        }
    }

    /// Refreshes lease `id`; returns its TTL now (0: it has expired).
    pub fn keep_alive(&self, id: i64) -> Result<i64, Error> {
        let v = self.call("/v3/lease/keepalive", &json!({"ID": id.to_string()}))?;
        Ok(int(&v["result"]["TTL"]))
    }

    /// Revokes lease `id` (and deletes its keys).
    pub fn revoke(&self, id: i64) -> Result<(), Error> {
        self.call("/v3/lease/revoke", &json!({"ID": id.to_string()}))
            .map(drop)
    }

    /// Watches every key starting with `prefix` from `start_revision` on, with previous
    /// values. The stream ends when the connection does.
    pub fn watch(&self, prefix: &[u8], start_revision: i64) -> Result<Watch, Error> {
        let body = json!({"create_request": {
            "key": b64(prefix), "range_end": b64(&prefix_end(prefix)),
            "start_revision": start_revision.to_string(), "prev_kv": true,
            "progress_notify": true}});
        self.on_endpoints(|endpoint| {
            let url = format!("{endpoint}/v3/watch");
            match self.stream_agent.post(&url).send_json(&body) {
                Ok(resp) if resp.status().as_u16() == 200 => Attempt::Answer(Ok(Watch {
                    reader: BufReader::new(Box::new(resp.into_body().into_reader())),
                    endpoint: endpoint.clone(),
                })),
                Ok(resp) => Attempt::Next(Error::Server {
                    endpoint: endpoint.clone(),
                    status: resp.status().as_u16(),
                    message: "watch refused".into(),
                }),
                Err(e) => Attempt::Next(Error::Unreachable {
                    endpoint: endpoint.clone(),
                    reason: e.to_string(),
                }),
            }
        })
        .map(|(_, w)| w)
    }
}

fn ops(ops: &[Op]) -> Vec<Value> {
    ops.iter()
        .map(|op| match op {
            Op::Put { key, value, lease } => {
                let mut p = json!({"key": b64(key), "value": b64(value)});
                if let Some(l) = lease {
                    p["lease"] = Value::String(l.to_string());
                }
                json!({ "request_put": p })
            }
            Op::Delete { key } => json!({"request_delete_range": {"key": b64(key)}}),
            Op::Get { key } => json!({"request_range": {"key": b64(key)}}),
        })
        .collect()
}

/// What one watch message said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WatchMessage {
    /// Changes, in revision order; `revision` is the store's revision as of this message.
    Events {
        /// The changes.
        events: Vec<Event>,
        /// The store's revision.
        revision: i64,
    },
    /// The watch was cancelled: with `compacted` set, the revisions it was to start from are
    /// gone, and the watcher must read the whole prefix again.
    Cancelled {
        /// The compaction revision, if that was the reason.
        compacted: Option<i64>,
        /// etcd's reason.
        reason: String,
    },
}

/// A live watch: one JSON message per line.
pub struct Watch {
    reader: BufReader<Box<dyn Read + Send>>,
    endpoint: String,
}

impl std::fmt::Debug for Watch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watch")
            .field("endpoint", &self.endpoint)
            .finish_non_exhaustive()
    }
}

impl Watch {
    /// The next message; `Ok(None)` when the stream ends.
    pub fn next_message(&mut self) -> Result<Option<WatchMessage>, Error> {
        let mut line = String::new();
        loop {
            line.clear();
            let n = self
                .reader
                .read_line(&mut line)
                .map_err(|e| Error::Unreachable {
                    endpoint: self.endpoint.clone(),
                    reason: e.to_string(),
                })?;
            if n == 0 {
                return Ok(None);
            }
            if line.trim().is_empty() {
                continue;
            }
            let v: Value =
                serde_json::from_str(&line).map_err(|e| Error::Protocol(format!("watch: {e}")))?;
            if let Some(err) = v.get("error") {
                return Err(Error::Server {
                    endpoint: self.endpoint.clone(),
                    status: 200,
                    message: err.to_string(),
                });
            }
            return parse_watch(&v["result"]).map(Some);
        }
    }
}

/// Reads one watch response (`result` of a gateway message).
pub fn parse_watch(r: &Value) -> Result<WatchMessage, Error> {
    let compacted = int(&r["compact_revision"]);
    if r["canceled"].as_bool().unwrap_or(false) || compacted > 0 {
        return Ok(WatchMessage::Cancelled {
            compacted: (compacted > 0).then_some(compacted),
            reason: r["cancel_reason"].as_str().unwrap_or_default().to_owned(),
        });
    }
    let mut events = Vec::new();
    for e in r["events"].as_array().into_iter().flatten() {
        let prev = match e.get("prev_kv") {
            Some(p) if !p.is_null() => Some(kv(p)?),
            _ => None,
        };
        let k = kv(&e["kv"])?;
        events.push(match e["type"].as_str() {
            Some("DELETE") => Event::Delete {
                key: k.key,
                revision: k.mod_revision,
                prev,
            },
            _ => Event::Put { kv: k, prev },
        });
    }
    Ok(WatchMessage::Events {
        events,
        revision: int(&r["header"]["revision"]),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn prefix_ends() {
        assert_eq!(prefix_end(b"/a/"), b"/a0".to_vec());
        assert_eq!(prefix_end(b"a\xff"), b"b".to_vec());
        assert_eq!(prefix_end(b"\xff\xff"), vec![0]);
    }

    #[test]
    fn reads_gateway_watch_messages() {
        // As etcd 3.4's gateway writes them (integers as strings, defaults left out).
        let put: Value = serde_json::from_str(
            r#"{"header":{"revision":"7"},"events":[{"kv":{"key":"Zm9v","create_revision":"7",
            "mod_revision":"7","version":"1","value":"YmFy"}},{"type":"DELETE","kv":{"key":"Zm9v",
            "mod_revision":"8"},"prev_kv":{"key":"Zm9v","mod_revision":"7","value":"YmFy"}}]}"#,
        )
        .unwrap();
        let WatchMessage::Events { events, revision } = parse_watch(&put).unwrap() else {
            panic!("not events");
        };
        assert_eq!(revision, 7);
        assert_eq!(
            events[0],
            Event::Put {
                kv: Kv {
                    key: b"foo".to_vec(),
                    value: b"bar".to_vec(),
                    mod_revision: 7
                },
                prev: None
            }
        );
        match &events[1] {
            Event::Delete {
                key,
                revision,
                prev: Some(p),
            } => {
                assert_eq!((key.as_slice(), *revision), (&b"foo"[..], 8));
                assert_eq!(p.value, b"bar");
            }
            other => panic!("{other:?}"),
        }
        let cancelled: Value =
            serde_json::from_str(r#"{"header":{},"canceled":true,"compact_revision":"5"}"#)
                .unwrap();
        assert_eq!(
            parse_watch(&cancelled).unwrap(),
            WatchMessage::Cancelled {
                compacted: Some(5),
                reason: String::new()
            }
        );
    }
}
