//! A database whose disk filled up, on a real filesystem: a 24 MiB tmpfs, mounted
//! by each test (skipped, with a message, where mounting is not permitted). Writes
//! fail with `Error::NoSpace` and resume once space is freed; a reopen works too.
//!
//! Regression (issue 8, item 6): recovery cut the torn tail a failed write leaves by
//! copying the valid part of the segment to a `.tmp` file. On a full disk the copy
//! failed, the `.tmp` stayed behind and ate whatever space had been freed, and every
//! retry failed the same way: with 4 MiB freed the database never reopened.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use aeternusdb::{Db, Error, Options, WriteBatch, WriteOptions};
use common::key;

const FILLER_LEN: usize = 4 << 20;

/// A tmpfs mounted for the life of the value, unmounted when it is dropped (also when
/// the test fails).
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    /// Mounts a tmpfs of `size` (as `mount -o size=` takes it), or `None` if this
    /// process may not mount.
    fn mount(size: &str) -> Option<Tmpfs> {
        let dir = tempfile::tempdir().unwrap();
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .stderr(std::process::Stdio::null())
            .status();
        match status {
            Ok(s) if s.success() => Some(Tmpfs { dir }),
            _ => None,
        }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let unmounted = Command::new("umount").arg(self.dir.path()).status();
        if !unmounted.is_ok_and(|s| s.success()) {
            // Busy (a handle leaked by a failed assertion): detach it instead.
            let _ = Command::new("umount").arg("-l").arg(self.dir.path()).status();
        }
    }
}

fn value(i: u32) -> Vec<u8> {
    let mut v = format!("value {i} ").into_bytes();
    v.resize(3000 + (i % 7) as usize * 500, b'a' + (i % 26) as u8);
    v
}

/// A 24 MiB tmpfs holding a 4 MiB filler file, and the database directory to use on
/// it; `None` (with a message) where this process may not mount.
fn small_disk() -> Option<(Tmpfs, PathBuf, PathBuf)> {
    let Some(tmpfs) = Tmpfs::mount("24m") else {
        println!("skipped: cannot mount a tmpfs here (needs root or CAP_SYS_ADMIN)");
        return None;
    };
    let dir = tmpfs.path().join("db");
    let filler = tmpfs.path().join("filler");
    std::fs::write(&filler, vec![1u8; FILLER_LEN]).unwrap();
    Some((tmpfs, dir, filler))
}

/// Puts `key = value` and syncs the WAL before returning.
fn put_synced(db: &Db, key: impl AsRef<[u8]>, value: impl AsRef<[u8]>) -> aeternusdb::Result<()> {
    let mut batch = WriteBatch::new();
    batch.put(key, value)?;
    db.write_with(&batch, WriteOptions { sync: true })
}

fn is_no_space(error: &Error) -> bool {
    matches!(error, Error::NoSpace { .. })
}

/// Writes synced values (`value(i)`) from `first` until one fails; returns the first
/// that failed and its error.
fn fill(db: &Db, first: u32, value: impl Fn(u32) -> Vec<u8>) -> (u32, Error) {
    let mut i = first;
    loop {
        match put_synced(db, key(i), value(i)) {
            Ok(()) => i += 1,
            Err(e) => return (i, e),
        }
        assert!(i < 100_000, "the disk never filled up");
    }
}

/// Fills a small tmpfs with synced writes until one fails for lack of space, frees
/// 4 MiB by removing a filler file beside the database, and checks that the database
/// reopens, holds every acknowledged write and takes new ones.
#[test]
fn reopens_after_the_disk_filled_up() {
    let Some((_disk, dir, filler)) = small_disk() else { return };

    let db = Db::open(&dir, Options::default()).unwrap();
    let (acked, error) = fill(&db, 0, value);
    assert!(is_no_space(&error), "the write failed for another reason: {error}");
    assert!(acked > 1000, "only {acked} writes fit");
    let _ = db.close();
    drop(db);

    // Reopening on the full disk may fail, but must not make things worse.
    let _ = Db::open(&dir, Options::default()).map(|db| db.close());
    std::fs::remove_file(&filler).unwrap();

    let db = Db::open(&dir, Options::default())
        .unwrap_or_else(|e| panic!("reopen with 4 MiB free failed: {e}"));
    for i in (0..acked).rev() {
        let got = db.get(key(i)).unwrap();
        assert_eq!(got.as_deref(), Some(&value(i)[..]), "acknowledged write {i} of {acked}");
    }
    put_synced(&db, "after", "the disk filled up").unwrap();
    db.close().unwrap();
    let db = Db::open(&dir, Options::default()).unwrap();
    assert_eq!(db.get("after").unwrap().as_deref(), Some(&b"the disk filled up"[..]));
    assert_eq!(db.get(key(acked - 1)).unwrap().as_deref(), Some(&value(acked - 1)[..]));
    db.close().unwrap();
}

/// A full disk is a soft error on a real filesystem too: writes fail with
/// `Error::NoSpace`, reads go on, and once space is freed writes resume in the same
/// instance, with flushes (a 1 MiB write buffer) and compactions on the way; the
/// values are incompressible, so the tables fill the disk too.
#[test]
fn writes_resume_without_a_reopen_once_space_is_freed() {
    let Some((_disk, dir, filler)) = small_disk() else { return };
    let options = Options { write_buffer_size: 1 << 20, ..Options::default() };

    let db = Db::open(&dir, options.clone()).unwrap();
    let (acked, error) = fill(&db, 0, noisy);
    assert!(is_no_space(&error), "the write failed for another reason: {error}");
    for i in (0..acked).step_by(7) {
        assert_eq!(db.get(key(i)).unwrap().as_deref(), Some(&noisy(i)[..]), "key {i}");
    }

    std::fs::remove_file(&filler).unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while let Err(e) = put_synced(&db, key(acked), noisy(acked)) {
        assert!(is_no_space(&e), "{e}");
        assert!(std::time::Instant::now() < deadline, "writes did not resume: {e}");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    for i in acked + 1..acked + 100 {
        put_synced(&db, key(i), noisy(i)).unwrap();
    }
    db.close().unwrap();
    let db = Db::open(&dir, options).unwrap();
    for i in 0..acked + 100 {
        assert_eq!(db.get(key(i)).unwrap().as_deref(), Some(&noisy(i)[..]), "key {i}");
    }
    db.close().unwrap();
}

fn noisy(i: u32) -> Vec<u8> {
    common::noise(u64::from(i), 3000)
}
