//! A full disk is a soft error: writes fail with `Error::NoSpace`, reads go on,
//! nothing acknowledged is lost, and writes resume by themselves once there is space
//! again, without a reopen. Through `FaultFs` with a disk size, whose appends write
//! what fits and then fail with `ENOSPC` like a real `write`.

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

/// Writes `n` more keys from `first`, which must all succeed; returns the end.
fn put_more(db: &Db, first: u32, n: u32) -> u32 {
    for i in first..first + n {
        db.put(key(i), noise(u64::from(i), 200)).unwrap();
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
    // Room for the next WAL segment but not for the table.
    fs.set_capacity(Some(fs.used_bytes() + (16 << 10)));
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
