//! `KeyFilter`: a bloom filter over the user keys a memtable holds, so that a point
//! lookup of a key the memtable does not have skips the skiplist search.
//!
//! That search is a chain of cache misses (profiled: 31% of a get in readwhilewriting,
//! where most keys read are not among the recent writes); the filter answers with
//! one: it is blocked (RocksDB's cache-local bloom), every probe of a key falls in
//! one 64-byte block.
//!
//! Sized when the memtable is made, for the most entries it can hold (one byte, 8 bits,
//! per entry of the smallest footprint); a memtable that takes more (replay of one
//! huge group) only sees more false positives.
//!
//! # Invariants
//! 1. No false negatives: once [`KeyFilter::insert`] returned, every thread that sees
//!    the inserted entry (the seqno is published after the insert, with release
//!    ordering) finds [`KeyFilter::may_contain`] true for its key.
//! 2. Bits are only ever set, never cleared.

use std::sync::atomic::{AtomicU64, Ordering};

use xxhash_rust::xxh3::xxh3_64;

/// Words per block: 512 bits, one cache line.
const BLOCK_WORDS: usize = 8;
/// Bits set per key, all in the key's block.
const PROBES: u32 = 4;
/// Odd multipliers deriving each probe's bit from the hash's low half.
const PROBE_MULTIPLIERS: [u32; PROBES as usize] =
    [0x9E37_79B1, 0x85EB_CA77, 0xC2B2_AE3D, 0x27D4_EB2F];

#[derive(Debug)]
pub(super) struct KeyFilter {
    words: Box<[AtomicU64]>,
}

impl KeyFilter {
    /// A filter with 8 bits for each of up to `entries` keys (at least one block).
    pub(super) fn new(entries: usize) -> KeyFilter {
        let blocks = entries.div_ceil(64).max(1);
        KeyFilter { words: (0..blocks * BLOCK_WORDS).map(|_| AtomicU64::new(0)).collect() }
    }

    pub(super) fn insert(&self, key: &[u8]) {
        let (block, bits) = self.probes(key);
        for (word, bit) in bits {
            self.words[block + word].fetch_or(bit, Ordering::Relaxed);
        }
    }

    /// False only if `key` was never inserted.
    pub(super) fn may_contain(&self, key: &[u8]) -> bool {
        let (block, mut bits) = self.probes(key);
        bits.all(|(word, bit)| self.words[block + word].load(Ordering::Relaxed) & bit != 0)
    }

    /// The first word of `key`'s block, and each probe's word (within the block) and
    /// bit mask.
    fn probes(&self, key: &[u8]) -> (usize, impl Iterator<Item = (usize, u64)>) {
        let hash = xxh3_64(key);
        let blocks = (self.words.len() / BLOCK_WORDS) as u64;
        // The high half picks the block (multiply-shift, no division), the low half the
        // bits.
        let block = (((hash >> 32) * blocks) >> 32) as usize * BLOCK_WORDS;
        let low = hash as u32;
        let bits = PROBE_MULTIPLIERS.into_iter().map(move |m| {
            let bit = low.wrapping_mul(m) >> 23; // 0..512
            ((bit / 64) as usize, 1u64 << (bit % 64))
        });
        (block, bits)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inserted_keys_are_always_found_and_others_seldom() {
        let filter = KeyFilter::new(10_000);
        for i in 0..10_000u32 {
            filter.insert(format!("key{i}").as_bytes());
        }
        assert!((0..10_000u32).all(|i| filter.may_contain(format!("key{i}").as_bytes())));
        let false_positives =
            (0..10_000u32).filter(|i| filter.may_contain(format!("other{i}").as_bytes())).count();
        // Full at 8 bits per key and 4 probes in a block: a few percent.
        assert!(false_positives < 600, "{false_positives} false positives in 10,000");
    }

    #[test]
    fn an_empty_filter_contains_nothing_and_a_tiny_one_still_works() {
        let filter = KeyFilter::new(0);
        assert_eq!(filter.words.len(), BLOCK_WORDS);
        assert!(!filter.may_contain(b"k"));
        for i in 0..1000u32 {
            filter.insert(&i.to_le_bytes());
        }
        assert!((0..1000u32).all(|i| filter.may_contain(&i.to_le_bytes())));
    }
}
