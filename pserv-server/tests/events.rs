//! `/v1/events` over a real socket: every event has an id; a listener that disconnects and
//! comes back with `Last-Event-ID` (or `?since=`) gets exactly what it missed, then the live
//! stream; a resume older than the buffer, or from another run, is said in the stream.

#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream, UdpSocket};
use std::time::Duration;

use pserv_server::config::{File, Overrides};
use serde_json::{Value, json};

fn config(state: &std::path::Path, file: File) -> pserv_server::Config {
    pserv_server::Config::resolve(
        file,
        Overrides {
            dns_listen: vec!["127.0.0.1:0".parse().unwrap()],
            dhcp_listen: Some("127.0.0.1:0".parse().unwrap()),
            control_listen: Some("127.0.0.1:0".parse().unwrap()),
            state_dir: Some(state.to_owned()),
            ..Overrides::default()
        },
    )
    .unwrap()
}

/// The bundled example at another generation.
fn generation(g: u64) -> Vec<u8> {
    pserv_core::snapshot::EXAMPLE_JSON
        .replace("\"generation\": 1", &format!("\"generation\": {g}"))
        .into_bytes()
}

/// Pushes the example at generation `g` (`PUT /v1/snapshot`); asserts a 200.
fn push(control: SocketAddr, g: u64) {
    let body = generation(g);
    let mut s = TcpStream::connect(control).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(
        s,
        "PUT /v1/snapshot HTTP/1.1\r\nHost: pserv\r\nConnection: close\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .unwrap();
    s.write_all(&body).unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

/// One event as the stream wrote it.
#[derive(Debug, Clone)]
struct Sse {
    id: String,
    kind: String,
    data: Value,
}

impl Sse {
    /// The id's number in its run.
    fn seq(&self) -> u64 {
        self.id.rsplit_once('-').unwrap().1.parse().unwrap()
    }
}

/// A raw HTTP/1.1 client of the event stream (chunked body, de-chunked here).
struct Stream {
    r: BufReader<TcpStream>,
    /// De-chunked text not yet split into events.
    text: String,
}

impl Stream {
    /// Opens `path` with extra request headers; the status and, when not 200, the body.
    fn open(control: SocketAddr, path: &str, headers: &str) -> Result<Self, (u16, String)> {
        let mut s = TcpStream::connect(control).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: pserv\r\nConnection: close\r\nAccept: text/event-stream\r\n{headers}\r\n"
        )
        .unwrap();
        let mut r = BufReader::new(s);
        let mut status = String::new();
        r.read_line(&mut status).unwrap();
        let code: u16 = status.split(' ').nth(1).unwrap().parse().unwrap();
        loop {
            let mut line = String::new();
            r.read_line(&mut line).unwrap();
            if line == "\r\n" {
                break;
            }
        }
        if code != 200 {
            let mut body = String::new();
            let _ = r.read_to_string(&mut body);
            return Err((code, body));
        }
        Ok(Self {
            r,
            text: String::new(),
        })
    }

    /// The next event (keep-alive comments skipped), or `None` when none comes within `wait`.
    fn next_within(&mut self, wait: Duration) -> Option<Sse> {
        self.r.get_ref().set_read_timeout(Some(wait)).unwrap();
        loop {
            if let Some(end) = self.text.find("\n\n") {
                let block: String = self.text.drain(..end + 2).collect();
                let (mut id, mut kind, mut data) = (None, None, None);
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("id: ") {
                        id = Some(v.to_owned());
                    } else if let Some(v) = line.strip_prefix("event: ") {
                        kind = Some(v.to_owned());
                    } else if let Some(v) = line.strip_prefix("data: ") {
                        data = Some(serde_json::from_str(v).unwrap());
                    }
                }
                let Some(data) = data else { continue };
                return Some(Sse {
                    id: id.expect("every event has an id"),
                    kind: kind.unwrap(),
                    data,
                });
            }
            // One chunk: its size line, its bytes, CRLF.
            let mut size = String::new();
            match self.r.read_line(&mut size) {
                Ok(0) => panic!("the stream ended"),
                Ok(_) => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    assert!(size.is_empty(), "timed out inside a chunk");
                    return None;
                }
                Err(e) => panic!("{e}"),
            }
            let n = usize::from_str_radix(size.trim(), 16).unwrap();
            let mut chunk = vec![0; n + 2];
            self.r.read_exact(&mut chunk).unwrap();
            self.text
                .push_str(std::str::from_utf8(&chunk[..n]).unwrap());
        }
    }

    fn next(&mut self) -> Sse {
        self.next_within(Duration::from_secs(5))
            .expect("an event within 5 s")
    }

    /// Asserts nothing more is streamed for a moment.
    fn quiet(&mut self) {
        if let Some(e) = self.next_within(Duration::from_millis(300)) {
            panic!("unexpected event {e:?}");
        }
    }
}

/// Runs blocking client code off the runtime.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listener_that_reconnects_gets_exactly_the_events_it_missed_then_the_live_ones() {
    let dir = tempfile::tempdir().unwrap();
    let server = pserv_server::serve(config(dir.path(), File::default()))
        .await
        .unwrap();
    let control = server.control;
    let publish = move |g| push(control, g);

    let (p, c) = (publish, control);
    let boot = blocking(move || {
        // Live only without an id: the first publish (generation 1, event 1) is not replayed.
        let mut live = Stream::open(c, "/v1/events", "").unwrap();
        p(2);
        let e = live.next();
        assert_eq!((e.kind.as_str(), &e.data), ("snapshot", &json!({"event": "snapshot", "generation": 2, "nodes": 3})));
        assert_eq!(e.seq(), 2);
        live.quiet();
        let boot = e.id.rsplit_once('-').unwrap().0.to_owned();
        drop(live);

        // Missed while away: generations 3 and 4.
        p(3);
        p(4);
        // EventSource resends its last id; the URL keeps the `since` it was opened with (older):
        // the header wins.
        let mut back = Stream::open(
            c,
            &format!("/v1/events?since={boot}-1"),
            &format!("Last-Event-ID: {}\r\n", e.id),
        )
        .unwrap();
        let replayed: Vec<_> = (0..2).map(|_| back.next()).collect();
        // Then live, with no hole and no repeat between the replay and the live stream.
        p(5);
        let then = back.next();
        back.quiet();
        let got: Vec<_> = replayed
            .iter()
            .chain([&then])
            .map(|e| (e.id.clone(), e.data["generation"].as_u64().unwrap()))
            .collect();
        assert_eq!(
            got,
            [(format!("{boot}-3"), 3), (format!("{boot}-4"), 4), (format!("{boot}-5"), 5)]
        );

        // `?since=0`: everything kept, from the first publish on.
        let mut all = Stream::open(c, "/v1/events?since=0", "").unwrap();
        let gens: Vec<_> = (0..5)
            .map(|_| {
                let e = all.next();
                (e.seq(), e.data["generation"].as_u64().unwrap())
            })
            .collect();
        assert_eq!(gens, [(1, 1), (2, 2), (3, 3), (4, 4), (5, 5)]);
        all.quiet();

        // An id of another run: said so, then everything kept.
        let mut other = Stream::open(c, "/v1/events", "Last-Event-ID: 1-3\r\n").unwrap();
        let gap = other.next();
        assert_eq!(gap.kind, "gap");
        assert_eq!(
            gap.data,
            json!({"event": "gap", "reason": "restart", "since": "1-3", "oldest": format!("{boot}-1"), "missed": null})
        );
        assert_eq!(gap.id, format!("{boot}-0"));
        assert_eq!(other.next().data["generation"], 1);
        boot
    })
    .await;

    // A kind filter: only the lease bound by a DHCP exchange, not the snapshots around it.
    let dhcp = server.dhcp;
    let ip = blocking(move || {
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        pserv_tests::dhcp::relayed_dora(
            &sock,
            dhcp,
            [2, 0, 0, 0, 0, 0x42],
            Ipv4Addr::new(10, 20, 0, 1),
            vec![],
        )
        .expect("an ACK")
    })
    .await;
    let p = publish;
    blocking(move || {
        let mut bound =
            Stream::open(control, "/v1/events?since=0&kind=bound,released", "").unwrap();
        let e = bound.next();
        assert_eq!(
            (e.kind.as_str(), e.data["ip"].as_str()),
            ("bound", Some(ip.to_string().as_str()))
        );
        assert_eq!(e.seq(), 6, "numbered among every event");
        p(6);
        bound.quiet();

        // Refused: ids pserv never gives, unknown kinds, unknown parameters.
        for (path, headers, why) in [
            ("/v1/events?since=42", "", "not an event id"),
            (
                "/v1/events",
                "Last-Event-ID: yesterday\r\n",
                "not an event id",
            ),
            ("/v1/events?kind=snapshot,bonud", "", "unknown event kind"),
            ("/v1/events?snice=0", "", "snice"),
        ] {
            let Err((code, body)) = Stream::open(control, path, headers) else {
                panic!("{path} {headers} was accepted");
            };
            assert_eq!(code, 400, "{path}: {body}");
            assert!(body.contains(why), "{path}: {body}");
        }
    })
    .await;
    let _ = boot;
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resume_older_than_the_buffer_is_said_in_the_stream() {
    let dir = tempfile::tempdir().unwrap();
    let file: File = toml::from_str("events_buffer = 2").unwrap();
    let server = pserv_server::serve(config(dir.path(), file)).await.unwrap();
    // Events 1 (the first publish) to 6; the buffer keeps 5 and 6.
    for g in 2..=6 {
        server.publish_json(&generation(g)).unwrap();
    }
    let control = server.control;
    blocking(move || {
        let mut all = Stream::open(control, "/v1/events?since=0", "").unwrap();
        let first = all.next();
        assert_eq!((first.seq(), &first.data["generation"]), (5, &json!(5)));
        let boot = first.id.rsplit_once('-').unwrap().0.to_owned();

        let mut s = Stream::open(
            control,
            "/v1/events",
            &format!("Last-Event-ID: {boot}-1\r\n"),
        )
        .unwrap();
        let gap = s.next();
        assert_eq!(gap.kind, "gap");
        assert_eq!(
            gap.data,
            json!({"event": "gap", "reason": "expired", "since": format!("{boot}-1"),
                   "oldest": format!("{boot}-5"), "missed": 3})
        );
        // Its id is the position before the oldest kept: resuming from it reports nothing again.
        assert_eq!(gap.id, format!("{boot}-4"));
        let kept: Vec<_> = (0..2)
            .map(|_| s.next().data["generation"].as_u64().unwrap())
            .collect();
        assert_eq!(kept, [5, 6]);
        s.quiet();
        let mut again = Stream::open(
            control,
            "/v1/events",
            &format!("Last-Event-ID: {}\r\n", gap.id),
        )
        .unwrap();
        assert_eq!(again.next().data["generation"], 5);

        let mut metrics = String::new();
        let mut m = TcpStream::connect(control).unwrap();
        write!(
            m,
            "GET /metrics HTTP/1.1\r\nHost: pserv\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        m.read_to_string(&mut metrics).unwrap();
        let sample = |name: &str| pserv_tests::metric(&metrics, name);
        assert_eq!(sample("pserv_events_total "), 6, "{metrics}");
        assert_eq!(sample("pserv_events_buffered "), 2, "{metrics}");
        assert_eq!(
            sample("pserv_events_gaps_total{reason=\"expired\"} "),
            1,
            "{metrics}"
        );
        assert!(sample("pserv_events_listeners ") >= 1, "{metrics}");
    })
    .await;
    server.shutdown().await.unwrap();
}

/// `?batch_ms=`: events that come within the wait after one arrive with it, in one write.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_within_batch_ms_arrive_in_one_write() {
    let dir = tempfile::tempdir().unwrap();
    let server = pserv_server::serve(config(dir.path(), File::default()))
        .await
        .unwrap();
    let control = server.control;
    blocking(move || {
        let mut s = TcpStream::connect(control).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        write!(
            s,
            "GET /v1/events?batch_ms=1000&kind=snapshot HTTP/1.1\r\nHost: pserv\r\n\r\n"
        )
        .unwrap();
        let mut seen = Vec::new();
        let mut buf = [0u8; 65536];
        while !String::from_utf8_lossy(&seen).contains("\r\n\r\n") {
            let n = s.read(&mut buf).unwrap();
            assert!(n > 0, "closed");
            seen.extend_from_slice(&buf[..n]);
        }
        let head = String::from_utf8_lossy(&seen).into_owned();
        assert!(head.contains("content-type: text/event-stream"), "{head}");
        let (_, body) = head.split_once("\r\n\r\n").unwrap();
        assert!(body.is_empty(), "nothing before the pushes: {body}");
        for g in 2..=4 {
            push(control, g);
        }
        // One read: the three snapshots, written together a second after the first.
        let n = s.read(&mut buf).unwrap();
        let chunk = String::from_utf8_lossy(&buf[..n]);
        assert_eq!(chunk.matches("event: snapshot").count(), 3, "{chunk}");
        for g in 2..=4 {
            assert!(chunk.contains(&format!("\"generation\":{g}")), "{chunk}");
        }
    })
    .await;
    server.shutdown().await.unwrap();
}
