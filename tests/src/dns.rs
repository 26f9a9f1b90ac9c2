//! DNS from a test: raw queries and answers, byte by byte, so a test controls exactly what goes
//! on the wire (and can mangle it) — an A question, its TCP framing, the address of a reply —
//! and [`Dig`], the real client, on loopback or inside a namespace the test made.

use std::net::{SocketAddr, UdpSocket};
use std::process::Command;
use std::time::Duration;

use crate::netns::Netns;

/// Whether a query asks for recursion (the RD flag).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recursion {
    /// RD clear, as a resolver asking an authoritative server.
    NotDesired,
    /// RD set, as a stub resolver asks (and as queries to forward arrive).
    Desired,
}

/// A query for `name` A, class IN, with `id`; no other flag than RD when asked.
pub fn a_query(id: u16, name: &str, recursion: Recursion) -> Vec<u8> {
    let mut q = id.to_be_bytes().to_vec();
    q.push(match recursion {
        Recursion::NotDesired => 0,
        Recursion::Desired => 1,
    });
    q.extend_from_slice(&[0, 0, 1, 0, 0, 0, 0, 0, 0]);
    for l in name.split('.') {
        q.push(u8::try_from(l.len()).expect("a label is under 64 bytes"));
        q.extend_from_slice(l.as_bytes());
    }
    q.extend_from_slice(&[0, 0, 1, 0, 1]);
    q
}

/// `message` with the two-byte length DNS over TCP puts before each message.
pub fn framed(message: &[u8]) -> Vec<u8> {
    let len = u16::try_from(message.len()).expect("a DNS message is under 64 KiB");
    let mut out = len.to_be_bytes().to_vec();
    out.extend_from_slice(message);
    out
}

/// The address in a NOERROR reply with exactly one answer (an A record, last in the message);
/// otherwise the rcode.
pub fn a_answer(reply: &[u8]) -> Result<[u8; 4], u8> {
    if reply.len() < 12 + 4 {
        return Err(reply.get(3).map_or(0, |b| b & 0x0f));
    }
    let rcode = reply[3] & 0x0f;
    let answers = u16::from_be_bytes([reply[6], reply[7]]);
    if rcode != 0 || answers != 1 {
        return Err(rcode);
    }
    let n = reply.len();
    let mut a = [0u8; 4];
    a.copy_from_slice(&reply[n - 4..]);
    Ok(a)
}

/// Why [`resolve_a`] has no address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unresolved {
    /// A reply came, not a one-answer NOERROR: its rcode.
    Rcode(u8),
    /// No reply within the wait.
    NoReply,
}

/// Asks `server` over UDP, from a loopback port, for `name` A (RD clear, id 0xabcd), and waits
/// up to two seconds: the address of a one-answer NOERROR reply.
pub fn resolve_a(server: SocketAddr, name: &str) -> Result<[u8; 4], Unresolved> {
    let local = if server.is_ipv4() {
        "127.0.0.1:0"
    } else {
        "[::1]:0"
    };
    let sock = UdpSocket::bind(local).expect("a loopback UDP port");
    sock.set_read_timeout(Some(Duration::from_secs(2)))
        .expect("a read timeout");
    sock.send_to(&a_query(0xabcd, name, Recursion::NotDesired), server)
        .map_err(|_| Unresolved::NoReply)?;
    let mut buf = [0u8; 512];
    let n = sock.recv(&mut buf).map_err(|_| Unresolved::NoReply)?;
    a_answer(&buf[..n]).map_err(Unresolved::Rcode)
}

/// `dig` against one server, run on the host (loopback) or inside a namespace.
#[derive(Debug, Clone)]
pub struct Dig {
    server: SocketAddr,
    /// The namespace to run in; the host's when `None`.
    netns: Option<String>,
}

impl Dig {
    /// dig asking `server`.
    pub fn new(server: SocketAddr) -> Self {
        Self {
            server,
            netns: None,
        }
    }

    /// The same, run inside `ns`.
    pub fn in_netns(mut self, ns: &Netns) -> Self {
        self.netns = Some(ns.name().to_owned());
        self
    }

    fn command(&self) -> Command {
        let mut c = match &self.netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, "dig"]);
                c
            }
            None => Command::new("dig"),
        };
        c.arg(format!("@{}", self.server.ip()))
            .args(["-p", &self.server.port().to_string()]);
        c
    }

    /// `dig +norec +time=2 +tries=1 <args>`: its full output; panics if dig fails.
    pub fn run(&self, args: &[&str]) -> String {
        let out = self
            .command()
            .args(["+norec", "+time=2", "+tries=1"])
            .args(args)
            .output()
            .expect("running dig");
        assert!(out.status.success(), "dig {args:?} failed: {out:?}");
        String::from_utf8(out.stdout).expect("dig prints UTF-8")
    }

    /// The answer section's records as "name type data" lines (TTL and class dropped).
    pub fn answers(&self, args: &[&str]) -> Vec<String> {
        let mut a = vec!["+noall", "+answer"];
        a.extend_from_slice(args);
        self.run(&a)
            .lines()
            .filter(|l| !l.is_empty() && !l.starts_with(';'))
            .map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                format!("{} {} {}", f[0], f[3], f[4..].join(" "))
            })
            .collect()
    }

    /// `dig +short +time=1 +tries=2 <args>` (recursion desired, as a stub asks): the answers'
    /// data, trimmed; empty when there is none or no reply.
    pub fn short(&self, args: &[&str]) -> String {
        let out = self
            .command()
            .args(["+short", "+time=1", "+tries=2"])
            .args(args)
            .output()
            .expect("running dig");
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_a_query_is_the_wire_message_a_resolver_sends() {
        assert_eq!(
            a_query(0x1234, "aaa.maas", Recursion::NotDesired),
            [
                0x12, 0x34, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 3, b'a', b'a', b'a', 4, b'm', b'a', b'a',
                b's', 0, 0, 1, 0, 1
            ]
        );
        let rd = a_query(7, "x", Recursion::Desired);
        assert_eq!(&rd[..4], [0, 7, 1, 0]);
        assert_eq!(framed(&rd)[..2], [0, rd.len() as u8]);
        assert_eq!(&framed(&rd)[2..], &rd[..]);
    }

    #[test]
    fn an_answer_is_read_from_a_reply_with_one_record() {
        let mut reply = a_query(1, "a.b", Recursion::NotDesired);
        reply[2] |= 0x80;
        reply[7] = 1;
        reply.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 30, 0, 4, 10, 20, 0, 10]);
        assert_eq!(a_answer(&reply), Ok([10, 20, 0, 10]));
        reply[3] = 3;
        assert_eq!(a_answer(&reply), Err(3));
        assert_eq!(a_answer(&[0; 5]), Err(0));
    }
}
