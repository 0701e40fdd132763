//! Sorted string tables: immutable files of entries in internal order.
//!
//! # Modules
//! - [`block`]: the prefix-compressed block format (data, index and range-tombstone blocks).
//! - [`cache`]: the block cache shared by every table, holding parsed blocks.
//! - [`framing`]: how a block is stored on disk (compression tag, CRC32C).
//! - [`filter`]: the bloom filter over user keys.
//! - [`properties`]: counts and key/seqno ranges.
//! - [`footer`]: block handles and the fixed-size footer.
//! - [`builder`]: writes a table; the file layout is described there.
//! - [`commit`]: creates a table durably (temp name, build, sync, rename, open).
//! - [`index`]: the index in memory, flat arrays searched by internal key.
//! - [`iter`]: the two-level (index → block) scan iterator.
//! - [`concat`](mod@concat): a scan over a sorted run of tables, opening one at a time.
//! - this module: [`Table`], opening a file and point lookups.
//!
//! # Invariants
//! 1. A [`Table`] is immutable once opened. Its index, filter, properties and range
//!    tombstones are read, checked and kept in memory at open; data blocks are read on
//!    demand with positional reads through the shared [`BlockCache`], never mmapped.
//!    The file is opened with [`FileSystem::open_immutable`], so its descriptor may be
//!    closed while unused and reopened on a read (see [`crate::table_cache`]).
//! 2. Every block read from disk has its checksum verified. Damage becomes
//!    [`Error::Corruption`](crate::Error::Corruption) naming the file and an offset. For damage inside a block
//!    (found after the checksum passed, i.e. a writer bug or a forged file) the offset
//!    is the block's plus the position in its decompressed payload.
//! 3. Range tombstones are kept sorted by (start ASC, seqno DESC).
//!
//! # Thread safety
//! `Table` is `Send + Sync` and used behind `Arc<Table>`; all methods take `&self`.

pub mod block;
pub mod builder;
pub mod cache;
pub mod commit;
pub mod concat;
pub mod filter;
pub mod footer;
pub mod framing;
pub(crate) mod index;
pub mod iter;
pub mod properties;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;

use crate::error::{Corruption, Result};
use crate::fs::{FileSystem, RandomAccessFile};
use crate::key::{KeyVersion, RangeTombstone, SeqNo, ValueKind};

use block::{Block, BlockGet};
use cache::BlockCache;
use filter::BloomFilter;
use footer::{BlockHandle, FOOTER_SIZE, Footer};
use framing::decode_block;
use index::BlockIndex;
use properties::Properties;

pub use crate::file_names::table_file_name;
pub use builder::{TableBuilder, TableOptions};
pub use commit::{NewTable, write_table};

/// An open table file.
pub struct Table {
    id: u64,
    path: PathBuf,
    file: Arc<dyn RandomAccessFile>,
    file_size: u64,
    cache: Arc<BlockCache>,
    properties: Properties,
    index: BlockIndex,
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
        // Tables never change once written: the filesystem may close the descriptor
        // while the table is idle (the database's table cache does).
        let file = fs.open_immutable(path)?;
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
        let index = BlockIndex::decode(&index_block, footer.index.offset, footer.filter.offset)
            .map_err(|c| c.in_file(path))?;
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
    ///
    /// A value less than 1/8 of its block is a copy, so that a caller holding it does
    /// not keep the block alive; a larger one is a slice of the block.
    pub fn get(&self, key: &[u8], snapshot: SeqNo) -> Result<Option<KeyVersion>> {
        if !self.may_contain(key) {
            return Ok(None);
        }
        let first = self.index.seek(key, snapshot);
        for i in first..self.index.len() {
            let block = self.data_block(i, true)?;
            match block.get(key, snapshot).map_err(|c| c.in_file(&self.path))? {
                BlockGet::Found(mut found) => {
                    if found.value.len() < block.size() / 8 {
                        found.value = Bytes::copy_from_slice(&found.value);
                    }
                    return Ok(Some(found));
                }
                BlockGet::Absent => return Ok(None),
                BlockGet::PastEnd => continue,
            }
        }
        Ok(None)
    }

    /// Data block `i` of the index, from the cache or the file; a block read from the
    /// file is cached if `fill_cache`.
    fn data_block(&self, i: usize, fill_cache: bool) -> Result<Block> {
        let handle = self.index.handle(i);
        if let Some(block) = self.cache.get(self.id, handle.offset) {
            return Ok(block);
        }
        let data = read_block(self.file.as_ref(), handle, &self.path)?;
        let block = Block::decode(data, handle.offset).map_err(|c| c.in_file(&self.path))?;
        if fill_cache {
            self.cache.insert(self.id, handle.offset, block.clone());
        }
        Ok(block)
    }
}

/// Reads a framed block with a positional read and verifies it.
fn read_block(file: &dyn RandomAccessFile, handle: BlockHandle, path: &Path) -> Result<Bytes> {
    let mut raw = vec![0u8; handle.size as usize];
    file.read_exact_at(&mut raw, handle.offset)?;
    decode_block(raw, handle.offset).map_err(|c| c.in_file(path))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::Error;
    use crate::fs::OsFs;
    use crate::key::Entry;
    use crate::options::Compression;
    use std::ops::Bound;

    pub(crate) fn put(key: &str, seqno: SeqNo, value: &str) -> Entry {
        Entry {
            key: Bytes::copy_from_slice(key.as_bytes()),
            seqno,
            kind: ValueKind::Put,
            value: Bytes::copy_from_slice(value.as_bytes()),
        }
    }

    pub(crate) fn delete(key: &str, seqno: SeqNo) -> Entry {
        Entry { kind: ValueKind::Delete, value: Bytes::new(), ..put(key, seqno, "") }
    }

    fn tombstone(start: &str, end: &str, seqno: SeqNo) -> RangeTombstone {
        RangeTombstone {
            start: Bytes::copy_from_slice(start.as_bytes()),
            end: Bytes::copy_from_slice(end.as_bytes()),
            seqno,
        }
    }

    /// Writes a table of `entries` (sorted here) and `tombstones` at `path`.
    pub(crate) fn write_table(
        path: &Path,
        entries: &[Entry],
        tombstones: &[RangeTombstone],
        options: TableOptions,
    ) -> Properties {
        let mut sorted = entries.to_vec();
        sorted.sort_by(Entry::cmp_internal);
        let mut b = TableBuilder::new(OsFs.create(path).unwrap(), options);
        for e in &sorted {
            b.add(e).unwrap();
        }
        for t in tombstones {
            b.add_range_tombstone(t).unwrap();
        }
        b.finish().unwrap()
    }

    pub(crate) fn open(path: &Path) -> Result<Arc<Table>> {
        Table::open(&OsFs, path, 1, Arc::new(BlockCache::new(1 << 20))).map(Arc::new)
    }

    fn small_blocks(compression: Compression) -> TableOptions {
        TableOptions { block_size: 256, compression, bloom_bits_per_key: 10 }
    }

    /// Every key has versions at seqnos 10, 20, 30 (20 a delete, for odd keys);
    /// "hot" has 200 versions, spanning many blocks.
    fn versioned_entries() -> Vec<Entry> {
        let mut entries = Vec::new();
        for i in 0..500 {
            let key = format!("key{i:04}");
            entries.push(put(&key, 10, &format!("v10-{i}").repeat(3)));
            if i % 2 == 1 {
                entries.push(delete(&key, 20));
            }
            entries.push(put(&key, 30, &format!("v30-{i}")));
        }
        for s in 1..=200 {
            entries.push(put("hot", s * 5, &format!("hot-{s}")));
        }
        entries
    }

    /// The newest version of `key` visible at `snapshot`, from a plain list.
    fn model_get(entries: &[Entry], key: &[u8], snapshot: SeqNo) -> Option<KeyVersion> {
        entries
            .iter()
            .filter(|e| e.key[..] == *key && e.seqno <= snapshot)
            .max_by_key(|e| e.seqno)
            .cloned()
            .map(KeyVersion::from)
    }

    #[test]
    fn tables_are_shared_between_threads() {
        fn send_sync<T: Send + Sync>() {}
        send_sync::<Table>();
        send_sync::<iter::TableIter>();
        send_sync::<BlockCache>();
    }

    #[test]
    fn get_honours_snapshots_across_many_blocks_with_every_compression() {
        let dir = tempfile::tempdir().unwrap();
        let entries = versioned_entries();
        for compression in [Compression::None, Compression::Lz4, Compression::Zstd] {
            let path = dir.path().join(format!("{compression:?}.sst"));
            let props = write_table(&path, &entries, &[], small_blocks(compression));
            let table = open(&path).unwrap();
            assert_eq!(table.properties(), &props);
            assert!(props.data_block_count > 50, "{props:?}");
            assert_eq!(props.entry_count, entries.len() as u64);
            assert_eq!(props.point_delete_count, 250);
            assert_eq!((props.min_seqno, props.max_seqno), (5, 1000));
            assert_eq!(&props.smallest_key[..], b"hot");
            assert_eq!(&props.largest_key[..], b"key0499");
            for i in (0..500).step_by(7) {
                let key = format!("key{i:04}");
                for snapshot in [0, 9, 10, 15, 20, 25, 30, 31, u64::MAX] {
                    let got = table.get(key.as_bytes(), snapshot).unwrap();
                    assert_eq!(
                        got,
                        model_get(&entries, key.as_bytes(), snapshot),
                        "{key}@{snapshot}"
                    );
                }
            }
            for snapshot in (0..1010).step_by(3) {
                let got = table.get(b"hot", snapshot).unwrap();
                assert_eq!(got, model_get(&entries, b"hot", snapshot), "hot@{snapshot}");
            }
            for absent in ["", "a", "key0000x", "key9", "zzz", "ho"] {
                assert_eq!(table.get(absent.as_bytes(), u64::MAX).unwrap(), None);
            }
        }
    }

    /// Keys longer than the 16-byte prefix the index searches on, sharing it across
    /// many blocks: the search falls back to whole keys among equal prefixes.
    #[test]
    fn lookups_and_seeks_find_keys_that_share_the_index_prefix() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.sst");
        let key = |i: usize| format!("a-shared-prefix-{i:05}");
        let mut entries: Vec<Entry> = (0..400).map(|i| put(&key(i), 7, "v")).collect();
        entries.push(put("a-shared-prefi", 7, "shorter")); // a prefix of the others
        entries.push(put("b", 7, "after"));
        let props = write_table(&path, &entries, &[], small_blocks(Compression::None));
        assert!(props.data_block_count > 20, "{props:?}");
        let table = open(&path).unwrap();
        for e in &entries {
            assert_eq!(table.get(&e.key, 7).unwrap(), Some(e.clone().into()), "{:?}", e.key);
        }
        for absent in ["a-shared-prefix-", "a-shared-prefix-00100x", "a-shared-prefix-9"] {
            assert_eq!(table.get(absent.as_bytes(), 7).unwrap(), None, "{absent}");
        }
        let lower = Bytes::from(key(250));
        let first = table.iter(Bound::Included(lower), Bound::Unbounded).next();
        assert_eq!(first.unwrap().unwrap().key, key(250).as_bytes());
    }

    #[test]
    fn bloom_filter_rules_out_absent_keys() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.sst");
        write_table(&path, &versioned_entries(), &[], TableOptions::default());
        let table = open(&path).unwrap();
        assert!(table.may_contain(b"key0042") && table.may_contain(b"hot"));
        let hits = (0..1000).filter(|i| table.may_contain(format!("nokey{i}").as_bytes())).count();
        assert!(hits < 50, "{hits} false positives");
    }

    #[test]
    fn range_tombstones_round_trip_and_widen_the_key_range() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.sst");
        let tombstones = vec![
            tombstone("a", "c", 50),
            tombstone("a", "b", 40),
            tombstone("key0100", "key0200", 35),
            tombstone("x", "zz", 7),
        ];
        for compression in [Compression::None, Compression::Lz4, Compression::Zstd] {
            let props =
                write_table(&path, &versioned_entries(), &tombstones, small_blocks(compression));
            let table = open(&path).unwrap();
            assert_eq!(table.range_tombstones(), &tombstones[..]);
            assert_eq!(props.range_tombstone_count, 4);
            assert_eq!(&props.smallest_key[..], b"a");
            assert_eq!(&props.largest_key[..], b"zz");
            assert_eq!(props.max_seqno, 1000);
            // Point data is unaffected: tombstones are applied by the read path.
            assert_eq!(table.get(b"key0150", 30).unwrap().unwrap().seqno, 30);
        }
        // A table of tombstones only.
        write_table(&path, &[], &tombstones[..1], TableOptions::default());
        let table = open(&path).unwrap();
        assert_eq!(table.range_tombstones(), &tombstones[..1]);
        assert_eq!((table.properties().min_seqno, table.properties().max_seqno), (50, 50));
        assert_eq!(table.iter(Bound::Unbounded, Bound::Unbounded).count(), 0);
    }

    #[test]
    fn empty_table_opens_and_is_empty() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.sst");
        let props = write_table(&path, &[], &[], TableOptions::default());
        assert!(props.created_at_secs > 0);
        assert_eq!(
            props,
            Properties {
                compression: Compression::Lz4,
                created_at_secs: props.created_at_secs,
                ..Properties::default()
            }
        );
        let table = open(&path).unwrap();
        assert_eq!(table.get(b"a", u64::MAX).unwrap(), None);
        assert_eq!(table.iter(Bound::Unbounded, Bound::Unbounded).count(), 0);
        assert_eq!(table.iter(Bound::Unbounded, Bound::Unbounded).rev().count(), 0);
    }

    #[test]
    fn builder_refuses_out_of_order_input() {
        let dir = tempfile::tempdir().unwrap();
        let file = OsFs.create(&dir.path().join("t.sst")).unwrap();
        let mut b = TableBuilder::new(file, TableOptions::default());
        b.add(&put("b", 5, "x")).unwrap();
        for bad in [put("b", 5, "x"), put("b", 6, "x"), put("a", 1, "x")] {
            assert!(matches!(b.add(&bad), Err(Error::InvalidArgument(_))), "{bad:?}");
        }
        b.add(&put("b", 4, "x")).unwrap();
        b.add_range_tombstone(&tombstone("m", "n", 5)).unwrap();
        for bad in [tombstone("m", "n", 5), tombstone("m", "z", 6), tombstone("a", "b", 1)] {
            assert!(matches!(b.add_range_tombstone(&bad), Err(Error::InvalidArgument(_))));
        }
        assert!(matches!(
            b.add_range_tombstone(&tombstone("q", "q", 1)),
            Err(Error::InvalidArgument(_))
        ));
        assert!(b.estimated_size() > 0);
        assert_eq!(b.finish().unwrap().entry_count, 2);
    }

    #[test]
    fn blocks_are_served_from_the_cache() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.sst");
        write_table(&path, &versioned_entries(), &[], small_blocks(Compression::Lz4));
        let cache = Arc::new(BlockCache::new(1 << 20));
        let table = Table::open(&OsFs, &path, 7, Arc::clone(&cache)).unwrap();
        assert_eq!(cache.weight(), 0);
        table.get(b"key0001", 30).unwrap().unwrap();
        let weight = cache.weight();
        assert!(weight > 0);
        table.get(b"key0001", 30).unwrap().unwrap();
        assert_eq!(cache.weight(), weight, "second read of the same block hits the cache");
        // With caching disabled reads still work.
        let table = Table::open(&OsFs, &path, 8, Arc::new(BlockCache::new(0))).unwrap();
        assert_eq!(table.get(b"key0001", 30).unwrap().unwrap().seqno, 30);
    }

    /// Opens `path` and reads everything; the entries, or the first error.
    fn open_and_scan(path: &Path, keys: &[&[u8]]) -> Result<Vec<Entry>> {
        let table = Arc::new(Table::open(&OsFs, path, 1, Arc::new(BlockCache::new(0)))?);
        let mut all: Vec<Entry> =
            table.iter(Bound::Unbounded, Bound::Unbounded).collect::<Result<_>>()?;
        let back: Vec<Entry> =
            table.iter(Bound::Unbounded, Bound::Unbounded).rev().collect::<Result<_>>()?;
        for k in keys {
            if let Some(v) = table.get(k, u64::MAX)? {
                all.push(Entry {
                    key: Bytes::copy_from_slice(k),
                    seqno: v.seqno,
                    kind: v.kind,
                    value: v.value,
                });
            }
        }
        all.extend(back);
        Ok(all)
    }

    fn assert_damage_is_detected(path: &Path, damaged: &[u8], expected: &[Entry], what: &str) {
        let keys: Vec<&[u8]> = vec![b"key0003", b"hot", b"key0010"];
        std::fs::write(path, damaged).unwrap();
        match open_and_scan(path, &keys) {
            Ok(got) => assert_eq!(got, expected, "wrong data after {what}"),
            Err(Error::Corruption { file, .. }) => assert_eq!(file, path, "{what}"),
            Err(e) => panic!("{what}: not a corruption error: {e}"),
        }
    }

    #[test]
    fn every_flipped_byte_or_truncation_is_detected() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.sst");
        let mut entries: Vec<Entry> = versioned_entries().into_iter().step_by(60).collect();
        entries.push(put("hot", 2000, "newest"));
        entries.push(put("key0003", 1, "three"));
        entries.push(delete("key0010", 1));
        let tombstones = [tombstone("b", "c", 9)];
        for compression in [Compression::None, Compression::Lz4, Compression::Zstd] {
            write_table(&path, &entries, &tombstones, small_blocks(compression));
            let good = std::fs::read(&path).unwrap();
            let expected = open_and_scan(&path, &[b"key0003", b"hot", b"key0010"]).unwrap();
            for i in 0..good.len() {
                let mut bad = good.clone();
                bad[i] ^= 0x10;
                assert_damage_is_detected(&path, &bad, &expected, &format!("flip at {i}"));
            }
            for len in 0..good.len() {
                assert_damage_is_detected(&path, &good[..len], &expected, &format!("cut at {len}"));
            }
        }
    }
}
