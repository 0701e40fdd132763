//! Thousands of tables under a low descriptor limit (`ulimit -n 256`).
//!
//! Every table used to keep its file open, so past the process's descriptor limit the
//! next WAL segment or table could not be created: writes stopped, `compact()` was
//! refused, and a reopen under the same limit could not take a write. With the table
//! cache the database holds at most `max_open_files` table descriptors and retries an
//! `EMFILE` after closing some of them; here `max_open_files` (512 by default) is
//! *above* the limit, so the retry is what keeps the database going.
//!
//! The limit applies to the whole process and cargo runs the tests of one file as
//! threads of one process, so this file holds a single test.

mod common;

use std::ops::Range;
use std::path::Path;

use aeternusdb::{CompactionStrategyOptions, Db, LeveledOptions, Options};
use common::key;
use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};

/// The soft descriptor limit the test runs under.
const DESCRIPTOR_LIMIT: u64 = 256;
/// Tables flushed before the first compaction: past the limit, where the next WAL
/// segment could not be created.
const FLUSHED_TABLES: u32 = 300;
/// Keys per flush (sequential, so flushed tables do not overlap).
const KEYS_PER_FLUSH: u32 = 7;
/// Every key; compaction writes one table per key (see [`options`]).
const KEYS: u32 = FLUSHED_TABLES * KEYS_PER_FLUSH;

fn value(i: u32, round: u32) -> String {
    format!("value-{i}-round-{round}")
}

/// Tables accumulate: only `compact()` merges them, and it cuts its output after every
/// key, so thousands of tables cost one fsync each instead of a flush each.
fn options() -> Options {
    Options {
        write_buffer_size: 4 << 10,
        sync_writes: false,
        auto_compaction: false,
        compaction: CompactionStrategyOptions::Leveled(LeveledOptions {
            target_file_size: 1,
            ..LeveledOptions::default()
        }),
        ..Options::default()
    }
}

/// Writes the keys in `keys` with `round`'s values, flushing every `KEYS_PER_FLUSH`.
fn write(db: &Db, keys: Range<u32>, round: u32) {
    for i in keys {
        db.put(key(i), value(i, round)).unwrap_or_else(|e| panic!("put {i}: {e}"));
        if (i + 1) % KEYS_PER_FLUSH == 0 {
            db.flush().unwrap_or_else(|e| panic!("flush after key {i}: {e}"));
        }
    }
}

/// Checks that key `i` holds the value of the last round that wrote it: round `r`
/// rewrote the keys below `KEYS >> r` (round 0 wrote them all).
fn check(db: &Db, rounds: u32) {
    for i in 0..KEYS {
        let round = (0..rounds).rev().find(|r| i < KEYS >> r).unwrap_or(0);
        let got = db.get(key(i)).unwrap_or_else(|e| panic!("get {i}: {e}"));
        assert_eq!(got.as_deref(), Some(value(i, round).as_bytes()), "key {i}");
    }
}

fn table_count(db: &Db) -> usize {
    db.stats().unwrap().sstables
}

fn open(dir: &Path) -> Db {
    Db::open(dir, options()).unwrap_or_else(|e| panic!("open: {e}"))
}

#[test]
fn thousands_of_tables_keep_working_under_a_low_descriptor_limit() {
    let hard = getrlimit(Resource::Nofile).maximum;
    setrlimit(Resource::Nofile, Rlimit { current: Some(DESCRIPTOR_LIMIT), maximum: hard }).unwrap();
    // The test is about descriptors, not durability: on tmpfs, where fsync is free, it
    // takes seconds instead of a minute of thousands of table and directory fsyncs.
    let shm = Path::new("/dev/shm");
    let dir = if shm.is_dir() { tempfile::tempdir_in(shm) } else { tempfile::tempdir() };
    let dir = dir.unwrap();

    let db = open(dir.path());
    write(&db, 0..KEYS, 0);
    assert!(table_count(&db) >= FLUSHED_TABLES as usize);
    check(&db, 1);
    db.compact().unwrap_or_else(|e| panic!("compact: {e}"));
    assert!(table_count(&db) >= KEYS as usize);
    check(&db, 1);
    let open_tables = db.stats().unwrap().open_table_files;
    assert!((1..DESCRIPTOR_LIMIT as usize).contains(&open_tables), "{open_tables}");

    // More writes on top of thousands of tables, then a reopen that opens them all.
    write(&db, 0..KEYS >> 1, 1);
    check(&db, 2);
    db.close().unwrap();
    let db = open(dir.path());
    assert!(table_count(&db) > KEYS as usize);
    check(&db, 2);

    // The reopened database takes writes and compacts.
    write(&db, 0..KEYS >> 2, 2);
    db.compact_range(key(0), key(KEYS >> 3)).unwrap_or_else(|e| panic!("compact_range: {e}"));
    check(&db, 3);
    db.close().unwrap();

    let db = open(dir.path());
    check(&db, 3);
    db.put("after", "reopen").unwrap();
    db.flush().unwrap();
    assert_eq!(db.get("after").unwrap().as_deref(), Some(&b"reopen"[..]));
    db.close().unwrap();
}
