//! The block cache: decompressed, checksum-verified, parsed blocks kept in memory.
//!
//! Keyed by `(table id, block offset)`; the value is the parsed [`Block`] (its bytes
//! and checked restart array), so a hit costs neither a decompression nor a
//! [`Block::decode`]. Bounded by bytes, not entries: each block weighs its length plus
//! a fixed overhead.
//! Sharded (`quick_cache::sync::Cache`), so concurrent readers rarely contend.
//!
//! # Invariants
//! 1. Only blocks whose checksum was verified and whose restart array
//!    [`Block::decode`] accepted are inserted.
//! 2. Table ids are never reused while a table with that id may still be read, so a
//!    cached block always belongs to the table that asks for it.
//! 3. A capacity of 0 at creation disables caching for good: `get` misses, `insert`
//!    does nothing and [`BlockCache::set_capacity`] keeps it at 0.
//!
//! Thread-safe: every method takes `&self`.

use quick_cache::Weighter;
use quick_cache::sync::Cache;

use super::block::Block;

/// Bytes charged per block beyond its data (key, handle and bookkeeping).
const ENTRY_OVERHEAD: u64 = 64;

/// Typical block size, used only to size the cache's index up front.
const TYPICAL_BLOCK: usize = 4096;

type Key = (u64, u64);

#[derive(Debug, Clone, Copy)]
struct ByteWeighter;

impl Weighter<Key, Block> for ByteWeighter {
    fn weight(&self, _key: &Key, value: &Block) -> u64 {
        value.size() as u64 + ENTRY_OVERHEAD
    }
}

/// A byte-bounded cache of decompressed blocks, shared by all tables.
pub struct BlockCache {
    cache: Option<Cache<Key, Block, ByteWeighter>>,
}

impl std::fmt::Debug for BlockCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlockCache")
            .field("capacity", &self.capacity())
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
        BlockCache { cache }
    }

    /// Bytes the cache may hold now.
    pub fn capacity(&self) -> u64 {
        self.cache.as_ref().map_or(0, |c| c.capacity())
    }

    /// Lets the cache hold `capacity_bytes` from now on, evicting down to it if it
    /// holds more. Does nothing to a disabled cache.
    pub fn set_capacity(&self, capacity_bytes: usize) {
        if let Some(cache) = &self.cache {
            cache.set_capacity(capacity_bytes as u64);
        }
    }

    /// The block at `offset` of table `table_id`, if cached.
    pub fn get(&self, table_id: u64, offset: u64) -> Option<Block> {
        self.cache.as_ref()?.get(&(table_id, offset))
    }

    /// Caches a verified, decompressed, parsed block.
    pub fn insert(&self, table_id: u64, offset: u64, block: Block) {
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
    use bytes::Bytes;

    use super::*;
    use crate::sstable::block::BlockBuilder;

    /// A block of one entry with a value of `len` bytes.
    fn block(len: usize) -> Block {
        let mut b = BlockBuilder::new();
        b.add(b"k", 1, crate::key::ValueKind::Put, &vec![7; len]);
        Block::decode(Bytes::from(b.finish()), 0).unwrap()
    }

    #[test]
    fn caches_and_evicts_by_bytes() {
        let cache = BlockCache::new(64 * 1024);
        cache.insert(1, 0, block(1000));
        assert_eq!(cache.get(1, 0).unwrap().size(), block(1000).size());
        assert!(cache.get(2, 0).is_none());
        for i in 0..1000 {
            cache.insert(3, i, block(1000));
        }
        assert!(cache.weight() <= 64 * 1024);
    }

    #[test]
    fn a_smaller_capacity_evicts_down_to_it() {
        let cache = BlockCache::new(256 * 1024);
        for i in 0..200 {
            cache.insert(1, i, block(1000));
        }
        assert!(cache.weight() > 128 * 1024);
        cache.set_capacity(64 * 1024);
        assert!(cache.weight() <= 64 * 1024);
        assert_eq!(cache.capacity(), 64 * 1024);
    }

    #[test]
    fn zero_capacity_disables_caching() {
        let cache = BlockCache::new(0);
        cache.insert(1, 0, block(1));
        assert!(cache.get(1, 0).is_none());
        assert_eq!(cache.weight(), 0);
        cache.set_capacity(1 << 20);
        assert_eq!(cache.capacity(), 0);
    }
}
