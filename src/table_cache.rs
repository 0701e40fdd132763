//! The table cache: file descriptors as a bounded resource.
//!
//! Every open table used to hold its file open, so a database of more tables than the
//! process's descriptor limit (`ulimit -n`) could not create its next WAL segment or
//! table, and writes stopped. [`TableCache`] keeps at most
//! [`Options::max_open_files`](crate::Options::max_open_files) table descriptors open,
//! least recently used out first, and reopens a table's file by path when a read needs
//! a closed one (LevelDB's `TableCache`). [`CachingFs`] is the filesystem a database
//! works through: [`FileSystem::open_immutable`] (how tables are opened) hands out such
//! reopenable files, and every operation that takes a descriptor (`open`, `create`,
//! `list_dir`, `sync_dir`, `try_lock`, `read_all`) is retried after closing cached
//! descriptors when it fails with `EMFILE` or `ENFILE`.
//!
//! # What is cached, and why
//! Only descriptors. A [`Table`](crate::sstable::Table) keeps its index, bloom filter,
//! properties and range tombstones in memory from open to drop, as before; the file it
//! reads blocks through is a [`CachedFile`], a path plus a key into this cache. Caching
//! whole tables (and rereading metadata on a miss) would bound metadata memory too, but
//! every version, iterator and compaction holds `Arc<Table>`, so evicting a table would
//! need a second indirection on every read, and a miss would cost an index and filter
//! read, checksum and decode instead of one `open`. Bounding metadata memory belongs to
//! a memory budget, not to the descriptor limit.
//!
//! # Invariants
//! 1. At most `capacity` descriptors are in the cache. A read holds the descriptor it
//!    uses for the duration of one `pread`, so a descriptor evicted meanwhile closes
//!    when that read ends: the open count exceeds `capacity` by at most the reads in
//!    flight.
//! 2. A [`CachedFile`] is only ever reopened by its own path, and only for a file that
//!    is never modified, renamed over or removed while the handle lives (the promise of
//!    `open_immutable`; table names are never reused). A reopened file whose length
//!    differs from the first open's is an error, never read.
//! 3. Dropping a [`CachedFile`] closes its cached descriptor, so an obsolete table's
//!    disk space is freed as soon as its last reader goes.
//! 4. No descriptor is opened or closed while the cache's lock is held: opening may
//!    need to evict (under the lock), and a `close` can be slow.
//! 5. Running out of descriptors (`EMFILE`, `ENFILE`) is retried while the cache holds
//!    something to close. Each time, the least recently used half of the cache is
//!    closed and the capacity lowered to what stays: the limit the process actually
//!    has is below `max_open_files`, and the cache should not climb back into it and
//!    take descriptors from the rest of the process again. The lowered capacity holds
//!    until the database is reopened.
//!
//! # Thread safety
//! Every method takes `&self`; one mutex guards the map, held only for map updates.
//! It is taken only on a block-cache miss, right before a `pread`.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use parking_lot::Mutex;

use crate::fs::{FileLock, FileSystem, RandomAccessFile, WritableFile};

/// `EMFILE` (this process is at its descriptor limit) and `ENFILE` (the system is at
/// its limit): the values Linux and the BSDs share.
const EMFILE: i32 = 24;
const ENFILE: i32 = 23;

/// The capacity is never lowered below this: with fewer, nearly every read would reopen
/// its file. A process that cannot spare this many still reads, closing the cache's
/// descriptors again whenever an open runs out.
const MIN_LOWERED_CAPACITY: usize = 8;

/// True if `error` says no descriptor is left, so closing some makes a retry succeed.
pub fn is_out_of_descriptors(error: &io::Error) -> bool {
    matches!(error.raw_os_error(), Some(EMFILE | ENFILE))
}

/// A bounded, least-recently-used set of open table files.
pub struct TableCache {
    /// The filesystem files are (re)opened from, without retries of its own.
    fs: Arc<dyn FileSystem>,
    /// Distinguishes the [`CachedFile`]s; never reused.
    next_key: AtomicU64,
    /// Set by [`close`](TableCache::close).
    closed: AtomicBool,
    lru: Mutex<Lru>,
}

impl fmt::Debug for TableCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let lru = self.lru.lock();
        f.debug_struct("TableCache")
            .field("capacity", &lru.capacity)
            .field("open", &lru.files.len())
            .finish()
    }
}

/// The cached descriptors by key, and the keys by last use.
struct Lru {
    capacity: usize,
    /// Key → (file, tick of its last use).
    files: HashMap<u64, (Arc<dyn RandomAccessFile>, u64)>,
    /// Tick of last use → key, oldest first.
    by_use: BTreeMap<u64, u64>,
    tick: u64,
}

/// Descriptors taken out of the cache, closed when dropped (after the lock is released).
type Evicted = Vec<Arc<dyn RandomAccessFile>>;

impl Lru {
    fn touch(&mut self, key: u64) -> Option<Arc<dyn RandomAccessFile>> {
        self.tick += 1;
        let (file, last_use) = self.files.get_mut(&key)?;
        self.by_use.remove(last_use);
        *last_use = self.tick;
        self.by_use.insert(self.tick, key);
        Some(Arc::clone(file))
    }

    fn insert(&mut self, key: u64, file: Arc<dyn RandomAccessFile>) -> Evicted {
        let mut evicted = self.remove(key).into_iter().collect::<Evicted>();
        self.tick += 1;
        self.files.insert(key, (file, self.tick));
        self.by_use.insert(self.tick, key);
        evicted.extend(self.shrink_to(self.capacity));
        evicted
    }

    fn remove(&mut self, key: u64) -> Option<Arc<dyn RandomAccessFile>> {
        let (file, last_use) = self.files.remove(&key)?;
        self.by_use.remove(&last_use);
        Some(file)
    }

    /// Evicts the least recently used files until at most `len` remain.
    fn shrink_to(&mut self, len: usize) -> Evicted {
        let mut evicted = Evicted::new();
        while self.files.len() > len {
            let Some((_, key)) = self.by_use.pop_first() else { break };
            evicted.extend(self.files.remove(&key).map(|(file, _)| file));
        }
        evicted
    }
}

impl TableCache {
    /// A cache of at most `capacity` open files of `fs`.
    pub fn new(fs: Arc<dyn FileSystem>, capacity: usize) -> Arc<TableCache> {
        let lru = Lru { capacity, files: HashMap::new(), by_use: BTreeMap::new(), tick: 0 };
        Arc::new(TableCache {
            fs,
            next_key: AtomicU64::new(0),
            closed: AtomicBool::new(false),
            lru: Mutex::new(lru),
        })
    }

    /// Descriptors in the cache now.
    pub fn open_files(&self) -> usize {
        self.lru.lock().files.len()
    }

    /// Runs `op`, retrying it after [`release_descriptors`](Self::release_descriptors)
    /// for as long as it runs out of descriptors and the cache has some to close.
    pub fn retry<T>(&self, mut op: impl FnMut() -> io::Result<T>) -> io::Result<T> {
        loop {
            match op() {
                Err(e) if is_out_of_descriptors(&e) && self.release_descriptors() => continue,
                result => return result,
            }
        }
    }

    /// Closes the least recently used half of the cached descriptors (at least one)
    /// and lowers the capacity to what is left (invariant 5); false if the cache was
    /// empty.
    pub fn release_descriptors(&self) -> bool {
        let evicted = {
            let mut lru = self.lru.lock();
            let keep = lru.files.len() / 2;
            lru.capacity = lru.capacity.min(keep.max(MIN_LOWERED_CAPACITY));
            lru.shrink_to(keep)
        };
        !evicted.is_empty()
    }

    /// Opens `path`, a file that does not change while the handle lives, as a file
    /// whose descriptor this cache may close and reopen.
    pub fn open(self: &Arc<Self>, path: &Path) -> io::Result<Arc<dyn RandomAccessFile>> {
        let file = self.retry(|| self.fs.open(path))?;
        let key = self.next_key.fetch_add(1, Ordering::Relaxed);
        let len = file.len();
        drop(self.lru.lock().insert(key, file));
        Ok(Arc::new(CachedFile { cache: Arc::clone(self), key, path: path.to_path_buf(), len }))
    }

    /// After this, closed descriptors are not reopened: the directory belongs to the
    /// next instance, which may have removed the file or put another under its name.
    pub fn close(&self) {
        self.closed.store(true, Ordering::Release);
    }

    /// The open file of `key`, reopened from `path` if it was closed.
    fn file(&self, key: u64, path: &Path, len: u64) -> io::Result<Arc<dyn RandomAccessFile>> {
        if let Some(file) = self.lru.lock().touch(key) {
            return Ok(file);
        }
        if self.closed.load(Ordering::Acquire) {
            return Err(io::Error::other(format!(
                "{} cannot be read: the database was closed",
                path.display()
            )));
        }
        let file = self.retry(|| self.fs.open(path))?;
        if file.len() != len {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "{} was {len} bytes when opened and is {} now: a table file changed",
                    path.display(),
                    file.len()
                ),
            ));
        }
        drop(self.lru.lock().insert(key, Arc::clone(&file)));
        Ok(file)
    }

    fn forget(&self, key: u64) {
        let evicted = self.lru.lock().remove(key);
        drop(evicted);
    }
}

/// A table file read through the [`TableCache`]: its descriptor may be closed while
/// unused and is reopened by path on the next read.
struct CachedFile {
    cache: Arc<TableCache>,
    key: u64,
    path: PathBuf,
    len: u64,
}

impl RandomAccessFile for CachedFile {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.cache.file(self.key, &self.path, self.len)?.read_exact_at(buf, offset)
    }

    fn len(&self) -> u64 {
        self.len
    }
}

impl Drop for CachedFile {
    fn drop(&mut self) {
        self.cache.forget(self.key);
    }
}

/// The filesystem a database works through: tables via the [`TableCache`], and every
/// operation that takes a descriptor retried when the process has none left.
pub struct CachingFs {
    inner: Arc<dyn FileSystem>,
    tables: Arc<TableCache>,
}

impl fmt::Debug for CachingFs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CachingFs")
            .field("inner", &self.inner)
            .field("tables", &self.tables)
            .finish()
    }
}

impl CachingFs {
    /// `inner`, with at most `max_open_files` table files kept open.
    pub fn new(inner: Arc<dyn FileSystem>, max_open_files: usize) -> CachingFs {
        let tables = TableCache::new(Arc::clone(&inner), max_open_files);
        CachingFs { inner, tables }
    }

    /// The cache the table files are kept in.
    pub fn table_cache(&self) -> &Arc<TableCache> {
        &self.tables
    }
}

impl FileSystem for CachingFs {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        self.inner.create_dir_all(dir)
    }

    fn create(&self, path: &Path) -> io::Result<Box<dyn WritableFile>> {
        self.tables.retry(|| self.inner.create(path))
    }

    fn open(&self, path: &Path) -> io::Result<Arc<dyn RandomAccessFile>> {
        self.tables.retry(|| self.inner.open(path))
    }

    fn open_immutable(&self, path: &Path) -> io::Result<Arc<dyn RandomAccessFile>> {
        self.tables.open(path)
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.inner.rename(from, to)
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        self.inner.remove_file(path)
    }

    fn list_dir(&self, dir: &Path) -> io::Result<Vec<String>> {
        self.tables.retry(|| self.inner.list_dir(dir))
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        // Out of descriptors, the directory was never opened, so nothing was synced
        // and retrying is not retrying a failed fsync.
        self.tables.retry(|| self.inner.sync_dir(dir))
    }

    fn set_len(&self, path: &Path, len: u64) -> io::Result<()> {
        // Out of descriptors, the file was never opened, so nothing was cut or synced.
        self.tables.retry(|| self.inner.set_len(path, len))
    }

    fn try_lock(&self, path: &Path) -> io::Result<Option<Box<dyn FileLock>>> {
        self.tables.retry(|| self.inner.try_lock(path))
    }

    fn exists(&self, path: &Path) -> bool {
        self.inner.exists(path)
    }

    fn read_all(&self, path: &Path) -> io::Result<Vec<u8>> {
        self.tables.retry(|| self.inner.read_all(path))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fs::FaultFs;
    use std::sync::atomic::AtomicUsize;

    /// An in-memory filesystem with a descriptor limit: `open`, `create` and `sync_dir`
    /// fail with `EMFILE` while `limit` of the files it handed out are alive.
    #[derive(Debug, Clone)]
    struct LimitedFs {
        inner: FaultFs,
        open: Arc<AtomicUsize>,
        limit: usize,
    }

    struct Counted<F> {
        file: F,
        open: Arc<AtomicUsize>,
    }

    impl<F> Drop for Counted<F> {
        fn drop(&mut self) {
            self.open.fetch_sub(1, Ordering::SeqCst);
        }
    }

    impl RandomAccessFile for Counted<Arc<dyn RandomAccessFile>> {
        fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
            self.file.read_exact_at(buf, offset)
        }
        fn len(&self) -> u64 {
            self.file.len()
        }
    }

    impl WritableFile for Counted<Box<dyn WritableFile>> {
        fn append(&mut self, data: &[u8]) -> io::Result<()> {
            self.file.append(data)
        }
        fn sync(&mut self) -> io::Result<()> {
            self.file.sync()
        }
        fn len(&self) -> u64 {
            self.file.len()
        }
    }

    impl LimitedFs {
        fn new(limit: usize) -> LimitedFs {
            LimitedFs { inner: FaultFs::new(), open: Arc::default(), limit }
        }

        fn open_count(&self) -> usize {
            self.open.load(Ordering::SeqCst)
        }

        /// Takes a descriptor, or fails as the OS does at its limit.
        fn take(&self) -> io::Result<Arc<AtomicUsize>> {
            let taken = self.open.fetch_add(1, Ordering::SeqCst);
            if taken >= self.limit {
                self.open.fetch_sub(1, Ordering::SeqCst);
                return Err(io::Error::from_raw_os_error(EMFILE));
            }
            Ok(Arc::clone(&self.open))
        }

        fn write(&self, path: &Path, data: &[u8]) {
            let mut file = self.inner.create(path).unwrap();
            file.append(data).unwrap();
            file.sync().unwrap();
        }
    }

    impl FileSystem for LimitedFs {
        fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
            self.inner.create_dir_all(dir)
        }
        fn create(&self, path: &Path) -> io::Result<Box<dyn WritableFile>> {
            let open = self.take()?;
            Ok(Box::new(Counted { file: self.inner.create(path)?, open }))
        }
        fn open(&self, path: &Path) -> io::Result<Arc<dyn RandomAccessFile>> {
            let open = self.take()?;
            Ok(Arc::new(Counted { file: self.inner.open(path)?, open }))
        }
        fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
            self.inner.rename(from, to)
        }
        fn remove_file(&self, path: &Path) -> io::Result<()> {
            self.inner.remove_file(path)
        }
        fn list_dir(&self, dir: &Path) -> io::Result<Vec<String>> {
            self.inner.list_dir(dir)
        }
        fn sync_dir(&self, dir: &Path) -> io::Result<()> {
            // Opening the directory takes a descriptor for the duration of the call.
            drop(Counted { file: (), open: self.take()? });
            self.inner.sync_dir(dir)
        }
        fn set_len(&self, path: &Path, len: u64) -> io::Result<()> {
            drop(Counted { file: (), open: self.take()? });
            self.inner.set_len(path, len)
        }
        fn try_lock(&self, path: &Path) -> io::Result<Option<Box<dyn FileLock>>> {
            self.inner.try_lock(path)
        }
    }

    /// `n` files `/db/<i>.sst` holding `contents(i)`.
    fn setup(fs: &LimitedFs, n: usize) -> Vec<PathBuf> {
        fs.create_dir_all(Path::new("/db")).unwrap();
        (0..n)
            .map(|i| {
                let path = PathBuf::from(format!("/db/{i}.sst"));
                fs.write(&path, contents(i).as_bytes());
                path
            })
            .collect()
    }

    fn contents(i: usize) -> String {
        format!("table {i:04}")
    }

    fn read(file: &dyn RandomAccessFile) -> io::Result<String> {
        let mut buf = vec![0; file.len() as usize];
        file.read_exact_at(&mut buf, 0)?;
        Ok(String::from_utf8(buf).unwrap())
    }

    #[test]
    fn keeps_at_most_capacity_descriptors_and_reopens_on_demand() {
        let fs = LimitedFs::new(1000);
        let paths = setup(&fs, 50);
        let caching = CachingFs::new(Arc::new(fs.clone()), 8);
        let files: Vec<_> = paths.iter().map(|p| caching.open_immutable(p).unwrap()).collect();
        assert_eq!(fs.open_count(), 8);
        for round in 0..3 {
            for (i, file) in files.iter().enumerate() {
                assert_eq!(read(file.as_ref()).unwrap(), contents(i), "round {round}");
                assert!(fs.open_count() <= 8);
            }
        }
        // The most recently used stay open: reading them again opens nothing.
        let cache = caching.table_cache();
        assert_eq!(cache.open_files(), 8);
        for file in &files[42..] {
            read(file.as_ref()).unwrap();
        }
        assert_eq!(cache.open_files(), 8);
        // A dropped file closes its descriptor at once.
        drop(files);
        assert_eq!((fs.open_count(), cache.open_files()), (0, 0));
    }

    #[test]
    fn out_of_descriptors_is_retried_after_closing_cached_files() {
        // The process allows 10 descriptors, the cache would keep 100.
        let fs = LimitedFs::new(10);
        let paths = setup(&fs, 40);
        let caching = CachingFs::new(Arc::new(fs.clone()), 100);
        let files: Vec<_> = paths.iter().map(|p| caching.open_immutable(p).unwrap()).collect();
        for (i, file) in files.iter().enumerate() {
            assert_eq!(read(file.as_ref()).unwrap(), contents(i));
        }
        // The cache learnt the limit: it keeps half of what it held when it ran out.
        let cache = caching.table_cache();
        assert_eq!(cache.lru.lock().capacity, MIN_LOWERED_CAPACITY);
        assert!(fs.open_count() <= 10);
        // Every other open still succeeds, the cached files making room.
        let mut writers = Vec::new();
        for i in 0..10 {
            if i % 3 == 0 {
                caching.sync_dir(Path::new("/db")).unwrap();
            }
            writers.push(caching.create(Path::new(&format!("/db/{i}.log"))).unwrap());
        }
        assert_eq!(cache.open_files(), 0);
        // With nothing left to close, running out is an error, not a loop.
        let err = caching.create(Path::new("/db/one-too-many")).err().unwrap();
        assert!(is_out_of_descriptors(&err), "{err}");
        let err = read(files[0].as_ref()).unwrap_err();
        assert!(is_out_of_descriptors(&err), "{err}");
        drop(writers);
        assert_eq!(read(files[0].as_ref()).unwrap(), contents(0));
    }

    #[test]
    fn a_table_file_that_changed_is_not_read() {
        let fs = LimitedFs::new(1000);
        let paths = setup(&fs, 20);
        let caching = CachingFs::new(Arc::new(fs.clone()), 16);
        let files: Vec<_> = paths.iter().map(|p| caching.open_immutable(p).unwrap()).collect();
        // File 0 was evicted by the later opens; its path now names a longer file.
        fs.write(&paths[0], b"something else entirely");
        let err = read(files[0].as_ref()).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData, "{err}");
        assert_eq!(read(files[19].as_ref()).unwrap(), contents(19));
    }

    #[test]
    fn only_descriptor_exhaustion_is_retried() {
        assert!(is_out_of_descriptors(&io::Error::from_raw_os_error(EMFILE)));
        assert!(is_out_of_descriptors(&io::Error::from_raw_os_error(ENFILE)));
        assert!(!is_out_of_descriptors(&io::Error::from_raw_os_error(28))); // ENOSPC
        let cache = TableCache::new(Arc::new(LimitedFs::new(1)), 4);
        let mut attempts = 0;
        let result: io::Result<()> = cache.retry(|| {
            attempts += 1;
            Err(io::Error::from_raw_os_error(EMFILE))
        });
        assert!(result.is_err());
        assert_eq!(attempts, 1, "an empty cache has nothing to close");
    }
}
