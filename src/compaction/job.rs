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
//! # Cancellation
//! [`CompactionJob::cancelled`] is asked before each output file is created and every
//! [`CANCEL_CHECK_INTERVAL`] input entries. Once it returns true the job stops, removes
//! every file it created (as on any error) and returns [`Error::Closed`]; it never
//! hands back a partial result.
//!
//! # Cost
//! One pass over the inputs. Versions are streamed: rules 1–2 are applied as each
//! version arrives, so memory holds only the *kept* versions of the current user key
//! — at most one per stripe, i.e. live snapshots + 1, however many versions the key
//! has ([`CompactionStats::max_versions_buffered`]) — plus every input range
//! tombstone. Rule 3 needs the kept list of the whole key, which that bound covers.

use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;

use crate::cache::BlockCache;
use crate::error::{Error, Result};
use crate::fs::FileSystem;
use crate::key::{Entry, RangeTombstone, SeqNo, ValueKind};
use crate::merge::{EntrySource, MergingIter};
use crate::sstable::properties::Properties;
use crate::sstable::{Table, TableBuilder, TableOptions, table_file_name};
use crate::tombstones::TombstoneIndex;

/// Input entries read between two cancellation checks within one output: often
/// enough that a long output stops within milliseconds, rarely enough to cost nothing.
pub const CANCEL_CHECK_INTERVAL: u64 = 4096;

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
    /// True once the job should stop (the database is closing): see the module doc.
    pub cancelled: &'a dyn Fn() -> bool,
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
    /// Most versions of one user key held in memory at once: at most one per snapshot
    /// stripe, however many versions the key has.
    pub max_versions_buffered: u64,
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
        collapser.run(MergingIter::new(sources, false), stats, self.cancelled, |kept| {
            writer.add_key(kept)
        })?;
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

    /// Applies rules 1–3 to `entries` (internal order), handing the kept versions of
    /// each user key, newest first, to `sink` (never an empty list). Versions are
    /// consumed one at a time: only kept ones are held, at most one per stripe.
    /// Returns `Error::Closed` once `cancelled` says so (asked every
    /// [`CANCEL_CHECK_INTERVAL`] entries).
    fn run(
        &self,
        entries: impl IntoIterator<Item = Result<Entry>>,
        stats: &mut CompactionStats,
        cancelled: &dyn Fn() -> bool,
        mut sink: impl FnMut(&[Entry]) -> Result<()>,
    ) -> Result<()> {
        let mut key = KeyVersions::default();
        for entry in entries {
            let entry = entry?;
            stats.entries_in += 1;
            if stats.entries_in.is_multiple_of(CANCEL_CHECK_INTERVAL) && cancelled() {
                return Err(Error::Closed);
            }
            if !key.is(&entry.key) {
                self.finish_key(&mut key, stats, &mut sink)?;
                key.start(&entry.key);
            }
            self.offer(&mut key, entry, stats);
        }
        self.finish_key(&mut key, stats, &mut sink)
    }

    /// Rules 1–2 for the next (older) version of the current key.
    fn offer(&self, key: &mut KeyVersions, v: Entry, stats: &mut CompactionStats) {
        let stripe = self.stripe(v.seqno);
        if key.last_stripe == Some(stripe) {
            stats.versions_dropped += 1; // Rule 1: an older version in the same stripe.
            return;
        }
        key.last_stripe = Some(stripe);
        let upper = self.snapshots.get(stripe).copied().unwrap_or(SeqNo::MAX);
        // Rule 2: the newest tombstone <= the stripe's bound is in the stripe iff it is
        // newer than `v` (which is in the stripe).
        if self.index.max_covering(&v.key, upper).is_none_or(|t| t <= v.seqno) {
            key.kept.push(v);
            stats.max_versions_buffered = stats.max_versions_buffered.max(key.kept.len() as u64);
        } else {
            stats.versions_dropped += 1;
        }
    }

    /// Rule 3 on the kept versions of the current key, then hands them to `sink`.
    fn finish_key(
        &self,
        key: &mut KeyVersions,
        stats: &mut CompactionStats,
        sink: &mut impl FnMut(&[Entry]) -> Result<()>,
    ) -> Result<()> {
        if self.drop_tombstones {
            while key.kept.last().is_some_and(|v| v.kind == ValueKind::Delete) {
                key.kept.pop(); // Rule 3.
                stats.tombstones_dropped += 1;
            }
        }
        stats.entries_out += key.kept.len() as u64;
        if key.kept.is_empty() { Ok(()) } else { sink(&key.kept) }
    }
}

/// The user key being collapsed and its kept versions, newest first.
#[derive(Default)]
struct KeyVersions {
    /// The key, copied into a reused buffer (`None` before the first entry).
    key: Option<Vec<u8>>,
    /// At most one per stripe (rule 1).
    kept: Vec<Entry>,
    /// Stripe of the last version seen (kept or not).
    last_stripe: Option<usize>,
}

impl KeyVersions {
    fn is(&self, key: &[u8]) -> bool {
        self.key.as_deref() == Some(key)
    }

    /// Starts collapsing `key`, reusing the buffers.
    fn start(&mut self, key: &[u8]) {
        let buffer = self.key.get_or_insert_with(Vec::new);
        buffer.clear();
        buffer.extend_from_slice(key);
        self.kept.clear();
        self.last_stripe = None;
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

    /// Creates the next output's temp file, unless the job was cancelled.
    fn start(&mut self, lower: Option<Bytes>) -> Result<Building> {
        if (self.job.cancelled)() {
            return Err(Error::Closed);
        }
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
        let table = Table::open(self.job.fs, &path, building.number, Arc::clone(&self.job.cache))?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fs::{FaultFs, FaultKind};
    use crate::key::MAX_SEQNO;
    use crate::options::Compression;
    use proptest::prelude::*;
    use std::cell::Cell;
    use std::collections::BTreeMap;

    fn key(k: u8) -> Bytes {
        Bytes::from(vec![b'a' + k])
    }

    fn put(k: u8, seqno: SeqNo, value: &[u8]) -> Entry {
        Entry { key: key(k), seqno, kind: ValueKind::Put, value: Bytes::copy_from_slice(value) }
    }

    fn del(k: u8, seqno: SeqNo) -> Entry {
        Entry { key: key(k), seqno, kind: ValueKind::Delete, value: Bytes::new() }
    }

    fn rt(start: u8, end: u8, seqno: SeqNo) -> RangeTombstone {
        RangeTombstone { start: key(start), end: key(end), seqno }
    }

    const OPTIONS: TableOptions =
        TableOptions { block_size: 128, compression: Compression::None, bloom_bits_per_key: 10 };

    /// An in-memory directory holding input tables, numbered from 1.
    struct Setup {
        fs: FaultFs,
        dir: PathBuf,
        cache: Arc<BlockCache>,
        next: Cell<u64>,
        inputs: Vec<Arc<Table>>,
    }

    impl Setup {
        fn new(tables: &[(Vec<Entry>, Vec<RangeTombstone>)]) -> Setup {
            let fs = FaultFs::new();
            let dir = PathBuf::from("/db");
            fs.create_dir_all(&dir).unwrap();
            let cache = Arc::new(BlockCache::new(1 << 20));
            let mut inputs = Vec::new();
            for (i, (entries, tombstones)) in tables.iter().enumerate() {
                let number = i as u64 + 1;
                let path = dir.join(table_file_name(number));
                let mut entries = entries.clone();
                entries.sort_by(Entry::cmp_internal);
                let mut tombstones = tombstones.clone();
                tombstones.sort_by(RangeTombstone::cmp_internal);
                let mut b = TableBuilder::new(fs.create(&path).unwrap(), OPTIONS);
                for e in &entries {
                    b.add(e).unwrap();
                }
                for t in &tombstones {
                    b.add_range_tombstone(t).unwrap();
                }
                b.finish().unwrap();
                inputs.push(Arc::new(Table::open(&fs, &path, number, cache.clone()).unwrap()));
            }
            Setup { fs, dir, cache, next: Cell::new(100), inputs }
        }

        fn run(
            &self,
            snapshots: &[SeqNo],
            drop_tombstones: bool,
            target_file_size: u64,
        ) -> Result<CompactionResult> {
            self.run_cancellable(snapshots, drop_tombstones, target_file_size, &|| false)
        }

        fn run_cancellable(
            &self,
            snapshots: &[SeqNo],
            drop_tombstones: bool,
            target_file_size: u64,
            cancelled: &dyn Fn() -> bool,
        ) -> Result<CompactionResult> {
            let next = || {
                let n = self.next.get();
                self.next.set(n + 1);
                n
            };
            CompactionJob {
                inputs: self.inputs.clone(),
                snapshots: snapshots.to_vec(),
                drop_tombstones,
                target_file_size,
                options: OPTIONS,
                fs: &self.fs,
                dir: &self.dir,
                new_file_number: &next,
                cache: self.cache.clone(),
                cancelled,
            }
            .run()
        }
    }

    /// Everything a set of tables holds.
    fn contents(tables: &[Arc<Table>]) -> (Vec<Entry>, Vec<RangeTombstone>) {
        let entries = tables
            .iter()
            .flat_map(|t| t.iter(Bound::Unbounded, Bound::Unbounded).map(|e| e.unwrap()))
            .collect();
        let tombstones = tables.iter().flat_map(|t| t.range_tombstones().to_vec()).collect();
        (entries, tombstones)
    }

    /// The reference reader: what a reader at `snapshot` sees.
    fn visible(
        entries: &[Entry],
        tombstones: &[RangeTombstone],
        snapshot: SeqNo,
    ) -> BTreeMap<Bytes, Bytes> {
        let mut newest: BTreeMap<Bytes, &Entry> = BTreeMap::new();
        for e in entries.iter().filter(|e| e.seqno <= snapshot) {
            let slot = newest.entry(e.key.clone()).or_insert(e);
            if e.seqno > slot.seqno {
                *slot = e;
            }
        }
        newest
            .into_iter()
            .filter(|(_, e)| e.kind == ValueKind::Put)
            .filter(|(k, e)| {
                !tombstones.iter().any(|t| t.covers(k) && e.seqno < t.seqno && t.seqno <= snapshot)
            })
            .map(|(k, e)| (k, e.value.clone()))
            .collect()
    }

    fn outputs_tables(result: &CompactionResult) -> Vec<Arc<Table>> {
        result.outputs.iter().map(|o| o.table.clone()).collect()
    }

    /// Checks the shape of the outputs: sorted, non-overlapping, tombstones clipped to
    /// each table's range, all files named as reported.
    fn check_shape(setup: &Setup, result: &CompactionResult, target: u64) {
        let mut first_keys = Vec::new();
        for o in &result.outputs {
            assert_eq!(o.table.properties(), &o.properties);
            assert_eq!(o.table.path(), setup.dir.join(table_file_name(o.number)));
            let (entries, tombstones) = contents(std::slice::from_ref(&o.table));
            assert!(!entries.is_empty() || result.outputs.len() == 1, "empty middle table");
            for e in &entries {
                assert!(o.properties.smallest_key <= e.key && e.key <= o.properties.largest_key);
            }
            for t in &tombstones {
                assert!(o.properties.smallest_key <= t.start && t.end <= o.properties.largest_key);
            }
            // At most the target plus one key's versions plus tombstones and metadata.
            let largest_key_bytes = entries
                .chunk_by(|a, b| a.key == b.key)
                .map(|run| run.iter().map(|e| e.key.len() + e.value.len() + 16).sum::<usize>())
                .max()
                .unwrap_or(0) as u64;
            let slack = 1024 + 32 * tombstones.len() as u64;
            assert!(
                o.table.file_size() <= target + largest_key_bytes + slack,
                "table of {} bytes, target {target}",
                o.table.file_size()
            );
            first_keys.push(entries.first().map(|e| e.key.clone()));
        }
        for (i, pair) in result.outputs.windows(2).enumerate() {
            let (a, b) = (contents(&[pair[0].table.clone()]), contents(&[pair[1].table.clone()]));
            let next_first = first_keys[i + 1].clone().unwrap();
            // Every key of a sorts before every key of b: versions never straddle.
            assert!(a.0.last().unwrap().key < next_first);
            assert!(pair[0].properties.largest_key <= pair[1].properties.smallest_key);
            for t in &a.1 {
                assert!(t.end <= next_first, "tombstone {t:?} runs into the next table");
            }
            for t in &b.1 {
                assert!(t.start >= next_first, "tombstone {t:?} starts before its table");
            }
        }
        let mut numbers: Vec<u64> = result.outputs.iter().map(|o| o.number).collect();
        numbers.dedup();
        assert_eq!(numbers.len(), result.outputs.len());
        for name in setup.fs.file_names() {
            assert!(!name.to_string_lossy().ends_with(".tmp"), "{name:?} left behind");
        }
    }

    /// Random tables with disjoint seqno ranges over a small key space.
    fn arb_tables() -> impl Strategy<Value = Vec<(Vec<Entry>, Vec<RangeTombstone>)>> {
        let entry = (0u8..24, 0u8..4, proptest::collection::vec(any::<u8>(), 0..40));
        let tombstone = (0u8..25, 1u8..8);
        let table =
            (proptest::collection::vec(entry, 0..40), proptest::collection::vec(tombstone, 0..3));
        proptest::collection::vec(table, 1..5).prop_map(|tables| {
            let mut seqno = 0;
            let mut next = || {
                seqno += 1;
                seqno
            };
            tables
                .into_iter()
                .map(|(entries, tombstones)| {
                    let entries = entries
                        .into_iter()
                        .map(
                            |(k, kind, value)| {
                                if kind == 0 { del(k, next()) } else { put(k, next(), &value) }
                            },
                        )
                        .collect();
                    let tombstones =
                        tombstones.into_iter().map(|(s, len)| rt(s, s + len, next())).collect();
                    (entries, tombstones)
                })
                .collect()
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]

        #[test]
        fn every_snapshot_sees_what_it_saw_before(
            tables in arb_tables(),
            snapshot_picks in proptest::collection::vec(0u64..200, 0..4),
            drop_tombstones in any::<bool>(),
            target in 1u64..800,
        ) {
            let setup = Setup::new(&tables);
            let (in_entries, in_tombstones) = contents(&setup.inputs);
            let max_seqno = tables.iter().map(|(e, t)| e.len() + t.len()).sum::<usize>() as u64;
            let snapshots: Vec<SeqNo> =
                snapshot_picks.iter().map(|s| s % (max_seqno + 2)).collect();
            let result = setup.run(&snapshots, drop_tombstones, target).unwrap();
            let (out_entries, out_tombstones) = contents(&outputs_tables(&result));
            for &s in snapshots.iter().chain([&MAX_SEQNO]) {
                prop_assert_eq!(
                    visible(&out_entries, &out_tombstones, s),
                    visible(&in_entries, &in_tombstones, s),
                    "at snapshot {}", s
                );
            }
            check_shape(&setup, &result, target);

            let stats = result.stats;
            prop_assert_eq!(stats.entries_in, in_entries.len() as u64);
            prop_assert_eq!(stats.entries_out, out_entries.len() as u64);
            prop_assert_eq!(stats.range_tombstones_in, in_tombstones.len() as u64);
            prop_assert_eq!(stats.range_tombstones_out, out_tombstones.len() as u64);
            let point_deletes_dropped = stats.entries_in - stats.entries_out - stats.versions_dropped;
            prop_assert!(point_deletes_dropped <= stats.tombstones_dropped);
            prop_assert_eq!(
                stats.bytes_read,
                setup.inputs.iter().map(|t| t.file_size()).sum::<u64>()
            );
            prop_assert_eq!(
                stats.bytes_written,
                result.outputs.iter().map(|o| o.table.file_size()).sum::<u64>()
            );

            // Collapsing happened: at most one version per key and stripe.
            let mut sorted = snapshots.clone();
            sorted.sort_unstable();
            sorted.dedup();
            for run in out_entries.chunk_by(|a, b| a.key == b.key) {
                let stripes: Vec<usize> =
                    run.iter().map(|e| sorted.partition_point(|&s| s < e.seqno)).collect();
                let mut distinct = stripes.clone();
                distinct.dedup();
                prop_assert_eq!(distinct, stripes, "two versions of a key in one stripe");
            }
            if !drop_tombstones {
                prop_assert_eq!(stats.tombstones_dropped, 0);
            }
            if drop_tombstones && snapshots.is_empty() {
                prop_assert!(out_entries.iter().all(|e| e.kind == ValueKind::Put));
                prop_assert!(out_tombstones.is_empty());
                let keys = out_entries.chunk_by(|a, b| a.key == b.key).count();
                prop_assert_eq!(keys, out_entries.len());
            }
        }
    }

    #[test]
    fn versions_collapse_by_snapshot_stripe() {
        let setup = Setup::new(&[
            (vec![put(0, 1, b"1"), put(0, 3, b"3"), put(1, 2, b"x")], vec![]),
            (vec![put(0, 5, b"5"), put(0, 7, b"7"), del(1, 6)], vec![]),
        ]);
        // Stripes: (..=4] and latest.
        let result = setup.run(&[4], false, 1 << 20).unwrap();
        let (entries, _) = contents(&outputs_tables(&result));
        let kept: Vec<(Bytes, SeqNo)> = entries.iter().map(|e| (e.key.clone(), e.seqno)).collect();
        assert_eq!(kept, vec![(key(0), 7), (key(0), 3), (key(1), 6), (key(1), 2)]);
        assert_eq!(result.stats.versions_dropped, 2);
        assert_eq!(result.stats.tombstones_dropped, 0);

        // Without snapshots and at the bottom: the delete and what it hid vanish.
        let result = setup.run(&[], true, 1 << 20).unwrap();
        let (entries, _) = contents(&outputs_tables(&result));
        assert_eq!(entries, vec![put(0, 7, b"7")]);
        assert_eq!(result.stats.versions_dropped, 4);
        assert_eq!(result.stats.tombstones_dropped, 1);
    }

    #[test]
    fn range_tombstones_drop_covered_versions_in_their_stripe_only() {
        let setup = Setup::new(&[
            (vec![put(1, 1, b"old"), put(2, 3, b"mid"), put(5, 2, b"out")], vec![]),
            (vec![], vec![rt(0, 4, 4)]),
        ]);
        // Snapshot 2 separates version 1 from the tombstone; version 3 shares its stripe.
        let result = setup.run(&[2], true, 1 << 20).unwrap();
        let (entries, tombstones) = contents(&outputs_tables(&result));
        let seqnos: Vec<SeqNo> = entries.iter().map(|e| e.seqno).collect();
        assert_eq!(seqnos, vec![1, 2]);
        assert_eq!(tombstones, vec![rt(0, 4, 4)]);
        // No snapshot: the tombstone and everything it covered go.
        let result = setup.run(&[], true, 1 << 20).unwrap();
        let (entries, tombstones) = contents(&outputs_tables(&result));
        assert_eq!(entries, vec![put(5, 2, b"out")]);
        assert!(tombstones.is_empty());
        // Not at the bottom: the tombstone stays (older data may exist below).
        let result = setup.run(&[], false, 1 << 20).unwrap();
        let (entries, tombstones) = contents(&outputs_tables(&result));
        assert_eq!(entries, vec![put(5, 2, b"out")]);
        assert_eq!(tombstones, vec![rt(0, 4, 4)]);
    }

    #[test]
    fn a_tombstone_is_cut_at_every_output_boundary() {
        let entries: Vec<Entry> = (1..20).map(|k| put(k, 100 + u64::from(k), &[7; 64])).collect();
        let setup = Setup::new(&[(entries, vec![rt(0, 25, 1)])]);
        let result = setup.run(&[1], false, 300).unwrap();
        assert!(result.outputs.len() >= 3, "{} outputs", result.outputs.len());
        check_shape(&setup, &result, 300);
        // The pieces tile the original range exactly.
        let pieces: Vec<RangeTombstone> =
            result.outputs.iter().flat_map(|o| o.table.range_tombstones().to_vec()).collect();
        assert_eq!(pieces.len(), result.outputs.len());
        assert_eq!(pieces.first().unwrap().start, key(0));
        assert_eq!(pieces.last().unwrap().end, key(25));
        for pair in pieces.windows(2) {
            assert_eq!(pair[0].end, pair[1].start);
        }
        // Compacting the pieces again joins them back into one tombstone.
        let again = CompactionJob {
            inputs: outputs_tables(&result),
            snapshots: vec![1],
            drop_tombstones: false,
            target_file_size: 1 << 20,
            options: OPTIONS,
            fs: &setup.fs,
            dir: &setup.dir,
            new_file_number: &|| 500,
            cache: setup.cache.clone(),
            cancelled: &|| false,
        }
        .run()
        .unwrap();
        assert_eq!(again.outputs.len(), 1);
        assert_eq!(again.outputs[0].table.range_tombstones(), &[rt(0, 25, 1)]);
    }

    #[test]
    fn only_tombstones_make_one_table_and_nothing_makes_none() {
        let setup = Setup::new(&[(vec![], vec![rt(2, 5, 3), rt(1, 3, 2)])]);
        let result = setup.run(&[1], true, 1).unwrap();
        assert_eq!(result.outputs.len(), 1);
        assert_eq!(result.outputs[0].table.range_tombstones(), &[rt(1, 3, 2), rt(2, 5, 3)]);
        let result = setup.run(&[], true, 1).unwrap();
        assert!(result.outputs.is_empty());
        assert_eq!(result.stats.tombstones_dropped, 2);
    }

    #[test]
    fn a_failure_leaves_no_output_file_behind() {
        let entries: Vec<Entry> = (0..40).map(|k| put(k, u64::from(k) + 1, &[k; 200])).collect();
        let setup = Setup::new(&[(entries, vec![rt(3, 9, 50)])]);
        let before = setup.fs.file_names();
        let baseline = setup.run(&[], false, 2000).unwrap();
        assert!(baseline.outputs.len() > 2);
        for o in &baseline.outputs {
            setup.fs.remove_file(o.table.path()).unwrap();
        }
        drop(baseline);
        for kind in [
            FaultKind::Create,
            FaultKind::Write,
            FaultKind::Sync,
            FaultKind::Rename,
            FaultKind::SyncDir,
        ] {
            let mut n = 0;
            loop {
                setup.fs.fail_after(kind, n);
                let result = setup.run(&[], false, 2000);
                setup.fs.clear_faults();
                match result {
                    Err(e) => {
                        assert!(e.to_string().contains("injected"), "{e}");
                        assert_eq!(setup.fs.file_names(), before, "{kind:?} #{n}");
                    }
                    Ok(result) => {
                        // Past the last operation of this kind: the fault never fired.
                        assert!(n > 0);
                        for o in &result.outputs {
                            setup.fs.remove_file(o.table.path()).unwrap();
                        }
                        break;
                    }
                }
                n += 1;
            }
        }
    }

    /// A key overwritten a million times is collapsed from a stream: the versions are
    /// generated one at a time and never materialised, and the job holds at most one
    /// per snapshot stripe (here 3), not a million.
    #[test]
    fn a_hot_key_is_collapsed_in_bounded_memory() {
        const VERSIONS: u64 = 1_000_000;
        let snapshots = [10, VERSIONS / 2];
        let collapser = Collapser {
            index: TombstoneIndex::new(std::iter::empty()),
            snapshots: &snapshots,
            drop_tombstones: true,
        };
        // Newest first; every third version a delete, the oldest a delete too.
        let hot = (0..VERSIONS).map(|i| {
            let seqno = VERSIONS - i;
            Ok(if seqno.is_multiple_of(3) || seqno == 1 {
                del(0, seqno)
            } else {
                put(0, seqno, b"v")
            })
        });
        let entries = hot.chain([Ok(put(1, VERSIONS + 1, b"cold"))]);
        let mut stats = CompactionStats::default();
        let mut out: Vec<Vec<(SeqNo, ValueKind)>> = Vec::new();
        collapser
            .run(entries, &mut stats, &|| false, |kept| {
                out.push(kept.iter().map(|v| (v.seqno, v.kind)).collect());
                Ok(())
            })
            .unwrap();
        // The newest of each stripe: 1_000_000 (latest), 500_000 and 10, all puts (no
        // multiple of 3), so rule 3 drops nothing.
        assert_eq!(
            out,
            vec![
                vec![
                    (VERSIONS, ValueKind::Put),
                    (VERSIONS / 2, ValueKind::Put),
                    (10, ValueKind::Put)
                ],
                vec![(VERSIONS + 1, ValueKind::Put)],
            ]
        );
        assert_eq!(stats.entries_in, VERSIONS + 1);
        assert_eq!(stats.entries_out, 4);
        assert_eq!(stats.versions_dropped, VERSIONS - 3);
        assert_eq!(stats.max_versions_buffered, snapshots.len() as u64 + 1);

        // With a delete newest in the oldest stripe and nothing older kept, rule 3 still
        // applies to the streamed key: only the two newer stripes survive.
        let hot = (0..VERSIONS).map(|i| {
            let seqno = VERSIONS - i;
            Ok(if seqno <= 10 { del(0, seqno) } else { put(0, seqno, b"v") })
        });
        let mut stats = CompactionStats::default();
        let mut kept = Vec::new();
        collapser
            .run(hot, &mut stats, &|| false, |k| {
                kept.extend(k.iter().map(|v| v.seqno));
                Ok(())
            })
            .unwrap();
        assert_eq!(kept, vec![VERSIONS, VERSIONS / 2]);
        assert_eq!(stats.tombstones_dropped, 1);
        assert_eq!(stats.max_versions_buffered, 3);
    }

    /// At every cancellation point (each output file, every few thousand entries) a
    /// cancelled job returns `Closed` and leaves no file behind.
    #[test]
    fn a_cancelled_job_leaves_no_output_file() {
        let entries: Vec<Entry> =
            (0..3 * CANCEL_CHECK_INTERVAL).map(|i| put(0, i + 1, &i.to_le_bytes())).collect();
        let mut wide: Vec<Entry> =
            (1..20).map(|k| put(k, 100_000 + u64::from(k), &[k; 300])).collect();
        wide.extend(entries);
        let setup = Setup::new(&[(wide, vec![rt(2, 9, 1)])]);
        let before = setup.fs.file_names();
        let mut n = 0;
        loop {
            let calls = Cell::new(0);
            let cancelled = || {
                calls.set(calls.get() + 1);
                calls.get() > n
            };
            let result = setup.run_cancellable(&[], false, 1000, &cancelled);
            match result {
                Err(Error::Closed) => assert_eq!(setup.fs.file_names(), before, "check #{n}"),
                Err(e) => panic!("{e}"),
                Ok(result) => {
                    // Past the last check: `n` checks were asked, none said stop.
                    assert!(
                        n > result.outputs.len(),
                        "{n} checks for {} outputs",
                        result.outputs.len()
                    );
                    assert!(result.outputs.len() > 2);
                    break;
                }
            }
            n += 1;
        }
    }
}
