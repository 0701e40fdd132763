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
//! `fs` → `table_cache`, `batch`, `log_record`, `wal`, `manifest`, `memtable`, `sstable`, `cache`,
//! `tombstones`, `merge` → `compaction` (strategies and the merge job) → `version`
//! (live sources, point lookups) → `iter` (the user iterator) → `db` (handle, write
//! path, read path, recovery, flush and compaction threads).
//! See `docs/architecture.md`.
#![deny(clippy::unwrap_used)]
#![warn(missing_docs)]

pub mod batch;
pub mod cache;
pub mod coding;
pub mod compaction;
pub mod db;
pub mod error;
pub mod file_names;
pub mod fs;
pub mod iter;
pub mod key;
pub mod log_record;
pub mod manifest;
pub mod memtable;
pub mod merge;
pub mod options;
pub mod sstable;
pub mod table_cache;
pub mod tombstones;
pub mod version;
pub mod wal;

pub use batch::WriteBatch;
pub use bytes::Bytes;
pub use db::{Db, LevelStats, Snapshot, Stats};
pub use error::{Error, Result};
pub use iter::DbIter as Iter;
pub use options::{
    CompactionStrategyOptions, Compression, LeveledOptions, Options, SizeTieredOptions,
    WalRecovery, WriteOptions,
};

/// The README's example, compiled and run as a doctest.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
