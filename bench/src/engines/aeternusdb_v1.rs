//! The published AeternusDB 1.0.1 with a 64 MiB write buffer. It fsyncs every write and
//! has no batch, so it only runs `fillsync` (docs/workloads.md); `write_batch` is a loop of
//! puts, atomic or not, for completeness.

use std::path::Path;
use std::time::Duration;

use aeternus_workloads::{Engine, OpenOptions, Result};
use aeternusdb_v1::{Db, DbConfig};

use super::WRITE_BUFFER_BYTES;

pub struct AeternusV1(Db);

impl Engine for AeternusV1 {
    fn name(&self) -> String {
        "aeternusdb 1.0.1".into()
    }

    fn open(dir: &Path, options: &OpenOptions) -> Result<Self> {
        let config = DbConfig {
            write_buffer_size: options.write_buffer_bytes.unwrap_or(WRITE_BUFFER_BYTES),
            ..DbConfig::default()
        };
        Ok(AeternusV1(Db::open(dir, config)?))
    }

    fn close(self) -> Result<()> {
        Ok(self.0.close()?)
    }

    /// Every put is synced, whatever `sync` says.
    fn put(&self, key: &[u8], value: &[u8], _sync: bool) -> Result<()> {
        Ok(self.0.put(key, value)?)
    }

    fn write_batch(&self, pairs: &[(&[u8], &[u8])], sync: bool) -> Result<()> {
        for (key, value) in pairs {
            self.put(key, value, sync)?;
        }
        Ok(())
    }

    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(self.0.get(key)?)
    }

    fn delete_range(&self, start: &[u8], end: &[u8]) -> Result<()> {
        Ok(self.0.delete_range(start, end)?)
    }

    fn scan(&self, start: &[u8], n: usize, visit: &mut dyn FnMut(&[u8], &[u8])) -> Result<usize> {
        // 1.0.1 scans a bounded range into a vector; [start, 0xff..) covers the 16-byte keys.
        let all = self.0.scan(start, &[0xff; 17])?;
        let mut count = 0;
        for (key, value) in all.iter().take(n) {
            visit(key, value);
            count += 1;
        }
        Ok(count)
    }

    /// 1.0.1 cannot say whether background work is pending: the spec's fixed pause.
    fn settle(&self) -> Result<()> {
        std::thread::sleep(Duration::from_secs(5));
        Ok(())
    }
}
