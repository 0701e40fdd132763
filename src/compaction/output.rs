//! The output writer of a compaction: cuts the kept versions into tables of about the
//! target size and clips the kept range tombstones to each table's range.
//!
//! # Output files
//! - A table is cut once [`TableBuilder::estimated_size`] reaches `target_file_size`,
//!   but only between user keys: all kept versions of a key land in one table. Point
//!   keys of consecutive outputs are therefore strictly increasing.
//! - Output `i` covers `[first key of i, first key of i + 1)`; the first starts at −∞
//!   and the last ends at +∞. Each kept range tombstone is clipped to that range and
//!   the non-empty parts are written to the table, so tombstones never make outputs
//!   overlap; one tombstone may appear, in pieces, in several outputs. A table's
//!   `largest_key` may be a clipped tombstone's exclusive end, equal to the next
//!   table's `smallest_key`.
//! - If only tombstones survive, they go to a single table; if nothing survives, there
//!   is no output.
//! - Each table is made by [`NewTable`]: written as `NNNNNN.sst.tmp`, synced, renamed
//!   to `NNNNNN.sst`, the directory synced, opened. If the writer fails or is
//!   [discarded](OutputWriter::discard), every file it created is removed (best
//!   effort), so nothing it made outlives a failed job.
//! - `cancelled` is asked before each output file is created; once it says so the
//!   writer fails with [`Error::Closed`].

use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;

use crate::error::{Error, Result};
use crate::fs::FileSystem;
use crate::key::{Entry, RangeTombstone};
use crate::sstable::cache::BlockCache;
use crate::sstable::properties::Properties;
use crate::sstable::{NewTable, Table, TableBuilder, TableOptions};

/// One table a compaction wrote.
#[derive(Debug, Clone)]
pub struct CompactionOutput {
    /// File number (the table's id and file name).
    pub number: u64,
    /// The opened table.
    pub table: Arc<Table>,
    /// What the table holds.
    pub properties: Properties,
}

/// Where and how the output tables are made.
pub(super) struct OutputPlan<'a> {
    pub fs: &'a dyn FileSystem,
    /// The database directory.
    pub dir: &'a Path,
    pub options: TableOptions,
    /// Start a new table once one reaches about this many bytes.
    pub target_file_size: u64,
    /// Allocates a new file number for each output.
    pub new_file_number: &'a dyn Fn() -> u64,
    /// The cache the outputs are opened with.
    pub cache: Arc<BlockCache>,
    /// True once no further output should be started.
    pub cancelled: &'a dyn Fn() -> bool,
}

/// A table being built.
struct Building<'a> {
    table: NewTable<'a>,
    /// First key of its range; `None` is −∞ (the first output).
    lower: Option<Bytes>,
}

/// Cuts kept entries into output tables (see the module doc).
pub(super) struct OutputWriter<'a> {
    plan: OutputPlan<'a>,
    /// Kept range tombstones, sorted by (start ASC, seqno DESC).
    tombstones: Vec<RangeTombstone>,
    done: Vec<CompactionOutput>,
    current: Option<Building<'a>>,
    /// The current table reached the target size: cut before the next key.
    cut_pending: bool,
}

impl<'a> OutputWriter<'a> {
    /// A writer whose outputs will hold `tombstones` (sorted by start ASC, seqno
    /// DESC), clipped.
    pub(super) fn new(plan: OutputPlan<'a>, tombstones: Vec<RangeTombstone>) -> Self {
        OutputWriter { plan, tombstones, done: Vec::new(), current: None, cut_pending: false }
    }

    /// Adds the kept versions of one user key (possibly none), newest first; keys
    /// arrive in increasing order.
    pub(super) fn add_key(&mut self, versions: &[Entry]) -> Result<()> {
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
        let builder = building.table.builder();
        for v in versions {
            builder.add(v)?;
        }
        self.cut_pending = builder.estimated_size() >= self.plan.target_file_size;
        Ok(())
    }

    /// Finishes the last table and returns the outputs, in key order. On failure,
    /// removes every file the writer created.
    pub(super) fn finish(mut self) -> Result<Vec<CompactionOutput>> {
        match self.finish_last() {
            Ok(()) => Ok(std::mem::take(&mut self.done)),
            Err(e) => {
                self.discard();
                Err(e)
            }
        }
    }

    /// Gives up: removes every file the writer created.
    pub(super) fn discard(mut self) {
        if let Some(building) = self.current.take() {
            building.table.discard();
        }
        for output in std::mem::take(&mut self.done) {
            let path = output.table.path().to_path_buf();
            // Close the table before its file goes; best effort, as the file is
            // unnamed and the next open removes it anyway.
            drop(output);
            let _ = self.plan.fs.remove_file(&path);
        }
    }

    /// Creates the next output's temp file, unless the job was cancelled.
    fn start(&mut self, lower: Option<Bytes>) -> Result<Building<'a>> {
        if (self.plan.cancelled)() {
            return Err(Error::Closed);
        }
        let number = (self.plan.new_file_number)();
        let table = NewTable::create(self.plan.fs, self.plan.dir, number, self.plan.options)?;
        Ok(Building { table, lower })
    }

    /// Finishes the current table (if any), whose range ends at `upper` (`None`: +∞).
    fn finish_current(&mut self, upper: Option<&Bytes>) -> Result<()> {
        let Some(Building { mut table, lower }) = self.current.take() else { return Ok(()) };
        let pieces = clip(&self.tombstones, lower.as_ref(), upper);
        if let Err(e) = add_range_tombstones(table.builder(), &pieces) {
            table.discard();
            return Err(e);
        }
        let number = table.number();
        let (table, properties) = table.commit(Arc::clone(&self.plan.cache))?;
        self.done.push(CompactionOutput { number, table: Arc::new(table), properties });
        Ok(())
    }

    fn finish_last(&mut self) -> Result<()> {
        if self.current.is_none() && self.done.is_empty() && !self.tombstones.is_empty() {
            self.current = Some(self.start(None)?);
        }
        self.finish_current(None)
    }
}

/// The non-empty parts of `tombstones` within `[lower, upper)` (`None`: unbounded),
/// sorted by (start ASC, seqno DESC).
fn clip(
    tombstones: &[RangeTombstone],
    lower: Option<&Bytes>,
    upper: Option<&Bytes>,
) -> Vec<RangeTombstone> {
    let mut pieces: Vec<RangeTombstone> = tombstones
        .iter()
        .filter_map(|t| {
            let start = match lower {
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
    pieces
}

fn add_range_tombstones(builder: &mut TableBuilder, pieces: &[RangeTombstone]) -> Result<()> {
    pieces.iter().try_for_each(|piece| builder.add_range_tombstone(piece))
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;
    use std::path::PathBuf;

    use super::*;
    use crate::compaction::fixtures::{OPTIONS, check_shape, key, output_tables, put, rt};
    use crate::fs::FaultFs;

    /// An empty in-memory directory for the outputs.
    struct Dir {
        fs: FaultFs,
        path: PathBuf,
        cache: Arc<BlockCache>,
        next: Cell<u64>,
    }

    impl Dir {
        fn new() -> Dir {
            let fs = FaultFs::new();
            let path = PathBuf::from("/db");
            fs.create_dir_all(&path).unwrap();
            Dir { fs, path, cache: Arc::new(BlockCache::new(1 << 20)), next: Cell::new(100) }
        }

        /// Writes `entries` (sorted, one version per key) with `tombstones`.
        fn write(
            &self,
            entries: &[Entry],
            tombstones: Vec<RangeTombstone>,
            target_file_size: u64,
        ) -> Result<Vec<CompactionOutput>> {
            let next = || {
                let n = self.next.get();
                self.next.set(n + 1);
                n
            };
            let plan = OutputPlan {
                fs: &self.fs,
                dir: &self.path,
                options: OPTIONS,
                target_file_size,
                new_file_number: &next,
                cache: self.cache.clone(),
                cancelled: &|| false,
            };
            let mut writer = OutputWriter::new(plan, tombstones);
            for entry in entries {
                if let Err(e) = writer.add_key(std::slice::from_ref(entry)) {
                    writer.discard();
                    return Err(e);
                }
            }
            writer.finish()
        }
    }

    #[test]
    fn a_tombstone_is_cut_at_every_output_boundary() {
        let entries: Vec<Entry> = (1..20).map(|k| put(k, 100 + u64::from(k), &[7; 64])).collect();
        let dir = Dir::new();
        let outputs = dir.write(&entries, vec![rt(0, 25, 1)], 300).unwrap();
        assert!(outputs.len() >= 3, "{} outputs", outputs.len());
        check_shape(&dir.fs, &dir.path, &outputs, 300);
        // The pieces tile the original range exactly.
        let pieces: Vec<RangeTombstone> =
            output_tables(&outputs).iter().flat_map(|t| t.range_tombstones().to_vec()).collect();
        assert_eq!(pieces.len(), outputs.len());
        assert_eq!(pieces.first().unwrap().start, key(0));
        assert_eq!(pieces.last().unwrap().end, key(25));
        for pair in pieces.windows(2) {
            assert_eq!(pair[0].end, pair[1].start);
        }
    }

    #[test]
    fn only_tombstones_make_one_table_and_nothing_makes_none() {
        let dir = Dir::new();
        let outputs = dir.write(&[], vec![rt(1, 3, 2), rt(2, 5, 3)], 1).unwrap();
        assert_eq!(outputs.len(), 1);
        assert_eq!(outputs[0].table.range_tombstones(), &[rt(1, 3, 2), rt(2, 5, 3)]);
        drop(outputs);
        let dir = Dir::new();
        assert!(dir.write(&[], vec![], 1).unwrap().is_empty());
        assert!(dir.fs.file_names().is_empty());
    }
}
