//! A read-optimised index of range tombstones: "which tombstone seqnos cover key k?"
//!
//! Range tombstones are stored as written (possibly overlapping). For reads they are
//! cut at every start and end into non-overlapping fragments, each listing the seqnos
//! of the tombstones that cover it, newest first — the idea of RocksDB's fragmented
//! range tombstone list. A lookup is then a binary search plus a scan of one short
//! list.
//!
//! # Invariants
//! - Fragments are sorted by `start`, non-overlapping, and never empty (`start < end`).
//! - Each fragment's seqnos are sorted descending and deduplicated.
//!
//! Building costs O(n log n + total fragments covered), which is O(n²) only for
//! heavily nested tombstones; typical workloads delete disjoint ranges.

use bytes::Bytes;

use crate::key::{RangeTombstone, SeqNo};

#[derive(Debug, Clone, PartialEq, Eq)]
struct Fragment {
    start: Bytes,
    end: Bytes,
    seqnos: Vec<SeqNo>,
}

/// Non-overlapping fragments of a set of range tombstones.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TombstoneIndex {
    fragments: Vec<Fragment>,
}

impl TombstoneIndex {
    /// Indexes `tombstones` (any order).
    pub fn new(tombstones: impl IntoIterator<Item = RangeTombstone>) -> TombstoneIndex {
        let tombstones: Vec<RangeTombstone> =
            tombstones.into_iter().filter(|t| t.start < t.end).collect();
        if tombstones.is_empty() {
            return TombstoneIndex::default();
        }
        let mut bounds: Vec<Bytes> =
            tombstones.iter().flat_map(|t| [t.start.clone(), t.end.clone()]).collect();
        bounds.sort();
        bounds.dedup();
        let mut seqnos: Vec<Vec<SeqNo>> = vec![Vec::new(); bounds.len() - 1];
        for t in &tombstones {
            // Both are present in `bounds` by construction.
            let first = bounds.partition_point(|b| *b < t.start);
            let last = bounds.partition_point(|b| *b < t.end);
            for list in &mut seqnos[first..last] {
                list.push(t.seqno);
            }
        }
        let fragments = bounds
            .windows(2)
            .zip(seqnos)
            .filter(|(_, s)| !s.is_empty())
            .map(|(w, mut s)| {
                s.sort_unstable_by(|a, b| b.cmp(a));
                s.dedup();
                Fragment { start: w[0].clone(), end: w[1].clone(), seqnos: s }
            })
            .collect();
        TombstoneIndex { fragments }
    }

    /// True if there is no tombstone.
    pub fn is_empty(&self) -> bool {
        self.fragments.is_empty()
    }

    /// The highest seqno `<= snapshot` among tombstones covering `key`.
    pub fn max_covering(&self, key: &[u8], snapshot: SeqNo) -> Option<SeqNo> {
        let i = self.fragments.partition_point(|f| f.start.as_ref() <= key);
        let fragment = self.fragments.get(i.checked_sub(1)?)?;
        if key >= fragment.end.as_ref() {
            return None;
        }
        fragment.seqnos.iter().copied().find(|&s| s <= snapshot)
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
    fn overlapping_tombstones() {
        let index = TombstoneIndex::new([t("b", "f", 5), t("d", "h", 9), t("a", "c", 2)]);
        assert_eq!(index.max_covering(b"a", 100), Some(2));
        assert_eq!(index.max_covering(b"b", 100), Some(5));
        assert_eq!(index.max_covering(b"e", 100), Some(9));
        assert_eq!(index.max_covering(b"e", 8), Some(5));
        assert_eq!(index.max_covering(b"g", 8), None);
        assert_eq!(index.max_covering(b"h", 100), None);
        assert_eq!(index.max_covering(b"", 100), None);
    }

    proptest! {
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
