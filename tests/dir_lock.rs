//! The directory lock on the real filesystem: one open database per directory,
//! across threads and processes, and no lock held by a child process.

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use aeternusdb::{Db, Error, Options};

const ENV_DIR: &str = "AETERNUS_LOCK_DIR";

/// The child: tries to open the database named by the environment; exit status 0 if
/// it opened, 10 if it was locked.
#[test]
#[ignore = "the child process of the lock tests; runs only when they start it"]
fn child_opens() {
    let Ok(dir) = std::env::var(ENV_DIR) else { return };
    match Db::open(&dir, Options::default()) {
        Ok(db) => {
            db.close().unwrap();
            std::process::exit(0)
        }
        Err(Error::Locked(_)) => std::process::exit(10),
        Err(e) => panic!("open: {e}"),
    }
}

/// Whether another process can open the database in `dir` now.
fn another_process_opens(dir: &Path) -> bool {
    let status = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child_opens", "--ignored", "--quiet", "--test-threads=1"])
        .env(ENV_DIR, dir)
        .status()
        .unwrap();
    match status.code() {
        Some(0) => true,
        Some(10) => false,
        _ => panic!("the child failed: {status}"),
    }
}

#[test]
fn an_open_database_is_locked_for_other_processes_and_this_one() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path(), Options::default()).unwrap();
    assert!(!another_process_opens(dir.path()));
    // A second open in this process is refused, and (a record lock's pitfall) the
    // refusal does not release the first open's lock.
    assert!(matches!(Db::open(dir.path(), Options::default()), Err(Error::Locked(_))));
    assert!(!another_process_opens(dir.path()));
    db.close().unwrap();
    assert!(another_process_opens(dir.path()));
    // Closed, this process opens it again.
    Db::open(dir.path(), Options::default()).unwrap().close().unwrap();
}

/// Regression (issue 9): the lock was an `flock`, which a child process shares from
/// `fork` until its `exec`, so a database closed and reopened while another thread was
/// starting a process (the tmpfs `mount` of tests/disk_full.rs) was now and then
/// `Locked`. Here the child sleeps between fork and exec, holding copies of every
/// descriptor, while the database is closed and reopened.
#[test]
fn a_process_being_started_does_not_hold_the_lock() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path(), Options::default()).unwrap();
    let spawner = std::thread::spawn(|| {
        let mut command = Command::new("true");
        // SAFETY: the closure runs in the forked child before exec and only sleeps
        // (`nanosleep`, async-signal-safe); it touches no lock or allocation.
        unsafe {
            command.pre_exec(|| {
                std::thread::sleep(Duration::from_millis(500));
                Ok(())
            });
        }
        command.status().unwrap()
    });
    // The child is forked and asleep by now, with a copy of the LOCK descriptor.
    std::thread::sleep(Duration::from_millis(150));
    db.close().unwrap();
    drop(db);
    let reopened = Db::open(dir.path(), Options::default());
    assert!(reopened.is_ok(), "reopen while a child was being started: {:?}", reopened.err());
    reopened.unwrap().close().unwrap();
    assert!(spawner.join().unwrap().success());
}
