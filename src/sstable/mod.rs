//! Sorted string tables: immutable files of entries in internal order.
//!
//! # Modules
//! - [`block`]: the prefix-compressed block format (data, index and range-tombstone blocks).
//! - [`framing`]: how a block is stored on disk (compression tag, CRC32C).
//! - [`filter`]: the bloom filter over user keys.
//! - [`properties`]: counts and key/seqno ranges.
//! - [`footer`]: block handles and the fixed-size footer.
//! - [`builder`]: writes a table; the file layout is described there.
//! - [`iter`]: the two-level (index → block) scan iterator.
//! - this module: [`Table`], opening a file and point lookups.
//!
//! # Invariants
//! 1. A [`Table`] is immutable once opened. Its index, filter, properties and range
//!    tombstones are read, checked and kept in memory at open; data blocks are read on
//!    demand with positional reads through the shared [`BlockCache`], never mmapped.
//! 2. Every block read from disk has its checksum verified. Damage becomes
//!    [`Error::Corruption`] naming the file and an offset. For damage inside a block
//!    (found after the checksum passed, i.e. a writer bug or a forged file) the offset
//!    is the block's plus the position in its decompressed payload.
//! 3. Range tombstones are kept sorted by (start ASC, seqno DESC).
//!
//! # Thread safety
//! `Table` is `Send + Sync` and used behind `Arc<Table>`; all methods take `&self`.

pub mod block;
pub mod builder;
pub mod filter;
pub mod footer;
pub mod framing;
pub mod iter;
pub mod properties;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;

use crate::cache::BlockCache;
use crate::coding::Decoder;
use crate::error::{Corruption, Result};
use crate::fs::{FileSystem, RandomAccessFile};
use crate::key::{Entry, RangeTombstone, SeqNo, ValueKind, compare_internal};

use block::Block;
use filter::BloomFilter;
use footer::{BLOCK_HANDLE_SIZE, BlockHandle, FOOTER_SIZE, Footer};
use framing::decode_block;
use properties::Properties;

pub use builder::{TableBuilder, TableOptions};
pub use iter::TableIter;

/// One index entry: a data block and the last internal key in it.
#[derive(Debug, Clone)]
struct IndexEntry {
    last_key: Bytes,
    last_seqno: SeqNo,
    handle: BlockHandle,
}

/// An open table file.
pub struct Table {
    id: u64,
    path: PathBuf,
    file: Arc<dyn RandomAccessFile>,
    file_size: u64,
    cache: Arc<BlockCache>,
    properties: Properties,
    index: Vec<IndexEntry>,
    filter: BloomFilter,
    range_tombstones: Vec<RangeTombstone>,
}

impl std::fmt::Debug for Table {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Table")
            .field("id", &self.id)
            .field("path", &self.path)
            .field("file_size", &self.file_size)
            .field("properties", &self.properties)
            .finish()
    }
}

impl Table {
    /// Opens the table at `path`, reading and checking its footer and metadata blocks.
    ///
    /// `id` must be unique among the tables sharing `cache` (it keys cached blocks).
    pub fn open(
        fs: &dyn FileSystem,
        path: &Path,
        id: u64,
        cache: Arc<BlockCache>,
    ) -> Result<Table> {
        let file = fs.open(path)?;
        let file_size = file.len();
        let corrupt = |offset: u64, message: String| Corruption::new(offset, message).in_file(path);
        let footer_offset = file_size
            .checked_sub(FOOTER_SIZE as u64)
            .ok_or_else(|| corrupt(0, format!("file of {file_size} bytes is too short")))?;
        let mut buf = [0u8; FOOTER_SIZE];
        file.read_exact_at(&mut buf, footer_offset)?;
        let footer = Footer::decode(&buf, footer_offset).map_err(|c| c.in_file(path))?;

        let read = |handle: BlockHandle| read_block(file.as_ref(), handle, path);
        let props_at = footer.properties.offset;
        let properties =
            Properties::decode(&read(footer.properties)?, props_at).map_err(|c| c.in_file(path))?;
        let filter = BloomFilter::decode(read(footer.filter)?, footer.filter.offset)
            .map_err(|c| c.in_file(path))?;

        let index_block =
            Block::decode(read(footer.index)?, footer.index.offset).map_err(|c| c.in_file(path))?;
        let mut index: Vec<IndexEntry> = Vec::new();
        let data_end = footer.filter.offset;
        for entry in index_block.iter() {
            let entry = entry.map_err(|c| c.in_file(path))?;
            let at = footer.index.offset;
            let handle = BlockHandle::decode_from(&mut Decoder::new(&entry.value))
                .filter(|_| entry.value.len() == BLOCK_HANDLE_SIZE)
                .ok_or_else(|| corrupt(at, "bad block handle in index".into()))?;
            let expected_offset = index.last().map_or(0, |e| e.handle.end());
            if handle.offset != expected_offset || handle.end() > data_end {
                return Err(corrupt(at, format!("index entry {handle:?} out of place")));
            }
            if let Some(last) = index.last()
                && compare_internal(&last.last_key, last.last_seqno, &entry.key, entry.seqno)
                    .is_ge()
            {
                return Err(corrupt(at, "index keys out of order".into()));
            }
            index.push(IndexEntry { last_key: entry.key, last_seqno: entry.seqno, handle });
        }
        if index.len() as u64 != properties.data_block_count {
            return Err(corrupt(footer.index.offset, "index and properties disagree".into()));
        }

        let tombstone_block =
            Block::decode(read(footer.range_tombstones)?, footer.range_tombstones.offset)
                .map_err(|c| c.in_file(path))?;
        let mut range_tombstones: Vec<RangeTombstone> = Vec::new();
        for entry in tombstone_block.iter() {
            let entry = entry.map_err(|c| c.in_file(path))?;
            let t = RangeTombstone { start: entry.key, end: entry.value, seqno: entry.seqno };
            let ordered = range_tombstones.last().is_none_or(|last| last.cmp_internal(&t).is_lt());
            if entry.kind != ValueKind::Delete || t.start >= t.end || !ordered {
                return Err(corrupt(footer.range_tombstones.offset, "bad range tombstone".into()));
            }
            range_tombstones.push(t);
        }
        if range_tombstones.len() as u64 != properties.range_tombstone_count {
            return Err(corrupt(
                footer.range_tombstones.offset,
                "range tombstones and properties disagree".into(),
            ));
        }

        Ok(Table {
            id,
            path: path.to_path_buf(),
            file,
            file_size,
            cache,
            properties,
            index,
            filter,
            range_tombstones,
        })
    }

    /// What the table holds.
    pub fn properties(&self) -> &Properties {
        &self.properties
    }

    /// The id the table was opened with.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The table's file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The file's size in bytes.
    pub fn file_size(&self) -> u64 {
        self.file_size
    }

    /// Every range tombstone, sorted by (start ASC, seqno DESC).
    pub fn range_tombstones(&self) -> &[RangeTombstone] {
        &self.range_tombstones
    }

    /// False only if the table certainly holds no version of `key` (bloom filter).
    pub fn may_contain(&self, key: &[u8]) -> bool {
        self.filter.may_contain(key)
    }

    /// The newest version (put or delete) of `key` with seqno `<= snapshot`, if any.
    ///
    /// Range tombstones are not applied; see [`range_tombstones`](Self::range_tombstones).
    pub fn get(&self, key: &[u8], snapshot: SeqNo) -> Result<Option<Entry>> {
        if !self.may_contain(key) {
            return Ok(None);
        }
        let first = self.seek_index(key, snapshot);
        for i in first..self.index.len() {
            let mut it = self.data_block(i)?.iter();
            it.seek(key, snapshot).map_err(|c| c.in_file(&self.path))?;
            match it.next() {
                Some(Ok(e)) => return Ok((e.key[..] == *key).then_some(e)),
                Some(Err(c)) => return Err(c.in_file(&self.path)),
                None => continue,
            }
        }
        Ok(None)
    }

    /// The first data block whose last internal key is `>= (key, seqno)`
    /// (`index.len()` if none).
    fn seek_index(&self, key: &[u8], seqno: SeqNo) -> usize {
        self.index
            .partition_point(|e| compare_internal(&e.last_key, e.last_seqno, key, seqno).is_lt())
    }

    /// Data block `i` of the index, from the cache or the file.
    fn data_block(&self, i: usize) -> Result<Block> {
        let handle = self.index.get(i).map(|e| e.handle).unwrap_or_default();
        let data = match self.cache.get(self.id, handle.offset) {
            Some(data) => data,
            None => {
                let data = read_block(self.file.as_ref(), handle, &self.path)?;
                self.cache.insert(self.id, handle.offset, data.clone());
                data
            }
        };
        Block::decode(data, handle.offset).map_err(|c| c.in_file(&self.path))
    }
}

/// Reads a framed block with a positional read and verifies it.
fn read_block(file: &dyn RandomAccessFile, handle: BlockHandle, path: &Path) -> Result<Bytes> {
    let mut raw = vec![0u8; handle.size as usize];
    file.read_exact_at(&mut raw, handle.offset)?;
    decode_block(&raw, handle.offset).map_err(|c| c.in_file(path))
}
