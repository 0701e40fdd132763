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
    stalls: AtomicU64,
    stall_nanos: AtomicU64,
    slowdowns: AtomicU64,
    slowdown_nanos: AtomicU64,
}

impl Counters {
    pub(crate) fn record_stall(&self, waited: Duration) {
        self.stalls.fetch_add(1, Ordering::Relaxed);
        self.stall_nanos.fetch_add(waited.as_nanos() as u64, Ordering::Relaxed);
    }

    pub(crate) fn record_slowdown(&self, slept: Duration) {
        self.slowdowns.fetch_add(1, Ordering::Relaxed);
        self.slowdown_nanos.fetch_add(slept.as_nanos() as u64, Ordering::Relaxed);
    }
}

/// A report on the database's shape and activity since it was opened.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Bytes in the active memtable (approximate).
    pub active_memtable_bytes: u64,
    /// Memtables frozen and waiting for (or in) flush.
    pub frozen_memtables: usize,
    /// Number of SSTables.
    pub sstables: usize,
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
    /// Writes that waited for a flush because too many memtables were frozen.
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
        Stats {
            active_memtable_bytes: view.active.approximate_size() as u64,
            frozen_memtables: view.frozen.len(),
            sstables: view.version.table_count(),
            sstable_bytes: view.version.tables().map(|t| t.meta.size).sum(),
            disk_bytes: self.disk_bytes(),
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
