//! A boot progress request (issue 21): method, query string, content type and body ->
//! pserv_boot::http::progress::parse. Invariants: never a panic; a report accepted has a
//! stage of 1..=128 characters without control characters and a message of at most 2 KiB.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pserv_boot::http::progress::{MAX_MESSAGE, MAX_STAGE, parse};

fuzz_target!(|data: &[u8]| {
    // First byte: the method and the content type; then the query and the body, split at
    // the first NUL.
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    let method = ["GET", "POST", "PUT", "HEAD"][usize::from(sel & 3)];
    let content_type = [
        None,
        Some("application/json"),
        Some("application/x-www-form-urlencoded"),
        Some("text/plain; charset=utf-8"),
    ][usize::from(sel >> 2 & 3)];
    let (query, body) = match rest.iter().position(|&b| b == 0) {
        Some(i) => (&rest[..i], &rest[i + 1..]),
        None => (rest, &[][..]),
    };
    let query = std::str::from_utf8(query).ok();
    if let Ok(r) = parse(method, query, content_type, body) {
        assert!(!r.stage.is_empty() && r.stage.len() <= MAX_STAGE);
        assert!(!r.stage.chars().any(char::is_control));
        assert!(r.message.is_none_or(|m| m.len() <= MAX_MESSAGE));
        assert!(method == "GET" || method == "POST");
    }
});
