//! Who a dynamic lease belongs to.
//!
//! RFC 2131 §4.2: a client that sends a client identifier (option 61) is identified by it,
//! else by its hardware address (chaddr). So two clients behind one chaddr with different
//! identifiers hold two leases, and a client keeps its lease when its chaddr changes but its
//! identifier does not.
//!
//! One equivalence is deliberate: an identifier that is hardware type 1 followed by the
//! client's own chaddr (what ISC dhclient and iPXE send by default) names the same client as
//! that chaddr alone, as dnsmasq treats it. A machine's PXE ROM (no option 61) and the iPXE or
//! installer it loads (`01:<mac>`) then keep one lease, instead of taking a second address
//! from the pool at every stage of one boot.

use std::fmt;

use serde::{Serialize, Serializer};

use crate::MacAddr;

/// A client identifier (DHCP option 61) as the client sent it: 1 to 255 bytes.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ClientId(Box<[u8]>);

impl ClientId {
    /// The identifier, or `None` if `bytes` is empty or longer than an option can carry.
    pub fn new(bytes: &[u8]) -> Option<Self> {
        (!bytes.is_empty() && bytes.len() <= 255).then(|| Self(bytes.into()))
    }

    /// Its bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// Whether it is hardware type 1 (Ethernet) followed by `mac`.
    pub fn is_hw(&self, mac: MacAddr) -> bool {
        self.0.len() == 7 && self.0[0] == 1 && self.0[1..] == mac.0
    }
}

/// Colon-separated hex octets, as dhcpd and Kea print identifiers (`01:52:54:00:12:34:56`).
impl fmt::Display for ClientId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        colon_hex(&self.0, f)
    }
}

/// `bytes` as colon-separated hex octets (identifiers: client IDs, DUIDs).
pub(crate) fn colon_hex(bytes: &[u8], f: &mut fmt::Formatter<'_>) -> fmt::Result {
    for (i, b) in bytes.iter().enumerate() {
        if i > 0 {
            f.write_str(":")?;
        }
        write!(f, "{b:02x}")?;
    }
    Ok(())
}

impl fmt::Debug for ClientId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ClientId({self})")
    }
}

impl Serialize for ClientId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// The identity a lease is filed under: the client identifier when the client sent one that
/// is not just its own hardware address, else the hardware address.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ClientKey {
    /// By chaddr.
    Hw(MacAddr),
    /// By option 61.
    Id(ClientId),
}

impl ClientKey {
    /// The key of a client with hardware address `mac` that sent `id`.
    pub fn new(mac: MacAddr, id: Option<&ClientId>) -> Self {
        match id {
            Some(id) if !id.is_hw(mac) => Self::Id(id.clone()),
            _ => Self::Hw(mac),
        }
    }
}

impl From<MacAddr> for ClientKey {
    fn from(mac: MacAddr) -> Self {
        Self::Hw(mac)
    }
}

/// A client as a request shows it: its hardware address and, if it sent one, its client
/// identifier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Client {
    /// chaddr.
    pub mac: MacAddr,
    /// Option 61, as sent.
    pub id: Option<ClientId>,
}

impl Client {
    /// A client identified by its hardware address only.
    pub fn hw(mac: MacAddr) -> Self {
        Self { mac, id: None }
    }

    /// The key its lease is filed under.
    pub fn key(&self) -> ClientKey {
        ClientKey::new(self.mac, self.id.as_ref())
    }
}

impl From<MacAddr> for Client {
    fn from(mac: MacAddr) -> Self {
        Self::hw(mac)
    }
}

impl From<&Client> for ClientKey {
    fn from(c: &Client) -> Self {
        c.key()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn identity_follows_rfc_2131_section_4_2() {
        let mac = MacAddr([0x52, 0x54, 0, 0x12, 0x34, 0x56]);
        let other = ClientId::new(&[0, 1, 2, 3, 4, 5, 6]).unwrap();
        let own = ClientId::new(&[1, 0x52, 0x54, 0, 0x12, 0x34, 0x56]).unwrap();
        assert_eq!(ClientKey::new(mac, None), ClientKey::Hw(mac));
        assert_eq!(ClientKey::new(mac, Some(&own)), ClientKey::Hw(mac));
        assert_eq!(
            ClientKey::new(mac, Some(&other)),
            ClientKey::Id(other.clone())
        );
        // The same identifier from another chaddr is the same client.
        let mac2 = MacAddr([2, 0, 0, 0, 0, 9]);
        assert_eq!(
            ClientKey::new(mac2, Some(&other)),
            ClientKey::new(mac, Some(&other))
        );
        assert_eq!(other.to_string(), "00:01:02:03:04:05:06");
        assert!(ClientId::new(&[]).is_none());
        assert!(ClientId::new(&[0; 256]).is_none());
    }
}
