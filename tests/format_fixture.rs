//! A pinned format: a small database directory written by this version of the engine
//! (WAL, manifest and SSTable format version 1) is checked in under
//! `tests/fixtures/format-v1/`, and opening a copy of it must give back exactly what
//! [`write_rules`] wrote. A change that makes it unreadable, or read differently, is a
//! format change, and must be a conscious one (docs/format.md, "How versions work").
//!
//! # What the fixture holds
//! [`write_rules`] states it, step by step; in short, with `sync_writes` on and no
//! background compaction:
//! - one table on the last level: keys 0..300 (version 1), written by `compact()`;
//! - two level-0 tables: the first with keys 150..250 overwritten (version 2), a point
//!   delete and a range tombstone, the second with new keys 300..400 and an empty value;
//! - unflushed writes in the WAL: overwrites, a point delete, a range tombstone with a
//!   put inside its range after it, and one batch of several operations in one record.
//!
//! # Regenerating it
//! Only when these rules change, never to make a format change pass: a new format
//! version gets a fixture of its own beside this one, which readers must go on
//! accepting. The command rewrites `tests/fixtures/format-v1/` in place:
//! ```text
//! cargo test --test format_fixture -- --ignored --exact write_fixture
//! ```

mod common;

use std::path::{Path, PathBuf};

use aeternusdb::{Db, Options, WriteBatch};
use common::{Model, collect, format_v1_key as key};

/// The checked-in directory.
fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/format-v1")
}

/// The value of key `i` in version `version`, as the fixture holds it: like
/// [`common::format_v1_key`], this never changes.
fn value(i: u32, version: u32) -> Vec<u8> {
    format!("value-{i}-v{version}").into_bytes()
}

/// Something the rules are applied to: the database that writes the fixture, or the
/// model that says what it must hold.
trait Target {
    fn put(&mut self, key: &[u8], value: &[u8]);
    fn delete(&mut self, key: &[u8]);
    fn delete_range(&mut self, start: &[u8], end: &[u8]);
    /// Puts every pair in one batch (one WAL record).
    fn put_batch(&mut self, pairs: &[(Vec<u8>, Vec<u8>)]);
    /// `Db::flush`: the memtable becomes a level-0 table.
    fn flush(&mut self);
    /// `Db::compact`: every table moves to the last level as one table.
    fn compact(&mut self);
}

/// What the fixture holds, in the order it was written.
fn write_rules(target: &mut impl Target) {
    // The last level: keys 0..300, then `compact()` (which flushes first).
    for i in 0..300 {
        target.put(&key(i), &value(i, 1));
    }
    target.compact();

    // The first level-0 table: overwrites, a point delete, a range tombstone.
    for i in 150..250 {
        target.put(&key(i), &value(i, 2));
    }
    target.delete(&key(7));
    target.delete_range(&key(100), &key(120));
    target.flush();

    // The second level-0 table: new keys, and an empty value (not a delete).
    for i in 300..400 {
        target.put(&key(i), &value(i, 1));
    }
    target.put(&key(1000), b"");
    target.flush();

    // Only in the WAL.
    for i in 50..60 {
        target.put(&key(i), &value(i, 3));
    }
    target.delete(&key(2));
    target.delete_range(&key(380), &key(390));
    target.put(&key(385), &value(385, 4));
    let batch: Vec<(Vec<u8>, Vec<u8>)> = (400..405).map(|i| (key(i), value(i, 1))).collect();
    target.put_batch(&batch);
}

/// The model, counting the operations (each takes one seqno).
#[derive(Default)]
struct Expected {
    model: Model,
    operations: u64,
}

impl Target for Expected {
    fn put(&mut self, key: &[u8], value: &[u8]) {
        self.model.put(key, value);
        self.operations += 1;
    }
    fn delete(&mut self, key: &[u8]) {
        self.model.delete(key);
        self.operations += 1;
    }
    fn delete_range(&mut self, start: &[u8], end: &[u8]) {
        self.model.delete_range(start, end);
        self.operations += 1;
    }
    fn put_batch(&mut self, pairs: &[(Vec<u8>, Vec<u8>)]) {
        for (k, v) in pairs {
            self.put(k, v);
        }
    }
    fn flush(&mut self) {}
    fn compact(&mut self) {}
}

impl Target for Db {
    fn put(&mut self, key: &[u8], value: &[u8]) {
        Db::put(self, key, value).expect("put");
    }
    fn delete(&mut self, key: &[u8]) {
        Db::delete(self, key).expect("delete");
    }
    fn delete_range(&mut self, start: &[u8], end: &[u8]) {
        Db::delete_range(self, start, end).expect("delete_range");
    }
    fn put_batch(&mut self, pairs: &[(Vec<u8>, Vec<u8>)]) {
        let mut batch = WriteBatch::new();
        for (k, v) in pairs {
            batch.put(k, v).expect("batch put");
        }
        self.write(batch).expect("write");
    }
    fn flush(&mut self) {
        Db::flush(self).expect("flush");
    }
    fn compact(&mut self) {
        Db::compact(self).expect("compact");
    }
}

/// The fixture's options: the defaults (LZ4 blocks, bloom filters, leveled compaction),
/// synced writes, and no background compaction, so the tables stay where the rules put
/// them.
fn options() -> Options {
    Options { sync_writes: true, auto_compaction: false, ..Options::default() }
}

/// Writes the fixture (see the module doc for the command).
#[test]
#[ignore = "rewrites tests/fixtures/format-v1/; run only when the rules change"]
fn write_fixture() {
    let dir = fixture_dir();
    if dir.exists() {
        std::fs::remove_dir_all(&dir).expect("remove the old fixture");
    }
    let mut db = Db::open(&dir, options()).expect("create the fixture");
    write_rules(&mut db);
    db.close().expect("close");
}

/// Copies the fixture's files into a fresh directory (opening rewrites the directory).
fn copy_of_fixture() -> tempfile::TempDir {
    let copy = tempfile::tempdir().expect("tempdir");
    common::copy_files(&fixture_dir(), copy.path());
    copy
}

#[test]
fn the_checked_in_database_reads_back_exactly_what_was_written() {
    let mut expected = Expected::default();
    write_rules(&mut expected);
    let copy = copy_of_fixture();

    // What the rules promise about the directory.
    let names = common::file_names(copy.path());
    let count = |suffix: &str| names.iter().filter(|n| n.ends_with(suffix)).count();
    assert_eq!((count(".sst"), count(".wal")), (3, 1), "{names:?}");
    assert!(names.iter().any(|n| n == "CURRENT"), "{names:?}");

    let options = Options { create_if_missing: false, ..options() };
    let db = Db::open(copy.path(), options.clone()).expect("open the fixture");
    let stats = db.stats().expect("stats");
    assert_eq!(stats.levels[0].tables, 2, "{:?}", stats.levels);
    assert_eq!(stats.levels.iter().skip(1).map(|l| l.tables).sum::<usize>(), 1);
    assert!(stats.active_memtable_bytes > 0, "the WAL held unflushed writes");
    assert_eq!(db.last_seqno(), expected.operations);
    assert_eq!(collect(db.iter().expect("iter")), expected.model.all());
    db.close().expect("close");

    // What this open wrote (a new manifest and WAL segment) reads back the same.
    let db = Db::open(copy.path(), options).expect("reopen");
    assert_eq!(collect(db.iter().expect("iter")), expected.model.all());
    assert_eq!(db.last_seqno(), expected.operations);
}
