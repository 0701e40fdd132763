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
//! partial outputs are removed by the job, or by the next open.
//!
//! Manual compactions pause background picking, wait for running tasks, then run
//! their steps on the caller's thread.

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
                    if state.error.is_none()
                        && state.manual_compactions == 0
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
            self.finish_task(&task, result);
        }
    }

    /// Releases a task's inputs and reports its outcome to waiters.
    fn finish_task(&self, task: &CompactionTask, result: Result<()>) {
        let mut state = self.background.state.lock();
        for (_, number) in &task.inputs {
            state.busy.remove(number);
        }
        state.running_compactions -= 1;
        if let Err(e) = result {
            self.background.set_error_locked(&mut state, &format!("compaction failed: {e}"));
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
        .run()?;
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
                Arc::new(TableHandle::new(output.table, meta, self.fs.clone()))
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
        })?;
        let c = &self.stats;
        c.compactions.fetch_add(1, Ordering::Relaxed);
        c.compaction_bytes_read.fetch_add(job_stats.bytes_read, Ordering::Relaxed);
        c.compaction_bytes_written.fetch_add(job_stats.bytes_written, Ordering::Relaxed);
        c.compaction_nanos.fetch_add(started.elapsed().as_nanos() as u64, Ordering::Relaxed);
        self.install_tables(&added, &removed);
        for input in &inputs {
            input.mark_obsolete();
        }
        Ok(())
    }

    /// Installs a version with `added` and without `removed`, keeping the memtables.
    pub(crate) fn install_tables(&self, added: &[Arc<TableHandle>], removed: &HashSet<u64>) {
        {
            let _install = self.install_lock.lock();
            let view = self.view.load();
            self.view.store(Arc::new(ReadView {
                active: view.active.clone(),
                frozen: view.frozen.clone(),
                version: Arc::new(view.version.apply(added, removed)),
            }));
        }
        self.update_write_pressure();
    }

    /// Recomputes how hard writers are held back, after the version changed.
    ///
    /// Without automatic compaction nothing would relieve the pressure, so writers are
    /// never held back by it. Waiters are woken under the background lock, so a
    /// writer checking the pressure before it waits never misses the change.
    pub(crate) fn update_write_pressure(&self) {
        let pressure = if self.options.auto_compaction {
            self.strategy.write_pressure(&self.levels_summary())
        } else {
            WritePressure::None
        };
        self.write_pressure.store(pressure as u8, Ordering::Release);
        let _state = self.background.state.lock();
        self.background.work.notify_all();
        self.background.progress.notify_all();
    }

    /// The current write pressure.
    pub(crate) fn write_pressure(&self) -> WritePressure {
        match self.write_pressure.load(Ordering::Acquire) {
            p if p == WritePressure::Stop as u8 => WritePressure::Stop,
            p if p == WritePressure::Slowdown as u8 => WritePressure::Slowdown,
            _ => WritePressure::None,
        }
    }

    /// Flushes, then compacts the keys in `range` (everything when `None`) level by
    /// level, on the caller's thread, with background compaction paused.
    pub(crate) fn compact_manually(&self, range: Option<(&[u8], &[u8])>) -> Result<()> {
        // One manual compaction at a time: two would pick the same inputs.
        let _manual = self.manual_compaction.lock();
        {
            let mut state = self.background.state.lock();
            state.manual_compactions += 1;
            while state.running_compactions > 0 && state.error.is_none() && !state.shutdown {
                self.background.progress.wait(&mut state);
            }
        }
        let result = (|| {
            for level in 0..self.strategy.num_levels() as u32 {
                self.check_writable()?;
                if let Some(task) = self.strategy.pick_manual(&self.levels_summary(), range, level)
                {
                    self.run_compaction(&task).inspect_err(|e| {
                        self.set_background_error(&format!("compaction failed: {e}"));
                    })?;
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
        drop(state);
        result
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
                        }
                    })
                    .collect()
            })
            .collect(),
    }
}
