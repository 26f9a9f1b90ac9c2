//! A control-API snapshot body (PUT /v1/snapshot) -> Store::publish_json on a store already
//! serving the example. Invariants: never a panic; a rejected body changes nothing; an
//! accepted one is served whole, with a higher generation.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pserv_core::Store;
use pserv_core::snapshot::EXAMPLE_JSON;

fuzz_target!(|data: &[u8]| {
    let store = Store::new();
    store
        .publish_json(EXAMPLE_JSON.as_bytes())
        .expect("the example is valid");
    let before = store.load_full();
    match store.publish_json(data) {
        Ok(p) => {
            let now = store.load();
            assert!(p.generation > before.generation());
            assert_eq!(now.generation(), p.generation);
            assert_eq!(now.node_count(), p.nodes);
        }
        Err(_) => {
            let now = store.load_full();
            assert!(
                std::sync::Arc::ptr_eq(&before, &now),
                "a rejected body changed the table"
            );
        }
    }
});
