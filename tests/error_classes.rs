//! The error classes of `docs/architecture.md`, through `FaultFs`:
//! - a full disk is a soft error: writes fail with `Error::NoSpace`, reads go on,
//!   nothing acknowledged is lost, and writes resume by themselves once there is space
//!   again, without a reopen (`FaultFs::set_capacity`: appends write what fits and
//!   then fail with `ENOSPC`, like a real `write`);
//! - a failed fsync is hard: writes stop until reopen;
//! - a damaged table found by compaction is named, and the rest stays readable.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use aeternusdb::fs::FaultFs;
use aeternusdb::{Db, Error, Options};
use common::{key, noise};

fn options(fs: &FaultFs, compaction: aeternusdb::CompactionStrategyOptions) -> Options {
    Options { fs: Arc::new(fs.clone()), ..common::tiny_options_with(compaction) }
}

/// Writes until the disk is full; returns how many writes were acknowledged.
fn fill_until_no_space(db: &Db, first: u32) -> u32 {
    for i in first.. {
        match db.put(key(i), noise(u64::from(i), 200)) {
            Ok(()) => {}
            Err(Error::NoSpace { dir, .. }) => {
                assert_eq!(dir, db.path());
                return i;
            }
            Err(e) => panic!("write {i} failed with {e}, not NoSpace"),
        }
        assert!(i < 1_000_000, "the disk never filled up");
    }
    unreachable!()
}

fn assert_all_there(db: &Db, keys: std::ops::Range<u32>) {
    for i in keys {
        let got = db.get(key(i)).unwrap();
        assert_eq!(got.as_deref(), Some(&noise(u64::from(i), 200)[..]), "key {i}");
    }
}

#[test]
fn a_full_disk_stops_writes_softly_and_they_resume_once_space_is_back() {
    for (name, strategy) in common::aggressive_strategies() {
        let fs = FaultFs::new();
        let dir = std::path::Path::new("/db");
        let db = Db::open(dir, options(&fs, strategy.clone())).unwrap();
        for i in 0..200 {
            db.put(key(i), noise(u64::from(i), 200)).unwrap();
        }
        db.flush().unwrap();
        // Leave room for a few memtables' worth, then fill it.
        fs.set_capacity(Some(fs.used_bytes() + (64 << 10)));
        let acknowledged = fill_until_no_space(&db, 200);

        // Reads go on.
        assert_all_there(&db, 0..acknowledged);

        // Space comes back: writes resume by themselves.
        fs.set_capacity(None);
        let deadline = Instant::now() + Duration::from_secs(30);
        while let Err(e) = db.put(key(acknowledged), noise(u64::from(acknowledged), 200)) {
            assert!(matches!(e, Error::NoSpace { .. }), "{name}: {e}");
            assert!(Instant::now() < deadline, "{name}: writes did not resume");
            std::thread::sleep(Duration::from_millis(10));
        }
        let resumed = put_more(&db, acknowledged + 1, 300);
        db.flush().unwrap();
        db.compact().unwrap();
        assert_all_there(&db, 0..resumed);
        db.close().unwrap();

        // Every synced acknowledged write survives a power loss, and nothing is damaged.
        fs.power_loss();
        let db = Db::open(dir, options(&fs, strategy)).unwrap();
        assert_all_there(&db, 0..resumed);
        db.close().unwrap();
    }
}

/// Writes `n` more keys from `first` now that there is space; returns the end. A
/// flush that began while the disk was full may still fail after space came back
/// and stop writes once more: each write is retried until its flush's retry fits.
fn put_more(db: &Db, first: u32, n: u32) -> u32 {
    for i in first..first + n {
        let deadline = Instant::now() + Duration::from_secs(30);
        while let Err(e) = db.put(key(i), noise(u64::from(i), 200)) {
            assert!(matches!(e, Error::NoSpace { .. }), "write {i} after space came back: {e}");
            assert!(Instant::now() < deadline, "write {i}: writes did not resume");
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    first + n
}

/// A flush that runs out of space removes its partial table, stops writes with
/// `NoSpace` (not until reopen) and is retried until it fits.
#[test]
fn a_flush_that_finds_the_disk_full_is_retried_until_space_is_back() {
    let fs = FaultFs::new();
    let dir = std::path::Path::new("/db");
    let options = Options {
        write_buffer_size: 1 << 20,
        auto_compaction: false,
        ..options(&fs, common::leveled_aggressive())
    };
    let db = Db::open(dir, options.clone()).unwrap();
    for i in 0..1000 {
        db.put(key(i), noise(u64::from(i), 200)).unwrap();
    }
    // Room for the next WAL segment but not for the table, once the current segment
    // gave back the space it reserved ahead (as the flush's rotation does first).
    fs.set_capacity(Some(fs.used_bytes() - fs.reserved_bytes() + (16 << 10)));
    match db.flush() {
        Err(Error::NoSpace { dir: reported, .. }) => assert_eq!(reported, dir),
        other => panic!("flush on a full disk: {other:?}"),
    }
    assert!(matches!(db.put("x", "y"), Err(Error::NoSpace { .. })));
    assert_all_there(&db, 0..1000);
    // The partial table was removed, so its space is free again.
    assert!(!fs.file_names().iter().any(|p| p.to_string_lossy().ends_with(".tmp")));

    fs.set_capacity(None);
    let deadline = Instant::now() + Duration::from_secs(30);
    while let Err(e) = db.put("x", "y") {
        assert!(matches!(e, Error::NoSpace { .. }), "{e}");
        assert!(Instant::now() < deadline, "writes did not resume");
        std::thread::sleep(Duration::from_millis(10));
    }
    db.flush().unwrap();
    // The retried flush's table and the one holding "x".
    assert_eq!(db.stats().unwrap().levels[0].tables, 2);
    db.close().unwrap();
    fs.power_loss();
    let db = Db::open(dir, options).unwrap();
    assert_all_there(&db, 0..1000);
    assert_eq!(db.get("x").unwrap().as_deref(), Some(&b"y"[..]));
    db.close().unwrap();
}

/// A failed fsync is hard: writes stay stopped after the fault is gone (a retry
/// could acknowledge data the page cache lost), reads go on, a reopen recovers.
#[test]
fn a_failed_wal_sync_stops_writes_until_reopen() {
    let fs = FaultFs::new();
    let dir = std::path::Path::new("/db");
    let options = options(&fs, common::leveled_aggressive());
    let db = Db::open(dir, options.clone()).unwrap();
    db.put("a", "1").unwrap();
    fs.fail_after(aeternusdb::fs::FaultKind::Sync, 0);
    assert!(matches!(db.put("b", "2"), Err(Error::Background(_))));
    fs.clear_faults();
    std::thread::sleep(Duration::from_millis(100));
    assert!(matches!(db.put("c", "3"), Err(Error::Background(_))));
    assert_eq!(db.get("a").unwrap().as_deref(), Some(&b"1"[..]));
    drop(db);
    let db = Db::open(dir, options).unwrap();
    assert_eq!(db.get("a").unwrap().as_deref(), Some(&b"1"[..]));
    db.put("c", "3").unwrap();
    db.close().unwrap();
}

/// A rotation whose manifest edit finds the disk full is soft, like one whose new
/// segment does not fit: the segment is removed again and writes resume. If that
/// removal fails too, the segment stays behind, unnamed, where the next rotation's
/// replay range would cover it: that is hard, writes stop until a reopen, whose
/// recovery removes segments past the manifest's last one (and here reuses the
/// number, which no manifest recorded, for its own).
#[test]
fn a_rotation_that_cannot_remove_its_unnamed_segment_stops_writes() {
    use common::hooked_fs::{HookedFs, Phase};
    use std::sync::atomic::{AtomicBool, Ordering};
    for removal_fails in [false, true] {
        let fs = FaultFs::new();
        let dir = std::path::Path::new("/db");
        let armed = Arc::new(AtomicBool::new(false));
        let hook_armed = armed.clone();
        let hooked = HookedFs::new(Arc::new(fs.clone()), move |point, phase| {
            if phase == Phase::After || !hook_armed.load(Ordering::SeqCst) {
                return Ok(());
            }
            match point {
                "append:manifest" => Err(std::io::ErrorKind::StorageFull.into()),
                "remove:wal" if removal_fails => Err(std::io::Error::other("removal failed")),
                _ => Ok(()),
            }
        });
        let options =
            Options { fs: Arc::new(hooked), ..options(&fs, common::leveled_aggressive()) };
        let db = Db::open(dir, options.clone()).unwrap();
        db.put("a", "1").unwrap();
        let segments = || -> Vec<std::path::PathBuf> {
            let names = fs.file_names().into_iter();
            names.filter(|p| p.extension().is_some_and(|e| e == "wal")).collect()
        };
        let before = segments();
        armed.store(true, Ordering::SeqCst);
        let failed = db.flush().expect_err("the rotation's manifest edit was to fail");
        armed.store(false, Ordering::SeqCst);
        let what = format!("removal fails: {removal_fails}: {failed}");
        let unnamed: Vec<_> = segments().into_iter().filter(|p| !before.contains(p)).collect();
        if removal_fails {
            assert!(matches!(failed, Error::Io(_)), "{what}");
            assert_eq!(unnamed.len(), 1, "{what}: the unnamed segment is gone");
            assert!(matches!(db.put("b", "2"), Err(Error::Background(_))), "{what}");
        } else {
            assert!(matches!(failed, Error::NoSpace { .. }), "{what}");
            assert_eq!(
                unnamed,
                [] as [std::path::PathBuf; 0],
                "{what}: the segment is still there"
            );
            db.put("b", "2").unwrap();
            db.flush().unwrap();
        }
        assert_eq!(db.get("a").unwrap().as_deref(), Some(&b"1"[..]), "{what}");
        drop(db);
        fs.power_loss();
        let db = Db::open(dir, options).unwrap();
        assert_eq!(db.get("a").unwrap().as_deref(), Some(&b"1"[..]), "{what}");
        db.put("c", "3").unwrap();
        db.flush().unwrap();
        db.close().unwrap();
    }
}

/// A table that compaction finds damaged: the error names the file, and the
/// database stays readable (the damaged block reports corruption, never wrong data).
#[test]
fn a_corrupted_table_found_by_compaction_is_named_and_the_rest_stays_readable() {
    let fs = FaultFs::new();
    let dir = std::path::Path::new("/db");
    let options = Options { auto_compaction: false, ..options(&fs, common::leveled_aggressive()) };
    let db = Db::open(dir, options).unwrap();
    for i in 0..100 {
        db.put(key(i), noise(u64::from(i), 200)).unwrap();
    }
    db.flush().unwrap();
    let damaged =
        fs.file_names().into_iter().find(|p| p.to_string_lossy().ends_with(".sst")).unwrap();
    for i in 1000..1100 {
        db.put(key(i), noise(u64::from(i), 200)).unwrap();
    }
    db.flush().unwrap();
    fs.corrupt_byte(&damaged, 20, 0xff).unwrap();

    let name = damaged.file_name().unwrap().to_string_lossy().into_owned();
    match db.compact() {
        Err(Error::Corruption { file, .. }) => assert_eq!(file, damaged),
        other => panic!("compaction over a damaged table: {other:?}"),
    }
    assert_all_there(&db, 1000..1100);
    match db.get(key(0)) {
        Err(e) => assert!(e.is_corruption(), "{e}"),
        Ok(v) => assert_eq!(v.as_deref(), Some(&noise(0, 200)[..])),
    }
    // Writes stop (compaction can no longer keep the tree in shape), naming the file.
    match db.put("x", "y") {
        Err(Error::Background(why)) => assert!(why.contains(&name), "{why} does not name {name}"),
        other => panic!("a write after the damaged compaction: {other:?}"),
    }
    db.close().unwrap();
}

/// A scan that reaches a damaged block reports corruption once and then ends, whichever
/// way it steps (owned `next`, borrowed `next_ref`, `next_back`): what it returned
/// before is right, and nothing comes after.
#[test]
fn a_scan_over_a_damaged_block_reports_it_once_then_ends() {
    let fs = FaultFs::new();
    let dir = std::path::Path::new("/db");
    let options = Options { auto_compaction: false, ..options(&fs, common::leveled_aggressive()) };
    let db = Db::open(dir, options.clone()).unwrap();
    for i in 0..100 {
        db.put(key(i), noise(u64::from(i), 200)).unwrap();
    }
    db.flush().unwrap();
    db.close().unwrap();
    let table =
        fs.file_names().into_iter().find(|p| p.to_string_lossy().ends_with(".sst")).unwrap();
    // Inside the first data block; reopened, so no block is cached.
    fs.corrupt_byte(&table, 20, 0xff).unwrap();
    let db = Db::open(dir, options).unwrap();
    let expected: std::collections::BTreeMap<Vec<u8>, Vec<u8>> =
        (0..100).map(|i| (key(i), noise(u64::from(i), 200))).collect();

    for step in ["next", "next_ref", "next_back"] {
        let mut iter = db.iter().unwrap();
        let (mut pairs, mut errors) = (0, 0);
        loop {
            let item = match step {
                "next" => iter.next().map(|r| r.map(|(k, v)| (k.to_vec(), v.to_vec()))),
                "next_ref" => {
                    iter.next_ref().transpose().map(|r| r.map(|(k, v)| (k.to_vec(), v.to_vec())))
                }
                _ => iter.next_back().map(|r| r.map(|(k, v)| (k.to_vec(), v.to_vec()))),
            };
            match item {
                None => break,
                Some(Ok((k, v))) => {
                    assert_eq!(expected.get(&k), Some(&v), "{step}: a wrong pair");
                    pairs += 1;
                }
                Some(Err(e)) => {
                    assert!(e.is_corruption(), "{step}: {e}");
                    errors += 1;
                }
            }
        }
        assert_eq!(errors, 1, "{step}: one error, then the end");
        assert!(pairs < 100, "{step}: the damaged block's pairs were returned");
        assert!(iter.next().is_none(), "{step}: next after the error");
        assert!(iter.next_back().is_none(), "{step}: next_back after the error");
        assert!(iter.next_ref().unwrap().is_none(), "{step}: next_ref after the error");
    }
    db.close().unwrap();
}

/// Running out of space at any point of a flush — its WAL segment, its table, the
/// rename, the manifest edits — is soft: for every disk size tried, the flush succeeds
/// or reports `NoSpace`, never a hard stop, and once space is back everything is
/// there. A coarse sweep finds the smallest disk the flush fits on; a fine one then
/// covers the last kilobyte below it, where the manifest edits fail.
#[test]
fn a_flush_out_of_space_at_any_point_is_soft() {
    let fits = (0..32u64)
        .map(|k| k << 10)
        .find(|&extra| flush_with_free_space(extra).is_ok())
        .expect("the flush never fit");
    let manifest_failures = (fits.saturating_sub(1 << 10)..fits)
        .step_by(8)
        .filter_map(|extra| flush_with_free_space(extra).err())
        .filter(|message| message.contains("manifest"))
        .count();
    assert!(manifest_failures > 0, "the sweep never ran out of space in a manifest edit");
}

/// One database, three memtables of incompressible values (two flushed), then a
/// flush with `extra` bytes free: `Ok` if it succeeded at once, else the `NoSpace`
/// message. Either way, the data is all there once space is back.
fn flush_with_free_space(extra: u64) -> Result<(), String> {
    let dir = std::path::Path::new("/db");
    let fs = FaultFs::new();
    // A small manifest limit, so some edits roll the manifest over.
    let options = Options {
        write_buffer_size: 1 << 20,
        auto_compaction: false,
        max_manifest_size: 4 << 10,
        ..options(&fs, common::leveled_aggressive())
    };
    let db = Db::open(dir, options.clone()).unwrap();
    for round in 0..3 {
        for i in round * 100..(round + 1) * 100 {
            db.put(key(i), noise(u64::from(i), 200)).unwrap();
        }
        if round < 2 {
            db.flush().unwrap();
        }
    }
    // `extra` beyond what the files hold once the WAL gave back its reserved space.
    fs.set_capacity(Some(fs.used_bytes() - fs.reserved_bytes() + extra));
    let outcome = match db.flush() {
        Ok(()) => Ok(()),
        Err(Error::NoSpace { message, .. }) => Err(message),
        Err(e) => panic!("a flush with {extra} bytes free failed hard: {e}"),
    };
    fs.set_capacity(None);
    let deadline = Instant::now() + Duration::from_secs(30);
    while let Err(e) = db.flush() {
        assert!(matches!(e, Error::NoSpace { .. }), "{extra} bytes free: {e}");
        assert!(Instant::now() < deadline, "{extra} bytes free: the flush never recovered");
        std::thread::sleep(Duration::from_millis(5));
    }
    db.put("after", "space").unwrap();
    assert_all_there(&db, 0..300);
    db.close().unwrap();
    fs.power_loss();
    let db = Db::open(dir, options).unwrap();
    assert_all_there(&db, 0..300);
    assert_eq!(db.get("after").unwrap().as_deref(), Some(&b"space"[..]));
    db.close().unwrap();
    outcome
}
