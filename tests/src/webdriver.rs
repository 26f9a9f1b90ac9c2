//! A small W3C WebDriver client (the part a page test needs: a session, navigation, scripts,
//! elements, keys, screenshots) over plain HTTP/1.1 to chromedriver, so a test drives Debian's
//! real headless Chromium without a browser-automation crate.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// The key a WebDriver element reference is stored under.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// One browser session; deleted (the browser closed) on drop.
#[derive(Debug)]
pub struct WebDriver {
    driver: SocketAddr,
    session: String,
}

/// One HTTP exchange with the driver: the status and the JSON body's `value`.
fn call(driver: SocketAddr, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
    let mut s = TcpStream::connect(driver).expect("chromedriver");
    s.set_read_timeout(Some(Duration::from_secs(120)))
        .expect("a read timeout");
    let body = body.map(Value::to_string).unwrap_or_default();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {driver}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .expect("the request");
    // chromedriver keeps the connection open whatever the request says: the body is read by
    // its Content-Length (it sends no chunked bodies).
    let mut out = Vec::new();
    let mut buf = [0u8; 65536];
    let head_end = loop {
        if let Some(i) = out.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = s.read(&mut buf).expect("the response");
        assert!(n > 0, "{method} {path}: closed before the response head");
        out.extend_from_slice(&buf[..n]);
    };
    let head = String::from_utf8_lossy(&out[..head_end]).into_owned();
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("a status");
    let length: usize = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().ok())?
        })
        .expect("a Content-Length");
    while out.len() < head_end + length {
        let n = s.read(&mut buf).expect("the response body");
        assert!(n > 0, "{method} {path}: closed inside the body");
        out.extend_from_slice(&buf[..n]);
    }
    let body = String::from_utf8_lossy(&out[head_end..head_end + length]);
    let v: Value = serde_json::from_str(&body)
        .unwrap_or_else(|e| panic!("{method} {path}: not JSON ({e}): {body}"));
    (status, v["value"].clone())
}

impl WebDriver {
    /// Waits up to `wait` for chromedriver at `driver`, then opens a session of headless
    /// Chromium (`binary`) with `args` added to the usual headless ones.
    pub fn start(driver: SocketAddr, binary: &str, args: &[&str], wait: Duration) -> Self {
        let t0 = Instant::now();
        while TcpStream::connect(driver).is_err() {
            assert!(
                t0.elapsed() < wait,
                "chromedriver did not listen on {driver}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        let mut all = vec![
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
        ];
        all.extend_from_slice(args);
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": binary, "args": all},
        }}});
        let (status, v) = call(driver, "POST", "/session", Some(&caps));
        assert_eq!(status, 200, "new session: {v}");
        let session = v["sessionId"].as_str().expect("a session id").to_owned();
        Self { driver, session }
    }

    fn cmd(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let full = format!("/session/{}{path}", self.session);
        let (status, v) = call(self.driver, method, &full, body.as_ref());
        assert_eq!(status, 200, "{method} {path}: {v}");
        v
    }

    /// Loads `url` (returns once the document has loaded).
    pub fn go(&self, url: &str) {
        self.cmd("POST", "/url", Some(json!({"url": url})));
    }

    /// Runs `script` (a function body: `return ...;`) in the page; its result.
    pub fn run(&self, script: &str) -> Value {
        self.cmd(
            "POST",
            "/execute/sync",
            Some(json!({"script": script, "args": []})),
        )
    }

    /// Runs `script` every 100 ms until it returns something other than `null` or `false`
    /// (then that), or panics after `timeout` with `what` and the last result.
    pub fn wait_for(&self, what: &str, script: &str, timeout: Duration) -> Value {
        let t0 = Instant::now();
        loop {
            let v = self.run(script);
            if !(v.is_null() || v == Value::Bool(false)) {
                return v;
            }
            assert!(t0.elapsed() < timeout, "waited {timeout:?} for {what}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn element(&self, css: &str) -> String {
        let v = self.cmd(
            "POST",
            "/element",
            Some(json!({"using": "css selector", "value": css})),
        );
        v[ELEMENT]
            .as_str()
            .unwrap_or_else(|| panic!("no element {css}: {v}"))
            .to_owned()
    }

    /// Types `text` into the element `css` selects, as key presses (WebDriver's special keys
    /// as `\u{e0..}` characters).
    pub fn type_into(&self, css: &str, text: &str) {
        let id = self.element(css);
        self.cmd(
            "POST",
            &format!("/element/{id}/value"),
            Some(json!({"text": text})),
        );
    }

    /// Clears the input `css` selects.
    pub fn clear(&self, css: &str) {
        let id = self.element(css);
        self.cmd("POST", &format!("/element/{id}/clear"), Some(json!({})));
    }

    /// Clicks the element `css` selects.
    pub fn click(&self, css: &str) {
        let id = self.element(css);
        self.cmd("POST", &format!("/element/{id}/click"), Some(json!({})));
    }

    /// Presses keys on whatever has the focus (`\u{e004}` is Tab, `\u{e007}` Enter).
    pub fn keys(&self, keys: &str) {
        let actions: Vec<Value> = keys
            .chars()
            .flat_map(|c| {
                [
                    json!({"type": "keyDown", "value": c.to_string()}),
                    json!({"type": "keyUp", "value": c.to_string()}),
                ]
            })
            .collect();
        self.cmd(
            "POST",
            "/actions",
            Some(json!({"actions": [{"type": "key", "id": "keyboard", "actions": actions}]})),
        );
    }

    /// A PNG of the window.
    pub fn screenshot(&self) -> Vec<u8> {
        let v = self.cmd("GET", "/screenshot", None);
        base64_decode(v.as_str().expect("base64 PNG"))
    }
}

impl Drop for WebDriver {
    fn drop(&mut self) {
        let path = format!("/session/{}", self.session);
        // Best effort: the driver process is stopped by its owner anyway.
        if TcpStream::connect(self.driver).is_ok() {
            let _ = std::panic::catch_unwind(|| call(self.driver, "DELETE", &path, None));
        }
    }
}

/// Standard base64 (with padding, no line breaks), as WebDriver sends screenshots.
fn base64_decode(s: &str) -> Vec<u8> {
    let val = |c: u8| -> u32 {
        match c {
            b'A'..=b'Z' => u32::from(c - b'A'),
            b'a'..=b'z' => u32::from(c - b'a') + 26,
            b'0'..=b'9' => u32::from(c - b'0') + 52,
            b'+' => 62,
            b'/' => 63,
            _ => panic!("not base64: {c}"),
        }
    };
    let bytes: Vec<u8> = s.bytes().filter(|&c| c != b'=').collect();
    let mut out = Vec::with_capacity(bytes.len() * 3 / 4);
    for chunk in bytes.chunks(4) {
        let mut n = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            n |= val(c) << (18 - 6 * i);
        }
        let b = n.to_be_bytes();
        out.extend_from_slice(&b[1..chunk.len()]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::base64_decode;

    #[test]
    fn decodes_base64() {
        assert_eq!(base64_decode("aGVsbG8="), b"hello");
        assert_eq!(base64_decode("aGVsbG8h"), b"hello!");
        assert_eq!(base64_decode("aGk="), b"hi");
        assert_eq!(base64_decode(""), b"");
    }
}
