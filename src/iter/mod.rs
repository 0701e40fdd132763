//! The user-facing iterator over the whole tree.
//!
//! [`DbIter`] turns merged streams of stored versions (see [`crate::merge`]) into
//! user-visible `(key, value)` pairs at a snapshot: it skips versions newer than the
//! snapshot, keeps only the newest remaining version of each key, and drops point and
//! range tombstones. It is lazy: the merges under it hold one pending entry per source,
//! never the whole range.

mod db_iter;

pub use db_iter::DbIter;
