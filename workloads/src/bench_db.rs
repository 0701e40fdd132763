//! AeternusDB as an [`Engine`]: the subject of `aeternus bench` and of the side-by-side
//! harness in `bench/`. Behind the `aeternusdb` feature, so that the workloads crate
//! stays engine-agnostic by default and the library never depends on its benchmark.
//!
//! Writes are buffered (`sync_writes: false`) unless a workload asks for a sync, the
//! setting every peer is given too; everything else is [`Options::default`].

use std::path::Path;
use std::time::Duration;

use aeternusdb::{Db, Options, WriteBatch, WriteOptions};

use crate::engine::{Engine, OpenOptions, Result};

/// A [`Db`] opened for benchmarking.
#[derive(Debug)]
pub struct BenchDb(Db);

impl Engine for BenchDb {
    fn name(&self) -> String {
        // This crate's version is not the engine's; `aeternus bench` prints the engine's.
        "aeternusdb".into()
    }

    fn open(dir: &Path, options: &OpenOptions) -> Result<Self> {
        let defaults = Options::default();
        let options = Options {
            sync_writes: false,
            write_buffer_size: options.write_buffer_bytes.unwrap_or(defaults.write_buffer_size),
            ..defaults
        };
        Ok(BenchDb(Db::open(dir, options)?))
    }

    fn close(self) -> Result<()> {
        Ok(self.0.close()?)
    }

    fn put(&self, key: &[u8], value: &[u8], sync: bool) -> Result<()> {
        if sync { self.write_batch(&[(key, value)], true) } else { Ok(self.0.put(key, value)?) }
    }

    fn write_batch(&self, pairs: &[(&[u8], &[u8])], sync: bool) -> Result<()> {
        let mut batch = WriteBatch::new();
        for (key, value) in pairs {
            batch.put(key, value)?;
        }
        Ok(self.0.write_with(&batch, WriteOptions { sync })?)
    }

    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(self.0.get(key)?.map(|v| v.to_vec()))
    }

    fn delete_range(&self, start: &[u8], end: &[u8]) -> Result<()> {
        Ok(self.0.delete_range(start, end)?)
    }

    fn scan(&self, start: &[u8], n: usize, visit: &mut dyn FnMut(&[u8], &[u8])) -> Result<usize> {
        // The borrowing step, as the peers' scans borrow (RocksDB's raw iterator,
        // redb's access guards): no copy per pair the visitor only reads.
        let mut iter = self.0.range(start..)?;
        let mut count = 0;
        while count < n {
            let Some((key, value)) = iter.next_ref()? else { break };
            visit(key, value);
            count += 1;
        }
        Ok(count)
    }

    fn settle(&self) -> Result<()> {
        self.0.flush()?;
        loop {
            let stats = self.0.stats()?;
            if stats.frozen_memtables == 0 && !stats.compaction_pending {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{NoProgress, Size, Workload, run};

    /// Runs in the root's `cargo test` (the CLI turns the feature on) and in
    /// `cargo test -p aeternus-workloads --features aeternusdb`.
    #[test]
    fn the_workloads_verify_on_this_engine() {
        let dir = tempfile::tempdir().unwrap();
        for workload in [
            Workload::FillRandom,
            Workload::Overwrite,
            Workload::DeleteRange,
            Workload::YcsbE,
            Workload::Reopen,
        ] {
            let dir = dir.path().join(workload.name());
            let results = run::<BenchDb>(workload, &dir, Size::with_keys(3_000), &NoProgress);
            assert_ne!(results.unwrap()[0].verified, Some(false), "{workload}");
        }
    }
}
