//! The decision log (`pserv serve --log-dhcp`, dnsmasq's `log-dhcp`): one line per request,
//! at DEBUG under the target [`TARGET`], with the client (MAC, client identifier, relay), the
//! message, and what was decided: the reply and its address, or the drop and its reason (the
//! reasons `pserv_dhcp_dropped_total` counts). Off, it costs one check of the target's level
//! per datagram; on, the request is read a second time, for the log only.

use std::net::SocketAddrV4;

use dhcproto::Decodable;
use dhcproto::v4::{DhcpOption, Message, MessageType, OptionCode};

use crate::server::Outcome;

/// The log target: `RUST_LOG=pserv::dhcp=debug` is what `--log-dhcp` adds.
pub const TARGET: &str = "pserv::dhcp";

/// Whether decision lines are wanted (cheap: the callsite's interest is cached).
pub fn enabled() -> bool {
    tracing::enabled!(target: TARGET, tracing::Level::DEBUG)
}

/// What was decided, in a word or two, with the address given if any.
fn decision(outcome: &Outcome) -> (String, Option<std::net::Ipv4Addr>) {
    match outcome {
        Outcome::Reply(r) => {
            let yiaddr = Message::from_bytes(&r.bytes)
                .ok()
                .map(|m| m.yiaddr())
                .filter(|ip| !ip.is_unspecified());
            let kind = if r.proxy.is_some() {
                format!("proxy {:?}", r.kind).to_lowercase()
            } else {
                format!("{:?}", r.kind).to_lowercase()
            };
            (kind, yiaddr)
        }
        Outcome::Change(_) => ("recorded".to_owned(), None),
        Outcome::Drop(reason) => (format!("dropped: {}", reason.name()), None),
        Outcome::Seen(s) => ("seen (proxyDHCP)".to_owned(), Some(s.ip)),
    }
}

/// Logs a datagram longer than the receive buffer, dropped unread.
pub fn oversized(from: std::net::SocketAddr) {
    tracing::debug!(target: TARGET, %from, decided = "dropped: Oversized", "oversized datagram");
}

/// Logs one request (`data`, from `from`) and what was decided: what the server decided,
/// before the lease is durable and the reply sent (a failed send is logged apart, and counted).
pub fn request(data: &[u8], from: SocketAddrV4, outcome: &Outcome) {
    let (decided, address) = decision(outcome);
    // What the server refused to decode is not decoded here either (dhcproto panics on some
    // framings the guard rejects).
    if crate::guard::check(data).is_err() {
        tracing::debug!(target: TARGET, %from, bytes = data.len(), decided, "undecodable datagram");
        return;
    }
    let Ok(msg) = Message::from_bytes(data) else {
        tracing::debug!(target: TARGET, %from, bytes = data.len(), decided, "undecodable datagram");
        return;
    };
    let chaddr = msg.chaddr();
    let mac = chaddr
        .iter()
        .take(6)
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":");
    let kind = msg.opts().msg_type().map_or_else(
        || "bootp".to_owned(),
        |k: MessageType| format!("{k:?}").to_lowercase(),
    );
    let client_id = match msg.opts().get(OptionCode::ClientIdentifier) {
        Some(DhcpOption::ClientIdentifier(id)) => {
            Some(id.iter().map(|b| format!("{b:02x}")).collect::<String>())
        }
        _ => None,
    };
    let requested = match msg.opts().get(OptionCode::RequestedIpAddress) {
        Some(DhcpOption::RequestedIpAddress(ip)) => Some(*ip),
        _ => None,
    };
    let class = match msg.opts().get(OptionCode::ClassIdentifier) {
        // The client's text: escaped, so a line break in it cannot forge a line.
        Some(DhcpOption::ClassIdentifier(c)) => {
            Some(String::from_utf8_lossy(c).escape_debug().to_string())
        }
        _ => None,
    };
    let relay = Some(msg.giaddr()).filter(|ip| !ip.is_unspecified());
    let ciaddr = Some(msg.ciaddr()).filter(|ip| !ip.is_unspecified());
    tracing::debug!(
        target: TARGET,
        %from,
        mac,
        msg_type = kind,
        xid = format_args!("{:08x}", msg.xid()),
        client_id,
        relay = relay.map(tracing::field::display),
        ciaddr = ciaddr.map(tracing::field::display),
        requested = requested.map(tracing::field::display),
        class,
        decided,
        address = address.map(tracing::field::display),
        "DHCP {kind} from {mac}: {decided}"
    );
}
