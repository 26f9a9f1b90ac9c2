//! etcd's answers as its JSON gateway writes them, read into typed structs and converted into
//! the client's own types ([`Kv`], [`TxnResult`], [`WatchMessage`]).
//!
//! The gateway writes proto3's JSON mapping: 64-bit integers as strings (`"revision":"42"`),
//! `bytes` as standard base64, field names as in the `.proto` (`mod_revision`, `ID`, `TTL`),
//! and a field at its default value (0, empty, false) left out. So an absent field is read as
//! its default, and so is `null` (proto3 JSON reads `null` as the default for every field);
//! a field that is present with the wrong type, a string that is not a 64-bit integer, or
//! base64 that does not decode is an error ([`Error::Protocol`], naming the field), never a
//! 0. Structure etcd always sends (the response header of a range or a transaction, a key
//! and its revision in a key-value pair, one response per operation of the branch that ran)
//! is required. Fields the client does not read are not looked at; unknown fields are
//! ignored (newer etcds add some). Nothing here panics on any input.
//!
//! This module reads answers only: requests are written in the parent module.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde::Deserialize;
use serde::de::{self, DeserializeOwned, Deserializer, Visitor};

use super::{Error, Event, Kv, Op, TxnResult, WatchMessage};

/// Reads one answer to `what` (a request path, for errors) from `bytes`: the whole of it, one
/// JSON value.
pub(super) fn parse<T: DeserializeOwned>(what: &str, bytes: &[u8]) -> Result<T, Error> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let t = serde_path_to_error::deserialize(&mut de).map_err(|e| protocol(what, &e))?;
    de.end()
        .map_err(|e| Error::Protocol(format!("{what}: {e}")))?;
    Ok(t)
}

/// Reads one answer to `what` from an already parsed JSON value.
pub(super) fn parse_value<T: DeserializeOwned>(
    what: &str,
    value: &serde_json::Value,
) -> Result<T, Error> {
    serde_path_to_error::deserialize(value).map_err(|e| protocol(what, &e))
}

fn protocol<E: std::fmt::Display>(what: &str, e: &serde_path_to_error::Error<E>) -> Error {
    Error::Protocol(format!("{what}: at {}: {}", e.path(), e.inner()))
}

/// A 64-bit integer as the gateway writes it: a string of decimal digits (a JSON number is
/// accepted too, as proto3 JSON parsers do); `null` is 0.
fn int64<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    struct Int64;
    impl Visitor<'_> for Int64 {
        type Value = i64;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a 64-bit integer (a string of decimal digits)")
        }
        fn visit_str<E: de::Error>(self, s: &str) -> Result<i64, E> {
            s.parse()
                .map_err(|_| E::invalid_value(de::Unexpected::Str(s), &self))
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<i64, E> {
            Ok(v)
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<i64, E> {
            i64::try_from(v).map_err(|_| E::invalid_value(de::Unexpected::Unsigned(v), &self))
        }
        fn visit_unit<E: de::Error>(self) -> Result<i64, E> {
            Ok(0)
        }
    }
    d.deserialize_any(Int64)
}

/// `bytes` as the gateway writes them: standard base64 with padding; `null` is empty.
fn bytes<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
    struct Bytes;
    impl Visitor<'_> for Bytes {
        type Value = Vec<u8>;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("base64 (standard alphabet, padded)")
        }
        fn visit_str<E: de::Error>(self, s: &str) -> Result<Vec<u8>, E> {
            B64.decode(s)
                .map_err(|e| E::custom(format_args!("bad base64 {s:?}: {e}")))
        }
        fn visit_unit<E: de::Error>(self) -> Result<Vec<u8>, E> {
            Ok(Vec::new())
        }
    }
    d.deserialize_any(Bytes)
}

/// `ResponseHeader`: only the store's revision is read.
#[derive(Debug, Deserialize)]
struct Header {
    #[serde(default, deserialize_with = "int64")]
    revision: i64,
}

/// The store's revision from a header etcd must have sent: a range or transaction answer
/// without one (or with revision 0: a store's revision starts at 1) cannot be used as a
/// point to watch from or compare against.
fn store_revision(what: &str, header: Option<Header>) -> Result<i64, Error> {
    match header {
        Some(Header { revision }) if revision > 0 => Ok(revision),
        Some(_) => Err(Error::Protocol(format!(
            "{what}: the response header has no store revision"
        ))),
        None => Err(Error::Protocol(format!("{what}: no response header"))),
    }
}

/// `mvccpb.KeyValue`: the fields the client reads.
#[derive(Debug, Deserialize)]
struct KeyValue {
    /// Required: etcd has no empty keys.
    #[serde(deserialize_with = "bytes")]
    key: Vec<u8>,
    #[serde(default, deserialize_with = "bytes")]
    value: Vec<u8>,
    #[serde(default, deserialize_with = "int64")]
    mod_revision: i64,
}

impl KeyValue {
    /// A key etcd reports always has a revision (from 1 on).
    fn into_kv(self, what: &str) -> Result<Kv, Error> {
        if self.mod_revision <= 0 {
            return Err(Error::Protocol(format!(
                "{what}: key {:?} without a mod revision",
                String::from_utf8_lossy(&self.key)
            )));
        }
        Ok(Kv {
            key: self.key,
            value: self.value,
            mod_revision: self.mod_revision,
        })
    }
}

fn kvs(what: &str, kvs: Option<Vec<KeyValue>>) -> Result<Vec<Kv>, Error> {
    kvs.unwrap_or_default()
        .into_iter()
        .map(|k| k.into_kv(what))
        .collect()
}

/// `RangeResponse`, alone (`/v3/kv/range`) or inside a transaction.
#[derive(Debug, Deserialize)]
pub(super) struct RangeResponse {
    #[serde(default)]
    header: Option<Header>,
    #[serde(default)]
    kvs: Option<Vec<KeyValue>>,
}

impl RangeResponse {
    /// The keys and the store's revision they were read at.
    pub(super) fn into_kvs(self) -> Result<(Vec<Kv>, i64), Error> {
        const WHAT: &str = "range";
        let revision = store_revision(WHAT, self.header)?;
        Ok((kvs(WHAT, self.kvs)?, revision))
    }
}

/// A message the client reads no field of (a put's or a deletion's answer inside a
/// transaction, a revoke's answer): it must still be a JSON object.
#[derive(Debug, Deserialize)]
pub(super) struct Message {}

/// `ResponseOp`: a oneof, so exactly one of these is present.
#[derive(Debug, Deserialize)]
struct ResponseOp {
    #[serde(default)]
    response_range: Option<RangeResponse>,
    #[serde(default)]
    response_put: Option<Message>,
    #[serde(default)]
    response_delete_range: Option<Message>,
    #[serde(default)]
    response_txn: Option<Message>,
}

impl ResponseOp {
    /// Which responses it holds, for errors.
    fn kinds(&self) -> String {
        let kinds: Vec<&str> = [
            (self.response_range.is_some(), "response_range"),
            (self.response_put.is_some(), "response_put"),
            (
                self.response_delete_range.is_some(),
                "response_delete_range",
            ),
            (self.response_txn.is_some(), "response_txn"),
        ]
        .into_iter()
        .filter_map(|(is, name)| is.then_some(name))
        .collect();
        if kinds.is_empty() {
            "no response".into()
        } else {
            kinds.join(" and ")
        }
    }
}

/// `TxnResponse`.
#[derive(Debug, Deserialize)]
pub(super) struct TxnResponse {
    #[serde(default)]
    header: Option<Header>,
    #[serde(default)]
    succeeded: Option<bool>,
    #[serde(default)]
    responses: Option<Vec<ResponseOp>>,
}

impl TxnResponse {
    /// What the transaction did, checked against the operations it was sent: the branch
    /// that ran must have answered each of its operations, in order, with the matching kind.
    pub(super) fn into_result(self, success: &[Op], failure: &[Op]) -> Result<TxnResult, Error> {
        const WHAT: &str = "txn";
        let revision = store_revision(WHAT, self.header)?;
        let succeeded = self.succeeded.unwrap_or(false);
        let ran = if succeeded { success } else { failure };
        let responses = self.responses.unwrap_or_default();
        if responses.len() != ran.len() {
            return Err(Error::Protocol(format!(
                "{WHAT}: {} responses to the {} operations of the {} branch",
                responses.len(),
                ran.len(),
                if succeeded { "success" } else { "failure" }
            )));
        }
        let mut gets = Vec::new();
        for (i, (op, r)) in ran.iter().zip(responses).enumerate() {
            match (op, r) {
                (
                    Op::Get { .. },
                    ResponseOp {
                        response_range: Some(range),
                        response_put: None,
                        response_delete_range: None,
                        response_txn: None,
                    },
                ) => gets.push(kvs(WHAT, range.kvs)?.into_iter().next()),
                (
                    Op::Put { .. },
                    ResponseOp {
                        response_range: None,
                        response_put: Some(_),
                        response_delete_range: None,
                        response_txn: None,
                    },
                )
                | (
                    Op::Delete { .. },
                    ResponseOp {
                        response_range: None,
                        response_put: None,
                        response_delete_range: Some(_),
                        response_txn: None,
                    },
                ) => {}
                (op, r) => {
                    return Err(Error::Protocol(format!(
                        "{WHAT}: response {i} does not answer its operation: {} for {}",
                        r.kinds(),
                        op.name()
                    )));
                }
            }
        }
        Ok(TxnResult {
            succeeded,
            revision,
            gets,
        })
    }
}

/// `LeaseGrantResponse`.
#[derive(Debug, Deserialize)]
pub(super) struct LeaseGrantResponse {
    #[serde(rename = "ID", default, deserialize_with = "int64")]
    id: i64,
    #[serde(default)]
    error: Option<String>,
}

impl LeaseGrantResponse {
    /// The granted lease's id (never 0: etcd gives no lease that id).
    pub(super) fn into_id(self) -> Result<i64, Error> {
        match (self.error.filter(|e| !e.is_empty()), self.id) {
            (Some(e), _) => Err(Error::Protocol(format!("lease grant: {e}"))),
            (None, 0) => Err(Error::Protocol("lease grant without an ID".into())),
            (None, id) => Ok(id),
        }
    }
}

/// `LeaseKeepAliveResponse`.
#[derive(Debug, Deserialize)]
pub(super) struct LeaseKeepAliveResponse {
    /// What is left of the lease; 0 (left out) once it has expired.
    #[serde(rename = "TTL", default, deserialize_with = "int64")]
    pub(super) ttl: i64,
}

/// One message of a streaming call (watch, keep-alive) as the gateway writes it: the
/// answer in `result`, or an `error` (shown as etcd wrote it, not interpreted).
#[derive(Debug, Deserialize)]
pub(super) struct StreamMessage<T> {
    result: Option<T>,
    #[serde(default)]
    error: Option<serde_json::Value>,
}

impl<T> StreamMessage<T> {
    /// The answer; etcd's error as an [`Error::Server`] from `endpoint`, or a protocol error
    /// when the message carries neither.
    pub(super) fn into_result(self, what: &str, endpoint: &str) -> Result<T, Error> {
        match (self.result, self.error) {
            (_, Some(e)) if !e.is_null() => Err(Error::Server {
                endpoint: endpoint.to_owned(),
                status: 200,
                message: e.to_string(),
            }),
            (Some(t), _) => Ok(t),
            (None, _) => Err(Error::Protocol(format!(
                "{what}: a message with neither a result nor an error"
            ))),
        }
    }
}

/// `mvccpb.Event.EventType`, by name; left out, it is `PUT` (0).
#[derive(Debug, Clone, Copy, Default, Deserialize)]
enum EventType {
    #[default]
    #[serde(rename = "PUT")]
    Put,
    #[serde(rename = "DELETE")]
    Delete,
}

/// `mvccpb.Event`.
#[derive(Debug, Deserialize)]
struct WatchEvent {
    #[serde(rename = "type", default)]
    kind: Option<EventType>,
    #[serde(default)]
    kv: Option<KeyValue>,
    #[serde(default)]
    prev_kv: Option<KeyValue>,
}

/// `WatchResponse`.
#[derive(Debug, Deserialize)]
pub(super) struct WatchResponse {
    #[serde(default)]
    header: Option<Header>,
    #[serde(default)]
    canceled: Option<bool>,
    #[serde(default, deserialize_with = "int64")]
    compact_revision: i64,
    #[serde(default)]
    cancel_reason: Option<String>,
    #[serde(default)]
    events: Option<Vec<WatchEvent>>,
}

impl WatchResponse {
    /// What the message says: changes, or that the watch was cancelled.
    pub(super) fn into_message(self) -> Result<WatchMessage, Error> {
        const WHAT: &str = "watch";
        let Some(header) = self.header else {
            return Err(Error::Protocol(format!("{WHAT}: no response header")));
        };
        let compacted = self.compact_revision;
        if self.canceled.unwrap_or(false) || compacted > 0 {
            return Ok(WatchMessage::Cancelled {
                compacted: (compacted > 0).then_some(compacted),
                reason: self.cancel_reason.unwrap_or_default(),
            });
        }
        let events = self
            .events
            .unwrap_or_default()
            .into_iter()
            .map(|e| {
                let prev = e.prev_kv.map(|p| p.into_kv(WHAT)).transpose()?;
                let Some(kv) = e.kv else {
                    return Err(Error::Protocol(format!("{WHAT}: an event without a key")));
                };
                let kv = kv.into_kv(WHAT)?;
                Ok(match e.kind.unwrap_or_default() {
                    EventType::Delete => Event::Delete {
                        key: kv.key,
                        revision: kv.mod_revision,
                        prev,
                    },
                    EventType::Put => Event::Put { kv, prev },
                })
            })
            .collect::<Result<_, Error>>()?;
        Ok(WatchMessage::Events {
            events,
            revision: header.revision,
        })
    }
}

/// The body of an answer that is not HTTP 200, as the gateway writes it (`message`, or
/// `error` on older gateways).
#[derive(Debug, Default, Deserialize)]
pub(super) struct ErrorBody {
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    error: Option<String>,
}

impl ErrorBody {
    /// etcd's message; for a body that is not the gateway's (a proxy's page, say), the start
    /// of its text.
    pub(super) fn message(bytes: &[u8]) -> String {
        match serde_json::from_slice::<Self>(bytes) {
            Ok(b) => b.message.or(b.error).unwrap_or_default(),
            Err(_) => String::from_utf8_lossy(bytes).chars().take(200).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn range(json: &str) -> Result<(Vec<Kv>, i64), Error> {
        parse::<RangeResponse>("range", json.as_bytes())?.into_kvs()
    }

    fn txn(json: &str, success: &[Op], failure: &[Op]) -> Result<TxnResult, Error> {
        parse::<TxnResponse>("txn", json.as_bytes())?.into_result(success, failure)
    }

    fn watch(json: &str) -> Result<WatchMessage, Error> {
        parse::<StreamMessage<WatchResponse>>("watch", json.as_bytes())?
            .into_result("watch", "e1")?
            .into_message()
    }

    fn get() -> Op {
        Op::Get {
            key: b"foo".to_vec(),
        }
    }

    fn put() -> Op {
        Op::Put {
            key: b"foo".to_vec(),
            value: b"bar".to_vec(),
            lease: None,
        }
    }

    /// The error, which must be a protocol error naming `needle`.
    #[track_caller]
    fn protocol_error<T: std::fmt::Debug>(r: Result<T, Error>, needle: &str) {
        match r {
            Err(Error::Protocol(m)) => assert!(m.contains(needle), "{needle:?} not in {m:?}"),
            other => panic!("expected a protocol error about {needle:?}, got {other:?}"),
        }
    }

    // Well-formed answers, shaped as etcd's gateway documentation shows them
    // (etcd.io/docs/v3.5/dev-guide/api_grpc_gateway).

    const HEADER: &str = r#""header":{"cluster_id":"12585971608760269493","member_id":"13847567121247652255","revision":"2","raft_term":"3"}"#;

    #[test]
    fn reads_a_range_answer() {
        let json = format!(
            r#"{{{HEADER},"kvs":[{{"key":"Zm9v","create_revision":"2","mod_revision":"2","version":"1","value":"YmFy"}}],"count":"1"}}"#
        );
        let (kvs, revision) = range(&json).unwrap();
        assert_eq!(revision, 2);
        assert_eq!(
            kvs,
            vec![Kv {
                key: b"foo".to_vec(),
                value: b"bar".to_vec(),
                mod_revision: 2
            }]
        );
        // No keys: `kvs` and `count` left out.
        assert_eq!(range(&format!("{{{HEADER}}}")).unwrap(), (Vec::new(), 2));
        // An empty value is left out too.
        let (kvs, _) = range(&format!(
            r#"{{{HEADER},"kvs":[{{"key":"Zm9v","create_revision":"2","mod_revision":"2","version":"1"}}]}}"#
        ))
        .unwrap();
        assert!(kvs[0].value.is_empty());
    }

    #[test]
    fn reads_transaction_answers() {
        let put_ok = r#"{"header":{"cluster_id":"12585971608760269493","member_id":"13847567121247652255","revision":"3","raft_term":"2"},"succeeded":true,"responses":[{"response_put":{"header":{"revision":"3"}}}]}"#;
        assert_eq!(
            txn(put_ok, &[put()], &[]).unwrap(),
            TxnResult {
                succeeded: true,
                revision: 3,
                gets: Vec::new()
            }
        );
        let read = r#"{"header":{"cluster_id":"14841639068965178418","member_id":"10276657743932975437","revision":"6","raft_term":"3"},"succeeded":true,"responses":[{"response_range":{"header":{"revision":"6"},"kvs":[{"key":"Zm9v","create_revision":"2","mod_revision":"6","version":"4","value":"YmF6"}],"count":"1"}},{"response_range":{"header":{"revision":"6"}}}]}"#;
        let r = txn(read, &[get(), get()], &[]).unwrap();
        assert_eq!(r.revision, 6);
        assert_eq!(r.gets.len(), 2);
        assert_eq!(r.gets[0].as_ref().map(|k| k.mod_revision), Some(6));
        assert_eq!(r.gets[1], None, "an absent key");
        // A failed compare: `succeeded` left out, the failure branch (none here) ran.
        let failed = r#"{"header":{"revision":"9"}}"#;
        assert_eq!(
            txn(failed, &[put()], &[]).unwrap(),
            TxnResult {
                succeeded: false,
                revision: 9,
                gets: Vec::new()
            }
        );
        let deleted = r#"{"header":{"revision":"10"},"succeeded":true,"responses":[{"response_delete_range":{"header":{"revision":"10"},"deleted":"1"}}]}"#;
        let delete = Op::Delete {
            key: b"foo".to_vec(),
        };
        assert!(txn(deleted, &[delete], &[]).unwrap().succeeded);
    }

    #[test]
    fn reads_lease_answers() {
        let grant: LeaseGrantResponse = parse(
            "grant",
            br#"{"header":{"revision":"2"},"ID":"7587862072907126798","TTL":"3"}"#,
        )
        .unwrap();
        assert_eq!(grant.into_id().unwrap(), 7_587_862_072_907_126_798);
        let alive: StreamMessage<LeaseKeepAliveResponse> = parse(
            "keepalive",
            br#"{"result":{"header":{"revision":"2"},"ID":"7587862072907126798","TTL":"3"}}"#,
        )
        .unwrap();
        assert_eq!(alive.into_result("keepalive", "e1").unwrap().ttl, 3);
        // Expired: TTL 0, left out.
        let expired: StreamMessage<LeaseKeepAliveResponse> = parse(
            "keepalive",
            br#"{"result":{"header":{"revision":"2"},"ID":"7587862072907126798"}}"#,
        )
        .unwrap();
        assert_eq!(expired.into_result("keepalive", "e1").unwrap().ttl, 0);
    }

    #[test]
    fn reads_watch_messages() {
        let created = r#"{"result":{"header":{"cluster_id":"12585971608760269493","member_id":"13847567121247652255","revision":"1","raft_term":"2"},"created":true}}"#;
        assert_eq!(
            watch(created).unwrap(),
            WatchMessage::Events {
                events: Vec::new(),
                revision: 1
            }
        );
        let put = r#"{"result":{"header":{"cluster_id":"12585971608760269493","member_id":"13847567121247652255","revision":"2","raft_term":"2"},"events":[{"kv":{"key":"Zm9v","create_revision":"2","mod_revision":"2","version":"1","value":"YmFy"}}]}}"#;
        let WatchMessage::Events { events, revision } = watch(put).unwrap() else {
            panic!("not events");
        };
        assert_eq!(revision, 2);
        assert_eq!(
            events,
            vec![Event::Put {
                kv: Kv {
                    key: b"foo".to_vec(),
                    value: b"bar".to_vec(),
                    mod_revision: 2
                },
                prev: None
            }]
        );
        let compacted = r#"{"result":{"header":{"revision":"20"},"canceled":true,"compact_revision":"5","cancel_reason":"mvcc: required revision has been compacted"}}"#;
        assert_eq!(
            watch(compacted).unwrap(),
            WatchMessage::Cancelled {
                compacted: Some(5),
                reason: "mvcc: required revision has been compacted".into()
            }
        );
        let error = r#"{"error":{"grpc_code":14,"http_code":503,"message":"etcdserver: no leader","http_status":"Service Unavailable"}}"#;
        match watch(error) {
            Err(Error::Server {
                endpoint, message, ..
            }) => assert!(endpoint == "e1" && message.contains("no leader")),
            other => panic!("{other:?}"),
        }
    }

    // Malformed answers: each an error naming what is wrong, none a panic, none a 0.

    #[test]
    fn a_revision_that_is_not_an_int64_is_an_error_not_0() {
        for (bad, needle) in [
            (r#""revision":"forty-two""#, "forty-two"),
            (r#""revision":"42x""#, "42x"),
            (r#""revision":"""#, "revision"),
            (
                r#""revision":"99999999999999999999""#,
                "99999999999999999999",
            ),
            (r#""revision":18446744073709551615"#, "18446744073709551615"),
            (r#""revision":4.5"#, "floating point"),
            (r#""revision":true"#, "boolean"),
            (r#""revision":{}"#, "map"),
            (r#""revision":["4"]"#, "sequence"),
        ] {
            protocol_error(range(&format!(r#"{{"header":{{{bad}}}}}"#)), needle);
        }
        protocol_error(
            range(&format!(
                r#"{{{HEADER},"kvs":[{{"key":"Zm9v","mod_revision":"7 "}}]}}"#
            )),
            "kvs[0].mod_revision",
        );
        protocol_error(
            watch(r#"{"result":{"header":{},"canceled":true,"compact_revision":"five"}}"#),
            "compact_revision",
        );
        let grant = parse::<LeaseGrantResponse>("grant", br#"{"ID":"0x12","TTL":"3"}"#);
        protocol_error(grant, "ID");
        let ttl = parse::<StreamMessage<LeaseKeepAliveResponse>>(
            "keepalive",
            br#"{"result":{"ID":"1","TTL":"-"}}"#,
        );
        protocol_error(ttl, "TTL");
    }

    #[test]
    fn bad_base64_is_an_error() {
        for bad in ["Zm9v!", "Zm9", "Zm 9v", "Zm9v===", "ü"] {
            protocol_error(
                range(&format!(
                    r#"{{{HEADER},"kvs":[{{"key":"{bad}","mod_revision":"2"}}]}}"#
                )),
                "kvs[0].key",
            );
            protocol_error(
                range(&format!(
                    r#"{{{HEADER},"kvs":[{{"key":"Zm9v","value":"{bad}","mod_revision":"2"}}]}}"#
                )),
                "kvs[0].value",
            );
        }
        protocol_error(
            range(&format!(
                r#"{{{HEADER},"kvs":[{{"key":12,"mod_revision":"2"}}]}}"#
            )),
            "base64",
        );
    }

    #[test]
    fn truncated_or_not_json_answers_are_errors() {
        let whole = format!(
            r#"{{{HEADER},"kvs":[{{"key":"Zm9v","create_revision":"2","mod_revision":"2","version":"1","value":"YmFy"}}],"count":"1"}}"#
        );
        // Every prefix of a good answer is an error (and none panics).
        for end in 0..whole.len() {
            assert!(range(&whole[..end]).is_err(), "{:?}", &whole[..end]);
        }
        for bad in ["", "null", "[]", "42", "\"ok\"", "<html>502</html>"] {
            assert!(range(bad).is_err(), "{bad:?}");
            assert!(txn(bad, &[], &[]).is_err(), "{bad:?}");
            assert!(watch(bad).is_err(), "{bad:?}");
        }
        // Two answers where one is expected.
        protocol_error(range(&format!("{whole}{whole}")), "trailing");
    }

    #[test]
    fn wrong_types_are_errors() {
        protocol_error(range(&format!(r#"{{{HEADER},"kvs":{{}}}}"#)), "kvs");
        protocol_error(range(&format!(r#"{{{HEADER},"kvs":["Zm9v"]}}"#)), "kvs[0]");
        protocol_error(range(r#"{"header":"2"}"#), "header");
        protocol_error(
            txn(
                r#"{"header":{"revision":"3"},"succeeded":"true"}"#,
                &[],
                &[],
            ),
            "succeeded",
        );
        protocol_error(
            txn(
                r#"{"header":{"revision":"3"},"succeeded":true,"responses":[{"response_put":"ok"}]}"#,
                &[put()],
                &[],
            ),
            "response_put",
        );
        protocol_error(
            watch(
                r#"{"result":{"header":{},"events":[{"type":"PATCH","kv":{"key":"Zm9v","mod_revision":"2"}}]}}"#,
            ),
            "PATCH",
        );
        protocol_error(
            watch(r#"{"result":{"header":{},"canceled":1}}"#),
            "canceled",
        );
        protocol_error(
            parse::<LeaseGrantResponse>("grant", br#"{"ID":"5","error":7}"#),
            "error",
        );
    }

    #[test]
    fn missing_structure_is_an_error() {
        protocol_error(range("{}"), "no response header");
        protocol_error(range(r#"{"header":{}}"#), "no store revision");
        protocol_error(
            range(&format!(
                r#"{{{HEADER},"kvs":[{{"value":"YmFy","mod_revision":"2"}}]}}"#
            )),
            "key",
        );
        protocol_error(
            range(&format!(r#"{{{HEADER},"kvs":[{{"key":"Zm9v"}}]}}"#)),
            "without a mod revision",
        );
        protocol_error(txn(r#"{"succeeded":true}"#, &[], &[]), "no response header");
        // Fewer or more responses than operations, or one that does not match its operation.
        let ok =
            r#"{"header":{"revision":"3"},"succeeded":true,"responses":[{"response_range":{}}]}"#;
        protocol_error(
            txn(ok, &[get(), get()], &[]),
            "1 responses to the 2 operations",
        );
        protocol_error(txn(ok, &[], &[]), "1 responses to the 0 operations");
        protocol_error(txn(ok, &[put()], &[]), "does not answer");
        let none = r#"{"header":{"revision":"3"},"succeeded":true,"responses":[{}]}"#;
        protocol_error(txn(none, &[get()], &[]), "does not answer");
        let two = r#"{"header":{"revision":"3"},"succeeded":true,"responses":[{"response_range":{},"response_put":{}}]}"#;
        protocol_error(txn(two, &[get()], &[]), "does not answer");
        // The failure branch is checked when the compares failed.
        let failed = r#"{"header":{"revision":"3"},"responses":[{"response_put":{}}]}"#;
        protocol_error(txn(failed, &[put()], &[get()]), "does not answer");
        protocol_error(
            parse::<LeaseGrantResponse>("grant", br#"{"TTL":"3"}"#)
                .and_then(LeaseGrantResponse::into_id),
            "without an ID",
        );
        protocol_error(
            parse::<LeaseGrantResponse>("grant", br#"{"error":"too many leases"}"#)
                .and_then(LeaseGrantResponse::into_id),
            "too many leases",
        );
        protocol_error(watch(r#"{"result":{"events":[]}}"#), "no response header");
        protocol_error(
            watch(r#"{"result":{"header":{},"events":[{"type":"DELETE"}]}}"#),
            "an event without a key",
        );
        protocol_error(watch("{}"), "neither a result nor an error");
        protocol_error(watch(r#"{"result":null}"#), "neither a result nor an error");
    }

    #[test]
    fn null_reads_as_the_default() {
        // proto3 JSON: `null` is the field's default.
        let (kvs, revision) = range(&format!(
            r#"{{{HEADER},"kvs":[{{"key":"Zm9v","value":null,"mod_revision":"2","lease":null}}],"more":null}}"#
        ))
        .unwrap();
        assert_eq!((kvs[0].value.len(), revision), (0, 2));
        assert_eq!(
            range(&format!(r#"{{{HEADER},"kvs":null}}"#)).unwrap(),
            (Vec::new(), 2)
        );
        let WatchMessage::Events { events, .. } = watch(
            r#"{"result":{"header":{"revision":"3"},"events":[{"type":null,"kv":{"key":"Zm9v","mod_revision":"3"},"prev_kv":null}]}}"#,
        )
        .unwrap() else {
            panic!("not events");
        };
        assert!(matches!(&events[..], [Event::Put { prev: None, .. }]));
    }

    #[test]
    fn error_bodies_give_their_message() {
        assert_eq!(
            ErrorBody::message(
                br#"{"error":"etcdserver: no leader","code":14,"message":"etcdserver: no leader"}"#
            ),
            "etcdserver: no leader"
        );
        assert_eq!(
            ErrorBody::message(br#"{"code":3,"message":"bad key"}"#),
            "bad key"
        );
        assert_eq!(ErrorBody::message(b"<html>503</html>"), "<html>503</html>");
        assert_eq!(ErrorBody::message(br#"{"message":5}"#), r#"{"message":5}"#);
    }
}
