//! TFTP packets (RFC 1350) with option extension (RFC 2347): parsing borrowed from the
//! datagram, encoding into a caller's buffer. Parsing never panics: anything malformed is a
//! [`ParseError`].

/// Opcodes.
const RRQ: u16 = 1;
const WRQ: u16 = 2;
const DATA: u16 = 3;
const ACK: u16 = 4;
const ERROR: u16 = 5;
const OACK: u16 = 6;

/// The most options a request may carry; more is refused (a request is one datagram, but a
/// hostile one should not make us build long lists).
pub const MAX_OPTIONS: usize = 16;

/// A parsed packet, borrowing from the datagram.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Packet<'a> {
    /// A read request: file name, transfer mode, options in the order given.
    Rrq {
        /// The file asked for, as sent.
        filename: &'a str,
        /// `octet` or `netascii` (lower case).
        mode: Mode,
        /// Option names (as sent) and values.
        options: Vec<(&'a str, &'a str)>,
    },
    /// A write request (refused by a read-only server).
    Wrq {
        /// The file.
        filename: &'a str,
    },
    /// A data block.
    Data {
        /// Block number.
        block: u16,
        /// Its bytes.
        data: &'a [u8],
    },
    /// An acknowledgement.
    Ack {
        /// The block acknowledged (0: the OACK).
        block: u16,
    },
    /// An error: the peer gives up.
    Error {
        /// The code.
        code: u16,
        /// The message.
        message: &'a str,
    },
    /// An option acknowledgement (clients do not send these to a server).
    Oack,
}

/// Transfer modes a read request may ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Bytes as they are.
    Octet,
    /// Text with CR LF line ends; pserv serves boot files as they are in either mode, as
    /// dnsmasq and tftpd-hpa do for binary files.
    Netascii,
}

/// Why a datagram is not a packet we take.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ParseError {
    /// Shorter than an opcode and what it needs.
    #[error("truncated packet")]
    Truncated,
    /// An opcode TFTP does not have.
    #[error("unknown opcode {0}")]
    UnknownOpcode(u16),
    /// A string not terminated by NUL, not UTF-8, or empty where a value is required.
    #[error("malformed string field")]
    BadString,
    /// A mode other than octet or netascii (`mail` is obsolete).
    #[error("unsupported transfer mode")]
    BadMode,
    /// More than [`MAX_OPTIONS`] options, or an option without a value.
    #[error("malformed options")]
    BadOptions,
}

/// RFC 1350 error codes (and RFC 2347's 8).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorCode {
    /// Not defined; see the message.
    Undefined = 0,
    /// File not found.
    FileNotFound = 1,
    /// Access violation.
    AccessViolation = 2,
    /// Disk full or allocation exceeded.
    DiskFull = 3,
    /// Illegal TFTP operation.
    IllegalOperation = 4,
    /// Unknown transfer ID.
    UnknownTid = 5,
    /// File already exists.
    FileExists = 6,
    /// No such user.
    NoSuchUser = 7,
    /// Option negotiation refused.
    OptionRefused = 8,
}

fn be16(b: &[u8], at: usize) -> Result<u16, ParseError> {
    match b.get(at..at + 2) {
        Some(&[x, y]) => Ok(u16::from_be_bytes([x, y])),
        _ => Err(ParseError::Truncated),
    }
}

/// Splits the NUL-terminated strings of a request body.
fn strings(body: &[u8]) -> Result<Vec<&str>, ParseError> {
    if body.last() != Some(&0) {
        return Err(ParseError::BadString);
    }
    body[..body.len() - 1]
        .split(|b| *b == 0)
        .map(|s| std::str::from_utf8(s).map_err(|_| ParseError::BadString))
        .collect()
}

/// Parses one datagram.
pub fn parse(buf: &[u8]) -> Result<Packet<'_>, ParseError> {
    let op = be16(buf, 0)?;
    let body = &buf[2..];
    match op {
        RRQ | WRQ => {
            let fields = strings(body)?;
            let (filename, mode) = match fields.as_slice() {
                [f, m, ..] if !f.is_empty() => (*f, *m),
                _ => return Err(ParseError::BadString),
            };
            if op == WRQ {
                return Ok(Packet::Wrq { filename });
            }
            let mode = if mode.eq_ignore_ascii_case("octet") {
                Mode::Octet
            } else if mode.eq_ignore_ascii_case("netascii") {
                Mode::Netascii
            } else {
                return Err(ParseError::BadMode);
            };
            let rest = &fields[2..];
            // Some clients pad the request with NULs after the last option: drop empty tails.
            let rest: &[&str] = {
                let end = rest
                    .iter()
                    .rposition(|s| !s.is_empty())
                    .map_or(0, |i| i + 1);
                &rest[..end]
            };
            if !rest.len().is_multiple_of(2) || rest.len() / 2 > MAX_OPTIONS {
                return Err(ParseError::BadOptions);
            }
            let options = rest
                .chunks_exact(2)
                .map(|kv| (kv[0], kv[1]))
                .collect::<Vec<_>>();
            if options.iter().any(|(k, _)| k.is_empty()) {
                return Err(ParseError::BadOptions);
            }
            Ok(Packet::Rrq {
                filename,
                mode,
                options,
            })
        }
        DATA => Ok(Packet::Data {
            block: be16(buf, 2)?,
            data: &buf[4..],
        }),
        ACK => Ok(Packet::Ack {
            block: be16(buf, 2)?,
        }),
        ERROR => {
            let code = be16(buf, 2)?;
            let message = match buf.get(4..) {
                Some(m) if !m.is_empty() => {
                    let m = m.strip_suffix(&[0]).unwrap_or(m);
                    std::str::from_utf8(m).map_err(|_| ParseError::BadString)?
                }
                _ => "",
            };
            Ok(Packet::Error { code, message })
        }
        OACK => Ok(Packet::Oack),
        other => Err(ParseError::UnknownOpcode(other)),
    }
}

/// Writes a DATA packet header into `out` (cleared first); the caller appends the block.
pub fn data_header(block: u16, out: &mut Vec<u8>) {
    out.clear();
    out.extend_from_slice(&DATA.to_be_bytes());
    out.extend_from_slice(&block.to_be_bytes());
}

/// Writes an OACK with `options` (name, value) into `out` (cleared first).
pub fn oack(options: &[(&str, u64)], out: &mut Vec<u8>) {
    out.clear();
    out.extend_from_slice(&OACK.to_be_bytes());
    for (name, value) in options {
        out.extend_from_slice(name.as_bytes());
        out.push(0);
        out.extend_from_slice(value.to_string().as_bytes());
        out.push(0);
    }
}

/// Writes an ERROR packet into `out` (cleared first).
pub fn error(code: ErrorCode, message: &str, out: &mut Vec<u8>) {
    out.clear();
    out.extend_from_slice(&ERROR.to_be_bytes());
    out.extend_from_slice(&(code as u16).to_be_bytes());
    out.extend_from_slice(message.as_bytes());
    out.push(0);
}

/// Writes an ACK (tests and clients).
pub fn ack(block: u16, out: &mut Vec<u8>) {
    out.clear();
    out.extend_from_slice(&ACK.to_be_bytes());
    out.extend_from_slice(&block.to_be_bytes());
}

/// Writes a read request (tests and clients).
pub fn rrq(filename: &str, options: &[(&str, &str)], out: &mut Vec<u8>) {
    out.clear();
    out.extend_from_slice(&RRQ.to_be_bytes());
    for s in [filename, "octet"] {
        out.extend_from_slice(s.as_bytes());
        out.push(0);
    }
    for (k, v) in options {
        for s in [k, v] {
            out.extend_from_slice(s.as_bytes());
            out.push(0);
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_read_request_with_options_parses() {
        let mut b = Vec::new();
        rrq("pxelinux.0", &[("blksize", "1468"), ("tsize", "0")], &mut b);
        assert_eq!(
            parse(&b).unwrap(),
            Packet::Rrq {
                filename: "pxelinux.0",
                mode: Mode::Octet,
                options: vec![("blksize", "1468"), ("tsize", "0")],
            }
        );
        // Trailing NUL padding (some PXE ROMs) is tolerated.
        b.extend_from_slice(&[0, 0]);
        assert!(matches!(parse(&b), Ok(Packet::Rrq { .. })));
    }

    #[test]
    fn malformed_requests_are_errors() {
        assert_eq!(parse(&[]), Err(ParseError::Truncated));
        assert_eq!(parse(&[0]), Err(ParseError::Truncated));
        assert_eq!(parse(&[0, 9]), Err(ParseError::UnknownOpcode(9)));
        assert_eq!(parse(&[0, 1, b'f']), Err(ParseError::BadString));
        assert_eq!(parse(&[0, 1, 0, b'o', 0]), Err(ParseError::BadString));
        assert_eq!(parse(b"\0\x01f\0mail\0"), Err(ParseError::BadMode));
        assert_eq!(
            parse(b"\0\x01f\0octet\0blksize\0"),
            Err(ParseError::BadOptions)
        );
        assert_eq!(parse(&[0, 4, 1]), Err(ParseError::Truncated));
        assert_eq!(parse(&[0, 4, 0, 7]), Ok(Packet::Ack { block: 7 }));
    }

    proptest! {
        #[test]
        fn parsing_never_panics(b in proptest::collection::vec(any::<u8>(), 0..600)) {
            let _ = parse(&b);
        }
    }
}
