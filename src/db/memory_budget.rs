//! One memory budget for the memtables and the block cache.
//!
//! The user gives two figures, `write_buffer_size` and `block_cache_size`. The block
//! cache always gets `block_cache_size`, and it also borrows whatever part of
//! `write_buffer_size` the memtables (active and frozen) do not hold: a database that
//! is only read caches in the write buffer's room too, as redb's one page cache does,
//! and the room is given back, by eviction, as writes fill the memtables again.
//!
//! # Invariants
//! 1. Cache capacity + memtable bytes ≤ `write_buffer_size` + `block_cache_size`
//!    whenever the memtables hold less than `write_buffer_size`; beyond that the
//!    cache keeps `block_cache_size`, so the memory bound is never above what the two
//!    budgets allowed before they were joined.
//! 2. The borrowed part moves in steps of 1/16 of the write buffer, rounded down, so
//!    writers resize the cache (and evict) a few times per memtable, not per write.
//! 3. A disabled cache (`block_cache_size == 0`) stays disabled: it borrows nothing.
//!
//! Thread-safe: [`MemoryBudget::memtables_hold`] is called by writers and by whoever
//! installs a read view; the last call's figure wins.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::sstable::cache::BlockCache;
use crate::version::ReadView;

/// Steps of the write buffer that the cache borrows in.
const STEPS: usize = 16;

/// Lends the write buffer's unused room to the block cache.
pub(crate) struct MemoryBudget {
    cache: Arc<BlockCache>,
    block_cache_size: usize,
    write_buffer_size: usize,
    /// Steps of the write buffer lent to the cache now; `usize::MAX` before the first.
    lent_steps: AtomicUsize,
}

impl MemoryBudget {
    /// The budget of `cache` (created with `block_cache_size` bytes) and memtables of
    /// `write_buffer_size` bytes.
    pub(crate) fn new(
        cache: Arc<BlockCache>,
        block_cache_size: usize,
        write_buffer_size: usize,
    ) -> MemoryBudget {
        MemoryBudget { cache, block_cache_size, write_buffer_size, lent_steps: usize::MAX.into() }
    }

    /// The most the cache may ever hold: its own budget and the whole write buffer.
    pub(crate) fn max_cache_size(block_cache_size: usize, write_buffer_size: usize) -> usize {
        match block_cache_size {
            0 => 0,
            n => n.saturating_add(write_buffer_size),
        }
    }

    /// Resizes the cache for memtables that now hold what `view` holds.
    pub(crate) fn memtables_of(&self, view: &ReadView) {
        self.memtables_hold(view.memtables().map(|m| m.approximate_size()).sum());
    }

    /// Resizes the cache for memtables that now hold `memtable_bytes`.
    pub(crate) fn memtables_hold(&self, memtable_bytes: usize) {
        if self.block_cache_size == 0 {
            return;
        }
        let step = (self.write_buffer_size / STEPS).max(1);
        let steps = self.write_buffer_size.saturating_sub(memtable_bytes) / step;
        if self.lent_steps.swap(steps, Ordering::Relaxed) != steps {
            self.cache.set_capacity(self.block_cache_size + steps * step);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn budget() -> (Arc<BlockCache>, MemoryBudget) {
        let cache = Arc::new(BlockCache::new(MemoryBudget::max_cache_size(1 << 20, 16 << 10)));
        (cache.clone(), MemoryBudget::new(cache, 1 << 20, 16 << 10))
    }

    #[test]
    fn the_cache_borrows_what_the_memtables_leave_of_the_write_buffer() {
        let (cache, budget) = budget();
        budget.memtables_hold(0);
        assert_eq!(cache.capacity(), (1 << 20) + (16 << 10));
        budget.memtables_hold(4 << 10);
        assert_eq!(cache.capacity(), (1 << 20) + (12 << 10));
        // Rounded down to a step (1 KiB here): never more than the memtables left.
        budget.memtables_hold((4 << 10) + 1);
        assert_eq!(cache.capacity(), (1 << 20) + (11 << 10));
    }

    #[test]
    fn full_memtables_leave_the_cache_its_own_budget() {
        let (cache, budget) = budget();
        budget.memtables_hold(64 << 10);
        assert_eq!(cache.capacity(), 1 << 20);
    }

    #[test]
    fn a_disabled_cache_borrows_nothing() {
        let cache = Arc::new(BlockCache::new(0));
        MemoryBudget::new(cache.clone(), 0, 16 << 10).memtables_hold(0);
        assert_eq!(cache.capacity(), 0);
    }
}
