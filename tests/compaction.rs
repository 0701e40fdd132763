//! Compaction through the public API, under both strategies: space is reclaimed,
//! snapshots keep what they need, tombstones go once nothing needs them, failures stop
//! writes without losing data, strategies can be switched, writers are held back
//! rather than failed when level 0 grows, and scans compact a lingering level-0 table.

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use aeternusdb::fs::{FaultFs, FaultKind, OsFs};
use aeternusdb::internals::{BlockCache, Properties, Table};
use aeternusdb::{CompactionStrategyOptions, Db, Error, Options, WriteBatch};
use common::{
    Model, aggressive_strategies, collect, key, key16, leveled_for, noise, tiered_for,
    tiny_options_with,
};

/// Memtable size of the larger tests: big enough that 50 MB of writes stay fast in
/// debug, small enough for hundreds of flushes and compactions.
const BUFFER: usize = 256 << 10;

/// Both strategies scaled to [`BUFFER`].
fn strategies() -> [(&'static str, CompactionStrategyOptions); 2] {
    [("leveled", leveled_for(BUFFER as u64)), ("size-tiered", tiered_for(BUFFER as u64))]
}

fn options(compaction: CompactionStrategyOptions) -> Options {
    Options { write_buffer_size: BUFFER, sync_writes: false, compaction, ..Options::default() }
}

/// The properties of every `.sst` file in `dir` (an OS directory).
///
/// A compacted table's file is deleted when its last reader lets go, and a background
/// thread glancing at the previous version can delay that for a moment: wait (up to 5 s)
/// until the directory holds exactly as many tables as the current version.
fn table_properties(db: &Db, dir: &Path) -> Vec<Properties> {
    let deadline = Instant::now() + std::time::Duration::from_secs(5);
    let count = || common::file_names(dir).iter().filter(|n| n.ends_with(".sst")).count();
    while count() != db.stats().unwrap().sstables && Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let cache = Arc::new(BlockCache::new(1 << 20));
    common::file_names(dir)
        .iter()
        .filter(|name| name.ends_with(".sst"))
        .enumerate()
        .map(|(id, name)| {
            let table = Table::open(&OsFs, &dir.join(name), id as u64, cache.clone())
                .unwrap_or_else(|e| panic!("open {name}: {e}"));
            table.properties().clone()
        })
        .collect()
}

/// Every key of `model` reads back, and a full scan matches it.
fn assert_matches(db: &Db, model: &Model, what: &str) {
    for (k, v) in &model.map {
        assert_eq!(db.get(k).unwrap().as_deref(), Some(&v[..]), "{what}: get {k:?}");
    }
    assert_eq!(collect(db.iter().unwrap()), model.all(), "{what}: iter");
}

/// Overwrites `n` keys (16 B keys, 32 B values) ten times, deletes every other key,
/// compacts, and checks that the directory shrank to near the raw size of the live
/// data.
fn space_is_reclaimed(n: u32) {
    for (name, compaction) in strategies() {
        let started = Instant::now();
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(dir.path(), options(compaction)).unwrap();
        let mut model = Model::new();
        for round in 0..10u64 {
            for chunk in (0..n).collect::<Vec<_>>().chunks(100) {
                let mut batch = WriteBatch::new();
                for &i in chunk {
                    let value = noise(round << 32 | u64::from(i), 32);
                    batch.put(key16(i), &value).unwrap();
                    model.put(&key16(i), &value);
                }
                db.write(&batch).unwrap();
            }
        }
        for i in (0..n).step_by(2) {
            db.delete(key16(i)).unwrap();
            model.delete(&key16(i));
        }
        let written = db.stats().unwrap();
        db.compact().unwrap();
        let stats = db.stats().unwrap();
        let live = model.live_bytes();
        assert_eq!(live, u64::from(n / 2) * 48, "{name}: the model");
        println!(
            "{name}, {n} keys: {} compactions before compact(); after it {} tables, {} disk \
             bytes for {live} live bytes ({:.3}×), space amplification {:.3}, write \
             amplification {:.2}, {:.1?}",
            written.compactions,
            stats.sstables,
            stats.disk_bytes,
            stats.disk_bytes as f64 / live as f64,
            stats.space_amplification,
            stats.write_amplification,
            started.elapsed(),
        );
        assert!(written.compactions > 0, "{name}: no background compaction ran during the writes");
        assert!(
            stats.disk_bytes as f64 <= 1.3 * live as f64,
            "{name}: {} bytes on disk for {live} bytes of live data",
            stats.disk_bytes
        );
        assert!(
            (1.0..=1.3).contains(&stats.space_amplification),
            "{name}: space amplification {} after a full compaction",
            stats.space_amplification
        );
        // Every table is free of tombstones and of shadowed versions.
        let properties = table_properties(&db, dir.path());
        assert_eq!(properties.len(), stats.sstables, "{name}: tables on disk vs stats");
        let entries: u64 = properties.iter().map(|p| p.entry_count).sum();
        assert_eq!(entries, u64::from(n / 2), "{name}: entries left after compact()");
        assert!(properties.iter().all(|p| p.point_delete_count == 0), "{name}: deletes left");
        assert_matches(&db, &model, name);
        db.close().unwrap();
    }
}

#[test]
fn space_is_reclaimed_20k() {
    space_is_reclaimed(20_000);
}

/// The full size: `cargo test --test compaction -- --ignored`.
///
/// Regression: under size-tiered with `target_file_size` cutting outputs, this once
/// never finished: compaction re-merged equal-sized outputs into as many outputs, and
/// write pressure counted tables it could never remove.
#[test]
#[ignore = "the full-size run: about 10 s in debug"]
fn space_is_reclaimed_100k() {
    space_is_reclaimed(100_000);
}

/// A snapshot taken before overwrites and deletes reads its data unchanged after
/// `compact()`; once it is dropped, another `compact()` reclaims those versions.
#[test]
fn snapshot_pins_versions_until_dropped() {
    const N: u32 = 5_000;
    for (name, compaction) in strategies() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(dir.path(), options(compaction)).unwrap();
        let mut model = Model::new();
        for i in 0..N {
            let value = noise(u64::from(i), 100);
            db.put(key16(i), &value).unwrap();
            model.put(&key16(i), &value);
        }
        let snapshot = db.snapshot().unwrap();
        let before = model.clone();
        for i in 0..N {
            let value = noise(u64::from(N + i), 100);
            db.put(key16(i), &value).unwrap();
            model.put(&key16(i), &value);
        }
        for i in (0..N).step_by(3) {
            db.delete(key16(i)).unwrap();
            model.delete(&key16(i));
        }
        db.delete_range(key16(1000), key16(2000)).unwrap();
        model.delete_range(&key16(1000), &key16(2000));
        db.compact().unwrap();
        let pinned = db.stats().unwrap().disk_bytes;
        assert_matches(&db, &model, &format!("{name}: latest after compact"));
        for i in 0..N {
            let got = snapshot.get(key16(i)).unwrap().map(|v| v.to_vec());
            assert_eq!(got, before.get(&key16(i)), "{name}: snapshot get {i}");
        }
        assert_eq!(collect(snapshot.iter().unwrap()), before.all(), "{name}: snapshot iter");
        // Both generations are on disk: at least the raw bytes of both.
        let both = before.live_bytes() + model.live_bytes();
        assert!(pinned >= both, "{name}: {pinned} bytes on disk hold less than {both}");

        drop(snapshot);
        db.compact().unwrap();
        let freed = db.stats().unwrap().disk_bytes;
        let live = model.live_bytes();
        println!("{name}: {pinned} bytes with the snapshot, {freed} after ({live} live)");
        assert!(
            (freed as f64) <= 1.3 * live as f64,
            "{name}: {freed} bytes on disk after the snapshot went, for {live} live bytes \
             ({pinned} before)"
        );
        assert_matches(&db, &model, &format!("{name}: after the snapshot went"));
        db.close().unwrap();
    }
}

/// One key overwritten 200,000 times, with a snapshot in the middle, then flushed and
/// compacted: the latest value and the snapshot's both read back, and the tables keep
/// exactly those two versions. The job streams the versions (its unit test
/// `a_hot_key_is_collapsed_in_bounded_memory` pins the memory bound).
#[test]
fn a_hot_key_keeps_only_the_versions_snapshots_see() {
    const N: u32 = 200_000;
    for (name, compaction) in strategies() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(dir.path(), options(compaction)).unwrap();
        let mut snapshot = None;
        for i in 0..N {
            db.put(b"hot", i.to_le_bytes()).unwrap();
            if i == N / 2 {
                snapshot = Some(db.snapshot().unwrap());
            }
        }
        let snapshot = snapshot.unwrap();
        db.put(b"cold", b"x").unwrap();
        db.flush().unwrap();
        db.compact().unwrap();
        assert_eq!(db.get(b"hot").unwrap().as_deref(), Some(&(N - 1).to_le_bytes()[..]), "{name}");
        let seen = snapshot.get(b"hot").unwrap();
        assert_eq!(seen.as_deref(), Some(&(N / 2).to_le_bytes()[..]), "{name}: snapshot");
        let entries: u64 = table_properties(&db, dir.path()).iter().map(|p| p.entry_count).sum();
        assert_eq!(entries, 3, "{name}: the two visible versions of hot and cold");

        drop(snapshot);
        db.compact().unwrap();
        // Size-tiered does not rewrite a lone table without tombstones.
        if name == "leveled" {
            let props = table_properties(&db, dir.path());
            let entries: u64 = props.iter().map(|p| p.entry_count).sum();
            assert_eq!(entries, 2, "{name}: once the snapshot is gone, one version of each");
        }
        assert_eq!(db.get(b"hot").unwrap().as_deref(), Some(&(N - 1).to_le_bytes()[..]));
        db.close().unwrap();
    }
}

/// Point and range tombstones hide data until a full compaction, which drops them and
/// what they hid when no snapshot needs them; with a snapshot they survive.
#[test]
fn full_compaction_drops_tombstones() {
    const N: u32 = 4_000;
    for (name, compaction) in strategies() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(dir.path(), options(compaction)).unwrap();
        let mut model = Model::new();
        for i in 0..N {
            let value = noise(u64::from(i), 200);
            db.put(key16(i), &value).unwrap();
            model.put(&key16(i), &value);
        }
        db.flush().unwrap();
        // A snapshot older than the tombstones keeps them (and what they hide).
        let snapshot = db.snapshot().unwrap();
        let before = model.clone();
        db.delete_range(key16(100), key16(3000)).unwrap();
        model.delete_range(&key16(100), &key16(3000));
        for i in (3000..N).step_by(2) {
            db.delete(key16(i)).unwrap();
            model.delete(&key16(i));
        }
        db.flush().unwrap();
        db.compact().unwrap();
        let props = table_properties(&db, dir.path());
        let range: u64 = props.iter().map(|p| p.range_tombstone_count).sum();
        let points: u64 = props.iter().map(|p| p.point_delete_count).sum();
        assert!(range > 0 && points > 0, "{name}: tombstones a snapshot needs were dropped");
        assert_matches(&db, &model, &format!("{name}: with the snapshot"));
        assert_eq!(collect(snapshot.iter().unwrap()), before.all(), "{name}: snapshot iter");
        drop(snapshot);

        db.compact().unwrap();
        let props = table_properties(&db, dir.path());
        let stats = db.stats().unwrap();
        assert_eq!(
            props.len(),
            stats.sstables,
            "{name}: tables on disk vs stats: {:?} {stats:?}",
            common::file_names(dir.path())
        );
        for p in &props {
            assert_eq!(p.range_tombstone_count, 0, "{name}: range tombstone left: {p:?}");
            assert_eq!(p.point_delete_count, 0, "{name}: point delete left: {p:?}");
        }
        let entries: u64 = props.iter().map(|p| p.entry_count).sum();
        assert_eq!(entries, model.map.len() as u64, "{name}: entries left");
        let live = model.live_bytes();
        assert!(
            stats.disk_bytes as f64 <= 1.3 * live as f64,
            "{name}: {} bytes on disk for {live} live bytes",
            stats.disk_bytes
        );
        assert_matches(&db, &model, name);
        db.close().unwrap();
    }
}

/// A point lookup in a deeper level must find a key that sits exactly at the boundary
/// between two tables whose first one ends with a range tombstone clipped at that key.
/// (Regression: the lookup visited only the first table and reported the key missing.)
#[test]
fn a_key_at_a_boundary_clipped_by_a_tombstone_is_found_in_the_next_table() {
    for (name, compaction) in aggressive_strategies() {
        let dir = tempfile::tempdir().unwrap();
        let options =
            Options { auto_compaction: false, sync_writes: false, ..tiny_options_with(compaction) };
        let db = Db::open(dir.path(), options).unwrap();
        let mut model = Model::new();
        for i in 0..100 {
            let value = noise(i as u64, 600);
            db.put(key(i), &value).unwrap();
            model.put(&key(i), &value);
        }
        let snapshot = db.snapshot().unwrap();
        let before = model.clone();
        db.delete_range(key(10), key(90)).unwrap();
        model.delete_range(&key(10), &key(90));
        for i in 10..90 {
            let value = noise(1000 + i as u64, 300);
            db.put(key(i), &value).unwrap();
            model.put(&key(i), &value);
        }
        db.compact().unwrap();
        let stats = db.stats().unwrap();
        assert!(stats.sstables > 2, "{name}: compaction cut only {} tables", stats.sstables);
        for i in 0..100 {
            let got = db.get(key(i)).unwrap().map(|v| v.to_vec());
            assert_eq!(got, model.get(&key(i)), "{name}: get {i}");
            let got = snapshot.get(key(i)).unwrap().map(|v| v.to_vec());
            assert_eq!(got, before.get(&key(i)), "{name}: snapshot get {i}");
        }
        assert_eq!(collect(db.iter().unwrap()), model.all(), "{name}: iter");
        assert_eq!(collect(snapshot.iter().unwrap()), before.all(), "{name}: snapshot iter");
    }
}

const FAULT_DIR: &str = "/db";

fn fault_options(fs: &FaultFs, compaction: CompactionStrategyOptions) -> Options {
    // Synced writes; only `compact()` compacts, so the fault hits a known compaction.
    Options {
        fs: Arc::new(fs.clone()),
        auto_compaction: false,
        sync_writes: true,
        ..tiny_options_with(compaction)
    }
}

/// `.sst` files in the fault filesystem's database directory.
fn fault_tables(fs: &FaultFs) -> usize {
    fs.file_names().iter().filter(|p| p.extension().is_some_and(|e| e == "sst")).count()
}

/// Fills a database on `fs` with synced writes spread over several tables (with
/// overwrites, deletes and a range delete), and returns it with its model.
fn fault_setup(fs: &FaultFs, compaction: CompactionStrategyOptions) -> (Db, Model) {
    let db = Db::open(FAULT_DIR, fault_options(fs, compaction)).unwrap();
    let mut model = Model::new();
    for round in 0..3u64 {
        for i in 0..60 {
            let value = noise(round * 1000 + u64::from(i), 150);
            db.put(key(i), &value).unwrap();
            model.put(&key(i), &value);
        }
        db.delete(key(round as u32 * 7)).unwrap();
        model.delete(&key(round as u32 * 7));
    }
    db.delete_range(key(40), key(45)).unwrap();
    model.delete_range(&key(40), &key(45));
    db.flush().unwrap();
    (db, model)
}

/// For each strategy, fault kind and each `n` below the number of such operations
/// `compact()` does, the `n`-th one fails: `compact()` reports it, writes stop with
/// `Error::Background`, reads still return the right data, and after a power loss (or
/// a process crash) and reopen every synced write is there and every `.sst` file in
/// the directory belongs to the database.
#[test]
fn failed_compaction_stops_writes_and_loses_nothing() {
    for (name, compaction) in aggressive_strategies() {
        for kind in [FaultKind::Write, FaultKind::Sync, FaultKind::Rename] {
            // Dry run: count the operations of `kind` that `compact()` does.
            let fs = FaultFs::new();
            let (db, model) = fault_setup(&fs, compaction.clone());
            let tables_before = db.stats().unwrap().sstables;
            assert!(tables_before >= 3, "{name}: only {tables_before} tables to compact");
            let counted = fs.count(kind);
            db.compact().unwrap();
            let total = fs.count(kind) - counted;
            assert!(db.stats().unwrap().compactions > 0, "{name}: compact() compacted nothing");
            assert_matches(&db, &model, &format!("{name}: dry run"));
            drop(db);
            assert!(total > 0, "{name}: compact() does no {kind:?}");

            for n in 0..total {
                let what = format!("{name}: {kind:?} #{n} of {total}");
                let fs = FaultFs::new();
                let (db, model) = fault_setup(&fs, compaction.clone());
                fs.fail_after(kind, n);
                let err = db.compact().expect_err(&format!("{what}: compact() succeeded"));
                assert!(matches!(err, Error::Io(_) | Error::Background(_)), "{what}: {err}");
                let err = db.put("after", "failure").expect_err(&format!("{what}: a write"));
                assert!(matches!(err, Error::Background(_)), "{what}: write gave {err}");
                assert_matches(&db, &model, &format!("{what}: reads after the failure"));

                if n % 2 == 0 {
                    fs.power_loss();
                } else {
                    fs.release_locks();
                }
                drop(db);
                fs.clear_faults();
                let db = Db::open(FAULT_DIR, fault_options(&fs, compaction.clone()))
                    .unwrap_or_else(|e| panic!("{what}: reopen: {e}"));
                assert_matches(&db, &model, &format!("{what}: after reopen"));
                assert_eq!(
                    fault_tables(&fs),
                    db.stats().unwrap().sstables,
                    "{what}: orphan tables: {:?}",
                    fs.file_names()
                );
                // The reopened database compacts and writes again.
                db.compact().unwrap_or_else(|e| panic!("{what}: compact after reopen: {e}"));
                db.put("again", "works").unwrap();
                assert_matches(&db, &model_with(&model, b"again", b"works"), &what);
                assert_eq!(fault_tables(&fs), db.stats().unwrap().sstables, "{what}: after");
                db.close().unwrap();
            }
        }
    }
}

fn model_with(model: &Model, k: &[u8], v: &[u8]) -> Model {
    let mut model = model.clone();
    model.put(k, v);
    model
}

/// A database compacted by one strategy opens with the other, with its data intact,
/// and compacts under it: deletes issued after the switch stay deleted (older
/// versions in tables the first strategy left behind must not come back).
#[test]
fn strategy_can_be_switched_on_reopen() {
    let [leveled, tiered] = aggressive_strategies();
    for ((from, first), (to, second)) in [(leveled.clone(), tiered.clone()), (tiered, leveled)] {
        let what = format!("{from} → {to}");
        let dir = tempfile::tempdir().unwrap();
        let open = |compaction: &CompactionStrategyOptions| {
            let options = Options { sync_writes: false, ..tiny_options_with(compaction.clone()) };
            Db::open(dir.path(), options).unwrap()
        };
        let db = open(&first);
        let mut model = Model::new();
        for round in 0..3u64 {
            for i in 0..300 {
                let value = noise(round * 1000 + u64::from(i), 100);
                db.put(key(i), &value).unwrap();
                model.put(&key(i), &value);
            }
        }
        db.compact().unwrap();
        let before = db.stats().unwrap();
        assert!(before.compactions > 0, "{what}: nothing compacted before the switch");
        db.close().unwrap();

        let db = open(&second);
        assert_matches(&db, &model, &format!("{what}: after the switch"));
        for i in (0..300).step_by(3) {
            db.delete(key(i)).unwrap();
            model.delete(&key(i));
        }
        db.delete_range(key(100), key(150)).unwrap();
        model.delete_range(&key(100), &key(150));
        for i in 300..400 {
            db.put(key(i), noise(u64::from(i), 100)).unwrap();
            model.put(&key(i), &noise(u64::from(i), 100));
        }
        db.compact().unwrap();
        assert_matches(&db, &model, &format!("{what}: compacted after the switch"));
        let stats = db.stats().unwrap();
        assert!(stats.compactions > 0, "{what}: nothing compacted after the switch");
        // Everything was rewritten: the tables hold about the live data only (the WAL
        // and manifest are a large fixed share of so small a database, so the table
        // bytes are what is measured).
        let live = model.live_bytes();
        assert!(
            stats.sstable_bytes as f64 <= 1.3 * live as f64,
            "{what}: {} table bytes for {live} live bytes after compact(): {:?}",
            stats.sstable_bytes,
            stats.levels
        );
        db.close().unwrap();
        let db = open(&second);
        assert_matches(&db, &model, &format!("{what}: reopened"));
        db.close().unwrap();
    }
}

/// With few level-0 tables allowed and one compaction thread, a burst of writes is
/// slowed down and stopped, never failed, and every write is there afterwards.
#[test]
fn writers_are_held_back_not_failed_when_level0_grows() {
    let compaction = CompactionStrategyOptions::SizeTiered(aeternusdb::SizeTieredOptions {
        slowdown_tables: 3,
        stop_tables: 4,
        // One output per compaction: with outputs cut at a target size the table count
        // cannot fall below data / target, and once that is above `stop_tables`
        // writers would wait forever (see the report on size-tiered output cutting).
        target_file_size: u64::MAX,
        ..match tiered_for(4 << 10) {
            CompactionStrategyOptions::SizeTiered(o) => o,
            CompactionStrategyOptions::Leveled(_) => unreachable!(),
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let options = Options {
        sync_writes: false,
        compaction_threads: 1,
        max_frozen_memtables: 64,
        ..tiny_options_with(compaction)
    };
    let db = Db::open(dir.path(), options).unwrap();
    let mut model = Model::new();
    let writers: Vec<_> = (0..2u32)
        .map(|w| {
            let db = db.clone();
            std::thread::spawn(move || {
                let mut model = Model::new();
                for i in 0..3000 {
                    let (k, v) = (key(w * 10_000 + i), noise(u64::from(w * 10_000 + i), 120));
                    db.put(&k, &v).expect("a write under pressure");
                    model.put(&k, &v);
                }
                model
            })
        })
        .collect();
    for writer in writers {
        model.map.extend(writer.join().unwrap().map);
    }
    let stats = db.stats().unwrap();
    println!(
        "stalls {} ({:?}), slowdowns {} ({:?}), compactions {}",
        stats.write_stalls,
        stats.write_stall_time,
        stats.write_slowdowns,
        stats.write_slowdown_time,
        stats.compactions
    );
    assert!(stats.write_slowdowns > 0, "no write was slowed down: {stats:?}");
    assert!(stats.write_stalls > 0, "no write was stopped: {stats:?}");
    assert!(stats.compactions > 0, "nothing compacted: {stats:?}");
    assert_matches(&db, &model, "after the burst");
    db.close().unwrap();
}

/// Concurrent `compact()` and `compact_range()` calls, racing writers, never pick the
/// same tables twice (which would fail the second manifest edit and stop all writes).
#[test]
fn concurrent_manual_compactions_do_not_collide() {
    for (name, compaction) in strategies() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(dir.path(), options(compaction)).unwrap();
        let mut model = Model::new();
        for round in 0..4u64 {
            for i in 0..2_000u32 {
                let value = noise(round << 32 | u64::from(i), 32);
                db.put(key16(i), &value).unwrap();
                model.put(&key16(i), &value);
            }
            let compactors: Vec<_> = (0..3)
                .map(|t| {
                    let db = db.clone();
                    std::thread::spawn(move || {
                        if t == 0 {
                            db.compact()
                        } else {
                            db.compact_range(key16(t * 300), key16(t * 300 + 900))
                        }
                    })
                })
                .collect();
            for compactor in compactors {
                compactor.join().unwrap().unwrap_or_else(|e| panic!("{name}: {e}"));
            }
            db.put("after", "compaction").unwrap_or_else(|e| panic!("{name}: writes stopped: {e}"));
            model.put(b"after", b"compaction");
        }
        assert_matches(&db, &model, name);
    }
}

/// A level-0 table that scans keep merging with the run below is compacted into it
/// once the scans have cost about what the compaction does (leveled; size-tiered
/// keeps every table in level 0 and ignores scans), and nothing is lost.
#[test]
fn scans_compact_a_lingering_level0_table_under_leveled_only() {
    for (name, compaction) in strategies() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(dir.path(), options(compaction)).unwrap();
        let mut model = Model::new();
        for i in 0..3000 {
            let (k, v) = (key16(i), noise(u64::from(i), 100));
            db.put(&k, &v).unwrap();
            model.put(&k, &v);
        }
        db.compact().unwrap();
        for i in (0..3000).step_by(100) {
            let (k, v) = (key16(i), noise(u64::from(i) + 1, 100));
            db.put(&k, &v).unwrap();
            model.put(&k, &v);
        }
        db.flush().unwrap();
        let level0 = |db: &Db| db.stats().unwrap().levels[0].tables;
        let expect_compacted = name == "leveled";
        // Size-tiered keeps the compacted table in level 0 too.
        let flushed = if expect_compacted { 1 } else { 2 };
        assert_eq!(level0(&db), flushed, "{name}: one small flush left above the compacted data");
        let compactions = db.stats().unwrap().compactions;
        let scan = |i: u32| {
            let got = collect(db.range(key16(i)..).unwrap().take(10));
            assert_eq!(got, model.range(key16(i)..).into_iter().take(10).collect::<Vec<_>>());
        };
        // Far fewer scans than the ~300 KiB the compaction would rewrite are worth
        // (about 1,200 at SCAN_COST_BYTES).
        for i in 0..300 {
            scan(i * 29 % 3000);
        }
        assert_eq!(db.stats().unwrap().compactions, compactions, "{name}: compacted early");
        for i in 0..2000 {
            scan(i * 31 % 3000);
        }
        let deadline = Instant::now() + std::time::Duration::from_secs(10);
        while expect_compacted && level0(&db) > 0 && Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        let stats = db.stats().unwrap();
        if expect_compacted {
            assert_eq!(stats.levels[0].tables, 0, "{name}: scans triggered no compaction");
        } else {
            assert_eq!(stats.compactions, compactions, "{name}: scans triggered a compaction");
        }
        assert_matches(&db, &model, name);
        db.close().unwrap();
    }
}
