//! The database handle and the state its parts share.
//!
//! `Db` is a cheap handle (`Arc`) over [`DbCore`]. The write path lives in `write`,
//! reads and snapshots in `read`, opening in `recovery` and its WAL replay in `replay`,
//! the flush thread in `flush`, the state background work shares with writers (and
//! why writes are stopped) in `background_state`, compaction threads and manual
//! compaction in `compaction`, directory layout in `files`, counters in `stats`.
//!
//! # Locks, in the order they may be taken
//! 1. `commit` queue lock (writers joining a group; never held across I/O);
//! 2. `writer` (the commit leader: WAL, active memtable, rotation);
//! 3. `manifest` (one version edit at a time);
//! 4. `install_lock` (replacing the read view);
//! 5. `background.state`.
//!
//! Readers take none of them: they load the current [`ReadView`] from an `ArcSwap`.

mod background_state;
mod compaction;
mod flush;
mod memory_budget;
mod read;
mod recovery;
mod replay;
mod stats;
mod write;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::thread::JoinHandle;

use arc_swap::ArcSwap;
use parking_lot::Mutex;

use crate::batch::WriteBatch;
use crate::compaction::CompactionStrategy;
use crate::error::{Error, Result};
use crate::fs::{FileLock, FileSystem};
use crate::key::SeqNo;
use crate::manifest::{Manifest, VersionEdit};
use crate::options::{Options, WriteOptions};
use crate::sstable::cache::BlockCache;
use crate::table_cache::TableCache;
use crate::version::{ObsoleteTables, ReadView};

pub use read::Snapshot;
pub use stats::{LevelStats, Stats};

use background_state::Background;
use stats::Counters;
use write::{CommitQueue, WriterState};

/// State shared by every handle, the flush thread, snapshots and iterators.
pub(crate) struct DbCore {
    dir: PathBuf,
    options: Options,
    fs: Arc<dyn FileSystem>,
    db_id: uuid::Uuid,
    cache: Arc<BlockCache>,
    /// Lends the block cache the write buffer's unused room.
    memory: memory_budget::MemoryBudget,
    /// The open table files (`fs` reads tables through it).
    table_cache: Arc<TableCache>,
    /// What readers see; replaced under `install_lock`.
    view: ArcSwap<ReadView>,
    install_lock: Mutex<()>,
    /// The highest seqno whose whole group is in the memtable.
    visible_seqno: AtomicU64,
    commit: CommitQueue,
    writer: Mutex<WriterState>,
    manifest: Mutex<Manifest>,
    next_file_number: AtomicU64,
    background: Background,
    strategy: Box<dyn CompactionStrategy>,
    /// Serialises `compact()` and `compact_range()` calls.
    manual_compaction: Mutex<()>,
    /// A `WritePressure` as `u8`, recomputed whenever the version changes.
    write_pressure: AtomicU8,
    snapshots: read::SnapshotRegistry,
    stats: Counters,
    closed: AtomicBool,
    /// Deletes replaced tables' files while this instance is open.
    obsolete_tables: Arc<ObsoleteTables>,
    lock: Mutex<Option<Box<dyn FileLock>>>,
}

impl DbCore {
    fn new_file_number(&self) -> u64 {
        self.next_file_number.fetch_add(1, Ordering::Relaxed)
    }

    /// Logs `edit` to the manifest (synced) and applies it to the manifest's state.
    /// `Error::NoSpace` means the edit did not happen and the manifest goes on.
    fn log_and_apply(&self, mut edit: VersionEdit) -> Result<()> {
        let mut manifest = self.manifest.lock();
        // Every edit reserves a number for the manifest in case this edit makes it roll
        // over (unused numbers are harmless gaps), before recording the counter, so the
        // recorded value is never below a number in use.
        let rollover_number = self.new_file_number();
        edit.next_file_number = Some(self.next_file_number.load(Ordering::Relaxed));
        manifest.apply(edit, || rollover_number).map_err(|e| match manifest.is_usable() {
            // Nothing of the edit was kept: the caller may undo its work and retry.
            true => self.no_space_or(e, "writing the manifest"),
            false => e,
        })
    }

    fn check_open(&self) -> Result<()> {
        if self.closed.load(Ordering::Acquire) { Err(Error::Closed) } else { Ok(()) }
    }

    fn check_writable(&self) -> Result<()> {
        self.check_open()?;
        match self.background.error() {
            Some(stopped) => Err(stopped.to_error()),
            None => Ok(()),
        }
    }

    /// `e` as [`Error::NoSpace`] if it says the disk is full, else `e` unchanged.
    /// Only for failures that left nothing behind, so trying again later is safe.
    fn no_space_or(&self, e: Error, doing: &str) -> Error {
        if e.is_no_space() {
            Error::NoSpace { dir: self.dir.clone(), message: format!("{doing}: {e}") }
        } else {
            e
        }
    }

    fn set_background_error(&self, why: &str) {
        self.background.set_error(why);
    }
}

/// Owns the background threads; the last `Db` clone to go away closes the database.
struct DbHandle {
    core: Arc<DbCore>,
    /// The flush and compaction threads. Held for the whole of `close`, so a
    /// concurrent second `close` returns only once the directory is released.
    threads: Mutex<Vec<JoinHandle<()>>>,
}

impl DbHandle {
    fn close(&self) -> Result<()> {
        let mut threads = self.threads.lock();
        if self.core.closed.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        // Stop background work first: a stalled writer then gives up with `Closed`
        // instead of waiting for compaction to catch up, and running compactions stop
        // at their next output boundary.
        self.core.background.shut_down();
        // Waits for a group being committed; later writers see `closed`. The segment is
        // left ending with its last record, so a clean reopen cuts no reserved tail.
        let synced = self.core.writer.lock().wal.finish();
        let mut panicked = false;
        for thread in threads.drain(..) {
            panicked |= thread.join().is_err();
        }
        // Manual compactions run on their callers' threads: the directory is released
        // only after the last of them stopped touching it, or a second instance could
        // open it while a stale job deletes the tables the new manifest names.
        self.core.background.wait_for_manual_compactions();
        // Iterators and snapshots may outlive the instance: the tables they hold are
        // left for the next open to remove, and their closed descriptors not reopened.
        self.core.obsolete_tables.stop();
        self.core.table_cache.close();
        self.core.lock.lock().take();
        tracing::debug!(
            target: "aeternusdb::close",
            dir = %self.core.dir.display(),
            wal_synced = synced.is_ok(),
            threads_panicked = panicked,
            "closed: directory released"
        );
        synced?;
        if panicked {
            return Err(Error::Background("a background thread panicked".into()));
        }
        Ok(())
    }
}

impl Drop for DbHandle {
    fn drop(&mut self) {
        let _ = self.close();
    }
}

/// An open database: a cheap, cloneable, thread-safe handle.
///
/// ```
/// # fn main() -> aeternusdb::Result<()> {
/// let dir = tempfile::tempdir()?;
/// let db = aeternusdb::Db::open(dir.path(), aeternusdb::Options::default())?;
/// db.put("hello", "world")?;
/// assert_eq!(db.get("hello")?.as_deref(), Some(&b"world"[..]));
/// db.close()?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Db {
    handle: Arc<DbHandle>,
}

impl std::fmt::Debug for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Db").field("dir", &self.handle.core.dir).finish_non_exhaustive()
    }
}

impl Db {
    /// Opens the database in `dir`, creating it if missing (unless
    /// `options.create_if_missing` is false), and recovers every acknowledged write.
    ///
    /// Errors: `InvalidArgument` for bad options, `Locked` if the directory is open
    /// elsewhere, `Corruption` naming the damaged file.
    pub fn open(dir: impl AsRef<Path>, options: Options) -> Result<Db> {
        let recovered = recovery::open(dir.as_ref(), options)?;
        let core = Arc::new(recovered.core);
        let handle = DbHandle { core: core.clone(), threads: Mutex::new(Vec::new()) };
        // If spawning fails, dropping `handle` stops the threads already started.
        let spawn = |name: String, body: Box<dyn FnOnce() + Send>| {
            std::thread::Builder::new().name(name).spawn(body)
        };
        let flusher = core.clone();
        let thread = spawn("aeternus-flush".into(), Box::new(move || flusher.run_flusher()))?;
        handle.threads.lock().push(thread);
        for i in 0..core.options.compaction_threads {
            let compactor = core.clone();
            let thread = spawn(
                format!("aeternus-compact-{i}"),
                Box::new(move || compactor.run_compactor()),
            )?;
            handle.threads.lock().push(thread);
        }
        core.refresh_write_pressure();
        let db = Db { handle: Arc::new(handle) };
        if recovered.replayed_segments > recovery::MAX_REPLAYED_SEGMENTS {
            db.flush()?;
        }
        Ok(db)
    }

    fn core(&self) -> &DbCore {
        &self.handle.core
    }

    /// The database directory.
    pub fn path(&self) -> &Path {
        &self.core().dir
    }

    /// Sets `key` to `value` with the default durability.
    pub fn put(&self, key: impl AsRef<[u8]>, value: impl AsRef<[u8]>) -> Result<()> {
        let mut batch = WriteBatch::with_capacity(key.as_ref().len() + value.as_ref().len() + 11);
        batch.put(key, value)?;
        // By value: the batch's buffer can become the WAL record without a copy.
        self.core().write(batch, self.core().options.sync_writes)
    }

    /// Deletes `key`.
    pub fn delete(&self, key: impl AsRef<[u8]>) -> Result<()> {
        let mut batch = WriteBatch::new();
        batch.delete(key)?;
        self.write(batch)
    }

    /// Deletes every key in `[start, end)`; `start > end` is `InvalidArgument`,
    /// `start == end` does nothing.
    pub fn delete_range(&self, start: impl AsRef<[u8]>, end: impl AsRef<[u8]>) -> Result<()> {
        let mut batch = WriteBatch::new();
        batch.delete_range(start, end)?;
        self.write(batch)
    }

    /// Applies `batch` atomically with the default durability.
    pub fn write(&self, batch: impl std::borrow::Borrow<WriteBatch>) -> Result<()> {
        let sync = self.core().options.sync_writes;
        self.core().write(batch.borrow(), sync)
    }

    /// Applies `batch` atomically with explicit durability.
    pub fn write_with(&self, batch: &WriteBatch, options: WriteOptions) -> Result<()> {
        self.core().write(batch, options.sync)
    }

    /// Freezes the active memtable (if it holds anything) and waits until it and every
    /// older memtable are written to SSTables.
    pub fn flush(&self) -> Result<()> {
        let core = self.core();
        core.check_writable()?;
        let target = {
            let mut writer = core.writer.lock();
            core.check_writable()?;
            let view = core.view.load();
            if !view.active.is_empty() {
                core.freeze_active_memtable(&mut writer)?;
            }
            core.view.load().frozen.first().map(|f| f.first_wal())
        };
        match target {
            Some(first_wal) => core.wait_until_flushed(first_wal),
            None => Ok(()),
        }
    }

    /// Flushes the memtables, then compacts the whole tree: size-tiered merges every
    /// table into one; leveled moves everything down to the last level. Versions no
    /// snapshot can see and tombstones that hide nothing are dropped.
    pub fn compact(&self) -> Result<()> {
        self.flush()?;
        self.core().compact_manually(None)
    }

    /// Like [`compact`](Db::compact), for the tables holding keys in `[start, end]`.
    /// `start > end` is `InvalidArgument`.
    pub fn compact_range(&self, start: impl AsRef<[u8]>, end: impl AsRef<[u8]>) -> Result<()> {
        let (start, end) = (start.as_ref(), end.as_ref());
        if start > end {
            return Err(Error::invalid("compact_range start is after its end"));
        }
        self.flush()?;
        self.core().compact_manually(Some((start, end)))
    }

    /// Makes every write so far durable (useful after writes with `sync: false`).
    pub fn sync_wal(&self) -> Result<()> {
        let core = self.core();
        core.check_writable()?;
        let mut writer = core.writer.lock();
        // `close()` may have synced and released the directory while this waited.
        core.check_open()?;
        writer.wal.sync()
    }

    /// Syncs the WAL, stops background work and releases the directory. Every handle
    /// then returns `Error::Closed`. Closing twice is fine.
    pub fn close(&self) -> Result<()> {
        self.handle.close()
    }

    /// Counters and the shape of the tree.
    pub fn stats(&self) -> Result<Stats> {
        self.core().check_open()?;
        Ok(self.core().stats())
    }

    /// The seqno of the last write visible to readers.
    pub fn last_seqno(&self) -> SeqNo {
        self.core().visible_seqno.load(Ordering::Acquire)
    }
}
