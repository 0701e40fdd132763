//! [`HookedFs`]: a filesystem over another that calls a hook just before and just
//! after every operation that changes the disk, named `<op>:<file kind>` (see
//! [`point_name`]). The hook may fail the operation, kill the process or cut the
//! power: the whitebox crash points of `tests/crash_points.rs` and the power cut at
//! every operation of `tests/power_loss.rs`.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use aeternusdb::fs::{FileLock, FileSystem, RandomAccessFile, WritableFile};

/// Whether the hook runs before or after the operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Before,
    After,
}

/// Called with the point's name and the phase; an error fails the operation (before:
/// without its effect; after: with it).
pub type Hook = dyn Fn(&str, Phase) -> io::Result<()> + Send + Sync;

/// See the module documentation.
#[derive(Clone)]
pub struct HookedFs {
    inner: Arc<dyn FileSystem>,
    hook: Arc<Hook>,
}

impl fmt::Debug for HookedFs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HookedFs").field("inner", &self.inner).finish_non_exhaustive()
    }
}

impl HookedFs {
    pub fn new(
        inner: Arc<dyn FileSystem>,
        hook: impl Fn(&str, Phase) -> io::Result<()> + Send + Sync + 'static,
    ) -> HookedFs {
        HookedFs { inner, hook: Arc::new(hook) }
    }

    fn run<T>(&self, op: &str, path: &Path, f: impl FnOnce() -> io::Result<T>) -> io::Result<T> {
        let point = point_name(op, path);
        (self.hook)(&point, Phase::Before)?;
        let result = f()?;
        (self.hook)(&point, Phase::After)?;
        Ok(result)
    }
}

/// `<op>:<kind>`, the kind from the file name: `wal`, `table`, `manifest`,
/// `current`, `lock`, `dir` (a name without extension that is none of those), each
/// with `.tmp` for its temporary name (`table.tmp`, `current.tmp`).
pub fn point_name(op: &str, path: &Path) -> String {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let (base, temp) = match name.strip_suffix(".tmp") {
        Some(base) => (base.to_string(), ".tmp"),
        None => (name, ""),
    };
    let kind = if base.ends_with(".wal") {
        "wal"
    } else if base.ends_with(".sst") {
        "table"
    } else if base.starts_with("MANIFEST-") {
        "manifest"
    } else if base == "CURRENT" {
        "current"
    } else if base == "LOCK" {
        "lock"
    } else if !base.is_empty() && !base.contains('.') {
        "dir"
    } else {
        "other"
    };
    format!("{op}:{kind}{temp}")
}

/// A file being written whose appends, syncs, cuts and reservations are hooked.
struct HookedFile {
    fs: HookedFs,
    path: PathBuf,
    inner: Box<dyn WritableFile>,
}

impl WritableFile for HookedFile {
    fn append(&mut self, data: &[u8]) -> io::Result<()> {
        let inner = &mut self.inner;
        self.fs.run("append", &self.path, || inner.append(data))
    }

    fn sync(&mut self) -> io::Result<()> {
        let inner = &mut self.inner;
        self.fs.run("sync", &self.path, || inner.sync())
    }

    fn truncate(&mut self, len: u64) -> io::Result<()> {
        let inner = &mut self.inner;
        self.fs.run("truncate", &self.path, || inner.truncate(len))
    }

    fn preallocate(&mut self, len: u64) -> io::Result<()> {
        let inner = &mut self.inner;
        self.fs.run("preallocate", &self.path, || inner.preallocate(len))
    }

    fn len(&self) -> u64 {
        self.inner.len()
    }
}

impl FileSystem for HookedFs {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        self.inner.create_dir_all(dir)
    }

    fn create(&self, path: &Path) -> io::Result<Box<dyn WritableFile>> {
        let inner = self.run("create", path, || self.inner.create(path))?;
        Ok(Box::new(HookedFile { fs: self.clone(), path: path.to_path_buf(), inner }))
    }

    fn open(&self, path: &Path) -> io::Result<Arc<dyn RandomAccessFile>> {
        self.inner.open(path)
    }

    fn open_immutable(&self, path: &Path) -> io::Result<Arc<dyn RandomAccessFile>> {
        self.inner.open_immutable(path)
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.run("rename", to, || self.inner.rename(from, to))
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        self.run("remove", path, || self.inner.remove_file(path))
    }

    fn list_dir(&self, dir: &Path) -> io::Result<Vec<String>> {
        self.inner.list_dir(dir)
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        self.run("sync_dir", dir, || self.inner.sync_dir(dir))
    }

    fn set_len(&self, path: &Path, len: u64) -> io::Result<()> {
        self.run("set_len", path, || self.inner.set_len(path, len))
    }

    fn try_lock(&self, path: &Path) -> io::Result<Option<Box<dyn FileLock>>> {
        self.inner.try_lock(path)
    }

    fn exists(&self, path: &Path) -> bool {
        self.inner.exists(path)
    }
}
