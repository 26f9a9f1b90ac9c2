//! The simulated machine's network clients: an HTTP/1.1 GET (what iPXE and UEFI HTTP boot
//! do: one request, `Content-Length` checked, no redirects followed) and DNS A/AAAA/PTR
//! lookups, over IPv4 or IPv6. Every socket binds to the machine's own address when it has
//! one.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use hickory_proto::op::{Message, MessageType, OpCode, Query};
use hickory_proto::rr::{Name, RData, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, UdpSocket};

/// An `http://host[:port]/path` URL's parts (an IPv6 host in brackets).
pub fn parse_url(url: &str) -> Option<(SocketAddr, &str)> {
    let rest = url.strip_prefix("http://")?;
    let (hostport, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let (host, port) = match hostport.rsplit_once(':') {
        Some((h, p)) if !p.ends_with(']') => (h, p.parse().ok()?),
        _ => (hostport, 80),
    };
    // An IPv6 host must be in brackets (RFC 3986): `fd00::1:80` is no host and port.
    if !host.starts_with('[') && host.contains(':') {
        return None;
    }
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    let ip: IpAddr = host.parse().ok()?;
    Some((
        SocketAddr::from((ip, port)),
        if path.is_empty() { "/" } else { path },
    ))
}

/// A `tftp://host/path` URL's parts (RFC 5970's boot file URL; an IPv6 host in brackets).
pub fn parse_tftp_url(url: &str) -> Option<(IpAddr, &str)> {
    let rest = url.strip_prefix("tftp://")?;
    let (host, path) = rest.split_at(rest.find('/')?);
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    Some((host.parse().ok()?, path))
}

/// GETs `url` from `source` (unspecified: any), handing the body to `sink` as it arrives
/// (nothing is kept); returns its length, or why not (a status other than 200, or a body
/// shorter or longer than its `Content-Length`).
pub async fn get(
    url: &str,
    source: IpAddr,
    timeout: Duration,
    sink: impl FnMut(&[u8]),
) -> Result<u64, String> {
    tokio::time::timeout(timeout, get_inner(url, source, "200", sink))
        .await
        .map_err(|_| "timed out".to_owned())?
}

/// A GET that must be answered `204 No Content` (a progress report, given in the URL's
/// query), from `source`.
pub async fn report(url: &str, source: IpAddr, timeout: Duration) -> Result<(), String> {
    tokio::time::timeout(timeout, get_inner(url, source, "204", |_| {}))
        .await
        .map_err(|_| "timed out".to_owned())?
        .map(drop)
}

async fn get_inner(
    url: &str,
    source: IpAddr,
    want: &str,
    mut sink: impl FnMut(&[u8]),
) -> Result<u64, String> {
    let (addr, path) = parse_url(url).ok_or_else(|| format!("not an http URL: {url}"))?;
    let sock = if addr.is_ipv6() {
        TcpSocket::new_v6()
    } else {
        TcpSocket::new_v4()
    }
    .map_err(|e| e.to_string())?;
    if !source.is_unspecified() {
        sock.bind(SocketAddr::from((source, 0)))
            .map_err(|e| format!("bind {source}: {e}"))?;
    }
    let mut s = sock
        .connect(addr)
        .await
        .map_err(|e| format!("connect {addr}: {e}"))?;
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: pserv-storm\r\nConnection: close\r\n\r\n"
    );
    s.write_all(req.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let mut buf = vec![0u8; 256 << 10];
    // The header: read until its blank line (at most 16 KiB of it).
    let mut have = 0;
    let head_end = loop {
        let n = s.read(&mut buf[have..]).await.map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("the connection closed before the header ended".to_owned());
        }
        have += n;
        if let Some(at) = buf[..have].windows(4).position(|w| w == b"\r\n\r\n") {
            break at;
        }
        if have > 16 << 10 {
            return Err("an HTTP header over 16 KiB".to_owned());
        }
    };
    let head = std::str::from_utf8(&buf[..head_end]).map_err(|_| "header not text")?;
    let mut lines = head.split("\r\n");
    let code = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap_or("")
        .to_owned();
    if code != want {
        return Err(format!("HTTP {code}"));
    }
    let length = lines.find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim()
            .eq_ignore_ascii_case("content-length")
            .then(|| v.trim().parse::<u64>().ok())?
    });
    let mut total = (have - head_end - 4) as u64;
    sink(&buf[head_end + 4..have]);
    loop {
        let n = s.read(&mut buf).await.map_err(|e| e.to_string())?;
        if n == 0 {
            break;
        }
        total += n as u64;
        sink(&buf[..n]);
        // One read per turn: with a thousand bodies streaming, tokio's budget (128 reads of
        // 256 KiB) would keep the other machines' replies (DNS, TFTP) waiting for seconds,
        // and the generator would time itself instead of the server.
        tokio::task::yield_now().await;
    }
    match length {
        Some(n) if n != total => Err(format!("Content-Length {n} but {total} bytes came")),
        _ => Ok(total),
    }
}

/// What a lookup found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// A or AAAA records.
    Addrs(Vec<IpAddr>),
    /// PTR names (lower case, no trailing dot).
    Ptr(Vec<String>),
}

/// One query of `qtype` for `name` to `server`, from `source`; retried once.
pub async fn lookup(
    server: IpAddr,
    source: IpAddr,
    name: &str,
    qtype: RecordType,
    timeout: Duration,
) -> Result<Answer, String> {
    let sock = UdpSocket::bind(SocketAddr::from((source, 0)))
        .await
        .map_err(|e| format!("bind {source}: {e}"))?;
    let qname = Name::from_ascii(name).map_err(|e| e.to_string())?;
    let id: u16 = rand_id(name);
    let mut m = Message::new(id, MessageType::Query, OpCode::Query);
    m.add_query(Query::query(qname, qtype));
    let q = m.to_vec().map_err(|e| e.to_string())?;
    let to = SocketAddr::from((server, 53));
    let mut buf = vec![0u8; 4096];
    for _ in 0..2 {
        sock.send_to(&q, to).await.map_err(|e| e.to_string())?;
        let Ok(r) = tokio::time::timeout(timeout, sock.recv_from(&mut buf)).await else {
            continue;
        };
        let (n, _) = r.map_err(|e| e.to_string())?;
        let resp = Message::from_vec(&buf[..n]).map_err(|e| e.to_string())?;
        if resp.metadata.id != id {
            continue;
        }
        let mut a = Vec::new();
        let mut p = Vec::new();
        for rec in &resp.answers {
            match &rec.data {
                RData::A(ip) => a.push(IpAddr::V4(ip.0)),
                RData::AAAA(ip) => a.push(IpAddr::V6(ip.0)),
                RData::PTR(n) => p.push(n.0.to_ascii().trim_end_matches('.').to_ascii_lowercase()),
                _ => {}
            }
        }
        return Ok(if qtype == RecordType::PTR {
            Answer::Ptr(p)
        } else {
            Answer::Addrs(a)
        });
    }
    Err("no DNS answer".to_owned())
}

/// A query id from the name and the clock's low bits (no two machines' lookups share one
/// socket, so this only has to differ from a stray earlier answer's).
fn rand_id(name: &str) -> u16 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    name.bytes().fold(t, |h, b| h.rotate_left(5) ^ u32::from(b)) as u16
}

/// The reverse name of `ip` (`4.3.2.1.in-addr.arpa.`, or its nibbles under `ip6.arpa.`).
pub fn reverse_name(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(ip) => {
            let o = ip.octets();
            format!("{}.{}.{}.{}.in-addr.arpa.", o[3], o[2], o[1], o[0])
        }
        IpAddr::V6(ip) => {
            let mut s = String::with_capacity(72);
            for b in ip.octets().iter().rev() {
                s.push_str(&format!("{:x}.{:x}.", b & 0xf, b >> 4));
            }
            s + "ip6.arpa."
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_and_reverse_names() {
        assert_eq!(
            parse_url("http://10.0.0.1:5248/ipxe/52-54-00-00-00-01"),
            Some((
                SocketAddr::from(([10, 0, 0, 1], 5248)),
                "/ipxe/52-54-00-00-00-01"
            ))
        );
        assert_eq!(
            parse_url("http://10.0.0.1"),
            Some((SocketAddr::from(([10, 0, 0, 1], 80)), "/"))
        );
        assert_eq!(parse_url("tftp://x/y"), None);
        assert_eq!(parse_url("http://name.example/x"), None);
        assert_eq!(
            parse_url("http://[fd00::2]:5248/x"),
            Some((
                SocketAddr::from(([0xfd00, 0, 0, 0, 0, 0, 0, 2], 5248)),
                "/x"
            ))
        );
        assert_eq!(
            parse_url("http://[fd00::2]/x").map(|u| u.0.port()),
            Some(80)
        );
        assert_eq!(
            parse_tftp_url("tftp://[fd00::2]/shimx64.efi"),
            Some(("fd00::2".parse().unwrap(), "/shimx64.efi"))
        );
        assert_eq!(parse_tftp_url("http://[fd00::2]/x"), None);
        assert_eq!(parse_url("http://fd00::1:80/x"), None);
        assert_eq!(
            reverse_name("10.1.2.3".parse().unwrap()),
            "3.2.1.10.in-addr.arpa."
        );
        assert_eq!(
            reverse_name("2001:db8::1".parse().unwrap()),
            "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa."
        );
    }
}
