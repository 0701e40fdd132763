//! Opening a database: lock, manifest, tables, WAL replay, clean-up.
//!
//! # Steps
//! [`open`] validates the options, then runs them in this order, one function each:
//! 1. [`lock_directory`]: create the directory if allowed (syncing the parent of each
//!    directory created), take the `LOCK` file, remove temporary files a crash left
//!    behind (before anything is written: on a full disk they hold the space needed).
//! 2. [`load_or_create_state`]: load the manifest named by `CURRENT` (or start a new
//!    database with a fresh UUID). A directory with tables or manifests but no
//!    `CURRENT` is corruption, not a new database: treating it as new would delete the
//!    data (except the leftovers of a creation killed before `CURRENT` was written,
//!    which hold nothing).
//! 3. [`check_named_files`]: check that every table the manifest names exists, and the
//!    WAL segments `log_number` and `last_wal` (missing → `Error::Corruption`).
//!    Segment numbers are sparse (tables and manifests share the counter), so the
//!    segments to replay are the WAL files numbered within `[log_number, last_wal]`.
//! 4. [`open_tables`]: open every table the manifest names.
//! 5. [`replay_wal`]: replay the segments in order into memtables, skipping seqnos
//!    the manifest says were already flushed, and checking that seqnos continue
//!    without gaps; a memtable that fills up is frozen and flushed later. Each memtable
//!    starts from the highest seqno seen so far (`inject_max_lsn`), so no seqno is ever
//!    reused. Only the newest segment may end in a torn record, which is cut off the
//!    file in place (no copy, so a full disk does not stop it). Segments are read in
//!    bounded chunks and the memtables keep slices of them, not copies (see
//!    [`super::replay`]).
//! 6. [`remove_orphan_segments`]: remove, durably, the WAL segments numbered past
//!    `last_wal`, left by a rotation or an open that failed before a manifest named
//!    its segment. Step 7 extends the replay range past them, so they go first.
//! 7. [`start_wal_and_manifest`]: start a new WAL segment, write a fresh manifest
//!    snapshot naming it, and point `CURRENT` at it.
//! 8. [`remove_unnamed_files`]: remove every other file the manifest does not name
//!    (orphans of a crash).

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64};

use arc_swap::ArcSwap;
use parking_lot::Mutex;

use crate::compaction::{Leveled, SizeTiered};
use crate::error::{Corruption, Error, Result};
use crate::fs::{FileLock, FileSystem};
use crate::manifest::{CURRENT, Manifest, ManifestState, manifest_file_name};
use crate::memtable::{FrozenMemtable, Memtable};
use crate::options::{CompactionStrategyOptions, Options};
use crate::sstable::cache::BlockCache;
use crate::sstable::{Table, table_file_name};
use crate::table_cache::CachingFs;
use crate::version::{ObsoleteTables, ReadView, TableHandle, Version};
use crate::wal::{SEGMENT_HEADER_LEN, WalWriter, segment_file_name};

use super::memory_budget::MemoryBudget;
use super::replay::{Replayed, replay_wal};
use super::write::WriterState;
use super::{DbCore, read::SnapshotRegistry};
use crate::file_names::{FileKind, LOCK_FILE, classify};

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

/// Opens the database in `dir`: the steps of the module doc, then the [`DbCore`] over
/// what they recovered.
pub(super) fn open(dir: &Path, options: Options) -> Result<Recovered> {
    let started = std::time::Instant::now();
    let _span =
        tracing::info_span!(target: "aeternusdb::recovery", "open", dir = %dir.display()).entered();
    options.validate()?;
    let caching_fs = CachingFs::new(options.fs.clone(), options.max_open_files);
    let table_cache = caching_fs.table_cache().clone();
    let fs: Arc<dyn FileSystem> = Arc::new(caching_fs);
    let lock = lock_directory(&*fs, dir, &options)?;
    let names = fs.list_dir(dir)?;
    let mut state = load_or_create_state(&*fs, dir, &names, options.error_if_exists)?;
    let segments = check_named_files(&*fs, dir, &names, &state)?;
    let cache = Arc::new(BlockCache::new(MemoryBudget::max_cache_size(
        options.block_cache_size,
        options.write_buffer_size,
    )));
    let memory =
        MemoryBudget::new(cache.clone(), options.block_cache_size, options.write_buffer_size);
    let obsolete_tables = ObsoleteTables::new(fs.clone());
    let tables = open_tables(&fs, dir, &state, &cache, &obsolete_tables)?;
    let mut memtables = replay_wal(&*fs, dir, &state, &segments, &options)?;
    let replayed_last_wal = state.last_wal;
    remove_orphan_segments(&*fs, dir, &names, replayed_last_wal)?;
    let logs = start_wal_and_manifest(&fs, dir, &mut state, &mut memtables, &options)?;
    remove_unnamed_files(&*fs, dir, &state, replayed_last_wal, logs.manifest_number)?;
    tracing::info!(
        target: "aeternusdb::recovery",
        segments = segments.len(),
        records = memtables.records,
        bytes = memtables.bytes,
        tables = state.tables.len(),
        torn_tail_cut = memtables.torn_tail_cut,
        last_seqno = memtables.last_seqno,
        duration_us = started.elapsed().as_micros() as u64,
        "opened"
    );

    let view = ReadView {
        active: Arc::new(memtables.active),
        frozen: memtables.frozen.into_iter().rev().map(FrozenMemtable::new).collect(),
        version: Arc::new(Version::new(tables)),
    };
    memory.memtables_of(&view);
    let core = DbCore {
        dir: dir.to_path_buf(),
        fs,
        db_id: state.db_id,
        cache,
        memory,
        table_cache,
        view: ArcSwap::from_pointee(view),
        install_lock: Mutex::new(()),
        visible_seqno: AtomicU64::new(memtables.last_seqno),
        commit: Default::default(),
        writer: Mutex::new(WriterState { wal: logs.wal }),
        manifest: Mutex::new(logs.manifest),
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
        obsolete_tables,
        lock: Mutex::new(Some(lock)),
        options,
    };
    Ok(Recovered { core, replayed_segments: segments.len() })
}

/// Step 1: creates `dir` if it is missing and `options` allow it, takes its `LOCK`
/// (held until the database is closed) and removes stale temporary files.
fn lock_directory(fs: &dyn FileSystem, dir: &Path, options: &Options) -> Result<Box<dyn FileLock>> {
    if !options.create_if_missing && !fs.exists(&dir.join(CURRENT)) {
        return Err(Error::invalid(format!(
            "no database in {} and create_if_missing is false",
            dir.display()
        )));
    }
    create_dir_durably(fs, dir)?;
    let lock =
        fs.try_lock(&dir.join(LOCK_FILE))?.ok_or_else(|| Error::Locked(dir.to_path_buf()))?;
    remove_stale_temp_files(fs, dir)?;
    Ok(lock)
}

/// Step 2: the state of the manifest `CURRENT` names, or that of a new database if
/// there is no `CURRENT` and `names` (the directory's files) hold no data.
fn load_or_create_state(
    fs: &dyn FileSystem,
    dir: &Path,
    names: &[String],
    error_if_exists: bool,
) -> Result<ManifestState> {
    if fs.exists(&dir.join(CURRENT)) {
        if error_if_exists {
            return Err(Error::invalid(format!("a database exists in {}", dir.display())));
        }
        return Manifest::load(fs, dir);
    }
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
    Ok(ManifestState { next_file_number: 1, ..ManifestState::new(uuid::Uuid::new_v4()) })
}

/// Step 3: checks that every file `state` needs is among `names` (the directory's
/// files), and returns the numbers of the WAL segments to replay, oldest first.
fn check_named_files(
    fs: &dyn FileSystem,
    dir: &Path,
    names: &[String],
    state: &ManifestState,
) -> Result<Vec<u64>> {
    // A named file that is missing is reported against the manifest naming it: from
    // here a deleted file and a manifest that lost or garbled edits look the same, and
    // the manifest is the file whose content disagrees with the directory.
    let manifest_path = if fs.exists(&dir.join(CURRENT)) {
        Manifest::current_path(fs, dir)?
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
    if state.last_wal == 0 {
        return Ok(Vec::new());
    }
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
    Ok(present)
}

/// Step 4: opens every table `state` names.
fn open_tables(
    fs: &Arc<dyn FileSystem>,
    dir: &Path,
    state: &ManifestState,
    cache: &Arc<BlockCache>,
    obsolete_tables: &Arc<ObsoleteTables>,
) -> Result<Vec<Arc<TableHandle>>> {
    let mut tables = Vec::with_capacity(state.tables.len());
    for meta in state.tables.values() {
        let table = Table::open(
            &**fs,
            &dir.join(table_file_name(meta.number)),
            meta.number,
            cache.clone(),
        )?;
        let handle = TableHandle::new(Arc::new(table), meta.clone(), obsolete_tables.clone());
        tables.push(Arc::new(handle));
    }
    Ok(tables)
}

/// Step 6: removes the WAL segments numbered past `last_wal` and syncs the directory.
///
/// A rotation or an open that failed after creating its segment, and before a
/// manifest named it, leaves the segment behind, perhaps without a synced header; a
/// later edit may have recorded a higher `next_file_number`. The manifest step 7
/// writes names a newer segment, so its range `[log_number, last_wal]` would cover the
/// orphan, and the next open would replay it: one whose header a power loss took
/// would make every later open fail. So the orphans go, durably, before that manifest
/// exists; a removal that fails fails the open with the old manifest still current.
fn remove_orphan_segments(
    fs: &dyn FileSystem,
    dir: &Path,
    names: &[String],
    last_wal: u64,
) -> Result<()> {
    let orphans: Vec<u64> = names
        .iter()
        .filter_map(|name| match classify(name) {
            FileKind::Wal(n) if n > last_wal => Some(n),
            _ => None,
        })
        .collect();
    for &number in &orphans {
        fs.remove_file(&dir.join(segment_file_name(number)))?;
        tracing::info!(
            target: "aeternusdb::recovery",
            segment = number,
            "removed a WAL segment no manifest names (left by a failed rotation or open)"
        );
    }
    if !orphans.is_empty() {
        fs.sync_dir(dir)?;
    }
    Ok(())
}

/// The files new writes and version edits go to, made by [`start_wal_and_manifest`].
struct NewLogs {
    wal: WalWriter,
    manifest: Manifest,
    /// The manifest's file number: the only live manifest from now on.
    manifest_number: u64,
}

/// Step 7: creates a WAL segment for new writes and a manifest snapshot naming it
/// (`CURRENT` then points at it), recording in `state` which segments are live. If
/// every replayed write was flushed already, the older segments are not needed: the
/// active memtable starts afresh on the new segment.
fn start_wal_and_manifest(
    fs: &Arc<dyn FileSystem>,
    dir: &Path,
    state: &mut ManifestState,
    memtables: &mut Replayed,
    options: &Options,
) -> Result<NewLogs> {
    let wal_number = state.next_file_number.max(1);
    let manifest_number = wal_number + 1;
    state.next_file_number = manifest_number + 1;
    let wal = WalWriter::create(&**fs, dir, wal_number, state.db_id)?;
    if memtables.frozen.is_empty() && memtables.active.is_empty() {
        memtables.active = Memtable::new(wal_number, options.write_buffer_size);
        memtables.active.inject_max_lsn(memtables.last_seqno);
        state.log_number = wal_number;
    } else {
        state.log_number =
            memtables.frozen.first().map_or(memtables.active.first_wal(), |m| m.first_wal());
    }
    state.last_wal = wal_number;
    let manifest = Manifest::create(
        fs.clone(),
        dir,
        manifest_number,
        state.clone(),
        options.max_manifest_size,
    )?;
    Ok(NewLogs { wal, manifest, manifest_number })
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
/// never live (see [`crate::file_names`]). The removals are not synced: one undone by a
/// power loss is simply repeated at the next open.
fn remove_stale_temp_files(fs: &dyn FileSystem, dir: &Path) -> Result<()> {
    for name in fs.list_dir(dir)? {
        if classify(&name) == FileKind::Temp {
            fs.remove_file(&dir.join(name))?;
        }
    }
    Ok(())
}

/// Step 8: removes tables, WAL segments, manifests and temporary files the manifest
/// does not name: leftovers of a crash in the middle of a flush, rotation or open.
///
/// A WAL file is live only if it was in the replayed range or is the new segment
/// (step 6 removed those past the replayed range already).
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
