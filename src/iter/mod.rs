//! Iteration over the whole tree.
//!
//! # The iterator contract
//! Every source (a memtable cursor, an SSTable iterator) is an
//! `Iterator<Item = Result<Entry>>` yielding **every stored version** in internal
//! order `(key ASC, seqno DESC)` — or, for a reverse source, in exactly the reverse
//! order. After yielding an error a source yields nothing more.
//!
//! [`MergingIter`] merges sources of one direction into one stream of the same
//! order; [`DbIter`] turns that stream into user-visible `(key, value)` pairs at a
//! snapshot: it skips versions newer than the snapshot, keeps only the newest
//! remaining version of each key, and drops point and range tombstones.
//! Both are lazy: they hold one pending entry per source, never the whole range.

mod db_iter;
mod merge;

pub use db_iter::DbIter;
pub use merge::{EntrySource, MergingIter};
