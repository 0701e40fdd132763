//! Leveled compaction, as in LevelDB/RocksDB, with RocksDB's
//! `level_compaction_dynamic_level_bytes` level targets.
//!
//! # Shape
//! Level 0 holds overlapping flushes. Levels 1.. each hold one sorted run: tables that
//! do not overlap (key ranges are inclusive), ordered by smallest key. For any user key,
//! versions in a shallower level are newer than versions in a deeper one.
//!
//! # Level targets (dynamic)
//! Let `bottom = num_levels - 1` and `S` the bytes of the last non-empty level ≥ 1
//! (in the steady state that is the bottom level, since data is only ever pushed down).
//! The bottom level's target is `S`; each level above it gets the target of the level
//! below ÷ `level_size_multiplier` (at least 1 byte). Walking up from the bottom, the
//! first level whose target is at most `base_level_size` is the **base level** (level
//! 1 if none is); when every level ≥ 1 is empty the base level is the bottom. The base
//! level is then lowered to the first non-empty level ≥ 1 if that is shallower, so the
//! levels between 0 and the base level are always empty and level 0 never compacts
//! underneath older data. Level 0 compacts straight into the base level.
//!
//! # Scores and picking
//! - Level 0: idle (not busy) table count ÷ `l0_compaction_trigger`.
//! - Levels from the base level to `bottom - 1`: idle bytes ÷ target. A level whose
//!   data does not sit at the bottom (a shrunken or legacy tree) thereby scores high
//!   and drains downward. The bottom level has no score: it only grows.
//! - The highest score ≥ 1 whose inputs are all idle wins (ties: the shallower level);
//!   when a level's candidates are all busy, the next score is tried.
//! - Level 0 → base level: starting from the oldest idle level-0 table, the inputs are
//!   every level-0 table overlapping it, closed under overlap, plus the overlapping
//!   base-level tables (see expansion). Level-0 compactions have no byte cap: every
//!   overlapping level-0 table must go down together.
//! - Level n → n + 1: one seed table of level n, the one whose inputs (after
//!   expansion) have the smallest ratio of level-(n+1) bytes to level-n bytes — RocksDB's
//!   `kMinOverlappingRatio`, which writes the fewest bytes per byte pushed down and,
//!   unlike a round-robin cursor, keeps picking a pure function. Candidates whose
//!   inputs exceed `max_compaction_bytes` are only taken when no candidate fits. Ties
//!   go to the smallest key.
//! - **Expansion.** The inputs' key hull is widened until it is closed: every table of
//!   the input level and of the output level that overlaps the hull is an input. No
//!   output-level table is then partially covered, so the outputs (which span at most
//!   the hull) never overlap a table left in place, and no input-level table holding
//!   versions of a key in the hull is left above the newer outputs.
//! - **Trivial move.** A single input table of level n with nothing overlapping it in
//!   the output level is moved (`move_only`), not rewritten.
//! - **Dropping tombstones.** `drop_tombstones` is true only for rewrites where no
//!   table in a level deeper than the output level overlaps the inputs' key hull, and
//!   no table outside the inputs in the input level or any level above the output
//!   level (level 0 included) overlaps the hull with a `min_seqno` below the inputs'
//!   largest `max_seqno` — such a table could hold an older version an input tombstone
//!   hides.
//!
//! # Manual compaction
//! [`CompactionStrategy::pick_manual`] at `level` takes the tables of that level
//! intersecting the range (all when there is none), expands them as above into the next
//! level (the base level for level 0; the bottom level compacts into itself, rewriting
//! its tables to drop tombstones). `None` when nothing in `level` intersects.
//!
//! # Write pressure
//! From the level-0 table count (busy or not) against `l0_slowdown_trigger` and
//! `l0_stop_trigger`. RocksDB also slows writes on *pending compaction bytes* (the bytes
//! by which levels exceed their targets, with their cascade into the next level); that
//! would be a `soft/hard_pending_compaction_bytes` pair compared against
//! `Σ max(0, bytes − target) × (1 + multiplier)` over the scored levels.

use std::collections::HashSet;

use bytes::Bytes;

use super::{
    CompactionReason, CompactionStrategy, CompactionTask, LevelsSummary, TableSummary,
    WritePressure,
};

const MIB: u64 = 1 << 20;

/// Tuning of [`Leveled`].
#[derive(Debug, Clone, PartialEq)]
pub struct LeveledOptions {
    /// Levels, level 0 included (default 7).
    pub num_levels: usize,
    /// Level-0 table count that scores 1 (default 4).
    pub l0_compaction_trigger: usize,
    /// Level-0 table count from which writes are slowed down (default 20).
    pub l0_slowdown_trigger: usize,
    /// Level-0 table count from which writes stop (default 36).
    pub l0_stop_trigger: usize,
    /// Largest target of the base level (default 256 MiB).
    pub base_level_size: u64,
    /// Ratio of a level's target to the one above it (default 10).
    pub level_size_multiplier: f64,
    /// Output tables are cut at this size (default 64 MiB).
    pub target_file_size: u64,
    /// Soft cap on one level-n compaction's input bytes (default 25 × target).
    pub max_compaction_bytes: u64,
}

impl Default for LeveledOptions {
    fn default() -> Self {
        LeveledOptions {
            num_levels: 7,
            l0_compaction_trigger: 4,
            l0_slowdown_trigger: 20,
            l0_stop_trigger: 36,
            base_level_size: 256 * MIB,
            level_size_multiplier: 10.0,
            target_file_size: 64 * MIB,
            max_compaction_bytes: 25 * 64 * MIB,
        }
    }
}

impl LeveledOptions {
    /// Checks that the options make sense together; the message names the first
    /// offending field.
    pub fn validate(&self) -> Result<(), String> {
        if self.num_levels < 2 {
            return Err(format!("num_levels must be at least 2, not {}", self.num_levels));
        }
        if self.l0_compaction_trigger == 0 {
            return Err("l0_compaction_trigger must be positive".to_owned());
        }
        if self.l0_slowdown_trigger < self.l0_compaction_trigger {
            return Err(format!(
                "l0_slowdown_trigger ({}) must be at least l0_compaction_trigger ({})",
                self.l0_slowdown_trigger, self.l0_compaction_trigger
            ));
        }
        if self.l0_stop_trigger < self.l0_slowdown_trigger {
            return Err(format!(
                "l0_stop_trigger ({}) must be at least l0_slowdown_trigger ({})",
                self.l0_stop_trigger, self.l0_slowdown_trigger
            ));
        }
        if self.base_level_size == 0 {
            return Err("base_level_size must be positive".to_owned());
        }
        let m = self.level_size_multiplier;
        if !(m.is_finite() && m > 1.0) {
            return Err(format!("level_size_multiplier must be a finite number above 1, not {m}"));
        }
        if self.target_file_size == 0 {
            return Err("target_file_size must be positive".to_owned());
        }
        if self.max_compaction_bytes < self.target_file_size {
            return Err(format!(
                "max_compaction_bytes ({}) must be at least target_file_size ({})",
                self.max_compaction_bytes, self.target_file_size
            ));
        }
        Ok(())
    }
}

/// Leveled compaction with dynamic level targets (see the module doc).
#[derive(Debug, Clone)]
pub struct Leveled {
    options: LeveledOptions,
}

/// The computed shape: the base level and each level's target in bytes.
#[derive(Debug, Clone, PartialEq)]
struct Targets {
    /// Level 0 compacts into this level.
    base: usize,
    /// `bytes[i]` is level i's target (0 for level 0 and levels above the base level).
    bytes: Vec<u64>,
}

/// One compaction's inputs after expansion.
struct Inputs<'a> {
    /// Tables of the input level.
    upper: Vec<&'a TableSummary>,
    /// Tables of the output level (empty when it is the input level).
    lower: Vec<&'a TableSummary>,
}

impl Inputs<'_> {
    fn all(&self) -> impl Iterator<Item = &TableSummary> {
        self.upper.iter().chain(&self.lower).copied()
    }

    fn bytes(&self) -> u64 {
        self.all().map(|t| t.size).sum()
    }

    fn is_busy(&self, busy: &HashSet<u64>) -> bool {
        self.all().any(|t| busy.contains(&t.number))
    }
}

impl Leveled {
    /// A strategy with `options`, which must pass [`LeveledOptions::validate`].
    pub fn new(options: LeveledOptions) -> Result<Self, String> {
        options.validate()?;
        Ok(Leveled { options })
    }

    /// The options in use.
    pub fn options(&self) -> &LeveledOptions {
        &self.options
    }

    /// The level new data from level 0 compacts into (see the module doc).
    pub fn base_level(&self, levels: &LevelsSummary) -> u32 {
        self.targets(levels).base as u32
    }

    /// Dynamic level targets and the base level.
    fn targets(&self, levels: &LevelsSummary) -> Targets {
        let n = self.options.num_levels;
        let bottom = n - 1;
        let mut bytes = vec![0; n];
        let non_empty = |i: &usize| !tables(levels, *i).is_empty();
        let (Some(first), Some(last)) = ((1..n).find(non_empty), (1..n).rev().find(non_empty))
        else {
            return Targets { base: bottom, bytes };
        };
        let base_size = self.options.base_level_size as f64;
        let mut target = levels.level_bytes(last) as f64;
        let mut base = None;
        for level in (1..=bottom).rev() {
            if level < bottom {
                target /= self.options.level_size_multiplier;
            }
            bytes[level] = (target as u64).max(1);
            if base.is_none() && target <= base_size {
                base = Some(level);
            }
        }
        let base = base.unwrap_or(1).min(first);
        for b in &mut bytes[..base] {
            *b = 0;
        }
        Targets { base, bytes }
    }

    /// `(score, level)` of every level that has one, highest first.
    fn scores(
        &self,
        levels: &LevelsSummary,
        busy: &HashSet<u64>,
        targets: &Targets,
    ) -> Vec<(f64, usize)> {
        let idle =
            |level: usize| tables(levels, level).iter().filter(move |t| !busy.contains(&t.number));
        let l0 = idle(0).count() as f64 / self.options.l0_compaction_trigger as f64;
        let mut scores = vec![(l0, 0)];
        for level in targets.base..self.options.num_levels - 1 {
            let bytes: u64 = idle(level).map(|t| t.size).sum();
            scores.push((bytes as f64 / targets.bytes[level] as f64, level));
        }
        scores.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        scores
    }

    /// The output level of a compaction out of `level`.
    fn output_level(&self, level: usize, targets: &Targets) -> usize {
        if level == 0 { targets.base } else { (level + 1).min(self.options.num_levels - 1) }
    }

    /// The best idle compaction out of `level`, if any.
    fn pick_level(
        &self,
        levels: &LevelsSummary,
        busy: &HashSet<u64>,
        level: usize,
        targets: &Targets,
    ) -> Option<CompactionTask> {
        let output = self.output_level(level, targets);
        let mut seeds: Vec<&TableSummary> =
            tables(levels, level).iter().filter(|t| !busy.contains(&t.number)).collect();
        if level == 0 {
            // Oldest first; the first closure that is idle wins.
            seeds.sort_by_key(|t| (t.max_seqno, t.number));
            return seeds.into_iter().find_map(|seed| {
                let inputs = expand(levels, level, output, &seed.smallest, &seed.largest);
                (!inputs.is_busy(busy)).then(|| {
                    self.task(levels, CompactionReason::LevelScore, level, output, &inputs)
                })
            });
        }
        let cap = self.options.max_compaction_bytes;
        seeds
            .into_iter()
            .map(|seed| (seed, expand(levels, level, output, &seed.smallest, &seed.largest)))
            .filter(|(_, inputs)| !inputs.is_busy(busy))
            .min_by(|(a, x), (b, y)| {
                let ratio = |i: &Inputs| {
                    let upper: u64 = i.upper.iter().map(|t| t.size).sum();
                    let lower: u64 = i.lower.iter().map(|t| t.size).sum();
                    lower as f64 / upper.max(1) as f64
                };
                (x.bytes() > cap)
                    .cmp(&(y.bytes() > cap))
                    .then(ratio(x).total_cmp(&ratio(y)))
                    .then(a.smallest.cmp(&b.smallest))
            })
            .map(|(_, inputs)| {
                self.task(levels, CompactionReason::LevelScore, level, output, &inputs)
            })
    }

    /// A task over `inputs`, moving when it can, with `drop_tombstones` computed.
    fn task(
        &self,
        levels: &LevelsSummary,
        reason: CompactionReason,
        level: usize,
        output: usize,
        inputs: &Inputs,
    ) -> CompactionTask {
        let move_only = level != output && inputs.upper.len() == 1 && inputs.lower.is_empty();
        CompactionTask {
            reason,
            inputs: (inputs.upper.iter().map(|t| (level as u32, t.number)))
                .chain(inputs.lower.iter().map(|t| (output as u32, t.number)))
                .collect(),
            output_level: output as u32,
            move_only,
            drop_tombstones: !move_only && may_drop_tombstones(levels, output, inputs),
            target_file_size: self.options.target_file_size,
        }
    }
}

/// The tables of `level` (none if the summary lacks it).
fn tables(levels: &LevelsSummary, level: usize) -> &[TableSummary] {
    levels.levels.get(level).map_or(&[], Vec::as_slice)
}

/// The tables of `level` and `output` overlapping `[smallest, largest]`, with the range
/// widened until no table of either level overlaps it without being an input.
fn expand<'a>(
    levels: &'a LevelsSummary,
    level: usize,
    output: usize,
    smallest: &Bytes,
    largest: &Bytes,
) -> Inputs<'a> {
    let (mut lo, mut hi) = (smallest.clone(), largest.clone());
    loop {
        let overlapping = |l: usize| -> Vec<&'a TableSummary> {
            tables(levels, l).iter().filter(|t| t.overlaps(&lo, &hi)).collect()
        };
        let inputs = Inputs {
            upper: overlapping(level),
            lower: if output == level { Vec::new() } else { overlapping(output) },
        };
        let new_lo = inputs.all().map(|t| &t.smallest).min().unwrap_or(&lo).clone();
        let new_hi = inputs.all().map(|t| &t.largest).max().unwrap_or(&hi).clone();
        if new_lo >= lo && new_hi <= hi {
            return inputs;
        }
        lo = new_lo.min(lo);
        hi = new_hi.max(hi);
    }
}

/// True when no table outside `inputs` can hold an older version of a key in their
/// hull: nothing deeper than `output` overlaps it, and nothing at or above `output`
/// overlaps it with a seqno below the inputs' newest.
fn may_drop_tombstones(levels: &LevelsSummary, output: usize, inputs: &Inputs) -> bool {
    let (Some(lo), Some(hi), Some(max_seqno)) = (
        inputs.all().map(|t| &t.smallest).min(),
        inputs.all().map(|t| &t.largest).max(),
        inputs.all().map(|t| t.max_seqno).max(),
    ) else {
        return false;
    };
    let numbers: HashSet<u64> = inputs.all().map(|t| t.number).collect();
    !levels.levels.iter().enumerate().any(|(level, tables)| {
        tables.iter().any(|t| {
            !numbers.contains(&t.number)
                && t.overlaps(lo, hi)
                && (level > output || t.min_seqno < max_seqno)
        })
    })
}

impl CompactionStrategy for Leveled {
    fn num_levels(&self) -> usize {
        self.options.num_levels
    }

    fn pick(&self, levels: &LevelsSummary, busy: &HashSet<u64>) -> Option<CompactionTask> {
        let targets = self.targets(levels);
        self.scores(levels, busy, &targets)
            .into_iter()
            .take_while(|&(score, _)| score >= 1.0)
            .find_map(|(_, level)| self.pick_level(levels, busy, level, &targets))
    }

    fn pick_manual(
        &self,
        levels: &LevelsSummary,
        range: Option<(&[u8], &[u8])>,
        level: u32,
    ) -> Option<CompactionTask> {
        let level = level as usize;
        if level >= self.options.num_levels {
            return None;
        }
        let hit: Vec<&TableSummary> = tables(levels, level)
            .iter()
            .filter(|t| range.is_none_or(|(start, end)| t.overlaps(start, end)))
            .collect();
        let lo = hit.iter().map(|t| &t.smallest).min()?;
        let hi = hit.iter().map(|t| &t.largest).max()?;
        let targets = self.targets(levels);
        let output = self.output_level(level, &targets);
        let inputs = expand(levels, level, output, lo, hi);
        Some(self.task(levels, CompactionReason::Manual, level, output, &inputs))
    }

    fn write_pressure(&self, levels: &LevelsSummary) -> WritePressure {
        let count = tables(levels, 0).len();
        if count >= self.options.l0_stop_trigger {
            WritePressure::Stop
        } else if count >= self.options.l0_slowdown_trigger {
            WritePressure::Slowdown
        } else {
            WritePressure::None
        }
    }
}
