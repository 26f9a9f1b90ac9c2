//! `/v1/events`: what pserv announces (snapshots published, lease changes and ends, boot
//! configs, netbooting machines' ACKs, node files, boot progress, TFTP and HTTP boot fetches, syslog messages), typed
//! until an event is written to a listener's stream, and kept for a while so a listener that
//! reconnects resumes where it stopped.
//!
//! - Every event gets an [`EventId`], `<boot>-<seq>`: `seq` counts from 1 in each run of the
//!   server and `boot` names the run (its start time in microseconds, unique per run), so an
//!   id from before a restart is recognised as such, never mistaken for one of this run's.
//! - The last events are kept in a replay buffer bounded by count and by bytes, whichever is
//!   reached first ([`Retention`]; `events_buffer` and `events_buffer_bytes` in the config). A
//!   listener starts live, after a given id (`Last-Event-ID`, `?since=`), or at the oldest
//!   event kept (`?since=0`); it gets every event after its start, in order, each once.
//! - A listener that asks for events older than the buffer holds, for events of another run, or
//!   that falls behind by more than the buffer holds (a slow reader) is told so by a [`Gap`]
//!   in its stream, then goes on from the oldest event kept: never a silent loss.
//! - Emitting is one shared pointer pushed into the buffer under a short lock; it never waits
//!   for a listener, and wakes listeners only when there are some. The buffer is the only
//!   channel: a live listener reads it as a resuming one does.

use pserv_boot::http::{Progress, Served};
use pserv_boot::tftp::service::Fetched;
use pserv_boot::vtree::{ConfigServed, FileServed};
use pserv_core::Published;
use pserv_core::lease::LeaseEvent;
use pserv_syslog::LogLine;
use serde::Serialize;

mod replay;

pub(crate) use replay::{Events, GapReason, Item, Kinds, Retention, Since};

/// One event.
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub(crate) enum Event {
    /// A snapshot was published.
    Snapshot(SnapshotPublished),
    /// A lease change became durable, another instance's change arrived, or a lease ended.
    Lease(LeaseEvent),
    /// A machine fetched its rendered boot configuration.
    BootConfig(ConfigServed),
    /// A TFTP request ended.
    Tftp(Fetched),
    /// HTTP boot answered a request.
    Http(Served),
    /// A machine fetched one of its node files (issue 21).
    NodeFile(FileServed),
    /// A machine reported its installation's progress (issue 21).
    Progress(Progress),
    /// A syslog message arrived (issue 21).
    Log(LogLine),
    /// A proxyDHCP answer (issue 23): a proxy offer on port 67, or the boot server's ACK.
    Proxy(pserv_dhcp::proxy::ProxyAnswer),
    /// A netbooting machine's ACK: its address and boot file, the first step of a boot.
    Dhcp(pserv_dhcp::server::Netboot),
    /// The same for a machine netbooting over IPv6 (its DHCPv6 REPLY).
    Dhcp6(pserv_dhcp::v6::Netboot6),
}

/// The snapshot event's body.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "event", rename = "snapshot")]
pub(crate) struct SnapshotPublished {
    generation: u64,
    nodes: usize,
}

impl From<&Published> for Event {
    fn from(p: &Published) -> Self {
        Self::Snapshot(SnapshotPublished {
            generation: p.generation,
            nodes: p.nodes,
        })
    }
}

/// Every name [`Event::kind`] gives, the ones a `?kind=` filter accepts.
pub(crate) const KINDS: &[&str] = &[
    "snapshot",
    "bound",
    "released",
    "declined",
    "expired",
    "quarantine_ended",
    "boot_config",
    "tftp",
    "http",
    "log",
    "progress",
    "node_file",
    "proxy",
    "dhcp",
];

impl Event {
    /// The event's name on the stream (the SSE `event:` field); listed in [`KINDS`].
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Self::Snapshot(_) => "snapshot",
            Self::Lease(e) => e.kind(),
            Self::BootConfig(_) => "boot_config",
            Self::Tftp(_) => "tftp",
            Self::Http(_) => "http",
            Self::NodeFile(_) => "node_file",
            Self::Progress(_) => "progress",
            Self::Log(_) => "log",
            Self::Proxy(_) => "proxy",
            Self::Dhcp(_) | Self::Dhcp6(_) => "dhcp",
        }
    }

    /// About the memory the event holds while buffered: its own size and its strings. What
    /// the replay buffer's byte bound counts.
    pub(crate) fn weight(&self) -> usize {
        let strings = match self {
            Self::Snapshot(_) => 0,
            // A hostname and a client identifier, at most 255 bytes each, usually short.
            Self::Lease(_) => 64,
            Self::BootConfig(c) => {
                c.node.as_ref().map_or(0, String::len) + c.profile.as_ref().map_or(0, String::len)
            }
            Self::Tftp(f) => f.file.len(),
            Self::Http(s) => s.method.len() + s.path.len(),
            Self::NodeFile(f) => f.node.as_ref().map_or(0, String::len) + f.file.len(),
            Self::Progress(p) => {
                p.node.as_ref().map_or(0, String::len)
                    + p.stage.len()
                    + p.message.as_ref().map_or(0, String::len)
            }
            Self::Log(l) => {
                let len = |s: &Option<String>| s.as_ref().map_or(0, String::len);
                len(&l.node) + len(&l.hostname) + len(&l.app) + l.message.len()
            }
            Self::Proxy(a) => a.node.as_ref().map_or(0, String::len) + a.file.len(),
            Self::Dhcp(n) => n.node.as_ref().map_or(0, String::len) + n.file.len(),
            Self::Dhcp6(n) => n.node.as_ref().map_or(0, String::len) + n.file.len(),
        };
        // The shared pointer's two counts, and the buffer's slot.
        size_of::<Self>() + 2 * size_of::<usize>() + 16 + strings
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[tokio::test]
    async fn events_reach_listeners_typed_with_ids_and_encode_as_before() {
        let events = Events::new(Retention {
            events: std::num::NonZeroUsize::new(16).unwrap(),
            bytes: usize::MAX,
        });
        let mut rx = events.listen(Since::Now, replay::Kinds::all());
        events.emit(|| {
            Event::Snapshot(SnapshotPublished {
                generation: 7,
                nodes: 3,
            })
        });
        let item = rx.next().await;
        assert_eq!((item.kind(), item.id().seq), ("snapshot", 1));
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&item.to_json().unwrap()).unwrap(),
            serde_json::json!({"event": "snapshot", "generation": 7, "nodes": 3})
        );
        let e = Event::Snapshot(SnapshotPublished {
            generation: 7,
            nodes: 3,
        });
        assert!(KINDS.contains(&e.kind()));
    }
}
