//! Boot files kept in memory, so that a rack fetching the same kernel and initrd is answered
//! without a file read (and a blocking-pool hop) per chunk: the profile of 50 clients fetching
//! one 12 MB file through `tokio::fs` spent ~60% of the CPU in the page-cache copy, the copy
//! between buffers and the thread hops.
//!
//! An entry is one file's device, inode, size and mtime, so a file rewritten or replaced is
//! read again (its old entry ages out). Entries are weighed by their size against a byte
//! budget; eviction is `quick_cache`'s (S3-FIFO: a file fetched once leaves before the ones a
//! rack keeps fetching), in constant time. Concurrent first fetches of a file read it once: the
//! first takes the entry's guard and reads, the others wait for its value (if that read fails,
//! the next waiter reads).

use std::os::unix::fs::MetadataExt;
use std::sync::atomic::Ordering;

use axum::body::Bytes;
use quick_cache::sync::Cache;

use super::service::Counters;

/// A file's identity: a file rewritten or replaced has another.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Key {
    dev: u64,
    ino: u64,
    size: u64,
    mtime: i64,
    mtime_nsec: i64,
}

impl Key {
    fn of(m: &std::fs::Metadata) -> Self {
        Self {
            dev: m.dev(),
            ino: m.ino(),
            size: m.size(),
            mtime: m.mtime(),
            mtime_nsec: m.mtime_nsec(),
        }
    }
}

/// An entry weighs its bytes (at least 1: `quick_cache` never evicts a weightless entry, and a
/// replaced empty file must still age out).
#[derive(Debug, Clone, Copy)]
struct BySize;

impl quick_cache::Weighter<Key, Bytes> for BySize {
    fn weight(&self, _: &Key, file: &Bytes) -> u64 {
        (file.len() as u64).max(1)
    }
}

/// The cache. See the module docs.
pub(crate) struct FileCache {
    files: Cache<Key, Bytes, BySize>,
    /// The largest file kept (bigger ones stream from disk).
    max_file: u64,
}

impl FileCache {
    /// A cache of at most `budget` bytes, of files up to `max_file` bytes.
    pub(crate) fn new(budget: u64, max_file: u64) -> Self {
        let options = quick_cache::OptionsBuilder::new()
            // A boot directory's hot set is a few dozen files (kernels, initrds, loaders).
            .estimated_items_capacity(64)
            .weight_capacity(budget)
            // One shard holds the whole budget: shards split it, and a file heavier than its
            // shard's share would never be admitted. The shard lock is held for a lookup only.
            .shards(1)
            .build();
        let files = match options {
            Ok(o) => Cache::with_options(o, BySize, Default::default(), Default::default()),
            // Only an unset capacity is refused, and both are set above.
            Err(_) => Cache::with_weighter(64, budget, BySize),
        };
        Self { files, max_file }
    }

    /// The whole content of `file` (of `size` bytes), from memory; `None` when it is not to be
    /// cached (too big) or cannot be read (the caller streams it instead).
    pub(crate) async fn get(&self, file: &std::fs::File, size: u64, c: &Counters) -> Option<Bytes> {
        if size > self.max_file || size > self.files.capacity() {
            return None;
        }
        let key = Key::of(&file.metadata().ok()?);
        // One lookup: the file in memory (or the one fetch reading it already, waited for),
        // else the guard that makes this fetch the one to read it.
        let guard = match self.files.get_value_or_guard_async(&key).await {
            Ok(b) => {
                c.cache_hits.fetch_add(1, Ordering::Relaxed);
                return Some(b);
            }
            Err(guard) => guard,
        };
        let bytes = read_whole(file.try_clone().ok()?, size).await?;
        c.cache_loads.fetch_add(1, Ordering::Relaxed);
        // Refused only when the budget cannot hold it; it is served all the same.
        let _ = guard.insert(bytes.clone());
        Some(bytes)
    }

    #[cfg(test)]
    fn weight(&self) -> u64 {
        self.files.weight()
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.files.len()
    }
}

/// Reads `size` bytes of `file` on the blocking pool, into a sealed memfd that the listener
/// sends from without copying ([`pserv_net::zerocopy`]), or into the heap where memfds cannot
/// be made; `None` if it fails or the file is shorter now.
async fn read_whole(file: std::fs::File, size: u64) -> Option<Bytes> {
    let capacity = usize::try_from(size).ok()?;
    let r = tokio::task::spawn_blocking(move || {
        match pserv_net::zerocopy::load(&file, size) {
            Ok(b) => return Ok(b),
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Err(e),
            // Small files stay on the heap.
            Err(e) if e.kind() == std::io::ErrorKind::Unsupported => {}
            Err(e) => tracing::warn!(error = %e, "boot file kept on the heap, not in a memfd"),
        }
        std::io::Seek::seek(&mut &file, std::io::SeekFrom::Start(0))?;
        let mut buf = Vec::with_capacity(capacity);
        std::io::Read::read_to_end(&mut std::io::Read::take(&file, size), &mut buf)
            .map(|_| Bytes::from(buf))
    })
    .await;
    match r {
        Ok(Ok(b)) if b.len() as u64 == size => Some(b),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::sync::Arc;
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
        // Past the budget (3000): an entry goes.
        let b = write("b", 4, 1500);
        assert!(cache.get(&b, 1500, &c).await.is_some());
        assert!(cache.weight() <= 3000, "{}", cache.weight());
        assert_eq!(cache.len(), 2, "an entry was evicted");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_first_fetches_read_the_file_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("initrd");
        std::fs::write(&path, vec![7u8; 1 << 20]).unwrap();
        let c = Arc::new(Counters::default());
        let cache = Arc::new(FileCache::new(8 << 20, 4 << 20));
        let fetches: Vec<_> = (0..16)
            .map(|_| {
                let (cache, c, path) = (cache.clone(), c.clone(), path.clone());
                tokio::spawn(async move {
                    let f = std::fs::File::open(path).unwrap();
                    cache.get(&f, 1 << 20, &c).await.unwrap().len()
                })
            })
            .collect();
        for f in fetches {
            assert_eq!(f.await.unwrap(), 1 << 20);
        }
        assert_eq!(load(&c.cache_loads), 1);
    }

    #[tokio::test]
    async fn a_file_shorter_than_its_size_is_not_cached() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cut");
        std::fs::write(&path, [1u8; 10]).unwrap();
        let c = Counters::default();
        let cache = FileCache::new(3000, 2000);
        let f = std::fs::File::open(&path).unwrap();
        assert!(cache.get(&f, 20, &c).await.is_none());
        assert_eq!((cache.len(), load(&c.cache_loads)), (0, 0));
    }

    fn load(a: &AtomicU64) -> u64 {
        a.load(Ordering::Relaxed)
    }
}
