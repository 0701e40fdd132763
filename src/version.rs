//! The live data sources of the tree and the point-lookup algorithm over them.
//!
//! A [`Version`] is an immutable set of open SSTables; a [`ReadView`] adds the active
//! and frozen memtables. Both are shared by `Arc` and replaced, never mutated: a reader
//! or iterator keeps the view it started with, and so every file in it stays readable.
//!
//! # Invariants
//! - Sources are ordered by their highest seqno, newest first: the active memtable,
//!   frozen memtables (newest first), then tables by `max_seqno` descending.
//! - A version of a key is hidden by a range tombstone with a higher seqno (seqnos are
//!   unique, so never equal) that covers the key and is visible at the snapshot.

use std::collections::HashSet;
use std::ops::Bound;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use bytes::Bytes;
use parking_lot::RwLock;

use crate::error::Result;
use crate::fs::FileSystem;
use crate::key::{KeyVersion, SeqNo, ValueKind};
use crate::manifest::TableMeta;
use crate::memtable::{FrozenMemtable, Memtable, MemtableCursor, TombstoneLevels};
use crate::merge::{BoxedSource, OwnedSource};
use crate::sstable::Table;
use crate::sstable::concat::ConcatIter;
use crate::tombstones::TombstoneIndex;

/// An open SSTable with what the read path needs beside it.
///
/// Its file is deleted after [`mark_obsolete`] (a compaction replaced it) once every
/// handle on it is gone: versions, read views and iterators hold handles, so no reader
/// ever loses a file it still uses. Whoever reads a [`Table`] must hold a handle on it
/// (or a view holding one) for as long as it reads, not just the `Arc<Table>`: the
/// table cache may have closed the table's descriptor, and a read reopens the file by
/// its path. A trivial move creates a new handle on the same file with [`moved_to`];
/// both share one deletion flag.
///
/// [`mark_obsolete`]: TableHandle::mark_obsolete
/// [`moved_to`]: TableHandle::moved_to
pub struct TableHandle {
    /// The open file.
    pub table: Arc<Table>,
    /// Its range tombstones, fragmented for lookups.
    pub tombstones: TombstoneIndex,
    /// What the manifest records about it.
    pub meta: TableMeta,
    /// Scans that read this table beside another table while it is in level 0: the
    /// reads a compaction of it into the base level would make cheaper
    /// ([`Version::charge_scan`]).
    pub scans: AtomicU64,
    file: Arc<TableFile>,
}

/// Deletes a table's file when the last handle on it goes, if it became obsolete.
struct TableFile {
    deleter: Arc<ObsoleteTables>,
    path: PathBuf,
    obsolete: AtomicBool,
}

impl Drop for TableFile {
    fn drop(&mut self) {
        if self.obsolete.load(Ordering::Acquire) {
            self.deleter.delete(&self.path);
        }
    }
}

/// Deletes the obsolete table files of one open instance, and none once it closed.
///
/// An iterator or snapshot may outlive `close()`, and with it the last handle on a
/// table a compaction replaced. By then the directory belongs to whoever opens it
/// next (who removes every file its manifest does not name), and a file of that name
/// may even be a new database's if the directory was recreated: so after
/// [`stop`](ObsoleteTables::stop) deletions are left to the next open.
pub struct ObsoleteTables {
    fs: Arc<dyn FileSystem>,
    /// True while the instance is open; a deletion holds the read lock throughout.
    open: RwLock<bool>,
}

impl ObsoleteTables {
    /// Deletions through `fs` for an instance that is open now.
    pub fn new(fs: Arc<dyn FileSystem>) -> Arc<ObsoleteTables> {
        Arc::new(ObsoleteTables { fs, open: RwLock::new(true) })
    }

    /// No file is deleted after this returns (one being deleted now is finished).
    pub fn stop(&self) {
        *self.open.write() = false;
    }

    fn delete(&self, path: &std::path::Path) {
        let open = self.open.read();
        if *open {
            // A file left behind (error, crash) is removed by the next open: the
            // manifest no longer names it.
            if let Err(e) = self.fs.remove_file(path)
                && e.kind() != std::io::ErrorKind::NotFound
            {
                tracing::warn!(
                    target: "aeternusdb::background",
                    file = %path.display(),
                    error = %e,
                    "an obsolete table could not be removed; the next open removes it"
                );
            }
        }
    }
}

impl std::fmt::Debug for TableHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TableHandle").field("meta", &self.meta).finish_non_exhaustive()
    }
}

impl TableHandle {
    /// Wraps an open table whose file `deleter` removes once it is obsolete.
    pub fn new(table: Arc<Table>, meta: TableMeta, deleter: Arc<ObsoleteTables>) -> TableHandle {
        let tombstones = TombstoneIndex::new(table.range_tombstones().iter().cloned());
        let path = table.path().to_path_buf();
        let file = Arc::new(TableFile { deleter, path, obsolete: AtomicBool::new(false) });
        TableHandle { table, tombstones, meta, scans: AtomicU64::new(0), file }
    }

    /// A handle on the same file at another level (a trivial move).
    pub fn moved_to(&self, level: u32) -> TableHandle {
        TableHandle {
            table: self.table.clone(),
            tombstones: self.tombstones.clone(),
            meta: TableMeta { level, ..self.meta.clone() },
            scans: AtomicU64::new(0),
            file: self.file.clone(),
        }
    }

    /// The manifest no longer names this table: delete its file once unused.
    pub fn mark_obsolete(&self) {
        self.file.obsolete.store(true, Ordering::Release);
    }

    /// True if the table's key range may intersect `(lower, upper)`.
    pub fn overlaps(&self, lower: Bound<&[u8]>, upper: Bound<&[u8]>) -> bool {
        let (smallest, largest) = (self.meta.smallest.as_ref(), self.meta.largest.as_ref());
        let above_lower = match lower {
            Bound::Included(k) => largest >= k,
            Bound::Excluded(k) => largest > k,
            Bound::Unbounded => true,
        };
        let below_upper = match upper {
            Bound::Included(k) | Bound::Excluded(k) => smallest <= k,
            Bound::Unbounded => true,
        };
        above_lower && below_upper
    }

    fn may_hold(&self, key: &[u8]) -> bool {
        self.meta.smallest.as_ref() <= key && key <= self.meta.largest.as_ref()
    }
}

/// An immutable set of SSTables, by level.
///
/// Level 0 may overlap and is ordered newest (highest `max_seqno`) first; deeper
/// levels are sorted runs of non-overlapping tables ordered by smallest key.
#[derive(Debug, Default)]
pub struct Version {
    levels: Vec<Vec<Arc<TableHandle>>>,
}

impl Version {
    /// A version holding `tables`, each in the level its metadata names.
    pub fn new(tables: impl IntoIterator<Item = Arc<TableHandle>>) -> Version {
        let mut levels: Vec<Vec<Arc<TableHandle>>> = Vec::new();
        for table in tables {
            let level = table.meta.level as usize;
            if levels.len() <= level {
                levels.resize_with(level + 1, Vec::new);
            }
            levels[level].push(table);
        }
        for (level, tables) in levels.iter_mut().enumerate() {
            if level == 0 {
                tables.sort_by_key(|t| std::cmp::Reverse(t.meta.max_seqno));
            } else {
                tables.sort_by(|a, b| a.meta.smallest.cmp(&b.meta.smallest));
            }
        }
        Version { levels }
    }

    /// A new version with `added` tables and without the tables numbered in `removed`.
    pub fn apply(&self, added: &[Arc<TableHandle>], removed: &HashSet<u64>) -> Version {
        let kept = self.tables().filter(|t| !removed.contains(&t.meta.number)).cloned();
        Version::new(kept.chain(added.iter().cloned()))
    }

    /// The tables of each level.
    pub fn levels(&self) -> &[Vec<Arc<TableHandle>>] {
        &self.levels
    }

    /// Every table, level by level.
    pub fn tables(&self) -> impl Iterator<Item = &Arc<TableHandle>> {
        self.levels.iter().flatten()
    }

    /// Number of tables.
    pub fn table_count(&self) -> usize {
        self.levels.iter().map(Vec::len).sum()
    }

    /// Counts a scan of `(lower, upper)` against each level-0 table it reads, when it
    /// reads more than one table: each such table is a source the scan would not merge
    /// if level 0 were compacted into the base level (memtables are not counted; they
    /// are flushed anyway). True when a count reached a multiple of
    /// [`SCAN_WAKE_INTERVAL`], so that the compaction threads weigh the counts again.
    pub fn charge_scan(&self, lower: Bound<&[u8]>, upper: Bound<&[u8]>) -> bool {
        let Some((level0, deeper)) = self.levels.split_first() else {
            return false;
        };
        let read = || level0.iter().filter(|h| h.overlaps(lower, upper));
        let level0_read = read().count();
        if level0_read == 0 {
            return false;
        }
        let deeper_read = deeper.iter().filter(|run| run_overlaps(run, lower, upper)).count();
        if level0_read + deeper_read < 2 {
            return false;
        }
        read().fold(false, |wake, handle| {
            let scans = handle.scans.fetch_add(1, Ordering::Relaxed) + 1;
            wake | scans.is_multiple_of(SCAN_WAKE_INTERVAL)
        })
    }
}

/// How many scans counted against a level-0 table ([`Version::charge_scan`]) apart the
/// compaction threads are woken to weigh the counts.
pub const SCAN_WAKE_INTERVAL: u64 = 256;

/// True if a table of the sorted run `run` may intersect `(lower, upper)`.
fn run_overlaps(run: &[Arc<TableHandle>], lower: Bound<&[u8]>, upper: Bound<&[u8]>) -> bool {
    let first = match lower {
        Bound::Included(k) => run.partition_point(|t| t.meta.largest.as_ref() < k),
        Bound::Excluded(k) => run.partition_point(|t| t.meta.largest.as_ref() <= k),
        Bound::Unbounded => 0,
    };
    run.get(first).is_some_and(|t| t.overlaps(lower, upper))
}

/// Everything a read needs: memtables and the current version. Cloning it clones
/// three handles, not the data.
#[derive(Debug, Clone)]
pub struct ReadView {
    /// The memtable taking writes.
    pub active: Arc<Memtable>,
    /// Memtables waiting for flush, newest first.
    pub frozen: Vec<FrozenMemtable>,
    /// The SSTables.
    pub version: Arc<Version>,
}

impl ReadView {
    /// The memtables, newest first.
    pub fn memtables(&self) -> impl Iterator<Item = &Arc<Memtable>> {
        std::iter::once(&self.active).chain(self.frozen.iter().map(|f| f.memtable()))
    }

    /// The value of `key` at `snapshot`, or `None` if absent or deleted.
    pub fn get(&self, key: &[u8], snapshot: SeqNo) -> Result<Option<Bytes>> {
        let mut lookup = Lookup::default();
        for memtable in self.memtables() {
            if lookup.settled_before(memtable.max_lsn()) {
                break;
            }
            lookup.tombstone(memtable.max_covering_tombstone(key, snapshot));
            lookup.version(memtable.get(key, snapshot));
        }
        let mut levels = self.version.levels.iter();
        // Level 0 is ordered by max_seqno, so once settled, every later table is too.
        for handle in levels.next().into_iter().flatten() {
            if lookup.settled_before(handle.meta.max_seqno) {
                break;
            }
            lookup.visit_table(handle, key, snapshot)?;
        }
        // In deeper levels at most one table holds versions of the key, but a table's
        // `largest` may be the exclusive end of a clipped range tombstone, equal to the
        // next table's `smallest`: a key equal to it is then in the next table. So
        // visit every table whose `[smallest, largest]` contains the key (one or two).
        for level in levels {
            let first = level.partition_point(|t| t.meta.largest.as_ref() < key);
            for handle in level[first..].iter().take_while(|t| t.meta.smallest.as_ref() <= key) {
                if !lookup.settled_before(handle.meta.max_seqno) {
                    lookup.visit_table(handle, key, snapshot)?;
                }
            }
        }
        Ok(lookup.into_value())
    }

    /// One source per memtable and overlapping table for a scan of `(lower, upper)`.
    pub fn sources(
        &self,
        lower: Bound<&[u8]>,
        upper: Bound<&[u8]>,
        reverse: bool,
    ) -> Vec<BoxedSource> {
        let mut sources: Vec<BoxedSource> = Vec::new();
        for memtable in self.memtables() {
            if memtable.point_count() > 0 {
                let cursor = MemtableCursor::new(memtable.clone(), lower, upper, reverse);
                sources.push(Box::new(OwnedSource::new(cursor.map(Ok))));
            }
        }
        let owned = |b: Bound<&[u8]>| b.map(Bytes::copy_from_slice);
        let scanned = |h: &&Arc<TableHandle>| {
            h.overlaps(lower, upper) && h.table.properties().entry_count > 0
        };
        let mut levels = self.version.levels.iter();
        // Level 0 tables overlap: one source each.
        for handle in levels.next().into_iter().flatten().filter(scanned) {
            let iter = handle.table.iter(owned(lower), owned(upper));
            if reverse {
                sources.push(Box::new(OwnedSource::new(iter.rev())));
            } else {
                sources.push(Box::new(iter));
            }
        }
        // A deeper level is a sorted run: one source that opens a table at a time.
        for level in levels {
            let tables: Vec<Arc<Table>> =
                level.iter().filter(scanned).map(|h| h.table.clone()).collect();
            if !tables.is_empty() {
                let run = ConcatIter::new(tables, owned(lower), owned(upper), reverse);
                sources.push(Box::new(run));
            }
        }
        sources
    }

    /// The range tombstones that may affect a scan of `(lower, upper)`, indexed.
    ///
    /// Costs O(memtables + tables): every index already exists and is shared.
    pub fn tombstone_indexes(&self, lower: Bound<&[u8]>, upper: Bound<&[u8]>) -> TombstoneSet {
        let memtables = self.memtables().map(|m| m.tombstone_levels()).collect();
        let tables = self
            .version
            .tables()
            .filter(|h| !h.tombstones.is_empty() && h.overlaps(lower, upper))
            .cloned()
            .collect();
        TombstoneSet { memtables, tables }
    }
}

/// Range tombstones consulted by a scan: the memtables' indexes as of its start and
/// the overlapping tables'.
#[derive(Debug, Default)]
pub struct TombstoneSet {
    memtables: Vec<TombstoneLevels>,
    tables: Vec<Arc<TableHandle>>,
}

impl TombstoneSet {
    /// The highest visible tombstone seqno covering `key`, if any.
    pub fn max_covering(&self, key: &[u8], snapshot: SeqNo) -> Option<SeqNo> {
        let memtables = self.memtables.iter().filter_map(|m| m.max_covering(key, snapshot));
        let tables = self.tables.iter().filter_map(|h| h.tombstones.max_covering(key, snapshot));
        memtables.chain(tables).max()
    }
}

/// The state of a point lookup as it visits sources from newest to oldest.
#[derive(Debug, Default)]
struct Lookup {
    newest: Option<KeyVersion>,
    tombstone: Option<SeqNo>,
}

impl Lookup {
    /// True once nothing in a source whose seqnos are at most `max_seqno` can change
    /// the answer: it could neither be newer than the version found nor escape the
    /// covering tombstone found.
    fn settled_before(&self, max_seqno: SeqNo) -> bool {
        let found = self.newest.as_ref().map(|e| e.seqno);
        found.max(self.tombstone).is_some_and(|s| s >= max_seqno)
    }

    /// Consults one table, if its key range can hold `key`.
    fn visit_table(&mut self, handle: &TableHandle, key: &[u8], snapshot: SeqNo) -> Result<()> {
        if !handle.may_hold(key) {
            return Ok(());
        }
        self.tombstone(handle.tombstones.max_covering(key, snapshot));
        if handle.meta.min_seqno <= snapshot {
            self.version(handle.table.get(key, snapshot)?);
        }
        Ok(())
    }

    fn tombstone(&mut self, seqno: Option<SeqNo>) {
        self.tombstone = self.tombstone.max(seqno);
    }

    fn version(&mut self, entry: Option<KeyVersion>) {
        if let Some(entry) = entry
            && self.newest.as_ref().is_none_or(|n| entry.seqno > n.seqno)
        {
            self.newest = Some(entry);
        }
    }

    fn into_value(self) -> Option<Bytes> {
        let entry = self.newest?;
        let hidden = self.tombstone.is_some_and(|t| t > entry.seqno);
        (entry.kind == ValueKind::Put && !hidden).then_some(entry.value)
    }
}
