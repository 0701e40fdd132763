//! A read-optimised index of range tombstones: "the highest seqno `<= snapshot` among
//! the tombstones covering key k".
//!
//! # Structure
//! The distinct starts and ends of the tombstones, sorted, cut the key space into
//! `F` elementary fragments `[bounds[i], bounds[i + 1])`, and each tombstone covers a
//! contiguous run of them. A segment tree over the fragments (the bottom-up layout:
//! leaf `i` is node `F + i`, the parent of node `v` is `v / 2`) stores each tombstone's
//! seqno at the canonical nodes of its run: at most two per level, so O(log F). The
//! tombstones covering fragment `i` are exactly those stored on the path from leaf
//! `F + i` to the root, and a lookup takes the best seqno found on that path.
//!
//! RocksDB's fragmented list instead keeps, per fragment, every covering seqno. That
//! is O(n²) for nested tombstones (the queue pattern `delete_range("q:", head)` after
//! each pop: fragment `i` is covered by `n - i` of them), and no seqno may be left out:
//! a table's index is built once, when it is opened, and read at any snapshot. The tree
//! shares each seqno among all the fragments of its run: 8,000 nested tombstones store
//! 66,247 seqnos instead of 32,004,000 (about 256 MB).
//!
//! [`MergeableIndex`] also keeps each tombstone's run, so that two indexes merge
//! without sorting their keys again (the memtable's growing levels).
//!
//! # Invariants
//! - `bounds` is sorted strictly ascending and is empty or has at least two entries.
//! - With `F = bounds.len() - 1`, `offsets` has `2F + 1` entries, non-decreasing, and
//!   node `v` (`1 <= v < 2F`) stores `seqnos[offsets[v]..offsets[v + 1]]`, sorted
//!   descending (ties kept: pieces of one tombstone may repeat a seqno).
//! - A tombstone's seqno is stored on the leaf-to-root path of fragment `i` exactly
//!   once if it covers fragment `i`, and not at all otherwise.
//!
//! # Cost (n tombstones, F < 2n fragments)
//! Building sorts the bounds and the seqnos and places each seqno at ≤ 2·log2(2F)
//! nodes: O(n log n) time. Memory: the bounds (`Bytes` clones of the tombstones' keys,
//! not copies), `2F + 1` offsets and ≤ 2·log2(2F) seqnos per tombstone (one for a
//! tombstone over a single fragment, the usual disjoint deletes): O(n log n) at worst.
//! A lookup is a binary search of the bounds, then one binary search in each of the
//! log2(2F) nodes of a path: O(log² n), and O(log n) when the snapshot is newer than
//! every seqno (a read of the latest state) since the first seqno of a node answers.

use std::cmp::Ordering;

use bytes::Bytes;

use crate::key::{RangeTombstone, SeqNo};

/// The tombstones of a set, fragmented into a segment tree (see the module docs).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TombstoneIndex {
    bounds: Vec<Bytes>,
    offsets: Vec<usize>,
    seqnos: Vec<SeqNo>,
}

/// One tombstone as the fragments it covers: `[bounds[first], bounds[last])`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Run {
    first: usize,
    last: usize,
    seqno: SeqNo,
}

impl TombstoneIndex {
    /// Indexes `tombstones` (any order; empty ranges are ignored).
    pub fn new(tombstones: impl IntoIterator<Item = RangeTombstone>) -> TombstoneIndex {
        TombstoneIndex::with_runs(tombstones).0
    }

    /// The index and its runs, newest first.
    fn with_runs(
        tombstones: impl IntoIterator<Item = RangeTombstone>,
    ) -> (TombstoneIndex, Vec<Run>) {
        let tombstones: Vec<RangeTombstone> =
            tombstones.into_iter().filter(|t| t.start < t.end).collect();
        let mut bounds: Vec<Bytes> =
            tombstones.iter().flat_map(|t| [t.start.clone(), t.end.clone()]).collect();
        bounds.sort_unstable();
        bounds.dedup();
        // Both ends are present in `bounds` by construction.
        let mut runs: Vec<Run> = tombstones
            .iter()
            .map(|t| Run {
                first: bounds.partition_point(|b| *b < t.start),
                last: bounds.partition_point(|b| *b < t.end),
                seqno: t.seqno,
            })
            .collect();
        runs.sort_unstable_by_key(|r| std::cmp::Reverse(r.seqno));
        (TombstoneIndex::build(bounds, &runs), runs)
    }

    /// Places `runs` (newest first, so that every node's list comes out descending)
    /// in a tree over the fragments of `bounds`.
    fn build(bounds: Vec<Bytes>, runs: &[Run]) -> TombstoneIndex {
        let Some(leaves) = bounds.len().checked_sub(1).filter(|&l| l > 0) else {
            return TombstoneIndex::default();
        };
        // Count the seqnos of each node, then place them (a counting sort into one Vec).
        let mut offsets = vec![0usize; 2 * leaves + 1];
        for run in runs {
            canonical_nodes(leaves + run.first, leaves + run.last, |node| offsets[node + 1] += 1);
        }
        for node in 1..offsets.len() {
            offsets[node] += offsets[node - 1];
        }
        let mut next = offsets.clone();
        let mut seqnos = vec![0; offsets[2 * leaves]];
        for run in runs {
            canonical_nodes(leaves + run.first, leaves + run.last, |node| {
                seqnos[next[node]] = run.seqno;
                next[node] += 1;
            });
        }
        TombstoneIndex { bounds, offsets, seqnos }
    }

    /// True if there is no tombstone.
    pub fn is_empty(&self) -> bool {
        self.bounds.is_empty()
    }

    /// The highest seqno `<= snapshot` among tombstones covering `key`.
    pub fn max_covering(&self, key: &[u8], snapshot: SeqNo) -> Option<SeqNo> {
        let leaves = self.bounds.len().checked_sub(1)?;
        let fragment = self.bounds.partition_point(|b| b.as_ref() <= key).checked_sub(1)?;
        if fragment >= leaves {
            return None; // At or past the last end.
        }
        let mut best = None;
        let mut node = leaves + fragment;
        while node > 0 {
            let seqnos = &self.seqnos[self.offsets[node]..self.offsets[node + 1]];
            // Descending: the first one `<= snapshot` is the newest visible here, and
            // at the latest seqno it is the very first.
            let visible = match seqnos.first() {
                Some(&newest) if newest <= snapshot => 0,
                _ => seqnos.partition_point(|&s| s > snapshot),
            };
            best = best.max(seqnos.get(visible).copied());
            node /= 2;
        }
        best
    }

    /// Seqnos stored over all nodes (the index's size beside its bounds and offsets).
    #[cfg(test)]
    fn stored_seqnos(&self) -> usize {
        self.seqnos.len()
    }
}

/// A [`TombstoneIndex`] that can be merged with another without comparing keys more
/// than once per bound: it keeps each tombstone's run of fragments.
///
/// Merging sizes `a` and `b` merges the two sorted bound lists and the two runs lists
/// (newest first) in O(a + b) and rebuilds the tree in O((a + b) log(a + b)) integer
/// steps. The memtable's levels use it, where sorting the keys again at every merge
/// made the cost of inserts dominated by key comparisons.
#[derive(Debug, Clone, Default)]
pub struct MergeableIndex {
    index: TombstoneIndex,
    runs: Vec<Run>,
}

impl MergeableIndex {
    /// Indexes `tombstones` (any order; empty ranges are ignored).
    pub fn new(tombstones: impl IntoIterator<Item = RangeTombstone>) -> MergeableIndex {
        let (index, runs) = TombstoneIndex::with_runs(tombstones);
        MergeableIndex { index, runs }
    }

    /// One index over the tombstones of `a` and `b`.
    pub fn merge(a: &MergeableIndex, b: &MergeableIndex) -> MergeableIndex {
        let (bounds, map_a, map_b) = merge_bounds(&a.index.bounds, &b.index.bounds);
        let remap = |run: &Run, map: &[usize]| Run {
            first: map[run.first],
            last: map[run.last],
            seqno: run.seqno,
        };
        let mut runs = Vec::with_capacity(a.runs.len() + b.runs.len());
        let (mut i, mut j) = (0, 0);
        loop {
            let run = match (a.runs.get(i), b.runs.get(j)) {
                (Some(x), Some(y)) if x.seqno >= y.seqno => {
                    i += 1;
                    remap(x, &map_a)
                }
                (_, Some(y)) => {
                    j += 1;
                    remap(y, &map_b)
                }
                (Some(x), None) => {
                    i += 1;
                    remap(x, &map_a)
                }
                (None, None) => break,
            };
            runs.push(run);
        }
        MergeableIndex { index: TombstoneIndex::build(bounds, &runs), runs }
    }

    /// The index for lookups.
    pub fn index(&self) -> &TombstoneIndex {
        &self.index
    }

    /// The highest and lowest seqno held, if any.
    pub fn seqno_range(&self) -> Option<(SeqNo, SeqNo)> {
        Some((self.runs.first()?.seqno, self.runs.last()?.seqno))
    }
}

/// The sorted, deduplicated union of two sorted, deduplicated bound lists, and where
/// each input's bounds went in it.
fn merge_bounds(a: &[Bytes], b: &[Bytes]) -> (Vec<Bytes>, Vec<usize>, Vec<usize>) {
    let mut merged = Vec::with_capacity(a.len() + b.len());
    let (mut map_a, mut map_b) = (Vec::with_capacity(a.len()), Vec::with_capacity(b.len()));
    let (mut i, mut j) = (0, 0);
    loop {
        let (bound, from_a, from_b) = match (a.get(i), b.get(j)) {
            (Some(x), Some(y)) => match x.cmp(y) {
                Ordering::Less => (x, true, false),
                Ordering::Equal => (x, true, true),
                Ordering::Greater => (y, false, true),
            },
            (Some(x), None) => (x, true, false),
            (None, Some(y)) => (y, false, true),
            (None, None) => break,
        };
        if from_a {
            map_a.push(merged.len());
            i += 1;
        }
        if from_b {
            map_b.push(merged.len());
            j += 1;
        }
        merged.push(bound.clone());
    }
    (merged, map_a, map_b)
}

/// Calls `visit` on the canonical nodes of the leaves `[first, last)` (node numbers):
/// the fewest nodes whose subtrees hold exactly those leaves, at most two per level.
fn canonical_nodes(mut first: usize, mut last: usize, mut visit: impl FnMut(usize)) {
    while first < last {
        if first % 2 == 1 {
            visit(first);
            first += 1;
        }
        if last % 2 == 1 {
            last -= 1;
            visit(last);
        }
        first /= 2;
        last /= 2;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn t(start: &str, end: &str, seqno: SeqNo) -> RangeTombstone {
        RangeTombstone {
            start: Bytes::copy_from_slice(start.as_bytes()),
            end: Bytes::copy_from_slice(end.as_bytes()),
            seqno,
        }
    }

    #[test]
    fn max_covering_is_the_newest_visible_tombstone_with_its_end_excluded() {
        let index = TombstoneIndex::new([t("b", "f", 5), t("d", "h", 9), t("a", "c", 2)]);
        assert_eq!(index.max_covering(b"a", 100), Some(2));
        assert_eq!(index.max_covering(b"b", 100), Some(5));
        assert_eq!(index.max_covering(b"e", 100), Some(9));
        assert_eq!(index.max_covering(b"e", 8), Some(5));
        assert_eq!(index.max_covering(b"g", 8), None);
        assert_eq!(index.max_covering(b"h", 100), None);
        assert_eq!(index.max_covering(b"", 100), None);
    }

    /// The bottom-up tree with any leaf count: every leaf's path to the root meets
    /// exactly one canonical node of a run holding it, and none of a run that does not.
    #[test]
    fn canonical_nodes_partition_every_run() {
        for leaves in 1..40usize {
            for first in 0..leaves {
                for last in first + 1..=leaves {
                    let mut nodes = Vec::new();
                    canonical_nodes(leaves + first, leaves + last, |v| nodes.push(v));
                    for leaf in 0..leaves {
                        let mut hits = 0;
                        let mut node = leaves + leaf;
                        while node > 0 {
                            hits += nodes.iter().filter(|&&v| v == node).count();
                            node /= 2;
                        }
                        let covered = (first..last).contains(&leaf);
                        assert_eq!(hits, usize::from(covered), "{leaves} [{first},{last}) {leaf}");
                    }
                }
            }
        }
    }

    fn numbered(i: usize) -> Bytes {
        Bytes::from(format!("q:{i:08}"))
    }

    /// The queue pattern: `["q:", q:i)` at seqno i. A list per fragment would store
    /// n(n + 1)/2 seqnos (2·10^8 here, 1.6 GB); the tree stores O(n log n).
    #[test]
    fn nested_tombstones_take_n_log_n_space() {
        let n = 20_000;
        let nested = (1..=n).map(|i| RangeTombstone {
            start: Bytes::from_static(b"q:"),
            end: numbered(i),
            seqno: i as SeqNo,
        });
        let index = TombstoneIndex::new(nested);
        assert!(index.stored_seqnos() <= n * 2 * 16, "{} seqnos", index.stored_seqnos());
        assert_eq!(index.max_covering(b"q:", SeqNo::MAX), Some(n as SeqNo));
        assert_eq!(index.max_covering(&numbered(n - 1), SeqNo::MAX), Some(n as SeqNo));
        assert_eq!(index.max_covering(&numbered(n), SeqNo::MAX), None);
        assert_eq!(index.max_covering(&numbered(500), 700), Some(700));
        assert_eq!(index.max_covering(&numbered(500), 500), None);
    }

    /// Staggered overlaps: `[i, i + n/2)`; every fragment is covered by n/2 of them.
    #[test]
    fn staggered_tombstones_take_n_log_n_space() {
        let n = 20_000;
        let staggered = (0..n).map(|i| RangeTombstone {
            start: numbered(i),
            end: numbered(i + n / 2),
            seqno: (n - i) as SeqNo,
        });
        let index = TombstoneIndex::new(staggered);
        assert!(index.stored_seqnos() <= n * 2 * 16, "{} seqnos", index.stored_seqnos());
        // Key n/2 is covered by tombstones i = 1..=n/2, seqnos n - i = n/2..=n - 1.
        assert_eq!(index.max_covering(&numbered(n / 2), SeqNo::MAX), Some(n as SeqNo - 1));
        assert_eq!(index.max_covering(&numbered(n / 2), 15_000), Some(15_000));
        assert_eq!(index.max_covering(&numbered(n / 2), 9_999), None);
    }

    proptest! {
        #[test]
        fn matches_a_brute_force_model(
            raw in proptest::collection::vec((0u16..300, 0u16..300, 1u64..400), 0..200),
            queries in proptest::collection::vec((0u16..310, 0u64..420), 1..50),
        ) {
            // Two-byte keys; repeated seqnos stand for pieces of one tombstone.
            let key = |k: u16| Bytes::copy_from_slice(&k.to_be_bytes());
            let tombstones: Vec<RangeTombstone> = raw
                .iter()
                .map(|&(a, b, s)| RangeTombstone { start: key(a.min(b)), end: key(a.max(b)), seqno: s })
                .collect();
            let index = TombstoneIndex::new(tombstones.iter().cloned());
            for (k, snapshot) in queries {
                let k = key(k);
                let expected = tombstones
                    .iter()
                    .filter(|t| t.covers(&k) && t.seqno <= snapshot)
                    .map(|t| t.seqno)
                    .max();
                prop_assert_eq!(index.max_covering(&k, snapshot), expected);
            }
        }

        #[test]
        fn merging_equals_building_at_once(
            a in proptest::collection::vec((0u8..30, 0u8..30, 1u64..100), 0..40),
            b in proptest::collection::vec((0u8..30, 0u8..30, 1u64..100), 0..40),
        ) {
            let tombstones = |raw: &[(u8, u8, u64)]| -> Vec<RangeTombstone> {
                raw.iter()
                    .map(|&(x, y, s)| RangeTombstone {
                        start: Bytes::from(vec![x.min(y)]),
                        end: Bytes::from(vec![x.max(y)]),
                        seqno: s,
                    })
                    .collect()
            };
            let (a, b) = (tombstones(&a), tombstones(&b));
            let merged = MergeableIndex::merge(&MergeableIndex::new(a.clone()), &MergeableIndex::new(b.clone()));
            let at_once = TombstoneIndex::new(a.iter().chain(&b).cloned());
            for k in 0u8..32 {
                for snapshot in [0, 10, 50, 99, SeqNo::MAX] {
                    prop_assert_eq!(
                        merged.index().max_covering(&[k], snapshot),
                        at_once.max_covering(&[k], snapshot)
                    );
                }
            }
            let all: Vec<SeqNo> = a.iter().chain(&b).filter(|t| t.start < t.end).map(|t| t.seqno).collect();
            let expected = all.iter().max().zip(all.iter().min()).map(|(&x, &y)| (x, y));
            prop_assert_eq!(merged.seqno_range(), expected);
        }

        #[test]
        fn matches_a_linear_scan(
            raw in proptest::collection::vec((0u8..20, 0u8..20, 1u64..50), 0..30),
            key in 0u8..22,
            snapshot in 0u64..60,
        ) {
            let tombstones: Vec<RangeTombstone> = raw
                .iter()
                .map(|&(a, b, s)| RangeTombstone {
                    start: Bytes::from(vec![a.min(b)]),
                    end: Bytes::from(vec![a.max(b)]),
                    seqno: s,
                })
                .collect();
            let expected = tombstones
                .iter()
                .filter(|t| t.covers(&[key]) && t.seqno <= snapshot)
                .map(|t| t.seqno)
                .max();
            prop_assert_eq!(TombstoneIndex::new(tombstones).max_covering(&[key], snapshot), expected);
        }
    }
}
