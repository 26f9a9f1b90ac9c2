//! HTTP boot: the boot tree over HTTP, on its own listener (read only, no token, apart from
//! the control API).
//!
//! [`plan`] decides a file response as a pure function: (method, Range header, file size) ->
//! what to send. [`service`] is the thin listener around it: it opens the name in the virtual
//! tree, writes the headers [`plan`] gives and sends the byte range, from memory for boot files
//! a rack fetches together (`cache`) or streamed from disk. Never a redirect: UEFI HTTP boot
//! clients do not follow them (a directory is 404, not a 301 to its slash).
//!
//! Ranges (RFC 9110 §14): one `bytes=` range in any of its three forms (`a-b`, `a-`, `-n`);
//! a range that starts past the end is 416 with `Content-Range: bytes */size`; a header that is
//! not one valid byte range (several ranges, another unit, garbage) is ignored and the whole
//! file is sent, as RFC 9110 permits.

mod cache;
pub mod progress;
pub mod service;

pub use service::{OnProgress, OnServed, Progress, Served, start};

/// What to answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plan {
    /// Send bytes `start..start + len` of the file (the whole file for 200).
    Bytes {
        /// 200 or 206.
        status: u16,
        /// First byte.
        start: u64,
        /// How many (the Content-Length).
        len: u64,
        /// The file's size (for Content-Range).
        size: u64,
        /// False for HEAD: the headers only.
        body: bool,
    },
    /// 416: the range starts past the end.
    Unsatisfiable {
        /// The file's size (for `Content-Range: bytes */size`).
        size: u64,
    },
    /// 405: only GET and HEAD.
    MethodNotAllowed,
}

impl Plan {
    /// The `Content-Range` header value, where one is due.
    pub fn content_range(&self) -> Option<String> {
        match *self {
            Self::Bytes {
                status: 206,
                start,
                len,
                size,
                ..
            } => Some(format!("bytes {start}-{}/{size}", start + len - 1)),
            Self::Unsatisfiable { size } => Some(format!("bytes */{size}")),
            _ => None,
        }
    }
}

/// Decides the answer for `method` with an optional `Range` header on a file of `size` bytes.
pub fn plan(method: &str, range: Option<&str>, size: u64) -> Plan {
    let body = match method {
        "GET" => true,
        "HEAD" => false,
        _ => return Plan::MethodNotAllowed,
    };
    let whole = Plan::Bytes {
        status: 200,
        start: 0,
        len: size,
        size,
        body,
    };
    let Some(spec) = range.and_then(|r| r.trim().strip_prefix("bytes=")) else {
        return whole;
    };
    let spec = spec.trim();
    if spec.contains(',') {
        return whole;
    }
    let Some((a, b)) = spec.split_once('-') else {
        return whole;
    };
    let num = |s: &str| -> Option<u64> {
        let s = s.trim();
        (!s.is_empty() && s.bytes().all(|c| c.is_ascii_digit()))
            .then(|| s.parse().ok())
            .flatten()
    };
    let (start, end) = match (a.trim().is_empty(), num(a), num(b)) {
        // -n: the last n bytes.
        (true, _, Some(n)) => {
            if n == 0 {
                return Plan::Unsatisfiable { size };
            }
            (size.saturating_sub(n), size.saturating_sub(1))
        }
        // a-: from a to the end.
        (false, Some(a), None) if b.trim().is_empty() => (a, size.saturating_sub(1)),
        // a-b.
        (false, Some(a), Some(b)) if a <= b => (a, b.min(size.saturating_sub(1))),
        _ => return whole,
    };
    if start >= size {
        return Plan::Unsatisfiable { size };
    }
    Plan::Bytes {
        status: 206,
        start,
        len: end - start + 1,
        size,
        body,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn bytes(status: u16, start: u64, len: u64) -> Plan {
        Plan::Bytes {
            status,
            start,
            len,
            size: 1000,
            body: true,
        }
    }

    #[test]
    fn ranges_in_their_three_forms() {
        assert_eq!(plan("GET", None, 1000), bytes(200, 0, 1000));
        assert_eq!(plan("GET", Some("bytes=0-99"), 1000), bytes(206, 0, 100));
        assert_eq!(plan("GET", Some("bytes=900-"), 1000), bytes(206, 900, 100));
        assert_eq!(plan("GET", Some("bytes=-10"), 1000), bytes(206, 990, 10));
        assert_eq!(plan("GET", Some("bytes=-5000"), 1000), bytes(206, 0, 1000));
        assert_eq!(
            plan("GET", Some("bytes=990-5000"), 1000),
            bytes(206, 990, 10)
        );
        assert_eq!(
            plan("GET", Some("bytes=0-99"), 1000)
                .content_range()
                .as_deref(),
            Some("bytes 0-99/1000")
        );
    }

    #[test]
    fn past_the_end_is_416_and_nonsense_is_ignored() {
        assert_eq!(
            plan("GET", Some("bytes=1000-"), 1000),
            Plan::Unsatisfiable { size: 1000 }
        );
        assert_eq!(
            plan("GET", Some("bytes=-0"), 1000)
                .content_range()
                .as_deref(),
            Some("bytes */1000")
        );
        for ignored in [
            "bytes=5-1",
            "bytes=0-1,5-9",
            "items=0-1",
            "bytes=x-",
            "bytes=-",
            "bytes=+1-2",
        ] {
            assert_eq!(
                plan("GET", Some(ignored), 1000),
                bytes(200, 0, 1000),
                "{ignored}"
            );
        }
        assert_eq!(
            plan("HEAD", Some("bytes=0-0"), 1000),
            Plan::Bytes {
                status: 206,
                start: 0,
                len: 1,
                size: 1000,
                body: false
            }
        );
        assert_eq!(plan("POST", None, 1000), Plan::MethodNotAllowed);
        assert_eq!(
            plan("GET", Some("bytes=0-"), 0),
            Plan::Unsatisfiable { size: 0 }
        );
    }

    proptest! {
        #[test]
        fn any_header_gives_a_range_inside_the_file(size in 0u64..5000, h in ".{0,24}") {
            let h = format!("bytes={h}");
            match plan("GET", Some(&h), size) {
                Plan::Bytes { start, len, size: s, status, .. } => {
                    prop_assert_eq!(s, size);
                    prop_assert!(start + len <= size);
                    prop_assert!(status == 200 || len > 0);
                }
                Plan::Unsatisfiable { size: s } => prop_assert_eq!(s, size),
                Plan::MethodNotAllowed => prop_assert!(false),
            }
        }
    }
}
