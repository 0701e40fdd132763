//! The flush thread: frozen memtables become level-0 tables.
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
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::manifest::{TableMeta, VersionEdit};
use crate::memtable::FrozenMemtable;
use crate::sstable::{TableOptions, write_table};
use crate::version::{ReadView, TableHandle};
use crate::wal::segment_file_name;

use super::DbCore;
use super::background_state::Stopped;

/// The first wait before a flush that ran out of space is retried; it doubles on
/// every failure up to [`MAX_RETRY_WAIT`].
const FIRST_RETRY_WAIT: Duration = Duration::from_millis(20);
const MAX_RETRY_WAIT: Duration = Duration::from_secs(1);

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
    pub(crate) fn wait_for_flushes_while(&self, pending: impl FnMut() -> bool) -> Result<()> {
        self.wait_while(pending, false)
    }

    /// Like [`wait_for_flushes_while`](Self::wait_for_flushes_while), for work only
    /// compaction can relieve: fails with `Error::NoSpace` once a compaction ran out
    /// of space (until one succeeds), rather than wait as long as the disk is full.
    pub(crate) fn wait_for_compactions_while(&self, pending: impl FnMut() -> bool) -> Result<()> {
        self.wait_while(pending, true)
    }

    fn wait_while(&self, mut pending: impl FnMut() -> bool, on_compaction: bool) -> Result<()> {
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
            if on_compaction && let Some(message) = &state.compaction_no_space {
                return Err(Error::NoSpace { dir: self.dir.clone(), message: message.clone() });
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
        let _span = tracing::info_span!(
            target: "aeternusdb::flush",
            "flush",
            dir = %self.dir.display(),
            memtable_bytes = frozen.approximate_size(),
            entries = frozen.point_count(),
        )
        .entered();
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
            if let Err(e) = self.fs.remove_file(&self.dir.join(segment_file_name(number)))
                && e.kind() != std::io::ErrorKind::NotFound
            {
                tracing::warn!(
                    target: "aeternusdb::flush",
                    segment = number,
                    error = %e,
                    "an obsolete WAL segment could not be removed; the next open removes it"
                );
            }
        }
        // Counted before the new view wakes `flush()` callers, so they see it.
        self.stats.flushes.fetch_add(1, Ordering::Relaxed);
        self.stats.flush_nanos.fetch_add(started.elapsed().as_nanos() as u64, Ordering::Relaxed);
        tracing::info!(
            target: "aeternusdb::flush",
            table = handle.as_ref().map(|h| h.meta.number),
            table_bytes = handle.as_ref().map_or(0, |h| h.meta.size),
            duration_us = started.elapsed().as_micros() as u64,
            "flushed"
        );
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
        Ok(Arc::new(TableHandle::new(Arc::new(table), meta, self.obsolete_tables.clone())))
    }
}
