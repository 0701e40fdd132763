//! The state behind every [`FaultFs`](super::FaultFs) handle: the live and durable
//! namespaces, the files' bytes, locks and pending faults (the model is in the parent
//! module's documentation).
//!
//! Invariant: every inode's `synced_len <= appended <= data.len()` and
//! `synced_reserved <= data.len()`.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::Mutex;

use super::{FaultKind, KIND_COUNT};

/// One file's contents.
///
/// Invariant: `synced_len <= appended <= data.len()` and `synced_reserved <= data.len()`.
#[derive(Debug, Default)]
pub(super) struct Inode {
    /// What the file reads as: the bytes appended, then zeros in space reserved by
    /// [`WritableFile::preallocate`](crate::fs::WritableFile::preallocate).
    pub(super) data: Vec<u8>,
    /// Bytes appended: `data` beyond them is reserved space.
    pub(super) appended: usize,
    /// The prefix of the appended bytes that survives a power loss.
    pub(super) synced_len: usize,
    /// The length the file has after a power loss if that is more than `synced_len`:
    /// reserved space made durable by a sync reads as zeros, whatever was appended
    /// into it since.
    pub(super) synced_reserved: usize,
}

impl Inode {
    /// Cuts the bytes to their first `len`, and with them whatever was appended,
    /// synced or reserved beyond it; growing a file is `InvalidInput`.
    pub(super) fn cut(&mut self, len: u64) -> io::Result<usize> {
        let len = usize::try_from(len)
            .ok()
            .filter(|&len| len <= self.data.len())
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "cannot grow a file"))?;
        self.data.truncate(len);
        self.appended = self.appended.min(len);
        self.synced_len = self.synced_len.min(len);
        self.synced_reserved = self.synced_reserved.min(len);
        Ok(len)
    }
}

pub(super) type InodeRef = Arc<Mutex<Inode>>;

/// One directory operation, as the entries it sets at once: a path and the file it
/// now names, or `None` for an entry removed. A rename is two entries in one
/// operation, since a journaling filesystem commits it whole or not at all.
pub(super) type DirOp = Vec<(PathBuf, Option<InodeRef>)>;

#[derive(Default)]
pub(super) struct State {
    /// The namespace every operation sees.
    pub(super) live: BTreeMap<PathBuf, InodeRef>,
    /// The namespace as of each directory's last `sync_dir`.
    pub(super) durable: BTreeMap<PathBuf, InodeRef>,
    /// The directory operations since each directory's last `sync_dir`, oldest first:
    /// what a power cut may keep a prefix of (a journal commits them in order).
    pub(super) unsynced_dir_ops: Vec<DirOp>,
    /// Directories (always durable).
    pub(super) dirs: BTreeSet<PathBuf>,
    /// Directories created whose entry no `sync_dir` of their parent made durable.
    pub(super) unsynced_dirs: BTreeSet<PathBuf>,
    /// Locked paths and the token of the lock holding each.
    pub(super) locks: HashMap<PathBuf, u64>,
    pub(super) next_lock_token: u64,
    /// Bumped by every power loss; write handles from an older epoch are dead.
    pub(super) epoch: u64,
    /// Operations attempted, by kind.
    pub(super) counts: [usize; KIND_COUNT],
    /// For each kind, how many more operations succeed before one fails, and the
    /// kind of error it fails with.
    pub(super) pending_faults: [Option<(usize, io::ErrorKind)>; KIND_COUNT],
    /// Bytes the next append keeps before failing.
    pub(super) tear_next_write: Option<usize>,
    /// The disk's size: appends beyond it write what fits and fail with
    /// `StorageFull` (`ENOSPC`).
    pub(super) capacity: Option<u64>,
}

impl State {
    /// Bytes held by the files the live namespace names (as on a real disk, a removed
    /// file's space is free at once, whatever a power loss would bring back).
    pub(super) fn used_bytes(&self) -> u64 {
        self.sum_over_live_files(|inode| inode.data.len())
    }

    /// Bytes of space reserved in live files and not yet appended to.
    pub(super) fn reserved_bytes(&self) -> u64 {
        self.sum_over_live_files(|inode| inode.data.len() - inode.appended)
    }

    /// `bytes` summed over the files the live namespace names, each counted once
    /// however many names it has.
    fn sum_over_live_files(&self, bytes: impl Fn(&Inode) -> usize) -> u64 {
        let mut seen = std::collections::HashSet::new();
        self.live
            .values()
            .filter(|inode| seen.insert(Arc::as_ptr(inode)))
            .map(|inode| bytes(&inode.lock()) as u64)
            .sum()
    }

    /// Counts one operation of `kind` and fails it if a fault is due.
    pub(super) fn begin(&mut self, kind: FaultKind) -> io::Result<()> {
        let i = kind.index();
        self.counts[i] += 1;
        match self.pending_faults[i] {
            Some((0, error)) => {
                self.pending_faults[i] = None;
                Err(injected_fault(error))
            }
            Some((n, error)) => {
                self.pending_faults[i] = Some((n - 1, error));
                Ok(())
            }
            None => Ok(()),
        }
    }

    /// Sets the live entries of `op` and records it as not yet durable.
    pub(super) fn apply_dir_op(&mut self, op: DirOp) {
        set_entries(&mut self.live, &op);
        self.unsynced_dir_ops.push(op);
    }

    pub(super) fn live_file(&self, path: &Path) -> io::Result<&InodeRef> {
        self.live.get(path).ok_or_else(|| not_found(path))
    }

    /// Fails unless the directory that would hold `path` exists.
    pub(super) fn check_parent(&self, path: &Path) -> io::Result<()> {
        match path.parent() {
            Some(dir) if self.dirs.contains(dir) => Ok(()),
            _ => Err(not_found(path)),
        }
    }
}

/// Sets the entries of `op` in `namespace`.
pub(super) fn set_entries(namespace: &mut BTreeMap<PathBuf, InodeRef>, op: &DirOp) {
    for (path, inode) in op {
        match inode {
            Some(inode) => namespace.insert(path.clone(), Arc::clone(inode)),
            None => namespace.remove(path),
        };
    }
}

fn injected_fault(error: io::ErrorKind) -> io::Error {
    io::Error::new(error, "injected fault")
}

pub(super) fn not_found(path: &Path) -> io::Error {
    io::Error::new(io::ErrorKind::NotFound, format!("{}: no such file", path.display()))
}

pub(super) fn is_in_dir(path: &Path, dir: &Path) -> bool {
    path.parent() == Some(dir)
}
