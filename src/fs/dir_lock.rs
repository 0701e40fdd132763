//! The `LOCK` file lock of [`OsFs`](super::OsFs): one open database per directory,
//! across threads and processes.
//!
//! On Linux it is a POSIX record lock (`fcntl(F_SETLK)`) over the whole file, as
//! RocksDB takes it, and not an `flock` (std's `File::try_lock`): an `flock` belongs to
//! the open file description, which a child process shares from `fork` until its `exec`
//! closes the copy, so a database closed and reopened while another thread was starting
//! a process found its own directory locked. A record lock belongs to the process and
//! is not inherited.
//!
//! Record locks have two pitfalls, which this module owns:
//! - they never conflict within one process, so a registry of the files locked here
//!   (by device and inode) refuses a second lock in this process;
//! - closing *any* descriptor of the file drops the process's lock, so a file this
//!   process has locked is never opened again (the registry is consulted by path,
//!   before opening), and a holder closes its descriptor before it leaves the registry,
//!   both under the registry's mutex.
//!
//! Record locks and `flock`s do not see each other: an older build of the engine
//! (which used `flock`) is not kept out by this lock, nor keeps it out.
//!
//! Elsewhere the lock is std's `flock`, with the caveat above.

use std::fs::{File, OpenOptions};
use std::io;
use std::path::Path;

use super::FileLock;

/// Opens (creating) the lock file without truncating it.
fn open(path: &Path) -> io::Result<File> {
    OpenOptions::new().read(true).write(true).create(true).truncate(false).open(path)
}

#[cfg(target_os = "linux")]
mod imp {
    use std::collections::BTreeSet;
    use std::fs::File;
    use std::io;
    use std::os::unix::fs::MetadataExt;
    use std::path::Path;

    use parking_lot::Mutex;
    use rustix::fs::{FlockOperation, fcntl_lock};
    use rustix::io::Errno;

    use crate::fs::FileLock;

    /// The files this process holds record locks on, by device and inode.
    static LOCKED: Mutex<BTreeSet<(u64, u64)>> = Mutex::new(BTreeSet::new());

    /// A record lock on a file, released when dropped.
    struct RecordLock {
        file: Option<File>,
        id: (u64, u64),
    }

    impl FileLock for RecordLock {}

    impl Drop for RecordLock {
        fn drop(&mut self) {
            let mut locked = LOCKED.lock();
            // Closing the descriptor releases the lock; only then may another thread
            // of this process open the file.
            drop(self.file.take());
            locked.remove(&self.id);
        }
    }

    pub(super) fn try_lock(path: &Path) -> io::Result<Option<Box<dyn FileLock>>> {
        let mut locked = LOCKED.lock();
        if let Ok(meta) = std::fs::metadata(path)
            && locked.contains(&(meta.dev(), meta.ino()))
        {
            return Ok(None);
        }
        let file = super::open(path)?;
        let meta = file.metadata()?;
        let id = (meta.dev(), meta.ino());
        if locked.contains(&id) {
            // The path was swapped for a locked file between the two looks (not under
            // our mutex: another process renamed it). Closing this descriptor would
            // drop that lock, so it stays open.
            std::mem::forget(file);
            return Ok(None);
        }
        match fcntl_lock(&file, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => {
                locked.insert(id);
                Ok(Some(Box::new(RecordLock { file: Some(file), id })))
            }
            // Another process holds it (POSIX allows either code).
            Err(e) if e == Errno::AGAIN || e == Errno::ACCESS => Ok(None),
            Err(e) => Err(e.into()),
        }
    }
}

#[cfg(not(target_os = "linux"))]
mod imp {
    use std::fs::{File, TryLockError};
    use std::io;
    use std::path::Path;

    use crate::fs::FileLock;

    struct Flock {
        _file: File,
    }

    impl FileLock for Flock {}

    pub(super) fn try_lock(path: &Path) -> io::Result<Option<Box<dyn FileLock>>> {
        let file = super::open(path)?;
        match file.try_lock() {
            Ok(()) => Ok(Some(Box::new(Flock { _file: file }))),
            Err(TryLockError::WouldBlock) => Ok(None),
            Err(TryLockError::Error(e)) => Err(e),
        }
    }
}

/// Takes the lock on `path` (creating the file), or `Ok(None)` if a database in this
/// process or another holds it.
pub(super) fn try_lock(path: &Path) -> io::Result<Option<Box<dyn FileLock>>> {
    imp::try_lock(path)
}
