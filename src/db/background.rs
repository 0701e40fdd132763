//! Background work: the flush thread.
//!
//! One thread flushes frozen memtables, oldest first, so tables are added in seqno
//! order and the WAL can be trimmed from the front. A flush:
//! 1. writes every version of the memtable into `NNNNNN.sst.tmp`, syncs it, renames
//!    it to `NNNNNN.sst` and syncs the directory;
//! 2. logs a version edit (table added, oldest WAL still needed, last flushed seqno);
//! 3. installs a new read view without the memtable and with the table;
//! 4. deletes the WAL segments the memtable came from.
//!
//! A crash between any two steps leaves either an unnamed file (removed on open) or
//! a WAL that is replayed again, minus the seqnos the manifest says were flushed.
//! An error stops the thread and all writes (`Error::Background`).

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use parking_lot::{Condvar, Mutex};

use crate::error::{Error, Result};
use crate::manifest::{TableMeta, VersionEdit};
use crate::memtable::FrozenMemtable;
use crate::sstable::{Table, TableBuilder, TableOptions, table_file_name};
use crate::version::{ReadView, TableHandle};
use crate::wal::segment_file_name;

use super::DbCore;

/// Shared state between writers, `flush()` callers and the flush thread.
#[derive(Default)]
pub(crate) struct Background {
    pub(super) state: Mutex<BackgroundState>,
    /// Set once `state.error` is set; never cleared.
    pub(super) failed: AtomicBool,
    /// Set by `shut_down`: running compaction jobs stop at their next check.
    pub(super) closing: AtomicBool,
    /// Signalled when there may be work (a memtable frozen, a version changed), or on
    /// shutdown.
    pub(super) work: Condvar,
    /// Signalled after every flush and compaction, successful or not.
    pub(super) progress: Condvar,
}

#[derive(Default)]
pub(super) struct BackgroundState {
    pub(super) shutdown: bool,
    pub(super) error: Option<String>,
    /// Tables being compacted: no second task may take them.
    pub(super) busy: HashSet<u64>,
    /// Background compactions running now.
    pub(super) running_compactions: usize,
    /// Manual compactions in progress; background picking pauses meanwhile.
    pub(super) manual_compactions: usize,
}

impl Background {
    /// Wakes the flush and compaction threads to look for work.
    pub(crate) fn work_available(&self) {
        let _state = self.state.lock();
        self.work.notify_all();
    }

    /// The error that stopped writes, if any. Every write asks, so the common answer
    /// comes from an atomic flag without taking the lock.
    pub(crate) fn error(&self) -> Option<String> {
        if !self.failed.load(Ordering::Acquire) {
            return None;
        }
        self.state.lock().error.clone()
    }

    pub(crate) fn set_error(&self, why: &str) {
        let mut state = self.state.lock();
        self.set_error_locked(&mut state, why);
        self.progress.notify_all();
    }

    /// Records the first error that stops writes; the caller holds the state lock.
    pub(super) fn set_error_locked(&self, state: &mut BackgroundState, why: &str) {
        state.error.get_or_insert_with(|| why.to_string());
        self.failed.store(true, Ordering::Release);
    }

    pub(crate) fn shut_down(&self) {
        let mut state = self.state.lock();
        state.shutdown = true;
        self.closing.store(true, Ordering::Release);
        self.work.notify_all();
        self.progress.notify_all();
    }
}

impl DbCore {
    /// The flush thread's body.
    pub(crate) fn run_flusher(self: Arc<Self>) {
        loop {
            {
                let mut state = self.background.state.lock();
                while !state.shutdown && (state.error.is_some() || self.oldest_frozen().is_none()) {
                    self.background.work.wait(&mut state);
                }
                if state.shutdown {
                    return;
                }
            }
            let Some(frozen) = self.oldest_frozen() else { continue };
            let result = self.flush_memtable(&frozen);
            let mut state = self.background.state.lock();
            if let Err(e) = result {
                self.background.set_error_locked(&mut state, &format!("flush failed: {e}"));
            }
            self.background.progress.notify_all();
        }
    }

    fn oldest_frozen(&self) -> Option<FrozenMemtable> {
        self.view.load().frozen.last().cloned()
    }

    /// Waits while `pending()` holds, re-checking it after every flush and
    /// compaction; fails if background work failed or stopped while it still holds.
    ///
    /// `pending` is checked under the state lock, and a flush installs its read view
    /// before it takes that lock to count itself and notify; so a flush that finishes
    /// between the check and the wait is never missed.
    pub(crate) fn wait_for_flushes_while(&self, mut pending: impl FnMut() -> bool) -> Result<()> {
        let mut state = self.background.state.lock();
        loop {
            if !pending() {
                return Ok(());
            }
            if let Some(why) = &state.error {
                return Err(Error::Background(why.clone()));
            }
            if state.shutdown {
                return Err(Error::Closed);
            }
            self.background.progress.wait(&mut state);
        }
    }

    /// Waits until no frozen memtable whose writes began at or before WAL segment
    /// `first_wal` remains.
    pub(crate) fn wait_until_flushed(&self, first_wal: u64) -> Result<()> {
        self.wait_for_flushes_while(|| {
            self.view.load().frozen.iter().any(|frozen| frozen.first_wal() <= first_wal)
        })
    }

    fn flush_memtable(&self, frozen: &FrozenMemtable) -> Result<()> {
        let started = Instant::now();
        let handle = if frozen.is_empty() { None } else { Some(self.write_table(frozen)?) };

        // The memtable after this one holds every write not yet in a table.
        let next_first_wal = {
            let view = self.view.load();
            let position =
                view.frozen.iter().position(|f| Arc::ptr_eq(f.memtable(), frozen.memtable()));
            match position {
                Some(0) | None => view.active.first_wal(),
                Some(i) => view.frozen[i - 1].first_wal(),
            }
        };
        self.log_and_apply(VersionEdit {
            log_number: Some(next_first_wal),
            last_seqno: Some(frozen.max_lsn()),
            added: handle.iter().map(|h| h.meta.clone()).collect(),
            ..VersionEdit::default()
        })?;

        // The manifest no longer needs these segments; delete them before the new view
        // wakes `flush()` callers, so a caller that then looks at the disk sees them gone.
        for number in frozen.first_wal()..next_first_wal {
            // Leftovers are harmless: open removes segments the manifest no longer needs.
            let _ = self.fs.remove_file(&self.dir.join(segment_file_name(number)));
        }
        // Counted before the new view wakes `flush()` callers, so they see it.
        self.stats.flushes.fetch_add(1, Ordering::Relaxed);
        self.stats.flush_nanos.fetch_add(started.elapsed().as_nanos() as u64, Ordering::Relaxed);
        {
            let _install = self.install_lock.lock();
            let view = self.view.load();
            let frozen_left = view
                .frozen
                .iter()
                .filter(|f| !Arc::ptr_eq(f.memtable(), frozen.memtable()))
                .cloned()
                .collect();
            let version = match &handle {
                Some(h) => Arc::new(view.version.apply(std::slice::from_ref(h), &HashSet::new())),
                None => view.version.clone(),
            };
            self.view.store(Arc::new(ReadView {
                active: view.active.clone(),
                frozen: frozen_left,
                version,
            }));
        }
        // A new level-0 table may give compaction work and change write pressure.
        self.update_write_pressure();
        Ok(())
    }

    /// Writes every version in `frozen` to a new level-0 table and opens it.
    fn write_table(&self, frozen: &FrozenMemtable) -> Result<Arc<TableHandle>> {
        let number = self.new_file_number();
        let path = self.dir.join(table_file_name(number));
        let temp = self.dir.join(format!("{}.tmp", table_file_name(number)));
        let file = self.fs.create(&temp)?;
        let mut builder = TableBuilder::new(file, TableOptions::from(&self.options));
        for entry in frozen.entries() {
            builder.add(&entry)?;
        }
        for tombstone in frozen.range_tombstones() {
            builder.add_range_tombstone(&tombstone)?;
        }
        let properties = builder.finish()?;
        self.fs.rename(&temp, &path)?;
        self.fs.sync_dir(&self.dir)?;
        let table = Arc::new(Table::open(&*self.fs, &path, number, self.cache.clone())?);
        self.stats.flush_bytes.fetch_add(table.file_size(), Ordering::Relaxed);
        let meta = TableMeta {
            number,
            level: 0,
            size: table.file_size(),
            smallest: properties.smallest_key.clone(),
            largest: properties.largest_key.clone(),
            min_seqno: properties.min_seqno,
            max_seqno: properties.max_seqno,
        };
        Ok(Arc::new(TableHandle::new(table, meta, self.fs.clone())))
    }
}
