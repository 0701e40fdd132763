//! Values returned by `Db::get` do not keep the memory they were read from alive: a
//! small value is an allocation of its own, whether it came from a memtable (1 MiB
//! arena chunks) or a table (blocks), and holding many of them while the database is
//! overwritten, flushed and compacted pins nothing else. A large value is still
//! handed out without a copy.

mod common;

use aeternusdb::{Db, Options};
use bytes::Bytes;
use common::key;

const KEYS: u32 = 10_000;

/// About 100 bytes, different in each round.
fn value(i: u32, round: u32) -> Vec<u8> {
    format!("value-{round}-{i:06}-").repeat(6).into_bytes()
}

/// Panics unless `held` is an allocation of its own, exactly its size: nothing else
/// (the database, other values) refers to its memory, and it has no spare tail.
fn assert_own_allocation(held: Bytes, what: &str) {
    let len = held.len();
    match held.try_into_mut() {
        Ok(own) => assert_eq!(own.capacity(), len, "{what}: spare capacity"),
        Err(_) => panic!("{what}: a value of {len} bytes shares memory"),
    }
}

fn get_all(db: &Db, round: u32) -> Vec<Bytes> {
    (0..KEYS)
        .map(|i| {
            let got = db.get(key(i)).unwrap().unwrap();
            assert_eq!(got, value(i, round));
            got
        })
        .collect()
}

#[test]
fn held_small_values_pin_no_chunk_or_block() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path(), Options { sync_writes: false, ..Options::default() }).unwrap();
    for i in 0..KEYS {
        db.put(key(i), value(i, 0)).unwrap();
    }
    let from_memtable = get_all(&db, 0);
    db.flush().unwrap();
    let from_tables = get_all(&db, 0);
    // Overwrite, flush and compact while the values are held: the memtable that held
    // them and the tables they were read from go away.
    for i in 0..KEYS {
        db.put(key(i), value(i, 1)).unwrap();
    }
    db.compact().unwrap();
    let after_compaction = get_all(&db, 1);
    db.close().unwrap();
    for (i, held) in (0..).zip(from_memtable) {
        assert_eq!(held, value(i, 0));
        assert_own_allocation(held, &format!("memtable value {i}"));
    }
    for (i, held) in from_tables.into_iter().chain(after_compaction).enumerate() {
        assert_own_allocation(held, &format!("table value {i}"));
    }
}

#[test]
fn a_large_value_is_handed_out_without_a_copy() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path(), Options::default()).unwrap();
    let large = vec![7u8; 1 << 20];
    db.put("large", &large).unwrap();
    let (a, b) = (db.get("large").unwrap().unwrap(), db.get("large").unwrap().unwrap());
    assert_eq!(a, large);
    // Both slice the memtable's memory.
    assert_eq!(a.as_ptr(), b.as_ptr());
    db.flush().unwrap();
    let from_table = db.get("large").unwrap().unwrap();
    assert_eq!(from_table, large);
    // The block cache holds the block too: the value is a slice of it.
    assert_eq!(from_table.as_ptr(), db.get("large").unwrap().unwrap().as_ptr());
    db.close().unwrap();
}
