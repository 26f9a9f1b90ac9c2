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

use std::net::Ipv4Addr;

use pserv_core::MacAddr;
use pserv_core::lease::{Change, ClientId};
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
    pub fn lease(&self, ip: Ipv4Addr) -> Vec<u8> {
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
    /// An address's lease record.
    Lease(Ipv4Addr),
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
}

fn hex(id: &ClientId) -> String {
    id.as_bytes().iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Option<ClientId> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    let bytes: Option<Vec<u8>> = (0..s.len())
        .step_by(2)
        .map(|i| s.get(i..i + 2).and_then(|h| u8::from_str_radix(h, 16).ok()))
        .collect();
    ClientId::new(&bytes?)
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
                client_id: client_id.as_ref().map(hex),
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
                client_id: client_id.as_ref().map(hex),
                until: *until,
                by: by.to_owned(),
            }),
            Change::Released { .. } => None,
        }
    }

    /// The change that recreates this record at `ip`.
    pub fn change(&self, ip: Ipv4Addr) -> Change {
        match self {
            Self::Bound {
                mac,
                client_id,
                start,
                expires,
                hostname,
                ..
            } => Change::Bound {
                mac: *mac,
                client_id: client_id.as_deref().and_then(unhex),
                ip,
                start: *start,
                expires: *expires,
                hostname: hostname.as_deref().map(Into::into),
            },
            Self::Declined {
                mac,
                client_id,
                until,
                ..
            } => Change::Declined {
                mac: *mac,
                client_id: client_id.as_deref().and_then(unhex),
                ip,
                until: *until,
            },
        }
    }

    /// The change that undoes this record at `ip` (its key was deleted): the client released
    /// it.
    pub fn released(&self, ip: Ipv4Addr) -> Change {
        let (mac, client_id) = match self {
            Self::Bound { mac, client_id, .. } | Self::Declined { mac, client_id, .. } => {
                (*mac, client_id)
            }
        };
        Change::Released {
            mac,
            client_id: client_id.as_deref().and_then(unhex),
            ip,
        }
    }

    /// Whether it still holds its address at `now` (a lease not yet ended, a quarantine not
    /// yet over).
    pub fn live(&self, now: u64) -> bool {
        match self {
            Self::Bound { expires, .. } => *expires > now,
            Self::Declined { until, .. } => *until > now,
        }
    }

    /// Who wrote it.
    pub fn by(&self) -> &str {
        match self {
            Self::Bound { by, .. } | Self::Declined { by, .. } => by,
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
pub fn address(change: &Change) -> Ipv4Addr {
    match change {
        Change::Bound { ip, .. } | Change::Released { ip, .. } | Change::Declined { ip, .. } => *ip,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn keys_round_trip() {
        let k = Keys::new("rack1");
        let ip = Ipv4Addr::new(10, 0, 0, 7);
        assert_eq!(k.parse(&k.lease(ip)), Some(KeyKind::Lease(ip)));
        assert_eq!(k.parse(&k.member("a")), Some(KeyKind::Member("a".into())));
        assert_eq!(k.parse(b"/pserv/rack2/leases/10.0.0.7"), None);
        assert_eq!(k.parse(b"/pserv/rack1/leases/nonsense"), None);
        assert_eq!(k.parse(b"/pserv/rack1/members/"), None);
    }

    #[test]
    fn records_recreate_their_changes() {
        let ip = Ipv4Addr::new(10, 0, 0, 9);
        let mac: MacAddr = "02:00:00:00:00:01".parse().unwrap();
        let bound = Change::Bound {
            mac,
            client_id: ClientId::new(&[0, 1, 2, 0xff]),
            ip,
            start: 10,
            expires: 100,
            hostname: Some("web-1".into()),
        };
        let r = Record::of(&bound, "a").unwrap();
        let back = Record::decode(&r.encode()).unwrap();
        assert_eq!(back, r);
        assert_eq!(back.change(ip), bound);
        assert_eq!(back.by(), "a");
        assert_eq!(
            back.released(ip),
            Change::Released {
                mac,
                client_id: ClientId::new(&[0, 1, 2, 0xff]),
                ip
            }
        );
        let declined = Change::Declined {
            mac,
            client_id: None,
            ip,
            until: 50,
        };
        assert_eq!(
            Record::decode(&Record::of(&declined, "b").unwrap().encode())
                .unwrap()
                .change(ip),
            declined
        );
        assert!(Record::of(&back.released(ip), "a").is_none());
        assert!(Record::decode(b"{\"state\":\"bogus\"}").is_err());
    }
}
