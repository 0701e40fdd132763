//! Opening a database: lock, manifest, tables, WAL replay, clean-up.
//!
//! # Steps
//! 1. Validate options, create the directory if allowed (syncing the parent of each
//!    directory created), take the `LOCK` file, remove temporary files a crash left
//!    behind (before anything is written: on a full disk they hold the space needed).
//! 2. Load the manifest named by `CURRENT` (or start a new database with a fresh
//!    UUID). A directory with tables or manifests but no `CURRENT` is corruption, not a
//!    new database: treating it as new would delete the data (except the leftovers of
//!    a creation killed before `CURRENT` was written, which hold nothing).
//! 3. Check that every table the manifest names exists, and the WAL segments
//!    `log_number` and `last_wal` (missing → `Error::Corruption`); open the tables.
//!    Segment numbers are sparse (tables and manifests share the counter), so the
//!    segments to replay are the WAL files numbered within `[log_number, last_wal]`.
//! 4. Replay the segments in order into memtables, skipping seqnos the manifest says
//!    were already flushed, and checking that seqnos continue without gaps; a memtable
//!    that fills up is frozen and flushed later. Each memtable starts from the highest
//!    seqno seen so far (`inject_max_lsn`), so no seqno is ever reused. Only the newest
//!    segment may end in a torn record, which is cut off the file in place (no copy,
//!    so a full disk does not stop it). Segments are read in bounded chunks and
//!    the memtables keep slices of them, not copies.
//! 5. Start a new WAL segment, write a fresh manifest snapshot naming it, and point
//!    `CURRENT` at it.
//! 6. Remove every file the manifest does not name (orphans of a crash).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64};

use arc_swap::ArcSwap;
use bytes::Bytes;
use parking_lot::Mutex;

use crate::batch::{BatchOp, decode_group};
use crate::cache::BlockCache;
use crate::coding::Decoder;
use crate::compaction::{Leveled, SizeTiered};
use crate::error::{Corruption, Error, Result};
use crate::fs::FileSystem;
use crate::key::{Entry, SeqNo, key_prefix};
use crate::manifest::{CURRENT, Manifest, ManifestState, manifest_file_name};
use crate::memtable::{FrozenMemtable, Memtable};
use crate::options::{CompactionStrategyOptions, Options};
use crate::sstable::{Table, table_file_name};
use crate::table_cache::CachingFs;
use crate::version::{ReadView, TableHandle, Version};
use crate::wal::{
    ReplayError, ReplayOutcome, SEGMENT_HEADER_LEN, WalWriter, replay_segment, segment_file_name,
    truncate_segment,
};

use super::files::{FileKind, LOCK_FILE, classify};
use super::write::WriterState;
use super::{DbCore, read::SnapshotRegistry};

/// WAL segments kept for unflushed data past which open flushes the recovered data:
/// each open starts a new segment, so a database opened many times for a few writes
/// (a command-line tool) would otherwise replay ever more segments.
pub(super) const MAX_REPLAYED_SEGMENTS: usize = 8;

/// What `open` recovered, besides the database.
pub(super) struct Recovered {
    pub(super) core: DbCore,
    /// WAL segments replayed because they held unflushed writes.
    pub(super) replayed_segments: usize,
}

pub(super) fn open(dir: &Path, options: Options) -> Result<Recovered> {
    options.validate()?;
    let caching_fs = CachingFs::new(options.fs.clone(), options.max_open_files);
    let table_cache = caching_fs.table_cache().clone();
    let fs: Arc<dyn FileSystem> = Arc::new(caching_fs);
    if !options.create_if_missing && !fs.exists(&dir.join(CURRENT)) {
        return Err(Error::invalid(format!(
            "no database in {} and create_if_missing is false",
            dir.display()
        )));
    }
    create_dir_durably(&*fs, dir)?;
    let lock =
        fs.try_lock(&dir.join(LOCK_FILE))?.ok_or_else(|| Error::Locked(dir.to_path_buf()))?;
    remove_stale_temp_files(&*fs, dir)?;

    let names = fs.list_dir(dir)?;
    let mut state = if fs.exists(&dir.join(CURRENT)) {
        if options.error_if_exists {
            return Err(Error::invalid(format!("a database exists in {}", dir.display())));
        }
        Manifest::load(&*fs, dir)?
    } else {
        // Creating a database writes WAL segment 1, then manifest 2, then `CURRENT`. A
        // crash before `CURRENT` leaves that manifest, which names no table, and a
        // segment without records: nothing to lose, so the creation starts over (and
        // overwrites both). Anything else without `CURRENT` may hold data.
        let creation_leftovers = names.iter().all(|n| match classify(n) {
            FileKind::Table(_) | FileKind::Manifest(_) => n == &manifest_file_name(2),
            FileKind::Wal(number) => {
                number == 1
                    && fs.open(&dir.join(n)).map_or(true, |f| f.len() <= SEGMENT_HEADER_LEN as u64)
            }
            _ => true,
        });
        if let Some(name) = names.iter().find(|n| {
            matches!(classify(n), FileKind::Table(_) | FileKind::Manifest(_)) && !creation_leftovers
        }) {
            return Err(Corruption::new(0, format!("{CURRENT} is missing but {name} exists"))
                .in_file(dir.join(CURRENT)));
        }
        ManifestState { next_file_number: 1, ..ManifestState::new(uuid::Uuid::new_v4()) }
    };

    // A named file that is missing is reported against the manifest naming it: from
    // here a deleted file and a manifest that lost or garbled edits look the same, and
    // the manifest is the file whose content disagrees with the directory.
    let manifest_path = if fs.exists(&dir.join(CURRENT)) {
        Manifest::current_path(&*fs, dir)?
    } else {
        dir.join(CURRENT)
    };
    let require = |name: String, what: &str| -> Result<()> {
        if names.contains(&name) {
            Ok(())
        } else {
            Err(Corruption::new(0, format!("{what} {name} named by the manifest is missing"))
                .in_file(&manifest_path))
        }
    };
    for number in state.tables.keys() {
        require(table_file_name(*number), "table")?;
    }
    // Segment numbers come from the file-number counter shared with tables and
    // manifests, so the live segments are the WAL files numbered within
    // `[log_number, last_wal]`, not every number in it. The first and the last must be
    // there: `log_number` is the oldest memtable's first segment, `last_wal` the newest.
    let segments: Vec<u64> = if state.last_wal == 0 {
        Vec::new()
    } else {
        let first = state.log_number.max(1);
        require(segment_file_name(first), "WAL segment")?;
        require(segment_file_name(state.last_wal), "WAL segment")?;
        let mut present: Vec<u64> = names
            .iter()
            .filter_map(|name| match classify(name) {
                FileKind::Wal(n) if (first..=state.last_wal).contains(&n) => Some(n),
                _ => None,
            })
            .collect();
        present.sort_unstable();
        present
    };

    let cache = Arc::new(BlockCache::new(options.block_cache_size));
    let mut tables = Vec::with_capacity(state.tables.len());
    for meta in state.tables.values() {
        let table =
            Table::open(&*fs, &dir.join(table_file_name(meta.number)), meta.number, cache.clone())?;
        tables.push(Arc::new(TableHandle::new(Arc::new(table), meta.clone(), fs.clone())));
    }

    // Replay. Memtables that fill up are frozen, oldest first in `frozen`.
    let flushed_through = state.last_seqno;
    let mut frozen: Vec<Arc<Memtable>> = Vec::new();
    let mut active = Memtable::new(segments.first().copied().unwrap_or(0));
    active.inject_max_lsn(flushed_through);
    let mut seqnos = SeqnoContinuity::new(flushed_through);
    let mut pending = ReplayBuffer::default();
    for (i, &number) in segments.iter().enumerate() {
        let is_last = i + 1 == segments.len();
        let mut first_in_segment = true;
        let outcome = replay_segment(
            &*fs,
            dir,
            number,
            state.db_id,
            is_last,
            options.wal_recovery,
            |record| {
                seqnos.check(record, std::mem::take(&mut first_in_segment))?;
                // Keys and values are slices of the record (of the replay's read chunk):
                // no copy.
                pending.add_group(record, flushed_through, &active).map_err(|offset| {
                    ReplayError::Damaged(Corruption::new(
                        offset as u64,
                        "WAL record holds an undecodable batch",
                    ))
                })?;
                if active.approximate_size() + pending.bytes >= options.write_buffer_size {
                    pending.insert_into(&active);
                    let next = Memtable::new(number);
                    next.inject_max_lsn(active.max_lsn());
                    frozen.push(Arc::new(std::mem::replace(&mut active, next)));
                }
                Ok(())
            },
        )?;
        seqnos.end_segment(dir.join(segment_file_name(number)), &outcome);
        let dropped_bytes = outcome.torn_tail.is_some() || outcome.skipped_damage.is_some();
        if dropped_bytes || outcome.valid_len < SEGMENT_HEADER_LEN as u64 {
            // Newer segments will follow this one: cut what was dropped.
            truncate_segment(&*fs, dir, number, state.db_id, outcome.valid_len)?;
        }
    }
    pending.insert_into(&active);
    let max_lsn = active.max_lsn();

    // A new segment for new writes, named by a fresh manifest snapshot.
    let replayed_last_wal = state.last_wal;
    let wal_number = state.next_file_number.max(1);
    let manifest_number = wal_number + 1;
    state.next_file_number = manifest_number + 1;
    let wal = WalWriter::create(&*fs, dir, wal_number, state.db_id)?;
    frozen.retain(|m| !m.is_empty());
    if frozen.is_empty() && active.is_empty() {
        // Everything replayed was flushed already: older segments are not needed.
        active = Memtable::new(wal_number);
        active.inject_max_lsn(max_lsn);
        state.log_number = wal_number;
    } else {
        state.log_number = frozen.first().map_or(active.first_wal(), |m| m.first_wal());
    }
    state.last_wal = wal_number;
    let manifest = Manifest::create(
        fs.clone(),
        dir,
        manifest_number,
        state.clone(),
        options.max_manifest_size,
    )?;

    remove_unnamed_files(&*fs, dir, &state, replayed_last_wal, manifest_number)?;

    let view = ReadView {
        active: Arc::new(active),
        frozen: frozen.into_iter().rev().map(FrozenMemtable::new).collect(),
        version: Arc::new(Version::new(tables)),
    };
    let core = DbCore {
        dir: dir.to_path_buf(),
        fs,
        db_id: state.db_id,
        cache,
        table_cache,
        view: ArcSwap::from_pointee(view),
        install_lock: Mutex::new(()),
        visible_seqno: AtomicU64::new(max_lsn),
        commit: Default::default(),
        writer: Mutex::new(WriterState { wal }),
        manifest: Mutex::new(manifest),
        next_file_number: AtomicU64::new(state.next_file_number),
        background: Default::default(),
        strategy: match &options.compaction {
            CompactionStrategyOptions::Leveled(o) => {
                Box::new(Leveled::new(o.clone()).map_err(Error::invalid)?)
            }
            CompactionStrategyOptions::SizeTiered(o) => {
                Box::new(SizeTiered::new(o.clone()).map_err(Error::invalid)?)
            }
        },
        write_pressure: AtomicU8::new(0),
        manual_compaction: Mutex::new(()),
        snapshots: SnapshotRegistry::default(),
        stats: Default::default(),
        closed: AtomicBool::new(false),
        lock: Mutex::new(Some(lock)),
        options,
    };
    Ok(Recovered { core, replayed_segments: segments.len() })
}

/// Creates `dir` and any missing parents, and syncs the parent of each directory it
/// created, so a power loss cannot take the new directory (and the database in it)
/// away after files in it were synced.
fn create_dir_durably(fs: &dyn FileSystem, dir: &Path) -> Result<()> {
    // Nearest first; `list_dir` tells directories apart on every `FileSystem`.
    let missing: Vec<&Path> = dir
        .ancestors()
        .filter(|d| !d.as_os_str().is_empty())
        .take_while(|d| fs.list_dir(d).is_err())
        .collect();
    fs.create_dir_all(dir)?;
    for created in missing.iter().rev() {
        match created.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => fs.sync_dir(parent)?,
            Some(_) => fs.sync_dir(Path::new("."))?,
            None => {}
        }
    }
    Ok(())
}

/// Removes the temporary files (`*.tmp`) a crash left behind, before open writes
/// anything: on a full disk they may hold the very space the open needs. They are
/// never live (see [`super::files`]). The removals are not synced: one undone by a
/// power loss is simply repeated at the next open.
fn remove_stale_temp_files(fs: &dyn FileSystem, dir: &Path) -> Result<()> {
    for name in fs.list_dir(dir)? {
        if classify(&name) == FileKind::Temp {
            fs.remove_file(&dir.join(name))?;
        }
    }
    Ok(())
}

/// Removes tables, WAL segments, manifests and temporary files the manifest does not
/// name: leftovers of a crash in the middle of a flush, rotation or open.
///
/// A WAL file is live only if it was in the replayed range or is the new segment: a
/// segment whose rotation failed before the manifest named it can sit between the
/// old `last_wal` and the new one, and must go before the next open replays it.
fn remove_unnamed_files(
    fs: &dyn FileSystem,
    dir: &Path,
    state: &ManifestState,
    replayed_last_wal: u64,
    manifest_number: u64,
) -> Result<()> {
    let mut removed = false;
    for name in fs.list_dir(dir)? {
        let live = match classify(&name) {
            FileKind::Table(n) => state.tables.contains_key(&n),
            FileKind::Wal(n) => {
                (state.log_number..=replayed_last_wal).contains(&n) || n == state.last_wal
            }
            FileKind::Manifest(n) => n == manifest_number,
            FileKind::Temp => false,
            FileKind::Fixed | FileKind::Unknown => true,
        };
        if !live {
            fs.remove_file(&dir.join(&name))?;
            removed = true;
        }
    }
    if removed {
        fs.sync_dir(dir)?;
    }
    Ok(())
}

/// Checks that the replayed WAL records continue each other's seqnos.
///
/// Every commit group takes the seqnos right after the previous group's, and the
/// first unflushed group starts at or before `last_seqno + 1` of the manifest. A
/// segment truncated at a record boundary, or a missing segment between two others,
/// leaves no damaged record behind, only a gap in the seqnos: without this check such
/// a loss of acknowledged writes would go unnoticed. The gap is blamed on the segment
/// replayed before it, at the end of its valid records.
struct SeqnoContinuity {
    /// The seqno the next group must start at (`exact`) or at or before (first group).
    expected: SeqNo,
    exact: bool,
    /// The segment replayed before the current one and where its records ended.
    previous: Option<(PathBuf, u64)>,
}

impl SeqnoContinuity {
    fn new(flushed_through: SeqNo) -> Self {
        SeqnoContinuity { expected: flushed_through + 1, exact: false, previous: None }
    }

    /// Checks one record (a commit group: `base_seqno u64 | count u32 | ops`).
    fn check(&mut self, record: &[u8], first_in_segment: bool) -> Result<(), ReplayError> {
        let mut d = Decoder::new(record);
        let (Some(base), Some(count)) = (d.u64(), d.u32()) else {
            // Undecodable: reported by the batch decoder.
            return Ok(());
        };
        let fits = if self.exact { base == self.expected } else { base <= self.expected };
        if !fits {
            let message = format!(
                "WAL records are missing: the next record starts at seqno {base}, expected {}",
                self.expected
            );
            return Err(match (&self.previous, first_in_segment) {
                (Some((path, end)), true) => {
                    ReplayError::Apply(Corruption::new(*end, message).in_file(path))
                }
                // At the start of this record.
                _ => ReplayError::Damaged(Corruption::new(0, message)),
            });
        }
        self.expected = base.saturating_add(u64::from(count));
        self.exact = true;
        Ok(())
    }

    /// Notes the end of a segment. After damage skipped in salvage mode a gap is
    /// expected, so the next group may start anywhere.
    fn end_segment(&mut self, path: PathBuf, outcome: &ReplayOutcome) {
        if outcome.skipped_damage.is_some() {
            self.expected = SeqNo::MAX;
            self.exact = false;
        }
        self.previous = Some((path, outcome.valid_len));
    }
}

/// Point entries replayed from the WAL, waiting to be inserted into a memtable.
///
/// Inserting into a skiplist in random key order costs a cache miss per level;
/// sorting a memtable's worth of entries first and inserting them in key order keeps
/// the search path in cache (profiled: 64% of a 64 MiB replay was skiplist search).
/// Every entry of a buffer goes into the same memtable, so memtables still hold
/// consecutive seqno ranges.
#[derive(Default)]
struct ReplayBuffer {
    /// Each entry with its key's inline prefix, computed once: comparing prefixes
    /// first avoids most pointer chases while sorting. Kept in this one vector (not
    /// paired up at sort time) so replay holds one entry list, not two.
    entries: Vec<(u128, Entry)>,
    bytes: usize,
}

impl ReplayBuffer {
    /// Buffers the point operations of a group with seqnos above `skip_through`;
    /// range tombstones go straight into `memtable` (they have their own structure).
    fn add_group(
        &mut self,
        payload: &Bytes,
        skip_through: SeqNo,
        memtable: &Memtable,
    ) -> Result<(), usize> {
        for op in decode_group(payload)? {
            let (seqno, op) = op?;
            if seqno <= skip_through {
                continue;
            }
            match op {
                BatchOp::Point { key, kind, value } => {
                    self.bytes += Memtable::footprint(key.len(), value.len());
                    self.entries.push((key_prefix(&key), Entry { key, seqno, kind, value }));
                }
                BatchOp::RangeDelete { start, end } => {
                    memtable.insert_range_tombstone(start, end, seqno)
                }
            }
        }
        Ok(())
    }

    /// Sorts the buffered entries and inserts them into `memtable`.
    fn insert_into(&mut self, memtable: &Memtable) {
        let keyed = &mut self.entries;
        keyed.sort_unstable_by(|(pa, a), (pb, b)| pa.cmp(pb).then_with(|| a.cmp_internal(b)));
        for (_, entry) in keyed.drain(..) {
            memtable.insert(entry.key, entry.seqno, entry.kind, entry.value);
        }
        self.bytes = 0;
    }
}
