//! The engines under test, each an [`aeternus_workloads::Engine`], and what they are
//! given: every one gets the same memory budget where it has a knob for it, and the same
//! durability (buffered writes, except the synced ones of `fillsync`).

mod aeternusdb_v1;
mod fjall;
mod redb;
mod rocksdb;

use std::path::Path;

use aeternus_workloads::{BenchDb, NoProgress, Result, Size, Workload, WorkloadResult, run};

/// Memtable (write buffer) budget of every LSM engine.
pub const WRITE_BUFFER_BYTES: usize = 64 << 20;
/// Block cache budget of every engine with one.
pub const BLOCK_CACHE_BYTES: usize = 64 << 20;

/// An engine the harness can run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, clap::ValueEnum)]
pub enum EngineKind {
    /// The reference every ratio is taken to.
    Rocksdb,
    /// This repository's engine.
    Aeternusdb,
    Fjall,
    Redb,
    /// The published AeternusDB 1.0.1 (synced workloads only).
    #[value(name = "aeternusdb-1.0.1")]
    AeternusdbV1,
}

impl EngineKind {
    pub const ALL: [EngineKind; 5] = [
        EngineKind::Rocksdb,
        EngineKind::Aeternusdb,
        EngineKind::Fjall,
        EngineKind::Redb,
        EngineKind::AeternusdbV1,
    ];

    /// Id on the command line and in `results.jsonl`.
    pub fn id(self) -> &'static str {
        match self {
            EngineKind::Rocksdb => "rocksdb",
            EngineKind::Aeternusdb => "aeternusdb",
            EngineKind::Fjall => "fjall",
            EngineKind::Redb => "redb",
            EngineKind::AeternusdbV1 => "aeternusdb-1.0.1",
        }
    }

    pub fn from_id(id: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|e| e.id() == id)
    }

    /// Name in tables and charts.
    pub fn label(self) -> &'static str {
        match self {
            EngineKind::Rocksdb => "RocksDB",
            EngineKind::Aeternusdb => "AeternusDB",
            EngineKind::Fjall => "fjall",
            EngineKind::Redb => "redb",
            EngineKind::AeternusdbV1 => "AeternusDB 1.0.1",
        }
    }

    /// The settings it runs with, for the report's header.
    pub fn settings(self) -> &'static str {
        match self {
            EngineKind::Rocksdb => {
                "rust-rocksdb 0.25 (RocksDB 11.8.1): defaults, LZ4, bloom filter 10 bits/key, 64 MiB write buffer, \
                 64 MiB LRU block cache; `fdatasync` on synced writes (WriteOptions::sync)"
            }
            EngineKind::Aeternusdb => {
                "this repository: `Options::default()` (leveled compaction, LZ4, bloom 10 bits/key, \
                 64 MiB write buffer, 64 MiB block cache) with `sync_writes: false`; \
                 synced writes via `WriteOptions { sync: true }`"
            }
            EngineKind::Fjall => {
                "fjall 3.1.13: defaults, 64 MiB memtable, 64 MiB block cache; synced writes as batches \
                 with `PersistMode::SyncData`; no range delete, so `delete_range` deletes each key \
                 of the range in one batch"
            }
            EngineKind::Redb => {
                "redb 4.1.0: defaults, 128 MiB page cache (its only memory knob, the LSMs' two budgets \
                 together); one transaction per write, `Durability::None` buffered, \
                 `Durability::Immediate` synced"
            }
            EngineKind::AeternusdbV1 => {
                "aeternusdb 1.0.1 from crates.io: 64 MiB write buffer, otherwise defaults; it fsyncs \
                 every write, so it runs only `fillsync`"
            }
        }
    }

    /// Whether the engine runs `workload` at all.
    pub fn runs(self, workload: Workload) -> bool {
        self != EngineKind::AeternusdbV1 || workload == Workload::FillSync
    }

    /// Runs one workload in a fresh `dir`.
    pub fn run(self, workload: Workload, dir: &Path, size: Size) -> Result<Vec<WorkloadResult>> {
        match self {
            EngineKind::Rocksdb => run::<rocksdb::RocksDb>(workload, dir, size, &NoProgress),
            EngineKind::Aeternusdb => run::<BenchDb>(workload, dir, size, &NoProgress),
            EngineKind::Fjall => run::<fjall::Fjall>(workload, dir, size, &NoProgress),
            EngineKind::Redb => run::<redb::Redb>(workload, dir, size, &NoProgress),
            EngineKind::AeternusdbV1 => {
                run::<aeternusdb_v1::AeternusV1>(workload, dir, size, &NoProgress)
            }
        }
    }
}
