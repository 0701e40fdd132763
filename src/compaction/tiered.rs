//! Size-tiered compaction (STCS), as in the published AeternusDB 1.0 and Cassandra's
//! `SizeTieredCompactionStrategy`.
//!
//! # Rules
//! Every table lives in level 0; tables may overlap.
//! 1. **Buckets.** The level-0 tables not already being compacted are sorted by size
//!    (ascending, ties by file number) and walked in that order. A table joins the
//!    current bucket when its size is within `[bucket_low, bucket_high]` × the bucket's
//!    average size (both ends inclusive), or when both it and the bucket's average are
//!    below `min_sstable_size` (all tiny tables share one bucket: a fresh flush is about
//!    `write_buffer_size`, and flushes of different fullness must not scatter into
//!    buckets of one). Otherwise it opens a new bucket. Because the walk is sorted, a
//!    table can only ever join the most recent bucket.
//! 2. **Minor compaction.** A bucket with at least `min_threshold` tables qualifies; at
//!    most `max_threshold` of its tables (the smallest) are merged. Among qualifying
//!    buckets the one with the **most tables** (after the cap) wins, ties going to the
//!    **smallest average size**. Most tables first because a minor compaction's job is
//!    to cut the table count, which is what read amplification and [`WritePressure`]
//!    measure; among equals the smaller bucket is the cheaper I/O and finishes sooner.
//! 3. **Tombstone compaction.** When no bucket qualifies, one table whose
//!    [`TableSummary::tombstone_ratio`] is above `tombstone_ratio`, whose age is at
//!    least `tombstone_min_age_secs` and whose tombstones may be dropped (rule 5) is
//!    rewritten alone; the highest ratio wins (ties: oldest file number). A table whose
//!    tombstones could not be dropped is skipped: rewriting it would change nothing and
//!    it would be picked again at once. (With `tombstone_min_age_secs == 0`, a table
//!    whose tombstones a live snapshot still pins is rewritten again after each
//!    rewrite; the default age of a day bounds that.)
//! 4. **Relief.** When rules 2 and 3 pick nothing and writes are stopped (rule 7 says
//!    [`WritePressure::Stop`]), typically because the tables differ too much in size for
//!    any bucket to fill, the idle level-0 tables are sorted by size and the smallest
//!    `max_threshold` of them are merged, if that is at least two tables and the merge
//!    shrinks the table count. Otherwise writers would wait forever for a compaction
//!    nothing picks. The reason is [`CompactionReason::Relief`].
//! 5. **Dropping tombstones.** `drop_tombstones` is true only when no table outside the
//!    inputs (busy or not) overlaps the inputs' key hull with a `min_seqno` below the
//!    inputs' largest `max_seqno`: then nothing outside can hold an older version that
//!    an input tombstone hides. It is computed for every task, never assumed.
//! 6. **Manual compaction** ([`CompactionStrategy::pick_manual`]) at level 0 merges every
//!    table that intersects the range (all tables when there is none), in any level
//!    (a database last compacted by the leveled strategy has deeper levels), into one
//!    task, when that is at least two tables or one table with tombstones. The reason
//!    is [`CompactionReason::Major`] without a range, [`CompactionReason::Manual`] with
//!    one. Other levels hold nothing: `None`.
//! 7. **Write pressure** compares `n - (m - 1)` against `slowdown_tables` and
//!    `stop_tables`, where `n` is the level-0 table count (busy or not) and `m` is the
//!    fewest tables their bytes could occupy, `ceil(bytes / target_file_size)` (at
//!    least 1). While the data fits in one target-sized table that is the table count;
//!    tables a merge could not shrink (see Output size) do not count, so data larger
//!    than `stop_tables` × `target_file_size` does not stop writes for good.
//!
//! # Output size
//! Outputs are cut at `target_file_size` (default 256 MiB), between user keys. A table
//! of at most 256 MiB keeps its index and filter blocks (each at most about as large
//! as the data they describe) under the reader's 512 MiB block limit for any keys, so
//! the format's limits cannot be reached by point data; the table builder refuses a
//! block beyond them with `Error::InvalidArgument` before writing it. A merge must
//! shrink the table count (`n` tables of `s` bytes make `ceil(s / target)`), so tables
//! that reached the target stop being merged: the target is the size of the largest
//! tier. It also bounds every automatic merge but a tombstone rewrite: shrinking the
//! count needs `s <= (n - 1) × target`, less than `max_threshold` × `target_file_size`
//! (8 GiB by default).
//!
//! # Invariants
//! - Outputs go to level 0; every input of a task picked by [`CompactionStrategy::pick`]
//!   is a level-0 table of the summary that is not in `busy` (manual tasks may also take
//!   tables of deeper levels, see rule 6).
//! - A minor task has between `min_threshold` and `max_threshold` inputs; a relief
//!   task has between 2 and `max_threshold`, the smallest idle tables, and is only
//!   picked while writes are stopped; a tombstone task has one, and may drop its
//!   tombstones.

use std::collections::HashSet;

use super::{
    CompactionReason, CompactionStrategy, CompactionTask, LevelsSummary, TableSummary,
    WritePressure, hull_neighbours,
};
pub use crate::options::SizeTieredOptions;

/// Size-tiered compaction: merges level-0 tables of similar size (see the module doc).
#[derive(Debug, Clone)]
pub struct SizeTiered {
    options: SizeTieredOptions,
}

impl SizeTiered {
    /// A strategy with `options`, which must pass [`SizeTieredOptions::validate`].
    pub fn new(options: SizeTieredOptions) -> Result<Self, String> {
        options.validate()?;
        Ok(SizeTiered { options })
    }

    /// Groups `tables` into buckets of similar size (rule 1), each sorted by size.
    fn buckets<'a>(&self, mut tables: Vec<&'a TableSummary>) -> Vec<Vec<&'a TableSummary>> {
        tables.sort_by_key(|t| (t.size, t.number));
        let o = &self.options;
        let mut buckets: Vec<(Vec<&TableSummary>, u64)> = Vec::new();
        for table in tables {
            if let Some((bucket, total)) = buckets.last_mut() {
                let average = *total as f64 / bucket.len() as f64;
                let size = table.size as f64;
                let similar = size >= average * o.bucket_low && size <= average * o.bucket_high;
                let tiny = table.size < o.min_sstable_size && average < o.min_sstable_size as f64;
                if similar || tiny {
                    bucket.push(table);
                    *total += table.size;
                    continue;
                }
            }
            buckets.push((vec![table], table.size));
        }
        buckets.into_iter().map(|(bucket, _)| bucket).collect()
    }

    /// Rule 2: the most interesting full bucket, capped at `max_threshold`.
    fn pick_minor(&self, levels: &LevelsSummary, busy: &HashSet<u64>) -> Option<CompactionTask> {
        let o = &self.options;
        let idle = level0(levels).iter().filter(|t| !busy.contains(&t.number)).collect();
        let best = self
            .buckets(idle)
            .into_iter()
            .filter(|bucket| bucket.len() >= o.min_threshold)
            .map(|mut bucket| {
                bucket.truncate(o.max_threshold);
                bucket
            })
            .filter(|bucket| self.reduces_table_count(bucket))
            // Most tables; then smallest total (same count, so smallest average).
            .min_by_key(|bucket| {
                (std::cmp::Reverse(bucket.len()), bucket.iter().map(|t| t.size).sum::<u64>())
            })?;
        Some(self.task(levels, CompactionReason::Minor, &best))
    }

    /// Rule 4: while writes are stopped and no bucket fills up (the tables differ too
    /// much in size), merge the smallest idle tables anyway; otherwise writers would
    /// wait forever for a compaction nothing picks.
    fn pick_relief(&self, levels: &LevelsSummary, busy: &HashSet<u64>) -> Option<CompactionTask> {
        let o = &self.options;
        if self.write_pressure(levels) != WritePressure::Stop {
            return None;
        }
        let mut idle: Vec<&TableSummary> =
            level0(levels).iter().filter(|t| !busy.contains(&t.number)).collect();
        idle.sort_by_key(|t| t.size);
        idle.truncate(o.max_threshold);
        (idle.len() >= 2 && self.reduces_table_count(&idle))
            .then(|| self.task(levels, CompactionReason::Relief, &idle))
    }

    /// True if merging `tables` leaves fewer tables than it takes. Outputs are cut at
    /// `target_file_size`, so `n` tables totalling `s` bytes become `ceil(s / target)`;
    /// a merge that cannot shrink the count would rewrite the same data forever.
    fn reduces_table_count(&self, tables: &[&TableSummary]) -> bool {
        let bytes: u64 = tables.iter().map(|t| t.size).sum();
        (tables.len() as u64) > self.min_tables_for(bytes)
    }

    /// The fewest tables `bytes` of data can occupy with outputs cut at the target.
    fn min_tables_for(&self, bytes: u64) -> u64 {
        bytes.div_ceil(self.options.target_file_size).max(1)
    }

    /// Rule 3: the idle, old enough table with the highest tombstone ratio above the
    /// threshold whose tombstones can be dropped.
    fn pick_tombstone(
        &self,
        levels: &LevelsSummary,
        busy: &HashSet<u64>,
    ) -> Option<CompactionTask> {
        let o = &self.options;
        level0(levels)
            .iter()
            .filter(|t| {
                !busy.contains(&t.number)
                    && t.tombstone_ratio() > o.tombstone_ratio
                    && t.age_secs >= o.tombstone_min_age_secs
                    && may_drop_tombstones(levels, &[t])
            })
            .max_by(|a, b| {
                a.tombstone_ratio()
                    .total_cmp(&b.tombstone_ratio())
                    .then_with(|| b.number.cmp(&a.number))
            })
            .map(|t| self.task(levels, CompactionReason::Tombstone, &[t]))
    }

    /// A level-0 to level-0 task over `inputs`.
    fn task(
        &self,
        levels: &LevelsSummary,
        reason: CompactionReason,
        inputs: &[&TableSummary],
    ) -> CompactionTask {
        CompactionTask {
            reason,
            inputs: inputs.iter().map(|t| (t.level, t.number)).collect(),
            output_level: 0,
            move_only: false,
            drop_tombstones: may_drop_tombstones(levels, inputs),
            target_file_size: self.options.target_file_size,
        }
    }
}

/// The level-0 tables of `levels` (none if it has no levels).
fn level0(levels: &LevelsSummary) -> &[TableSummary] {
    levels.levels.first().map_or(&[], Vec::as_slice)
}

/// Rule 5: true when no table outside `inputs` overlaps their key hull with a seqno
/// older than their newest one.
fn may_drop_tombstones(levels: &LevelsSummary, inputs: &[&TableSummary]) -> bool {
    hull_neighbours(levels, inputs)
        .is_some_and(|(max_seqno, mut neighbours)| !neighbours.any(|t| t.min_seqno < max_seqno))
}

impl CompactionStrategy for SizeTiered {
    fn num_levels(&self) -> usize {
        1
    }

    fn pick(&self, levels: &LevelsSummary, busy: &HashSet<u64>) -> Option<CompactionTask> {
        self.pick_minor(levels, busy)
            .or_else(|| self.pick_tombstone(levels, busy))
            .or_else(|| self.pick_relief(levels, busy))
    }

    fn pick_manual(
        &self,
        levels: &LevelsSummary,
        range: Option<(&[u8], &[u8])>,
        level: u32,
    ) -> Option<CompactionTask> {
        if level != 0 {
            return None;
        }
        // Every level: a database last compacted by the leveled strategy keeps tables
        // in deeper levels, which would otherwise never be compacted again.
        let inputs: Vec<&TableSummary> = levels
            .tables()
            .filter(|t| range.is_none_or(|(start, end)| t.overlaps(start, end)))
            .collect();
        let worth_it = match inputs.as_slice() {
            [] => false,
            [only] => only.tombstones > 0,
            _ => true,
        };
        let reason =
            if range.is_none() { CompactionReason::Major } else { CompactionReason::Manual };
        worth_it.then(|| self.task(levels, reason, &inputs))
    }

    /// Rule 7: counts the tables beyond the fewest the data could occupy, so that data
    /// larger than `stop_tables` × `target_file_size` does not stop writes for good.
    fn write_pressure(&self, levels: &LevelsSummary) -> WritePressure {
        let tables = level0(levels);
        let bytes: u64 = tables.iter().map(|t| t.size).sum();
        let excess = (tables.len() as u64).saturating_sub(self.min_tables_for(bytes) - 1) as usize;
        let o = &self.options;
        WritePressure::from_table_count(excess, o.slowdown_tables, o.stop_tables)
    }
}

#[cfg(test)]
#[expect(clippy::type_complexity, reason = "table-driven cases spell out their row types")]
mod tests;
