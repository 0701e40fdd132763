//! A whole table file through `Table::open` (footer, properties, filter, index and
//! range-tombstone blocks), then a scan forward and backward, bounded scans and point
//! lookups.
//!
//! Input: flags byte, then the table file. With bit 0 set the footer's checksum and
//! those of every block the footer and the index name are rewritten first.
//! Forward and backward scans that both finish without an error must yield the same
//! entries in opposite orders.

use std::ops::Bound;
use std::path::Path;
use std::sync::Arc;

use aeternusdb::internals::{
    Block, BlockCache, Entry, FOOTER_SIZE, MAX_SEQNO, Table, decode_block, table_file_name,
};

/// Most entries read by one scan (bounds the work on a large input).
const MAX_ENTRIES: usize = 20_000;

pub fn run(data: &[u8]) {
    let (flags, file) = crate::split_flags(data);
    let mut file = file.to_vec();
    if flags & 1 == 1 {
        fix_checksums(&mut file);
    }
    let path = Path::new("/t").join(table_file_name(1));
    let fs = crate::fs_with_file(&path, &file);
    let Ok(table) = Table::open(&fs, &path, 1, Arc::new(BlockCache::new(64 << 10))) else {
        return;
    };
    let table = Arc::new(table);
    let _ = table.range_tombstones().len();
    let (forward, forward_clean) = scan(table.iter(Bound::Unbounded, Bound::Unbounded));
    let (mut backward, backward_clean) = scan(table.iter(Bound::Unbounded, Bound::Unbounded).rev());
    if forward_clean && backward_clean {
        backward.reverse();
        assert_eq!(forward, backward, "backward scan is the forward scan reversed");
    }
    for e in forward.iter().step_by(forward.len() / 8 + 1) {
        let _ = table.get(&e.key, MAX_SEQNO);
        let _ = table.get(&e.key, e.seqno);
        let lower = Bound::Included(e.key.clone());
        let (from, _) = scan(table.iter(lower, Bound::Unbounded));
        if forward_clean && from.first().is_some_and(|f| f.key < e.key) {
            panic!("a scan from {:?} started at {:?}", e.key, from.first());
        }
        let upper = Bound::Excluded(e.key.clone());
        let _ = scan(table.iter(Bound::Unbounded, upper).rev());
    }
    let _ = table.get(b"", MAX_SEQNO);
    let _ = table.may_contain(b"absent");
}

/// Up to `MAX_ENTRIES` entries, and whether the scan ended without an error.
fn scan(it: impl Iterator<Item = aeternusdb::Result<Entry>>) -> (Vec<Entry>, bool) {
    let mut entries = Vec::new();
    for item in it.take(MAX_ENTRIES) {
        match item {
            Ok(e) => entries.push(e),
            Err(_) => return (entries, false),
        }
    }
    (entries, true)
}

/// A block handle (offset u64 LE, size u32 LE) from 12 bytes.
fn handle(bytes: &[u8]) -> Option<(u64, u32)> {
    let offset = u64::from_le_bytes(bytes.get(..8)?.try_into().ok()?);
    let size = u32::from_le_bytes(bytes.get(8..12)?.try_into().ok()?);
    Some((offset, size))
}

/// Rewrites the checksums of the blocks the index names, of the footer's blocks and
/// of the footer, in that order (so a block that overlaps another keeps the later
/// one's checksum valid).
fn fix_checksums(file: &mut [u8]) {
    let Some(footer_at) = file.len().checked_sub(FOOTER_SIZE) else { return };
    let handles: Vec<(u64, u32)> =
        (0..4).filter_map(|i| handle(&file[footer_at + 12 * i..])).collect();
    if let Some(&(offset, size)) = handles.first() {
        crate::fix_block_checksum(file, offset, size);
        for (offset, size) in data_block_handles(file, offset, size) {
            crate::fix_block_checksum(file, offset, size);
        }
    }
    for &(offset, size) in handles.iter().rev() {
        crate::fix_block_checksum(file, offset, size);
    }
    let crc = crc32c::crc32c(&file[footer_at..footer_at + 52]);
    file[footer_at + 52..footer_at + 56].copy_from_slice(&crc.to_le_bytes());
}

/// The handles in the index block at `offset`, as far as they can be read.
fn data_block_handles(file: &[u8], offset: u64, size: u32) -> Vec<(u64, u32)> {
    let start = usize::try_from(offset).unwrap_or(usize::MAX);
    let Some(raw) = start.checked_add(size as usize).and_then(|end| file.get(start..end)) else {
        return Vec::new();
    };
    let Ok(payload) = decode_block(raw.to_vec(), offset) else { return Vec::new() };
    let Ok(block) = Block::decode(payload, offset) else { return Vec::new() };
    block.iter().take(MAX_ENTRIES).map_while(Result::ok).filter_map(|e| handle(&e.value)).collect()
}
