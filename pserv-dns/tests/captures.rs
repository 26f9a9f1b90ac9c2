//! The queries real resolvers sent pserv (dig, kdig, captured by `fuzz/capture/capture.sh`
//! into the fuzz seed corpus), replayed against the bundled example: each gets the answer the
//! operator who typed it expects.

#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::sync::Arc;

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::{DNSClass, RData, RecordType};
use pserv_core::Store;
use pserv_core::snapshot::EXAMPLE_JSON;
use pserv_dns::respond::{Action, Responder};

fn seeds() -> Vec<(String, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/dns_query");
    let mut v: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("seed-capture-")
        })
        .map(|p| {
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                std::fs::read(&p).unwrap(),
            )
        })
        .collect();
    v.sort();
    v
}

#[test]
fn dig_and_kdig_queries_get_the_answers_an_operator_expects() {
    let store = Arc::new(Store::new());
    store.publish_json(EXAMPLE_JSON.as_bytes()).unwrap();
    let r = Responder::new(store, Arc::default());
    let table = r.store().load();
    let zones = r.zones_for(&table);
    let seeds = seeds();
    assert!(
        seeds.iter().filter(|(n, _)| n.contains("-dig-")).count() >= 15
            && seeds.iter().filter(|(n, _)| n.contains("-kdig-")).count() >= 3,
        "captured seeds missing: {}",
        seeds.len()
    );
    for (name, bytes) in seeds {
        let q = Message::from_vec(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
        let mut out = Vec::new();
        assert_eq!(
            r.respond_udp(&table, &zones, &bytes, &mut out),
            Action::Send,
            "{name}"
        );
        let a = Message::from_vec(&out).unwrap_or_else(|e| panic!("{name}: reply: {e}"));
        assert_eq!(a.metadata.id, q.metadata.id, "{name}");
        assert_eq!(a.queries, q.queries, "{name}: question echoed, case kept");
        assert_eq!(a.edns.is_some(), q.edns.is_some(), "{name}: EDNS echoed");
        let query = &q.queries[0];
        let qname = query.name().to_ascii().to_ascii_lowercase();
        let code = a.metadata.response_code;
        if q.edns.as_ref().is_some_and(|e| e.version() > 0) {
            // BADVERS; hickory names 16 BADSIG too.
            assert_eq!(u16::from(code), 16, "{name}: {code:?}");
            continue;
        }
        let ours = zones.find(query.name()).is_some();
        if query.query_class() != DNSClass::IN || !ours {
            // version.bind CH, example.com: not ours, and no upstream is configured.
            assert!(!a.metadata.authoritative, "{name}");
            assert!(
                matches!(code, ResponseCode::Refused | ResponseCode::NotImp),
                "{name}: {code:?}"
            );
            continue;
        }
        assert!(a.metadata.authoritative, "{name}: {qname}");
        let data: Vec<String> = a.answers.iter().map(|rr| rr.data.to_string()).collect();
        match (qname.as_str(), query.query_type()) {
            ("nope.maas.", _) => {
                assert_eq!(code, ResponseCode::NXDomain, "{name}");
                continue;
            }
            ("aaa.maas.", RecordType::A) => assert_eq!(data, ["10.20.0.10"], "{name}"),
            ("aaa.maas.", RecordType::AAAA) => assert_eq!(data, ["fd00:20::10"], "{name}"),
            ("aaa.maas.", RecordType::ANY) => assert_eq!(data.len(), 2, "{name}: {data:?}"),
            (n, RecordType::PTR) if n == "10.0.20.10.in-addr.arpa." || n.ends_with("ip6.arpa.") => {
                assert_eq!(data, ["aaa.maas."], "{name}");
            }
            (_, RecordType::SOA) => assert!(
                matches!(a.answers[0].data, RData::SOA(_)),
                "{name}: {data:?}"
            ),
            (_, RecordType::NS) => assert_eq!(data, ["pserv.maas."], "{name}"),
            _ => {
                // A type the name does not have (TXT, MX), or a known node without an
                // address: NODATA, with the SOA.
                assert!(a.answers.is_empty(), "{name}: {data:?}");
                assert!(matches!(a.authorities[0].data, RData::SOA(_)), "{name}");
            }
        }
        assert_eq!(code, ResponseCode::NoError, "{name}");
    }
}
