//! [`CompactionJob`]: merges input tables into new ones, collapsing versions no live
//! snapshot can see and dropping tombstones that provably hide nothing.
//!
//! The job knows nothing about the manifest or the read view: it is given the input
//! tables, the live snapshots and where to create files, and returns the new tables.
//! The caller logs them (and the removal of the inputs) as one version edit.
//!
//! # Definitions
//! Let `S_1 < … < S_n` be the live snapshot seqnos. A reader at `S` (a live snapshot,
//! or "latest" = +∞; a snapshot taken later sees at least everything and behaves as
//! latest) sees, for key `k`, the newest version `v` of `k` with `seqno(v) <= S`,
//! unless `v` is a delete or a range tombstone `t` covering `k` has
//! `seqno(v) < seqno(t) <= S`. The **stripe** of a seqno `s` is the smallest `S_i >= s`
//! (its index `i`), or "latest" if there is none. A reader at `S` sees exactly the
//! seqnos `<= S`, and for a live `S` those are whole stripes: stripe boundaries are the
//! only places a reader can cut.
//!
//! # Rules, per user key (versions arrive newest first)
//! 1. **Stripe collapse.** Keep only the newest version of each stripe.
//! 2. **Covered.** Also drop a version `v` when an input range tombstone `t` covering
//!    its key has `seqno(v) < seqno(t)` and `t` is in `v`'s stripe (found with a
//!    [`TombstoneIndex`] query at the stripe's upper bound). Every input tombstone
//!    counts, kept or dropped (rule 4).
//! 3. **Bottom deletes.** With `drop_tombstones`, after rules 1–2, drop the *oldest
//!    kept* version while it is a point delete (repeatedly: a run of deletes at the
//!    old end of the kept list goes away).
//! 4. **Range tombstones.** Kept unless `drop_tombstones` and no live snapshot is
//!    `< seqno(t)` (i.e. `t` is in the earliest stripe, stripe 0).
//!
//! # Proof sketch (every reader at a live snapshot or latest sees the same values)
//! Fix `k` and a reader at `S`; let `v*` be the version it picks among the inputs.
//! Versions outside the inputs are untouched, so only the inputs' answer matters.
//! - `stripe(v*) <= S` (`S` is a snapshot `>= seqno(v*)` or latest), so any newer
//!   version in `v*`'s stripe would have seqno `<= S`, contradicting the choice of
//!   `v*`: `v*` is the newest of its stripe and rule 1 keeps it. Versions rule 1 drops
//!   are never picked by any reader.
//! - If rule 2 drops `v*` for `t`, then `seqno(v*) < seqno(t) <= stripe(v*) <= S`: the
//!   reader saw `k` hidden by `t`. Afterwards no kept version lies in
//!   `(seqno(v*), S]` (there was none in the inputs), and every older kept version `v'`
//!   is covered by `t` with `seqno(v') < seqno(t) <= S`: still hidden, *if `t` is
//!   kept*. If rule 4 dropped `t`, no snapshot is `< seqno(t)`, so there is no stripe
//!   boundary in `[seqno(v'), seqno(t))`: `v'` is in `t`'s stripe and rule 2 dropped it.
//!   Nothing is left to pick; `drop_tombstones` guarantees no older version outside.
//! - Rule 3 drops a delete `d` only when no older version of `k` is kept. A reader at
//!   `S < seqno(d)` never saw `d`. A reader at `S >= seqno(d)` that picked `d` saw no
//!   value; without `d` it picks the next older kept version of `k`, and there is
//!   none in the outputs nor (by `drop_tombstones`) outside the inputs: still no
//!   value. Readers that picked something newer than `d` are unaffected. RocksDB asks
//!   instead that the delete be in the earliest stripe; that is a sufficient proxy for
//!   "nothing older kept" when versions cannot be looked ahead at. Grouping each key's
//!   versions lets the job test the condition itself, which also drops deletes in
//!   later stripes whose older versions were all dropped (e.g. shadowed by range
//!   tombstones).
//! - Rule 4: readers at `S < seqno(t)` never saw `t`. Every input version `t` hid is
//!   in `t`'s stripe (no boundary below `t`), hence dropped by rule 2, and nothing
//!   older exists outside the inputs (`drop_tombstones`).
//! - Cutting kept tombstones at output boundaries (below) keeps every covered key
//!   covered at the same seqno, since each key lies in exactly one output's range.
//!
//! # Output files
//! - A table is cut once [`TableBuilder::estimated_size`] reaches `target_file_size`,
//!   but only between user keys: all kept versions of a key land in one table. Point
//!   keys of consecutive outputs are therefore strictly increasing.
//! - Output `i` covers `[first key of i, first key of i + 1)`; the first starts at −∞
//!   and the last ends at +∞. Each kept range tombstone is clipped to that range and
//!   the non-empty parts are written to the table, so tombstones never make outputs
//!   overlap; one tombstone may appear, in pieces, in several outputs. Pieces of one
//!   tombstone (same seqno) found in several inputs are first joined back together. A
//!   table's `largest_key` may be a clipped tombstone's exclusive end, equal to the
//!   next table's `smallest_key`.
//! - If only tombstones survive, they go to a single table; if nothing survives, there
//!   is no output.
//! - Each file is written as `NNNNNN.sst.tmp`, synced by [`TableBuilder::finish`],
//!   renamed to [`table_file_name`] and opened; the directory is synced once at the
//!   end. On any error every file the job created is removed (best effort).
//!
//! # Cost
//! One pass over the inputs; memory holds one user key's versions plus every input
//! range tombstone.

use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;

use crate::cache::BlockCache;
use crate::error::Result;
use crate::fs::FileSystem;
use crate::iter::{EntrySource, MergingIter};
use crate::key::{Entry, RangeTombstone, SeqNo, ValueKind};
use crate::sstable::properties::Properties;
use crate::sstable::{Table, TableBuilder, TableOptions, table_file_name};
use crate::tombstones::TombstoneIndex;

/// One compaction's merge, ready to run.
pub struct CompactionJob<'a> {
    /// The tables to merge, in any order.
    pub inputs: Vec<Arc<Table>>,
    /// Seqnos of the live snapshots (sorted and deduplicated by the job).
    pub snapshots: Vec<SeqNo>,
    /// No table outside `inputs` holds an older version of any key in their range, so
    /// tombstones that no snapshot needs may be dropped.
    pub drop_tombstones: bool,
    /// Start a new output table once one reaches about this many bytes.
    pub target_file_size: u64,
    /// How output tables are built.
    pub options: TableOptions,
    /// Where files are created.
    pub fs: &'a dyn FileSystem,
    /// The database directory.
    pub dir: &'a Path,
    /// Allocates a new file number for each output.
    pub new_file_number: &'a dyn Fn() -> u64,
    /// The cache the outputs are opened with.
    pub cache: Arc<BlockCache>,
}

/// One table the job wrote.
#[derive(Debug, Clone)]
pub struct CompactionOutput {
    /// File number (the table's id and file name).
    pub number: u64,
    /// The opened table.
    pub table: Arc<Table>,
    /// What the table holds.
    pub properties: Properties,
}

/// What a compaction did, in counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CompactionStats {
    /// Sum of the input files' sizes.
    pub bytes_read: u64,
    /// Sum of the output files' sizes.
    pub bytes_written: u64,
    /// Point entries read.
    pub entries_in: u64,
    /// Point entries written.
    pub entries_out: u64,
    /// Range tombstones read.
    pub range_tombstones_in: u64,
    /// Range tombstone pieces written (clipping can make one tombstone several).
    pub range_tombstones_out: u64,
    /// Point versions dropped as invisible (rules 1 and 2 of the module doc).
    pub versions_dropped: u64,
    /// Point deletes (rule 3) and range tombstones (rule 4, counted after joining
    /// pieces of one tombstone) dropped.
    pub tombstones_dropped: u64,
}

/// The new tables and the counts.
#[derive(Debug)]
pub struct CompactionResult {
    /// The output tables, in key order.
    pub outputs: Vec<CompactionOutput>,
    /// What the job did.
    pub stats: CompactionStats,
}

impl std::fmt::Debug for CompactionJob<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CompactionJob")
            .field("inputs", &self.inputs.iter().map(|t| t.id()).collect::<Vec<_>>())
            .field("snapshots", &self.snapshots)
            .field("drop_tombstones", &self.drop_tombstones)
            .field("target_file_size", &self.target_file_size)
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

impl CompactionJob<'_> {
    /// Runs the merge. On error, removes every file it created and returns the error.
    pub fn run(mut self) -> Result<CompactionResult> {
        self.snapshots.sort_unstable();
        self.snapshots.dedup();
        let mut stats = CompactionStats {
            bytes_read: self.inputs.iter().map(|t| t.file_size()).sum(),
            ..CompactionStats::default()
        };
        let all_tombstones: Vec<RangeTombstone> =
            self.inputs.iter().flat_map(|t| t.range_tombstones().iter().cloned()).collect();
        stats.range_tombstones_in = all_tombstones.len() as u64;
        let collapser = Collapser {
            index: TombstoneIndex::new(all_tombstones.iter().cloned()),
            snapshots: &self.snapshots,
            drop_tombstones: self.drop_tombstones,
        };
        let coalesced = coalesce(all_tombstones);
        let coalesced_count = coalesced.len() as u64;
        let kept: Vec<RangeTombstone> =
            coalesced.into_iter().filter(|t| collapser.keep_range_tombstone(t)).collect();
        stats.tombstones_dropped += coalesced_count - kept.len() as u64;
        let mut writer = Writer {
            job: &self,
            tombstones: kept,
            created: Vec::new(),
            done: Vec::new(),
            current: None,
            cut_pending: false,
        };
        match self.merge(&collapser, &mut writer, &mut stats) {
            Ok(()) => {
                let outputs = writer.done;
                stats.bytes_written = outputs.iter().map(|o| o.table.file_size()).sum();
                stats.range_tombstones_out =
                    outputs.iter().map(|o| o.properties.range_tombstone_count).sum();
                Ok(CompactionResult { outputs, stats })
            }
            Err(e) => {
                writer.current = None;
                writer.done.clear();
                for path in &writer.created {
                    // Best effort: the file may not exist (e.g. a rename that failed).
                    let _ = self.fs.remove_file(path);
                }
                Err(e)
            }
        }
    }

    /// Streams the merged inputs key by key into `writer`.
    fn merge(
        &self,
        collapser: &Collapser<'_>,
        writer: &mut Writer<'_, '_>,
        stats: &mut CompactionStats,
    ) -> Result<()> {
        let sources: Vec<EntrySource> = self
            .inputs
            .iter()
            .map(|t| Box::new(t.iter(Bound::Unbounded, Bound::Unbounded)) as EntrySource)
            .collect();
        let mut versions: Vec<Entry> = Vec::new();
        for entry in MergingIter::new(sources, false) {
            let entry = entry?;
            stats.entries_in += 1;
            if versions.first().is_some_and(|v| v.key != entry.key) {
                collapser.collapse(&mut versions, stats);
                writer.add_key(&versions)?;
                versions.clear();
            }
            versions.push(entry);
        }
        collapser.collapse(&mut versions, stats);
        writer.add_key(&versions)?;
        writer.finish()
    }
}

/// Applies rules 1–4 of the module documentation.
struct Collapser<'s> {
    /// Every input range tombstone.
    index: TombstoneIndex,
    /// Sorted, deduplicated.
    snapshots: &'s [SeqNo],
    drop_tombstones: bool,
}

impl Collapser<'_> {
    /// Index of the smallest snapshot `>= seqno`; `snapshots.len()` means "latest".
    fn stripe(&self, seqno: SeqNo) -> usize {
        self.snapshots.partition_point(|&s| s < seqno)
    }

    /// Rule 4.
    fn keep_range_tombstone(&self, t: &RangeTombstone) -> bool {
        !(self.drop_tombstones && self.stripe(t.seqno) == 0)
    }

    /// Rules 1–3 on the versions of one user key (newest first), in place.
    fn collapse(&self, versions: &mut Vec<Entry>, stats: &mut CompactionStats) {
        let before = versions.len() as u64;
        let mut last_stripe = None;
        versions.retain(|v| {
            let stripe = self.stripe(v.seqno);
            if last_stripe == Some(stripe) {
                return false; // Rule 1: an older version in the same stripe.
            }
            last_stripe = Some(stripe);
            let upper = self.snapshots.get(stripe).copied().unwrap_or(SeqNo::MAX);
            // Rule 2: the newest tombstone <= the stripe's bound is in the stripe iff
            // it is newer than `v` (which is in the stripe).
            self.index.max_covering(&v.key, upper).is_none_or(|t| t <= v.seqno)
        });
        stats.versions_dropped += before - versions.len() as u64;
        if self.drop_tombstones {
            while versions.last().is_some_and(|v| v.kind == ValueKind::Delete) {
                versions.pop(); // Rule 3.
                stats.tombstones_dropped += 1;
            }
        }
        stats.entries_out += versions.len() as u64;
    }
}

/// Joins overlapping or adjacent tombstones of equal seqno (pieces of one tombstone
/// cut by an earlier compaction) and sorts the result by (start ASC, seqno DESC).
fn coalesce(mut tombstones: Vec<RangeTombstone>) -> Vec<RangeTombstone> {
    tombstones.sort_by(|a, b| a.seqno.cmp(&b.seqno).then_with(|| a.start.cmp(&b.start)));
    let mut out: Vec<RangeTombstone> = Vec::with_capacity(tombstones.len());
    for t in tombstones {
        match out.last_mut() {
            Some(last) if last.seqno == t.seqno && t.start <= last.end => {
                if t.end > last.end {
                    last.end = t.end;
                }
            }
            _ => out.push(t),
        }
    }
    out.sort_by(RangeTombstone::cmp_internal);
    out
}

/// A table being built.
struct Building {
    number: u64,
    temp: PathBuf,
    builder: TableBuilder,
    /// First key of its range; `None` is −∞ (the first output).
    lower: Option<Bytes>,
}

/// Cuts the kept entries into output tables.
struct Writer<'j, 'a> {
    job: &'j CompactionJob<'a>,
    /// Kept range tombstones, sorted by (start ASC, seqno DESC).
    tombstones: Vec<RangeTombstone>,
    /// Every path the job may have created, removed on failure.
    created: Vec<PathBuf>,
    done: Vec<CompactionOutput>,
    current: Option<Building>,
    /// The current table reached the target size: cut before the next key.
    cut_pending: bool,
}

impl Writer<'_, '_> {
    /// Adds the kept versions of one user key (possibly none).
    fn add_key(&mut self, versions: &[Entry]) -> Result<()> {
        let Some(first) = versions.first() else { return Ok(()) };
        if self.cut_pending {
            self.finish_current(Some(&first.key))?;
            self.cut_pending = false;
        }
        if self.current.is_none() {
            let lower = (!self.done.is_empty()).then(|| first.key.clone());
            self.current = Some(self.start(lower)?);
        }
        let Some(building) = &mut self.current else { return Ok(()) };
        for v in versions {
            building.builder.add(v)?;
        }
        self.cut_pending = building.builder.estimated_size() >= self.job.target_file_size;
        Ok(())
    }

    /// Creates the next output's temp file.
    fn start(&mut self, lower: Option<Bytes>) -> Result<Building> {
        let number = (self.job.new_file_number)();
        let temp = self.job.dir.join(format!("{}.tmp", table_file_name(number)));
        self.created.push(temp.clone());
        let file = self.job.fs.create(&temp)?;
        Ok(Building { number, temp, builder: TableBuilder::new(file, self.job.options), lower })
    }

    /// Finishes the current table (if any), whose range ends at `upper` (`None`: +∞).
    fn finish_current(&mut self, upper: Option<&Bytes>) -> Result<()> {
        let Some(mut building) = self.current.take() else { return Ok(()) };
        let mut pieces: Vec<RangeTombstone> = self
            .tombstones
            .iter()
            .filter_map(|t| {
                let start = match &building.lower {
                    Some(lower) if *lower > t.start => lower.clone(),
                    _ => t.start.clone(),
                };
                let end = match upper {
                    Some(upper) if *upper < t.end => upper.clone(),
                    _ => t.end.clone(),
                };
                (start < end).then_some(RangeTombstone { start, end, seqno: t.seqno })
            })
            .collect();
        pieces.sort_by(RangeTombstone::cmp_internal);
        for piece in &pieces {
            building.builder.add_range_tombstone(piece)?;
        }
        let properties = building.builder.finish()?;
        let path = self.job.dir.join(table_file_name(building.number));
        self.created.push(path.clone());
        self.job.fs.rename(&building.temp, &path)?;
        let table =
            Table::open(self.job.fs, &path, building.number, Arc::clone(&self.job.cache))?;
        self.done.push(CompactionOutput {
            number: building.number,
            table: Arc::new(table),
            properties,
        });
        Ok(())
    }

    /// Finishes the last table and makes the new names durable.
    fn finish(&mut self) -> Result<()> {
        if self.current.is_none() && self.done.is_empty() && !self.tombstones.is_empty() {
            self.current = Some(self.start(None)?);
        }
        self.finish_current(None)?;
        if !self.done.is_empty() {
            self.job.fs.sync_dir(self.job.dir)?;
        }
        Ok(())
    }
}
