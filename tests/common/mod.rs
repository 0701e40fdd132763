//! Helpers shared by the integration tests: the one place for them.
//!
//! Each test file includes this with `mod common;` and uses only part of it.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::ops::{Bound, RangeBounds};

use aeternusdb::{Bytes, Options, Result};

/// Options that make every code path run on small data: a 4 KiB write buffer (the
/// minimum, so memtables freeze and flush all the time), 256 B blocks (many blocks
/// per table) and a small block cache (evictions happen).
pub fn tiny_options() -> Options {
    Options {
        write_buffer_size: 4 << 10,
        block_size: 256,
        block_cache_size: 16 << 10,
        ..Options::default()
    }
}

/// The `i`th key of a test: `key000042`, in the same order as `i`.
pub fn key(i: u32) -> Vec<u8> {
    format!("key{i:06}").into_bytes()
}

/// A value naming its key number and version, so a wrong one says where it came from.
pub fn value(i: u32, version: u64) -> Vec<u8> {
    format!("value-{i}-v{version}").into_bytes()
}

/// Drains an engine iterator into owned pairs, failing on the first error.
pub fn collect(iter: impl Iterator<Item = Result<(Bytes, Bytes)>>) -> Vec<(Vec<u8>, Vec<u8>)> {
    iter.map(|item| {
        let (k, v) = item.expect("iterator item");
        (k.to_vec(), v.to_vec())
    })
    .collect()
}

/// What the database should hold: a plain ordered map with the engine's operations.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Model {
    pub map: BTreeMap<Vec<u8>, Vec<u8>>,
}

impl Model {
    pub fn new() -> Model {
        Model::default()
    }

    pub fn put(&mut self, key: &[u8], value: &[u8]) {
        self.map.insert(key.to_vec(), value.to_vec());
    }

    pub fn delete(&mut self, key: &[u8]) {
        self.map.remove(key);
    }

    /// Removes every key in `[start, end)`; nothing if `start >= end`.
    pub fn delete_range(&mut self, start: &[u8], end: &[u8]) {
        if start >= end {
            return;
        }
        let doomed: Vec<Vec<u8>> = self
            .map
            .range::<[u8], _>((Bound::Included(start), Bound::Excluded(end)))
            .map(|(k, _)| k.clone())
            .collect();
        for k in doomed {
            self.map.remove(&k);
        }
    }

    pub fn get(&self, key: &[u8]) -> Option<Vec<u8>> {
        self.map.get(key).cloned()
    }

    /// The pairs within `range`, in order; an empty or inverted range yields nothing
    /// (where `BTreeMap::range` would panic).
    pub fn range<R: RangeBounds<Vec<u8>>>(&self, range: R) -> Vec<(Vec<u8>, Vec<u8>)> {
        let (lower, upper) = (range.start_bound(), range.end_bound());
        let empty = match (lower, upper) {
            (Bound::Included(l), Bound::Included(u)) => l > u,
            (Bound::Included(l) | Bound::Excluded(l), Bound::Excluded(u))
            | (Bound::Excluded(l), Bound::Included(u)) => l >= u,
            _ => false,
        };
        if empty {
            return Vec::new();
        }
        self.map.range::<Vec<u8>, _>((lower, upper)).map(|(k, v)| (k.clone(), v.clone())).collect()
    }

    /// Every pair, in order.
    pub fn all(&self) -> Vec<(Vec<u8>, Vec<u8>)> {
        self.range(..)
    }

    /// The pairs whose key starts with `prefix`, in order.
    pub fn prefix(&self, prefix: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)> {
        self.map
            .range(prefix.to_vec()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }
}
