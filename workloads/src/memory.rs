//! A `BTreeMap` behind a mutex: the reference engine the workloads are tested against.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError};

use crate::engine::{Engine, OpenOptions, Result};

type Map = BTreeMap<Vec<u8>, Vec<u8>>;

/// Closed databases by directory, so `close` then `open` finds the data again.
static CLOSED: Mutex<Option<HashMap<PathBuf, Map>>> = Mutex::new(None);

/// Locks `m`. A panic while it was held (a failed test) leaves a map that is still
/// whole, since every update is a single map operation, so poisoning is ignored.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

#[derive(Debug)]
pub struct MemoryEngine {
    dir: PathBuf,
    map: Mutex<Map>,
}

impl Engine for MemoryEngine {
    fn name(&self) -> String {
        "memory".into()
    }
    fn open(dir: &Path, _options: &OpenOptions) -> Result<Self> {
        // An empty directory, as a real engine leaves one, for the disk-space figures.
        std::fs::create_dir_all(dir)?;
        let map = lock(&CLOSED).get_or_insert_default().remove(dir).unwrap_or_default();
        Ok(MemoryEngine { dir: dir.to_path_buf(), map: Mutex::new(map) })
    }
    fn close(self) -> Result<()> {
        let map = self.map.into_inner().unwrap_or_else(PoisonError::into_inner);
        lock(&CLOSED).get_or_insert_default().insert(self.dir, map);
        Ok(())
    }
    fn put(&self, key: &[u8], value: &[u8], _sync: bool) -> Result<()> {
        lock(&self.map).insert(key.to_vec(), value.to_vec());
        Ok(())
    }
    fn write_batch(&self, pairs: &[(&[u8], &[u8])], _sync: bool) -> Result<()> {
        let mut map = lock(&self.map);
        for (k, v) in pairs {
            map.insert(k.to_vec(), v.to_vec());
        }
        Ok(())
    }
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(lock(&self.map).get(key).cloned())
    }
    fn delete_range(&self, start: &[u8], end: &[u8]) -> Result<()> {
        let mut map = lock(&self.map);
        let doomed: Vec<Vec<u8>> =
            map.range(start.to_vec()..end.to_vec()).map(|(k, _)| k.clone()).collect();
        for k in doomed {
            map.remove(&k);
        }
        Ok(())
    }
    fn scan(&self, start: &[u8], n: usize, visit: &mut dyn FnMut(&[u8], &[u8])) -> Result<usize> {
        let map = lock(&self.map);
        let mut count = 0;
        for (k, v) in map.range(start.to_vec()..).take(n) {
            visit(k, v);
            count += 1;
        }
        Ok(count)
    }
    fn settle(&self) -> Result<()> {
        Ok(())
    }
}
