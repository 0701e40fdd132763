//! The user-facing iterator: visible `(key, value)` pairs at a snapshot.
//!
//! Forward and backward iteration use two independent merges, each created on first
//! use; the iterator ends when the two ends meet, so interleaving `next` and
//! `next_back` yields every key exactly once.

use std::ops::Bound;
use std::sync::Arc;

use bytes::Bytes;

use crate::error::Result;
use crate::key::{Entry, SeqNo, ValueKind};
use crate::version::{ReadView, TombstoneSet};

use crate::merge::MergingIter;

/// A lazy iterator over the visible keys of a range, in key order; also reversible.
///
/// Items are `Result`s: a damaged block ends the iteration with `Error::Corruption`.
pub struct DbIter {
    view: Arc<ReadView>,
    snapshot: SeqNo,
    lower: Bound<Bytes>,
    upper: Bound<Bytes>,
    tombstones: TombstoneSet,
    front: Option<MergingIter>,
    back: Option<MergingIter>,
    /// Forward: the key whose newest visible version was already decided.
    front_decided: Option<Bytes>,
    /// Backward: the newest visible version seen so far of the current key.
    back_pending: Option<Entry>,
    /// The last keys returned from each end; the ends must not cross.
    last_front: Option<Bytes>,
    last_back: Option<Bytes>,
    done: bool,
}

impl DbIter {
    /// Iterates `view` at `snapshot` over user keys within `(lower, upper)`.
    pub(crate) fn new(
        view: Arc<ReadView>,
        snapshot: SeqNo,
        lower: Bound<Bytes>,
        upper: Bound<Bytes>,
    ) -> DbIter {
        let done = range_is_empty(&lower, &upper);
        let tombstones = if done {
            TombstoneSet::default()
        } else {
            view.tombstone_indexes(as_ref(&lower), as_ref(&upper))
        };
        DbIter {
            view,
            snapshot,
            lower,
            upper,
            tombstones,
            front: None,
            back: None,
            front_decided: None,
            back_pending: None,
            last_front: None,
            last_back: None,
            done,
        }
    }

    fn merge(&self, reverse: bool) -> MergingIter {
        let sources = self.view.sources(as_ref(&self.lower), as_ref(&self.upper), reverse);
        MergingIter::new(sources, reverse)
    }

    fn visible(&self, entry: &Entry) -> bool {
        entry.kind == ValueKind::Put
            && self
                .tombstones
                .max_covering(&entry.key, self.snapshot)
                .is_none_or(|t| t < entry.seqno)
    }

    fn next_forward(&mut self) -> Result<Option<Entry>> {
        if self.front.is_none() {
            self.front = Some(self.merge(false));
        }
        while let Some(entry) = self.front.as_mut().and_then(Iterator::next) {
            let entry = entry?;
            if entry.seqno > self.snapshot || self.front_decided.as_ref() == Some(&entry.key) {
                continue;
            }
            self.front_decided = Some(entry.key.clone());
            if self.visible(&entry) {
                return Ok(Some(entry));
            }
        }
        Ok(None)
    }

    fn next_backward(&mut self) -> Result<Option<Entry>> {
        if self.back.is_none() {
            self.back = Some(self.merge(true));
        }
        loop {
            let Some(entry) = self.back.as_mut().and_then(Iterator::next) else {
                // The merge is exhausted: the pending key was the last one.
                return Ok(self.back_pending.take().filter(|p| self.visible(p)));
            };
            let entry = entry?;
            if entry.seqno > self.snapshot {
                continue;
            }
            // Versions of one key arrive oldest first, so a later one replaces the
            // pending one; a new key completes the pending one.
            let newer_key = entry.key.clone();
            if let Some(done) = self.back_pending.replace(entry)
                && done.key != newer_key
                && self.visible(&done)
            {
                return Ok(Some(done));
            }
        }
    }

    fn finish(&mut self, item: Result<Option<Entry>>) -> Option<Result<(Bytes, Bytes)>> {
        match item {
            Ok(Some(entry)) => Some(Ok((entry.key, entry.value))),
            Ok(None) => {
                self.done = true;
                None
            }
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }
}

impl Iterator for DbIter {
    type Item = Result<(Bytes, Bytes)>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let item = self.next_forward().map(|found| {
            found.filter(|e| self.last_back.as_ref().is_none_or(|back| e.key < *back))
        });
        if let Ok(Some(entry)) = &item {
            self.last_front = Some(entry.key.clone());
        }
        self.finish(item)
    }
}

impl DoubleEndedIterator for DbIter {
    fn next_back(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let item = self.next_backward().map(|found| {
            found.filter(|e| self.last_front.as_ref().is_none_or(|front| e.key > *front))
        });
        if let Ok(Some(entry)) = &item {
            self.last_back = Some(entry.key.clone());
        }
        self.finish(item)
    }
}

fn as_ref(bound: &Bound<Bytes>) -> Bound<&[u8]> {
    bound.as_ref().map(|b| b.as_ref())
}

/// True if no key can lie within `(lower, upper)`.
fn range_is_empty(lower: &Bound<Bytes>, upper: &Bound<Bytes>) -> bool {
    match (lower, upper) {
        (Bound::Included(l), Bound::Included(u)) => l > u,
        (Bound::Included(l), Bound::Excluded(u))
        | (Bound::Excluded(l), Bound::Included(u))
        | (Bound::Excluded(l), Bound::Excluded(u)) => l >= u,
        _ => false,
    }
}
