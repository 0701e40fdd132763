use aeternusdb::{Db, Options};

#[test]
fn puts_deletes_and_range_deletes_read_back_after_flush_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let options = Options { write_buffer_size: 64 << 10, ..Options::default() };
    let db = Db::open(dir.path(), options.clone()).unwrap();
    for i in 0..5000u32 {
        db.put(format!("key{i:05}"), format!("value{i}")).unwrap();
    }
    db.delete("key00007").unwrap();
    db.delete_range("key00100", "key00200").unwrap();
    db.flush().unwrap();
    assert_eq!(db.get("key00042").unwrap().unwrap(), "value42");
    assert!(db.get("key00007").unwrap().is_none());
    assert!(db.get("key00150").unwrap().is_none());
    assert_eq!(db.iter().unwrap().count(), 5000 - 1 - 100);
    assert_eq!(db.iter().unwrap().rev().count(), 5000 - 1 - 100);
    let stats = db.stats().unwrap();
    assert!(stats.flushes > 1, "{stats:?}");
    db.close().unwrap();
    let db = Db::open(dir.path(), options).unwrap();
    assert_eq!(db.get("key04999").unwrap().unwrap(), "value4999");
    assert!(db.get("key00150").unwrap().is_none());
    assert_eq!(db.iter().unwrap().count(), 5000 - 1 - 100);
}
