//! The scan iterator: two levels, the in-memory index, then one data block at a time.
//!
//! # Contract
//! - Forward ([`Iterator::next`]) yields every stored version whose user key is within
//!   the bounds, in internal order (user key ASC, seqno DESC); backward
//!   ([`DoubleEndedIterator::next_back`]) yields them in exactly the reverse order.
//! - `next` and `next_back` may be interleaved: each entry is yielded once, and both
//!   return `None` once they meet.
//! - After an error, both return `None`.
//! - Range tombstones are not applied (see [`Table::range_tombstones`]).
//!
//! # How
//! The front end holds a [`BlockIter`] over one block; the back end decodes one whole
//! block into a `Vec` and pops from its end. Each yielded entry has a position
//! `(block index, offset in block)`; positions strictly increase in internal order, so
//! the two ends meet when the front's next position reaches the back's last one.

use std::ops::Bound;
use std::sync::Arc;

use bytes::Bytes;

use crate::error::Result;
use crate::key::{Entry, MAX_SEQNO};

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
}

impl Table {
    /// Scans the versions of user keys within `lower..upper`.
    pub fn iter(self: &Arc<Self>, lower: Bound<Bytes>, upper: Bound<Bytes>) -> TableIter {
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
        }
    }
}

impl TableIter {
    fn above_lower(&self, key: &[u8]) -> bool {
        match &self.lower {
            Bound::Included(l) => key >= &l[..],
            Bound::Excluded(l) => key > &l[..],
            Bound::Unbounded => true,
        }
    }

    fn below_upper(&self, key: &[u8]) -> bool {
        match &self.upper {
            Bound::Included(u) => key <= &u[..],
            Bound::Excluded(u) => key < &u[..],
            Bound::Unbounded => true,
        }
    }

    fn fail<T>(&mut self, e: crate::Error) -> Option<Result<T>> {
        self.done = true;
        Some(Err(e))
    }

    /// Opens the front's next block; false when there is none.
    fn open_front_block(&mut self) -> Result<bool> {
        let table = Arc::clone(&self.table);
        let lower = match &self.lower {
            Bound::Included(l) | Bound::Excluded(l) => Some(l.clone()),
            Bound::Unbounded => None,
        };
        if self.front_started {
            self.front_block += 1;
        } else {
            self.front_started = true;
            self.front_block = lower.as_ref().map_or(0, |l| table.seek_index(l, MAX_SEQNO));
        }
        if self.front_block >= table.index.len()
            || self.back_pos.is_some_and(|(b, _)| self.front_block > b)
        {
            return Ok(false);
        }
        let mut it = table.data_block(self.front_block)?.iter();
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
                Bound::Included(u) => table.seek_index(u, 0),
                Bound::Excluded(u) => table.seek_index(u, MAX_SEQNO),
                Bound::Unbounded => table.index.len(),
            };
            self.back_block = first_after.min(table.index.len() - 1);
        }
        if self.front_pos.is_some_and(|(b, _)| self.back_block < b) {
            return Ok(false);
        }
        let mut it = table.data_block(self.back_block)?.iter();
        let mut entries = Vec::new();
        while let Some(entry) = it.next() {
            let entry = entry.map_err(|c| c.in_file(&table.path))?;
            entries.push((it.current_offset(), entry));
        }
        self.back = Some(entries);
        Ok(true)
    }
}

impl Iterator for TableIter {
    type Item = Result<Entry>;

    fn next(&mut self) -> Option<Self::Item> {
        while !self.done {
            let Some(it) = &mut self.front else {
                match self.open_front_block() {
                    Ok(true) => continue,
                    Ok(false) => break,
                    Err(e) => return self.fail(e),
                }
            };
            let entry = match it.next() {
                None => {
                    self.front = None;
                    continue;
                }
                Some(Err(c)) => {
                    let e = c.in_file(&self.table.path);
                    return self.fail(e);
                }
                Some(Ok(entry)) => entry,
            };
            let pos = (self.front_block, it.current_offset());
            if self.back_pos.is_some_and(|back| pos >= back) || !self.below_upper(&entry.key) {
                break;
            }
            if !self.above_lower(&entry.key) {
                continue;
            }
            self.front_pos = Some(pos);
            return Some(Ok(entry));
        }
        self.done = true;
        None
    }
}

impl DoubleEndedIterator for TableIter {
    fn next_back(&mut self) -> Option<Self::Item> {
        while !self.done {
            let Some(entries) = &mut self.back else {
                match self.open_back_block() {
                    Ok(true) => continue,
                    Ok(false) => break,
                    Err(e) => return self.fail(e),
                }
            };
            let Some((offset, entry)) = entries.pop() else {
                self.back = None;
                continue;
            };
            let pos = (self.back_block, offset);
            if self.front_pos.is_some_and(|front| pos <= front) || !self.above_lower(&entry.key) {
                break;
            }
            if !self.below_upper(&entry.key) {
                continue;
            }
            self.back_pos = Some(pos);
            return Some(Ok(entry));
        }
        self.done = true;
        None
    }
}
