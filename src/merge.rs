//! K-way merge of sorted entry sources with a binary heap, used by scans and
//! compactions.
//!
//! # The source contract
//! Every source (a memtable cursor, an SSTable iterator) is an
//! `Iterator<Item = Result<Entry>>` yielding **every stored version** in internal
//! order `(key ASC, seqno DESC)` — or, for a reverse source, in exactly the reverse
//! order. After yielding an error a source yields nothing more.
//!
//! # Invariants
//! - The heap holds at most one entry per source: the smallest (largest, in reverse)
//!   not yet returned.
//! - Output order is internal order (or its reverse); ties between sources, which only
//!   a damaged database could produce, go to the lower source index.

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::collections::binary_heap::PeekMut;

use crate::error::Result;
use crate::key::Entry;

/// A boxed source of entries in internal (or reverse internal) order.
pub type EntrySource = Box<dyn Iterator<Item = Result<Entry>> + Send>;

struct HeapItem {
    entry: Entry,
    source: usize,
    reverse: bool,
}

impl HeapItem {
    /// Ordering such that the heap's maximum is the next entry to return.
    fn priority(&self, other: &HeapItem) -> Ordering {
        let by_key = self.entry.cmp_internal(&other.entry);
        let by_key = if self.reverse { by_key } else { by_key.reverse() };
        by_key.then_with(|| other.source.cmp(&self.source))
    }
}

impl PartialEq for HeapItem {
    fn eq(&self, other: &Self) -> bool {
        self.priority(other) == Ordering::Equal
    }
}
impl Eq for HeapItem {}
impl PartialOrd for HeapItem {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for HeapItem {
    fn cmp(&self, other: &Self) -> Ordering {
        self.priority(other)
    }
}

/// Merges sources that are all forward, or all reverse.
pub struct MergingIter {
    sources: Vec<EntrySource>,
    heap: BinaryHeap<HeapItem>,
    reverse: bool,
    started: bool,
    failed: bool,
}

impl MergingIter {
    /// Merges `sources`; `reverse` says they all yield reverse internal order.
    pub fn new(sources: Vec<EntrySource>, reverse: bool) -> MergingIter {
        MergingIter {
            heap: BinaryHeap::with_capacity(sources.len()),
            sources,
            reverse,
            started: false,
            failed: false,
        }
    }

    /// Pulls the next entry of `source` into the heap.
    fn advance(&mut self, source: usize) -> Result<()> {
        if let Some(next) = self.sources[source].next() {
            self.heap.push(HeapItem { entry: next?, source, reverse: self.reverse });
        }
        Ok(())
    }
}

impl Iterator for MergingIter {
    type Item = Result<Entry>;

    fn next(&mut self) -> Option<Result<Entry>> {
        if self.failed {
            return None;
        }
        let step = (|| {
            if !self.started {
                self.started = true;
                for source in 0..self.sources.len() {
                    self.advance(source)?;
                }
            }
            // The top's source supplies the next entry in its place: one sift down,
            // where a pop and a push would sift twice and move the entry more.
            let Some(mut top) = self.heap.peek_mut() else { return Ok(None) };
            match self.sources[top.source].next() {
                Some(next) => Ok(Some(std::mem::replace(&mut top.entry, next?))),
                None => Ok(Some(PeekMut::pop(top).entry)),
            }
        })();
        match step {
            Ok(entry) => entry.map(Ok),
            Err(e) => {
                self.failed = true;
                Some(Err(e))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key::ValueKind;
    use bytes::Bytes;
    use proptest::prelude::*;

    fn source(mut entries: Vec<Entry>, reverse: bool) -> EntrySource {
        entries.sort_by(|a, b| a.cmp_internal(b));
        if reverse {
            entries.reverse();
        }
        Box::new(entries.into_iter().map(Ok))
    }

    proptest! {
        #[test]
        fn merge_equals_sorting_everything(
            runs in proptest::collection::vec(proptest::collection::vec((0u8..30, 0u64..1000), 0..20), 0..6),
            reverse in any::<bool>(),
        ) {
            // Unique seqnos per key keep the expected order total.
            let mut seqno = 0;
            let runs: Vec<Vec<Entry>> = runs.into_iter().map(|run| run.into_iter().map(|(k, _)| {
                seqno += 1;
                Entry { key: Bytes::from(vec![k]), seqno, kind: ValueKind::Put, value: Bytes::new() }
            }).collect()).collect();
            let mut expected: Vec<Entry> = runs.iter().flatten().cloned().collect();
            expected.sort_by(|a, b| a.cmp_internal(b));
            if reverse {
                expected.reverse();
            }
            let merged: Vec<Entry> = MergingIter::new(
                runs.into_iter().map(|r| source(r, reverse)).collect(),
                reverse,
            ).map(|e| e.unwrap()).collect();
            prop_assert_eq!(merged, expected);
        }
    }

    #[test]
    fn an_error_ends_the_merge() {
        let failing: EntrySource = Box::new(std::iter::once(Err(crate::Error::Closed)));
        let mut merge = MergingIter::new(vec![source(vec![], false), failing], false);
        assert!(matches!(merge.next(), Some(Err(_))));
        assert!(merge.next().is_none());
    }
}
