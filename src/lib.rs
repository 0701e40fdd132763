//! AeternusDB: an embeddable, persistent key-value store built on a log-structured
//! merge tree.
//!
//! ```
//! use aeternusdb::{Db, Options, WriteBatch};
//!
//! # fn main() -> aeternusdb::Result<()> {
//! let dir = tempfile::tempdir()?;
//! let db = Db::open(dir.path(), Options::default())?;
//!
//! db.put("user:1", "ada")?;
//! db.put("user:2", "grace")?;
//! let mut batch = WriteBatch::new();
//! batch.put("user:3", "edsger")?.delete("user:1")?;
//! db.write(batch)?; // atomic: all or nothing, even across a crash
//!
//! assert_eq!(db.get("user:2")?.as_deref(), Some(&b"grace"[..]));
//! let users: Vec<_> = db.prefix("user:")?.collect::<Result<_, _>>()?;
//! assert_eq!(users.len(), 2);
//! let newest_first = db.range("user:2"..)?.rev().next().transpose()?;
//! assert_eq!(newest_first.map(|(k, _)| k), Some("user:3".into()));
//!
//! let snapshot = db.snapshot()?;
//! db.delete_range("user:", "user;")?;
//! assert!(db.get("user:2")?.is_none());
//! assert!(snapshot.get("user:2")?.is_some()); // the snapshot still sees it
//! db.close()?;
//! # Ok(()) }
//! ```
//!
//! Layers, bottom up (every import points down): `key`, `coding`, `error`, `options`,
//! `fs` → `table_cache`, `batch`, `log_record`, `wal`, `manifest`, `memtable`, `sstable`
//! (with the block cache), `tombstones`, `merge` → `compaction` (strategies and the
//! merge job) → `version` (live sources, point lookups) → `iter` (the user iterator) →
//! `db` (handle, write path, read path, recovery, flush and compaction threads).
//! See `docs/architecture.md`.
#![deny(clippy::unwrap_used)]
#![warn(missing_docs)]

mod batch;
mod coding;
mod compaction;
mod db;
mod error;
mod file_names;
pub mod fs;
mod iter;
mod key;
mod log_record;
mod manifest;
mod memtable;
mod merge;
mod options;
mod sstable;
mod table_cache;
mod tombstones;
mod version;
mod wal;

pub use batch::WriteBatch;
pub use bytes::Bytes;
pub use db::{Db, LevelStats, Snapshot, Stats};
pub use error::{Error, Result};
pub use iter::DbIter as Iter;
pub use key::{MAX_KEY_SIZE, MAX_VALUE_SIZE};
pub use options::{
    CompactionStrategyOptions, Compression, LeveledOptions, Options, SizeTieredOptions,
    WalRecovery, WriteOptions,
};

/// The parts of the engine that `aeternus inspect` and `dump` and the integration tests
/// read without a [`Db`]: file names, the manifest, tables and WAL segments.
///
/// Not API: hidden from the documentation, with no stability promise.
#[doc(hidden)]
pub mod internals {
    pub use crate::batch::{BatchOp, decode_wal_record};
    pub use crate::error::Corruption;
    pub use crate::file_names::{FileKind, classify, parse_segment_file_name, segment_file_name};
    pub use crate::key::{Entry, ValueKind, compare_internal};
    pub use crate::manifest::{Manifest, ManifestState};
    pub use crate::sstable::Table;
    pub use crate::sstable::cache::BlockCache;
    pub use crate::sstable::properties::Properties;
    pub use crate::wal::{ReplayError, ReplayOutcome, replay_segment};
}

/// The README's example, compiled and run as a doctest.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
