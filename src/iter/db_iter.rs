//! The user-facing iterator: visible `(key, value)` pairs at a snapshot.
//!
//! Forward and backward iteration use two independent merges, each created on first
//! use; the iterator ends when the two ends meet, so interleaving `next` (or its
//! borrowing form `next_ref`) and `next_back` yields every key exactly once.

use std::ops::Bound;
use std::sync::Arc;

use bytes::Bytes;

use crate::error::Result;
use crate::key::{Entry, EntryRef, SeqNo, ValueKind};
use crate::merge::{Merge, Source};
use crate::version::{ReadView, TombstoneSet};

/// A lazy iterator over the visible keys of a range, in key order; also reversible.
///
/// Items are `Result`s: a damaged block ends the iteration with `Error::Corruption`.
/// [`next_ref`](DbIter::next_ref) is the same forward step without copies.
pub struct DbIter {
    view: Arc<ReadView>,
    snapshot: SeqNo,
    lower: Bound<Bytes>,
    upper: Bound<Bytes>,
    tombstones: TombstoneSet,
    front: Option<Merge>,
    back: Option<Merge>,
    /// Forward: the key whose newest visible version was already decided. The back
    /// end stops above it: every visible key up to it was returned by the front
    /// (the front decides no key at or past `last_back`).
    ///
    /// The keys kept here are copies in reused buffers, not clones of the entries'
    /// `Bytes`: a clone of a freshly copied `Bytes` allocates its shared header
    /// (profiled: allocation was a fifth of `DbIter::next`).
    front_decided: Option<Vec<u8>>,
    /// Backward: the newest visible version seen so far of the current key.
    back_pending: Option<Entry>,
    /// The last key returned from the back; the front stops below it.
    last_back: Option<Vec<u8>>,
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
            last_back: None,
            done,
        }
    }

    /// The next visible `(key, value)`, borrowed from the iterator until it is moved
    /// again: no copy of the key and no reference count on the value, which `next`
    /// pays for each pair. A scan that only reads pairs is faster this way.
    ///
    /// Steps forward like `next`, and may be mixed with `next` and `next_back`.
    /// `Ok(None)` at the end; an error ends the iteration.
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// let db = aeternusdb::Db::open(dir.path(), aeternusdb::Options::default())?;
    /// db.put("a", "1")?;
    /// db.put("b", "2")?;
    /// let mut total = 0;
    /// let mut iter = db.range("a"..)?;
    /// while let Some((key, value)) = iter.next_ref()? {
    ///     total += key.len() + value.len();
    /// }
    /// assert_eq!(total, 4);
    /// # Ok::<(), aeternusdb::Error>(())
    /// ```
    pub fn next_ref(&mut self) -> Result<Option<(&[u8], &[u8])>> {
        if self.done || !self.forward()? {
            return Ok(None);
        }
        Ok(self.front.as_ref().map(|front| {
            let entry = front.current();
            (entry.key, entry.value)
        }))
    }

    fn merge(&self, reverse: bool) -> Merge {
        let sources = self.view.sources(as_ref(&self.lower), as_ref(&self.upper), reverse);
        Merge::new(sources, reverse)
    }

    /// [`step_forward`](Self::step_forward), ending the iteration where it finds
    /// nothing more or fails.
    fn forward(&mut self) -> Result<bool> {
        let stepped = self.step_forward();
        if !matches!(stepped, Ok(true)) {
            self.done = true;
        }
        stepped
    }

    /// Moves the front merge to the newest visible version of the next key; false
    /// at the end or where the back end already is.
    fn step_forward(&mut self) -> Result<bool> {
        if self.front.is_none() {
            self.front = Some(self.merge(false));
        }
        let Some(front) = self.front.as_mut() else { return Ok(false) };
        while front.advance()? {
            let entry = front.current();
            if entry.seqno > self.snapshot || self.front_decided.as_deref() == Some(entry.key) {
                continue;
            }
            // The back end returned `last_back` and every visible key after it.
            if self.last_back.as_deref().is_some_and(|back| entry.key >= back) {
                return Ok(false);
            }
            remember(&mut self.front_decided, entry.key);
            if visible(&self.tombstones, self.snapshot, entry) {
                return Ok(true);
            }
        }
        Ok(false)
    }

    fn next_backward(&mut self) -> Result<Option<Entry>> {
        if self.back.is_none() {
            self.back = Some(self.merge(true));
        }
        let Some(back) = self.back.as_mut() else { return Ok(None) };
        let visible = |e: &Entry| visible(&self.tombstones, self.snapshot, e.borrowed());
        loop {
            if !back.advance()? {
                // The merge is exhausted: the pending key was the last one.
                return Ok(self.back_pending.take().filter(visible));
            }
            let entry = back.current();
            if entry.seqno > self.snapshot {
                continue;
            }
            // Versions of one key arrive oldest first, so a later one replaces the
            // pending one; a new key completes the pending one.
            let completes =
                self.back_pending.as_ref().is_some_and(|p| p.key != entry.key && visible(p));
            let done = self.back_pending.replace(back.take_current());
            if completes {
                return Ok(done);
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

/// True if `entry` is a put that no range tombstone visible at `snapshot` hides.
fn visible(tombstones: &TombstoneSet, snapshot: SeqNo, entry: EntryRef<'_>) -> bool {
    entry.kind == ValueKind::Put
        && tombstones.max_covering(entry.key, snapshot).is_none_or(|t| t < entry.seqno)
}

impl Iterator for DbIter {
    type Item = Result<(Bytes, Bytes)>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        match self.forward() {
            Ok(true) => self.front.as_mut().map(|front| {
                let entry = front.take_current();
                Ok((entry.key, entry.value))
            }),
            Ok(false) => None,
            Err(e) => Some(Err(e)),
        }
    }
}

impl DoubleEndedIterator for DbIter {
    fn next_back(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let item = self.next_backward().map(|found| {
            found.filter(|e| self.front_decided.as_deref().is_none_or(|front| e.key[..] > *front))
        });
        if let Ok(Some(entry)) = &item {
            remember(&mut self.last_back, &entry.key);
        }
        self.finish(item)
    }
}

/// Makes `slot` hold a copy of `key`, reusing its buffer.
fn remember(slot: &mut Option<Vec<u8>>, key: &[u8]) {
    let buf = slot.get_or_insert_with(Vec::new);
    buf.clear();
    buf.extend_from_slice(key);
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
