//! Publishing: a pushed snapshot becomes the served table with one atomic pointer swap.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use arc_swap::{ArcSwap, Guard};
use parking_lot::Mutex;

use crate::problem::Problem;
use crate::snapshot::{ParseError, Snapshot};
use crate::table::Table;

/// Holds the table being served and swaps in new ones.
///
/// Readers call [`Store::load`] (one atomic load, never blocks, never allocates) and get one whole
/// table: the old one or the new one, never a mix. Publishers are serialised by a mutex that
/// readers never touch, so the generation check and the swap are one step and two pushes never
/// compile side by side (a million-node compile holds real memory).
#[derive(Debug)]
pub struct Store {
    current: ArcSwap<Table>,
    /// The generation published last, if any: the staleness check. Held through a publish.
    publish: Mutex<Option<u64>>,
    /// Whether anything has been published (readable without waiting for a publish).
    published: AtomicBool,
}

/// What a successful publish did, with its timings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Published {
    /// The generation now served.
    pub generation: u64,
    /// Nodes in the new table.
    pub nodes: usize,
    /// Interfaces in the new table.
    pub interfaces: usize,
    /// JSON parse time (zero when publishing an already-parsed snapshot).
    pub parse: Duration,
    /// Validation and compilation time.
    pub compile: Duration,
    /// Time to swap the pointer.
    pub swap: Duration,
}

/// Why a snapshot was not published. The served table is unchanged in every case.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PublishError {
    /// Not JSON of the contract's shape.
    #[error("malformed snapshot: {0}")]
    Parse(#[from] ParseError),
    /// The generation is not above the one served, and nothing else is wrong.
    #[error("generation {generation} is not above the current generation {current}")]
    Stale {
        /// The pushed generation.
        generation: u64,
        /// The generation being served.
        current: u64,
    },
    /// The snapshot breaks the rules: every problem, not just the first.
    #[error("invalid snapshot: {} problem(s)", .0.len())]
    Invalid(Vec<Problem>),
}

impl Default for Store {
    fn default() -> Self {
        Self::new()
    }
}

impl Store {
    /// A store serving [`Table::empty`] until the first publish.
    pub fn new() -> Self {
        Self {
            current: ArcSwap::from_pointee(Table::empty()),
            publish: Mutex::new(None),
            published: AtomicBool::new(false),
        }
    }

    /// The table being served, for one request. Do not hold it across an `.await`: use
    /// [`Store::load_full`] there.
    pub fn load(&self) -> Guard<Arc<Table>> {
        self.current.load()
    }

    /// The generation served, or `None` before the first publish.
    pub fn generation(&self) -> Option<u64> {
        self.published
            .load(Ordering::Acquire)
            .then(|| self.current.load().generation())
    }

    /// The table being served, as an owned `Arc`.
    pub fn load_full(&self) -> Arc<Table> {
        self.current.load_full()
    }

    /// Parses, validates, compiles and publishes a snapshot from JSON bytes.
    pub fn publish_json(&self, bytes: &[u8]) -> Result<Published, PublishError> {
        let t0 = Instant::now();
        let snap = Snapshot::from_json(bytes)?;
        let parse = t0.elapsed();
        let mut p = self.publish(&snap)?;
        p.parse = parse;
        Ok(p)
    }

    /// Validates, compiles and publishes a parsed snapshot.
    pub fn publish(&self, snap: &Snapshot) -> Result<Published, PublishError> {
        let mut last = self.publish.lock();
        let current = *last;
        let t0 = Instant::now();
        let table =
            Table::compile(snap, current).map_err(|problems| match problems.as_slice() {
                [
                    Problem::StaleGeneration {
                        generation,
                        current,
                    },
                ] => PublishError::Stale {
                    generation: *generation,
                    current: *current,
                },
                _ => PublishError::Invalid(problems),
            })?;
        let compile = t0.elapsed();
        let (generation, nodes, interfaces) = (
            table.generation(),
            table.node_count(),
            table.interface_count(),
        );
        let t1 = Instant::now();
        let previous = self.current.swap(Arc::new(table));
        let swap = t1.elapsed();
        *last = Some(generation);
        self.published.store(true, Ordering::Release);
        tracing::info!(generation, nodes, ?compile, "snapshot published");
        // The previous table is freed here, or by the last reader still holding it.
        drop(previous);
        Ok(Published {
            generation,
            nodes,
            interfaces,
            parse: Duration::ZERO,
            compile,
            swap,
        })
    }
}
