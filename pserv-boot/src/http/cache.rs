//! Boot files kept in memory, so that a rack fetching the same kernel and initrd is answered
//! without a file read (and a blocking-pool hop) per chunk: the profile of 50 clients fetching
//! one 12 MB file through `tokio::fs` spent ~60% of the CPU in the page-cache copy, the copy
//! between buffers and the thread hops. An entry is one file's inode, size and mtime, so a file
//! rewritten or replaced is read again; concurrent first fetches read it once.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::body::Bytes;

use super::service::Counters;

/// The cache. See the module docs.
pub(crate) struct FileCache {
    entries: parking_lot::Mutex<CacheState>,
    /// Bytes kept at most, and the largest file kept (bigger ones stream from disk).
    budget: u64,
    max_file: u64,
}

type CacheKey = (u64, u64, u64, i64, i64);

#[derive(Default)]
struct CacheState {
    map: std::collections::HashMap<CacheKey, (Arc<tokio::sync::OnceCell<Bytes>>, u64)>,
    /// Bytes in loaded entries.
    total: u64,
    tick: u64,
}

impl FileCache {
    /// A cache of at most `budget` bytes, of files up to `max_file` bytes.
    pub(crate) fn new(budget: u64, max_file: u64) -> Self {
        Self {
            entries: parking_lot::Mutex::default(),
            budget,
            max_file,
        }
    }

    /// The whole content of `file` (of `size` bytes), from memory; `None` when it is not to be
    /// cached (too big) or cannot be read (the caller streams it instead).
    pub(crate) async fn get(&self, file: &std::fs::File, size: u64, c: &Counters) -> Option<Bytes> {
        use std::os::unix::fs::MetadataExt;
        if size > self.max_file || size > self.budget {
            return None;
        }
        let m = file.metadata().ok()?;
        let key = (m.dev(), m.ino(), m.size(), m.mtime(), m.mtime_nsec());
        let cell = {
            let mut st = self.entries.lock();
            st.tick += 1;
            let tick = st.tick;
            let e = st
                .map
                .entry(key)
                .or_insert_with(|| (Arc::new(tokio::sync::OnceCell::new()), tick));
            e.1 = tick;
            e.0.clone()
        };
        if let Some(b) = cell.get() {
            c.cache_hits.fetch_add(1, Ordering::Relaxed);
            return Some(b.clone());
        }
        let file = file.try_clone().ok()?;
        let bytes = cell
            .get_or_try_init(|| async move {
                let r = tokio::task::spawn_blocking(move || {
                    let mut buf = Vec::with_capacity(size as usize);
                    std::io::Read::read_to_end(&mut std::io::Read::take(&file, size), &mut buf)
                        .map(|_| Bytes::from(buf))
                })
                .await;
                match r {
                    Ok(Ok(b)) if b.len() as u64 == size => {
                        c.cache_loads.fetch_add(1, Ordering::Relaxed);
                        self.admit(key, size);
                        Ok(b)
                    }
                    _ => Err(()),
                }
            })
            .await;
        match bytes {
            Ok(b) => Some(b.clone()),
            Err(()) => {
                self.entries.lock().map.remove(&key);
                None
            }
        }
    }

    /// Counts a loaded entry in, evicting the least recently used ones past the budget.
    fn admit(&self, key: CacheKey, size: u64) {
        let mut st = self.entries.lock();
        st.total += size;
        while st.total > self.budget {
            let victim = st
                .map
                .iter()
                .filter(|(k, (cell, _))| **k != key && cell.initialized())
                .min_by_key(|(_, (_, t))| *t)
                .map(|(k, (cell, _))| (*k, cell.get().map_or(0, |b| b.len() as u64)));
            let Some((k, len)) = victim else { break };
            st.map.remove(&k);
            st.total -= len;
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::sync::atomic::AtomicU64;

    use super::*;

    #[tokio::test]
    async fn files_are_read_once_again_when_changed_and_evicted_past_the_budget() {
        let dir = tempfile::tempdir().unwrap();
        let c = Counters::default();
        let cache = FileCache::new(3000, 2000);
        let write = |name: &str, fill: u8, len: usize| {
            let p = dir.path().join(name);
            std::fs::write(&p, vec![fill; len]).unwrap();
            std::fs::File::open(p).unwrap()
        };
        let a = write("a", 1, 1000);
        assert_eq!(
            &cache.get(&a, 1000, &c).await.unwrap()[..],
            &[1u8; 1000][..]
        );
        assert_eq!(cache.get(&a, 1000, &c).await.unwrap().len(), 1000);
        assert_eq!((load(&c.cache_loads), load(&c.cache_hits)), (1, 1));
        // Replaced (a new inode): read again, the new content.
        let a2 = write("a.new", 2, 1000);
        std::fs::rename(dir.path().join("a.new"), dir.path().join("a")).unwrap();
        assert_eq!(cache.get(&a2, 1000, &c).await.unwrap()[0], 2);
        assert_eq!(load(&c.cache_loads), 2);
        // Too big for one entry: streamed, not cached.
        let big = write("big", 3, 2500);
        assert!(cache.get(&big, 2500, &c).await.is_none());
        // Past the budget (3000): the least recently used entry goes.
        let b = write("b", 4, 1500);
        assert!(cache.get(&b, 1500, &c).await.is_some());
        let st = cache.entries.lock();
        assert!(st.total <= 3000, "{}", st.total);
        assert_eq!(st.map.len(), 2, "the oldest entry was evicted");
    }

    fn load(a: &AtomicU64) -> u64 {
        a.load(Ordering::Relaxed)
    }
}
