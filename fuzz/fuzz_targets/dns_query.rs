//! DNS query bytes -> the responder (fast path, then hickory slow path) on the example table,
//! as a UDP datagram and as a TCP message. Invariants: never a panic; a reply parses, is a
//! response, echoes the id and the question, and claims authority (AA) only for names inside
//! the table's zones; TCP decides as UDP does, answers the same bytes unless UDP truncated,
//! and never sets TC.
#![no_main]

use std::sync::{Arc, OnceLock};

use hickory_proto::op::{Message, MessageType};
use libfuzzer_sys::fuzz_target;
use pserv_core::Store;
use pserv_core::snapshot::EXAMPLE_JSON;
use pserv_dns::respond::{Action, Responder};

fn responder() -> &'static Responder {
    static R: OnceLock<Responder> = OnceLock::new();
    R.get_or_init(|| {
        let store = Arc::new(Store::new());
        store
            .publish_json(EXAMPLE_JSON.as_bytes())
            .expect("the example is valid");
        Responder::new(store, Arc::default())
    })
}

fuzz_target!(|data: &[u8]| {
    let r = responder();
    let table = r.store().load();
    let zones = r.zones_for(&table);
    let mut out = Vec::new();
    let udp = r.respond_udp(&table, &zones, data, &mut out);
    // Over TCP: the same decision; the same bytes unless UDP had to truncate; never TC.
    let mut tcp = Vec::new();
    assert_eq!(r.respond_tcp(&table, &zones, data, &mut tcp), udp);
    if udp != Action::Send {
        return;
    }
    if out.len() >= 3 && out[2] & 0x02 == 0 {
        assert_eq!(tcp, out, "TCP differs from an untruncated UDP answer");
    }
    assert!(tcp.len() < 3 || tcp[2] & 0x02 == 0, "TC over TCP");
    assert!(out.len() >= 12);
    assert_eq!(&out[..2], &data[..2], "id echoed");
    assert!(out[2] & 0x80 != 0, "QR set");
    let Ok(reply) = Message::from_vec(&out) else {
        // A FORMERR built for an undecodable query is a bare header: nothing more to check.
        assert_eq!(out.len(), 12);
        return;
    };
    assert_eq!(reply.metadata.message_type, MessageType::Response);
    if let Ok(query) = Message::from_vec(data) {
        assert_eq!(reply.queries, query.queries, "question echoed");
        if reply.metadata.authoritative {
            let q = &query.queries[0];
            assert!(
                zones.find(q.name()).is_some(),
                "AA only inside our zones: {}",
                q.name()
            );
        }
    }
});
