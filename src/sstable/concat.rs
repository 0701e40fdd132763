//! A scan over a sorted run: tables in key order whose keys do not overlap, as every
//! level below 0 is.
//!
//! It opens one table at a time, as LevelDB's level iterator and Pebble's `levelIter`
//! do. A scan that starts inside a level of a hundred tables thus reads a block of one
//! of them, not a block of every table at or after its start, and the merge above it
//! sees one source per level instead of one per table.
//!
//! # Invariants
//! 1. The tables are in key order and no user key has versions in two of them
//!    (compaction cuts its outputs between user keys), so concatenating their scans
//!    yields internal order, or its exact reverse.
//! 2. After an error it has no more entries (the merge's source contract).

use std::collections::VecDeque;
use std::ops::Bound;
use std::sync::Arc;

use bytes::Bytes;

use super::Table;
use super::iter::TableIter;
use crate::error::Result;
use crate::key::{Entry, EntryRef};
use crate::merge::{READ_AFTER_ADVANCE, Source};

/// Scans `lower..upper` of a sorted run, forward or in reverse.
pub struct ConcatIter {
    /// The tables not yet opened, in key order.
    tables: VecDeque<Arc<Table>>,
    lower: Bound<Bytes>,
    upper: Bound<Bytes>,
    reverse: bool,
    /// The table being read: its front is the current entry when forward.
    current: Option<TableIter>,
    /// In reverse, the entry the current table's back end yielded last.
    back: Option<Entry>,
    done: bool,
}

impl ConcatIter {
    /// Scans `tables` (in key order, invariant 1) within `lower..upper`.
    pub fn new(
        tables: impl IntoIterator<Item = Arc<Table>>,
        lower: Bound<Bytes>,
        upper: Bound<Bytes>,
        reverse: bool,
    ) -> ConcatIter {
        let tables = tables.into_iter().collect();
        ConcatIter { tables, lower, upper, reverse, current: None, back: None, done: false }
    }
}

impl Source for ConcatIter {
    fn advance(&mut self) -> Result<bool> {
        while !self.done {
            if let Some(scan) = &mut self.current {
                let stepped = if self.reverse {
                    scan.next_back().transpose().map(|entry| {
                        self.back = entry;
                        self.back.is_some()
                    })
                } else {
                    scan.advance()
                };
                match stepped {
                    Ok(true) => return Ok(true),
                    Ok(false) => self.current = None,
                    Err(e) => {
                        self.done = true;
                        return Err(e);
                    }
                }
            }
            let next = if self.reverse { self.tables.pop_back() } else { self.tables.pop_front() };
            match next {
                Some(table) => {
                    self.current = Some(table.iter(self.lower.clone(), self.upper.clone()))
                }
                None => self.done = true,
            }
        }
        Ok(false)
    }

    fn current(&self) -> EntryRef<'_> {
        if self.reverse {
            self.back.as_ref().expect(READ_AFTER_ADVANCE).borrowed()
        } else {
            self.current.as_ref().expect(READ_AFTER_ADVANCE).current()
        }
    }

    fn take_current(&mut self) -> Entry {
        if self.reverse {
            self.back.take().expect(READ_AFTER_ADVANCE)
        } else {
            self.current.as_mut().expect(READ_AFTER_ADVANCE).take_current()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::merge::Entries;
    use crate::sstable::TableOptions;
    use crate::sstable::tests::{open, put, write_table};

    fn key(i: u32) -> String {
        format!("k{i:04}")
    }

    /// Three tables of 100 keys each, in key order.
    fn run(dir: &std::path::Path) -> Vec<Arc<Table>> {
        (0..3)
            .map(|t| {
                let path = dir.join(format!("{t}.sst"));
                let entries: Vec<Entry> =
                    (t * 100..t * 100 + 100).map(|i| put(&key(i), 1, "v")).collect();
                let options = TableOptions { block_size: 256, ..TableOptions::default() };
                write_table(&path, &entries, &[], options);
                open(&path).unwrap()
            })
            .collect()
    }

    fn keys(iter: ConcatIter) -> Vec<String> {
        Entries::new(iter).map(|e| String::from_utf8(e.unwrap().key.to_vec()).unwrap()).collect()
    }

    #[test]
    fn concatenates_the_tables_within_the_bounds_both_ways() {
        let dir = tempfile::tempdir().unwrap();
        let tables = run(dir.path());
        let bound = |i: u32| Bytes::from(key(i));
        for reverse in [false, true] {
            let all = ConcatIter::new(tables.clone(), Bound::Unbounded, Bound::Unbounded, reverse);
            let mut want: Vec<String> = (0..300).map(key).collect();
            if reverse {
                want.reverse();
            }
            assert_eq!(keys(all), want);
            let (lower, upper) = (Bound::Excluded(bound(150)), Bound::Included(bound(260)));
            let mut want: Vec<String> = (151..=260).map(key).collect();
            if reverse {
                want.reverse();
            }
            assert_eq!(keys(ConcatIter::new(tables.clone(), lower, upper, reverse)), want);
        }
    }

    #[test]
    fn an_error_ends_the_scan_though_later_tables_are_sound() {
        let dir = tempfile::tempdir().unwrap();
        let tables = run(dir.path());
        // Damage the first data block of the first table, after it was opened.
        let path = dir.path().join("0.sst");
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[10] ^= 0xff;
        std::fs::write(&path, bytes).unwrap();
        let mut iter =
            Entries::new(ConcatIter::new(tables, Bound::Unbounded, Bound::Unbounded, false));
        assert!(iter.next().unwrap().is_err());
        assert!(iter.next().is_none());
    }
}
