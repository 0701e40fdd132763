//! The block cache and the memtables share one budget: the cache borrows what the
//! memtables leave of the write buffer and gives it back as writes fill them.

mod common;

use aeternusdb::{Db, Options};
use common::{key, value};

const WRITE_BUFFER: usize = 1 << 20;
const CACHE: usize = 1 << 20;

fn open(dir: &std::path::Path) -> Db {
    let options = Options {
        write_buffer_size: WRITE_BUFFER,
        block_cache_size: CACHE,
        sync_writes: false,
        ..Options::default()
    };
    Db::open(dir, options).unwrap()
}

#[test]
fn the_cache_borrows_the_write_buffer_the_memtables_leave_unused() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path());
    let capacity = || db.stats().unwrap().block_cache_capacity as usize;
    assert_eq!(capacity(), CACHE + WRITE_BUFFER, "an empty database lends the whole buffer");

    // About half a write buffer of entries: the cache gives that much back.
    let mut i = 0;
    while db.stats().unwrap().active_memtable_bytes < WRITE_BUFFER as u64 / 2 {
        db.put(key(i), value(i, 0)).unwrap();
        i += 1;
    }
    let held = db.stats().unwrap().active_memtable_bytes as usize;
    assert!(capacity() + held <= CACHE + WRITE_BUFFER, "{} + {held}", capacity());
    assert!(capacity() >= CACHE + WRITE_BUFFER / 2 - WRITE_BUFFER / 8, "{}", capacity());

    // Once flushed, the memtable's room is lent again, and reads fill it.
    db.flush().unwrap();
    assert_eq!(capacity(), CACHE + WRITE_BUFFER);
    for j in 0..i {
        assert_eq!(db.get(key(j)).unwrap().unwrap(), value(j, 0));
    }
    let stats = db.stats().unwrap();
    assert!(stats.block_cache_bytes > 0 && stats.block_cache_bytes <= stats.block_cache_capacity);
    db.close().unwrap();
}

#[test]
fn full_memtables_leave_the_cache_its_own_size() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path());
    for round in 0..3 {
        for i in 0..20_000 {
            db.put(key(i), value(i, round)).unwrap();
        }
        let stats = db.stats().unwrap();
        assert!(stats.block_cache_capacity >= CACHE as u64, "{stats:?}");
        assert!(stats.block_cache_bytes <= stats.block_cache_capacity, "{stats:?}");
    }
    db.close().unwrap();
}
