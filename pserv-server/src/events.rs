//! `/v1/events`: what pserv announces (snapshots published, lease changes and ends, boot
//! configs, node files, boot progress, TFTP and HTTP boot fetches), typed until an event is written to a listener's
//! stream.
//!
//! Every listener gets every event. A listener too slow to keep up misses some (the channel
//! counts them), and never blocks the service that emitted them: emitting is a channel send of
//! a shared pointer, and nothing is encoded while nobody listens.

use std::sync::Arc;

use pserv_boot::http::{Progress, Served};
use pserv_boot::tftp::service::Fetched;
use pserv_boot::vtree::{ConfigServed, FileServed};
use pserv_core::Published;
use pserv_core::lease::LeaseEvent;
use serde::Serialize;
use tokio::sync::broadcast;

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

impl Event {
    /// The event's name on the stream (the SSE `event:` field).
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Self::Snapshot(_) => "snapshot",
            Self::Lease(e) => e.kind(),
            Self::BootConfig(_) => "boot_config",
            Self::Tftp(_) => "tftp",
            Self::Http(_) => "http",
            Self::NodeFile(_) => "node_file",
            Self::Progress(_) => "progress",
        }
    }
}

/// The event channel: cheap to clone, one per server.
#[derive(Debug, Clone)]
pub(crate) struct Events(broadcast::Sender<Arc<Event>>);

impl Events {
    pub(crate) fn new() -> Self {
        Self(broadcast::channel(4096).0)
    }

    /// Announces an event; with nobody listening it is not even built.
    pub(crate) fn emit(&self, event: impl FnOnce() -> Event) {
        if self.0.receiver_count() == 0 {
            return;
        }
        let _ = self.0.send(Arc::new(event()));
    }

    /// A new listener: every event from now on.
    pub(crate) fn subscribe(&self) -> broadcast::Receiver<Arc<Event>> {
        self.0.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_reach_listeners_typed_and_encode_as_before() {
        let events = Events::new();
        // Nobody listening: the event is not built.
        events.emit(|| unreachable!("built with no listener"));
        let mut rx = events.subscribe();
        events.emit(|| {
            Event::Snapshot(SnapshotPublished {
                generation: 7,
                nodes: 3,
            })
        });
        let e = rx.try_recv().expect("an event");
        assert_eq!(e.kind(), "snapshot");
        assert_eq!(
            serde_json::to_value(&*e).expect("json"),
            serde_json::json!({"event": "snapshot", "generation": 7, "nodes": 3})
        );
    }
}
