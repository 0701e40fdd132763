//! RocksDB (rust-rocksdb): defaults, LZ4, a 10 bits/key bloom filter, a 64 MiB write
//! buffer and a 64 MiB LRU block cache, as docs/workloads.md asks.

use std::path::Path;
use std::time::Duration;

use aeternus_workloads::{Engine, OpenOptions, Result};
use rocksdb::{BlockBasedOptions, Cache, DB, DBCompressionType, Options, WriteBatch, WriteOptions};

use super::{BLOCK_CACHE_BYTES, WRITE_BUFFER_BYTES};

pub struct RocksDb {
    db: DB,
    buffered: WriteOptions,
    synced: WriteOptions,
}

impl RocksDb {
    fn write_options(&self, sync: bool) -> &WriteOptions {
        if sync { &self.synced } else { &self.buffered }
    }

    /// Whether a flush or compaction is queued or running.
    fn busy(&self) -> Result<bool> {
        for property in [
            "rocksdb.mem-table-flush-pending",
            "rocksdb.compaction-pending",
            "rocksdb.num-running-flushes",
            "rocksdb.num-running-compactions",
        ] {
            if self.db.property_int_value(property)?.unwrap_or(0) > 0 {
                return Ok(true);
            }
        }
        Ok(false)
    }
}

impl Engine for RocksDb {
    fn name(&self) -> String {
        "rocksdb".into()
    }

    fn open(dir: &Path, options: &OpenOptions) -> Result<Self> {
        let mut table = BlockBasedOptions::default();
        table.set_bloom_filter(10.0, false);
        table.set_block_cache(&Cache::new_lru_cache(BLOCK_CACHE_BYTES));
        let mut opts = Options::default();
        opts.create_if_missing(true);
        opts.set_compression_type(DBCompressionType::Lz4);
        opts.set_write_buffer_size(options.write_buffer_bytes.unwrap_or(WRITE_BUFFER_BYTES));
        opts.set_block_based_table_factory(&table);
        let mut synced = WriteOptions::default();
        synced.set_sync(true);
        Ok(RocksDb { db: DB::open(&opts, dir)?, buffered: WriteOptions::default(), synced })
    }

    fn close(self) -> Result<()> {
        // Buffered writes reach the WAL file; make them durable before the handle drops.
        self.db.flush_wal(true)?;
        drop(self.db);
        Ok(())
    }

    fn put(&self, key: &[u8], value: &[u8], sync: bool) -> Result<()> {
        Ok(self.db.put_opt(key, value, self.write_options(sync))?)
    }

    fn write_batch(&self, pairs: &[(&[u8], &[u8])], sync: bool) -> Result<()> {
        let mut batch = WriteBatch::default();
        for (key, value) in pairs {
            batch.put(key, value);
        }
        Ok(self.db.write_opt(batch, self.write_options(sync))?)
    }

    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(self.db.get_pinned(key)?.map(|v| v.to_vec()))
    }

    fn delete_range(&self, start: &[u8], end: &[u8]) -> Result<()> {
        let mut batch = WriteBatch::default();
        batch.delete_range(start, end);
        Ok(self.db.write_opt(batch, &self.buffered)?)
    }

    fn scan(&self, start: &[u8], n: usize, visit: &mut dyn FnMut(&[u8], &[u8])) -> Result<usize> {
        let mut iter = self.db.raw_iterator();
        iter.seek(start);
        let mut count = 0;
        while count < n {
            match (iter.key(), iter.value()) {
                (Some(key), Some(value)) => visit(key, value),
                _ => break,
            }
            count += 1;
            iter.next();
        }
        iter.status()?;
        Ok(count)
    }

    fn settle(&self) -> Result<()> {
        self.db.flush()?;
        while self.busy()? {
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }
}
