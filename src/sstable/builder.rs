//! Writes a table file from entries in internal order.
//!
//! # File layout
//! ```text
//! data block* | filter block | range-tombstone block | properties block | index block
//! | footer (fixed size, see `footer`)
//! ```
//! Every block is framed (compression tag + CRC32C, see `framing`). The filter and
//! properties blocks are never compressed; the others use [`TableOptions::compression`].
//!
//! # Invariants
//! 1. Entries arrive in strictly increasing internal order (user key ASC, seqno DESC);
//!    range tombstones in strictly increasing (start ASC, seqno DESC) order. Anything
//!    else is refused with `Error::InvalidArgument` and nothing is added.
//! 2. A data block is cut once it reaches `block_size`, so versions of one key may span
//!    blocks; the index stores each block's last internal key.
//! 3. Output is buffered and handed to the file in appends of about [`WRITE_BUFFER`]
//!    bytes. [`TableBuilder::finish`] syncs the file; until then it is not durable.
//!    Renaming it into place and syncing the directory is [`super::commit`]'s job.
//! 4. After any error the builder's output is unusable: drop it and remove the file.
//! 5. Every block's payload is at most [`MAX_BLOCK_SIZE`], the largest the reader
//!    accepts; that also keeps restart offsets and size prefixes within their `u32`
//!    fields, and the framed size within [`BlockHandle::size`]. A block beyond it (only
//!    pathological tables get there, e.g. hundreds of MiB of range tombstones) fails
//!    with `Error::InvalidArgument` before its handle is written, never truncated.

use std::time::{SystemTime, UNIX_EPOCH};

use crate::error::{Error, Result};
use crate::fs::WritableFile;
use crate::key::{
    Entry, MAX_KEY_SIZE, MAX_SEQNO, MAX_VALUE_SIZE, RangeTombstone, SeqNo, ValueKind,
    compare_internal,
};
use crate::options::{Compression, Options};

use super::block::BlockBuilder;
use super::filter::FilterBuilder;
use super::footer::{BlockHandle, Footer};
use super::framing::{MAX_BLOCK_SIZE, encode_block};
use super::properties::Properties;

/// Bytes gathered in memory before one append to the file.
pub const WRITE_BUFFER: usize = 64 * 1024;

/// How tables are built.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TableOptions {
    /// Target size of a data block before compression.
    pub block_size: usize,
    /// Compression of data, index and range-tombstone blocks.
    pub compression: Compression,
    /// Bloom filter bits per user key; 0 writes no filter.
    pub bloom_bits_per_key: u32,
}

impl From<&Options> for TableOptions {
    fn from(options: &Options) -> Self {
        TableOptions {
            block_size: options.block_size,
            compression: options.compression,
            bloom_bits_per_key: options.bloom_bits_per_key,
        }
    }
}

impl Default for TableOptions {
    fn default() -> Self {
        TableOptions::from(&Options::default())
    }
}

/// Builds one table file. Not thread-safe; one builder per output file.
pub struct TableBuilder {
    file: Box<dyn WritableFile>,
    options: TableOptions,
    /// Bytes not yet handed to the file.
    out: Vec<u8>,
    /// Bytes produced so far (written plus buffered): the next block's offset.
    offset: u64,
    data_block: BlockBuilder,
    index_block: BlockBuilder,
    tombstone_block: BlockBuilder,
    filter: FilterBuilder,
    /// Last entry added: its key and seqno.
    last: Option<(Vec<u8>, SeqNo)>,
    last_tombstone: Option<RangeTombstone>,
    properties: Properties,
}

impl TableBuilder {
    /// A builder writing to `file`, which should be new and empty.
    pub fn new(file: Box<dyn WritableFile>, options: TableOptions) -> Self {
        let offset = file.len();
        TableBuilder {
            file,
            options,
            out: Vec::with_capacity(WRITE_BUFFER + options.block_size),
            offset,
            data_block: BlockBuilder::new(),
            index_block: BlockBuilder::new(),
            tombstone_block: BlockBuilder::new(),
            filter: FilterBuilder::new(options.bloom_bits_per_key),
            last: None,
            last_tombstone: None,
            properties: Properties {
                compression: options.compression,
                min_seqno: SeqNo::MAX,
                ..Properties::default()
            },
        }
    }

    /// Adds a point entry; it must sort after every entry added before.
    pub fn add(&mut self, entry: &Entry) -> Result<()> {
        check_key(&entry.key, entry.seqno)?;
        if entry.value.len() > MAX_VALUE_SIZE {
            return Err(Error::invalid(format!(
                "value of {} bytes is too long",
                entry.value.len()
            )));
        }
        if let Some((key, seqno)) = &self.last
            && compare_internal(&entry.key, entry.seqno, key, *seqno).is_le()
        {
            return Err(Error::invalid(format!(
                "table entries out of order: {:?}@{} after {:?}@{}",
                entry.key,
                entry.seqno,
                bytes::Bytes::copy_from_slice(key),
                seqno
            )));
        }
        let new_user_key = self.last.as_ref().is_none_or(|(k, _)| k[..] != entry.key[..]);
        if new_user_key {
            self.filter.add_key(&entry.key);
        }
        self.data_block.add(&entry.key, entry.seqno, entry.kind, &entry.value);
        match &mut self.last {
            Some((key, seqno)) => {
                // Reuse the buffer: no allocation per entry.
                key.clear();
                key.extend_from_slice(&entry.key);
                *seqno = entry.seqno;
            }
            None => self.last = Some((entry.key.to_vec(), entry.seqno)),
        }

        let p = &mut self.properties;
        widen_smallest(p, &entry.key);
        widen_largest(p, &entry.key);
        p.entry_count += 1;
        p.point_delete_count += u64::from(entry.kind == ValueKind::Delete);
        p.min_seqno = p.min_seqno.min(entry.seqno);
        p.max_seqno = p.max_seqno.max(entry.seqno);
        p.raw_key_bytes += entry.key.len() as u64;
        p.raw_value_bytes += entry.value.len() as u64;

        if self.data_block.estimated_size() >= self.options.block_size {
            self.finish_data_block()?;
        }
        Ok(())
    }

    /// Adds a range tombstone; it must sort after every tombstone added before.
    pub fn add_range_tombstone(&mut self, t: &RangeTombstone) -> Result<()> {
        check_key(&t.start, t.seqno)?;
        check_key(&t.end, t.seqno)?;
        if t.start >= t.end {
            return Err(Error::invalid("range tombstone with start >= end"));
        }
        if let Some(last) = &self.last_tombstone
            && t.cmp_internal(last).is_le()
        {
            return Err(Error::invalid(format!(
                "range tombstones out of order: {:?}@{} after {:?}@{}",
                t.start, t.seqno, last.start, last.seqno
            )));
        }
        self.tombstone_block.add(&t.start, t.seqno, ValueKind::Delete, &t.end);
        let p = &mut self.properties;
        widen_smallest(p, &t.start);
        widen_largest(p, &t.end);
        p.range_tombstone_count += 1;
        p.min_seqno = p.min_seqno.min(t.seqno);
        p.max_seqno = p.max_seqno.max(t.seqno);
        self.last_tombstone = Some(t.clone());
        Ok(())
    }

    /// About how large the file would be if finished now.
    pub fn estimated_size(&self) -> u64 {
        self.offset
            + (self.data_block.estimated_size()
                + self.index_block.estimated_size()
                + self.tombstone_block.estimated_size()
                + self.filter.estimated_size()) as u64
    }

    /// Writes the metadata blocks and footer, syncs the file and returns what the
    /// table holds.
    pub fn finish(mut self) -> Result<Properties> {
        self.finish_data_block()?;
        if self.properties.min_seqno == SeqNo::MAX {
            self.properties.min_seqno = 0;
        }
        // A clock before 1970 is recorded as 0, "unknown".
        self.properties.created_at_secs =
            SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let filter = std::mem::replace(&mut self.filter, FilterBuilder::new(0)).finish();
        let filter = self.write_block("filter", filter, Compression::None)?;
        let tombstones = self.tombstone_block.finish();
        let range_tombstones =
            self.write_block("range-tombstone", tombstones, self.options.compression)?;
        let properties =
            self.write_block("properties", self.properties.encode(), Compression::None)?;
        let index = self.index_block.finish();
        let index = self.write_block("index", index, self.options.compression)?;
        let footer = Footer { index, filter, range_tombstones, properties };
        self.out.extend_from_slice(&footer.encode());
        self.file.append(&self.out)?;
        self.out.clear();
        self.file.sync()?;
        Ok(self.properties)
    }

    fn finish_data_block(&mut self) -> Result<()> {
        let Some((key, seqno)) = &self.last else { return Ok(()) };
        if self.data_block.is_empty() {
            return Ok(());
        }
        let (key, seqno) = (key.clone(), *seqno);
        let block = self.data_block.finish();
        let handle = self.write_block("data", block, self.options.compression)?;
        let mut value = Vec::with_capacity(12);
        handle.encode_to(&mut value);
        self.index_block.add(&key, seqno, ValueKind::Put, &value);
        self.properties.data_block_count += 1;
        Ok(())
    }

    /// Frames and buffers the `what` block, handing full buffers to the file. A block
    /// of at least [`WRITE_BUFFER`] bytes goes to the file as it is: copying it into
    /// the buffer would hold it twice (a large value).
    fn write_block(
        &mut self,
        what: &str,
        payload: Vec<u8>,
        compression: Compression,
    ) -> Result<BlockHandle> {
        let payload_len = payload.len();
        let framed = encode_block(payload, compression);
        let handle = block_handle(what, self.offset, payload_len, framed.len())?;
        self.offset += u64::from(handle.size);
        if framed.len() >= WRITE_BUFFER {
            if !self.out.is_empty() {
                self.file.append(&self.out)?;
                self.out.clear();
            }
            self.file.append(&framed)?;
        } else {
            self.out.extend_from_slice(&framed);
            if self.out.len() >= WRITE_BUFFER {
                self.file.append(&self.out)?;
                self.out.clear();
            }
        }
        Ok(handle)
    }
}

/// The handle of a block of `payload_len` bytes (`framed_len` once framed) written at
/// `offset`, or `Error::InvalidArgument` if the format cannot hold it (invariant 5).
fn block_handle(
    what: &str,
    offset: u64,
    payload_len: usize,
    framed_len: usize,
) -> Result<BlockHandle> {
    let too_large = || {
        Error::invalid(format!(
            "{what} block of {payload_len} bytes exceeds the table format's limit of \
             {MAX_BLOCK_SIZE} bytes per block"
        ))
    };
    if payload_len > MAX_BLOCK_SIZE {
        return Err(too_large());
    }
    let size = u32::try_from(framed_len).map_err(|_| too_large())?;
    if offset.checked_add(u64::from(size)).is_none() {
        return Err(Error::invalid(format!("table offset {offset} + {size} overflows")));
    }
    Ok(BlockHandle { offset, size })
}

fn check_key(key: &[u8], seqno: SeqNo) -> Result<()> {
    if key.len() > MAX_KEY_SIZE {
        return Err(Error::invalid(format!("key of {} bytes is too long", key.len())));
    }
    if seqno > MAX_SEQNO {
        return Err(Error::invalid(format!("seqno {seqno} is above the maximum")));
    }
    Ok(())
}

fn widen_smallest(p: &mut Properties, key: &[u8]) {
    if p.entry_count + p.range_tombstone_count == 0 || key < &p.smallest_key[..] {
        p.smallest_key = bytes::Bytes::copy_from_slice(key);
    }
}

fn widen_largest(p: &mut Properties, key: &[u8]) {
    if p.entry_count + p.range_tombstone_count == 0 || key > &p.largest_key[..] {
        p.largest_key = bytes::Bytes::copy_from_slice(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sstable::framing::TRAILER_SIZE;
    use crate::sstable::tests::put;
    use std::io;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Counts appends and syncs, keeping the bytes in memory.
    struct CountingFile {
        appends: Arc<AtomicUsize>,
        syncs: Arc<AtomicUsize>,
        len: u64,
    }

    impl WritableFile for CountingFile {
        fn append(&mut self, data: &[u8]) -> io::Result<()> {
            self.appends.fetch_add(1, Ordering::Relaxed);
            self.len += data.len() as u64;
            Ok(())
        }

        fn sync(&mut self) -> io::Result<()> {
            self.syncs.fetch_add(1, Ordering::Relaxed);
            Ok(())
        }

        fn len(&self) -> u64 {
            self.len
        }
    }

    #[test]
    fn output_is_buffered_into_few_appends_and_synced() {
        let (appends, syncs) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let file = CountingFile { appends: appends.clone(), syncs: syncs.clone(), len: 0 };
        let mut b = TableBuilder::new(Box::new(file), TableOptions::default());
        for i in 0..20_000 {
            b.add(&put(&format!("key{i:08}"), 1, &format!("value{i}"))).unwrap();
        }
        let estimate = b.estimated_size();
        b.finish().unwrap();
        let appends = appends.load(Ordering::Relaxed);
        assert!(
            appends >= 2 && (appends as u64) <= estimate / WRITE_BUFFER as u64 + 2,
            "{appends}"
        );
        assert_eq!(syncs.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn blocks_beyond_the_format_limits_are_refused() {
        let ok = block_handle("data", 7, MAX_BLOCK_SIZE, MAX_BLOCK_SIZE + 5).unwrap();
        assert_eq!((ok.offset, ok.size as usize), (7, MAX_BLOCK_SIZE + 5));
        // The limit is what the reader decompresses; restart offsets and size prefixes
        // (u32) hold anything up to it.
        const _: () = assert!(MAX_BLOCK_SIZE + TRAILER_SIZE < u32::MAX as usize);
        let too_large = [
            (0, MAX_BLOCK_SIZE + 1, 100),
            (0, 100, u32::MAX as usize + 1),
            (0, u32::MAX as usize + 1, u32::MAX as usize - 10),
            (u64::MAX - 10, 100, 100),
        ];
        for (offset, payload, framed) in too_large {
            let e = block_handle("index", offset, payload, framed).unwrap_err();
            assert!(matches!(e, Error::InvalidArgument(_)), "{e}");
        }
        let e = block_handle("range-tombstone", 0, MAX_BLOCK_SIZE + 1, 10).unwrap_err();
        assert!(e.to_string().contains("range-tombstone block of 536870913 bytes"), "{e}");
    }

    #[test]
    fn large_blocks_between_small_ones_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.sst");
        let large = |i: usize| format!("{i}").repeat(WRITE_BUFFER);
        let mut entries = Vec::new();
        for i in 0..30 {
            let value = if i % 3 == 0 { large(i) } else { format!("small{i}") };
            entries.push(put(&format!("key{i:02}"), 1, &value));
        }
        let options = TableOptions { compression: Compression::None, ..TableOptions::default() };
        crate::sstable::tests::write_table(&path, &entries, &[], options);
        let table = crate::sstable::tests::open(&path).unwrap();
        for e in &entries {
            assert_eq!(table.get(&e.key, 1).unwrap(), Some(e.clone().into()));
        }
    }

    #[test]
    fn options_come_from_database_options() {
        let options = Options { block_size: 8192, bloom_bits_per_key: 7, ..Options::default() };
        let t = TableOptions::from(&options);
        assert_eq!(
            (t.block_size, t.bloom_bits_per_key, t.compression),
            (8192, 7, Compression::Lz4)
        );
    }
}
