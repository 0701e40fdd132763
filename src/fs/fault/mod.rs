//! [`FaultFs`]: an in-memory [`FileSystem`] that remembers what is durable, so tests can
//! inject I/O errors and simulate a power loss.
//!
//! Modelled on LevelDB's `db/fault_injection_test.cc` ("keep track of the state of a
//! filesystem as of the last sync") and Pebble's `vfs.NewCrashableMem`.
//!
//! # Model
//! - A **file** (an inode) holds its bytes and its *synced length*: the prefix made
//!   durable by [`WritableFile::sync`]. Appends land in the live bytes at once, so a
//!   process crash keeps them; only the synced prefix survives a power loss.
//!   [`WritableFile::preallocate`] extends the file with zeros that appends then
//!   overwrite; once synced, the reserved length survives a power loss too, as zeros
//!   after the synced prefix (the unsynced appends into it are lost).
//! - A **directory entry** maps a path to a file. Entries live in two namespaces: the
//!   *live* one, which every operation reads and changes, and the *durable* one, which
//!   changes only through [`FileSystem::sync_dir`]: `sync_dir(dir)` replaces the durable
//!   entries directly in `dir` with its live ones. Creations, renames and removals are
//!   therefore undone by a power loss until their directory is synced. A rename across
//!   directories needs both directories synced. The directory operations not yet
//!   synced are also kept in order, so that a power cut can keep a prefix of them
//!   ([`FaultFs::power_loss_keeping_dir_ops`]): a journaling filesystem such as ext4
//!   may commit a creation or a rename before anyone syncs its directory, but it
//!   commits them in the order they were made. A file whose entry survives that way
//!   keeps its synced bytes and what the cut's `keep` grants, possibly none (ext4's
//!   zero-length files after a crash). The order holds within one directory (all the
//!   engine uses): a rename across directories whose target directory alone was
//!   synced stays pending on its source side only, so a prefix that keeps an earlier
//!   operation on the source but not that half can name the file twice.
//! - [`FileSystem::create`] always makes a new, empty file and points the name at it;
//!   the file that name pointed to before (if any) stays intact in the durable
//!   namespace until the directory is synced.
//! - **Directories** made by [`FileSystem::create_dir_all`] survive a power loss (a
//!   simplification: the engine creates its directory before anything else). What a
//!   real filesystem needs for that is recorded, though: a new directory's entry in
//!   its parent is durable only once the parent is synced, and
//!   [`FaultFs::unsynced_dirs`] lists the directories still waiting for that.
//! - [`FileSystem::set_len`] cuts a file and syncs it: the cut survives a power loss,
//!   and so does every byte before it.
//! - [`FaultFs::power_loss`] replaces the live namespace with the durable one,
//!   truncates every file to its synced length, kills every open [`WritableFile`]
//!   (further appends and syncs fail) and releases every lock.
//!   [`FaultFs::release_locks`] models a process crash instead: every byte appended
//!   stays, only the locks held by the dead process's leaked handles vanish.
//!
//! # Faults
//! [`FaultFs::fail_after`] makes the n-th next operation of a [`FaultKind`] fail with
//! an [`io::ErrorKind::Other`] error ("injected fault") and no effect;
//! [`FaultFs::fail_after_with`] chooses the error's kind (`StorageFull`: a rename or
//! a create can find the disk full too).
//! [`FaultFs::tear_next_write`] makes the next append keep only a prefix of its bytes
//! and then fail. [`FaultFs::count`] reports how many operations of each kind were
//! attempted (failed ones included), so a test can run a workload once, read the count
//! and then fail each of those operations in turn.
//!
//! # Thread safety
//! [`FaultFs`] is a cheap, cloneable handle: clones share one state behind a mutex.
//! Lock order: the filesystem state, then a file's bytes; a read takes the state only to
//! count itself, and releases it before it locks the bytes.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::Mutex;

mod handles;
mod state;

use super::{FileLock, FileSystem, RandomAccessFile, WritableFile};
use handles::{FaultFileLock, FaultRandomAccessFile, FaultWritableFile};
use state::{InodeRef, State, is_in_dir, not_found};

/// A kind of operation that [`FaultFs::fail_after`] can make fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FaultKind {
    /// [`WritableFile::append`].
    Write,
    /// [`WritableFile::sync`].
    Sync,
    /// [`FileSystem::rename`].
    Rename,
    /// [`FileSystem::sync_dir`].
    SyncDir,
    /// [`FileSystem::create`].
    Create,
    /// [`FileSystem::remove_file`] of a file that exists.
    Remove,
    /// [`RandomAccessFile::read_exact_at`].
    Read,
}

/// The number of [`FaultKind`] variants.
const KIND_COUNT: usize = 7;

impl FaultKind {
    /// Every kind, for tests that fail each in turn.
    pub const ALL: [FaultKind; KIND_COUNT] = [
        FaultKind::Write,
        FaultKind::Sync,
        FaultKind::Rename,
        FaultKind::SyncDir,
        FaultKind::Create,
        FaultKind::Remove,
        FaultKind::Read,
    ];

    fn index(self) -> usize {
        match self {
            FaultKind::Write => 0,
            FaultKind::Sync => 1,
            FaultKind::Rename => 2,
            FaultKind::SyncDir => 3,
            FaultKind::Create => 4,
            FaultKind::Remove => 5,
            FaultKind::Read => 6,
        }
    }
}

/// An in-memory filesystem with fault injection and power-loss simulation; see the
/// module documentation for the model.
#[derive(Clone, Default)]
pub struct FaultFs {
    state: Arc<Mutex<State>>,
}

impl FaultFs {
    /// An empty filesystem with no directories.
    pub fn new() -> Self {
        Self::default()
    }

    /// Simulates a power cut: the live namespace becomes the durable one, every file
    /// loses its unsynced bytes, open write handles die and all locks are released.
    /// Pending faults stay armed.
    pub fn power_loss(&self) {
        self.power_loss_keeping(|_, _| 0);
    }

    /// A power cut after which each durable file keeps, beyond its synced prefix, the
    /// first `keep(path, unsynced)` (at most `unsynced`) of its `unsynced` appended
    /// bytes: the OS had written some of them back, in order, before the cut (the
    /// idea of Pebble's `CrashClone`). A WAL or manifest can end in part of a record
    /// this way. Otherwise as [`power_loss`](Self::power_loss): the namespace is the
    /// durable one, handles die, locks are released.
    pub fn power_loss_keeping(&self, keep: impl FnMut(&Path, usize) -> usize) {
        self.power_loss_keeping_dir_ops(|_| 0, keep);
    }

    /// [`power_loss_keeping`](Self::power_loss_keeping), after which the first
    /// `dir_ops(pending)` (at most all) of the `pending` directory operations no
    /// `sync_dir` covered survive too, as if the filesystem's journal had committed
    /// them before the cut. Returns how many survived.
    pub fn power_loss_keeping_dir_ops(
        &self,
        dir_ops: impl FnOnce(usize) -> usize,
        mut keep: impl FnMut(&Path, usize) -> usize,
    ) -> usize {
        let mut state = self.state.lock();
        let ops = std::mem::take(&mut state.unsynced_dir_ops);
        let kept = dir_ops(ops.len()).min(ops.len());
        for op in &ops[..kept] {
            state::set_entries(&mut state.durable, op);
        }
        state.live = state.durable.clone();
        for (path, inode) in &state.durable {
            let mut inode = inode.lock();
            let (synced_len, reserved) = (inode.synced_len, inode.synced_reserved);
            let unsynced = inode.appended - synced_len;
            let kept = synced_len + keep(path, unsynced).min(unsynced);
            inode.data.truncate(kept);
            inode.data.resize(kept.max(reserved), 0);
            inode.appended = kept;
            // What survived is on disk now (a second name for this file keeps the same).
            inode.synced_len = kept;
        }
        state.epoch += 1;
        state.locks.clear();
        kept
    }

    /// How many directory operations (creations, renames, removals) no `sync_dir` has
    /// made durable yet: how many a power cut may keep a prefix of.
    pub fn unsynced_dir_op_count(&self) -> usize {
        self.state.lock().unsynced_dir_ops.len()
    }

    /// Releases every lock, as when the process holding them dies; files keep every
    /// appended byte. Lets a test reopen a database whose handle it leaked.
    pub fn release_locks(&self) {
        self.state.lock().locks.clear();
    }

    /// Makes the `n`-th next operation of `kind` fail (`0` = the next one), once.
    /// Replaces an earlier pending fault of the same kind.
    pub fn fail_after(&self, kind: FaultKind, n: usize) {
        self.fail_after_with(kind, n, io::ErrorKind::Other);
    }

    /// [`FaultFs::fail_after`], failing with an error of kind `error`.
    pub fn fail_after_with(&self, kind: FaultKind, n: usize, error: io::ErrorKind) {
        self.state.lock().pending_faults[kind.index()] = Some((n, error));
    }

    /// Makes the next append write only its first `keep` bytes (or all of them if
    /// fewer) and then fail. An append failed by [`FaultFs::fail_after`] writes nothing
    /// and leaves the tear pending.
    pub fn tear_next_write(&self, keep: usize) {
        self.state.lock().tear_next_write = Some(keep);
    }

    /// Limits the disk to `bytes` in all files (`None`: unlimited). An append that
    /// does not fit writes the part that does, like a real `write` on a full disk,
    /// and fails with [`io::ErrorKind::StorageFull`]; removing files frees space.
    pub fn set_capacity(&self, bytes: Option<u64>) {
        self.state.lock().capacity = bytes;
    }

    /// Bytes held by the files the live namespace names, space reserved by
    /// [`WritableFile::preallocate`] included.
    pub fn used_bytes(&self) -> u64 {
        self.state.lock().used_bytes()
    }

    /// Bytes reserved by [`WritableFile::preallocate`] and not yet appended to.
    pub fn reserved_bytes(&self) -> u64 {
        self.state.lock().reserved_bytes()
    }

    /// Disarms every pending fault and torn write.
    pub fn clear_faults(&self) {
        let mut state = self.state.lock();
        state.pending_faults = [None; KIND_COUNT];
        state.tear_next_write = None;
    }

    /// How many operations of `kind` were attempted, failed ones included.
    pub fn count(&self, kind: FaultKind) -> usize {
        self.state.lock().counts[kind.index()]
    }

    /// Flips the bits of `xor_mask` in the byte at `offset` of a live file. Inside the
    /// synced prefix, the damage survives a power loss.
    pub fn corrupt_byte(&self, path: &Path, offset: u64, xor_mask: u8) -> io::Result<()> {
        let state = self.state.lock();
        let mut inode = state.live_file(path)?.lock();
        let byte =
            usize::try_from(offset).ok().and_then(|i| inode.data.get_mut(i)).ok_or_else(|| {
                io::Error::new(io::ErrorKind::InvalidInput, "offset past the end of the file")
            })?;
        *byte ^= xor_mask;
        Ok(())
    }

    /// Cuts a live file to `len` bytes; the cut survives a power loss.
    pub fn truncate(&self, path: &Path, len: u64) -> io::Result<()> {
        let state = self.state.lock();
        state.live_file(path)?.lock().cut(len)?;
        Ok(())
    }

    /// The directories made by [`FileSystem::create_dir_all`] whose entry in their
    /// parent is not durable yet (no `sync_dir` of the parent since), sorted.
    pub fn unsynced_dirs(&self) -> Vec<PathBuf> {
        self.state.lock().unsynced_dirs.iter().cloned().collect()
    }

    /// Every live file's path, sorted.
    pub fn file_names(&self) -> Vec<PathBuf> {
        self.state.lock().live.keys().cloned().collect()
    }
}

impl fmt::Debug for FaultFs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // `try_lock`, so formatting while this thread holds the state cannot deadlock.
        match self.state.try_lock() {
            Some(state) => f
                .debug_struct("FaultFs")
                .field("files", &state.live.len())
                .field("durable_files", &state.durable.len())
                .field("locks", &state.locks.len())
                .field("epoch", &state.epoch)
                .finish(),
            None => f.write_str("FaultFs { <locked> }"),
        }
    }
}

impl FileSystem for FaultFs {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        let mut state = self.state.lock();
        if state.live.contains_key(dir) {
            return Err(io::Error::new(io::ErrorKind::AlreadyExists, "a file has that name"));
        }
        for ancestor in dir.ancestors() {
            if state.dirs.insert(ancestor.to_path_buf()) && ancestor.parent().is_some() {
                state.unsynced_dirs.insert(ancestor.to_path_buf());
            }
        }
        Ok(())
    }

    fn create(&self, path: &Path) -> io::Result<Box<dyn WritableFile>> {
        let mut state = self.state.lock();
        state.check_parent(path)?;
        state.begin(FaultKind::Create)?;
        let inode = InodeRef::default();
        state.apply_dir_op(vec![(path.to_path_buf(), Some(Arc::clone(&inode)))]);
        Ok(Box::new(FaultWritableFile {
            state: Arc::clone(&self.state),
            inode,
            epoch: state.epoch,
            len: 0,
        }))
    }

    fn open(&self, path: &Path) -> io::Result<Arc<dyn RandomAccessFile>> {
        let state = self.state.lock();
        let inode = Arc::clone(state.live_file(path)?);
        let len = inode.lock().data.len() as u64;
        Ok(Arc::new(FaultRandomAccessFile { state: Arc::clone(&self.state), inode, len }))
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut state = self.state.lock();
        let inode = Arc::clone(state.live_file(from)?);
        state.check_parent(to)?;
        state.begin(FaultKind::Rename)?;
        state.apply_dir_op(vec![(from.to_path_buf(), None), (to.to_path_buf(), Some(inode))]);
        Ok(())
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        let mut state = self.state.lock();
        state.live_file(path)?;
        state.begin(FaultKind::Remove)?;
        state.apply_dir_op(vec![(path.to_path_buf(), None)]);
        Ok(())
    }

    fn list_dir(&self, dir: &Path) -> io::Result<Vec<String>> {
        let state = self.state.lock();
        if !state.dirs.contains(dir) {
            return Err(not_found(dir));
        }
        Ok(state
            .live
            .keys()
            .filter(|path| is_in_dir(path, dir))
            .filter_map(|path| path.file_name()?.to_str().map(str::to_owned))
            .collect())
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        let mut state = self.state.lock();
        if !state.dirs.contains(dir) {
            return Err(not_found(dir));
        }
        state.begin(FaultKind::SyncDir)?;
        let State { live, durable, unsynced_dirs, unsynced_dir_ops, .. } = &mut *state;
        unsynced_dirs.retain(|path| !is_in_dir(path, dir));
        for op in unsynced_dir_ops.iter_mut() {
            op.retain(|(path, _)| !is_in_dir(path, dir));
        }
        unsynced_dir_ops.retain(|op| !op.is_empty());
        durable.retain(|path, _| !is_in_dir(path, dir));
        durable.extend(
            live.iter()
                .filter(|(path, _)| is_in_dir(path, dir))
                .map(|(path, inode)| (path.clone(), Arc::clone(inode))),
        );
        Ok(())
    }

    fn set_len(&self, path: &Path, len: u64) -> io::Result<()> {
        let state = self.state.lock();
        let mut inode = state.live_file(path)?.lock();
        let len = inode.cut(len)?;
        // The cut is followed by a sync of the whole file; reserved zeros it keeps are
        // now the file's contents.
        inode.appended = len;
        inode.synced_len = len;
        Ok(())
    }

    fn try_lock(&self, path: &Path) -> io::Result<Option<Box<dyn FileLock>>> {
        let mut state = self.state.lock();
        if state.locks.contains_key(path) {
            return Ok(None);
        }
        if !state.live.contains_key(path) {
            state.check_parent(path)?;
            state.apply_dir_op(vec![(path.to_path_buf(), Some(InodeRef::default()))]);
        }
        let token = state.next_lock_token;
        state.next_lock_token += 1;
        state.locks.insert(path.to_path_buf(), token);
        Ok(Some(Box::new(FaultFileLock {
            state: Arc::clone(&self.state),
            path: path.to_path_buf(),
            token,
        })))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    const DIR: &str = "/db";

    fn setup() -> Result<(FaultFs, PathBuf), io::Error> {
        let fs = FaultFs::new();
        fs.create_dir_all(Path::new(DIR))?;
        Ok((fs, PathBuf::from(DIR)))
    }

    fn is_injected(err: &io::Error) -> bool {
        err.kind() == io::ErrorKind::Other && err.to_string().contains("injected fault")
    }

    #[test]
    fn unsynced_appends_vanish_on_power_loss() -> TestResult {
        let (fs, dir) = setup()?;
        let path = dir.join("000001.log");
        let mut file = fs.create(&path)?;
        fs.sync_dir(&dir)?;
        file.append(b"synced")?;
        file.sync()?;
        file.append(b"-lost")?;
        assert_eq!(fs.read_all(&path)?, b"synced-lost", "open sees unsynced bytes");

        fs.power_loss();
        assert_eq!(fs.read_all(&path)?, b"synced");
        assert!(file.append(b"x").is_err(), "handle is dead after power loss");
        assert!(file.sync().is_err());
        assert_eq!(fs.read_all(&path)?, b"synced");
        Ok(())
    }

    #[test]
    fn reserved_space_reads_as_zeros_and_loses_unsynced_appends_on_power_loss() -> TestResult {
        let (fs, dir) = setup()?;
        let path = dir.join("000001.wal");
        let mut file = fs.create(&path)?;
        fs.sync_dir(&dir)?;
        file.append(b"head")?;
        file.preallocate(16)?;
        assert_eq!(fs.read_all(&path)?, b"head\0\0\0\0\0\0\0\0\0\0\0\0");
        assert_eq!((file.len(), fs.reserved_bytes()), (4, 12));
        file.append(b"-synced")?;
        file.sync()?;
        file.append(b"-lost")?;
        assert_eq!(fs.read_all(&path)?, b"head-synced-lost");
        assert_eq!(fs.reserved_bytes(), 0);

        fs.power_loss();
        // The synced length and the synced reservation survive, the rest is zeros.
        assert_eq!(fs.read_all(&path)?, b"head-synced\0\0\0\0\0");
        assert_eq!(fs.reserved_bytes(), 5);
        Ok(())
    }

    #[test]
    fn reserving_beyond_the_disk_is_storage_full_and_truncate_gives_it_back() -> TestResult {
        let (fs, dir) = setup()?;
        let mut file = fs.create(&dir.join("a"))?;
        file.append(b"0123")?;
        fs.set_capacity(Some(10));
        let full = file.preallocate(100).expect_err("reserved beyond the disk");
        assert_eq!(full.kind(), io::ErrorKind::StorageFull);
        assert_eq!(fs.used_bytes(), 4);
        file.preallocate(10)?;
        // Appending into the reservation needs no new space.
        file.append(b"456789")?;
        assert!(file.append(b"x").is_err());
        file.truncate(8)?;
        assert_eq!((fs.used_bytes(), fs.reserved_bytes()), (8, 0));
        Ok(())
    }

    #[test]
    fn power_loss_keeping_keeps_a_prefix_of_the_unsynced_appends() -> TestResult {
        let (fs, dir) = setup()?;
        let (plain, reserved) = (dir.join("000001.wal"), dir.join("000002.wal"));
        let mut file = fs.create(&plain)?;
        file.append(b"synced-")?;
        file.sync()?;
        file.append(b"unsynced")?;
        let mut file = fs.create(&reserved)?;
        file.preallocate(16)?;
        file.append(b"ab")?;
        file.sync()?;
        file.append(b"cdef")?;
        fs.sync_dir(&dir)?;
        let mut asked = Vec::new();
        fs.power_loss_keeping(|path, unsynced| {
            asked.push((path.to_path_buf(), unsynced));
            if path == plain { 2 } else { 100 }
        });
        assert_eq!(asked, [(plain.clone(), 8), (reserved.clone(), 4)]);
        assert_eq!(fs.read_all(&plain)?, b"synced-un");
        // Asked for more than there was: all of it, then the reserved zeros.
        assert_eq!(fs.read_all(&reserved)?, b"abcdef\0\0\0\0\0\0\0\0\0\0");
        // What was kept is durable: a second power loss keeps it.
        fs.power_loss();
        assert_eq!(fs.read_all(&plain)?, b"synced-un");
        Ok(())
    }

    #[test]
    fn process_crash_keeps_unsynced_appends() -> TestResult {
        let (fs, dir) = setup()?;
        let path = dir.join("000001.log");
        let mut file = fs.create(&path)?;
        file.append(b"kept")?;
        let lock = fs.try_lock(&dir.join("LOCK"))?;
        std::mem::forget(lock);
        fs.release_locks();
        assert!(fs.try_lock(&dir.join("LOCK"))?.is_some());
        assert_eq!(fs.read_all(&path)?, b"kept");
        Ok(())
    }

    #[test]
    fn creation_without_sync_dir_vanishes() -> TestResult {
        let (fs, dir) = setup()?;
        let kept = dir.join("kept.sst");
        let lost = dir.join("lost.sst");
        let mut file = fs.create(&kept)?;
        file.append(b"data")?;
        file.sync()?;
        fs.sync_dir(&dir)?;
        let mut file = fs.create(&lost)?;
        file.append(b"data")?;
        file.sync()?;

        fs.power_loss();
        assert_eq!(fs.file_names(), vec![kept.clone()]);
        assert_eq!(fs.read_all(&kept)?, b"data");
        let err = fs.open(&lost).err().ok_or("lost file still exists")?;
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
        Ok(())
    }

    #[test]
    fn removal_without_sync_dir_is_undone() -> TestResult {
        let (fs, dir) = setup()?;
        let path = dir.join("a");
        fs.create(&path)?;
        fs.sync_dir(&dir)?;
        fs.remove_file(&path)?;
        assert!(!fs.exists(&path));
        fs.power_loss();
        assert!(fs.exists(&path));
        fs.remove_file(&path)?;
        fs.sync_dir(&dir)?;
        fs.power_loss();
        assert!(!fs.exists(&path));
        Ok(())
    }

    #[test]
    fn rename_without_sync_dir_is_undone() -> TestResult {
        let (fs, dir) = setup()?;
        let current = dir.join("CURRENT");
        let temp = dir.join("CURRENT.tmp");
        let mut file = fs.create(&current)?;
        file.append(b"old")?;
        file.sync()?;
        let mut file = fs.create(&temp)?;
        file.append(b"new")?;
        file.sync()?;
        fs.sync_dir(&dir)?;

        fs.rename(&temp, &current)?;
        assert_eq!(fs.read_all(&current)?, b"new");
        assert!(!fs.exists(&temp));
        fs.power_loss();
        assert_eq!(fs.read_all(&current)?, b"old");
        assert_eq!(fs.read_all(&temp)?, b"new");

        fs.rename(&temp, &current)?;
        fs.sync_dir(&dir)?;
        fs.power_loss();
        assert_eq!(fs.read_all(&current)?, b"new");
        assert!(!fs.exists(&temp));
        Ok(())
    }

    /// A journaling filesystem's view of a cut: a prefix of the unsynced creations,
    /// renames and removals survives, in order, and a file whose entry survives that
    /// way keeps only its synced bytes.
    #[test]
    fn power_loss_keeping_dir_ops_keeps_a_prefix_of_them_in_order() -> TestResult {
        for kept_ops in 0..=5 {
            let (fs, dir) = setup()?;
            let (current, temp) = (dir.join("CURRENT"), dir.join("CURRENT.tmp"));
            let (unsynced, removed) = (dir.join("000002.wal"), dir.join("000001.wal"));
            let mut file = fs.create(&current)?;
            file.append(b"old")?;
            file.sync()?;
            fs.create(&removed)?;
            fs.sync_dir(&dir)?;
            assert_eq!(fs.unsynced_dir_op_count(), 0, "sync_dir made every operation durable");

            fs.create(&unsynced)?.append(b"never synced")?;
            let mut file = fs.create(&temp)?;
            file.append(b"new")?;
            file.sync()?;
            fs.rename(&temp, &current)?;
            fs.remove_file(&removed)?;

            let kept = fs.power_loss_keeping_dir_ops(
                |pending| {
                    assert_eq!(pending, 4, "a create, a create, a rename and a removal");
                    kept_ops
                },
                |_, _| 0,
            );
            assert_eq!(kept, kept_ops.min(4));
            let (created, renamed) = (kept_ops >= 1, kept_ops >= 3);
            assert_eq!(fs.exists(&unsynced), created, "kept {kept_ops}");
            if created {
                assert_eq!(fs.read_all(&unsynced)?, b"", "its bytes were never synced");
            }
            assert_eq!(fs.exists(&temp), kept_ops == 2, "kept {kept_ops}");
            assert_eq!(fs.read_all(&current)?, if renamed { &b"new"[..] } else { b"old" });
            assert_eq!(fs.exists(&removed), kept_ops < 4, "kept {kept_ops}");
            assert_eq!(fs.unsynced_dir_op_count(), 0, "what survived is durable");
            fs.power_loss();
            assert_eq!(fs.read_all(&current)?, if renamed { &b"new"[..] } else { b"old" });
        }
        Ok(())
    }

    #[test]
    fn sync_dir_covers_only_its_directory() -> TestResult {
        let (fs, dir) = setup()?;
        let sub = dir.join("sub");
        fs.create_dir_all(&sub)?;
        fs.create(&dir.join("top"))?;
        fs.create(&sub.join("nested"))?;
        fs.rename(&sub.join("nested"), &dir.join("moved"))?;
        fs.create(&sub.join("nested"))?;
        fs.sync_dir(&sub)?;
        assert_eq!(fs.list_dir(&dir)?, vec!["moved".to_owned(), "top".to_owned()]);
        // Pending: the create of `top`, and the rename's half in the directory.
        assert_eq!(fs.unsynced_dir_op_count(), 2);
        fs.power_loss();
        assert_eq!(fs.file_names(), vec![sub.join("nested")]);
        Ok(())
    }

    /// Runs the operation of `kind` once, on files under `dir`.
    fn run_op(fs: &FaultFs, dir: &Path, kind: FaultKind, step: usize) -> io::Result<()> {
        let path = dir.join(format!("f{step}"));
        match kind {
            FaultKind::Create => fs.create(&path).map(drop),
            FaultKind::SyncDir => fs.sync_dir(dir),
            FaultKind::Rename => {
                let mut file = fs.create(&path)?;
                file.append(b"x")?;
                fs.rename(&path, &dir.join(format!("g{step}")))
            }
            FaultKind::Write | FaultKind::Sync => {
                let mut file = fs.create(&path)?;
                file.append(b"x")?;
                file.sync()
            }
            FaultKind::Remove => {
                fs.create(&path)?;
                fs.remove_file(&path)
            }
            FaultKind::Read => {
                fs.create(&path)?.append(b"x")?;
                fs.open(&path)?.read_exact_at(&mut [0], 0)
            }
        }
    }

    #[test]
    fn each_fault_fires_at_exactly_the_nth_operation() -> TestResult {
        for kind in FaultKind::ALL {
            for n in 0..4 {
                let (fs, dir) = setup()?;
                fs.fail_after(kind, n);
                let before = fs.count(kind);
                for step in 0..6 {
                    let result = run_op(&fs, &dir, kind, step);
                    if step == n {
                        let err = result.err().ok_or(format!("{kind:?} #{n} did not fail"))?;
                        assert!(is_injected(&err), "{kind:?}: unexpected error {err}");
                    } else {
                        result?;
                    }
                }
                assert_eq!(fs.count(kind) - before, 6, "{kind:?}: failed ops are counted");
            }
        }
        Ok(())
    }

    #[test]
    fn a_fault_fails_with_the_chosen_error_kind() -> TestResult {
        let (fs, dir) = setup()?;
        let (a, b) = (dir.join("a"), dir.join("b"));
        fs.create(&a)?;
        fs.fail_after_with(FaultKind::Rename, 0, io::ErrorKind::StorageFull);
        let err = fs.rename(&a, &b).err().ok_or("the rename did not fail")?;
        assert_eq!(err.kind(), io::ErrorKind::StorageFull);
        assert!(fs.exists(&a) && !fs.exists(&b), "the failed rename had an effect");
        fs.rename(&a, &b)?;
        Ok(())
    }

    #[test]
    fn failed_operations_have_no_effect() -> TestResult {
        let (fs, dir) = setup()?;
        let a = dir.join("a");
        let b = dir.join("b");
        let mut file = fs.create(&a)?;

        fs.fail_after(FaultKind::Write, 0);
        assert!(file.append(b"lost").is_err());
        file.append(b"ok")?;
        assert_eq!(file.len(), 2);

        fs.fail_after(FaultKind::Sync, 0);
        assert!(file.sync().is_err());
        fs.fail_after(FaultKind::SyncDir, 0);
        assert!(fs.sync_dir(&dir).is_err());
        fs.fail_after(FaultKind::Rename, 0);
        assert!(fs.rename(&a, &b).is_err());
        assert!(fs.exists(&a) && !fs.exists(&b));
        fs.fail_after(FaultKind::Create, 0);
        assert!(fs.create(&b).is_err());
        assert!(!fs.exists(&b));

        fs.fail_after(FaultKind::Write, 3);
        fs.clear_faults();
        for _ in 0..5 {
            file.append(b"!")?;
        }
        assert_eq!(fs.read_all(&a)?, b"ok!!!!!");
        fs.power_loss();
        assert!(!fs.exists(&a), "neither the file's bytes nor its entry were synced");
        Ok(())
    }

    #[test]
    fn torn_write_keeps_a_prefix() -> TestResult {
        let (fs, dir) = setup()?;
        let path = dir.join("000001.log");
        let mut file = fs.create(&path)?;
        file.append(b"head:")?;
        fs.tear_next_write(3);
        let err = file.append(b"record").err().ok_or("torn write succeeded")?;
        assert!(is_injected(&err));
        assert_eq!(fs.read_all(&path)?, b"head:rec");
        assert_eq!(file.len(), 8);
        file.append(b"|next")?;
        assert_eq!(fs.read_all(&path)?, b"head:rec|next");
        Ok(())
    }

    #[test]
    fn lock_is_exclusive_until_dropped_or_power_loss() -> TestResult {
        let (fs, dir) = setup()?;
        let path = dir.join("LOCK");
        let lock = fs.try_lock(&path)?.ok_or("first lock refused")?;
        assert!(fs.exists(&path), "try_lock creates the file");
        assert!(fs.clone().try_lock(&path)?.is_none(), "a clone shares the lock table");
        drop(lock);
        let lock = fs.try_lock(&path)?.ok_or("lock not released by drop")?;

        fs.power_loss();
        let relock = fs.try_lock(&path)?.ok_or("lock survived power loss")?;
        drop(lock);
        assert!(fs.try_lock(&path)?.is_none(), "a stale lock's drop must not free a new one");
        drop(relock);
        assert!(fs.try_lock(&path)?.is_some());
        Ok(())
    }

    #[test]
    fn reads_past_the_end_fail_and_missing_paths_are_not_found() -> TestResult {
        let (fs, dir) = setup()?;
        let path = dir.join("t.sst");
        let mut file = fs.create(&path)?;
        file.append(b"0123456789")?;
        let reader = fs.open(&path)?;
        assert_eq!(reader.len(), 10);
        let mut buf = [0; 4];
        reader.read_exact_at(&mut buf, 6)?;
        assert_eq!(&buf, b"6789");
        let err = reader.read_exact_at(&mut buf, 7).err().ok_or("read past end succeeded")?;
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
        assert!(reader.read_exact_at(&mut buf, u64::MAX).is_err());

        let missing = dir.join("missing");
        for err in [
            fs.open(&missing).err(),
            fs.remove_file(&missing).err(),
            fs.rename(&missing, &path).err(),
            fs.list_dir(Path::new("/nowhere")).err(),
            fs.create(Path::new("/nowhere/x")).err(),
        ] {
            assert_eq!(err.ok_or("operation succeeded")?.kind(), io::ErrorKind::NotFound);
        }
        Ok(())
    }

    #[test]
    fn corrupt_byte_and_truncate_damage_durably_and_refuse_offsets_past_the_end() -> TestResult {
        let (fs, dir) = setup()?;
        let path = dir.join("t.sst");
        let mut file = fs.create(&path)?;
        file.append(b"abcdef")?;
        file.sync()?;
        fs.sync_dir(&dir)?;
        fs.corrupt_byte(&path, 1, 0xff)?;
        fs.truncate(&path, 4)?;
        assert_eq!(fs.read_all(&path)?, [b'a', !b'b', b'c', b'd']);
        assert!(fs.corrupt_byte(&path, 4, 1).is_err());
        assert!(fs.truncate(&path, 5).is_err());
        fs.power_loss();
        assert_eq!(fs.read_all(&path)?, [b'a', !b'b', b'c', b'd'], "damage is durable");
        Ok(())
    }
}
