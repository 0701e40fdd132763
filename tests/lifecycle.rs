//! The lifecycle of an instance against work in flight: `close()` waits for every job
//! of the instance before it releases the directory, a stalled writer does not hold
//! up the calls that do not need it, and manual compaction does not stop background
//! compaction from relieving write pressure.
//!
//! Each test holds a flush or compaction at a known point with [`GateFs`].

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use aeternusdb::{CompactionStrategyOptions, Db, Error, LeveledOptions, Options};
use common::{GateFs, key, noise, value};

fn gated(fs: &Arc<GateFs>, compaction: CompactionStrategyOptions) -> Options {
    Options {
        // About 700 small entries (each counts ~160 bytes of overhead besides its data).
        write_buffer_size: 128 << 10,
        sync_writes: false,
        compaction,
        fs: fs.filesystem(),
        ..Options::default()
    }
}

fn leveled(l0_compaction_trigger: usize, l0_slowdown_trigger: usize) -> CompactionStrategyOptions {
    CompactionStrategyOptions::Leveled(LeveledOptions {
        num_levels: 4,
        l0_compaction_trigger,
        l0_slowdown_trigger,
        l0_stop_trigger: 40,
        ..LeveledOptions::default()
    })
}

fn put_range(db: &Db, prefix: &str, keys: std::ops::Range<u32>) {
    for i in keys {
        let mut k = prefix.as_bytes().to_vec();
        k.extend(key(i));
        db.put(k, value(i, 1)).unwrap();
    }
}

/// Regression: `close()` returned while a `compact()` on another thread was still
/// running and released the lock; a second instance opened, the stale job finished,
/// deleted tables the new manifest named, and the next open reported corruption.
#[test]
fn close_waits_for_a_manual_compaction_before_releasing_the_directory() {
    let dir = tempfile::tempdir().unwrap();
    let fs = GateFs::new();
    let options = Options { auto_compaction: false, ..gated(&fs, leveled(4, 20)) };
    let db = Db::open(dir.path(), options.clone()).unwrap();
    for part in 0..4 {
        put_range(&db, "a", part * 500..(part + 1) * 500);
        db.flush().unwrap();
    }

    fs.arm();
    let compacting = db.clone();
    let compaction = std::thread::spawn(move || compacting.compact());
    fs.wait_until_blocked();
    let (closed, close_done) = mpsc::channel();
    let closing = db.clone();
    let close = std::thread::spawn(move || closed.send(closing.close()).unwrap());

    assert!(
        close_done.recv_timeout(Duration::from_millis(300)).is_err(),
        "close() returned while a compaction of this instance was running"
    );
    assert!(
        matches!(Db::open(dir.path(), options.clone()), Err(Error::Locked(_))),
        "the directory was released while a compaction of the old instance was running"
    );

    fs.release();
    close_done.recv().unwrap().unwrap();
    close.join().unwrap();
    match compaction.join().unwrap() {
        Ok(()) | Err(Error::Closed) => {}
        Err(e) => panic!("the interrupted compaction failed: {e}"),
    }

    for _ in 0..2 {
        let db = Db::open(dir.path(), options.clone()).unwrap();
        for i in 0..2000 {
            let mut k = b"a".to_vec();
            k.extend(key(i));
            assert_eq!(db.get(&k).unwrap().as_deref(), Some(&value(i, 1)[..]));
        }
        db.close().unwrap();
    }
}

/// Regression: a writer stalled on flushes held the writer lock for the whole stall,
/// so `sync_wal()` (and `flush()`) waited until the flush finished.
#[test]
fn sync_wal_returns_while_a_writer_is_stalled() {
    let dir = tempfile::tempdir().unwrap();
    let fs = GateFs::new();
    let options = Options {
        write_buffer_size: 4 << 10,
        max_frozen_memtables: 1,
        auto_compaction: false,
        ..gated(&fs, leveled(4, 20))
    };
    let db = Db::open(dir.path(), options.clone()).unwrap();
    fs.arm();

    let written = Arc::new(AtomicU64::new(0));
    let writer = {
        let (db, written) = (db.clone(), written.clone());
        std::thread::spawn(move || {
            for i in 0..2000 {
                db.put(key(i), noise(u64::from(i), 100)).unwrap();
                written.fetch_add(1, Ordering::Relaxed);
            }
        })
    };
    fs.wait_until_blocked();
    // The first flush is held, so after two memtables' worth the writer stalls.
    let mut last = written.load(Ordering::Relaxed);
    loop {
        std::thread::sleep(Duration::from_millis(200));
        let now = written.load(Ordering::Relaxed);
        if now == last {
            break;
        }
        last = now;
    }
    assert!(last < 2000, "the writer never stalled");

    let (synced, sync_done) = mpsc::channel();
    let syncing = db.clone();
    std::thread::spawn(move || synced.send(syncing.sync_wal()).unwrap());
    let result = sync_done.recv_timeout(Duration::from_secs(20));
    fs.release();
    assert!(matches!(result, Ok(Ok(()))), "sync_wal() waited for the stalled writer: {result:?}");

    writer.join().unwrap();
    for i in 0..2000 {
        assert_eq!(db.get(key(i)).unwrap().as_deref(), Some(&noise(u64::from(i), 100)[..]));
    }
    db.close().unwrap();
}

/// Regression: a manual compaction paused background compaction for its whole run,
/// so level 0 grew towards a write stop behind it. Meanwhile background compaction
/// now runs whenever writes are slowed (here from 3 level-0 tables).
#[test]
fn background_compaction_relieves_level0_while_a_manual_compaction_runs() {
    let dir = tempfile::tempdir().unwrap();
    let fs = GateFs::new();
    let db = Db::open(dir.path(), gated(&fs, leveled(2, 3))).unwrap();
    let level0 = |db: &Db| db.stats().unwrap().levels[0].tables;
    put_range(&db, "a", 0..500);
    db.flush().unwrap();
    // One level-0 table of "a" keys, waiting for a second to trigger compaction.
    assert_eq!(level0(&db), 1);

    fs.arm();
    let compacting = db.clone();
    let manual = std::thread::spawn(move || compacting.compact_range("a", "b"));
    fs.wait_until_blocked();
    // Tables of "z" keys overlap nothing the manual compaction holds.
    for part in 0..4 {
        put_range(&db, "z", part * 500..(part + 1) * 500);
        db.flush().unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while level0(&db) >= 3 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let left = level0(&db);
    fs.release();
    manual.join().unwrap().unwrap();
    assert!(left < 3, "level 0 kept {left} tables while a manual compaction ran");
    db.close().unwrap();
}

/// `close()` does not wait for a long compaction to finish: the job stops at its next
/// check (every output file, every few thousand entries), removes its outputs, and
/// the data is all there after a reopen.
#[test]
fn close_cancels_a_running_compaction_at_its_next_check() {
    let dir = tempfile::tempdir().unwrap();
    let fs = GateFs::new();
    let options = Options { auto_compaction: false, ..gated(&fs, leveled(4, 20)) };
    let db = Db::open(dir.path(), options.clone()).unwrap();
    // Far more entries than one check interval, so the job is stopped mid-way.
    for part in 0..4 {
        put_range(&db, "a", part * 10_000..(part + 1) * 10_000);
        db.flush().unwrap();
    }
    let tables = db.stats().unwrap().levels[0].tables;

    fs.arm();
    let compacting = db.clone();
    let compaction = std::thread::spawn(move || compacting.compact());
    fs.wait_until_blocked();
    let closing = db.clone();
    let close = std::thread::spawn(move || closing.close());
    // close() has begun (it waits for the job); let the job go on into the cancel.
    while !matches!(db.put("x", "y"), Err(Error::Closed)) {
        std::thread::sleep(Duration::from_millis(1));
    }
    fs.release();
    close.join().unwrap().unwrap();
    assert!(
        matches!(compaction.join().unwrap(), Err(Error::Closed)),
        "the compaction ran to its end after close()"
    );

    let names = common::file_names(dir.path());
    assert!(!names.iter().any(|n| n.ends_with(".tmp")), "a cancelled output is left: {names:?}");
    let db = Db::open(dir.path(), options).unwrap();
    assert_eq!(db.stats().unwrap().levels[0].tables, tables, "the cancelled job installed");
    for i in (0..40_000).step_by(97) {
        let mut k = b"a".to_vec();
        k.extend(key(i));
        assert_eq!(db.get(&k).unwrap().as_deref(), Some(&value(i, 1)[..]));
    }
    db.close().unwrap();
}

/// Regression: an iterator that outlived `close()` deleted, when dropped, the file of
/// a table a compaction had replaced. By then the directory may hold another
/// database (here: deleted and created anew, so its file numbers start over), and
/// that file was the new database's.
#[test]
fn an_iterator_outliving_close_deletes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let options = Options { auto_compaction: false, sync_writes: false, ..Options::default() };
    let db = Db::open(&path, options.clone()).unwrap();
    for part in 0..3 {
        put_range(&db, "a", part * 100..(part + 1) * 100);
        db.flush().unwrap();
    }
    let held = db.iter().unwrap();
    db.compact().unwrap();
    let replaced: Vec<String> = common::file_names(&path);
    db.close().unwrap();

    std::fs::remove_dir_all(&path).unwrap();
    let db = Db::open(&path, options.clone()).unwrap();
    for part in 0..6 {
        put_range(&db, "b", part * 100..(part + 1) * 100);
        db.flush().unwrap();
    }
    let reused = common::file_names(&path).into_iter().filter(|n| replaced.contains(n));
    assert!(reused.filter(|n| n.ends_with(".sst")).count() > 0, "no table number was reused");
    drop(held);
    db.close().unwrap();

    let db = Db::open(&path, options).unwrap();
    assert_eq!(db.iter().unwrap().count(), 600);
    db.close().unwrap();
}
