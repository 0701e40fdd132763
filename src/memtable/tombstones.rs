//! The memtable's range tombstones, indexed so that a lookup is not linear in their
//! count while writers keep inserting.
//!
//! A [`TombstoneIndex`](crate::tombstones::TombstoneIndex) is static, and rebuilding
//! one per insert would cost O(n log n) per write. Instead (the logarithmic method of
//! Bentley and Saxe) the newest tombstones, fewer than [`TAIL`], wait in an unindexed
//! tail, and the others are kept in levels, each a static index, whose sizes are
//! distinct powers of two like the digits of a binary counter. When the tail fills up
//! it becomes a level of [`TAIL`], merged with the smallest level while that is no
//! larger ([`MergeableIndex::merge`]: keys are merged, never sorted again). A lookup
//! scans the tail and asks the levels, skipping a level whose seqnos cannot improve on
//! the answer so far.
//!
//! # Invariants
//! - The tail holds fewer than [`TAIL`] tombstones. Level sizes are powers of two, at
//!   least [`TAIL`], strictly decreasing from first to last: n tombstones make at most
//!   log2(n / TAIL) + 1 levels.
//! - Every inserted tombstone is in the tail or in exactly one level.
//! - Readers load the published state without a lock. The writer side is serialised
//!   by a mutex (uncontended: a memtable has one writer) and publishes the new state
//!   before [`MemtableTombstones::insert`] returns, so a reader whose snapshot includes
//!   a tombstone's seqno (published after the insert) finds it. The state may also hold
//!   tombstones above the reader's snapshot; lookups skip those.
//!
//! # Cost (n tombstones)
//! Most inserts allocate one tail node and one state. A tombstone takes part in at
//! most log2(n / TAIL) merges; a merge into a level of size m compares each key once
//! (O(m) comparisons) and places each seqno in O(log m) integer steps. So n inserts
//! make O(n log n) key comparisons and O(n log² n) integer steps (O(log² n) amortized
//! per insert); the insert that completes a level of 2^k rebuilds 2^k tombstones at
//! once. A lookup scans at most [`TAIL`] tombstones and asks at most log2(n / TAIL) + 1
//! levels, each O(log n) at the latest seqno (O(log² n) at an old snapshot); in the
//! queue pattern a covered key is answered by the tail or the newest level alone.
//! Taking a [`TombstoneLevels`] for an iterator is one `Arc` clone.

use std::sync::Arc;

use arc_swap::ArcSwap;
use parking_lot::Mutex;

use crate::key::{RangeTombstone, SeqNo};
use crate::tombstones::MergeableIndex;

/// Tombstones kept unindexed, newest first, until there are [`TAIL`] of them: most
/// inserts then cost one allocation, and the smallest levels are never built.
const TAIL: usize = 16;

/// One level: `inserted` tombstones (empty ranges count, so sizes stay in step).
#[derive(Debug)]
struct Level {
    inserted: usize,
    index: MergeableIndex,
}

/// A tombstone of the tail and the older ones (a list shared by successive views).
#[derive(Debug)]
struct Tail {
    tombstone: RangeTombstone,
    older: Option<Arc<Tail>>,
}

/// Everything inserted so far: the levels (largest first) and the tail.
#[derive(Debug, Clone, Default)]
struct Levels {
    levels: Arc<Vec<Arc<Level>>>,
    tail: Option<Arc<Tail>>,
    tail_len: usize,
}

/// The growing tombstone index of one memtable.
#[derive(Debug, Default)]
pub(crate) struct MemtableTombstones {
    /// What readers load: the state after the last finished insert.
    published: ArcSwap<Levels>,
    /// The same, for the writer; held while inserting.
    writer: Mutex<Levels>,
}

impl MemtableTombstones {
    /// Adds `tombstone` to the tail; a full tail becomes a level, merged with the
    /// smallest levels while they are as small.
    pub(crate) fn insert(&self, tombstone: RangeTombstone) {
        let mut state = self.writer.lock();
        if state.tail_len + 1 < TAIL {
            state.tail = Some(Arc::new(Tail { tombstone, older: state.tail.take() }));
            state.tail_len += 1;
        } else {
            let mut tombstones = vec![tombstone];
            let mut node = state.tail.take();
            while let Some(tail) = node {
                tombstones.push(tail.tombstone.clone());
                node = tail.older.clone();
            }
            state.tail_len = 0;
            let inserted = tombstones.len();
            let mut level = Level { inserted, index: MergeableIndex::new(tombstones) };
            let levels = Arc::make_mut(&mut state.levels);
            while let Some(smallest) = levels.pop_if(|l| l.inserted <= level.inserted) {
                level = Level {
                    inserted: level.inserted + smallest.inserted,
                    index: MergeableIndex::merge(&smallest.index, &level.index),
                };
            }
            levels.push(Arc::new(level));
        }
        self.published.store(Arc::new(state.clone()));
    }

    /// The tombstones as of now: later inserts do not change them.
    pub(crate) fn levels(&self) -> TombstoneLevels {
        TombstoneLevels { state: self.published.load_full() }
    }
}

/// An immutable view of a memtable's tombstone index.
#[derive(Debug, Clone, Default)]
pub struct TombstoneLevels {
    state: Arc<Levels>,
}

impl TombstoneLevels {
    /// The highest seqno `<= snapshot` among tombstones covering `key`.
    pub fn max_covering(&self, key: &[u8], snapshot: SeqNo) -> Option<SeqNo> {
        let mut best = None;
        let mut node = self.state.tail.as_deref();
        while let Some(tail) = node {
            let t = &tail.tombstone;
            // The seqno tests first: they are cheaper than comparing keys.
            if t.seqno <= snapshot && Some(t.seqno) > best && t.covers(key) {
                best = Some(t.seqno);
            }
            node = tail.older.as_deref();
        }
        // Smallest levels first: they hold the newest tombstones when seqnos are
        // inserted in order (the write path), and a level whose newest seqno is no
        // better than the answer so far is not searched.
        for level in self.state.levels.iter().rev() {
            let Some((newest, oldest)) = level.index.seqno_range() else { continue };
            if oldest > snapshot || best >= Some(newest) {
                continue;
            }
            best = best.max(level.index.index().max_covering(key, snapshot));
        }
        best
    }

    /// The number of tombstones in each level, largest first, and in the tail.
    #[cfg(test)]
    fn shape(&self) -> (Vec<usize>, usize) {
        (self.state.levels.iter().map(|l| l.inserted).collect(), self.state.tail_len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use proptest::prelude::*;

    fn key(k: u8) -> Bytes {
        Bytes::from(vec![k])
    }

    #[test]
    fn levels_follow_the_binary_digits_of_the_count() {
        let tombstones = MemtableTombstones::default();
        for n in 1..=1000usize {
            let seqno = n as SeqNo;
            tombstones.insert(RangeTombstone { start: key(0), end: key(1), seqno });
            let digits: Vec<usize> = (0..64)
                .rev()
                .map(|b| 1usize << b)
                .filter(|&d| d >= TAIL && ((n / TAIL * TAIL) & d) != 0)
                .collect();
            assert_eq!(tombstones.levels().shape(), (digits, n % TAIL));
        }
        // 1000 = 512 + 256 + 128 + 64 + 32 + 8: five levels and a tail of eight.
        assert_eq!(tombstones.levels().shape().0.len(), 5);
    }

    #[test]
    fn a_taken_view_does_not_change() {
        let tombstones = MemtableTombstones::default();
        tombstones.insert(RangeTombstone { start: key(1), end: key(5), seqno: 3 });
        let before = tombstones.levels();
        tombstones.insert(RangeTombstone { start: key(0), end: key(9), seqno: 8 });
        assert_eq!(before.max_covering(&[2], 100), Some(3));
        assert_eq!(tombstones.levels().max_covering(&[2], 100), Some(8));
        assert_eq!(TombstoneLevels::default().max_covering(&[2], 100), None);
    }

    proptest! {
        #[test]
        fn matches_a_brute_force_model(
            raw in proptest::collection::vec((0u8..40, 0u8..40, 1u64..200), 0..100),
            queries in proptest::collection::vec((0u8..42, 0u64..210), 1..30),
        ) {
            let tombstones = MemtableTombstones::default();
            let mut inserted: Vec<RangeTombstone> = Vec::new();
            for (i, &(a, b, s)) in raw.iter().enumerate() {
                let t = RangeTombstone { start: key(a.min(b)), end: key(a.max(b)), seqno: s };
                tombstones.insert(t.clone());
                inserted.push(t);
                // Ask after some inserts too, not only at the end.
                if i % 7 != 0 && i + 1 != raw.len() {
                    continue;
                }
                let view = tombstones.levels();
                for &(k, snapshot) in &queries {
                    let expected = inserted
                        .iter()
                        .filter(|t| t.covers(&[k]) && t.seqno <= snapshot)
                        .map(|t| t.seqno)
                        .max();
                    prop_assert_eq!(view.max_covering(&[k], snapshot), expected);
                }
            }
        }
    }
}
