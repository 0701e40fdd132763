use bytes::Bytes;
use proptest::prelude::*;

use super::*;
use crate::compaction::fixtures::{MIB, table};

/// A table of `size` over "a".."z" whose seqnos are `number * 10 ..= number * 10 + 9`.
fn sized(number: u64, size: u64) -> TableSummary {
    table(0, number, size, ("a", "z"), (number * 10, number * 10 + 9))
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
fn similar_sized_idle_tables_share_a_bucket_and_the_fullest_bucket_wins() {
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
    let summary_of_sizes =
        |sizes: &[u64]| summary(sizes.iter().zip(1..).map(|(&size, n)| sized(n, size)).collect());
    let levels = summary_of_sizes(&sizes);
    assert_eq!(strategy.write_pressure(&levels), WritePressure::Stop);
    let task = strategy.pick(&levels, &HashSet::new()).expect("relief compaction");
    assert_eq!(task.reason, CompactionReason::Relief);
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
fn a_minor_task_rewrites_level0_into_level0() {
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
fn a_table_over_the_tombstone_ratio_and_minimum_age_is_compacted_alone_highest_ratio_first() {
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
                with_tombstones(table(0, n, MIB, (key, key), (n, n)), tombstones, age)
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
        with_tombstones(table(0, 1, MIB, ("a", "b"), (50, 60)), 90, old),
        // Overlaps table 3, which holds older seqnos: its tombstones cannot go.
        with_tombstones(table(0, 2, MIB, ("c", "d"), (50, 60)), 80, old),
        table(0, 3, MIB, ("d", "e"), (10, 20)),
        // Eligible.
        with_tombstones(table(0, 4, MIB, ("x", "y"), (50, 60)), 40, old),
    ];
    let busy = HashSet::from([1]);
    let task = strategy().pick(&summary(tables), &busy).unwrap();
    assert_eq!(numbers(&task), vec![4]);
}

#[test]
fn zero_minimum_age_is_allowed() {
    let options = SizeTieredOptions { tombstone_min_age_secs: 0, ..Default::default() };
    let tables = vec![with_tombstones(table(0, 1, MIB, ("a", "b"), (1, 2)), 50, 0)];
    let task = SizeTiered::new(options).unwrap().pick(&summary(tables), &HashSet::new());
    assert_eq!(task.map(|t| t.reason), Some(CompactionReason::Tombstone));
}

#[test]
fn drop_tombstones_is_computed_from_overlap_and_seqnos() {
    let inputs =
        || vec![table(0, 1, MIB, ("c", "f"), (100, 200)), table(0, 2, MIB, ("d", "k"), (150, 250))];
    // (an extra table outside the inputs, expected drop_tombstones)
    let cases: &[(Option<TableSummary>, bool)] = &[
        (None, true),
        // Disjoint key range.
        (Some(table(0, 9, MIB, ("l", "z"), (1, 5))), true),
        // Overlaps at the inclusive end "k" with older seqnos.
        (Some(table(0, 9, MIB, ("k", "z"), (1, 5))), false),
        // Overlaps at the start "c".
        (Some(table(0, 9, MIB, ("a", "c"), (1, 5))), false),
        // Overlaps, but every seqno is newer than the inputs' newest (250).
        (Some(table(0, 9, MIB, ("a", "z"), (250, 300))), true),
        // Overlaps with one seqno below 250: it may hold an older version.
        (Some(table(0, 9, MIB, ("a", "z"), (249, 300))), false),
        // Older, overlapping a hole of the hull "c".."k" that no single input covers.
        (Some(table(0, 9, MIB, ("g", "g"), (1, 5))), false),
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
fn manual_compaction_merges_every_table_intersecting_the_range() {
    let tables = vec![
        table(0, 1, MIB, ("a", "c"), (1, 10)),
        table(0, 2, MIB, ("d", "f"), (11, 20)),
        with_tombstones(table(0, 3, MIB, ("x", "z"), (21, 30)), 1, 0),
        table(0, 4, MIB, ("p", "q"), (31, 40)),
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
fn writes_slow_at_20_tables_and_stop_at_36() {
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
                    scans: 0,
                }
            })
            .collect();
        (summary(tables), busy)
    })
}

/// The default strategy over [`arb_levels`], or one that stops writes at six tables
/// over the same tables with their sizes spread by factors of four and every table too
/// young for a tombstone rewrite, so that relief (rule 4) is picked too.
fn arb_case() -> impl Strategy<Value = (SizeTiered, LevelsSummary, HashSet<u64>)> {
    let stopping = SizeTieredOptions {
        min_sstable_size: 1,
        slowdown_tables: 4,
        stop_tables: 6,
        ..SizeTieredOptions::default()
    };
    (arb_levels(), any::<bool>()).prop_map(move |((mut levels, busy), stop)| {
        if !stop {
            return (strategy(), levels, busy);
        }
        for t in &mut levels.levels[0] {
            t.size = 1000 << (2 * (t.number % 12));
            t.age_secs = 0;
        }
        (SizeTiered::new(stopping.clone()).unwrap(), levels, busy)
    })
}

proptest! {
    #[test]
    fn picked_tasks_are_well_formed((s, levels, busy) in arb_case()) {
        let o = &s.options;
        if let Some(task) = s.pick(&levels, &busy) {
            prop_assert_eq!(task.output_level, 0);
            let mut seen = HashSet::new();
            for &(level, number) in &task.inputs {
                prop_assert_eq!(level, 0);
                prop_assert!(!busy.contains(&number));
                prop_assert!(seen.insert(number), "duplicate input");
                prop_assert!(levels.levels[0].iter().any(|t| t.number == number));
            }
            let (inputs, idle_others): (Vec<&TableSummary>, Vec<&TableSummary>) = levels.levels[0]
                .iter()
                .filter(|t| !busy.contains(&t.number))
                .partition(|t| task.inputs.contains(&(0, t.number)));
            let bytes: u64 = inputs.iter().map(|t| t.size).sum();
            match task.reason {
                CompactionReason::Minor => {
                    prop_assert!(
                        (o.min_threshold..=o.max_threshold).contains(&task.inputs.len())
                    );
                    // The output-size bound of the module doc bounds the job.
                    prop_assert!(bytes < o.max_threshold as u64 * o.target_file_size);
                }
                CompactionReason::Relief => {
                    prop_assert!((2..=o.max_threshold).contains(&task.inputs.len()));
                    prop_assert_eq!(s.write_pressure(&levels), WritePressure::Stop);
                    prop_assert!(bytes < o.max_threshold as u64 * o.target_file_size);
                    // The smallest idle tables.
                    let largest_input = inputs.iter().map(|t| t.size).max().unwrap_or(0);
                    prop_assert!(idle_others.iter().all(|t| t.size >= largest_input));
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
