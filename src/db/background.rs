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
//!
//! # Errors
//! Running out of space in step 1, or in step 2 when the manifest took its edit back,
//! removes the new table and is retried with backoff; meanwhile writes fail with
//! `Error::NoSpace`, and they resume by themselves once a flush succeeds. Any other
//! error stops all writes until reopen (`Error::Background`).

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

use crate::error::{Error, Result};
use crate::manifest::{TableMeta, VersionEdit};
use crate::memtable::FrozenMemtable;
use crate::sstable::{TableOptions, write_table};
use crate::version::{ReadView, TableHandle};
use crate::wal::segment_file_name;

use super::DbCore;

/// Shared state between writers, `flush()` callers and the flush thread.
#[derive(Default)]
pub(crate) struct Background {
    pub(super) state: Mutex<BackgroundState>,
    /// Set while `state.error` is set.
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
    pub(super) error: Option<Stopped>,
    /// Tables being compacted: no second task may take them.
    pub(super) busy: HashSet<u64>,
    /// Background compactions running now.
    pub(super) running_compactions: usize,
    /// Manual compactions in progress (on their callers' threads). Meanwhile
    /// background picking only relieves write pressure, so the manual steps find
    /// their inputs idle; `close()` waits until this is 0.
    pub(super) manual_compactions: usize,
    /// After a compaction ran out of space, none is picked before this instant.
    pub(super) compaction_backoff_until: Option<Instant>,
}

/// Why writes are refused: the error classes of `docs/architecture.md`.
#[derive(Debug, Clone)]
pub(crate) enum Stopped {
    /// Until reopen: a failed WAL or manifest write or fsync, a flush or compaction
    /// that failed for a reason other than space.
    Hard(String),
    /// Until a flush succeeds again: a flush found the disk full. The flush thread
    /// retries with backoff, so writes resume by themselves once there is space.
    NoSpace { dir: PathBuf, message: String },
}

impl Stopped {
    pub(crate) fn to_error(&self) -> Error {
        match self {
            Stopped::Hard(why) => Error::Background(why.clone()),
            Stopped::NoSpace { dir, message } => {
                Error::NoSpace { dir: dir.clone(), message: message.clone() }
            }
        }
    }
}

/// The first wait before a flush that ran out of space is retried; it doubles on
/// every failure up to [`MAX_RETRY_WAIT`].
const FIRST_RETRY_WAIT: Duration = Duration::from_millis(20);
const MAX_RETRY_WAIT: Duration = Duration::from_secs(1);
/// How long compaction waits after running out of space before it picks again.
pub(super) const COMPACTION_NO_SPACE_WAIT: Duration = Duration::from_secs(1);

impl Background {
    /// The error that stopped writes, if any. Every write asks, so the common answer
    /// comes from an atomic flag without taking the lock.
    pub(crate) fn error(&self) -> Option<Stopped> {
        if !self.failed.load(Ordering::Acquire) {
            return None;
        }
        self.state.lock().error.clone()
    }

    /// Stops writes until reopen.
    pub(crate) fn set_error(&self, why: &str) {
        let mut state = self.state.lock();
        self.set_error_locked(&mut state, why);
        self.progress.notify_all();
    }

    /// Records a hard error (it replaces a no-space one, and an earlier hard error is
    /// kept); the caller holds the state lock.
    pub(super) fn set_error_locked(&self, state: &mut BackgroundState, why: &str) {
        if !matches!(state.error, Some(Stopped::Hard(_))) {
            state.error = Some(Stopped::Hard(why.to_string()));
        }
        self.failed.store(true, Ordering::Release);
    }

    /// Records that a flush found the disk full, unless writes are already stopped.
    fn set_no_space_locked(&self, state: &mut BackgroundState, dir: &Path, message: String) {
        state.error.get_or_insert(Stopped::NoSpace { dir: dir.to_path_buf(), message });
        self.failed.store(true, Ordering::Release);
    }

    /// Lifts a no-space stop after a flush succeeded (a hard error stays).
    fn clear_no_space_locked(&self, state: &mut BackgroundState) {
        if matches!(state.error, Some(Stopped::NoSpace { .. })) {
            state.error = None;
            self.failed.store(false, Ordering::Release);
        }
    }

    pub(crate) fn shut_down(&self) {
        let mut state = self.state.lock();
        state.shutdown = true;
        self.closing.store(true, Ordering::Release);
        self.work.notify_all();
        self.progress.notify_all();
    }

    /// After [`shut_down`](Self::shut_down): waits until every manual compaction has
    /// returned (they see `shutdown` at their next safe point and stop).
    pub(crate) fn wait_for_manual_compactions(&self) {
        let mut state = self.state.lock();
        while state.manual_compactions > 0 {
            self.progress.wait(&mut state);
        }
    }
}

impl DbCore {
    /// The flush thread's body.
    ///
    /// A flush that finds the disk full is retried after a wait that doubles up to
    /// [`MAX_RETRY_WAIT`]; meanwhile writes fail with `Error::NoSpace`, and the first
    /// flush that succeeds lets them go on. Any other failure stops writes until
    /// reopen.
    pub(crate) fn run_flusher(self: Arc<Self>) {
        let mut retry_wait = FIRST_RETRY_WAIT;
        loop {
            {
                let mut state = self.background.state.lock();
                loop {
                    if state.shutdown {
                        return;
                    }
                    match &state.error {
                        Some(Stopped::Hard(_)) => {}
                        Some(Stopped::NoSpace { .. }) => {
                            // A shutdown or new work wakes the wait early.
                            let _ = self.background.work.wait_for(&mut state, retry_wait);
                            if !state.shutdown {
                                break;
                            }
                            continue;
                        }
                        None if self.oldest_frozen().is_some() => break,
                        None => {}
                    }
                    self.background.work.wait(&mut state);
                }
            }
            let Some(frozen) = self.oldest_frozen() else {
                // Nothing left to flush: a memtable is no longer waiting for space.
                self.background.clear_no_space_locked(&mut self.background.state.lock());
                continue;
            };
            let result = self.flush_memtable(&frozen);
            let mut state = self.background.state.lock();
            match result {
                Ok(()) => {
                    retry_wait = FIRST_RETRY_WAIT;
                    self.background.clear_no_space_locked(&mut state);
                }
                Err(Error::NoSpace { message, .. }) => {
                    retry_wait = (retry_wait * 2).min(MAX_RETRY_WAIT);
                    self.background.set_no_space_locked(&mut state, &self.dir, message);
                }
                Err(e) => {
                    self.background.set_error_locked(&mut state, &format!("flush failed: {e}"))
                }
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
            if let Some(stopped) = &state.error {
                return Err(stopped.to_error());
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
        // Until the edit below names it, the table is the flush's alone: running out of
        // space while writing it loses nothing (the memtable stays), so it is retried.
        let handle = match frozen.is_empty() {
            true => None,
            false => {
                Some(self.write_table(frozen).map_err(|e| self.no_space_or(e, "writing a flush"))?)
            }
        };

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
        })
        .inspect_err(|e| {
            if let (Error::NoSpace { .. }, Some(table)) = (e, &handle) {
                // Nothing names the table: its space comes back for the retry.
                table.mark_obsolete();
            }
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
        // A new level-0 table may give compaction work and change write pressure.
        self.install_view(|view| ReadView {
            active: view.active.clone(),
            frozen: view
                .frozen
                .iter()
                .filter(|f| !Arc::ptr_eq(f.memtable(), frozen.memtable()))
                .cloned()
                .collect(),
            version: match &handle {
                Some(h) => Arc::new(view.version.apply(std::slice::from_ref(h), &HashSet::new())),
                None => view.version.clone(),
            },
        });
        Ok(())
    }

    /// Writes every version in `frozen` to a new level-0 table and opens it. On
    /// failure the files it made are removed, so a full disk gets its space back.
    fn write_table(&self, frozen: &FrozenMemtable) -> Result<Arc<TableHandle>> {
        let number = self.new_file_number();
        let options = TableOptions::from(&self.options);
        let (table, properties) =
            write_table(&*self.fs, &self.dir, number, options, self.cache.clone(), |builder| {
                for entry in frozen.entries() {
                    builder.add(&entry)?;
                }
                for tombstone in frozen.range_tombstones() {
                    builder.add_range_tombstone(&tombstone)?;
                }
                Ok(())
            })?;
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
        Ok(Arc::new(TableHandle::new(Arc::new(table), meta, self.fs.clone())))
    }
}
