//! One syslog datagram read into its parts, sans-IO: [`parse`].
//!
//! What arrives over UDP in practice, and what [`parse`] reads:
//! - RFC 5424: `<PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID STRUCTURED-DATA [MSG]`, `-` for
//!   a field with no value, structured data skipped whole (quoted values, with `\"`, `\\` and
//!   `\]` escaped, may hold `]`), a UTF-8 byte-order mark before the message dropped. rsyslog's
//!   and systemd's forwarders, and util-linux `logger -n` by default, send this.
//! - RFC 3164 as senders really write it: `<PRI>Mmm dd hh:mm:ss HOSTNAME TAG: MSG` (rsyslog,
//!   `logger --rfc3164`), the same without the hostname (glibc's `syslog(3)` line as busybox
//!   `syslogd -R` forwards it unchanged: the Debian installer's `<13>Dec  3 14:00:01
//!   anna[123]: text`), with an RFC 3339 timestamp instead, or with no timestamp at all
//!   (`<PRI>app: msg`, `<PRI>msg`). The tag is `app:` or `app[pid]:`; the word after the
//!   timestamp is the hostname unless it is a tag or could not be one.
//!
//! A 5424 header that does not hold together is read as 3164 instead, so its text is kept.
//! Only a datagram without a valid `<PRI>` (0-191) is *malformed*: its whole text is the
//! message, and facility, severity, hostname and app are absent. A datagram longer than
//! [`MAX_MESSAGE`] is cut to it (back to a character boundary) and marked *truncated*.
//! Trailing newlines, carriage returns and NULs are dropped; text that is not UTF-8 is
//! replaced character by character, never refused. Parsing never panics and allocates only for
//! text that is not valid UTF-8.

use std::borrow::Cow;

use serde::Serialize;

/// The longest message kept, in bytes: longer datagrams are cut to it ([`Message::truncated`]).
pub const MAX_MESSAGE: usize = 8192;

/// A message's facility (RFC 5424 §6.2.1, the names syslog.conf uses).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
#[allow(missing_docs)]
pub enum Facility {
    Kern,
    User,
    Mail,
    Daemon,
    Auth,
    Syslog,
    Lpr,
    News,
    Uucp,
    Cron,
    Authpriv,
    Ftp,
    Ntp,
    Audit,
    Alert,
    Clock,
    Local0,
    Local1,
    Local2,
    Local3,
    Local4,
    Local5,
    Local6,
    Local7,
}

impl Facility {
    /// Every facility, by code.
    pub const ALL: [Self; 24] = [
        Self::Kern,
        Self::User,
        Self::Mail,
        Self::Daemon,
        Self::Auth,
        Self::Syslog,
        Self::Lpr,
        Self::News,
        Self::Uucp,
        Self::Cron,
        Self::Authpriv,
        Self::Ftp,
        Self::Ntp,
        Self::Audit,
        Self::Alert,
        Self::Clock,
        Self::Local0,
        Self::Local1,
        Self::Local2,
        Self::Local3,
        Self::Local4,
        Self::Local5,
        Self::Local6,
        Self::Local7,
    ];

    /// The facility with this code (0-23).
    pub fn from_code(code: u8) -> Option<Self> {
        Self::ALL.get(usize::from(code)).copied()
    }

    /// Its code.
    pub fn code(self) -> u8 {
        self as u8
    }
}

/// A message's severity (RFC 5424 §6.2.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
#[allow(missing_docs)]
pub enum Severity {
    Emerg,
    Alert,
    Crit,
    Err,
    Warning,
    Notice,
    Info,
    Debug,
}

impl Severity {
    /// Every severity, by code.
    pub const ALL: [Self; 8] = [
        Self::Emerg,
        Self::Alert,
        Self::Crit,
        Self::Err,
        Self::Warning,
        Self::Notice,
        Self::Info,
        Self::Debug,
    ];

    /// The severity with this code (0-7).
    pub fn from_code(code: u8) -> Option<Self> {
        Self::ALL.get(usize::from(code)).copied()
    }

    /// Its code.
    pub fn code(self) -> u8 {
        self as u8
    }
}

/// One datagram's message, borrowing from the datagram where its text is valid UTF-8.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message<'a> {
    /// From `<PRI>`; `None` when malformed.
    pub facility: Option<Facility>,
    /// From `<PRI>`; `None` when malformed.
    pub severity: Option<Severity>,
    /// The sender's name for itself, when the message carries one.
    pub hostname: Option<Cow<'a, str>>,
    /// The program (RFC 5424 APP-NAME, or the RFC 3164 tag without its `[pid]`).
    pub app: Option<Cow<'a, str>>,
    /// The text; for a malformed datagram, all of it.
    pub message: Cow<'a, str>,
    /// No valid `<PRI>`: delivered raw.
    pub malformed: bool,
    /// Longer than [`MAX_MESSAGE`]: cut.
    pub truncated: bool,
}

/// Reads one datagram. See the module docs; never panics.
pub fn parse(datagram: &[u8]) -> Message<'_> {
    let truncated = datagram.len() > MAX_MESSAGE;
    let data = trim_end(if truncated { cut(datagram) } else { datagram });
    let Some((pri, rest)) = priority(data) else {
        return Message {
            facility: None,
            severity: None,
            hostname: None,
            app: None,
            message: String::from_utf8_lossy(data),
            malformed: true,
            truncated,
        };
    };
    let parts = rfc5424(rest).unwrap_or_else(|| rfc3164(rest));
    Message {
        facility: Facility::from_code(pri >> 3),
        severity: Severity::from_code(pri & 7),
        hostname: parts.hostname.map(String::from_utf8_lossy),
        app: parts.app.map(String::from_utf8_lossy),
        message: String::from_utf8_lossy(parts.message),
        malformed: false,
        truncated,
    }
}

/// Whether a datagram holds nothing once its trailing newlines and NULs are dropped.
pub fn is_empty(datagram: &[u8]) -> bool {
    trim_end(datagram).is_empty()
}

/// The fields a header yielded, as bytes of the datagram.
struct Parts<'a> {
    hostname: Option<&'a [u8]>,
    app: Option<&'a [u8]>,
    message: &'a [u8],
}

/// The first [`MAX_MESSAGE`] bytes, less a UTF-8 sequence the cut split.
fn cut(datagram: &[u8]) -> &[u8] {
    let head = &datagram[..MAX_MESSAGE.min(datagram.len())];
    // The last character's first byte is at most 3 bytes back.
    let start = (1..=4.min(head.len()))
        .map(|back| head.len() - back)
        .find(|&i| head[i] & 0xc0 != 0x80);
    match start {
        Some(i) => {
            let need = match head[i] {
                0xc0..=0xdf => 2,
                0xe0..=0xef => 3,
                0xf0..=0xf7 => 4,
                _ => 1,
            };
            if i + need > head.len() {
                &head[..i]
            } else {
                head
            }
        }
        None => head,
    }
}

/// Drops trailing newlines, carriage returns and NULs (busybox and many senders end each
/// datagram with `\n`, some C senders with the string's NUL).
fn trim_end(mut data: &[u8]) -> &[u8] {
    while let [rest @ .., b'\n' | b'\r' | 0] = data {
        data = rest;
    }
    data
}

/// `<PRI>`: one to three digits, at most 191.
fn priority(data: &[u8]) -> Option<(u8, &[u8])> {
    let rest = data.strip_prefix(b"<")?;
    let end = rest.iter().take(4).position(|&b| b == b'>')?;
    let digits = &rest[..end];
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let value = digits
        .iter()
        .fold(0u16, |v, d| v * 10 + u16::from(d - b'0'));
    let pri = u8::try_from(value).ok().filter(|&p| p <= 191)?;
    Some((pri, &rest[end + 1..]))
}

/// A word ended by a space: the word and what follows the space.
fn word(s: &[u8]) -> Option<(&[u8], &[u8])> {
    let i = s.iter().position(|&b| b == b' ')?;
    (i > 0).then(|| (&s[..i], &s[i + 1..]))
}

/// `-`, RFC 5424's NILVALUE, is no value.
fn nil(field: &[u8]) -> Option<&[u8]> {
    (field != b"-").then_some(field)
}

/// The RFC 5424 header after `<PRI>`, or `None` when it is not one.
fn rfc5424(rest: &[u8]) -> Option<Parts<'_>> {
    let (version, rest) = word(rest)?;
    if version.len() > 3 || !version.iter().all(u8::is_ascii_digit) || version[0] == b'0' {
        return None;
    }
    let (time, rest) = word(rest)?;
    if time != b"-" && !is_rfc3339(time) {
        return None;
    }
    let (hostname, rest) = word(rest)?;
    let (app, rest) = word(rest)?;
    let (_procid, rest) = word(rest)?;
    let (_msgid, rest) = word(rest)?;
    let after = &rest[structured_data(rest)?..];
    let message = match after {
        [] => after,
        [b' ', text @ ..] => text.strip_prefix(b"\xef\xbb\xbf").unwrap_or(text),
        _ => return None,
    };
    Some(Parts {
        hostname: nil(hostname),
        app: nil(app),
        message,
    })
}

/// The length of STRUCTURED-DATA at the start of `s`: `-`, or `[...]` elements back to back,
/// where a quoted value may hold `]` and escapes (`\"`, `\\`, `\]`) are skipped.
fn structured_data(s: &[u8]) -> Option<usize> {
    if let [b'-', after @ ..] = s {
        return matches!(after, [] | [b' ', ..]).then_some(1);
    }
    let mut i = 0;
    while s.get(i) == Some(&b'[') {
        i += 1;
        let mut quoted = false;
        loop {
            let b = *s.get(i)?;
            i += 1;
            match b {
                b'\\' if quoted => i += 1,
                b'"' => quoted = !quoted,
                b']' if !quoted => break,
                _ => {}
            }
        }
    }
    (i > 0).then_some(i)
}

/// `YYYY-MM-DD...`: the start of an RFC 3339 timestamp.
fn is_rfc3339(t: &[u8]) -> bool {
    let digits =
        |r: std::ops::Range<usize>| t.get(r).is_some_and(|d| d.iter().all(u8::is_ascii_digit));
    digits(0..4)
        && t.get(4) == Some(&b'-')
        && digits(5..7)
        && t.get(7) == Some(&b'-')
        && digits(8..10)
}

/// The RFC 3164 header after `<PRI>`, as senders write it (module docs). Always succeeds: what
/// is not a header is message.
fn rfc3164(rest: &[u8]) -> Parts<'_> {
    let Some(after) = timestamp(rest) else {
        // No timestamp: no hostname either (`<PRI>app: msg`, `<PRI>msg`).
        return tagged(None, rest);
    };
    if tag(after).is_none()
        && let Some((name, more)) = word(after)
        && is_hostname(name)
    {
        return tagged(Some(name), more);
    }
    tagged(None, after)
}

/// `s` read as an optional tag and the message.
fn tagged<'a>(hostname: Option<&'a [u8]>, s: &'a [u8]) -> Parts<'a> {
    let (app, message) = match tag(s) {
        Some((app, message)) => (Some(app), message),
        None => (None, s),
    };
    Parts {
        hostname,
        app,
        message,
    }
}

/// The longest tag read as one (RFC 3164 says 32; systemd units run longer).
const MAX_TAG: usize = 128;

/// `app:` or `app[pid]:` ending at a space or the end: the app and the message after it.
fn tag(s: &[u8]) -> Option<(&[u8], &[u8])> {
    let end = s.iter().position(|&b| b == b' ').unwrap_or(s.len());
    let t = s[..end].strip_suffix(b":")?;
    if t.len() > MAX_TAG {
        return None;
    }
    let app = match t.strip_suffix(b"]") {
        Some(with_pid) => &with_pid[..with_pid.iter().position(|&b| b == b'[')?],
        None => t,
    };
    if app.is_empty() || app.iter().any(|&b| b == b'[' || b == b']' || b < b' ') {
        return None;
    }
    let message = &s[end..];
    Some((app, message.strip_prefix(b" ").unwrap_or(message)))
}

/// Could be a host's name or address (letters, digits, `.-_:%`).
fn is_hostname(w: &[u8]) -> bool {
    w.len() <= 255
        && w.iter()
            .all(|&b| b.is_ascii_alphanumeric() || b"-._:%".contains(&b))
}

const MONTHS: [&[u8; 3]; 12] = [
    b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov", b"Dec",
];

/// After a leading timestamp and its space: `Mmm dd hh:mm:ss` (day space-padded or not,
/// optional fraction of a second), or an RFC 3339 one. `None` when there is none.
fn timestamp(s: &[u8]) -> Option<&[u8]> {
    if is_rfc3339(s) {
        let end = s.iter().position(|&b| b == b' ').unwrap_or(s.len());
        return Some(s.get(end + 1..).unwrap_or_default());
    }
    let (month, r) = s.split_first_chunk::<3>()?;
    if !MONTHS.contains(&month) {
        return None;
    }
    let r = r.strip_prefix(b" ")?;
    let r = r.strip_prefix(b" ").unwrap_or(r);
    let day = r.iter().take_while(|b| b.is_ascii_digit()).count();
    if !(1..=2).contains(&day) {
        return None;
    }
    let r = r[day..].strip_prefix(b" ")?;
    let (time, mut r) = r.split_first_chunk::<8>()?;
    let shape = time.iter().enumerate().all(|(i, b)| {
        if i == 2 || i == 5 {
            *b == b':'
        } else {
            b.is_ascii_digit()
        }
    });
    if !shape {
        return None;
    }
    if let Some(frac) = r.strip_prefix(b".") {
        r = &frac[frac.iter().take_while(|b| b.is_ascii_digit()).count()..];
    }
    match r {
        [] => Some(r),
        [b' ', more @ ..] => Some(more),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields<'m>(m: &'m Message<'_>) -> (Option<&'m str>, Option<&'m str>, &'m str) {
        (m.hostname.as_deref(), m.app.as_deref(), &m.message)
    }

    #[test]
    fn debian_installer_lines_as_busybox_syslogd_forwards_them() {
        // glibc's syslog(3) line (no hostname), with the '\n' busybox's -R adds.
        let m = parse(b"<13>Dec  3 14:00:01 anna[123]: DEBUG: retrieving rescue-check 1.86\n");
        assert_eq!(
            fields(&m),
            (None, Some("anna"), "DEBUG: retrieving rescue-check 1.86")
        );
        assert_eq!(
            (m.facility, m.severity),
            (Some(Facility::User), Some(Severity::Notice))
        );
        assert!(!m.malformed && !m.truncated);
        let m = parse(
            b"<14>Dec 13 14:00:05 main-menu[310]: INFO: Menu item 'localechooser' selected\n",
        );
        assert_eq!(
            fields(&m),
            (
                None,
                Some("main-menu"),
                "INFO: Menu item 'localechooser' selected"
            )
        );
        // klogd's kernel lines, and a tag without a pid.
        let m = parse(b"<6>Dec  3 14:00:01 kernel: [    0.000000] Linux version 6.1.0-18-amd64\n");
        assert_eq!(
            fields(&m),
            (
                None,
                Some("kernel"),
                "[    0.000000] Linux version 6.1.0-18-amd64"
            )
        );
        assert_eq!(
            (m.facility, m.severity),
            (Some(Facility::Kern), Some(Severity::Info))
        );
        // The preseed's early_command through busybox logger.
        let m = parse(b"<13>Dec  3 14:00:02 root: preseed early_command ran\n");
        assert_eq!(
            fields(&m),
            (None, Some("root"), "preseed early_command ran")
        );
    }

    #[test]
    fn rfc3164_with_a_hostname_as_rsyslog_and_logger_send_it() {
        let m = parse(b"<30>Jun  1 10:00:00 node-7 systemd[1]: Started ssh.service - OpenBSD Secure Shell server.");
        assert_eq!(
            fields(&m),
            (
                Some("node-7"),
                Some("systemd"),
                "Started ssh.service - OpenBSD Secure Shell server."
            )
        );
        assert_eq!(
            (m.facility, m.severity),
            (Some(Facility::Daemon), Some(Severity::Info))
        );
        // util-linux `logger --rfc3164 -n HOST hello`.
        let m = parse(b"<13>Jun  1 10:00:00 node-7.maas root: hello");
        assert_eq!(fields(&m), (Some("node-7.maas"), Some("root"), "hello"));
        // A hostname and no tag.
        let m = parse(b"<13>Jun  1 10:00:00 10.20.0.10 just text");
        assert_eq!(fields(&m), (Some("10.20.0.10"), None, "just text"));
        // Fractional seconds (rsyslog's high-precision legacy format).
        let m = parse(b"<13>Jun  1 10:00:00.123456 h app: x");
        assert_eq!(fields(&m), (Some("h"), Some("app"), "x"));
        // An RFC 3339 timestamp in a legacy line.
        let m = parse(b"<13>2024-06-01T10:00:00.123+02:00 h app[9]: x");
        assert_eq!(fields(&m), (Some("h"), Some("app"), "x"));
        // A word after the timestamp that cannot be a hostname is message.
        let m = parse(b"<13>Jun  1 10:00:00 (oops) happened");
        assert_eq!(fields(&m), (None, None, "(oops) happened"));
    }

    #[test]
    fn rfc3164_without_a_timestamp() {
        assert_eq!(fields(&parse(b"<13>app: msg")), (None, Some("app"), "msg"));
        assert_eq!(
            fields(&parse(b"<13>app[42]: msg")),
            (None, Some("app"), "msg")
        );
        assert_eq!(fields(&parse(b"<13>app:")), (None, Some("app"), ""));
        assert_eq!(
            fields(&parse(b"<13>just a message")),
            (None, None, "just a message")
        );
        assert_eq!(fields(&parse(b"<13>")), (None, None, ""));
        // Not tags: a URL, an empty name, a bracket with no name.
        assert_eq!(
            fields(&parse(b"<13>http://x y")),
            (None, None, "http://x y")
        );
        assert_eq!(fields(&parse(b"<13>: y")), (None, None, ": y"));
        assert_eq!(fields(&parse(b"<13>[1]: y")), (None, None, "[1]: y"));
    }

    #[test]
    fn rfc5424_as_rsyslog_and_logger_send_it() {
        // util-linux `logger -n HOST hello` (RFC 5424 is its default over the network).
        let m = parse(b"<13>1 2024-06-01T10:00:00.123456+00:00 node-7 root - - [timeQuality tzKnown=\"1\" isSynced=\"1\" syncAccuracy=\"27500\"] hello");
        assert_eq!(fields(&m), (Some("node-7"), Some("root"), "hello"));
        assert_eq!(
            (m.facility, m.severity),
            (Some(Facility::User), Some(Severity::Notice))
        );
        // rsyslog's RSYSLOG_SyslogProtocol23Format forwarding.
        let m = parse(b"<86>1 2024-06-01T10:00:01.5Z node-7 sshd 812 - - Accepted publickey for root from 10.20.0.2 port 50000\n");
        assert_eq!(
            fields(&m),
            (
                Some("node-7"),
                Some("sshd"),
                "Accepted publickey for root from 10.20.0.2 port 50000"
            )
        );
        assert_eq!(
            (m.facility, m.severity),
            (Some(Facility::Authpriv), Some(Severity::Info))
        );
        // Every field nil, no message.
        let m = parse(b"<165>1 - - - - - -");
        assert_eq!(fields(&m), (None, None, ""));
        assert_eq!(
            (m.facility, m.severity),
            (Some(Facility::Local4), Some(Severity::Notice))
        );
        // RFC 5424's own examples: a BOM before the message; two SD elements.
        let m = parse(b"<34>1 2003-10-11T22:14:15.003Z mymachine.example.com su - ID47 - \xef\xbb\xbf'su root' failed for lonvick on /dev/pts/8");
        assert_eq!(
            fields(&m),
            (
                Some("mymachine.example.com"),
                Some("su"),
                "'su root' failed for lonvick on /dev/pts/8"
            )
        );
        let m = parse(b"<165>1 2003-10-11T22:14:15.003Z mymachine.example.com evntslog - ID47 [exampleSDID@32473 iut=\"3\" eventSource=\"Application\" eventID=\"1011\"][examplePriority@32473 class=\"high\"] An application event");
        assert_eq!(m.message, "An application event");
        assert_eq!(m.app.as_deref(), Some("evntslog"));
    }

    #[test]
    fn structured_data_with_escaped_and_quoted_brackets() {
        let m = parse(br#"<13>1 - h a - - [x@1 v="a\]b\"c\\" w="]"][y@1] the text"#);
        assert_eq!(fields(&m), (Some("h"), Some("a"), "the text"));
        // Unterminated: not 5424, kept whole as 3164 text.
        let m = parse(br#"<13>1 - h a - - [x@1 v="]"#);
        assert_eq!(fields(&m), (None, None, r#"1 - h a - - [x@1 v="]"#));
        assert!(!m.malformed);
        // Text glued to the SD: not 5424.
        assert_eq!(parse(b"<13>1 - h a - - [x]y").message, "1 - h a - - [x]y");
        // A 3164 message that starts with a digit.
        assert_eq!(
            fields(&parse(b"<13>1 apple fell")),
            (None, None, "1 apple fell")
        );
    }

    #[test]
    fn malformed_datagrams_are_delivered_raw() {
        for raw in [
            &b"hello there"[..],
            b"<>x",
            b"<192>x",
            b"<1234>x",
            b"<1a>x",
            b"13>x",
            b"<13",
        ] {
            let m = parse(raw);
            assert!(m.malformed, "{raw:?}");
            assert_eq!(m.message.as_bytes(), raw);
            assert_eq!(
                (m.facility, m.severity, &m.hostname, &m.app),
                (None, None, &None, &None)
            );
        }
        assert!(!parse(b"<191>x").malformed);
        assert!(!parse(b"<0>x").malformed);
        assert_eq!(parse(b"<0>x").facility, Some(Facility::Kern));
        assert_eq!(parse(b"<191>x").facility, Some(Facility::Local7));
    }

    #[test]
    fn trailing_newlines_and_nuls_go_and_bad_utf8_is_replaced() {
        assert_eq!(parse(b"<13>app: hi\r\n\0").message, "hi");
        let m = parse(b"<13>app: caf\xe9 \xff");
        assert_eq!(m.message, "caf\u{fffd} \u{fffd}");
        assert!(matches!(parse(b"<13>app: ok").message, Cow::Borrowed(_)));
        assert!(is_empty(b"\n\0\r"));
        assert!(!is_empty(b" \n"));
    }

    #[test]
    fn long_datagrams_are_cut_at_a_character_boundary() {
        let mut long = b"<13>app: ".to_vec();
        long.resize(MAX_MESSAGE - 1, b'a');
        long.extend_from_slice("é".as_bytes()); // straddles the limit
        long.extend_from_slice(b"tail");
        let m = parse(&long);
        assert!(m.truncated);
        assert_eq!(m.message.len(), MAX_MESSAGE - 1 - b"<13>app: ".len());
        assert!(m.message.bytes().all(|b| b == b'a'));
        let exact = vec![b'x'; MAX_MESSAGE];
        assert!(!parse(&exact).truncated);
        let m = parse(&[b'x'; MAX_MESSAGE + 1]);
        assert!(m.truncated && m.malformed);
        assert_eq!(m.message.len(), MAX_MESSAGE);
    }

    #[test]
    fn every_facility_and_severity_by_code() {
        for pri in 0..=191u8 {
            let text = format!("<{pri}>x");
            let m = parse(text.as_bytes());
            let (f, s) = (m.facility.expect("facility"), m.severity.expect("severity"));
            assert_eq!((f.code(), s.code()), (pri >> 3, pri & 7));
        }
        let name = |v| serde_json::to_value(v).expect("json");
        assert_eq!(name(Facility::Authpriv), "authpriv");
        assert_eq!(name(Facility::Local7), "local7");
        assert_eq!(
            serde_json::to_value(Severity::Warning).expect("json"),
            "warning"
        );
    }

    proptest::proptest! {
        #[test]
        fn never_panics_and_keeps_within_the_datagram(data: Vec<u8>) {
            let m = parse(&data);
            proptest::prop_assert!(m.message.len() <= 3 * data.len().min(MAX_MESSAGE));
            proptest::prop_assert_eq!(m.malformed, m.facility.is_none());
            proptest::prop_assert_eq!(m.truncated, data.len() > MAX_MESSAGE);
        }

        #[test]
        fn never_panics_on_syslog_shaped_input(
            pri in 0u16..400,
            version in proptest::option::of(0u8..3),
            body in "[ -~\\[\\]\"\\\\]{0,80}",
        ) {
            let v = version.map(|v| format!("{v} ")).unwrap_or_default();
            let text = format!("<{pri}>{v}{body}");
            let m = parse(text.as_bytes());
            proptest::prop_assert_eq!(m.malformed, pri > 191);
            // Valid UTF-8 in, nothing allocated.
            proptest::prop_assert!(matches!(m.message, Cow::Borrowed(_)));
        }
    }
}
