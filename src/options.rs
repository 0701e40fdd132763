//! Settings for opening a database and for single writes, with validation.
//!
//! Invalid values are rejected by [`Options::validate`], which [`Db::open`](crate::Db::open)
//! calls, so a mistake surfaces as `Error::InvalidArgument` before any file is touched.

use std::fmt;
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::fs::{FileSystem, OsFs};

/// Block compression. The discriminants are part of the SSTable format: never change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[repr(u8)]
pub enum Compression {
    /// Blocks are stored as they are.
    None = 0,
    /// LZ4 (pure Rust, fast): the default.
    #[default]
    Lz4 = 1,
    /// zstd at level 3: smaller, slower. Needs the `zstd` cargo feature (on by default).
    Zstd = 2,
}

impl Compression {
    /// Decodes an on-disk tag.
    pub fn from_tag(tag: u8) -> Option<Compression> {
        match tag {
            0 => Some(Compression::None),
            1 => Some(Compression::Lz4),
            2 => Some(Compression::Zstd),
            _ => None,
        }
    }
}

/// What WAL recovery does with a damaged record that is not at the very tail.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WalRecovery {
    /// Report `Error::Corruption`: skipping it could drop acknowledged writes.
    #[default]
    Strict,
    /// Salvage: stop replaying the damaged segment at the damage, keep everything
    /// before it, and go on with the next segment. Writes after the damage in that
    /// segment are lost; use only to rescue a database that `Strict` refuses to open.
    SkipDamagedTail,
}

/// How a database is opened and tuned.
#[derive(Clone)]
pub struct Options {
    /// Create the directory and a new database if none is there (default `true`).
    pub create_if_missing: bool,
    /// Fail if a database already exists (default `false`).
    pub error_if_exists: bool,
    /// Memory the active memtable takes before it is frozen and flushed (default
    /// 64 MiB; at least 4 KiB). Each entry counts its key and value and about 160
    /// bytes of bookkeeping, so this bounds what the memtable really holds.
    pub write_buffer_size: usize,
    /// Frozen memtables that may wait for flush before writers are made to wait
    /// (default 4). Writers are slowed a little from one below this count.
    pub max_frozen_memtables: usize,
    /// Default durability of writes: `true` (the default) returns only after the WAL
    /// record is on disk; `false` hands it to the OS, surviving a process crash but
    /// not a power loss. Overridden per write by [`WriteOptions`].
    pub sync_writes: bool,
    /// Target size of an SSTable data block before compression (default 4 KiB).
    pub block_size: usize,
    /// Bytes of decompressed blocks kept in memory (default 64 MiB; 0 disables it).
    /// The cache also borrows the part of `write_buffer_size` that the memtables do
    /// not hold, and gives it back as they fill: memtables and cache together stay
    /// within `write_buffer_size + block_cache_size` until the memtables alone take
    /// more, and then the cache keeps this much.
    pub block_cache_size: usize,
    /// Block compression of new SSTables (default LZ4).
    pub compression: Compression,
    /// Bloom filter bits per key (default 10, about 1% false positives; 0 disables).
    pub bloom_bits_per_key: u32,
    /// What to do with WAL damage before the tail (default strict).
    pub wal_recovery: WalRecovery,
    /// The manifest is rewritten as one snapshot once its log exceeds this many bytes
    /// (default 4 MiB).
    pub max_manifest_size: u64,
    /// The compaction strategy and its thresholds (default: leveled).
    pub compaction: CompactionStrategyOptions,
    /// Background compaction threads (default 1, at most 16). Flushes have their own
    /// thread.
    pub compaction_threads: usize,
    /// Compact in the background when the strategy finds work (default `true`).
    /// With `false`, only `compact()` and `compact_range()` compact.
    pub auto_compaction: bool,
    /// Table files kept open at once (default 512, at least 16); the others are closed
    /// and reopened on demand (one `open` per miss). The database holds a few more
    /// descriptors besides: `LOCK`, the WAL segment, the manifest, and a table being
    /// written by each flush or compaction. Keep it below the process's descriptor limit
    /// (`ulimit -n`): if opening any file runs out of descriptors anyway, the database
    /// closes cached table files, retries, and keeps fewer open until reopened.
    pub max_open_files: usize,
    /// Where files live; [`OsFs`] unless a test injects faults.
    pub fs: Arc<dyn FileSystem>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            create_if_missing: true,
            error_if_exists: false,
            write_buffer_size: 64 << 20,
            max_frozen_memtables: 4,
            sync_writes: true,
            block_size: 4096,
            block_cache_size: 64 << 20,
            compression: Compression::Lz4,
            bloom_bits_per_key: 10,
            wal_recovery: WalRecovery::Strict,
            max_manifest_size: 4 << 20,
            compaction: CompactionStrategyOptions::default(),
            compaction_threads: 1,
            auto_compaction: true,
            max_open_files: 512,
            fs: Arc::new(OsFs),
        }
    }
}

impl fmt::Debug for Options {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Options")
            .field("create_if_missing", &self.create_if_missing)
            .field("error_if_exists", &self.error_if_exists)
            .field("write_buffer_size", &self.write_buffer_size)
            .field("max_frozen_memtables", &self.max_frozen_memtables)
            .field("sync_writes", &self.sync_writes)
            .field("block_size", &self.block_size)
            .field("block_cache_size", &self.block_cache_size)
            .field("compression", &self.compression)
            .field("bloom_bits_per_key", &self.bloom_bits_per_key)
            .field("wal_recovery", &self.wal_recovery)
            .field("max_manifest_size", &self.max_manifest_size)
            .field("compaction", &self.compaction)
            .field("compaction_threads", &self.compaction_threads)
            .field("auto_compaction", &self.auto_compaction)
            .field("max_open_files", &self.max_open_files)
            .field("fs", &self.fs)
            .finish()
    }
}

impl Options {
    /// Checks every setting; `Error::InvalidArgument` names the first bad one.
    pub fn validate(&self) -> Result<()> {
        fn check(ok: bool, what: &str) -> Result<()> {
            if ok { Ok(()) } else { Err(Error::invalid(what.to_string())) }
        }
        check(
            (4 << 10..=4 << 30).contains(&self.write_buffer_size),
            "write_buffer_size must be between 4 KiB and 4 GiB",
        )?;
        check(
            (1..=64).contains(&self.max_frozen_memtables),
            "max_frozen_memtables must be between 1 and 64",
        )?;
        check(
            (256..=4 << 20).contains(&self.block_size),
            "block_size must be between 256 B and 4 MiB",
        )?;
        check(self.bloom_bits_per_key <= 64, "bloom_bits_per_key must be at most 64")?;
        check(self.max_manifest_size >= 4096, "max_manifest_size must be at least 4 KiB")?;
        check(
            (1..=16).contains(&self.compaction_threads),
            "compaction_threads must be between 1 and 16",
        )?;
        check(self.max_open_files >= 16, "max_open_files must be at least 16")?;
        self.compaction
            .validate()
            .map_err(|why| Error::invalid(format!("compaction options: {why}")))?;
        check(
            self.compression != Compression::Zstd || cfg!(feature = "zstd"),
            "zstd compression needs the `zstd` cargo feature",
        )?;
        Ok(())
    }
}

/// Tuning of size-tiered compaction ([`CompactionStrategyOptions::SizeTiered`]).
#[derive(Debug, Clone, PartialEq)]
pub struct SizeTieredOptions {
    /// Fewest tables in a bucket for a minor compaction (default 4).
    pub min_threshold: usize,
    /// Most tables merged by one minor compaction (default 32).
    pub max_threshold: usize,
    /// A table joins a bucket when its size is at least this × the bucket's average
    /// (default 0.5).
    pub bucket_low: f64,
    /// ... and at most this × the bucket's average (default 1.5).
    pub bucket_high: f64,
    /// Tables below this size all share one bucket (default 8 MiB; flushed tables are
    /// about `write_buffer_size`, so keep this at or above it).
    pub min_sstable_size: u64,
    /// A table whose tombstone ratio is above this is a tombstone-compaction candidate
    /// (default 0.3).
    pub tombstone_ratio: f64,
    /// ... once it is at least this old, in seconds (default one day; 0 allowed).
    pub tombstone_min_age_secs: u64,
    /// Output tables are cut at this size, between user keys (default 256 MiB: the
    /// largest power of two whose tables keep every block under the reader's 512 MiB
    /// block limit whatever the keys; merging stops at tables of this size, see
    /// `compaction::tiered`).
    pub target_file_size: u64,
    /// Level-0 table count from which writes are slowed down (default 20).
    pub slowdown_tables: usize,
    /// Level-0 table count from which writes stop (default 36).
    pub stop_tables: usize,
}

impl Default for SizeTieredOptions {
    fn default() -> Self {
        SizeTieredOptions {
            min_threshold: 4,
            max_threshold: 32,
            bucket_low: 0.5,
            bucket_high: 1.5,
            min_sstable_size: 8 << 20,
            tombstone_ratio: 0.3,
            tombstone_min_age_secs: 24 * 60 * 60,
            target_file_size: 256 << 20,
            slowdown_tables: 20,
            stop_tables: 36,
        }
    }
}

impl SizeTieredOptions {
    /// Checks that the options make sense together; the message names the first
    /// offending field.
    pub fn validate(&self) -> Result<(), String> {
        if self.min_threshold < 2 {
            return Err(format!("min_threshold must be at least 2, not {}", self.min_threshold));
        }
        if self.max_threshold < self.min_threshold {
            return Err(format!(
                "max_threshold ({}) must be at least min_threshold ({})",
                self.max_threshold, self.min_threshold
            ));
        }
        if !(self.bucket_low.is_finite() && self.bucket_low > 0.0 && self.bucket_low < 1.0) {
            return Err(format!("bucket_low must be in (0, 1), not {}", self.bucket_low));
        }
        if !(self.bucket_high.is_finite() && self.bucket_high > 1.0) {
            return Err(format!(
                "bucket_high must be a finite number above 1, not {}",
                self.bucket_high
            ));
        }
        if !(self.tombstone_ratio.is_finite() && (0.0..1.0).contains(&self.tombstone_ratio)) {
            return Err(format!("tombstone_ratio must be in [0, 1), not {}", self.tombstone_ratio));
        }
        if self.target_file_size == 0 {
            return Err("target_file_size must be positive".to_owned());
        }
        if self.slowdown_tables < self.min_threshold {
            return Err(format!(
                "slowdown_tables ({}) must be at least min_threshold ({}): writers would \
                 slow down before compaction starts",
                self.slowdown_tables, self.min_threshold
            ));
        }
        if self.stop_tables < self.slowdown_tables {
            return Err(format!(
                "stop_tables ({}) must be at least slowdown_tables ({})",
                self.stop_tables, self.slowdown_tables
            ));
        }
        Ok(())
    }
}

/// Tuning of leveled compaction ([`CompactionStrategyOptions::Leveled`]).
#[derive(Debug, Clone, PartialEq)]
pub struct LeveledOptions {
    /// Levels, level 0 included (default 7).
    pub num_levels: usize,
    /// Level-0 table count that scores 1 (default 4).
    pub l0_compaction_trigger: usize,
    /// Level-0 table count from which writes are slowed down (default 20).
    pub l0_slowdown_trigger: usize,
    /// Level-0 table count from which writes stop (default 36).
    pub l0_stop_trigger: usize,
    /// Largest target of the base level (default 256 MiB).
    pub base_level_size: u64,
    /// Ratio of a level's target to the one above it (default 10).
    pub level_size_multiplier: f64,
    /// Output tables are cut at this size (default 64 MiB).
    pub target_file_size: u64,
    /// Limit on one compaction's input bytes (default 25 × target), level 0 included;
    /// exceeded only by the smallest task that keeps the tree correct (see
    /// `compaction::leveled`). Manual compactions are not capped.
    pub max_compaction_bytes: u64,
}

impl Default for LeveledOptions {
    fn default() -> Self {
        LeveledOptions {
            num_levels: 7,
            l0_compaction_trigger: 4,
            l0_slowdown_trigger: 20,
            l0_stop_trigger: 36,
            base_level_size: 256 << 20,
            level_size_multiplier: 10.0,
            target_file_size: 64 << 20,
            max_compaction_bytes: 25 * (64 << 20),
        }
    }
}

impl LeveledOptions {
    /// Checks that the options make sense together; the message names the first
    /// offending field.
    pub fn validate(&self) -> Result<(), String> {
        if self.num_levels < 2 {
            return Err(format!("num_levels must be at least 2, not {}", self.num_levels));
        }
        if self.l0_compaction_trigger == 0 {
            return Err("l0_compaction_trigger must be positive".to_owned());
        }
        if self.l0_slowdown_trigger < self.l0_compaction_trigger {
            return Err(format!(
                "l0_slowdown_trigger ({}) must be at least l0_compaction_trigger ({})",
                self.l0_slowdown_trigger, self.l0_compaction_trigger
            ));
        }
        if self.l0_stop_trigger < self.l0_slowdown_trigger {
            return Err(format!(
                "l0_stop_trigger ({}) must be at least l0_slowdown_trigger ({})",
                self.l0_stop_trigger, self.l0_slowdown_trigger
            ));
        }
        if self.base_level_size == 0 {
            return Err("base_level_size must be positive".to_owned());
        }
        let m = self.level_size_multiplier;
        if !(m.is_finite() && m > 1.0) {
            return Err(format!("level_size_multiplier must be a finite number above 1, not {m}"));
        }
        if self.target_file_size == 0 {
            return Err("target_file_size must be positive".to_owned());
        }
        if self.max_compaction_bytes < self.target_file_size {
            return Err(format!(
                "max_compaction_bytes ({}) must be at least target_file_size ({})",
                self.max_compaction_bytes, self.target_file_size
            ));
        }
        Ok(())
    }
}

/// Which compaction strategy keeps the tree in shape.
#[derive(Debug, Clone, PartialEq)]
pub enum CompactionStrategyOptions {
    /// LevelDB/RocksDB-style leveled compaction (the default: see
    /// `docs/architecture.md` for why).
    Leveled(LeveledOptions),
    /// Size-tiered compaction as in the published AeternusDB 1.0.
    SizeTiered(SizeTieredOptions),
}

impl Default for CompactionStrategyOptions {
    fn default() -> Self {
        CompactionStrategyOptions::Leveled(LeveledOptions::default())
    }
}

impl CompactionStrategyOptions {
    fn validate(&self) -> Result<(), String> {
        match self {
            CompactionStrategyOptions::Leveled(o) => o.validate(),
            CompactionStrategyOptions::SizeTiered(o) => o.validate(),
        }
    }
}

/// Settings for one write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriteOptions {
    /// Wait until the WAL record is on disk (see [`Options::sync_writes`]).
    pub sync: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        Options::default().validate().unwrap();
    }

    #[test]
    fn bad_values_are_invalid_arguments() {
        let bad = [
            Options { write_buffer_size: 10, ..Options::default() },
            Options { max_frozen_memtables: 0, ..Options::default() },
            Options { block_size: 1, ..Options::default() },
            Options { bloom_bits_per_key: 1000, ..Options::default() },
            Options { max_open_files: 15, ..Options::default() },
        ];
        for options in bad {
            assert!(matches!(options.validate(), Err(Error::InvalidArgument(_))), "{options:?}");
        }
    }
}
