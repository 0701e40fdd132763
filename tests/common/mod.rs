//! Helpers shared by the integration tests: the one place for them.
//!
//! Each test file includes this with `mod common;` and uses only part of it.
#![allow(dead_code)]

pub mod hooked_fs;

use std::collections::{BTreeMap, BTreeSet};
use std::ops::{Bound, RangeBounds};

use std::path::Path;
use std::time::{Duration, Instant};

use aeternusdb::fs::{FileSystem, OsFs};
use aeternusdb::internals::{FileKind, Manifest, ManifestState, classify};

use aeternusdb::{
    Bytes, CompactionStrategyOptions, Db, LeveledOptions, Options, Result, SizeTieredOptions,
};

/// Options that make every code path run on small data: a 4 KiB write buffer (the
/// minimum, so memtables freeze and flush all the time), 256 B blocks (many blocks
/// per table) and a small block cache (evictions happen).
pub fn tiny_options() -> Options {
    Options {
        write_buffer_size: 4 << 10,
        block_size: 256,
        block_cache_size: 16 << 10,
        ..Options::default()
    }
}

/// Leveled compaction scaled to `write_buffer` bytes of memtable: level 0 compacts
/// at 2 tables, the base level holds 4 flushes, levels grow by 2× and outputs are cut
/// at 2 flushes, so data moves through several levels after a few dozen flushes.
pub fn leveled_for(write_buffer: u64) -> CompactionStrategyOptions {
    CompactionStrategyOptions::Leveled(LeveledOptions {
        num_levels: 5,
        l0_compaction_trigger: 2,
        l0_slowdown_trigger: 8,
        l0_stop_trigger: 12,
        base_level_size: 4 * write_buffer,
        level_size_multiplier: 2.0,
        target_file_size: 2 * write_buffer,
        max_compaction_bytes: 16 * write_buffer,
    })
}

/// Size-tiered compaction scaled to `write_buffer` bytes of memtable: two tables of
/// similar size make a bucket (only tables below `write_buffer / 8` share one
/// regardless of size), tombstone compactions need no minimum age and outputs are cut
/// at 2 flushes.
pub fn tiered_for(write_buffer: u64) -> CompactionStrategyOptions {
    CompactionStrategyOptions::SizeTiered(SizeTieredOptions {
        min_threshold: 2,
        max_threshold: 8,
        min_sstable_size: write_buffer / 8,
        tombstone_ratio: 0.2,
        tombstone_min_age_secs: 0,
        target_file_size: 2 * write_buffer,
        slowdown_tables: 8,
        stop_tables: 12,
        ..SizeTieredOptions::default()
    })
}

/// [`leveled_for`] the 4 KiB write buffer of [`tiny_options`]: compactions run all
/// the time (base level 16 KiB, 8 KiB outputs).
pub fn leveled_aggressive() -> CompactionStrategyOptions {
    leveled_for(4 << 10)
}

/// [`tiered_for`] the 4 KiB write buffer of [`tiny_options`]: compactions run all
/// the time (tables below 512 B share a bucket, 8 KiB outputs).
pub fn tiered_aggressive() -> CompactionStrategyOptions {
    tiered_for(4 << 10)
}

/// Both built-in strategies, aggressively tuned, with a name for messages.
pub fn aggressive_strategies() -> [(&'static str, CompactionStrategyOptions); 2] {
    [("leveled", leveled_aggressive()), ("size-tiered", tiered_aggressive())]
}

/// [`tiny_options`] with `compaction` as the strategy.
pub fn tiny_options_with(compaction: CompactionStrategyOptions) -> Options {
    Options { compaction, ..tiny_options() }
}

/// The names of the files in `dir` (an OS directory), sorted.
pub fn file_names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("read_dir")
        .map(|entry| entry.expect("dir entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// The files in `dir` (an OS directory) with their sizes: two equal listings mean no
/// file was created, removed, grown or cut in between.
pub fn file_sizes(dir: &Path) -> BTreeMap<String, u64> {
    file_names(dir)
        .into_iter()
        .map(|name| {
            let len = std::fs::metadata(dir.join(&name)).expect("metadata").len();
            (name, len)
        })
        .collect()
}

/// Copies every file of the directory `from` into the existing directory `to` (a
/// database directory has no subdirectories).
pub fn copy_files(from: &Path, to: &Path) {
    for name in file_names(from) {
        std::fs::copy(from.join(&name), to.join(&name)).expect("copy");
    }
}

/// The `i`th key of a test: `key000042`, in the same order as `i` (below a million).
pub fn key(i: u32) -> Vec<u8> {
    format!("key{i:06}").into_bytes()
}

/// The `i`th key, exactly 16 bytes (`k000000000000042`): not [`key`], for tests that
/// count the bytes of their data (space amplification against the raw size).
pub fn key16(i: u32) -> Vec<u8> {
    format!("k{i:015}").into_bytes()
}

/// The `i`th key of the checked-in database `tests/fixtures/format-v1`: `key00042`.
/// Not [`key`]: the fixture holds these bytes, so this format never changes, even when
/// [`key`] does (a fixture of a new format version gets its own).
pub fn format_v1_key(i: u32) -> Vec<u8> {
    format!("key{i:05}").into_bytes()
}

/// A value naming its key number and version, so a wrong one says where it came from.
pub fn value(i: u32, version: u64) -> Vec<u8> {
    format!("value-{i}-v{version}").into_bytes()
}

/// `len` incompressible bytes determined by `seed` (so compression cannot make a
/// test's tables smaller than it meant them to be).
pub fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            // xorshift64*
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            (x.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 56) as u8
        })
        .collect()
}

/// Drains an engine iterator into owned pairs, failing on the first error.
pub fn collect(iter: impl Iterator<Item = Result<(Bytes, Bytes)>>) -> Vec<(Vec<u8>, Vec<u8>)> {
    iter.map(|item| {
        let (k, v) = item.expect("iterator item");
        (k.to_vec(), v.to_vec())
    })
    .collect()
}

/// The whole contents of `db`, whose keys are [`key`]`(i)` for `i` in `0..key_space`:
/// a forward scan, checked against a reverse scan and a point lookup of every key, so
/// a test comparing the result with a [`Model`] checks all three read paths.
pub fn contents(db: &Db, key_space: u32) -> Model {
    let scanned = collect(db.iter().expect("iter"));
    let mut backward = collect(db.iter().expect("iter").rev());
    backward.reverse();
    assert!(scanned == backward, "forward and reverse scans disagree");
    let mut model = Model::new();
    for (k, v) in &scanned {
        model.put(k, v);
    }
    assert_eq!(model.map.len(), scanned.len(), "the scan repeated a key");
    for i in 0..key_space {
        let k = key(i);
        let got = db.get(&k).expect("get").map(|v| v.to_vec());
        assert_eq!(got, model.get(&k), "get and scan disagree on {}", String::from_utf8_lossy(&k));
    }
    model
}

/// What the database should hold: a plain ordered map with the engine's operations.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Model {
    pub map: BTreeMap<Vec<u8>, Vec<u8>>,
}

impl Model {
    pub fn new() -> Model {
        Model::default()
    }

    pub fn put(&mut self, key: &[u8], value: &[u8]) {
        self.map.insert(key.to_vec(), value.to_vec());
    }

    pub fn delete(&mut self, key: &[u8]) {
        self.map.remove(key);
    }

    /// Removes every key in `[start, end)`; nothing if `start >= end`.
    pub fn delete_range(&mut self, start: &[u8], end: &[u8]) {
        if start >= end {
            return;
        }
        let doomed: Vec<Vec<u8>> = self
            .map
            .range::<[u8], _>((Bound::Included(start), Bound::Excluded(end)))
            .map(|(k, _)| k.clone())
            .collect();
        for k in doomed {
            self.map.remove(&k);
        }
    }

    pub fn get(&self, key: &[u8]) -> Option<Vec<u8>> {
        self.map.get(key).cloned()
    }

    /// The pairs within `range`, in order; an empty or inverted range yields nothing
    /// (where `BTreeMap::range` would panic).
    pub fn range<R: RangeBounds<Vec<u8>>>(&self, range: R) -> Vec<(Vec<u8>, Vec<u8>)> {
        let (lower, upper) = (range.start_bound(), range.end_bound());
        let empty = match (lower, upper) {
            (Bound::Included(l), Bound::Included(u)) => l > u,
            (Bound::Included(l) | Bound::Excluded(l), Bound::Excluded(u))
            | (Bound::Excluded(l), Bound::Included(u)) => l >= u,
            _ => false,
        };
        if empty {
            return Vec::new();
        }
        self.map.range::<Vec<u8>, _>((lower, upper)).map(|(k, v)| (k.clone(), v.clone())).collect()
    }

    /// Key plus value bytes of every live pair: the raw size of the data.
    pub fn live_bytes(&self) -> u64 {
        self.map.iter().map(|(k, v)| (k.len() + v.len()) as u64).sum()
    }

    /// Every pair, in order.
    pub fn all(&self) -> Vec<(Vec<u8>, Vec<u8>)> {
        self.range(..)
    }

    /// The pairs whose key starts with `prefix`, in order.
    pub fn prefix(&self, prefix: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)> {
        self.map
            .range(prefix.to_vec()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }
}

/// A gate on the real filesystem ([`GateFs::filesystem`], a [`hooked_fs::HookedFs`])
/// whose next creation of a table temp file (`*.sst.tmp`), once [`GateFs::arm`]ed,
/// blocks until [`GateFs::release`]: a flush or
/// compaction held at a known point, for tests of what may happen meanwhile.
#[derive(Debug, Default)]
pub struct GateFs {
    state: std::sync::Mutex<Gate>,
    changed: std::sync::Condvar,
}

#[derive(Debug, Default)]
struct Gate {
    armed: bool,
    blocked: bool,
    released: bool,
}

impl GateFs {
    pub fn new() -> std::sync::Arc<GateFs> {
        std::sync::Arc::new(GateFs::default())
    }

    /// The next `*.sst.tmp` creation blocks.
    pub fn arm(&self) {
        let mut gate = self.state.lock().unwrap();
        *gate = Gate { armed: true, ..Gate::default() };
    }

    /// Waits until a creation is blocked at the gate.
    pub fn wait_until_blocked(&self) {
        let mut gate = self.state.lock().unwrap();
        while !gate.blocked {
            gate = self.changed.wait(gate).unwrap();
        }
    }

    /// Lets the blocked creation (and every later one) through.
    pub fn release(&self) {
        self.state.lock().unwrap().released = true;
        self.changed.notify_all();
    }
}

impl GateFs {
    /// The real filesystem, with this gate before every `*.sst.tmp` creation.
    pub fn filesystem(
        self: &std::sync::Arc<Self>,
    ) -> std::sync::Arc<dyn aeternusdb::fs::FileSystem> {
        let gate = self.clone();
        std::sync::Arc::new(hooked_fs::HookedFs::new(
            std::sync::Arc::new(aeternusdb::fs::OsFs),
            move |point, phase| {
                if point == "create:table.tmp" && phase == hooked_fs::Phase::Before {
                    gate.pass();
                }
                Ok(())
            },
        ))
    }

    /// Blocks while the gate is armed, until it is released.
    fn pass(&self) {
        let mut gate = self.state.lock().unwrap();
        if gate.armed && !gate.released {
            gate.armed = false;
            gate.blocked = true;
            self.changed.notify_all();
            while !gate.released {
                gate = self.changed.wait(gate).unwrap();
            }
        }
    }
}

/// The files of a database directory, by kind.
#[derive(Debug, Default)]
pub struct DirListing {
    pub tables: BTreeSet<u64>,
    pub wals: BTreeSet<u64>,
    pub manifests: BTreeSet<u64>,
    pub temps: Vec<String>,
}

pub fn list_dir(dir: &Path) -> DirListing {
    list_dir_in(&OsFs, dir)
}

/// [`list_dir`] on any filesystem.
pub fn list_dir_in(fs: &dyn FileSystem, dir: &Path) -> DirListing {
    let mut listing = DirListing::default();
    for name in fs.list_dir(dir).unwrap() {
        match classify(&name) {
            FileKind::Table(n) => drop(listing.tables.insert(n)),
            FileKind::Wal(n) => drop(listing.wals.insert(n)),
            FileKind::Manifest(n) => drop(listing.manifests.insert(n)),
            FileKind::Temp => listing.temps.push(name),
            FileKind::Fixed | FileKind::Unknown => {}
        }
    }
    listing
}

/// Checks that the directory holds exactly what the manifest needs: its tables, no
/// temporary file and one manifest; with `db` (open and quiescent), that its version
/// has as many tables; without (closed), that no WAL segment lies outside
/// `[log_number, last_wal]` and the newest is there. Returns the manifest state.
pub fn check_no_orphans(dir: &Path, db: Option<&Db>, context: &str) -> ManifestState {
    check_no_orphans_in(&OsFs, dir, db, context)
}

/// [`check_no_orphans`] on any filesystem.
pub fn check_no_orphans_in(
    fs: &dyn FileSystem,
    dir: &Path,
    db: Option<&Db>,
    context: &str,
) -> ManifestState {
    let listing = list_dir_in(fs, dir);
    let state = Manifest::load(fs, dir).unwrap();
    assert!(listing.temps.is_empty(), "{context}: temporary files remain: {:?}", listing.temps);
    let named: BTreeSet<u64> = state.tables.keys().copied().collect();
    assert_eq!(
        listing.tables, named,
        "{context}: the .sst files (left) are not the manifest's tables (right)"
    );
    if let Some(db) = db {
        let stats = db.stats().unwrap();
        assert_eq!(
            stats.sstables,
            listing.tables.len(),
            "{context}: the open version has {} tables, the directory {} .sst files",
            stats.sstables,
            listing.tables.len()
        );
    }
    let current = Manifest::current_path(fs, dir).unwrap();
    assert_eq!(
        listing.manifests.len(),
        1,
        "{context}: several manifests: {:?} (current: {})",
        listing.manifests,
        current.display()
    );
    if db.is_some() {
        // The flush thread deletes a flushed memtable's WAL segments after installing
        // the new version: only once it has stopped is the WAL set settled.
        return state;
    }
    let stray: Vec<u64> = listing
        .wals
        .iter()
        .copied()
        .filter(|n| !(state.log_number..=state.last_wal).contains(n))
        .collect();
    assert!(
        stray.is_empty(),
        "{context}: WAL segments {stray:?} are outside the manifest's [{}, {}]",
        state.log_number,
        state.last_wal
    );
    assert!(
        listing.wals.contains(&state.last_wal),
        "{context}: the newest WAL segment {} is missing",
        state.last_wal
    );
    state
}

/// Waits until the flush thread has flushed every replayed memtable (with automatic
/// compaction off, the version then stays as it is).
pub fn wait_for_flushes(db: &Db, context: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while db.stats().unwrap().frozen_memtables > 0 {
        assert!(Instant::now() < deadline, "{context}: replayed memtables never flushed");
        std::thread::sleep(Duration::from_millis(2));
    }
}
