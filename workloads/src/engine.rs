//! What a workload needs from a key-value engine.

use std::path::Path;

/// Any engine error, as text is all a benchmark reports.
pub type Error = Box<dyn std::error::Error + Send + Sync>;
pub type Result<T> = std::result::Result<T, Error>;

/// How a workload wants the engine opened.
#[derive(Debug, Clone, Default)]
pub struct OpenOptions {
    /// Memtable budget large enough that nothing is flushed (the `reopen` workload);
    /// `None` for the engine's benchmark default.
    pub write_buffer_bytes: Option<usize>,
}

/// A key-value engine under test. Shared by reference between threads.
pub trait Engine: Send + Sync + Sized {
    /// Short name for tables, e.g. `aeternusdb`.
    fn name(&self) -> String;
    /// Opens (creating if missing) the database in `dir`.
    fn open(dir: &Path, options: &OpenOptions) -> Result<Self>;
    /// Syncs what must be synced and releases the directory.
    fn close(self) -> Result<()>;
    /// One put; `sync` waits for it to be durable.
    fn put(&self, key: &[u8], value: &[u8], sync: bool) -> Result<()>;
    /// Atomic batch of puts.
    fn write_batch(&self, pairs: &[(&[u8], &[u8])], sync: bool) -> Result<()>;
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>>;
    /// Deletes `[start, end)`.
    fn delete_range(&self, start: &[u8], end: &[u8]) -> Result<()>;
    /// Seeks to the first key `>= start` and visits up to `n` pairs in order; returns
    /// how many it visited.
    fn scan(&self, start: &[u8], n: usize, visit: &mut dyn FnMut(&[u8], &[u8])) -> Result<usize>;
    /// Flushes and waits until no flush or compaction is pending (or a fixed pause
    /// where the engine cannot tell).
    fn settle(&self) -> Result<()>;
}
