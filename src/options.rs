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
    /// Bytes of writes the active memtable takes before it is frozen and flushed
    /// (default 64 MiB; at least 4 KiB).
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
            self.compression != Compression::Zstd || cfg!(feature = "zstd"),
            "zstd compression needs the `zstd` cargo feature",
        )?;
        Ok(())
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
        ];
        for options in bad {
            assert!(matches!(options.validate(), Err(Error::InvalidArgument(_))), "{options:?}");
        }
    }
}
