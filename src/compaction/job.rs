//! [`CompactionJob`]: merges input tables into new ones, collapsing versions no live
//! snapshot can see and dropping tombstones that provably hide nothing.
//!
//! The job knows nothing about the manifest or the read view: it is given the input
//! tables, the live snapshots and where to create files, and returns the new tables.
//! The caller logs them (and the removal of the inputs) as one version edit.
//!
//! It orchestrates two parts: the inputs' entries, merged in internal order, stream
//! through the collapsing rules of [`super::collapse`] (which states them and proves
//! that every reader at a live snapshot or latest sees the same values afterwards),
//! and the kept versions stream, key by key, into the writer of [`super::output`],
//! which cuts the output tables and clips the kept range tombstones to them.
//!
//! # Cancellation
//! [`CompactionJob::cancelled`] is asked before each output file is created and every
//! [`CANCEL_CHECK_INTERVAL`] input entries. Once it returns true the job stops, removes
//! every file it created (as on any error) and returns [`Error::Closed`]; it never
//! hands back a partial result.
//!
//! # Cost
//! One pass over the inputs; memory holds the kept versions of one user key (at most
//! one per snapshot stripe, [`CompactionStats::max_versions_buffered`]), every input
//! range tombstone, and one table builder at a time.

use std::path::Path;
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::fs::FileSystem;
use crate::key::{Entry, RangeTombstone, SeqNo};
use crate::merge::{BoxedSource, Entries, Merge};
use crate::sstable::cache::BlockCache;
use crate::sstable::{Table, TableOptions};

use super::collapse::{CollapseStats, Collapser};
use super::output::{CompactionOutput, OutputPlan, OutputWriter};

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
    /// Point versions dropped as invisible (rules 1 and 2 of `compaction::collapse`).
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
    pub fn run(self) -> Result<CompactionResult> {
        let tombstones: Vec<RangeTombstone> =
            self.inputs.iter().flat_map(|t| t.range_tombstones().iter().cloned()).collect();
        let range_tombstones_in = tombstones.len() as u64;
        let collapser = Collapser::new(&tombstones, self.snapshots.clone(), self.drop_tombstones);
        let mut counts = CollapseStats::default();
        let kept = collapser.kept_range_tombstones(tombstones, &mut counts);
        let plan = OutputPlan {
            fs: self.fs,
            dir: self.dir,
            options: self.options,
            target_file_size: self.target_file_size,
            new_file_number: self.new_file_number,
            cache: Arc::clone(&self.cache),
            cancelled: self.cancelled,
        };
        let mut writer = OutputWriter::new(plan, kept);
        let collapsed = collapser.run(self.entries(), &mut counts, |kept| writer.add_key(kept));
        let outputs = match collapsed {
            Ok(()) => writer.finish()?,
            Err(e) => {
                writer.discard();
                return Err(e);
            }
        };
        let stats = CompactionStats {
            bytes_read: self.inputs.iter().map(|t| t.file_size()).sum(),
            bytes_written: outputs.iter().map(|o| o.table.file_size()).sum(),
            entries_in: counts.entries_in,
            entries_out: counts.entries_out,
            range_tombstones_in,
            range_tombstones_out: outputs.iter().map(|o| o.properties.range_tombstone_count).sum(),
            versions_dropped: counts.versions_dropped,
            tombstones_dropped: counts.tombstones_dropped,
            max_versions_buffered: counts.max_versions_buffered,
        };
        Ok(CompactionResult { outputs, stats })
    }

    /// The inputs' entries in internal order, failing with `Error::Closed` once
    /// `cancelled` says so (asked every [`CANCEL_CHECK_INTERVAL`] entries).
    fn entries(&self) -> impl Iterator<Item = Result<Entry>> + '_ {
        let sources: Vec<BoxedSource> =
            self.inputs.iter().map(|t| Box::new(t.iter_uncached()) as BoxedSource).collect();
        let mut read: u64 = 0;
        Entries::new(Merge::new(sources, false)).map(move |entry| {
            let entry = entry?;
            read += 1;
            if read.is_multiple_of(CANCEL_CHECK_INTERVAL) && (self.cancelled)() {
                return Err(Error::Closed);
            }
            Ok(entry)
        })
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;
    use std::collections::BTreeMap;
    use std::ops::Bound;
    use std::path::PathBuf;

    use bytes::Bytes;
    use proptest::prelude::*;

    use super::*;
    use crate::compaction::fixtures::{
        OPTIONS, check_shape, contents, del, output_tables, put, rt,
    };
    use crate::fs::{FaultFs, FaultKind};
    use crate::key::{MAX_SEQNO, ValueKind};
    use crate::sstable::{TableBuilder, table_file_name};

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
            let (out_entries, out_tombstones) = contents(&output_tables(&result.outputs));
            for &s in snapshots.iter().chain([&MAX_SEQNO]) {
                prop_assert_eq!(
                    visible(&out_entries, &out_tombstones, s),
                    visible(&in_entries, &in_tombstones, s),
                    "at snapshot {}", s
                );
            }
            check_shape(&setup.fs, &setup.dir, &result.outputs, target);

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

    /// Compaction reads every input block once: caching them would evict the blocks
    /// readers use, and grow the process by the cache's size during a bulk load.
    #[test]
    fn compaction_reads_add_nothing_to_the_block_cache() {
        let table = |base: u64| (1..100).map(|k| put(k, base + u64::from(k), &[7; 64])).collect();
        let setup = Setup::new(&[(table(0), vec![]), (table(1000), vec![])]);
        let result = setup.run(&[], true, 1 << 20).unwrap();
        assert_eq!(result.stats.entries_in, 2 * 99);
        assert_eq!(setup.cache.weight(), 0);
        // A reader's scan still fills it.
        let table = &setup.inputs[0];
        assert_eq!(table.iter(Bound::Unbounded, Bound::Unbounded).count(), 99);
        assert!(setup.cache.weight() > 0);
    }

    /// The outputs' pieces of one tombstone, compacted again, make the one tombstone.
    #[test]
    fn a_cut_tombstone_is_joined_again_by_the_next_compaction() {
        let entries: Vec<Entry> = (1..20).map(|k| put(k, 100 + u64::from(k), &[7; 64])).collect();
        let setup = Setup::new(&[(entries, vec![rt(0, 25, 1)])]);
        let result = setup.run(&[1], false, 300).unwrap();
        assert!(result.outputs.len() >= 3, "{} outputs", result.outputs.len());
        check_shape(&setup.fs, &setup.dir, &result.outputs, 300);
        let again = CompactionJob {
            inputs: output_tables(&result.outputs),
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
        // A job that succeeds removes nothing: removals are not among its operations.
        for kind in FaultKind::ALL.into_iter().filter(|&k| k != FaultKind::Remove) {
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
