use proptest::prelude::*;

use super::*;
use crate::compaction::fixtures::{MIB, table};

/// A 7-level summary from `(level, number, MiB, keys, seqnos)` rows.
fn summary(rows: &[(u32, u64, u64, (&str, &str), (u64, u64))]) -> LevelsSummary {
    let mut levels = vec![Vec::new(); 7];
    for &(level, number, mib, keys, seqnos) in rows {
        levels[level as usize].push(table(level, number, mib * MIB, keys, seqnos));
    }
    LevelsSummary { levels }
}

/// The default leveled strategy.
fn strategy() -> Leveled {
    Leveled::new(LeveledOptions::default()).unwrap()
}

fn sorted(mut inputs: Vec<(u32, u64)>) -> Vec<(u32, u64)> {
    inputs.sort_unstable();
    inputs
}

#[test]
fn base_level_is_where_targets_shrunk_from_the_bottom_fit_base_level_size() {
    // (bytes in the bottom level L6 in MiB, expected base level, expected targets in MiB
    // from the base level down)
    let cases: &[(u64, usize, &[u64])] = &[
        // Empty tree: level 0 compacts straight into the bottom.
        (0, 6, &[0]),
        (100, 6, &[100]),
        (256, 6, &[256]),
        // 300 MiB > 256: the base level moves up to L5 with a 30 MiB target.
        (300, 5, &[30, 300]),
        (2560, 5, &[256, 2560]),
        (2570, 4, &[25, 257, 2570]),
        (100_000, 3, &[100, 1000, 10_000, 100_000]),
        // Huge: every level is used; L1's target may exceed base_level_size.
        (1 << 40, 1, &[1 << 20, 1 << 20]),
    ];
    let s = strategy();
    for &(mib, base, expected) in cases {
        let levels =
            if mib == 0 { summary(&[]) } else { summary(&[(6, 1, mib, ("a", "z"), (1, 1))]) };
        let targets = s.targets(&levels);
        assert_eq!(targets.base, base, "{mib} MiB");
        assert_eq!(s.targets(&levels).base, base);
        if mib == 1 << 40 {
            // L1 = 2^40 MiB / 10^5.
            assert_eq!(targets.bytes[1], ((1u64 << 40) as f64 * MIB as f64 / 1e5) as u64);
            continue;
        }
        if mib > 0 {
            let got: Vec<u64> = targets.bytes[base..].iter().map(|b| b / MIB).collect();
            assert_eq!(got, expected, "{mib} MiB");
        }
        assert!(targets.bytes[..base].iter().all(|&b| b == 0));
    }
}

#[test]
fn base_level_is_never_below_the_first_non_empty_level() {
    // The bottom alone says L6, but L3 holds data: L0 must not compact under it.
    let levels = summary(&[(3, 1, 1, ("a", "b"), (5, 5)), (6, 2, 100, ("a", "z"), (1, 1))]);
    let targets = strategy().targets(&levels);
    assert_eq!(targets.base, 3);
    // L3's target is 100 MiB / 1000: it scores high and drains downward.
    assert_eq!(targets.bytes[3], 100 * MIB / 1000);
    let task = strategy().pick(&levels, &HashSet::new()).unwrap();
    assert_eq!(task.output_level, 4);
    assert!(task.move_only);
}

#[test]
fn level0_compacts_into_the_base_level_from_four_idle_tables() {
    let s = strategy();
    let l0 = |n: u64| (0, n, 1, ("a", "z"), (n * 10, n * 10 + 9));
    let three = summary(&[l0(1), l0(2), l0(3)]);
    assert_eq!(s.pick(&three, &HashSet::new()), None);
    let four = summary(&[l0(4), l0(3), l0(2), l0(1), (6, 9, 10, ("k", "m"), (0, 0))]);
    let task = s.pick(&four, &HashSet::new()).unwrap();
    assert_eq!(task.reason, CompactionReason::LevelScore);
    assert_eq!(task.output_level, 6, "the base level of a small tree is the bottom");
    assert_eq!(sorted(task.inputs.clone()), vec![(0, 1), (0, 2), (0, 3), (0, 4), (6, 9)]);
    assert!(task.drop_tombstones);
    assert!(!task.move_only);
    assert_eq!(task.target_file_size, 64 * MIB);
    // Busy tables do not count toward the trigger.
    assert_eq!(s.pick(&four, &HashSet::from([1])), None);
}

#[test]
fn scans_compact_level0_once_they_cost_what_the_compaction_would() {
    let s = strategy();
    // One small level-0 table over a sorted run: 1 + 9 MiB would be rewritten.
    let mut levels = summary(&[(0, 2, 1, ("a", "z"), (20, 29)), (6, 1, 9, ("a", "z"), (1, 9))]);
    assert_eq!(s.pick(&levels, &HashSet::new()), None, "one table is below the trigger");
    let worth = 10 * MIB / SCAN_COST_BYTES;
    levels.levels[0][0].scans = worth - 1;
    assert_eq!(s.pick(&levels, &HashSet::new()), None);
    levels.levels[0][0].scans = worth;
    let task = s.pick(&levels, &HashSet::new()).unwrap();
    assert_eq!(task.reason, CompactionReason::ReadTriggered);
    assert_eq!(sorted(task.inputs), vec![(0, 2), (6, 1)]);
    assert_eq!(task.output_level, 6);
    // A busy input waits like any other.
    assert_eq!(s.pick(&levels, &HashSet::from([1])), None);
}

#[test]
fn level0_inputs_are_the_overlap_closure_of_the_oldest_table() {
    let s = strategy();
    let levels = summary(&[
        (0, 5, 1, ("x", "z"), (50, 59)),
        (0, 4, 1, ("e", "g"), (40, 49)),
        (0, 3, 1, ("c", "f"), (30, 39)),
        (0, 2, 1, ("p", "q"), (20, 29)),
        (0, 1, 1, ("a", "d"), (10, 19)),
        // Base level: only "b".."h" overlap the closure a..g.
        (6, 10, 10, ("b", "c"), (1, 1)),
        (6, 11, 10, ("f", "h"), (1, 1)),
        (6, 12, 10, ("i", "j"), (1, 1)),
    ]);
    let task = s.pick(&levels, &HashSet::new()).unwrap();
    // 1 (a..d) → 3 (c..f) → 4 (e..g); base 10 (b..c), 11 (f..h), which widens to h.
    assert_eq!(sorted(task.inputs), vec![(0, 1), (0, 3), (0, 4), (6, 10), (6, 11)]);
    // 11 busy: 1 goes down with 10 alone, 3 and 4 (newer) wait for 11.
    let task = s.pick(&levels, &HashSet::from([11])).unwrap();
    assert_eq!(sorted(task.inputs), vec![(0, 1), (6, 10)]);
    // 10 busy: 1 cannot go; the next oldest, 2, overlaps nothing.
    let task = s.pick(&levels, &HashSet::from([10])).unwrap();
    assert_eq!(sorted(task.inputs), vec![(0, 2)]);
    assert!(task.move_only);
    assert!(!task.drop_tombstones, "a move rewrites nothing");
}

#[test]
fn level0_jobs_take_the_oldest_tables_within_the_cap() {
    let options = LeveledOptions { max_compaction_bytes: 400 * MIB, ..Default::default() };
    let s = Leveled::new(options).unwrap();
    // Eight flushes of 100 MiB over the whole key space, oldest = 1; L6 holds 50 MiB.
    let mut rows: Vec<_> =
        (1..=8).rev().map(|n| (0, n, 100, ("a", "z"), (10 * n, 10 * n + 9))).collect();
    rows.push((6, 20, 50, ("a", "z"), (1, 1)));
    let levels = summary(&rows);
    let task = s.pick(&levels, &HashSet::new()).unwrap();
    // 1, 2, 3 and L6: 350 MiB; a fourth flush would make 450.
    assert_eq!(sorted(task.inputs), vec![(0, 1), (0, 2), (0, 3), (6, 20)]);
    assert!(task.drop_tombstones, "what stays in L0 is newer than every input");
    // While that runs, the newer flushes overlap its busy L6 table: nothing to do.
    let running = HashSet::from([1, 2, 3, 20]);
    assert_eq!(s.pick(&levels, &running), None);

    // The default cap (1.6 GiB) takes all eight, as an uncapped closure would.
    let task = strategy().pick(&levels, &HashSet::new()).unwrap();
    assert_eq!(task.inputs.len(), 9);
}

#[test]
fn level0_cap_never_leaves_an_older_overlapping_table_above_newer_data() {
    let options = LeveledOptions {
        max_compaction_bytes: 100 * MIB,
        l0_compaction_trigger: 1,
        ..Default::default()
    };
    let s = Leveled::new(options).unwrap();
    // The seed with what it overlaps below is over the cap: taken anyway, it is the
    // smallest correct task. The newer 2 waits in L0, above the outputs.
    let rows = [
        (0, 2, 60, ("a", "m"), (20, 29)),
        (0, 1, 60, ("a", "m"), (10, 19)),
        (6, 10, 50, ("a", "z"), (1, 1)),
    ];
    let task = s.pick(&summary(&rows), &HashSet::new()).unwrap();
    assert_eq!(sorted(task.inputs), vec![(0, 1), (6, 10)]);
    // Interleaved seqno ranges (tables written by size-tiered compaction): 1 is the
    // oldest by max_seqno, but 2 holds older versions of keys 1 holds, so it goes down
    // with 1, cap or not; 3 would exceed the cap.
    let rows = [
        (0, 3, 60, ("e", "k"), (60, 69)),
        (0, 2, 60, ("c", "f"), (5, 50)),
        (0, 1, 60, ("a", "d"), (10, 19)),
        (6, 10, 10, ("a", "b"), (1, 1)),
    ];
    let task = s.pick(&summary(&rows), &HashSet::new()).unwrap();
    assert_eq!(sorted(task.inputs), vec![(0, 1), (0, 2), (6, 10)]);
    // 2 busy: 1 cannot go without it, and 3 cannot go before the older 2 it overlaps.
    assert_eq!(s.pick(&summary(&rows), &HashSet::from([2])), None);
    // A newer table overlapping nothing older moves on its own.
    let rows = [(0, 2, 60, ("x", "z"), (20, 29)), (0, 1, 60, ("a", "d"), (10, 19))];
    let task = s.pick(&summary(&rows), &HashSet::from([1])).unwrap();
    assert_eq!((task.inputs, task.move_only), (vec![(0, 2)], true));
}

#[test]
fn the_highest_score_wins_and_ties_go_to_the_shallower_level() {
    // Bottom L6 = 3000 MiB: base L5 with a 300 MiB target.
    let bottom = (6, 100, 3000, ("a", "z"), (0, 0));
    // (L5 MiB, L0 table count, expected input level of the pick)
    let cases: &[(u64, u64, Option<u32>)] = &[
        (299, 3, None),
        // L5 at 1.5, L0 at 0.75.
        (450, 3, Some(5)),
        // L5 at 1.5, L0 at 2.
        (450, 8, Some(0)),
        // L0 at 1, L5 below.
        (100, 4, Some(0)),
        // Equal scores (2.0): the shallower level.
        (600, 8, Some(0)),
    ];
    let s = strategy();
    for &(l5, l0_count, expected) in cases {
        let mut rows = vec![bottom, (5, 50, l5, ("m", "n"), (1, 1))];
        for n in 1..=l0_count {
            rows.push((0, n, 1, ("m", "m"), (10 * n, 10 * n)));
        }
        let task = s.pick(&summary(&rows), &HashSet::new());
        let level = task.map(|t| t.inputs[0].0);
        assert_eq!(level, expected, "L5 {l5} MiB, {l0_count} L0 tables");
    }
}

#[test]
fn busy_level_falls_back_to_the_next_score() {
    let rows = [
        (6, 100, 3000, ("a", "z"), (0, 0)),
        (5, 50, 450, ("m", "n"), (1, 1)),
        (0, 1, 1, ("m", "m"), (10, 10)),
        (0, 2, 1, ("m", "m"), (20, 20)),
        (0, 3, 1, ("m", "m"), (30, 30)),
        (0, 4, 1, ("m", "m"), (40, 40)),
        (0, 5, 1, ("m", "m"), (50, 50)),
    ];
    let levels = summary(&rows);
    // L6 = 3000 MiB: L5's target is 300 MiB and the base level is L4 (30 MiB).
    // L0 scores 1.25, L5 1.5: L5 first; when L6's table is busy, L0 into L4.
    let s = strategy();
    assert_eq!(s.targets(&levels).base, 4);
    assert_eq!(s.pick(&levels, &HashSet::new()).unwrap().inputs[0].0, 5);
    let task = s.pick(&levels, &HashSet::from([100])).unwrap();
    assert_eq!((task.inputs[0].0, task.output_level), (0, 4));
    // The oldest L0 table busy blocks every L0 closure (they all overlap it).
    assert_eq!(s.pick(&levels, &HashSet::from([100, 1])), None);
}

#[test]
fn a_table_with_nothing_below_moves_else_the_smallest_overlap_seeds() {
    // L6 = 3000: L5's target is 300; L5 = 600 → compaction out of L5, table 3 first
    // (nothing under it, ratio 0).
    let rows = [
        (5, 1, 200, ("a", "b"), (10, 10)),
        (5, 2, 200, ("c", "d"), (10, 10)),
        (5, 3, 200, ("p", "q"), (10, 10)),
        (6, 10, 1000, ("a", "a"), (1, 1)),
        (6, 11, 1000, ("c", "d"), (1, 1)),
        (6, 12, 1000, ("r", "z"), (1, 1)),
    ];
    let s = strategy();
    let task = s.pick(&summary(&rows), &HashSet::new()).unwrap();
    assert_eq!(task.inputs, vec![(5, 3)]);
    assert!(task.move_only);
    assert!(!task.drop_tombstones);
    // With 3 busy (L5 idle bytes 400): tables 1 and 2 tie at ratio 5; the smaller key
    // wins.
    let task = s.pick(&summary(&rows), &HashSet::from([3])).unwrap();
    assert_eq!(sorted(task.inputs), vec![(5, 1), (6, 10)]);
    assert!(!task.move_only);
    assert!(task.drop_tombstones, "nothing below L6, nothing older above");
}

#[test]
fn max_compaction_bytes_is_a_soft_cap() {
    let options = LeveledOptions { max_compaction_bytes: 64 * MIB, ..Default::default() };
    let s = Leveled::new(options).unwrap();
    let rows = [
        // Ratio 0.5 but 150 MiB of inputs; ratio 1 with 60 MiB.
        (5, 1, 100, ("a", "b"), (10, 10)),
        (5, 2, 30, ("c", "d"), (10, 10)),
        (5, 3, 300, ("x", "y"), (10, 10)),
        (6, 10, 50, ("a", "a"), (1, 1)),
        (6, 11, 30, ("c", "d"), (1, 1)),
        (6, 12, 3000, ("x", "y"), (1, 1)),
    ];
    let task = s.pick(&summary(&rows), &HashSet::new()).unwrap();
    assert_eq!(sorted(task.inputs), vec![(5, 2), (6, 11)]);
    // Nothing fits: the best ratio anyway.
    let task = s.pick(&summary(&rows), &HashSet::from([2])).unwrap();
    assert_eq!(sorted(task.inputs), vec![(5, 1), (6, 10)]);
}

#[test]
fn expansion_covers_partial_overlaps() {
    // Inclusive ranges: tables sharing a boundary key overlap.
    let rows = [
        (5, 1, 500, ("c", "e"), (10, 10)),
        // Shares "f" with L6's 11, which shares "h" with 12.
        (6, 10, 1000, ("a", "c"), (1, 1)),
        (6, 11, 1000, ("d", "f"), (1, 1)),
        (6, 12, 1000, ("f", "h"), (1, 1)),
        (6, 13, 1000, ("i", "k"), (1, 1)),
        // Pulled in by 12's range; it ends at "h", so 13 ("i".."k") stays out.
        (5, 2, 1, ("h", "h"), (10, 10)),
    ];
    let s = strategy();
    let task = s.pick_manual(&summary(&rows), Some((b"c", b"c")), 5).unwrap();
    assert_eq!(
        sorted(task.inputs),
        vec![(5, 1), (5, 2), (6, 10), (6, 11), (6, 12)],
        "c..e → L6 a..f → f..h → L5 h..h"
    );
    assert_eq!(task.output_level, 6);
}

#[test]
fn drop_tombstones_only_when_nothing_older_overlaps_outside_the_inputs() {
    let s = strategy();
    // A manual L5 step over "m"; L6 is the bottom; (extra rows, expected).
    let cases: &[(&[(u32, u64, u64, (&str, &str), (u64, u64))], bool)] = &[
        (&[], true),
        // A deeper level overlapping: no.
        (&[(6, 20, 1, ("a", "z"), (1, 1))], true),
        // L0 table over the range with older seqnos than the inputs' newest: no.
        (&[(0, 21, 1, ("m", "m"), (5, 99))], false),
        // L0 table over the range, all newer: yes.
        (&[(0, 21, 1, ("m", "m"), (60, 99))], true),
        // L0 table elsewhere: yes.
        (&[(0, 21, 1, ("x", "x"), (1, 1))], true),
    ];
    for (i, &(extra, expected)) in cases.iter().enumerate() {
        let mut rows = vec![(5, 1, 1, ("l", "n"), (40, 50)), (6, 2, 1, ("m", "m"), (1, 2))];
        rows.extend_from_slice(extra);
        let task = s.pick_manual(&summary(&rows), Some((b"m", b"m")), 5).unwrap();
        assert_eq!(task.drop_tombstones, expected, "case {i}");
    }
    // Into L5 with L6 overlapping below: no.
    let rows = [
        (4, 1, 1, ("l", "n"), (40, 50)),
        (5, 2, 1, ("m", "m"), (1, 2)),
        (6, 3, 1, ("n", "z"), (0, 0)),
    ];
    let task = s.pick_manual(&summary(&rows), None, 4).unwrap();
    assert_eq!(task.output_level, 5);
    assert!(!task.drop_tombstones);
    // L6 disjoint from the hull: yes.
    let rows = [
        (4, 1, 1, ("l", "n"), (40, 50)),
        (5, 2, 1, ("m", "m"), (1, 2)),
        (6, 3, 1, ("o", "z"), (0, 0)),
    ];
    assert!(s.pick_manual(&summary(&rows), None, 4).unwrap().drop_tombstones);
}

#[test]
fn manual_steps_take_the_range_and_its_expansion_level_by_level() {
    let rows = [
        (0, 1, 1, ("a", "c"), (30, 39)),
        (0, 2, 1, ("x", "y"), (40, 49)),
        (6, 10, 10, ("b", "d"), (1, 1)),
        (6, 11, 10, ("e", "g"), (1, 1)),
    ];
    let levels = summary(&rows);
    let s = strategy();
    // (range, level, expected (inputs, output level, move))
    let cases: &[(Option<(&[u8], &[u8])>, u32, Option<(&[(u32, u64)], u32, bool)>)] = &[
        // The hull a..y covers 11 (e..g) too.
        (None, 0, Some((&[(0, 1), (0, 2), (6, 10), (6, 11)], 6, false))),
        (Some((b"a", b"a")), 0, Some((&[(0, 1), (6, 10)], 6, false))),
        (Some((b"x", b"x")), 0, Some((&[(0, 2)], 6, true))),
        (Some((b"m", b"n")), 0, None),
        // Levels between L0 and the base level are empty.
        (None, 3, None),
        // The bottom compacts into itself, even one table.
        (Some((b"f", b"f")), 6, Some((&[(6, 11)], 6, false))),
        (None, 6, Some((&[(6, 10), (6, 11)], 6, false))),
        (None, 7, None),
    ];
    for (i, &(range, level, expected)) in cases.iter().enumerate() {
        let task = s.pick_manual(&levels, range, level);
        if let Some(task) = &task {
            assert_eq!(task.reason, CompactionReason::Manual);
        }
        let got = task.map(|t| (sorted(t.inputs), t.output_level, t.move_only));
        assert_eq!(got, expected.map(|(i, l, m)| (i.to_vec(), l, m)), "case {i}");
    }
}

#[test]
fn level0_slows_writes_at_20_tables_and_stops_them_at_36() {
    let s = strategy();
    for (count, expected) in [
        (0, WritePressure::None),
        (19, WritePressure::None),
        (20, WritePressure::Slowdown),
        (35, WritePressure::Slowdown),
        (36, WritePressure::Stop),
    ] {
        let rows: Vec<_> = (1..=count).map(|n| (0, n, 1, ("a", "b"), (n, n))).collect();
        assert_eq!(s.write_pressure(&summary(&rows)), expected, "{count} tables");
    }
    assert_eq!(s.write_pressure(&LevelsSummary::default()), WritePressure::None);
    assert_eq!(s.num_levels(), 7);
}

#[test]
fn validate_rejects_nonsense() {
    let d = LeveledOptions::default;
    assert_eq!(d().validate(), Ok(()));
    let bad = [
        LeveledOptions { num_levels: 1, ..d() },
        LeveledOptions { l0_compaction_trigger: 0, ..d() },
        LeveledOptions { l0_slowdown_trigger: 3, ..d() },
        LeveledOptions { l0_stop_trigger: 19, ..d() },
        LeveledOptions { base_level_size: 0, ..d() },
        LeveledOptions { level_size_multiplier: 1.0, ..d() },
        LeveledOptions { level_size_multiplier: f64::NAN, ..d() },
        LeveledOptions { target_file_size: 0, ..d() },
        LeveledOptions { max_compaction_bytes: MIB, ..d() },
    ];
    for (i, options) in bad.into_iter().enumerate() {
        assert!(options.validate().is_err(), "case {i}: {options:?}");
        assert!(Leveled::new(options).is_err());
    }
}

/// Keys are two bytes; a random valid tree: overlapping L0, sorted runs below.
fn arb_levels() -> impl Strategy<Value = (LevelsSummary, HashSet<u64>)> {
    // Level-0 tables with scans counted against them (mostly none), so that picks
    // made for reads meet the same invariants.
    let scans = prop_oneof![3 => Just(0u64), 1 => 0u64..1 << 20];
    let l0 = proptest::collection::vec((0u16..1000, 0u16..300, 1u64..64, scans), 0..10);
    let runs = proptest::collection::vec(
        (proptest::collection::btree_set(0u16..1000, 0..24), 1u64..4000),
        6,
    );
    (l0, runs, proptest::collection::vec(0u64..200, 0..6)).prop_map(|(l0, runs, busy)| {
        let key = |k: u16| Bytes::copy_from_slice(&k.to_be_bytes());
        let mut number = 0;
        let mut levels = vec![Vec::new()];
        for (start, width, mib, scans) in l0 {
            number += 1;
            let seqno = 1000 + number * 10;
            let mut t = table(0, number, mib * MIB, ("", ""), (seqno, seqno + 9));
            t.smallest = key(start);
            t.largest = key(start.saturating_add(width));
            t.scans = scans;
            levels[0].push(t);
        }
        levels[0].reverse();
        for (i, (points, mib)) in runs.into_iter().enumerate() {
            let level = i as u32 + 1;
            let points: Vec<u16> = points.into_iter().collect();
            let run = points
                .chunks_exact(2)
                .map(|pair| {
                    number += 1;
                    let seqno = 900 - 100 * u64::from(level);
                    let mut t = table(level, number, mib * MIB, ("", ""), (seqno, seqno + 50));
                    t.smallest = key(pair[0]);
                    t.largest = key(pair[1]);
                    t
                })
                .collect();
            levels.push(run);
        }
        (LevelsSummary { levels }, busy.into_iter().collect())
    })
}

/// Replaces the task's inputs by one table spanning their range in the output level.
fn apply(levels: &mut LevelsSummary, task: &CompactionTask, number: u64) {
    let inputs: Vec<TableSummary> =
        levels.tables().filter(|t| task.inputs.contains(&(t.level, t.number))).cloned().collect();
    for tables in &mut levels.levels {
        tables.retain(|t| !task.inputs.contains(&(t.level, t.number)));
    }
    let mut output = inputs[0].clone();
    output.number = number;
    output.level = task.output_level;
    output.smallest = inputs.iter().map(|t| t.smallest.clone()).min().unwrap();
    output.largest = inputs.iter().map(|t| t.largest.clone()).max().unwrap();
    output.size = inputs.iter().map(|t| t.size).sum();
    output.min_seqno = inputs.iter().map(|t| t.min_seqno).min().unwrap();
    output.max_seqno = inputs.iter().map(|t| t.max_seqno).max().unwrap();
    let out = &mut levels.levels[task.output_level as usize];
    out.push(output);
    out.sort_by(|a, b| a.smallest.cmp(&b.smallest));
}

fn check_task(
    levels: &LevelsSummary,
    busy: &HashSet<u64>,
    task: &CompactionTask,
) -> Result<(), TestCaseError> {
    prop_assert!(!task.inputs.is_empty());
    let mut seen = HashSet::new();
    for &(level, number) in &task.inputs {
        prop_assert!(seen.insert(number), "duplicate input {}", number);
        prop_assert!(!busy.contains(&number), "busy input {}", number);
        prop_assert!(
            levels.levels[level as usize].iter().any(|t| t.number == number),
            "input {} not in level {}",
            number,
            level
        );
        prop_assert!(level == task.output_level || level + 1 == task.output_level || level == 0);
    }
    let input_level = task.inputs[0].0;
    prop_assert!(task.inputs.iter().all(|&(l, _)| l == input_level || l == task.output_level));
    prop_assert!(task.output_level >= 1);
    prop_assert!(!(task.move_only && task.drop_tombstones));
    // What stays behind is consistent: no output-level table straddles the hull, and
    // every level-0 table left over the hull is newer than every level-0 input.
    let inputs: Vec<&TableSummary> =
        levels.tables().filter(|t| task.inputs.contains(&(t.level, t.number))).collect();
    let lo = inputs.iter().map(|t| &t.smallest).min().unwrap();
    let hi = inputs.iter().map(|t| &t.largest).max().unwrap();
    let left = |level: u32| {
        levels.levels[level as usize]
            .iter()
            .filter(move |t| !task.inputs.contains(&(level, t.number)) && t.overlaps(lo, hi))
    };
    if input_level != task.output_level {
        prop_assert_eq!(left(task.output_level).count(), 0, "a partially covered table");
    }
    if input_level == 0 {
        let newest = inputs.iter().filter(|t| t.level == 0).map(|t| t.max_seqno).max();
        for t in left(0) {
            prop_assert!(Some(t.min_seqno) > newest, "older {} left above outputs", t.number);
        }
    }
    Ok(())
}

fn check_runs(levels: &LevelsSummary) -> Result<(), TestCaseError> {
    for (level, tables) in levels.levels.iter().enumerate().skip(1) {
        for pair in tables.windows(2) {
            prop_assert!(
                pair[0].largest < pair[1].smallest,
                "level {} overlaps: {:?} {:?}",
                level,
                pair[0],
                pair[1]
            );
        }
    }
    Ok(())
}

proptest! {
    #[test]
    fn picked_tasks_are_well_formed_and_keep_runs_sorted(
        (levels, busy) in arb_levels(),
        cap_mib in prop_oneof![Just(1600u64), 32u64..400],
    ) {
        let options = LeveledOptions {
            base_level_size: 64 * MIB,
            l0_compaction_trigger: 2,
            target_file_size: 32 * MIB,
            max_compaction_bytes: cap_mib * MIB,
            ..LeveledOptions::default()
        };
        let s = Leveled::new(options).unwrap();
        check_runs(&levels)?;
        if let Some(task) = s.pick(&levels, &busy) {
            check_task(&levels, &busy, &task)?;
        }
        // Run picks to completion (bounded), applying each.
        let mut levels = levels;
        let none = HashSet::new();
        for step in 0..50 {
            let Some(task) = s.pick(&levels, &none) else { break };
            check_task(&levels, &none, &task)?;
            apply(&mut levels, &task, 10_000 + step);
            check_runs(&levels)?;
        }
        for level in 0..7 {
            if let Some(task) = s.pick_manual(&levels, Some((&[0, 100], &[1, 200])), level) {
                check_task(&levels, &none, &task)?;
                apply(&mut levels, &task, 20_000 + u64::from(level));
                check_runs(&levels)?;
            }
        }
    }
}
