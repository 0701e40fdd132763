//! Counters kept while the database runs, and the [`Stats`] report built from them.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::key::SeqNo;

use super::DbCore;

/// Running counters (relaxed atomics: they are statistics, not synchronisation).
#[derive(Default)]
pub(crate) struct Counters {
    pub(crate) wal_bytes: AtomicU64,
    pub(crate) user_bytes: AtomicU64,
    pub(crate) flushes: AtomicU64,
    pub(crate) flush_bytes: AtomicU64,
    pub(crate) flush_nanos: AtomicU64,
    pub(crate) compactions: AtomicU64,
    pub(crate) trivial_moves: AtomicU64,
    pub(crate) compaction_bytes_read: AtomicU64,
    pub(crate) compaction_bytes_written: AtomicU64,
    pub(crate) compaction_nanos: AtomicU64,
    /// Table bytes right after the last full `compact()` since open.
    pub(crate) full_compaction_bytes: AtomicU64,
    stalls: AtomicU64,
    stall_nanos: AtomicU64,
    slowdowns: AtomicU64,
    slowdown_nanos: AtomicU64,
    /// Slowdowns since the current run of slowed writes began (0: writes go at full
    /// speed), so a run is reported as one event when it begins and one when it ends.
    slowdown_run: AtomicU64,
}

impl Counters {
    pub(crate) fn record_stall(&self, waited: Duration) {
        self.stalls.fetch_add(1, Ordering::Relaxed);
        self.stall_nanos.fetch_add(waited.as_nanos() as u64, Ordering::Relaxed);
    }

    /// Counts one slowdown; true if it began a run of slowed writes.
    pub(crate) fn record_slowdown(&self, slept: Duration) -> bool {
        self.slowdowns.fetch_add(1, Ordering::Relaxed);
        self.slowdown_nanos.fetch_add(slept.as_nanos() as u64, Ordering::Relaxed);
        self.slowdown_run.fetch_add(1, Ordering::Relaxed) == 0
    }

    /// After a write that was not slowed: the length of the run of slowed writes it
    /// ended, if one was going on. (Only the commit leader calls the two, one at a time.)
    pub(crate) fn end_slowdown_run(&self) -> Option<u64> {
        match self.slowdown_run.load(Ordering::Relaxed) {
            0 => None,
            _ => Some(self.slowdown_run.swap(0, Ordering::Relaxed)),
        }
    }
}

/// The tables of one level.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LevelStats {
    /// Number of tables.
    pub tables: usize,
    /// Their bytes on disk.
    pub bytes: u64,
}

/// A report on the database's shape and activity since it was opened.
///
/// Two kinds of figures:
/// - **the shape** (memtables, tables, levels and their bytes, disk bytes, last seqno,
///   snapshots, running compactions, space amplification) is read from the current
///   state: any process that opens the directory sees the same (except that the live
///   data estimate of space amplification also uses this `Db`'s last full `compact()`);
/// - **the activity** (bytes written, flushes, compactions, trivial moves, their times,
///   write amplification, stalls and slowdowns) is counted by this `Db` from
///   its `open` on. It is kept nowhere and starts at zero at every open, so a tool that
///   opens the database once per command (`aeternus stats` after `aeternus flush`) sees
///   zeros. For a lasting record, install a `tracing` subscriber: every flush,
///   compaction and stall is an event (see `docs/architecture.md`, "Observability").
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Stats {
    /// Bytes in the active memtable (approximate).
    pub active_memtable_bytes: u64,
    /// Memtables frozen and waiting for (or in) flush.
    pub frozen_memtables: usize,
    /// Bytes of blocks in the block cache now.
    pub block_cache_bytes: u64,
    /// Bytes the block cache may hold now: `Options::block_cache_size` plus what the
    /// memtables leave unused of `Options::write_buffer_size`.
    pub block_cache_capacity: u64,
    /// Number of SSTables.
    pub sstables: usize,
    /// Table files open now: at most `Options::max_open_files` (less once the process
    /// ran out of descriptors), the others are reopened when read.
    pub open_table_files: usize,
    /// Tables and bytes per level (size-tiered keeps every table in level 0).
    pub levels: Vec<LevelStats>,
    /// Bytes of all SSTables.
    pub sstable_bytes: u64,
    /// Bytes of every file in the directory: tables, WAL segments, manifest.
    pub disk_bytes: u64,
    /// The seqno of the last visible write.
    pub last_seqno: SeqNo,
    /// Open snapshots.
    pub snapshots: usize,
    /// Bytes appended to the WAL since open.
    pub wal_bytes_written: u64,
    /// Key and value bytes written by the user since open.
    pub user_bytes_written: u64,
    /// Flushes since open, the bytes they wrote and the time they took.
    pub flushes: u64,
    /// Bytes written by flushes.
    pub flush_bytes_written: u64,
    /// Time spent flushing.
    pub flush_time: Duration,
    /// Compactions running now.
    pub running_compactions: usize,
    /// True while the strategy still finds work (compactions running or due); a
    /// benchmark waits for `false` before it measures reads.
    pub compaction_pending: bool,
    /// Compactions that rewrote tables since open.
    pub compactions: u64,
    /// Tables moved to another level without rewriting.
    pub trivial_moves: u64,
    /// Bytes compactions read.
    pub compaction_bytes_read: u64,
    /// Bytes compactions wrote.
    pub compaction_bytes_written: u64,
    /// Time spent compacting.
    pub compaction_time: Duration,
    /// Bytes written to SSTables (flush + compaction) per byte of user writes, since
    /// open (0 before any write).
    pub write_amplification: f64,
    /// Bytes on disk per byte of live data. Live data is estimated as the largest of:
    /// the biggest level below 0, the biggest table, and the table bytes right after the
    /// last full `compact()` — exact right after a full `compact()` with no snapshot
    /// open, an estimate otherwise.
    pub space_amplification: f64,
    /// Writes that waited for a flush because too many memtables were frozen, or for
    /// compaction because the strategy stopped writes.
    pub write_stalls: u64,
    /// Total time writers waited in stalls.
    pub write_stall_time: Duration,
    /// Writes that were slowed down because flushes were falling behind.
    pub write_slowdowns: u64,
    /// Total time writers slept in slowdowns.
    pub write_slowdown_time: Duration,
}

impl DbCore {
    /// Sums the sizes of the directory's files (a file removed meanwhile counts as 0).
    fn disk_bytes(&self) -> u64 {
        let names = self.fs.list_dir(&self.dir).unwrap_or_default();
        names
            .iter()
            .filter_map(|name| self.fs.open(&self.dir.join(name)).ok())
            .map(|f| f.len())
            .sum()
    }

    pub(crate) fn stats(&self) -> Stats {
        let view = self.view.load();
        let c = &self.stats;
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let levels: Vec<LevelStats> = view
            .version
            .levels()
            .iter()
            .map(|tables| LevelStats {
                tables: tables.len(),
                bytes: tables.iter().map(|t| t.meta.size).sum(),
            })
            .collect();
        let largest_table = view.version.tables().map(|t| t.meta.size).max().unwrap_or(0);
        let largest_deep_level = levels.iter().skip(1).map(|l| l.bytes).max().unwrap_or(0);
        let live_estimate =
            largest_table.max(largest_deep_level).max(load(&c.full_compaction_bytes));
        let disk_bytes = self.disk_bytes();
        let user_bytes = load(&c.user_bytes);
        let table_bytes_written = load(&c.flush_bytes) + load(&c.compaction_bytes_written);
        let ratio = |a: u64, b: u64| if b == 0 { 0.0 } else { a as f64 / b as f64 };
        let (running_compactions, compaction_pending) = {
            let state = self.background.state.lock();
            let due = self.options.auto_compaction
                && state.error.is_none()
                && self
                    .strategy
                    .pick(&super::compaction::summarize(&view.version), &state.busy)
                    .is_some();
            (state.running_compactions, state.running_compactions > 0 || due)
        };
        Stats {
            running_compactions,
            compaction_pending,
            levels,
            compactions: load(&c.compactions),
            trivial_moves: load(&c.trivial_moves),
            compaction_bytes_read: load(&c.compaction_bytes_read),
            compaction_bytes_written: load(&c.compaction_bytes_written),
            compaction_time: Duration::from_nanos(load(&c.compaction_nanos)),
            write_amplification: ratio(table_bytes_written, user_bytes),
            space_amplification: ratio(disk_bytes, live_estimate),
            active_memtable_bytes: view.active.approximate_size() as u64,
            frozen_memtables: view.frozen.len(),
            block_cache_bytes: self.cache.weight(),
            block_cache_capacity: self.cache.capacity(),
            sstables: view.version.table_count(),
            open_table_files: self.table_cache.open_files(),
            sstable_bytes: view.version.tables().map(|t| t.meta.size).sum(),
            disk_bytes,
            last_seqno: self.read_seqno(),
            snapshots: self.snapshots.count(),
            wal_bytes_written: load(&c.wal_bytes),
            user_bytes_written: load(&c.user_bytes),
            flushes: load(&c.flushes),
            flush_bytes_written: load(&c.flush_bytes),
            flush_time: Duration::from_nanos(load(&c.flush_nanos)),
            write_stalls: load(&c.stalls),
            write_stall_time: Duration::from_nanos(load(&c.stall_nanos)),
            write_slowdowns: load(&c.slowdowns),
            write_slowdown_time: Duration::from_nanos(load(&c.slowdown_nanos)),
        }
    }
}
