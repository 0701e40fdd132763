//! The filesystem seam: every byte the engine reads or writes goes through
//! [`FileSystem`].
//!
//! [`OsFs`] is the real implementation. [`FaultFs`] is an in-memory filesystem that
//! remembers what was synced, so tests can inject errors and simulate a power loss
//! (the idea of LevelDB's fault-injection env and Pebble's crashable memory FS).
//!
//! # Contract
//! - [`WritableFile::append`] hands bytes to the OS (a `write`), with no buffering in
//!   user space: once it returns, a process crash cannot lose them.
//! - [`WritableFile::sync`] makes the file's bytes durable; [`FileSystem::sync_dir`]
//!   makes creations, renames and removals in a directory durable. Until both have
//!   happened, a power loss may undo them.
//! - [`FileSystem::rename`] replaces the target atomically.
//! - [`FileSystem::set_len`] cuts a file in place and syncs it: the cut and the bytes
//!   before it are durable when it returns.

mod dir_lock;
mod fault;

pub use fault::{FaultFs, FaultKind};

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{self, Seek, Write};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;

/// File operations the engine needs, and nothing more.
pub trait FileSystem: Send + Sync + fmt::Debug + 'static {
    /// Creates `dir` and its parents if missing.
    fn create_dir_all(&self, dir: &Path) -> io::Result<()>;
    /// Creates `path` empty (truncating an existing file) for appending.
    fn create(&self, path: &Path) -> io::Result<Box<dyn WritableFile>>;
    /// Opens `path` for positional reads.
    fn open(&self, path: &Path) -> io::Result<Arc<dyn RandomAccessFile>>;
    /// Opens `path` for positional reads, promising that the file is not modified,
    /// renamed over or removed while the handle lives (a table). That lets an
    /// implementation close the descriptor while the handle is idle and reopen `path`
    /// on the next read, as the database's table cache does. Defaults to [`open`].
    ///
    /// [`open`]: FileSystem::open
    fn open_immutable(&self, path: &Path) -> io::Result<Arc<dyn RandomAccessFile>> {
        self.open(path)
    }
    /// Atomically renames `from` to `to`, replacing `to`.
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Removes a file.
    fn remove_file(&self, path: &Path) -> io::Result<()>;
    /// The names of the files in `dir`.
    fn list_dir(&self, dir: &Path) -> io::Result<Vec<String>>;
    /// Makes the directory's entries durable.
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;
    /// Cuts the file at `path` to its first `len` bytes in place and makes the file
    /// durable (its bytes and new length), creating nothing: recovery cuts a torn WAL
    /// tail this way, which works on a full disk. A `len` past the end is
    /// `InvalidInput`.
    fn set_len(&self, path: &Path, len: u64) -> io::Result<()>;
    /// Takes an exclusive lock on `path` (creating it), or `Ok(None)` if another
    /// handle, in this process or another, holds it. Dropping the lock releases it.
    fn try_lock(&self, path: &Path) -> io::Result<Option<Box<dyn FileLock>>>;

    /// True if `path` exists.
    fn exists(&self, path: &Path) -> bool {
        self.open(path).is_ok()
    }

    /// Reads a whole file.
    fn read_all(&self, path: &Path) -> io::Result<Vec<u8>> {
        let file = self.open(path)?;
        let len = usize::try_from(file.len())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "file too large"))?;
        let mut buf = vec![0; len];
        file.read_exact_at(&mut buf, 0)?;
        Ok(buf)
    }
}

/// A file being written from start to end.
pub trait WritableFile: Send + Sync {
    /// Appends `data` (handed to the OS before returning).
    fn append(&mut self, data: &[u8]) -> io::Result<()>;
    /// Makes everything appended so far durable.
    fn sync(&mut self) -> io::Result<()>;
    /// Cuts the file back to its first `len` bytes (at most its length), durably;
    /// appends go on from there. Takes back an append that failed part-way. A file that cannot
    /// says `Unsupported`, and a failed append then stops its writer for good.
    fn truncate(&mut self, _len: u64) -> io::Result<()> {
        Err(io::Error::from(io::ErrorKind::Unsupported))
    }
    /// Reserves disk space so that the file can grow to `len` bytes without
    /// allocating: a sync of an append into reserved space then need not also make a
    /// new file size and block map durable. The file reads as zeros after what was
    /// appended, up to `len`, and appends go on at [`len`](Self::len). A
    /// [`truncate`](Self::truncate) gives the reservation back. Files that cannot
    /// reserve do nothing; a full disk is `StorageFull` with nothing reserved.
    fn preallocate(&mut self, _len: u64) -> io::Result<()> {
        Ok(())
    }
    /// Bytes appended so far.
    fn len(&self) -> u64;
    /// True if nothing was appended.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A file read at arbitrary offsets, shared between threads.
pub trait RandomAccessFile: Send + Sync {
    /// Fills `buf` from `offset`; an error if the file ends first.
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()>;
    /// The file's length when it was opened.
    fn len(&self) -> u64;
    /// True for an empty file.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// An exclusive lock held until dropped.
pub trait FileLock: Send + Sync {}

/// The operating system's filesystem.
#[derive(Debug, Default, Clone, Copy)]
pub struct OsFs;

struct OsWritableFile {
    file: File,
    len: u64,
}

impl WritableFile for OsWritableFile {
    fn append(&mut self, data: &[u8]) -> io::Result<()> {
        self.file.write_all(data)?;
        self.len += data.len() as u64;
        Ok(())
    }

    fn sync(&mut self) -> io::Result<()> {
        self.file.sync_data()
    }

    #[cfg(target_os = "linux")]
    fn preallocate(&mut self, len: u64) -> io::Result<()> {
        use rustix::fs::{FallocateFlags, fallocate};
        match len.checked_sub(self.len) {
            // Mode 0: the reserved bytes count in the file's size, so the size does not
            // change as they are written (with `KEEP_SIZE` every sync would update it).
            Some(more) if more > 0 => {
                match fallocate(&self.file, FallocateFlags::empty(), self.len, more) {
                    Err(rustix::io::Errno::OPNOTSUPP) => Ok(()),
                    result => result.map_err(io::Error::from),
                }
            }
            _ => Ok(()),
        }
    }

    fn truncate(&mut self, len: u64) -> io::Result<()> {
        let len = len.min(self.len);
        self.file.set_len(len)?;
        // Durable before anything is written over the cut bytes: otherwise a crash could
        // show a new record's pages followed by the rest of the old partial one.
        self.file.sync_data()?;
        // Appends write at the cursor: move it back too, or they would leave a hole.
        self.file.seek(io::SeekFrom::Start(len))?;
        self.len = len;
        Ok(())
    }

    fn len(&self) -> u64 {
        self.len
    }
}

struct OsRandomAccessFile {
    file: File,
    len: u64,
}

impl RandomAccessFile for OsRandomAccessFile {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.file.read_exact_at(buf, offset)
    }

    fn len(&self) -> u64 {
        self.len
    }
}

impl FileSystem for OsFs {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        std::fs::create_dir_all(dir)
    }

    fn create(&self, path: &Path) -> io::Result<Box<dyn WritableFile>> {
        let file = OpenOptions::new().write(true).create(true).truncate(true).open(path)?;
        Ok(Box::new(OsWritableFile { file, len: 0 }))
    }

    fn open(&self, path: &Path) -> io::Result<Arc<dyn RandomAccessFile>> {
        let file = File::open(path)?;
        let len = file.metadata()?.len();
        Ok(Arc::new(OsRandomAccessFile { file, len }))
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        std::fs::rename(from, to)
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_file(path)
    }

    fn list_dir(&self, dir: &Path) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in std::fs::read_dir(dir)? {
            let entry = entry?;
            if let Ok(name) = entry.file_name().into_string() {
                names.push(name);
            }
        }
        Ok(names)
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        File::open(dir)?.sync_all()
    }

    fn set_len(&self, path: &Path, len: u64) -> io::Result<()> {
        let file = OpenOptions::new().write(true).open(path)?;
        if len > file.metadata()?.len() {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "cannot grow a file"));
        }
        file.set_len(len)?;
        file.sync_all()
    }

    fn try_lock(&self, path: &Path) -> io::Result<Option<Box<dyn FileLock>>> {
        dir_lock::try_lock(path)
    }

    fn exists(&self, path: &Path) -> bool {
        path.exists()
    }
}
