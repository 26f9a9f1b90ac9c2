//! A small client for etcd's v3 API through its JSON gateway (`POST /v3/...`): ranges,
//! transactions with compares, leases with keep-alive, and watches. Keys and values travel in
//! base64, 64-bit integers as strings, fields at their default value are left out: the
//! gateway's proto3 JSON mapping.
//!
//! Several endpoints may be given; a request that cannot reach one moves on to the next, and
//! the client sticks with the one that answered.
//!
//! Answers are read strictly into typed structs (the private `wire` module says how): an
//! answer that is not what etcd writes is an [`Error::Protocol`], never a 0 or an empty value.
//! A compare names a key's expected state as a [`KeyRevision`]: absent, or at a revision.

mod wire;

use std::io::{BufRead, BufReader, Read};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde::de::DeserializeOwned;
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

/// Where a key stands, as a transaction's compare expects it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum KeyRevision {
    /// The key does not exist.
    #[default]
    Absent,
    /// The key exists, last changed at this revision (from 1 on).
    At(i64),
}

impl KeyRevision {
    /// Where `kv` stands: absent for `None`.
    pub fn of(kv: Option<&Kv>) -> Self {
        kv.map_or(Self::Absent, |kv| Self::At(kv.mod_revision))
    }

    /// The mod revision a compare states: etcd compares an absent key as one whose revisions
    /// are 0.
    fn mod_revision(self) -> i64 {
        match self {
            Self::Absent => 0,
            Self::At(r) => r,
        }
    }
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

impl Op {
    /// What the operation does, for errors.
    fn name(&self) -> &'static str {
        match self {
            Self::Put { .. } => "a put",
            Self::Delete { .. } => "a delete",
            Self::Get { .. } => "a get",
        }
    }
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
    /// cannot be reached; returns the answer read as a `T`.
    fn call<T: DeserializeOwned>(&self, path: &str, body: &Value) -> Result<T, Error> {
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
            let bytes = match resp.body_mut().with_config().limit(1 << 30).read_to_vec() {
                Ok(b) => b,
                Err(e) => return Attempt::Answer(Err(Error::Protocol(format!("{url}: {e}")))),
            };
            if status == 200 {
                return Attempt::Answer(wire::parse(path, &bytes));
            }
            let message = wire::ErrorBody::message(&bytes);
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
        self.call::<wire::RangeResponse>(
            "/v3/kv/range",
            &json!({"key": b64(prefix), "range_end": b64(&prefix_end(prefix))}),
        )?
        .into_kvs()
    }

    /// Runs a transaction: if every key in `compares` stands as given, `success` runs, else
    /// `failure`.
    pub fn txn(
        &self,
        compares: &[(Vec<u8>, KeyRevision)],
        success: &[Op],
        failure: &[Op],
    ) -> Result<TxnResult, Error> {
        let compare: Vec<Value> = compares
            .iter()
            .map(|(k, rev)| {
                json!({"key": b64(k), "target": "MOD", "result": "EQUAL",
                       "mod_revision": rev.mod_revision().to_string()})
            })
            .collect();
        self.call::<wire::TxnResponse>(
            "/v3/kv/txn",
            &json!({"compare": compare, "success": ops(success), "failure": ops(failure)}),
        )?
        .into_result(success, failure)
    }

    /// Grants an etcd lease of `ttl` seconds; returns its id.
    pub fn grant(&self, ttl: u64) -> Result<i64, Error> {
        self.call::<wire::LeaseGrantResponse>("/v3/lease/grant", &json!({"TTL": ttl.to_string()}))?
            .into_id()
    }

    /// Refreshes lease `id`; returns its TTL now (0: it has expired).
    pub fn keep_alive(&self, id: i64) -> Result<i64, Error> {
        const PATH: &str = "/v3/lease/keepalive";
        let answer: wire::StreamMessage<wire::LeaseKeepAliveResponse> =
            self.call(PATH, &json!({"ID": id.to_string()}))?;
        // The endpoint that answered (another thread's request may have moved the client on
        // since; this only names it in an error).
        let endpoint = self.endpoints.get(self.current.load(Ordering::Relaxed));
        answer
            .into_result(PATH, endpoint.map_or("", String::as_str))
            .map(|r| r.ttl)
    }

    /// Revokes lease `id` (and deletes its keys).
    pub fn revoke(&self, id: i64) -> Result<(), Error> {
        self.call::<wire::Message>("/v3/lease/revoke", &json!({"ID": id.to_string()}))
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
            let message: wire::StreamMessage<wire::WatchResponse> =
                wire::parse("watch", line.as_bytes())?;
            return message
                .into_result("watch", &self.endpoint)?
                .into_message()
                .map(Some);
        }
    }
}

/// Reads one watch response (`result` of a gateway message).
pub fn parse_watch(r: &Value) -> Result<WatchMessage, Error> {
    wire::parse_value::<wire::WatchResponse>("watch", r)?.into_message()
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

    /// A stand-in for etcd's gateway: answers each connection with the next of `answers`
    /// (status, body) and hands back the request bodies it read.
    fn gateway(
        answers: Vec<(u16, &'static str)>,
    ) -> (String, std::thread::JoinHandle<Vec<String>>) {
        use std::io::Write;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let served = std::thread::spawn(move || {
            let mut bodies = Vec::new();
            for (status, answer) in answers {
                let (conn, _) = listener.accept().unwrap();
                let mut reader = BufReader::new(conn);
                let mut length = 0;
                loop {
                    let mut line = String::new();
                    reader.read_line(&mut line).unwrap();
                    let line = line.trim_end();
                    if line.is_empty() {
                        break;
                    }
                    if let Some((name, value)) = line.split_once(':')
                        && name.eq_ignore_ascii_case("content-length")
                    {
                        length = value.trim().parse().unwrap();
                    }
                }
                let mut body = vec![0; length];
                reader.read_exact(&mut body).unwrap();
                bodies.push(String::from_utf8(body).unwrap());
                let mut conn = reader.into_inner();
                write!(
                    conn,
                    "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\n\
                     Content-Length: {}\r\nConnection: close\r\n\r\n{answer}",
                    answer.len()
                )
                .unwrap();
            }
            bodies
        });
        (url, served)
    }

    #[test]
    fn an_absent_key_is_compared_as_mod_revision_0_and_the_answer_read_typed() {
        let (url, served) = gateway(vec![(
            200,
            r#"{"header":{"revision":"12"},"succeeded":true,"responses":[{"response_put":{"header":{"revision":"12"}}},{"response_range":{"header":{"revision":"12"},"kvs":[{"key":"YQ==","mod_revision":"7","value":"eA=="}],"count":"1"}}]}"#,
        )]);
        let client = Client::new(vec![url], Duration::from_secs(5));
        let r = client
            .txn(
                &[
                    (b"a".to_vec(), KeyRevision::At(7)),
                    (b"b".to_vec(), KeyRevision::Absent),
                ],
                &[
                    Op::Put {
                        key: b"b".to_vec(),
                        value: b"y".to_vec(),
                        lease: None,
                    },
                    Op::Get { key: b"a".to_vec() },
                ],
                &[],
            )
            .unwrap();
        assert_eq!(
            r,
            TxnResult {
                succeeded: true,
                revision: 12,
                gets: vec![Some(Kv {
                    key: b"a".to_vec(),
                    value: b"x".to_vec(),
                    mod_revision: 7
                })]
            }
        );
        let sent: Value = serde_json::from_str(&served.join().unwrap()[0]).unwrap();
        let revisions: Vec<&str> = sent["compare"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["mod_revision"].as_str().unwrap())
            .collect();
        assert_eq!(revisions, ["7", "0"]);
    }

    #[test]
    fn a_bad_answer_is_an_error_from_the_client_and_a_proxy_page_moves_on() {
        // The first endpoint is a proxy with no etcd behind it (503, not JSON): the client
        // moves on to the second, whose answer has a revision that is not a number.
        let (proxy, proxy_served) = gateway(vec![(503, "<html>no upstream</html>")]);
        let (etcd, etcd_served) = gateway(vec![(200, r#"{"header":{"revision":"1O"}}"#)]);
        let client = Client::new(vec![proxy, etcd], Duration::from_secs(5));
        match client.range_prefix(b"/pserv/") {
            Err(Error::Protocol(m)) => assert!(m.contains("header.revision"), "{m}"),
            other => panic!("{other:?}"),
        }
        proxy_served.join().unwrap();
        etcd_served.join().unwrap();
        // A lease grant without an ID, a keep-alive whose stream carries an error.
        let (url, served) = gateway(vec![
            (200, r#"{"header":{"revision":"1"},"TTL":"3"}"#),
            (
                200,
                r#"{"error":{"grpc_code":14,"http_code":503,"message":"etcdserver: no leader"}}"#,
            ),
        ]);
        let client = Client::new(vec![url], Duration::from_secs(5));
        assert!(matches!(client.grant(3), Err(Error::Protocol(_))));
        assert!(
            matches!(client.keep_alive(5), Err(Error::Server { message, .. }) if message.contains("no leader"))
        );
        served.join().unwrap();
    }
}
