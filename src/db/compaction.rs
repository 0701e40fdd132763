//! Running compactions: background threads, manual `compact`/`compact_range`, and
//! installing their results.
//!
//! # Protocol for one task
//! 1. Pick under the background lock: the strategy sees the current version's
//!    summary and the tables already being compacted (`busy`), and its inputs are
//!    marked busy before the lock is released. No two tasks share a table.
//! 2. Run without locks: merge the inputs into new tables (or, for a trivial move,
//!    reuse the file at a new level).
//! 3. Log one version edit (outputs added, inputs removed; synced), then install a new
//!    read view with the new version under `install_lock`.
//! 4. Mark the inputs obsolete: each file is deleted when the last reader holding it
//!    lets go. A crash before that leaves files the manifest no longer names, which
//!    the next open removes.
//!
//! A failed compaction stops writes (`Error::Background`) like a failed flush; its
//! partial outputs are removed by the job, or by the next open. A compaction that
//! runs out of space while writing its outputs stops nothing: compaction pauses for
//! a while and writes go on as long as flushes find space.
//!
//! Manual compactions run their steps on the caller's thread, each step reserving
//! its inputs like a background task (waiting while a background task holds one).
//! Meanwhile background tasks are picked only to relieve write pressure. `close()`
//! waits for manual compactions before it releases the directory.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use crate::compaction::{
    CompactionJob, CompactionTask, LevelsSummary, TableSummary, WritePressure,
};
use crate::error::{Error, Result};
use crate::manifest::{TableMeta, VersionEdit};
use crate::sstable::TableOptions;
use crate::version::{ReadView, TableHandle, Version};

use super::DbCore;
use super::background_state::COMPACTION_NO_SPACE_WAIT;

impl DbCore {
    /// A compaction thread's body.
    pub(crate) fn run_compactor(self: Arc<Self>) {
        loop {
            let task = {
                let mut state = self.background.state.lock();
                loop {
                    if state.shutdown {
                        return;
                    }
                    // While a manual compaction runs, only write pressure is relieved:
                    // it must not wait behind background work it did not ask for, and
                    // writers must not stall behind it.
                    let may_pick = state.manual_compactions == 0
                        || self.write_pressure() != WritePressure::None;
                    if let Some(until) = state.compaction_backoff_until {
                        match until.checked_duration_since(Instant::now()) {
                            Some(left) => {
                                let _ = self.background.work.wait_for(&mut state, left);
                                continue;
                            }
                            None => state.compaction_backoff_until = None,
                        }
                    }
                    if state.error.is_none()
                        && may_pick
                        && self.options.auto_compaction
                        && let Some(task) = self.strategy.pick(&self.levels_summary(), &state.busy)
                    {
                        state.busy.extend(task.inputs.iter().map(|&(_, number)| number));
                        state.running_compactions += 1;
                        break task;
                    }
                    self.background.work.wait(&mut state);
                }
            };
            let result = self.run_compaction(&task);
            self.finish_task(&task, &result);
        }
    }

    /// Releases a task's inputs and reports its outcome to waiters. A task stopped by
    /// `close()` (`Error::Closed`) failed nothing.
    fn finish_task(&self, task: &CompactionTask, result: &Result<()>) {
        let mut state = self.background.state.lock();
        for (_, number) in &task.inputs {
            state.busy.remove(number);
        }
        state.running_compactions -= 1;
        match result {
            Ok(()) => state.compaction_no_space = None,
            Err(Error::Closed) => {
                tracing::debug!(target: "aeternusdb::compaction", "compaction stopped by close()")
            }
            // Its outputs are gone again; compaction pauses, writes go on while flushes
            // still find space (writers stopped on compaction get `NoSpace`).
            Err(Error::NoSpace { message, .. }) => {
                tracing::warn!(
                    target: "aeternusdb::compaction",
                    error = %message,
                    pause_ms = COMPACTION_NO_SPACE_WAIT.as_millis() as u64,
                    "compaction ran out of space: paused"
                );
                state.compaction_backoff_until = Some(Instant::now() + COMPACTION_NO_SPACE_WAIT);
                state.compaction_no_space = Some(message.clone());
            }
            Err(e) => {
                self.background.set_error_locked(&mut state, &format!("compaction failed: {e}"))
            }
        }
        self.background.work.notify_all();
        self.background.progress.notify_all();
    }

    /// The current version as the strategies see it.
    pub(crate) fn levels_summary(&self) -> LevelsSummary {
        summarize(&self.view.load().version)
    }

    /// Executes `task` and installs its result.
    fn run_compaction(&self, task: &CompactionTask) -> Result<()> {
        let started = Instant::now();
        let inputs: Vec<Arc<TableHandle>> = {
            let view = self.view.load();
            let wanted: HashSet<u64> = task.inputs.iter().map(|&(_, n)| n).collect();
            view.version.tables().filter(|t| wanted.contains(&t.meta.number)).cloned().collect()
        };
        if inputs.len() != task.inputs.len() {
            return Err(Error::Background("a compaction input vanished from the version".into()));
        }
        let _span = tracing::info_span!(
            target: "aeternusdb::compaction",
            "compaction",
            dir = %self.dir.display(),
            reason = ?task.reason,
            from_level = task.inputs.iter().map(|&(level, _)| level).min().unwrap_or(0),
            to_level = task.output_level,
            input_tables = inputs.len(),
            input_bytes = inputs.iter().map(|t| t.meta.size).sum::<u64>(),
        )
        .entered();
        let removed: HashSet<u64> = inputs.iter().map(|t| t.meta.number).collect();
        let removed_edit: Vec<(u32, u64)> =
            inputs.iter().map(|t| (t.meta.level, t.meta.number)).collect();

        if task.move_only {
            let added: Vec<Arc<TableHandle>> =
                inputs.iter().map(|input| Arc::new(input.moved_to(task.output_level))).collect();
            self.log_and_apply(VersionEdit {
                added: added.iter().map(|h| h.meta.clone()).collect(),
                removed: removed_edit,
                ..VersionEdit::default()
            })?;
            // The same files live on under new handles sharing their deletion flags.
            self.install_tables(&added, &removed);
            self.stats.trivial_moves.fetch_add(1, Ordering::Relaxed);
            tracing::info!(
                target: "aeternusdb::compaction",
                trivial_move = true,
                output_tables = added.len(),
                output_bytes = added.iter().map(|t| t.meta.size).sum::<u64>(),
                duration_us = started.elapsed().as_micros() as u64,
                "compacted"
            );
            return Ok(());
        }

        let allocate = || self.new_file_number();
        let result = CompactionJob {
            inputs: inputs.iter().map(|t| t.table.clone()).collect(),
            snapshots: self.snapshots.live_seqnos(),
            drop_tombstones: task.drop_tombstones,
            target_file_size: task.target_file_size,
            options: TableOptions::from(&self.options),
            fs: &*self.fs,
            dir: &self.dir,
            new_file_number: &allocate,
            cache: self.cache.clone(),
            cancelled: &|| self.background.closing.load(Ordering::Acquire),
        }
        .run()
        // The job removed its outputs; nothing names them yet.
        .map_err(|e| self.no_space_or(e, "writing a compaction"))?;
        let job_stats = result.stats;
        let added: Vec<Arc<TableHandle>> = result
            .outputs
            .into_iter()
            .map(|output| {
                let p = &output.properties;
                let meta = TableMeta {
                    number: output.number,
                    level: task.output_level,
                    size: output.table.file_size(),
                    smallest: p.smallest_key.clone(),
                    largest: p.largest_key.clone(),
                    min_seqno: p.min_seqno,
                    max_seqno: p.max_seqno,
                };
                Arc::new(TableHandle::new(output.table, meta, self.obsolete_tables.clone()))
            })
            .collect();
        // On failure the outputs are left on disk: the edit may have reached the
        // manifest file even though its sync failed, and then the next open needs
        // them. If it did not, that open removes them as files the manifest does not
        // name.
        self.log_and_apply(VersionEdit {
            added: added.iter().map(|h| h.meta.clone()).collect(),
            removed: removed_edit,
            ..VersionEdit::default()
        })
        .inspect_err(|e| {
            if matches!(e, Error::NoSpace { .. }) {
                // The manifest took the edit back: nothing names the outputs.
                added.iter().for_each(|output| output.mark_obsolete());
            }
        })?;
        let c = &self.stats;
        c.compactions.fetch_add(1, Ordering::Relaxed);
        c.compaction_bytes_read.fetch_add(job_stats.bytes_read, Ordering::Relaxed);
        c.compaction_bytes_written.fetch_add(job_stats.bytes_written, Ordering::Relaxed);
        c.compaction_nanos.fetch_add(started.elapsed().as_nanos() as u64, Ordering::Relaxed);
        tracing::info!(
            target: "aeternusdb::compaction",
            trivial_move = false,
            output_tables = added.len(),
            output_bytes = job_stats.bytes_written,
            entries_in = job_stats.entries_in,
            entries_out = job_stats.entries_out,
            duration_us = started.elapsed().as_micros() as u64,
            "compacted"
        );
        self.install_tables(&added, &removed);
        for input in &inputs {
            input.mark_obsolete();
        }
        Ok(())
    }

    /// Installs a version with `added` and without `removed`, keeping the memtables.
    pub(crate) fn install_tables(&self, added: &[Arc<TableHandle>], removed: &HashSet<u64>) {
        self.install_view(|view| ReadView {
            version: Arc::new(view.version.apply(added, removed)),
            ..view.clone()
        });
    }

    /// Replaces the read view with `make(current)` and recomputes the cached write
    /// pressure from the new version, both under `install_lock`: so the cached value
    /// is always the one of the installed version, never a stale computation stored
    /// over a newer one by a slower thread.
    pub(crate) fn install_view(&self, make: impl FnOnce(&ReadView) -> ReadView) {
        let install = self.install_lock.lock();
        let view = make(&self.view.load());
        let pressure = self.write_pressure_of(&view.version);
        self.memory.memtables_of(&view);
        self.view.store(Arc::new(view));
        self.write_pressure.store(pressure as u8, Ordering::Release);
        drop(install);
        // Waiters are woken under the background lock, so a writer that checked the
        // pressure before it waits never misses the change.
        let _state = self.background.state.lock();
        self.background.work.notify_all();
        self.background.progress.notify_all();
    }

    /// Recomputes the cached write pressure from the current version.
    pub(crate) fn refresh_write_pressure(&self) {
        self.install_view(ReadView::clone);
    }

    /// How hard writers are held back with `version` in place.
    ///
    /// Without automatic compaction nothing would relieve the pressure, so writers are
    /// never held back by it.
    pub(crate) fn write_pressure_of(&self, version: &Version) -> WritePressure {
        if self.options.auto_compaction {
            self.strategy.write_pressure(&summarize(version))
        } else {
            WritePressure::None
        }
    }

    /// The current write pressure.
    pub(crate) fn write_pressure(&self) -> WritePressure {
        match self.write_pressure.load(Ordering::Acquire) {
            p if p == WritePressure::Stop as u8 => WritePressure::Stop,
            p if p == WritePressure::Slowdown as u8 => WritePressure::Slowdown,
            _ => WritePressure::None,
        }
    }

    /// Compacts the keys in `range` (everything when `None`) level by level, on the
    /// caller's thread. Each step marks its inputs busy like a background task, so
    /// background compaction may go on relieving write pressure meanwhile; `close()`
    /// stops the job at its next step or output boundary and waits for it.
    pub(crate) fn compact_manually(&self, range: Option<(&[u8], &[u8])>) -> Result<()> {
        // One manual compaction at a time: two would wait for each other's inputs.
        let _manual = self.manual_compaction.lock();
        {
            let mut state = self.background.state.lock();
            if state.shutdown {
                return Err(Error::Closed);
            }
            state.manual_compactions += 1;
        }
        let result = (|| {
            for level in 0..self.strategy.num_levels() as u32 {
                if let Some(task) = self.reserve_manual_step(range, level)? {
                    let result = self.run_compaction(&task);
                    self.finish_task(&task, &result);
                    result?;
                }
            }
            Ok(())
        })();
        if result.is_ok() && range.is_none() {
            // Right after a full compaction the tables hold exactly the live data (and
            // what open snapshots pin): the best baseline for space amplification.
            let bytes = self.view.load().version.tables().map(|t| t.meta.size).sum();
            self.stats.full_compaction_bytes.store(bytes, Ordering::Relaxed);
        }
        let mut state = self.background.state.lock();
        state.manual_compactions -= 1;
        self.background.work.notify_all();
        self.background.progress.notify_all();
        drop(state);
        result
    }

    /// Picks the manual step at `level` and marks its inputs busy, waiting while a
    /// background task holds any of them. `None` when the level has nothing to do.
    fn reserve_manual_step(
        &self,
        range: Option<(&[u8], &[u8])>,
        level: u32,
    ) -> Result<Option<CompactionTask>> {
        let mut state = self.background.state.lock();
        loop {
            if state.shutdown {
                return Err(Error::Closed);
            }
            if let Some(stopped) = &state.error {
                return Err(stopped.to_error());
            }
            let Some(task) = self.strategy.pick_manual(&self.levels_summary(), range, level) else {
                return Ok(None);
            };
            if task.inputs.iter().all(|(_, number)| !state.busy.contains(number)) {
                state.busy.extend(task.inputs.iter().map(|&(_, number)| number));
                state.running_compactions += 1;
                return Ok(Some(task));
            }
            self.background.progress.wait(&mut state);
        }
    }
}

/// What the strategies see of a version.
pub(crate) fn summarize(version: &Version) -> LevelsSummary {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    LevelsSummary {
        levels: version
            .levels()
            .iter()
            .map(|tables| {
                tables
                    .iter()
                    .map(|t| {
                        let p = t.table.properties();
                        TableSummary {
                            number: t.meta.number,
                            level: t.meta.level,
                            size: t.meta.size,
                            smallest: t.meta.smallest.clone(),
                            largest: t.meta.largest.clone(),
                            min_seqno: t.meta.min_seqno,
                            max_seqno: t.meta.max_seqno,
                            entries: p.entry_count,
                            tombstones: p
                                .point_delete_count
                                .saturating_add(p.range_tombstone_count),
                            age_secs: now.saturating_sub(p.created_at_secs),
                            scans: t.scans.load(Ordering::Relaxed),
                        }
                    })
                    .collect()
            })
            .collect(),
    }
}
