//! Compaction: deciding which tables to merge (strategies) and merging them (the job).
//!
//! # Split of responsibilities
//! - A [`CompactionStrategy`] is a **pure function** of a [`LevelsSummary`] (what the
//!   current version holds, table by table) and the set of tables already being
//!   compacted. It returns a [`CompactionTask`] or nothing. It touches no file and no
//!   lock, so it is tested from hand-written tables of file sizes and key ranges.
//! - `job` executes a task: it merges the input tables, streams their entries through
//!   `collapse` (the rules, with their proof, for which versions no live snapshot can
//!   see and which tombstones provably hide nothing: a pure function of entries) into
//!   `output` (cuts tables at a target size, clips range tombstones to them, creates
//!   each file durably), and returns the new tables. It knows nothing about the
//!   manifest or the read view.
//! - The database (`db::background`) runs picks on background threads, logs the
//!   result as one version edit, installs the new version, and deletes input files
//!   once no reader still holds them.
//!
//! # Levels
//! Level 0 holds tables that may overlap, newest (highest `max_seqno`) first. Levels
//! 1 and up, used by the leveled strategy, hold sorted runs of non-overlapping tables
//! ordered by smallest key. The size-tiered strategy keeps every table in level 0.

mod collapse;
#[cfg(test)]
mod fixtures;
mod job;
mod leveled;
mod output;
mod tiered;

use std::collections::HashSet;
use std::fmt;

use bytes::Bytes;

use crate::key::SeqNo;

pub use job::CompactionJob;
pub use leveled::Leveled;
pub use tiered::SizeTiered;

/// What picking sees of one table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableSummary {
    /// File number.
    pub number: u64,
    /// Level it lives in.
    pub level: u32,
    /// Bytes on disk.
    pub size: u64,
    /// Smallest user key or range-tombstone start.
    pub smallest: Bytes,
    /// Largest user key or range-tombstone end (an upper bound).
    pub largest: Bytes,
    /// Seqno range of its entries and tombstones.
    pub min_seqno: SeqNo,
    /// See `min_seqno`.
    pub max_seqno: SeqNo,
    /// Point entries (puts and deletes).
    pub entries: u64,
    /// Point deletes plus range tombstones.
    pub tombstones: u64,
    /// Seconds since the table was written (0 if unknown).
    pub age_secs: u64,
    /// Scans that read it beside another table while it was in level 0 (the leveled
    /// strategy's read-triggered compaction weighs them; size-tiered ignores them).
    pub scans: u64,
}

impl TableSummary {
    /// Fraction of its records that are tombstones.
    pub fn tombstone_ratio(&self) -> f64 {
        let records = self.entries.max(self.tombstones);
        if records == 0 { 0.0 } else { self.tombstones as f64 / records as f64 }
    }

    /// True if the table's key range intersects `[smallest, largest]` (inclusive).
    pub fn overlaps(&self, smallest: &[u8], largest: &[u8]) -> bool {
        self.smallest.as_ref() <= largest && smallest <= self.largest.as_ref()
    }
}

/// The newest seqno of `inputs` and every table outside them that overlaps their key
/// hull: the tables that could hold older versions of keys an input tombstone hides,
/// which the strategies' `drop_tombstones` rules examine. `None` without inputs.
fn hull_neighbours<'a>(
    levels: &'a LevelsSummary,
    inputs: &[&'a TableSummary],
) -> Option<(SeqNo, impl Iterator<Item = &'a TableSummary>)> {
    let smallest = inputs.iter().map(|t| &t.smallest).min()?;
    let largest = inputs.iter().map(|t| &t.largest).max()?;
    let max_seqno = inputs.iter().map(|t| t.max_seqno).max()?;
    let numbers: HashSet<u64> = inputs.iter().map(|t| t.number).collect();
    let neighbours = levels
        .tables()
        .filter(move |t| !numbers.contains(&t.number) && t.overlaps(smallest, largest));
    Some((max_seqno, neighbours))
}

/// The tables of a version by level: level 0 newest first, deeper levels by key.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LevelsSummary {
    /// `levels[i]` holds the tables of level `i`.
    pub levels: Vec<Vec<TableSummary>>,
}

impl LevelsSummary {
    /// Every table, level by level.
    pub fn tables(&self) -> impl Iterator<Item = &TableSummary> {
        self.levels.iter().flatten()
    }

    /// Bytes in `level` (0 for a level that does not exist).
    pub fn level_bytes(&self, level: usize) -> u64 {
        self.levels.get(level).map_or(0, |tables| tables.iter().map(|t| t.size).sum())
    }
}

/// Why a compaction runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompactionReason {
    /// Size-tiered: a bucket of similarly sized tables is full.
    Minor,
    /// Size-tiered: one table holds too many tombstones.
    Tombstone,
    /// Size-tiered: writes are stopped and no bucket is full, so the smallest tables
    /// are merged anyway.
    Relief,
    /// Everything into one, on request (`compact()`).
    Major,
    /// Leveled: the level's score (size or file count against its target) is ≥ 1.
    LevelScore,
    /// A range compaction requested with `compact_range`.
    Manual,
    /// Leveled: scans merging level-0 tables with the tables below have cost more
    /// than compacting them into the base level would.
    ReadTriggered,
}

/// One unit of compaction work.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompactionTask {
    /// Why.
    pub reason: CompactionReason,
    /// The tables to merge: `(level, number)`.
    pub inputs: Vec<(u32, u64)>,
    /// Where the outputs go.
    pub output_level: u32,
    /// Move the single input to `output_level` without rewriting it (nothing in the
    /// output level overlaps it).
    pub move_only: bool,
    /// No table outside the inputs can hold an older version of any key in their
    /// range, so tombstones that no snapshot needs may be dropped.
    pub drop_tombstones: bool,
    /// Start a new output table once one reaches this size.
    pub target_file_size: u64,
}

/// How much the tree's shape should hold writers back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum WritePressure {
    /// Write at full speed.
    None,
    /// Slow each write down a little so compaction can catch up.
    Slowdown,
    /// Make writers wait until compaction has made progress.
    Stop,
}

impl WritePressure {
    /// `Stop` from `stop` tables on, `Slowdown` from `slowdown` on, else `None`.
    pub fn from_table_count(count: usize, slowdown: usize, stop: usize) -> WritePressure {
        if count >= stop {
            WritePressure::Stop
        } else if count >= slowdown {
            WritePressure::Slowdown
        } else {
            WritePressure::None
        }
    }
}

/// A compaction policy: picks work from the shape of the tree.
pub trait CompactionStrategy: Send + Sync + fmt::Debug {
    /// Number of levels the strategy uses (size-tiered: 1).
    fn num_levels(&self) -> usize;

    /// The most urgent background task, avoiding tables in `busy`; `None` if the tree
    /// is in shape.
    fn pick(&self, levels: &LevelsSummary, busy: &HashSet<u64>) -> Option<CompactionTask>;

    /// One step of a manual compaction of the keys in `[start, end]` (all keys when
    /// `None`) starting from `level`: the tables of `level` (and what they overlap in
    /// the output level) that intersect the range. `None` when there is nothing to do
    /// at that level. The database calls it for each level in turn.
    fn pick_manual(
        &self,
        levels: &LevelsSummary,
        range: Option<(&[u8], &[u8])>,
        level: u32,
    ) -> Option<CompactionTask>;

    /// How hard writers should be held back given the tree's shape.
    fn write_pressure(&self, levels: &LevelsSummary) -> WritePressure;
}
