//! Extra DHCP options from a snapshot, compiled once into the exact bytes a reply carries.

use std::net::Ipv4Addr;

use serde_json::Value;

use crate::name;
use crate::snapshot::OptionSpec;

/// A DHCP option ready to copy into a reply: its code and its payload bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawOption {
    /// The option code.
    pub code: u8,
    /// The payload (at most 255 bytes).
    pub data: Box<[u8]>,
}

/// Options pserv sets itself from the snapshot's own fields; `options` cannot override them,
/// except 12 on a subnet (the host name of its clients that are not nodes).
pub const SERVER_SET: [u8; 12] = [1, 3, 6, 12, 15, 51, 53, 54, 58, 59, 66, 67];
/// Options that steer the protocol itself and have no meaning as configured data.
const PROTOCOL_ONLY: [u8; 6] = [0, 50, 52, 55, 61, 82];

#[derive(Clone, Copy)]
enum Kind {
    Addresses,
    Address,
    I32,
    U32,
    U16,
    U8,
    Bool,
    Text,
    DomainList,
}

/// The value type of the common RFC 2132 (and a few later) codes.
fn kind_of(code: u8) -> Option<Kind> {
    Some(match code {
        4 | 5 | 7 | 8 | 9 | 10 | 11 | 41 | 42 | 44 | 45 | 48 | 49 | 65 | 68 | 69 | 70 | 71 | 72
        | 73 | 74 | 75 | 76 | 150 => Kind::Addresses,
        16 | 28 | 32 => Kind::Address,
        2 => Kind::I32,
        24 | 35 | 38 => Kind::U32,
        13 | 22 | 26 | 57 => Kind::U16,
        23 | 37 | 46 => Kind::U8,
        19 | 20 | 27 | 29 | 30 | 31 | 34 | 36 | 39 => Kind::Bool,
        12 | 14 | 17 | 18 | 40 | 47 | 56 | 60 | 62 | 64 | 114 => Kind::Text,
        119 => Kind::DomainList,
        _ => return None,
    })
}

/// Where an option is configured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// A subnet's `options`: every client of the subnet.
    Subnet,
    /// A node's `options`.
    Node,
}

/// Compiles one option, or says why it cannot be (the message names the code and the value).
///
/// Option 12 (host name) may be set on a subnet, for its clients that are not nodes (dynamic
/// and INFORM clients): a node is always sent its own hostname, so on a node it is refused.
pub fn compile(spec: &OptionSpec, scope: Scope) -> Result<RawOption, String> {
    let code = spec.code;
    if code == 255 || PROTOCOL_ONLY.contains(&code) {
        return Err(format!("option {code} cannot be configured"));
    }
    if code == 12 && scope == Scope::Node {
        return Err(
            "option 12 is the node's hostname, which pserv sends itself: set `hostname`".to_owned(),
        );
    }
    if SERVER_SET.contains(&code) && code != 12 {
        return Err(format!(
            "option {code} is set by pserv from the snapshot's own fields and cannot be overridden"
        ));
    }
    let data = match (&spec.value, &spec.hex) {
        (Some(_), Some(_)) => {
            return Err(format!("option {code}: give `value` or `hex`, not both"));
        }
        (None, None) => return Err(format!("option {code}: give `value` or `hex`")),
        (None, Some(hex)) => parse_hex(hex).ok_or_else(|| {
            format!("option {code}: `hex` must be an even number of hex digits, got {hex:?}")
        })?,
        (Some(v), None) => {
            let kind = kind_of(code).ok_or_else(|| {
                format!("option {code} has no known value type: give its bytes as `hex`")
            })?;
            encode(kind, v).map_err(|want| format!("option {code}: expected {want}, got {v}"))?
        }
    };
    if data.len() > 255 {
        return Err(format!(
            "option {code}: {} bytes is too long, at most 255 fit",
            data.len()
        ));
    }
    Ok(RawOption {
        code,
        data: data.into_boxed_slice(),
    })
}

/// DHCPv6 options pserv builds itself (RFC 8415, 3646, 4704, 5970, 6939) or that steer the
/// protocol: an IPv6 subnet's `options` cannot set them.
pub const SERVER_SET6: [u16; 21] = [
    1, 2, 3, 4, 5, 6, 7, 8, 9, 12, 13, 14, 18, 19, 20, 23, 24, 39, 59, 61, 79,
];

/// Compiles one option of an IPv6 subnet: DHCPv6 codes, given as `hex` (no DHCPv6 code has a
/// typed `value` yet).
pub fn compile6(spec: &OptionSpec) -> Result<crate::table::RawOption6, String> {
    let code = u16::from(spec.code);
    if code == 0 || SERVER_SET6.contains(&code) {
        return Err(format!(
            "DHCPv6 option {code} is set by pserv itself and cannot be configured"
        ));
    }
    let data = match (&spec.value, &spec.hex) {
        (None, Some(hex)) => parse_hex(hex).ok_or_else(|| {
            format!("option {code}: `hex` must be an even number of hex digits, got {hex:?}")
        })?,
        (Some(_), _) => {
            return Err(format!(
                "DHCPv6 option {code}: give its bytes as `hex` (typed values are for DHCPv4 codes)"
            ));
        }
        (None, None) => return Err(format!("option {code}: give `hex`")),
    };
    if data.len() > 1024 {
        return Err(format!(
            "option {code}: {} bytes is too long for one datagram's option, at most 1024",
            data.len()
        ));
    }
    Ok(crate::table::RawOption6 {
        code,
        data: data.into_boxed_slice(),
    })
}

fn parse_hex(s: &str) -> Option<Vec<u8>> {
    let s: String = s.chars().filter(|c| *c != ':' && *c != ' ').collect();
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

fn encode(kind: Kind, v: &Value) -> Result<Vec<u8>, &'static str> {
    fn addr(v: &Value) -> Option<Ipv4Addr> {
        v.as_str()?.parse().ok()
    }
    fn int(v: &Value, min: i64, max: i64) -> Option<i64> {
        v.as_i64().filter(|n| (min..=max).contains(n))
    }
    match kind {
        Kind::Addresses => {
            let list: Vec<&Value> = match v {
                Value::Array(a) if !a.is_empty() => a.iter().collect(),
                Value::String(_) => vec![v],
                _ => return Err("a list of IPv4 addresses"),
            };
            let mut out = Vec::with_capacity(list.len() * 4);
            for item in list {
                out.extend(addr(item).ok_or("a list of IPv4 addresses")?.octets());
            }
            Ok(out)
        }
        Kind::Address => Ok(addr(v).ok_or("an IPv4 address")?.octets().to_vec()),
        Kind::I32 => Ok((int(v, i32::MIN.into(), i32::MAX.into())
            .ok_or("a 32-bit signed integer")? as i32)
            .to_be_bytes()
            .to_vec()),
        Kind::U32 => Ok(
            (int(v, 0, u32::MAX.into()).ok_or("a 32-bit unsigned integer")? as u32)
                .to_be_bytes()
                .to_vec(),
        ),
        Kind::U16 => Ok(
            (int(v, 0, u16::MAX.into()).ok_or("a 16-bit unsigned integer")? as u16)
                .to_be_bytes()
                .to_vec(),
        ),
        Kind::U8 => Ok(vec![int(v, 0, 255).ok_or("an integer from 0 to 255")? as u8]),
        Kind::Bool => match v {
            Value::Bool(b) => Ok(vec![u8::from(*b)]),
            _ => Ok(vec![int(v, 0, 1).ok_or("true, false, 0 or 1")? as u8]),
        },
        Kind::Text => {
            let s = v
                .as_str()
                .filter(|s| !s.is_empty())
                .ok_or("a non-empty string")?;
            Ok(s.as_bytes().to_vec())
        }
        Kind::DomainList => {
            let list: Vec<&str> = match v {
                Value::Array(a) if !a.is_empty() => {
                    a.iter().map(Value::as_str).collect::<Option<_>>()
                }
                Value::String(s) => Some(vec![s.as_str()]),
                _ => None,
            }
            .ok_or("a list of domain names")?;
            let mut out = Vec::new();
            for d in list {
                name::check_domain(d).map_err(|_| "a list of valid domain names")?;
                // RFC 3397: uncompressed RFC 1035 wire form is always valid.
                for label in name::normalize(d).split('.') {
                    out.push(label.len() as u8);
                    out.extend_from_slice(label.as_bytes());
                }
                out.push(0);
            }
            Ok(out)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec(code: u8, value: Option<Value>, hex: Option<&str>) -> OptionSpec {
        OptionSpec {
            code,
            value,
            hex: hex.map(str::to_owned),
        }
    }

    #[test]
    fn typed_values_encode() {
        let o = compile(
            &spec(42, Some(json!(["10.20.0.2", "10.20.0.3"])), None),
            Scope::Subnet,
        )
        .unwrap();
        assert_eq!(&*o.data, &[10, 20, 0, 2, 10, 20, 0, 3]);
        let o = compile(&spec(26, Some(json!(9000)), None), Scope::Subnet).unwrap();
        assert_eq!(&*o.data, &[0x23, 0x28]);
        let o = compile(&spec(224, None, Some("01020304")), Scope::Subnet).unwrap();
        assert_eq!(&*o.data, &[1, 2, 3, 4]);
        let o = compile(
            &spec(119, Some(json!(["maas", "Lab.Example."])), None),
            Scope::Subnet,
        )
        .unwrap();
        assert_eq!(&*o.data, b"\x04maas\x00\x03lab\x07example\x00");
        let o = compile(&spec(19, Some(json!(true)), None), Scope::Subnet).unwrap();
        assert_eq!(&*o.data, &[1]);
    }

    #[test]
    fn wrong_types_and_reserved_codes_rejected() {
        for (s, needle) in [
            (spec(26, Some(json!("big")), None), "16-bit"),
            (spec(26, Some(json!(70000)), None), "16-bit"),
            (spec(42, Some(json!(["10.0.0.300"])), None), "IPv4"),
            (
                spec(3, Some(json!(["10.0.0.1"])), None),
                "cannot be overridden",
            ),
            (spec(67, None, Some("00")), "cannot be overridden"),
            (spec(224, Some(json!(1)), None), "`hex`"),
            (spec(224, None, Some("123")), "even number"),
            (spec(224, None, None), "give `value` or `hex`"),
            (spec(82, None, Some("00")), "cannot be configured"),
            (spec(12, Some(json!(7)), None), "expected"),
        ] {
            let e = compile(&s, Scope::Subnet).unwrap_err();
            assert!(e.contains(needle), "{e:?} lacks {needle:?}");
        }
        // Option 12: a subnet's clients that are not nodes; never a node's.
        let o = compile(&spec(12, Some(json!("guest")), None), Scope::Subnet).unwrap();
        assert_eq!(&*o.data, b"guest");
        assert!(
            compile(&spec(12, Some(json!("guest")), None), Scope::Node)
                .unwrap_err()
                .contains("hostname")
        );
        let too_long = "00".repeat(256);
        assert!(
            compile(&spec(224, None, Some(&too_long)), Scope::Subnet)
                .unwrap_err()
                .contains("too long")
        );
    }
}
