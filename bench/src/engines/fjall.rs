//! fjall 3: defaults, but for the memory budget every engine gets (a 64 MiB memtable
//! and a 64 MiB block cache) and `fdatasync` for synced writes, as RocksDB uses.
//!
//! fjall has no range delete, so `delete_range` reads the range and deletes each key in
//! one batch: what a fjall user would have to write.

use std::path::Path;
use std::time::Duration;

use aeternus_workloads::{Engine, OpenOptions, Result};
use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode};

use super::{BLOCK_CACHE_BYTES, WRITE_BUFFER_BYTES};

pub struct Fjall {
    db: Database,
    tree: Keyspace,
}

/// How long fjall must look idle before `settle` believes it: it reports running flushes
/// and compactions, not ones about to be scheduled.
const QUIET: Duration = Duration::from_millis(500);

impl Engine for Fjall {
    fn name(&self) -> String {
        "fjall".into()
    }

    fn open(dir: &Path, options: &OpenOptions) -> Result<Self> {
        let memtable = options.write_buffer_bytes.unwrap_or(WRITE_BUFFER_BYTES) as u64;
        let mut builder = Database::builder(dir).cache_size(BLOCK_CACHE_BYTES as u64);
        if memtable > WRITE_BUFFER_BYTES as u64 {
            // Room for the whole unflushed journal of the `reopen` workload.
            builder = builder.max_journaling_size(memtable.saturating_mul(2));
        }
        let db = builder.open()?;
        let tree =
            db.keyspace("bench", || KeyspaceCreateOptions::default().max_memtable_size(memtable))?;
        Ok(Fjall { db, tree })
    }

    fn close(self) -> Result<()> {
        self.db.persist(PersistMode::SyncAll)?;
        Ok(())
    }

    fn put(&self, key: &[u8], value: &[u8], sync: bool) -> Result<()> {
        if sync {
            self.write_batch(&[(key, value)], true)
        } else {
            Ok(self.tree.insert(key, value)?)
        }
    }

    fn write_batch(&self, pairs: &[(&[u8], &[u8])], sync: bool) -> Result<()> {
        let mut batch = self.db.batch().durability(sync.then_some(PersistMode::SyncData));
        for (key, value) in pairs {
            batch.insert(&self.tree, *key, *value);
        }
        Ok(batch.commit()?)
    }

    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(self.tree.get(key)?.map(|v| v.to_vec()))
    }

    fn delete_range(&self, start: &[u8], end: &[u8]) -> Result<()> {
        let mut batch = self.db.batch();
        for item in self.tree.range(start..end) {
            batch.remove(&self.tree, item.key()?);
        }
        Ok(batch.commit()?)
    }

    fn scan(&self, start: &[u8], n: usize, visit: &mut dyn FnMut(&[u8], &[u8])) -> Result<usize> {
        let mut count = 0;
        for item in self.tree.range(start..).take(n) {
            let (key, value) = item.into_inner()?;
            visit(&key, &value);
            count += 1;
        }
        Ok(count)
    }

    fn settle(&self) -> Result<()> {
        self.tree.rotate_memtable_and_wait()?;
        let mut quiet_since = std::time::Instant::now();
        loop {
            if self.db.outstanding_flushes() > 0 || self.db.active_compactions() > 0 {
                quiet_since = std::time::Instant::now();
            } else if quiet_since.elapsed() >= QUIET {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}
