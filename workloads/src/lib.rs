//! Benchmark workloads for key-value engines, after `docs/workloads.md`:
//! db_bench-style fills and reads plus YCSB A–F, generic over [`Engine`], with
//! deterministic data so every engine sees the same keys in the same order.
//!
//! Each workload opens its engine in the directory it is given (which should be fresh),
//! and returns one or more [`WorkloadResult`]s.
//!
//! The crate knows no real engine, except behind the `aeternusdb` feature: [`BenchDb`],
//! AeternusDB as an [`Engine`], shared by `aeternus bench` and the harness in `bench/`.

#[cfg(feature = "aeternusdb")]
mod bench_db;
pub mod data;
pub mod engine;
pub mod memory;
pub mod process;
mod report;
mod workload;
mod workloads;
pub mod zipf;

pub use data::Values;
pub use engine::{Engine, Error, OpenOptions, Result};
pub use report::{Figure, WorkloadResult, format_table};
pub use workload::{UnknownWorkload, Workload};
pub use workloads::run;

#[cfg(feature = "aeternusdb")]
pub use bench_db::BenchDb;

/// How big a run is, and what its values are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Size {
    /// Keys loaded (N); also the operation count of most workloads.
    pub keys: u64,
    /// Synced puts of `fillsync`, per thread count.
    pub sync_ops: u64,
    /// Seeks of `seekrandom`.
    pub seeks: u64,
    /// Range deletes (of 100 keys each) of `deleterange`.
    pub range_deletes: u64,
    /// The kind of every value written (runs recorded before the option were mixed).
    #[cfg_attr(feature = "serde", serde(default))]
    pub values: Values,
}

impl Size {
    /// The spec's size: N = 1,000,000.
    pub fn full() -> Self {
        Size {
            keys: 1_000_000,
            sync_ops: 20_000,
            seeks: 100_000,
            range_deletes: 1_000,
            values: Values::Mixed,
        }
    }

    /// The smoke size: N = 100,000, the rest scaled down alike.
    pub fn quick() -> Self {
        Self::with_keys(100_000)
    }

    /// The full size scaled to `keys` (at least 1,000).
    pub fn with_keys(keys: u64) -> Self {
        let keys = keys.max(1_000);
        let full = Self::full();
        let scale = |n: u64| (n * keys / full.keys).max(10);
        Size {
            keys,
            sync_ops: scale(full.sync_ops),
            seeks: scale(full.seeks),
            range_deletes: scale(full.range_deletes),
            values: full.values,
        }
    }

    /// This size with values of kind `values`.
    pub fn with_values(self, values: Values) -> Self {
        Size { values, ..self }
    }
}

/// Progress of the running workload; the benchmark calls these from its own threads.
pub trait Progress: Sync {
    /// A new phase of `total` operations, e.g. `fillrandom: load`.
    fn start(&self, label: &str, total: u64);
    /// `n` more operations done.
    fn advance(&self, n: u64);
}

/// No progress display.
pub struct NoProgress;

impl Progress for NoProgress {
    fn start(&self, _label: &str, _total: u64) {}
    fn advance(&self, _n: u64) {}
}
