//! What the cluster keeps in etcd, under one prefix per cluster (`/pserv/<cluster>/`):
//!
//! - `leases/<address>`: one key per dynamic address that is bound or quarantined, its value
//!   a JSON record (`{"state":"bound","mac":...,"client_id":...,"start":...,"expires":...,
//!   "hostname":...,"by":<instance>}` or `{"state":"declined",...,"until":...}`). A release
//!   deletes the key. A lease that ends on time stays until its address is taken again: every
//!   instance ends it by the clock, and the next taker's compare is on the key's revision.
//! - `members/<instance>`: one key per live instance, attached to that instance's etcd lease
//!   (its heartbeat); it disappears when the instance stops renewing it.
//!
//! Records are JSON so that `etcdctl get --prefix /pserv/` shows an operator what is there.

use std::net::IpAddr;

use pserv_core::MacAddr;
use pserv_core::lease::{Change, ClientId, Duid};
use serde::{Deserialize, Serialize};

/// The key layout of one cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keys {
    prefix: String,
}

impl Keys {
    /// The keys of cluster `cluster` (a name: letters, digits, `-`, `_`, `.`).
    pub fn new(cluster: &str) -> Self {
        Self {
            prefix: format!("/pserv/{cluster}/"),
        }
    }

    /// Every key of the cluster starts with this.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Where the leases live.
    pub fn leases(&self) -> String {
        format!("{}leases/", self.prefix)
    }

    /// Where the members live.
    pub fn members(&self) -> String {
        format!("{}members/", self.prefix)
    }

    /// An address's key.
    pub fn lease(&self, ip: IpAddr) -> Vec<u8> {
        format!("{}leases/{ip}", self.prefix).into_bytes()
    }

    /// An instance's membership key.
    pub fn member(&self, name: &str) -> Vec<u8> {
        format!("{}members/{name}", self.prefix).into_bytes()
    }

    /// What a key of this cluster is.
    pub fn parse(&self, key: &[u8]) -> Option<KeyKind> {
        let rest = std::str::from_utf8(key).ok()?.strip_prefix(&self.prefix)?;
        if let Some(ip) = rest.strip_prefix("leases/") {
            return ip.parse().ok().map(KeyKind::Lease);
        }
        rest.strip_prefix("members/")
            .filter(|n| !n.is_empty())
            .map(|n| KeyKind::Member(n.to_owned()))
    }
}

/// A key of the cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyKind {
    /// An address's lease record (IPv4 or IPv6).
    Lease(IpAddr),
    /// A live instance.
    Member(String),
}

/// A lease record as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum Record {
    /// A bound lease.
    Bound {
        /// The client's hardware address.
        mac: MacAddr,
        /// Its client identifier, in hex.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        client_id: Option<String>,
        /// When it was committed (Unix seconds).
        start: u64,
        /// When it ends.
        expires: u64,
        /// Its hostname.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        hostname: Option<String>,
        /// The instance that wrote it.
        by: String,
    },
    /// A quarantined address.
    Declined {
        /// Who declined it.
        mac: MacAddr,
        /// Its client identifier, in hex.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        client_id: Option<String>,
        /// End of the quarantine.
        until: u64,
        /// The instance that wrote it.
        by: String,
    },
    /// A bound DHCPv6 lease.
    Bound6 {
        /// The client's DUID, in hex.
        duid: String,
        /// The IA's identifier.
        iaid: u32,
        /// The client's hardware address, where known.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        mac: Option<MacAddr>,
        /// When it was committed (Unix seconds).
        start: u64,
        /// When it ends.
        expires: u64,
        /// The client's name.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        hostname: Option<String>,
        /// The instance that wrote it.
        by: String,
    },
    /// A quarantined IPv6 address.
    Declined6 {
        /// Who declined it: its DUID, in hex.
        duid: String,
        /// The IA's identifier.
        iaid: u32,
        /// End of the quarantine.
        until: u64,
        /// The instance that wrote it.
        by: String,
    },
}

/// Bytes (a client identifier, a DUID) as plain hex, as records store them.
fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex_bytes(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| s.get(i..i + 2).and_then(|h| u8::from_str_radix(h, 16).ok()))
        .collect()
}

fn unhex(s: &str) -> Option<ClientId> {
    ClientId::new(&unhex_bytes(s)?)
}

impl Record {
    /// The record a change writes (`None`: a release, which deletes the key).
    pub fn of(change: &Change, by: &str) -> Option<Self> {
        match change {
            Change::Bound {
                mac,
                client_id,
                start,
                expires,
                hostname,
                ..
            } => Some(Self::Bound {
                mac: *mac,
                client_id: client_id.as_ref().map(|id| hex(id.as_bytes())),
                start: *start,
                expires: *expires,
                hostname: hostname.as_deref().map(str::to_owned),
                by: by.to_owned(),
            }),
            Change::Declined {
                mac,
                client_id,
                until,
                ..
            } => Some(Self::Declined {
                mac: *mac,
                client_id: client_id.as_ref().map(|id| hex(id.as_bytes())),
                until: *until,
                by: by.to_owned(),
            }),
            Change::Bound6 {
                duid,
                iaid,
                mac,
                start,
                expires,
                hostname,
                ..
            } => Some(Self::Bound6 {
                duid: hex(duid.as_bytes()),
                iaid: *iaid,
                mac: *mac,
                start: *start,
                expires: *expires,
                hostname: hostname.as_deref().map(str::to_owned),
                by: by.to_owned(),
            }),
            Change::Declined6 {
                duid, iaid, until, ..
            } => Some(Self::Declined6 {
                duid: hex(duid.as_bytes()),
                iaid: *iaid,
                until: *until,
                by: by.to_owned(),
            }),
            Change::Released { .. } | Change::Released6 { .. } => None,
        }
    }

    /// The change that recreates this record at `ip` (`None` when the record is not of the
    /// address's family, or its DUID is not one: a record pserv did not write).
    pub fn change(&self, ip: IpAddr) -> Option<Change> {
        Some(match (self, ip) {
            (
                Self::Bound {
                    mac,
                    client_id,
                    start,
                    expires,
                    hostname,
                    ..
                },
                IpAddr::V4(ip),
            ) => Change::Bound {
                mac: *mac,
                client_id: client_id.as_deref().and_then(unhex),
                ip,
                start: *start,
                expires: *expires,
                hostname: hostname.as_deref().map(Into::into),
            },
            (
                Self::Declined {
                    mac,
                    client_id,
                    until,
                    ..
                },
                IpAddr::V4(ip),
            ) => Change::Declined {
                mac: *mac,
                client_id: client_id.as_deref().and_then(unhex),
                ip,
                until: *until,
            },
            (
                Self::Bound6 {
                    duid,
                    iaid,
                    mac,
                    start,
                    expires,
                    hostname,
                    ..
                },
                IpAddr::V6(ip),
            ) => Change::Bound6 {
                duid: Duid::new(&unhex_bytes(duid)?)?,
                iaid: *iaid,
                mac: *mac,
                ip,
                start: *start,
                expires: *expires,
                hostname: hostname.as_deref().map(Into::into),
            },
            (
                Self::Declined6 {
                    duid, iaid, until, ..
                },
                IpAddr::V6(ip),
            ) => Change::Declined6 {
                duid: Duid::new(&unhex_bytes(duid)?)?,
                iaid: *iaid,
                ip,
                until: *until,
            },
            _ => return None,
        })
    }

    /// The change that undoes this record at `ip` (its key was deleted): the client released
    /// it (`None` as for [`Record::change`]).
    pub fn released(&self, ip: IpAddr) -> Option<Change> {
        Some(match (self, ip) {
            (
                Self::Bound { mac, client_id, .. } | Self::Declined { mac, client_id, .. },
                IpAddr::V4(ip),
            ) => Change::Released {
                mac: *mac,
                client_id: client_id.as_deref().and_then(unhex),
                ip,
            },
            (
                Self::Bound6 { duid, iaid, .. } | Self::Declined6 { duid, iaid, .. },
                IpAddr::V6(ip),
            ) => Change::Released6 {
                duid: Duid::new(&unhex_bytes(duid)?)?,
                iaid: *iaid,
                ip,
            },
            _ => return None,
        })
    }

    /// Whether it still holds its address at `now` (a lease not yet ended, a quarantine not
    /// yet over).
    pub fn live(&self, now: u64) -> bool {
        match self {
            Self::Bound { expires, .. } | Self::Bound6 { expires, .. } => *expires > now,
            Self::Declined { until, .. } | Self::Declined6 { until, .. } => *until > now,
        }
    }

    /// Who wrote it.
    pub fn by(&self) -> &str {
        match self {
            Self::Bound { by, .. }
            | Self::Declined { by, .. }
            | Self::Bound6 { by, .. }
            | Self::Declined6 { by, .. } => by,
        }
    }

    /// Encoded as stored.
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Decoded from what is stored.
    pub fn decode(bytes: &[u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(bytes)
    }
}

/// The address a change is about.
pub fn address(change: &Change) -> IpAddr {
    change.ip()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::net::Ipv4Addr;

    #[test]
    fn keys_round_trip() {
        let k = Keys::new("rack1");
        for ip in [IpAddr::from([10, 0, 0, 7]), "fd00::7".parse().unwrap()] {
            assert_eq!(k.parse(&k.lease(ip)), Some(KeyKind::Lease(ip)));
        }
        assert_eq!(k.parse(&k.member("a")), Some(KeyKind::Member("a".into())));
        assert_eq!(k.parse(b"/pserv/rack2/leases/10.0.0.7"), None);
        assert_eq!(k.parse(b"/pserv/rack1/leases/nonsense"), None);
        assert_eq!(k.parse(b"/pserv/rack1/members/"), None);
    }

    #[test]
    fn records_recreate_their_changes() {
        let v4 = Ipv4Addr::new(10, 0, 0, 9);
        let ip = IpAddr::V4(v4);
        let mac: MacAddr = "02:00:00:00:00:01".parse().unwrap();
        let bound = Change::Bound {
            mac,
            client_id: ClientId::new(&[0, 1, 2, 0xff]),
            ip: v4,
            start: 10,
            expires: 100,
            hostname: Some("web-1".into()),
        };
        let r = Record::of(&bound, "a").unwrap();
        let back = Record::decode(&r.encode()).unwrap();
        assert_eq!(back, r);
        assert_eq!(back.change(ip), Some(bound));
        assert_eq!(back.by(), "a");
        assert_eq!(
            back.released(ip),
            Some(Change::Released {
                mac,
                client_id: ClientId::new(&[0, 1, 2, 0xff]),
                ip: v4
            })
        );
        let declined = Change::Declined {
            mac,
            client_id: None,
            ip: v4,
            until: 50,
        };
        assert_eq!(
            Record::decode(&Record::of(&declined, "b").unwrap().encode())
                .unwrap()
                .change(ip),
            Some(declined)
        );
        assert!(Record::of(&back.released(ip).unwrap(), "a").is_none());
        assert!(Record::decode(b"{\"state\":\"bogus\"}").is_err());
        // A record of the other family than its key's is not taken.
        assert_eq!(back.change("fd00::9".parse().unwrap()), None);
    }

    #[test]
    fn dhcpv6_records_recreate_their_changes() {
        let v6: std::net::Ipv6Addr = "fd00:20::9".parse().unwrap();
        let duid = pserv_core::lease::Duid::new(&[0, 3, 0, 1, 2, 0, 0, 0, 0, 1]).unwrap();
        let bound = Change::Bound6 {
            duid: duid.clone(),
            iaid: 42,
            mac: duid.mac(),
            ip: v6,
            start: 10,
            expires: 100,
            hostname: Some("web-6".into()),
        };
        let r = Record::of(&bound, "a").unwrap();
        let text = String::from_utf8(r.encode()).unwrap();
        assert!(text.contains("\"state\":\"bound6\""), "{text}");
        let back = Record::decode(text.as_bytes()).unwrap();
        assert_eq!(back.change(v6.into()), Some(bound));
        assert_eq!(
            back.released(v6.into()),
            Some(Change::Released6 {
                duid: duid.clone(),
                iaid: 42,
                ip: v6
            })
        );
        assert_eq!(back.change(IpAddr::from([10, 0, 0, 9])), None);
        let declined = Change::Declined6 {
            duid,
            iaid: 42,
            ip: v6,
            until: 50,
        };
        let back = Record::decode(&Record::of(&declined, "b").unwrap().encode()).unwrap();
        assert_eq!(back.change(v6.into()), Some(declined));
    }
}
