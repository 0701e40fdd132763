//! redb, a copy-on-write B-tree, for contrast: defaults, one transaction per write,
//! `Durability::None` for buffered writes and `Durability::Immediate` for synced ones.
//! Its one memory knob, the page cache, gets the whole budget the LSM engines split
//! between write buffer and block cache.

use std::path::Path;

use aeternus_workloads::{Engine, OpenOptions, Result};
use redb::{Database, Durability, ReadableDatabase, TableDefinition};

use super::{BLOCK_CACHE_BYTES, WRITE_BUFFER_BYTES};

const TABLE: TableDefinition<&[u8], &[u8]> = TableDefinition::new("bench");

pub struct Redb {
    db: Database,
}

impl Redb {
    /// Runs `f` on the table in one write transaction of the given durability.
    fn write(
        &self,
        sync: bool,
        f: impl FnOnce(&mut redb::Table<&[u8], &[u8]>) -> Result<()>,
    ) -> Result<()> {
        let mut txn = self.db.begin_write()?;
        txn.set_durability(if sync { Durability::Immediate } else { Durability::None })?;
        {
            let mut table = txn.open_table(TABLE)?;
            f(&mut table)?;
        }
        txn.commit()?;
        Ok(())
    }
}

impl Engine for Redb {
    fn name(&self) -> String {
        "redb".into()
    }

    fn open(dir: &Path, _options: &OpenOptions) -> Result<Self> {
        std::fs::create_dir_all(dir)?;
        let db = Database::builder()
            .set_cache_size(WRITE_BUFFER_BYTES + BLOCK_CACHE_BYTES)
            .create(dir.join("bench.redb"))?;
        let redb = Redb { db };
        // Create the table, so reads of an empty database find it.
        redb.write(false, |_| Ok(()))?;
        Ok(redb)
    }

    fn close(self) -> Result<()> {
        // Non-durable commits are lost unless a durable one follows.
        self.write(true, |_| Ok(()))
    }

    fn put(&self, key: &[u8], value: &[u8], sync: bool) -> Result<()> {
        self.write(sync, |table| {
            table.insert(key, value)?;
            Ok(())
        })
    }

    fn write_batch(&self, pairs: &[(&[u8], &[u8])], sync: bool) -> Result<()> {
        self.write(sync, |table| {
            for (key, value) in pairs {
                table.insert(*key, *value)?;
            }
            Ok(())
        })
    }

    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(TABLE)?;
        Ok(table.get(key)?.map(|v| v.value().to_vec()))
    }

    fn delete_range(&self, start: &[u8], end: &[u8]) -> Result<()> {
        self.write(false, |table| {
            table.retain_in(start..end, |_, _| false)?;
            Ok(())
        })
    }

    fn scan(&self, start: &[u8], n: usize, visit: &mut dyn FnMut(&[u8], &[u8])) -> Result<usize> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(TABLE)?;
        let mut count = 0;
        for item in table.range(start..)?.take(n) {
            let (key, value) = item?;
            visit(key.value(), value.value());
            count += 1;
        }
        Ok(count)
    }

    /// A B-tree has no background work.
    fn settle(&self) -> Result<()> {
        Ok(())
    }
}
