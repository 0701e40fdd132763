//! The scan iterator: two levels, the in-memory index, then one data block at a time.
//!
//! # Contract
//! - Forward ([`Source::advance`], or [`Iterator::next`] for owned entries) yields
//!   every stored version whose user key is within the bounds, in internal order
//!   (user key ASC, seqno DESC), read in place in the block; backward
//!   ([`DoubleEndedIterator::next_back`]) yields them in exactly the reverse order.
//! - `next` and `next_back` may be interleaved: each entry is yielded once, and both
//!   return `None` once they meet.
//! - After an error, both return `None`.
//! - Range tombstones are not applied (see [`Table::range_tombstones`]).
//!
//! # How
//! The front end holds a [`BlockIter`] over one block and its current entry is the
//! block iterator's; the back end decodes one whole
//! block into a `Vec` and pops from its end. Each yielded entry has a position
//! `(block index, offset in block)`; positions strictly increase in internal order, so
//! the two ends meet when the front's next position reaches the back's last one.

use std::ops::Bound;
use std::sync::Arc;

use bytes::Bytes;

use crate::error::Result;
use crate::key::{Entry, EntryRef, MAX_SEQNO};
use crate::merge::{READ_AFTER_ADVANCE, Source};

use super::Table;
use super::block::BlockIter;

/// Where an entry is: (index of its block, offset within the block).
type Position = (usize, usize);

/// A bounded scan over one table. Holds the table alive.
pub struct TableIter {
    table: Arc<Table>,
    lower: Bound<Bytes>,
    upper: Bound<Bytes>,
    /// The block the front reads (meaningful once started).
    front_block: usize,
    front: Option<BlockIter>,
    front_started: bool,
    /// Position of the last entry yielded by the front.
    front_pos: Option<Position>,
    /// The block the back reads (meaningful once started).
    back_block: usize,
    /// Decoded entries of the back's block not yet yielded, with their offsets.
    back: Option<Vec<(usize, Entry)>>,
    back_started: bool,
    /// Position of the last entry yielded by the back.
    back_pos: Option<Position>,
    done: bool,
    /// Whether blocks read from the file are added to the block cache.
    fill_cache: bool,
}

impl Table {
    /// Scans the versions of user keys within `lower..upper`.
    pub fn iter(self: &Arc<Self>, lower: Bound<Bytes>, upper: Bound<Bytes>) -> TableIter {
        self.scan(lower, upper, true)
    }

    /// Scans the whole table, adding no block it reads to the block cache: compaction
    /// reads each block once, and caching them would evict what readers need.
    pub fn iter_uncached(self: &Arc<Self>) -> TableIter {
        self.scan(Bound::Unbounded, Bound::Unbounded, false)
    }

    fn scan(
        self: &Arc<Self>,
        lower: Bound<Bytes>,
        upper: Bound<Bytes>,
        fill_cache: bool,
    ) -> TableIter {
        TableIter {
            table: Arc::clone(self),
            lower,
            upper,
            front_block: 0,
            front: None,
            front_started: false,
            front_pos: None,
            back_block: 0,
            back: None,
            back_started: false,
            back_pos: None,
            done: false,
            fill_cache,
        }
    }
}

fn above(lower: &Bound<Bytes>, key: &[u8]) -> bool {
    match lower {
        Bound::Included(l) => key >= &l[..],
        Bound::Excluded(l) => key > &l[..],
        Bound::Unbounded => true,
    }
}

fn below(upper: &Bound<Bytes>, key: &[u8]) -> bool {
    match upper {
        Bound::Included(u) => key <= &u[..],
        Bound::Excluded(u) => key < &u[..],
        Bound::Unbounded => true,
    }
}

impl TableIter {
    fn front_block_iter(&self) -> &BlockIter {
        self.front.as_ref().expect(READ_AFTER_ADVANCE)
    }

    /// Opens the front's next block; false when there is none.
    fn open_front_block(&mut self) -> Result<bool> {
        let table = Arc::clone(&self.table);
        // Only the first block needs seeking to the lower bound: the index search
        // found the first block that can hold keys at or above it.
        let lower = match &self.lower {
            Bound::Included(l) | Bound::Excluded(l) if !self.front_started => Some(l.clone()),
            _ => None,
        };
        if self.front_started {
            self.front_block += 1;
        } else {
            self.front_started = true;
            self.front_block = lower.as_ref().map_or(0, |l| table.index.seek(l, MAX_SEQNO));
        }
        if self.front_block >= table.index.len()
            || self.back_pos.is_some_and(|(b, _)| self.front_block > b)
        {
            return Ok(false);
        }
        let mut it = table.data_block(self.front_block, self.fill_cache)?.iter();
        if let Some(l) = lower {
            it.seek(&l, MAX_SEQNO).map_err(|c| c.in_file(&table.path))?;
        }
        self.front = Some(it);
        Ok(true)
    }

    /// Loads the back's previous block; false when there is none.
    fn open_back_block(&mut self) -> Result<bool> {
        let table = Arc::clone(&self.table);
        if table.index.is_empty() {
            return Ok(false);
        }
        if self.back_started {
            if self.back_block == 0 {
                return Ok(false);
            }
            self.back_block -= 1;
        } else {
            self.back_started = true;
            let first_after = match &self.upper {
                Bound::Included(u) => table.index.seek(u, 0),
                Bound::Excluded(u) => table.index.seek(u, MAX_SEQNO),
                Bound::Unbounded => table.index.len(),
            };
            self.back_block = first_after.min(table.index.len() - 1);
        }
        if self.front_pos.is_some_and(|(b, _)| self.back_block < b) {
            return Ok(false);
        }
        let mut it = table.data_block(self.back_block, self.fill_cache)?.iter();
        let mut entries = Vec::new();
        while let Some(entry) = it.next() {
            let entry = entry.map_err(|c| c.in_file(&table.path))?;
            entries.push((it.current_offset(), entry));
        }
        self.back = Some(entries);
        Ok(true)
    }
}

/// The front end as a cursor: entries are read in the block, copied only when taken.
impl Source for TableIter {
    fn advance(&mut self) -> Result<bool> {
        while !self.done {
            let Some(it) = &mut self.front else {
                match self.open_front_block() {
                    Ok(true) => continue,
                    Ok(false) => break,
                    Err(e) => {
                        self.done = true;
                        return Err(e);
                    }
                }
            };
            match it.advance() {
                Ok(true) => {}
                Ok(false) => {
                    self.front = None;
                    continue;
                }
                Err(c) => {
                    self.done = true;
                    return Err(c.in_file(&self.table.path));
                }
            }
            let pos = (self.front_block, it.current_offset());
            let key = it.current().key;
            if self.back_pos.is_some_and(|back| pos >= back) || !below(&self.upper, key) {
                break;
            }
            if !above(&self.lower, key) {
                continue;
            }
            self.front_pos = Some(pos);
            return Ok(true);
        }
        self.done = true;
        Ok(false)
    }

    fn current(&self) -> EntryRef<'_> {
        self.front_block_iter().current()
    }

    fn take_current(&mut self) -> Entry {
        self.front_block_iter().entry()
    }
}

impl Iterator for TableIter {
    type Item = Result<Entry>;

    fn next(&mut self) -> Option<Self::Item> {
        match Source::advance(self) {
            Ok(true) => Some(Ok(self.take_current())),
            Ok(false) => None,
            Err(e) => Some(Err(e)),
        }
    }
}

impl DoubleEndedIterator for TableIter {
    fn next_back(&mut self) -> Option<Self::Item> {
        while !self.done {
            let Some(entries) = &mut self.back else {
                match self.open_back_block() {
                    Ok(true) => continue,
                    Ok(false) => break,
                    Err(e) => {
                        self.done = true;
                        return Some(Err(e));
                    }
                }
            };
            let Some((offset, entry)) = entries.pop() else {
                self.back = None;
                continue;
            };
            let pos = (self.back_block, offset);
            if self.front_pos.is_some_and(|front| pos <= front) || !above(&self.lower, &entry.key) {
                break;
            }
            if !below(&self.upper, &entry.key) {
                continue;
            }
            self.back_pos = Some(pos);
            return Some(Ok(entry));
        }
        self.done = true;
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key::{SeqNo, ValueKind};
    use crate::options::Compression;
    use crate::sstable::TableOptions;
    use crate::sstable::tests::{delete, open, put, write_table};
    use proptest::prelude::*;
    use std::collections::{BTreeSet, VecDeque};

    fn key(i: u8) -> String {
        format!("k{i:02}")
    }

    fn bound(b: &Bound<u8>) -> Bound<Bytes> {
        b.as_ref().map(|i| Bytes::from(key(*i)))
    }

    fn in_bounds(e: &Entry, lower: &Bound<u8>, upper: &Bound<u8>) -> bool {
        let k = &e.key[..];
        let lo = match lower {
            Bound::Included(i) => k >= key(*i).as_bytes(),
            Bound::Excluded(i) => k > key(*i).as_bytes(),
            Bound::Unbounded => true,
        };
        let hi = match upper {
            Bound::Included(i) => k <= key(*i).as_bytes(),
            Bound::Excluded(i) => k < key(*i).as_bytes(),
            Bound::Unbounded => true,
        };
        lo && hi
    }

    fn bound_strategy() -> impl Strategy<Value = Bound<u8>> {
        prop_oneof![
            Just(Bound::Unbounded),
            (0u8..45).prop_map(Bound::Included),
            (0u8..45).prop_map(Bound::Excluded),
        ]
    }

    fn entries(versions: &BTreeSet<(u8, SeqNo, bool)>) -> Vec<Entry> {
        let mut out: Vec<Entry> = versions
            .iter()
            .map(|&(k, seqno, is_delete)| {
                if is_delete {
                    delete(&key(k), seqno)
                } else {
                    put(&key(k), seqno, &"v".repeat(k as usize))
                }
            })
            .collect();
        // One version per (key, seqno).
        out.sort_by(Entry::cmp_internal);
        out.dedup_by(|a, b| a.key == b.key && a.seqno == b.seqno);
        out
    }

    #[test]
    fn forward_and_backward_scans_are_mirror_images() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.sst");
        let mut all = Vec::new();
        for i in 0..40u8 {
            for seqno in 1..=(i as u64 % 7 + 1) {
                all.push(put(&key(i), seqno * 3, &format!("value{i}-{seqno}")));
            }
        }
        let options =
            TableOptions { block_size: 128, compression: Compression::Lz4, bloom_bits_per_key: 10 };
        write_table(&path, &all, &[], options);
        all.sort_by(Entry::cmp_internal);
        let table = open(&path).unwrap();
        let forward: Vec<Entry> =
            table.iter(Bound::Unbounded, Bound::Unbounded).map(|e| e.unwrap()).collect();
        assert_eq!(forward, all);
        let mut backward: Vec<Entry> =
            table.iter(Bound::Unbounded, Bound::Unbounded).rev().map(|e| e.unwrap()).collect();
        backward.reverse();
        assert_eq!(backward, all);
        assert_eq!(all.iter().filter(|e| e.kind == ValueKind::Put).count(), all.len());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn scans_match_a_sorted_model(
            versions in proptest::collection::btree_set((0u8..40, 0u64..50, any::<bool>()), 0..300),
            lower in bound_strategy(),
            upper in bound_strategy(),
            steps in proptest::collection::vec(any::<bool>(), 0..400),
            block_size in prop_oneof![Just(64usize), Just(256), Just(4096)],
        ) {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("t.sst");
            let all = entries(&versions);
            let options = TableOptions { block_size, compression: Compression::None, bloom_bits_per_key: 10 };
            write_table(&path, &all, &[], options);
            let table = open(&path).unwrap();

            let mut model: VecDeque<Entry> =
                all.iter().filter(|e| in_bounds(e, &lower, &upper)).cloned().collect();
            let forward: Vec<Entry> =
                table.iter(bound(&lower), bound(&upper)).map(|e| e.unwrap()).collect();
            prop_assert_eq!(&forward, &Vec::from(model.clone()));
            let backward: Vec<Entry> =
                table.iter(bound(&lower), bound(&upper)).rev().map(|e| e.unwrap()).collect();
            prop_assert_eq!(backward, model.iter().rev().cloned().collect::<Vec<_>>());

            // Interleaved: `true` steps forward, `false` backward.
            let mut it = table.iter(bound(&lower), bound(&upper));
            for &front in &steps {
                let (got, want) = if front {
                    (it.next(), model.pop_front())
                } else {
                    (it.next_back(), model.pop_back())
                };
                prop_assert_eq!(got.map(|e| e.unwrap()), want);
            }
            // Whatever is left comes out once, then both ends are exhausted.
            let rest: Vec<Entry> = it.by_ref().map(|e| e.unwrap()).collect();
            prop_assert_eq!(rest, Vec::from(model));
            prop_assert!(it.next().is_none() && it.next_back().is_none());
        }
    }
}
