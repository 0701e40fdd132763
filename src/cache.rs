//! The block cache: decompressed, checksum-verified blocks kept in memory.
//!
//! Keyed by `(table id, block offset)`; the value is the block's decompressed bytes.
//! Bounded by bytes, not entries: each block weighs its length plus a fixed overhead.
//! Sharded (`quick_cache::sync::Cache`), so concurrent readers rarely contend.
//!
//! # Invariants
//! 1. Only blocks whose checksum was verified are inserted.
//! 2. Table ids are never reused while a table with that id may still be read, so a
//!    cached block always belongs to the table that asks for it.
//! 3. A capacity of 0 disables caching: `get` misses and `insert` does nothing.
//!
//! Thread-safe: every method takes `&self`.

use bytes::Bytes;
use quick_cache::Weighter;
use quick_cache::sync::Cache;

/// Bytes charged per block beyond its data (key, handle and bookkeeping).
const ENTRY_OVERHEAD: u64 = 64;

/// Typical block size, used only to size the cache's index up front.
const TYPICAL_BLOCK: usize = 4096;

type Key = (u64, u64);

#[derive(Debug, Clone, Copy)]
struct ByteWeighter;

impl Weighter<Key, Bytes> for ByteWeighter {
    fn weight(&self, _key: &Key, value: &Bytes) -> u64 {
        value.len() as u64 + ENTRY_OVERHEAD
    }
}

/// A byte-bounded cache of decompressed blocks, shared by all tables.
pub struct BlockCache {
    cache: Option<Cache<Key, Bytes, ByteWeighter>>,
    capacity: usize,
}

impl std::fmt::Debug for BlockCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlockCache")
            .field("capacity", &self.capacity)
            .field("weight", &self.weight())
            .finish()
    }
}

impl BlockCache {
    /// A cache holding up to about `capacity_bytes` of blocks; 0 disables it.
    pub fn new(capacity_bytes: usize) -> Self {
        let cache = (capacity_bytes > 0).then(|| {
            let items = (capacity_bytes / TYPICAL_BLOCK).max(16);
            Cache::with_weighter(items, capacity_bytes as u64, ByteWeighter)
        });
        BlockCache { cache, capacity: capacity_bytes }
    }

    /// The block at `offset` of table `table_id`, if cached.
    pub fn get(&self, table_id: u64, offset: u64) -> Option<Bytes> {
        self.cache.as_ref()?.get(&(table_id, offset))
    }

    /// Caches a verified, decompressed block.
    pub fn insert(&self, table_id: u64, offset: u64, block: Bytes) {
        if let Some(cache) = &self.cache {
            cache.insert((table_id, offset), block);
        }
    }

    /// The weight of what is cached now, in bytes.
    pub fn weight(&self) -> u64 {
        self.cache.as_ref().map_or(0, |c| c.weight())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caches_and_evicts_by_bytes() {
        let cache = BlockCache::new(64 * 1024);
        cache.insert(1, 0, Bytes::from(vec![7; 1000]));
        assert_eq!(cache.get(1, 0).unwrap().len(), 1000);
        assert!(cache.get(2, 0).is_none());
        for i in 0..1000 {
            cache.insert(3, i, Bytes::from(vec![0; 1000]));
        }
        assert!(cache.weight() <= 64 * 1024);
    }

    #[test]
    fn zero_capacity_disables_caching() {
        let cache = BlockCache::new(0);
        cache.insert(1, 0, Bytes::from_static(b"x"));
        assert!(cache.get(1, 0).is_none());
        assert_eq!(cache.weight(), 0);
    }
}
