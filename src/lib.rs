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

/// The parts of the engine that `aeternus inspect` and `dump`, the integration tests and
/// the fuzz targets (`fuzz/`, see `docs/fuzzing.md`) reach without a [`Db`]: file names,
/// the manifest, tables and their blocks, WAL segments and their records.
///
/// Not API: hidden from the documentation, with no stability promise.
#[doc(hidden)]
pub mod internals {
    pub use crate::batch::{BatchOp, decode_wal_record};
    pub use crate::error::Corruption;
    pub use crate::file_names::{
        CURRENT, FileKind, classify, manifest_file_name, parse_segment_file_name,
        segment_file_name, table_file_name,
    };
    pub use crate::key::{Entry, MAX_SEQNO, SeqNo, ValueKind, compare_internal};
    pub use crate::manifest::{Manifest, ManifestState, TableMeta, VersionEdit};
    pub use crate::sstable::Table;
    pub use crate::sstable::block::{Block, BlockBuilder, BlockGet, BlockIter};
    pub use crate::sstable::cache::BlockCache;
    pub use crate::sstable::filter::{BloomFilter, FilterBuilder};
    pub use crate::sstable::footer::{BLOCK_HANDLE_SIZE, BlockHandle, FOOTER_SIZE, Footer};
    pub use crate::sstable::framing::{decode_block, encode_block};
    pub use crate::sstable::properties::Properties;
    pub use crate::sstable::{TableBuilder, TableOptions};
    pub use crate::wal::{ReplayError, ReplayOutcome, WalWriter, replay_segment};

    /// The WAL record payload of one commit group holding `batches`, its first operation
    /// at `base_seqno`: what the write path appends and [`decode_wal_record`] reads.
    pub fn encode_wal_record(batches: &[crate::WriteBatch], base_seqno: SeqNo) -> Vec<u8> {
        let mut group = crate::batch::GroupBuilder::new();
        for batch in batches {
            group.append(std::borrow::Cow::Borrowed(batch));
        }
        group.finish(base_seqno)
    }

    /// Decodes `block` as the index block (at file offset `at`) of a table whose data
    /// blocks end at `data_end`, as [`Table::open`] does, then seeks `(key, seqno)` and
    /// reads the handle found. Returns the number of data blocks.
    pub fn decode_index_block(
        block: &Block,
        at: u64,
        data_end: u64,
        key: &[u8],
        seqno: SeqNo,
    ) -> Result<usize, Corruption> {
        let index = crate::sstable::index::BlockIndex::decode(block, at, data_end)?;
        let found = index.seek(key, seqno);
        let handle = index.handle(found);
        debug_assert!(found < index.len() || handle == BlockHandle::default());
        Ok(index.len())
    }
}

/// The README's example, compiled and run as a doctest.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
