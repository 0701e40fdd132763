//! Public-API behaviours: argument limits, options, open modes, close, drop without
//! close, the directory lock (in this process and from another one), stats, error
//! messages, and snapshot isolation.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command, Stdio};

use aeternusdb::{Db, Error, Options, WriteBatch, WriteOptions};
use aeternusdb::{MAX_KEY_SIZE, MAX_VALUE_SIZE};

fn small() -> Options {
    Options { write_buffer_size: 4 << 10, block_size: 256, ..Options::default() }
}

fn all(db: &Db) -> Vec<(Vec<u8>, Vec<u8>)> {
    db.iter().unwrap().map(|r| r.map(|(k, v)| (k.to_vec(), v.to_vec())).unwrap()).collect()
}

fn is_invalid<T: std::fmt::Debug>(r: aeternusdb::Result<T>) -> bool {
    matches!(r, Err(Error::InvalidArgument(_)))
}

#[test]
fn empty_keys_and_values_work_and_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path(), small()).unwrap();
    db.put("", "empty key").unwrap();
    db.put("k", "").unwrap();
    assert_eq!(db.get("").unwrap().as_deref(), Some(&b"empty key"[..]));
    assert_eq!(db.get("k").unwrap().as_deref(), Some(&b""[..]));
    db.flush().unwrap();
    db.close().unwrap();
    let db = Db::open(dir.path(), small()).unwrap();
    assert_eq!(all(&db), vec![(b"".to_vec(), b"empty key".to_vec()), (b"k".to_vec(), vec![])]);
    db.delete("").unwrap();
    assert_eq!(db.get("").unwrap(), None);
}

#[test]
fn key_size_limit_is_exact_and_nothing_is_written_past_it() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path(), small()).unwrap();
    let max = vec![b'k'; MAX_KEY_SIZE];
    db.put(&max, "v").unwrap();
    assert_eq!(db.get(&max).unwrap().as_deref(), Some(&b"v"[..]));
    let seqno = db.last_seqno();
    let over = vec![b'k'; MAX_KEY_SIZE + 1];
    assert!(is_invalid(db.put(&over, "v")));
    assert!(is_invalid(db.delete(&over)));
    assert!(is_invalid(db.delete_range("a", &over)));
    assert!(is_invalid(WriteBatch::new().put(&over, "v").map(|_| ())));
    assert_eq!(db.last_seqno(), seqno, "a refused write takes no seqno");
    assert_eq!(db.get(&over).unwrap(), None);
    db.flush().unwrap();
    db.close().unwrap();
    let db = Db::open(dir.path(), small()).unwrap();
    assert_eq!(db.get(&max).unwrap().as_deref(), Some(&b"v"[..]));
    assert_eq!(all(&db).len(), 1);
}

#[test]
fn a_64_mib_value_round_trips_and_the_value_limit_is_invalid() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path(), Options::default()).unwrap();
    let big: Vec<u8> = (0..64u32 << 20).map(|i| (i % 251) as u8).collect();
    db.put("big", &big).unwrap();
    assert!(db.get("big").unwrap().unwrap() == big[..]);
    // Zeroed allocation: the pages are never touched, the limit check comes first.
    let over = vec![0u8; MAX_VALUE_SIZE + 1];
    let seqno = db.last_seqno();
    assert!(is_invalid(db.put("over", &over)));
    drop(over);
    assert_eq!(db.last_seqno(), seqno);
    db.close().unwrap();
    let db = Db::open(dir.path(), Options::default()).unwrap();
    assert!(db.get("big").unwrap().unwrap() == big[..], "after WAL replay");
    db.flush().unwrap();
    assert!(db.get("big").unwrap().unwrap() == big[..], "from an SSTable");
    assert_eq!(db.get("over").unwrap(), None);
}

#[test]
fn delete_range_is_half_open_refuses_inverted_bounds_and_skips_empty_ranges() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path(), small()).unwrap();
    for k in ["a", "b", "c"] {
        db.put(k, k).unwrap();
    }
    let seqno = db.last_seqno();
    assert!(is_invalid(db.delete_range("c", "a")));
    db.delete_range("b", "b").unwrap();
    assert_eq!(db.last_seqno(), seqno, "an empty range writes nothing");
    assert_eq!(all(&db).len(), 3);
    db.delete_range("a", "c").unwrap();
    assert_eq!(all(&db), vec![(b"c".to_vec(), b"c".to_vec())]);
}

#[test]
fn invalid_options_are_refused_before_touching_the_directory() {
    let bad = [
        Options { write_buffer_size: 1024, ..Options::default() },
        Options { max_frozen_memtables: 0, ..Options::default() },
        Options { block_size: 16, ..Options::default() },
        Options { bloom_bits_per_key: 65, ..Options::default() },
        Options { max_manifest_size: 10, ..Options::default() },
    ];
    for options in bad {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        assert!(is_invalid(Db::open(&path, options.clone())), "{options:?}");
        assert!(!path.exists(), "{options:?} created the directory");
    }
}

#[test]
fn without_create_if_missing_open_needs_a_database_and_error_if_exists_refuses_one() {
    let dir = tempfile::tempdir().unwrap();
    let no_create = Options { create_if_missing: false, ..small() };
    assert!(is_invalid(Db::open(dir.path(), no_create.clone())));
    assert!(std::fs::read_dir(dir.path()).unwrap().next().is_none(), "nothing created");
    let exclusive = Options { error_if_exists: true, ..small() };
    let db = Db::open(dir.path(), exclusive.clone()).unwrap();
    db.put("k", "v").unwrap();
    db.close().unwrap();
    assert!(is_invalid(Db::open(dir.path(), exclusive)));
    let db = Db::open(dir.path(), no_create).unwrap();
    assert_eq!(db.get("k").unwrap().as_deref(), Some(&b"v"[..]));
}

#[test]
fn close_makes_every_clone_closed_twice_is_fine_and_reopen_works() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path(), small()).unwrap();
    let clone = db.clone();
    db.put("k", "v").unwrap();
    clone.close().unwrap();
    for handle in [&db, &clone] {
        assert!(matches!(handle.get("k"), Err(Error::Closed)));
        assert!(matches!(handle.put("k", "w"), Err(Error::Closed)));
        assert!(matches!(handle.delete("k"), Err(Error::Closed)));
        assert!(matches!(handle.iter().map(|_| ()), Err(Error::Closed)));
        assert!(matches!(handle.snapshot().map(|_| ()), Err(Error::Closed)));
        assert!(matches!(handle.flush(), Err(Error::Closed)));
        assert!(matches!(handle.stats().map(|_| ()), Err(Error::Closed)));
    }
    db.close().unwrap();
    clone.close().unwrap();
    let db = Db::open(dir.path(), small()).unwrap();
    assert_eq!(db.get("k").unwrap().as_deref(), Some(&b"v"[..]));
}

#[test]
fn dropping_the_last_handle_without_close_loses_nothing() {
    for sync in [true, false] {
        let dir = tempfile::tempdir().unwrap();
        {
            let db = Db::open(dir.path(), small()).unwrap();
            let clone = db.clone();
            for i in 0..500u32 {
                let mut batch = WriteBatch::new();
                batch.put(format!("k{i:04}"), format!("v{i}")).unwrap();
                clone.write_with(&batch, WriteOptions { sync }).unwrap();
            }
            db.delete("k0007").unwrap();
        }
        let db = Db::open(dir.path(), small()).unwrap();
        let got = all(&db);
        assert_eq!(got.len(), 499, "sync {sync}");
        assert_eq!(db.get("k0499").unwrap().as_deref(), Some(&b"v499"[..]));
        assert_eq!(db.get("k0007").unwrap(), None);
    }
}

#[test]
fn second_open_in_this_process_is_locked() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path(), small()).unwrap();
    match Db::open(dir.path(), small()) {
        Err(Error::Locked(path)) => assert_eq!(path, dir.path()),
        other => panic!("expected Locked, got {other:?}"),
    }
    db.close().unwrap();
    Db::open(dir.path(), small()).unwrap().close().unwrap();
}

/// Run as a child process by `second_open_from_another_process_is_locked`: opens the
/// directory in `AETERNUS_LOCK_DIR`, says so, and holds it until stdin closes.
#[test]
#[ignore = "helper run as a child process"]
fn child_holds_lock() {
    let Ok(dir) = std::env::var("AETERNUS_LOCK_DIR") else { return };
    let db = Db::open(&dir, small()).unwrap();
    println!("OPENED");
    std::io::stdout().flush().unwrap();
    let mut rest = Vec::new();
    let _ = std::io::stdin().read_to_end(&mut rest);
    db.close().unwrap();
}

#[test]
fn second_open_from_another_process_is_locked() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child_holds_lock", "--ignored", "--nocapture", "--test-threads=1"])
        .env("AETERNUS_LOCK_DIR", dir.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let opened = lines.any(|line| line.unwrap().contains("OPENED"));
    assert!(opened, "the child opened the database");
    let result = Db::open(dir.path(), small());
    drop(child.stdin.take()); // lets the child close and exit
    assert!(child.wait().unwrap().success());
    assert!(matches!(result, Err(Error::Locked(_))), "{result:?}");
    Db::open(dir.path(), small()).unwrap().close().unwrap();
}

#[test]
fn stats_report_tables_and_growing_seqno() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path(), small()).unwrap();
    let before = db.stats().unwrap();
    assert_eq!(before.sstables, 0);
    db.put("a", "1").unwrap();
    let after_one = db.stats().unwrap().last_seqno;
    assert!(after_one > before.last_seqno);
    let mut batch = WriteBatch::new();
    batch.put("b", "2").unwrap().put("c", "3").unwrap();
    db.write(&batch).unwrap();
    assert_eq!(db.stats().unwrap().last_seqno, after_one + 2, "a batch takes one seqno per op");
    assert_eq!(db.stats().unwrap().user_bytes_written, 6, "keys and values of three puts");
    db.flush().unwrap();
    let stats = db.stats().unwrap();
    assert!(stats.sstables >= 1 && stats.sstable_bytes > 0, "{stats:?}");
    assert!(stats.flushes >= 1, "{stats:?}");
    assert_eq!(stats.last_seqno, db.last_seqno());
    let on_disk: u64 =
        std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().metadata().unwrap().len()).sum();
    assert_eq!(stats.disk_bytes, on_disk, "{stats:?}");
    assert!(stats.disk_bytes > stats.sstable_bytes, "WAL and manifest count too: {stats:?}");
}

#[test]
fn corruption_display_names_the_file_and_offset() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path(), small()).unwrap();
    db.put("k", "v").unwrap();
    db.close().unwrap();
    std::fs::write(dir.path().join("CURRENT"), "garbage\n").unwrap();
    let err = Db::open(dir.path(), small()).unwrap_err();
    let text = err.to_string();
    assert!(err.is_corruption(), "{err:?}");
    assert!(text.contains(&dir.path().join("CURRENT").display().to_string()), "{text}");
    assert!(text.contains("offset"), "{text}");
    let invalid = Db::open(dir.path(), Options { block_size: 1, ..small() }).unwrap_err();
    assert!(invalid.to_string().contains("block_size"), "{invalid}");
}

#[test]
fn snapshot_is_unaffected_by_later_writes_deletes_ranges_and_flush() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path(), small()).unwrap();
    for i in 0..200u32 {
        db.put(format!("k{i:03}"), format!("v{i}")).unwrap();
    }
    let snapshot = db.snapshot().unwrap();
    let before = all(&db);
    db.put("k000", "changed").unwrap();
    db.put("new", "x").unwrap();
    db.delete("k001").unwrap();
    db.delete_range("k100", "k200").unwrap();
    db.flush().unwrap();
    for i in 200..400u32 {
        db.put(format!("k{i:03}"), "later").unwrap();
    }
    db.flush().unwrap();
    let seen: Vec<_> = snapshot
        .iter()
        .unwrap()
        .map(|r| r.map(|(k, v)| (k.to_vec(), v.to_vec())).unwrap())
        .collect();
    assert_eq!(seen, before);
    assert_eq!(snapshot.get("k000").unwrap().as_deref(), Some(&b"v0"[..]));
    assert_eq!(snapshot.get("k150").unwrap().as_deref(), Some(&b"v150"[..]));
    assert_eq!(snapshot.get("new").unwrap(), None);
    assert_eq!(db.get("k150").unwrap(), None);
    assert_eq!(db.get("k000").unwrap().as_deref(), Some(&b"changed"[..]));
}

/// Writers racing `close()` get `Error::Closed`, never a background error, and a second,
/// concurrent `close()` returns only when the directory can be opened again.
#[test]
fn writers_racing_close_see_closed() {
    for round in 0..20 {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(dir.path(), small()).unwrap();
        let writers: Vec<_> = (0..3)
            .map(|t| {
                let db = db.clone();
                std::thread::spawn(move || {
                    for i in 0.. {
                        match db.put(format!("{t}-{i}"), "v") {
                            Ok(()) => {}
                            Err(Error::Closed) => return,
                            Err(other) => panic!("round {round}: a racing write got {other:?}"),
                        }
                    }
                })
            })
            .collect();
        std::thread::sleep(std::time::Duration::from_millis(5));
        let second = db.clone();
        let closer = std::thread::spawn(move || second.close().unwrap());
        db.close().unwrap();
        Db::open(dir.path(), small()).unwrap().close().unwrap_or_else(|e| panic!("{e}"));
        closer.join().unwrap();
        for w in writers {
            w.join().unwrap();
        }
    }
}

/// Opening a database many times for a few writes each (as a command-line tool does)
/// must not pile up WAL segments that every open replays: past a few, open flushes.
#[test]
fn many_short_opens_do_not_accumulate_wal_segments() {
    let dir = tempfile::tempdir().unwrap();
    for i in 0..30 {
        let db = Db::open(dir.path(), small()).unwrap();
        db.put(format!("k{i:02}"), "v").unwrap();
        db.close().unwrap();
        let segments = std::fs::read_dir(dir.path())
            .unwrap()
            .filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().ends_with(".wal"))
            .count();
        assert!(segments <= 10, "open {i}: {segments} WAL segments");
    }
    let db = Db::open(dir.path(), small()).unwrap();
    assert_eq!(all(&db).len(), 30);
}
