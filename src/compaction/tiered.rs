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
//!    least `tombstone_min_age_secs` and whose tombstones may be dropped (rule 4) is
//!    rewritten alone; the highest ratio wins (ties: oldest file number). A table whose
//!    tombstones could not be dropped is skipped: rewriting it would change nothing and
//!    it would be picked again at once. (With `tombstone_min_age_secs == 0`, a table
//!    whose tombstones a live snapshot still pins is rewritten again after each
//!    rewrite; the default age of a day bounds that.)
//! 4. **Dropping tombstones.** `drop_tombstones` is true only when no table outside the
//!    inputs (busy or not) overlaps the inputs' key hull with a `min_seqno` below the
//!    inputs' largest `max_seqno`: then nothing outside can hold an older version that
//!    an input tombstone hides. It is computed for every task, never assumed.
//! 5. **Manual compaction** ([`CompactionStrategy::pick_manual`]) at level 0 merges every
//!    table that intersects the range (all tables when there is none), in any level
//!    (a database last compacted by the leveled strategy has deeper levels), into one
//!    task, when that is at least two tables or one table with tombstones. The reason
//!    is [`CompactionReason::Major`] without a range, [`CompactionReason::Manual`] with
//!    one. Other levels hold nothing: `None`.
//! 6. **Write pressure** is the level-0 table count (busy or not) against
//!    `slowdown_tables` and `stop_tables`.
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
//!   tables of deeper levels, see rule 5).
//! - A minor task has between `min_threshold` and `max_threshold` inputs; a tombstone
//!   task has one.

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

    /// The options in use.
    pub fn options(&self) -> &SizeTieredOptions {
        &self.options
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

    /// Rule 5: while writes are stopped (`stop_tables` tables) and no bucket fills up
    /// because the tables differ too much in size, merge the smallest idle tables
    /// anyway; otherwise writers would wait forever for a compaction nothing picks.
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
            .then(|| self.task(levels, CompactionReason::Minor, &idle))
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

/// Rule 4: true when no table outside `inputs` overlaps their key hull with a seqno
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

    /// Counts the tables beyond the fewest the data could occupy, so that data
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
mod tests {
    use super::*;
    use bytes::Bytes;
    use proptest::prelude::*;

    const MIB: u64 = 1 << 20;

    /// A level-0 table: number, size, key range, seqnos; no tombstones, very old.
    fn table(number: u64, size: u64, keys: (&str, &str), seqnos: (u64, u64)) -> TableSummary {
        TableSummary {
            number,
            level: 0,
            size,
            smallest: Bytes::copy_from_slice(keys.0.as_bytes()),
            largest: Bytes::copy_from_slice(keys.1.as_bytes()),
            min_seqno: seqnos.0,
            max_seqno: seqnos.1,
            entries: 100,
            tombstones: 0,
            age_secs: u64::MAX,
        }
    }

    /// A table of `size` over "a".."z" whose seqnos are `number * 10 ..= number * 10 + 9`.
    fn sized(number: u64, size: u64) -> TableSummary {
        table(number, size, ("a", "z"), (number * 10, number * 10 + 9))
    }

    fn with_tombstones(mut t: TableSummary, tombstones: u64, age_secs: u64) -> TableSummary {
        t.tombstones = tombstones;
        t.age_secs = age_secs;
        t
    }

    fn summary(tables: Vec<TableSummary>) -> LevelsSummary {
        LevelsSummary { levels: vec![tables] }
    }

    fn strategy() -> SizeTiered {
        SizeTiered::new(SizeTieredOptions::default()).unwrap()
    }

    fn numbers(task: &CompactionTask) -> Vec<u64> {
        let mut numbers: Vec<u64> = task.inputs.iter().map(|&(_, n)| n).collect();
        numbers.sort_unstable();
        numbers
    }

    fn pick(sizes: &[u64], busy: &[u64]) -> Option<Vec<u64>> {
        let tables = sizes.iter().zip(1..).map(|(&size, n)| sized(n, size)).collect();
        let busy = busy.iter().copied().collect();
        strategy().pick(&summary(tables), &busy).map(|t| numbers(&t))
    }

    #[test]
    fn buckets_from_table_sizes() {
        // (sizes of tables 1, 2, ..., busy tables, expected inputs)
        let cases: &[(&[u64], &[u64], Option<&[u64]>)] = &[
            // Fewer than min_threshold: nothing.
            (&[100 * MIB, 100 * MIB, 100 * MIB], &[], None),
            // Four similar tables: one bucket.
            (&[100 * MIB, 120 * MIB, 90 * MIB, 140 * MIB], &[], Some(&[1, 2, 3, 4])),
            // 100, 100, 100 average 100; 151 is above 1.5 × 100: two buckets.
            (&[100 * MIB, 100 * MIB, 100 * MIB, 151 * MIB], &[], None),
            // Exactly 1.5 × the average joins (inclusive).
            (&[100 * MIB, 100 * MIB, 100 * MIB, 150 * MIB], &[], Some(&[1, 2, 3, 4])),
            // Tiny tables (below 8 MiB) share a bucket whatever their ratio.
            (&[1, 10, 1000, 7 * MIB], &[], Some(&[1, 2, 3, 4])),
            // 8 MiB is not tiny: 7 MiB average ×1.5 < 11 MiB.
            (&[MIB, MIB, MIB, 11 * MIB], &[], None),
            // Two buckets; the one with more tables wins.
            (
                &[MIB, MIB, MIB, MIB, 100 * MIB, 100 * MIB, 100 * MIB, 100 * MIB, 100 * MIB],
                &[],
                Some(&[5, 6, 7, 8, 9]),
            ),
            // Equal counts: the smaller average wins.
            (
                &[100 * MIB, 100 * MIB, 100 * MIB, 100 * MIB, MIB, MIB, MIB, MIB],
                &[],
                Some(&[5, 6, 7, 8]),
            ),
            // A busy table leaves the bucket short.
            (&[100 * MIB, 100 * MIB, 100 * MIB, 100 * MIB], &[2], None),
            // Busy tables do not count, the other five still qualify.
            (&[MIB, MIB, MIB, MIB, MIB, MIB], &[1], Some(&[2, 3, 4, 5, 6])),
        ];
        for (i, &(sizes, busy, expected)) in cases.iter().enumerate() {
            assert_eq!(pick(sizes, busy), expected.map(<[u64]>::to_vec), "case {i}: {sizes:?}");
        }
    }

    #[test]
    fn bucket_average_moves_as_tables_join() {
        // 100, 150 (avg 125), 187 (≤ 187.5, avg 145.67), 218 (≤ 218.5): one bucket.
        assert_eq!(pick(&[100, 150, 187, 218].map(|s| s * MIB), &[]), Some(vec![1, 2, 3, 4]));
        // 100, 150, 187 then 219 > 1.5 × 145.67: a new bucket.
        assert_eq!(pick(&[100, 150, 187, 219].map(|s| s * MIB), &[]), None);
    }

    #[test]
    fn a_bucket_is_capped_at_max_threshold_smallest_first() {
        let sizes: Vec<u64> = (0..40).map(|i| 100 * MIB + i).collect();
        let picked = pick(&sizes, &[]).unwrap();
        assert_eq!(picked, (1..=32).collect::<Vec<_>>());
        let options = SizeTieredOptions { max_threshold: 4, ..SizeTieredOptions::default() };
        let tables = (1..=6).map(|n| sized(n, 100 * MIB - n)).collect();
        let task = SizeTiered::new(options).unwrap().pick(&summary(tables), &HashSet::new());
        assert_eq!(numbers(&task.unwrap()), vec![3, 4, 5, 6]);
    }

    #[test]
    fn stopped_writes_are_relieved_even_without_a_full_bucket() {
        // Sizes double from table to table: no two share a bucket.
        let options = SizeTieredOptions {
            min_sstable_size: 1,
            slowdown_tables: 4,
            stop_tables: 6,
            ..SizeTieredOptions::default()
        };
        let strategy = SizeTiered::new(options).unwrap();
        let sizes: Vec<u64> = (0..6).map(|i| 1000 << (2 * i)).collect();
        let summary_of_sizes = |sizes: &[u64]| {
            summary(sizes.iter().zip(1..).map(|(&size, n)| sized(n, size)).collect())
        };
        let levels = summary_of_sizes(&sizes);
        assert_eq!(strategy.write_pressure(&levels), WritePressure::Stop);
        let task = strategy.pick(&levels, &HashSet::new()).expect("relief compaction");
        assert_eq!(task.inputs.len(), 6);
        let fewer = summary_of_sizes(&sizes[..5]);
        assert_eq!(strategy.pick(&fewer, &HashSet::new()), None, "no relief below stop");
    }

    #[test]
    fn merges_that_cannot_shrink_the_table_count_are_not_picked() {
        // Four full-size outputs of an earlier merge: merging them yields four again.
        let options = SizeTieredOptions {
            target_file_size: 10 * MIB,
            stop_tables: 4,
            slowdown_tables: 4,
            ..Default::default()
        };
        let s = SizeTiered::new(options).unwrap();
        let full = summary((1..=4).map(|n| sized(n, 10 * MIB)).collect());
        assert_eq!(s.pick(&full, &HashSet::new()), None);
        assert_eq!(s.write_pressure(&full), WritePressure::None, "nothing can relieve it");
        // Four half-full tables fit in two: worth merging, and pressure counts the excess.
        let half = summary((1..=4).map(|n| sized(n, 5 * MIB)).collect());
        assert!(s.pick(&half, &HashSet::new()).is_some());
        let eight = summary((1..=8).map(|n| sized(n, 5 * MIB)).collect());
        assert_eq!(s.write_pressure(&eight), WritePressure::Stop, "8 tables where 4 would do");
    }

    #[test]
    fn minor_task_shape() {
        let tables = (1..=4).map(|n| sized(n, MIB)).collect();
        let task = strategy().pick(&summary(tables), &HashSet::new()).unwrap();
        assert_eq!(task.reason, CompactionReason::Minor);
        assert_eq!(task.output_level, 0);
        assert!(!task.move_only);
        assert!(task.drop_tombstones, "the inputs are every table");
        assert_eq!(task.target_file_size, 256 * MIB);
        assert!(task.inputs.iter().all(|&(level, _)| level == 0));
    }

    #[test]
    fn tombstone_compaction_by_ratio_and_age() {
        let day = 24 * 60 * 60;
        // (tables as (tombstones of 100 entries, age), expected pick)
        let cases: &[(&[(u64, u64)], Option<u64>)] = &[
            (&[(0, day)], None),
            // 30% is not above 0.3.
            (&[(30, day)], None),
            (&[(31, day)], Some(1)),
            // Too young.
            (&[(90, day - 1)], None),
            // The highest ratio wins.
            (&[(40, day), (80, day), (50, day)], Some(2)),
            // Equal ratios: the lowest file number.
            (&[(0, day), (60, day), (60, day)], Some(2)),
            // The highest ratio is too young: the next one.
            (&[(40, day), (80, 5), (50, day)], Some(3)),
        ];
        for (i, &(specs, expected)) in cases.iter().enumerate() {
            // Disjoint key ranges, so each table's tombstones may be dropped.
            let keys = ["a", "b", "c", "d"];
            let tables = specs
                .iter()
                .zip(1..)
                .map(|(&(tombstones, age), n)| {
                    let key = keys[n as usize - 1];
                    with_tombstones(table(n, MIB, (key, key), (n, n)), tombstones, age)
                })
                .collect();
            let task = strategy().pick(&summary(tables), &HashSet::new());
            assert_eq!(task.as_ref().map(numbers), expected.map(|n| vec![n]), "case {i}");
            if let Some(task) = task {
                assert_eq!(task.reason, CompactionReason::Tombstone);
                assert!(task.drop_tombstones);
            }
        }
    }

    #[test]
    fn tombstone_compaction_skips_busy_and_pinned_tables() {
        let old = u64::MAX;
        let tables = vec![
            // Busy.
            with_tombstones(table(1, MIB, ("a", "b"), (50, 60)), 90, old),
            // Overlaps table 3, which holds older seqnos: its tombstones cannot go.
            with_tombstones(table(2, MIB, ("c", "d"), (50, 60)), 80, old),
            table(3, MIB, ("d", "e"), (10, 20)),
            // Eligible.
            with_tombstones(table(4, MIB, ("x", "y"), (50, 60)), 40, old),
        ];
        let busy = HashSet::from([1]);
        let task = strategy().pick(&summary(tables), &busy).unwrap();
        assert_eq!(numbers(&task), vec![4]);
    }

    #[test]
    fn zero_minimum_age_is_allowed() {
        let options = SizeTieredOptions { tombstone_min_age_secs: 0, ..Default::default() };
        let tables = vec![with_tombstones(table(1, MIB, ("a", "b"), (1, 2)), 50, 0)];
        let task = SizeTiered::new(options).unwrap().pick(&summary(tables), &HashSet::new());
        assert_eq!(task.map(|t| t.reason), Some(CompactionReason::Tombstone));
    }

    #[test]
    fn drop_tombstones_is_computed_from_overlap_and_seqnos() {
        let inputs =
            || vec![table(1, MIB, ("c", "f"), (100, 200)), table(2, MIB, ("d", "k"), (150, 250))];
        // (an extra table outside the inputs, expected drop_tombstones)
        let cases: &[(Option<TableSummary>, bool)] = &[
            (None, true),
            // Disjoint key range.
            (Some(table(9, MIB, ("l", "z"), (1, 5))), true),
            // Overlaps at the inclusive end "k" with older seqnos.
            (Some(table(9, MIB, ("k", "z"), (1, 5))), false),
            // Overlaps at the start "c".
            (Some(table(9, MIB, ("a", "c"), (1, 5))), false),
            // Overlaps, but every seqno is newer than the inputs' newest (250).
            (Some(table(9, MIB, ("a", "z"), (250, 300))), true),
            // Overlaps with one seqno below 250: it may hold an older version.
            (Some(table(9, MIB, ("a", "z"), (249, 300))), false),
            // Older, overlapping a hole of the hull "c".."k" that no single input covers.
            (Some(table(9, MIB, ("g", "g"), (1, 5))), false),
        ];
        for (i, (extra, expected)) in cases.iter().enumerate() {
            let mut tables = inputs();
            tables.extend(extra.clone());
            let levels = summary(tables);
            let inputs: Vec<&TableSummary> = levels.levels[0][..2].iter().collect();
            let task = strategy().task(&levels, CompactionReason::Minor, &inputs);
            assert_eq!(task.drop_tombstones, *expected, "case {i}");
        }
    }

    #[test]
    fn manual_steps() {
        let tables = vec![
            table(1, MIB, ("a", "c"), (1, 10)),
            table(2, MIB, ("d", "f"), (11, 20)),
            with_tombstones(table(3, MIB, ("x", "z"), (21, 30)), 1, 0),
            table(4, MIB, ("p", "q"), (31, 40)),
        ];
        let levels = summary(tables);
        let s = strategy();
        // (range, level, expected (inputs, reason))
        let cases: &[(Option<(&[u8], &[u8])>, u32, Option<(&[u64], CompactionReason)>)] = &[
            (None, 0, Some((&[1, 2, 3, 4], CompactionReason::Major))),
            (None, 1, None),
            (Some((b"b", b"e")), 0, Some((&[1, 2], CompactionReason::Manual))),
            (Some((b"b", b"e")), 3, None),
            // One table with tombstones: rewritten alone.
            (Some((b"y", b"y")), 0, Some((&[3], CompactionReason::Manual))),
            // One table without tombstones: nothing to gain.
            (Some((b"p", b"p")), 0, None),
            // Nothing intersects.
            (Some((b"g", b"h")), 0, None),
        ];
        for (i, &(range, level, expected)) in cases.iter().enumerate() {
            let task = s.pick_manual(&levels, range, level);
            let got = task.as_ref().map(|t| (numbers(t), t.reason));
            assert_eq!(got, expected.map(|(n, r)| (n.to_vec(), r)), "case {i}");
        }
        let empty = LevelsSummary::default();
        assert_eq!(s.pick_manual(&empty, None, 0), None);
        assert_eq!(s.pick(&empty, &HashSet::new()), None);
    }

    #[test]
    fn write_pressure_thresholds() {
        let s = strategy();
        for (count, expected) in [
            (0, WritePressure::None),
            (19, WritePressure::None),
            (20, WritePressure::Slowdown),
            (35, WritePressure::Slowdown),
            (36, WritePressure::Stop),
            (50, WritePressure::Stop),
        ] {
            let levels = summary((1..=count).map(|n| sized(n, MIB)).collect());
            assert_eq!(s.write_pressure(&levels), expected, "{count} tables");
        }
        assert_eq!(s.write_pressure(&LevelsSummary::default()), WritePressure::None);
        assert_eq!(s.num_levels(), 1);
    }

    #[test]
    fn validate_rejects_nonsense() {
        let d = SizeTieredOptions::default;
        assert_eq!(d().validate(), Ok(()));
        let bad = [
            SizeTieredOptions { min_threshold: 1, ..d() },
            SizeTieredOptions { max_threshold: 3, ..d() },
            SizeTieredOptions { bucket_low: 1.0, ..d() },
            SizeTieredOptions { bucket_low: 0.0, ..d() },
            SizeTieredOptions { bucket_high: 1.0, ..d() },
            SizeTieredOptions { bucket_high: f64::INFINITY, ..d() },
            SizeTieredOptions { bucket_low: f64::NAN, ..d() },
            SizeTieredOptions { tombstone_ratio: 1.0, ..d() },
            SizeTieredOptions { tombstone_ratio: -0.1, ..d() },
            SizeTieredOptions { target_file_size: 0, ..d() },
            SizeTieredOptions { slowdown_tables: 3, ..d() },
            SizeTieredOptions { stop_tables: 19, ..d() },
        ];
        for (i, options) in bad.into_iter().enumerate() {
            assert!(options.validate().is_err(), "case {i}: {options:?}");
            assert!(SizeTiered::new(options).is_err());
        }
    }

    fn arb_levels() -> impl Strategy<Value = (LevelsSummary, HashSet<u64>)> {
        let arb_table = (0u64..64, 0u8..26, 0u8..6, 0u64..1000, 0u64..100, 0u64..200_000);
        proptest::collection::vec((arb_table, any::<bool>()), 0..48).prop_map(|specs| {
            let mut busy = HashSet::new();
            let tables = specs
                .into_iter()
                .zip(1..)
                .map(|(((size, start, width, seqno, tombstones, age), is_busy), number)| {
                    if is_busy {
                        busy.insert(number);
                    }
                    let key = |k: u8| Bytes::from(vec![b'a' + k]);
                    TableSummary {
                        number,
                        level: 0,
                        size: (size * size) * MIB / 4,
                        smallest: key(start),
                        largest: key(start.saturating_add(width).min(25)),
                        min_seqno: seqno,
                        max_seqno: seqno + 10,
                        entries: 100,
                        tombstones,
                        age_secs: age,
                    }
                })
                .collect();
            (summary(tables), busy)
        })
    }

    proptest! {
        #[test]
        fn picked_tasks_are_well_formed((levels, busy) in arb_levels()) {
            let s = strategy();
            let o = s.options();
            if let Some(task) = s.pick(&levels, &busy) {
                prop_assert_eq!(task.output_level, 0);
                let mut seen = HashSet::new();
                for &(level, number) in &task.inputs {
                    prop_assert_eq!(level, 0);
                    prop_assert!(!busy.contains(&number));
                    prop_assert!(seen.insert(number), "duplicate input");
                    prop_assert!(levels.levels[0].iter().any(|t| t.number == number));
                }
                let bytes: u64 = levels.levels[0]
                    .iter()
                    .filter(|t| task.inputs.contains(&(0, t.number)))
                    .map(|t| t.size)
                    .sum();
                match task.reason {
                    CompactionReason::Minor => {
                        prop_assert!(
                            (o.min_threshold..=o.max_threshold).contains(&task.inputs.len())
                        );
                        // The output-size bound of the module doc bounds the job.
                        prop_assert!(bytes < o.max_threshold as u64 * o.target_file_size);
                    }
                    CompactionReason::Tombstone => {
                        prop_assert_eq!(task.inputs.len(), 1);
                        prop_assert!(task.drop_tombstones);
                    }
                    other => prop_assert!(false, "unexpected reason {:?}", other),
                }
            }
            let all: Vec<&TableSummary> = levels.tables().collect();
            if let Some(task) = s.pick_manual(&levels, None, 0) {
                prop_assert_eq!(task.inputs.len(), all.len());
                prop_assert!(task.drop_tombstones, "every table is an input");
            }
        }
    }
}
