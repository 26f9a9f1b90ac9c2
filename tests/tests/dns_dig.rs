//! The DNS responder against `dig`, over UDP and TCP, with and without EDNS.

#![allow(clippy::unwrap_used)]

use std::net::UdpSocket;
use std::sync::Arc;
use std::time::Duration;

use pserv_core::Store;
use pserv_core::snapshot::EXAMPLE_JSON;
use pserv_dns::server::Service;
use pserv_tests::dns::Dig;
use pserv_tests::have_tool;

fn status(out: &str) -> &str {
    let at = out.find("status: ").expect("dig prints a status") + 8;
    let rest = &out[at..];
    &rest[..rest.find(',').unwrap()]
}

fn flags(out: &str) -> Vec<String> {
    let at = out.find(";; flags: ").unwrap() + 10;
    let rest = &out[at..];
    rest[..rest.find(';').unwrap()]
        .split_whitespace()
        .map(str::to_owned)
        .collect()
}

async fn start(store: Arc<Store>) -> Service {
    Service::bind(&["127.0.0.1:0".parse().unwrap()], store, Arc::default())
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dig_sees_every_rule() {
    if !have_tool("dig") {
        return;
    }
    let store = Arc::new(Store::new());
    store.publish_json(EXAMPLE_JSON.as_bytes()).unwrap();
    let svc = start(store.clone()).await;
    let dig = Dig::new(svc.local[0]);
    let counters = svc.counters();

    tokio::task::spawn_blocking(move || {
        for transport in ["+notcp", "+tcp"] {
            // A and AAAA, answered authoritatively, in the question's case.
            assert_eq!(dig.answers(&[transport, "aaa.maas", "A"]), ["aaa.maas. A 10.20.0.10"]);
            assert_eq!(
                dig.answers(&[transport, "AaA.MaAs", "AAAA"]),
                ["AaA.MaAs. AAAA fd00:20::10"]
            );
            let out = dig.run(&[transport, "bbb.maas", "A"]);
            assert_eq!(status(&out), "NOERROR");
            assert!(flags(&out).contains(&"aa".to_owned()), "{out}");
            assert!(!flags(&out).contains(&"ra".to_owned()), "never claims recursion: {out}");

            // NODATA: the name exists (ccc has no reservation and no lease), empty answer, SOA.
            let out = dig.run(&[transport, "ccc.maas", "A"]);
            assert_eq!(status(&out), "NOERROR");
            assert!(out.contains("ANSWER: 0, AUTHORITY: 1"), "{out}");
            assert!(out.contains("maas.\t\t\t30\tIN\tSOA\tpserv.maas. admin.maas. 1 "), "{out}");
            let out = dig.run(&[transport, "bbb.maas", "MX"]);
            assert_eq!(status(&out), "NOERROR");
            assert!(out.contains("ANSWER: 0, AUTHORITY: 1"), "{out}");

            // NXDOMAIN with the SOA (negative TTL = SOA minimum = 30).
            let out = dig.run(&[transport, "nope.maas", "A"]);
            assert_eq!(status(&out), "NXDOMAIN");
            assert!(out.contains("IN\tSOA\tpserv.maas. admin.maas. 1 3600 600 86400 30"), "{out}");

            // Apex: SOA (serial = generation) and NS.
            assert_eq!(
                dig.answers(&[transport, "maas", "SOA"]),
                ["maas. SOA pserv.maas. admin.maas. 1 3600 600 86400 30"]
            );
            assert_eq!(dig.answers(&[transport, "maas", "NS"]), ["maas. NS pserv.maas."]);

            // Reverse, IPv4 and IPv6.
            assert_eq!(
                dig.answers(&[transport, "-x", "10.20.0.11"]),
                ["11.0.20.10.in-addr.arpa. PTR bbb.maas."]
            );
            assert_eq!(
                dig.answers(&[transport, "-x", "fd00:20::10"]),
                ["0.1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.2.0.0.0.0.d.f.ip6.arpa. PTR aaa.maas."]
            );
            let out = dig.run(&[transport, "-x", "10.20.9.9"]);
            assert_eq!(status(&out), "NXDOMAIN");
            // An empty non-terminal inside a reverse zone exists (NODATA, not NXDOMAIN).
            let out = dig.run(&[transport, "0.20.10.in-addr.arpa", "PTR"]);
            assert_eq!(status(&out), "NOERROR");

            // ANY: minimal (RFC 8482) but useful.
            assert_eq!(
                dig.answers(&[transport, "aaa.maas", "ANY"]),
                ["aaa.maas. A 10.20.0.10", "aaa.maas. AAAA fd00:20::10"]
            );

            // Outside our zones: REFUSED, never recursion.
            let out = dig.run(&[transport, "example.com", "A"]);
            assert_eq!(status(&out), "REFUSED");
            assert!(!flags(&out).contains(&"aa".to_owned()));
            // Zone transfers are refused.
            let out = dig.run(&[transport, "maas", "AXFR"]);
            assert!(out.contains("Transfer failed") || out.contains("REFUSED"), "{out}");
        }

        // EDNS: the OPT record is echoed with the client's size; without EDNS there is none.
        let out = dig.run(&["+bufsize=1400", "aaa.maas"]);
        assert!(out.contains("; EDNS: version: 0, flags:; udp: 1400"), "{out}");
        let out = dig.run(&["+noedns", "aaa.maas"]);
        assert!(!out.contains("OPT PSEUDOSECTION"), "{out}");
        assert_eq!(status(&out), "NOERROR");
        // EDNS version 1: BADVERS.
        let out = dig.run(&["+edns=1", "+noednsnegotiation", "aaa.maas"]);
        assert_eq!(status(&out), "BADVERS");
    })
    .await
    .unwrap();
    assert!(counters.refused.load(std::sync::atomic::Ordering::Relaxed) >= 2);
    svc.shutdown().await;
}

/// A query with two questions (FORMERR) and an opcode other than QUERY (NOTIMP), sent raw.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn formerr_and_notimp() {
    let store = Arc::new(Store::new());
    store.publish_json(EXAMPLE_JSON.as_bytes()).unwrap();
    let svc = start(store).await;
    let addr = svc.local[0];
    tokio::task::spawn_blocking(move || {
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        let q = b"\x03aaa\x04maas\x00\x00\x01\x00\x01";
        // id 0x1234, RD clear, QDCOUNT 2
        let mut two = vec![0x12, 0x34, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0];
        two.extend_from_slice(q);
        two.extend_from_slice(q);
        sock.send_to(&two, addr).unwrap();
        let mut buf = [0u8; 512];
        let n = sock.recv(&mut buf).unwrap();
        assert!(n >= 12);
        assert_eq!(&buf[..2], &[0x12, 0x34]);
        assert_eq!(buf[3] & 0x0f, 1, "FORMERR");
        // opcode 2 (STATUS)
        let mut status = vec![0x43, 0x21, 2 << 3, 0, 0, 1, 0, 0, 0, 0, 0, 0];
        status.extend_from_slice(q);
        sock.send_to(&status, addr).unwrap();
        let n = sock.recv(&mut buf).unwrap();
        assert!(n >= 12);
        assert_eq!(&buf[..2], &[0x43, 0x21]);
        assert_eq!(buf[3] & 0x0f, 4, "NOTIMP");
    })
    .await
    .unwrap();
    svc.shutdown().await;
}

/// A swap is visible to the next query, and the SOA serial follows the generation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn swap_is_seen_by_the_next_query() {
    if !have_tool("dig") {
        return;
    }
    let store = Arc::new(Store::new());
    store.publish_json(EXAMPLE_JSON.as_bytes()).unwrap();
    let svc = start(store.clone()).await;
    let dig = Dig::new(svc.local[0]);
    let s2 = store.clone();
    tokio::task::spawn_blocking(move || {
        assert_eq!(dig.answers(&["aaa.maas"]), ["aaa.maas. A 10.20.0.10"]);
        // Generation 2: aaa moves and is renamed to zzz.
        let next = EXAMPLE_JSON
            .replace("\"generation\": 1", "\"generation\": 2")
            .replace("10.20.0.10", "10.20.0.77")
            .replace("\"hostname\": \"aaa\"", "\"hostname\": \"zzz\"");
        s2.publish_json(next.as_bytes()).unwrap();
        assert_eq!(dig.answers(&["zzz.maas"]), ["zzz.maas. A 10.20.0.77"]);
        assert_eq!(status(&dig.run(&["aaa.maas"])), "NXDOMAIN");
        assert_eq!(
            dig.answers(&["-x", "10.20.0.77"]),
            ["77.0.20.10.in-addr.arpa. PTR zzz.maas."]
        );
        assert!(dig.answers(&["maas", "SOA"])[0].contains("admin.maas. 2 3600"));
    })
    .await
    .unwrap();
    svc.shutdown().await;
}

/// Names outside our zones go to the snapshot's upstreams when it lists some (UDP and TCP),
/// relayed without the AA bit; without upstreams they are REFUSED (see dig_sees_every_rule).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwards_to_upstreams() {
    if !have_tool("dig") {
        return;
    }
    // The upstream: another pserv, authoritative for "uptest".
    let up_store = Arc::new(Store::new());
    up_store
        .publish_json(EXAMPLE_JSON.replace("maas", "uptest").as_bytes())
        .unwrap();
    let upstream = start(up_store).await;
    let up_addr = upstream.local[0];

    let store = Arc::new(Store::new());
    let with_upstream = EXAMPLE_JSON.replace(
        "\"upstreams\": []",
        &format!("\"upstreams\": [\"{up_addr}\"]"),
    );
    store.publish_json(with_upstream.as_bytes()).unwrap();
    let svc = start(store).await;
    let dig = Dig::new(svc.local[0]);
    tokio::task::spawn_blocking(move || {
        for transport in ["+notcp", "+tcp"] {
            let out = dig.run(&[transport, "aaa.uptest", "A"]);
            assert_eq!(status(&out), "NOERROR", "{out}");
            assert!(
                out.contains("aaa.uptest.\t\t30\tIN\tA\t10.20.0.10"),
                "{out}"
            );
            assert!(
                !flags(&out).contains(&"aa".to_owned()),
                "relayed, not ours: {out}"
            );
            let out = dig.run(&[transport, "nope.uptest", "A"]);
            assert_eq!(status(&out), "NXDOMAIN", "{out}");
            // Types the UDP fast path does not take are forwarded too: the upstream's SOA
            // answers (NODATA, its SOA in authority), not our REFUSED.
            let out = dig.run(&[transport, "aaa.uptest", "MX"]);
            assert_eq!(status(&out), "NOERROR", "{out}");
            assert!(out.contains("IN\tSOA\tpserv.uptest."), "{out}");
            // Our own zones are still answered by us.
            assert_eq!(
                dig.answers(&[transport, "bbb.maas"]),
                ["bbb.maas. A 10.20.0.11"]
            );
        }
    })
    .await
    .unwrap();
    svc.shutdown().await;
    upstream.shutdown().await;
}
