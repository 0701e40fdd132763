//! K-way merge of sorted entry sources, used by scans and compactions.
//!
//! # The source contract
//! A [`Source`] is a cursor over **every stored version** in internal order
//! `(key ASC, seqno DESC)` — or, for a reverse source, in exactly the reverse order.
//! [`Source::advance`] steps to the next entry and says whether there is one; the
//! current entry is then read in place ([`Source::current`]), borrowed, or taken out
//! ([`Source::take_current`]) just before the next `advance`. After an error a source
//! has no more entries.
//!
//! Borrowing is the point: a scan compares and filters entries where they lie (in a
//! decoded block; memtable chunks hold owned entries already) and only the ones handed
//! to the user cost a key copy and a value reference count. A profile of seek + 100 `next` put those two
//! at about a seventh of the scan when every entry paid them.
//!
//! # Invariants
//! - The heap holds the index of every source not yet exhausted, ordered so that its
//!   first element is the source with the next entry to return (whose entry may have
//!   been taken: the next `advance` moves that source first).
//! - Output order is internal order (or its reverse); ties between sources, which only
//!   a damaged database could produce, go to the lower source index.

use std::cmp::Ordering;

use crate::error::Result;
use crate::key::{Entry, EntryRef};

/// A cursor over entries in internal (or reverse internal) order; see the module docs.
pub trait Source: Send {
    /// Steps to the next entry: `true` if there is one, `false` at the end.
    fn advance(&mut self) -> Result<bool>;

    /// The current entry. Only valid after `advance` returned `true`, and until the
    /// next call of `advance` or `take_current`; otherwise unspecified (may panic).
    fn current(&self) -> EntryRef<'_>;

    /// The current entry, owned; the source needs an `advance` before it has another.
    /// Same precondition as `current`.
    fn take_current(&mut self) -> Entry;
}

/// A boxed source of entries in internal (or reverse internal) order.
pub type BoxedSource = Box<dyn Source>;

/// What a source that is read without a current entry says as it panics.
pub(crate) const READ_AFTER_ADVANCE: &str = "a source is read only after it advanced";

/// A [`Source`] over an iterator of owned entries (a memtable chunk, a reversed
/// table scan): the current entry is the one it yielded last.
pub struct OwnedSource<I> {
    iter: I,
    current: Option<Entry>,
}

impl<I: Iterator<Item = Result<Entry>> + Send> OwnedSource<I> {
    /// Reads `iter`, which yields internal order or its reverse.
    pub fn new(iter: I) -> OwnedSource<I> {
        OwnedSource { iter, current: None }
    }
}

impl<I: Iterator<Item = Result<Entry>> + Send> Source for OwnedSource<I> {
    fn advance(&mut self) -> Result<bool> {
        // No stale entry after an error; the iterator itself yields nothing after one.
        self.current = None;
        self.current = self.iter.next().transpose()?;
        Ok(self.current.is_some())
    }

    fn current(&self) -> EntryRef<'_> {
        self.current.as_ref().expect(READ_AFTER_ADVANCE).borrowed()
    }

    fn take_current(&mut self) -> Entry {
        self.current.take().expect(READ_AFTER_ADVANCE)
    }
}

/// The entries of a [`Source`] as an iterator; after an error it yields nothing more.
pub struct Entries<S> {
    source: S,
    failed: bool,
}

impl<S: Source> Entries<S> {
    /// Yields each entry of `source`, owned.
    pub fn new(source: S) -> Entries<S> {
        Entries { source, failed: false }
    }
}

impl<S: Source> Iterator for Entries<S> {
    type Item = Result<Entry>;

    fn next(&mut self) -> Option<Result<Entry>> {
        if self.failed {
            return None;
        }
        match self.source.advance() {
            Ok(true) => Some(Ok(self.source.take_current())),
            Ok(false) => None,
            Err(e) => {
                self.failed = true;
                Some(Err(e))
            }
        }
    }
}

/// Merges sources that are all forward, or all reverse. Itself a [`Source`].
pub struct Merge {
    sources: Vec<BoxedSource>,
    /// Indexes into `sources`, a binary heap whose first element is the next entry.
    heap: Vec<usize>,
    reverse: bool,
    started: bool,
}

impl Merge {
    /// Merges `sources`; `reverse` says they all yield reverse internal order.
    pub fn new(sources: Vec<BoxedSource>, reverse: bool) -> Merge {
        Merge { heap: Vec::with_capacity(sources.len()), sources, reverse, started: false }
    }

    /// True if source `a`'s current entry comes out before source `b`'s.
    fn before(&self, a: usize, b: usize) -> bool {
        let (x, y) = (self.sources[a].current(), self.sources[b].current());
        let by_key = x.cmp_internal(&y);
        let by_key = if self.reverse { by_key.reverse() } else { by_key };
        by_key.then_with(|| a.cmp(&b)) == Ordering::Less
    }

    fn sift_down(&mut self, mut at: usize) {
        loop {
            let left = 2 * at + 1;
            if left >= self.heap.len() {
                return;
            }
            let right = left + 1;
            let child = if right < self.heap.len() && self.before(self.heap[right], self.heap[left])
            {
                right
            } else {
                left
            };
            if !self.before(self.heap[child], self.heap[at]) {
                return;
            }
            self.heap.swap(at, child);
            at = child;
        }
    }

    fn start(&mut self) -> Result<()> {
        self.started = true;
        for source in 0..self.sources.len() {
            if self.sources[source].advance()? {
                self.heap.push(source);
            }
        }
        for at in (0..self.heap.len() / 2).rev() {
            self.sift_down(at);
        }
        Ok(())
    }

    fn top(&self) -> usize {
        *self.heap.first().expect(READ_AFTER_ADVANCE)
    }

    fn step(&mut self) -> Result<()> {
        if !self.started {
            return self.start();
        }
        let Some(&top) = self.heap.first() else { return Ok(()) };
        // The top's source supplies the next entry in its place: one sift down.
        if !self.sources[top].advance()? {
            self.heap.swap_remove(0);
        }
        self.sift_down(0);
        Ok(())
    }
}

impl Source for Merge {
    fn advance(&mut self) -> Result<bool> {
        match self.step() {
            Ok(()) => Ok(!self.heap.is_empty()),
            Err(e) => {
                // Nothing more after an error, though other sources have entries.
                self.heap.clear();
                Err(e)
            }
        }
    }

    fn current(&self) -> EntryRef<'_> {
        self.sources[self.top()].current()
    }

    fn take_current(&mut self) -> Entry {
        let top = self.top();
        self.sources[top].take_current()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key::ValueKind;
    use bytes::Bytes;
    use proptest::prelude::*;

    fn source(mut entries: Vec<Entry>, reverse: bool) -> BoxedSource {
        entries.sort_by(|a, b| a.cmp_internal(b));
        if reverse {
            entries.reverse();
        }
        Box::new(OwnedSource::new(entries.into_iter().map(Ok)))
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
            let merge = Merge::new(runs.into_iter().map(|r| source(r, reverse)).collect(), reverse);
            let merged: Vec<Entry> = Entries::new(merge).map(|e| e.unwrap()).collect();
            prop_assert_eq!(merged, expected);
        }
    }

    #[test]
    fn borrowed_and_taken_entries_agree() {
        let entry = |k: &str, seqno| Entry {
            key: Bytes::copy_from_slice(k.as_bytes()),
            seqno,
            kind: ValueKind::Put,
            value: Bytes::from(format!("{k}{seqno}")),
        };
        let mut merge = Merge::new(
            vec![
                source(vec![entry("a", 1), entry("c", 3)], false),
                source(vec![entry("b", 2)], false),
            ],
            false,
        );
        let mut seen = Vec::new();
        while merge.advance().unwrap() {
            let current = merge.current();
            let borrowed = (current.key.to_vec(), current.seqno, current.value.to_vec());
            let taken = merge.take_current();
            assert_eq!((taken.key.to_vec(), taken.seqno, taken.value.to_vec()), borrowed);
            seen.push(taken.seqno);
        }
        assert_eq!(seen, [1, 2, 3]);
        assert!(!merge.advance().unwrap());
    }

    #[test]
    fn an_error_ends_the_merge() {
        let failing: BoxedSource =
            Box::new(OwnedSource::new(std::iter::once(Err(crate::Error::Closed))));
        let sound = source(
            vec![Entry {
                key: Bytes::from("a"),
                seqno: 1,
                kind: ValueKind::Put,
                value: Bytes::new(),
            }],
            false,
        );
        let mut merge = Entries::new(Merge::new(vec![sound, failing], false));
        assert!(matches!(merge.next(), Some(Err(_))));
        assert!(merge.next().is_none());
    }
}
