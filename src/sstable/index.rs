//! A table's index in memory: for each data block, its last internal key and where it
//! lies in the file, searchable by internal key.
//!
//! # Invariants (checked by [`BlockIndex::decode`])
//! 1. Last keys strictly increase in internal order (user key ASC, seqno DESC).
//! 2. Blocks are contiguous from offset 0 and end at or before the data's end, so
//!    block `i` starts where block `i - 1` ends and only the ends are kept.
//!
//! # Layout in memory
//! Flat arrays, not an entry per block: the keys concatenated in one buffer with
//! their ends, the seqnos, the block ends and each key's [`key_prefix`]: the key's bytes
//! and 36 bytes per block, where an entry per block with a key allocated apart took
//! about 110 (`heaptrack` of a 10,000,000-key load: 31 MiB of indexes). The search
//! runs on the dense prefixes and reads keys only among equal ones, so a lookup
//! misses the CPU cache a few times, not once per step (profiled: a search of
//! 80-byte entries was 16% of a random get).

use crate::coding::Decoder;
use crate::error::Corruption;
use crate::key::{SeqNo, compare_internal, key_prefix};

use super::block::Block;
use super::footer::{BLOCK_HANDLE_SIZE, BlockHandle};

/// The data blocks of a table, in key order.
#[derive(Debug, Default)]
pub(crate) struct BlockIndex {
    /// Every block's last user key, concatenated.
    keys: Vec<u8>,
    /// `key_ends[i]`: where block `i`'s key ends in `keys`.
    key_ends: Vec<u32>,
    /// Block `i`'s last key's seqno.
    seqnos: Vec<SeqNo>,
    /// `ends[i]`: the file offset just past block `i` (invariant 2).
    ends: Vec<u64>,
    /// `key_prefix` of block `i`'s last key.
    prefixes: Vec<u128>,
}

impl BlockIndex {
    /// Reads the index block `block` (at file offset `at`) of a table whose data
    /// blocks end at `data_end`, checking both invariants.
    pub(crate) fn decode(block: &Block, at: u64, data_end: u64) -> Result<Self, Corruption> {
        let bad = |message: String| Corruption::new(at, message);
        let mut index = BlockIndex::default();
        for entry in block.iter() {
            let entry = entry?;
            let handle = BlockHandle::decode_from(&mut Decoder::new(&entry.value))
                .filter(|_| entry.value.len() == BLOCK_HANDLE_SIZE)
                .ok_or_else(|| bad("bad block handle in index".into()))?;
            let expected_offset = index.ends.last().copied().unwrap_or(0);
            if handle.offset != expected_offset || handle.end() > data_end {
                return Err(bad(format!("index entry {handle:?} out of place")));
            }
            if let Some(last) = index.len().checked_sub(1)
                && compare_internal(index.key(last), index.seqnos[last], &entry.key, entry.seqno)
                    .is_ge()
            {
                return Err(bad("index keys out of order".into()));
            }
            index.keys.extend_from_slice(&entry.key);
            let key_end = u32::try_from(index.keys.len())
                .map_err(|_| bad("index keys longer than 4 GiB".into()))?;
            index.key_ends.push(key_end);
            index.seqnos.push(entry.seqno);
            index.ends.push(handle.end());
            index.prefixes.push(key_prefix(&entry.key));
        }
        // Tables live long: hold no growth slack.
        index.keys.shrink_to_fit();
        index.key_ends.shrink_to_fit();
        index.seqnos.shrink_to_fit();
        index.ends.shrink_to_fit();
        index.prefixes.shrink_to_fit();
        Ok(index)
    }

    /// The number of data blocks.
    pub(crate) fn len(&self) -> usize {
        self.ends.len()
    }

    /// True if the table has no data block.
    pub(super) fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// Where block `i` lies in the file (an empty handle past the end).
    pub(crate) fn handle(&self, i: usize) -> BlockHandle {
        let Some(&end) = self.ends.get(i) else { return BlockHandle::default() };
        let offset = i.checked_sub(1).map_or(0, |before| self.ends[before]);
        // Contiguous blocks (invariant 2) of framed sizes that fit a `u32`.
        let size = u32::try_from(end - offset).unwrap_or(u32::MAX);
        BlockHandle { offset, size }
    }

    /// The last user key of block `i < len()`.
    fn key(&self, i: usize) -> &[u8] {
        let start = i.checked_sub(1).map_or(0, |before| self.key_ends[before] as usize);
        &self.keys[start..self.key_ends[i] as usize]
    }

    /// The first block whose last internal key is `>= (key, seqno)` (`len()` if none).
    pub(crate) fn seek(&self, key: &[u8], seqno: SeqNo) -> usize {
        // Prefixes order blocks wherever they differ; only equal ones need the keys.
        let prefix = key_prefix(key);
        let below = self.prefixes.partition_point(|p| *p < prefix);
        let rest = self.prefixes.get(below..).unwrap_or_default();
        let equal = rest.partition_point(|p| *p == prefix);
        let mut candidates = below..below + equal;
        // A binary search over the candidate blocks' full keys.
        while !candidates.is_empty() {
            let mid = candidates.start + candidates.len() / 2;
            if compare_internal(self.key(mid), self.seqnos[mid], key, seqno).is_lt() {
                candidates.start = mid + 1;
            } else {
                candidates.end = mid;
            }
        }
        candidates.start
    }

    /// Bytes held, for tests of the layout.
    #[cfg(test)]
    fn heap_bytes(&self) -> usize {
        self.keys.capacity()
            + 4 * self.key_ends.capacity()
            + 8 * self.seqnos.capacity()
            + 8 * self.ends.capacity()
            + 16 * self.prefixes.capacity()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key::{MAX_SEQNO, ValueKind};
    use crate::sstable::block::BlockBuilder;
    use bytes::Bytes;

    /// An index block over `keys` (user key, seqno), each block 100 bytes long.
    fn index_block(keys: &[(&str, SeqNo)]) -> Block {
        let mut builder = BlockBuilder::new();
        for (i, (key, seqno)) in keys.iter().enumerate() {
            let mut value = Vec::new();
            BlockHandle { offset: 100 * i as u64, size: 100 }.encode_to(&mut value);
            builder.add(key.as_bytes(), *seqno, ValueKind::Put, &value);
        }
        Block::decode(Bytes::from(builder.finish()), 0).unwrap()
    }

    #[test]
    fn seeks_find_the_first_block_that_can_hold_a_key() {
        // Two blocks end in versions of "b": seqno 9 ends the first, 5 the second.
        let keys = [("a", 3), ("b", 9), ("b", 5), ("longer-than-sixteen-bytes-1", 1), ("z", 1)];
        let index = BlockIndex::decode(&index_block(&keys), 0, 1_000).unwrap();
        assert_eq!(index.len(), 5);
        assert_eq!(index.seek(b"", MAX_SEQNO), 0);
        assert_eq!(index.seek(b"a", MAX_SEQNO), 0);
        assert_eq!(index.seek(b"a", 2), 1);
        assert_eq!(index.seek(b"b", MAX_SEQNO), 1);
        assert_eq!(index.seek(b"b", 9), 1);
        assert_eq!(index.seek(b"b", 8), 2);
        assert_eq!(index.seek(b"b", 0), 3);
        assert_eq!(index.seek(b"longer-than-sixteen-bytes-0", MAX_SEQNO), 3);
        assert_eq!(index.seek(b"longer-than-sixteen-bytes-2", MAX_SEQNO), 4);
        assert_eq!(index.seek(b"zz", MAX_SEQNO), 5);
        assert_eq!(index.handle(2), BlockHandle { offset: 200, size: 100 });
        assert_eq!(index.handle(5), BlockHandle::default());
        // The keys' bytes and 36 bytes a block, nothing per block besides.
        let key_bytes: usize = keys.iter().map(|(k, _)| k.len()).sum();
        assert_eq!(index.heap_bytes(), key_bytes + keys.len() * (4 + 8 + 8 + 16));
    }

    #[test]
    fn blocks_out_of_place_or_order_are_corruption() {
        let out_of_order = index_block(&[("b", 1), ("a", 1)]);
        let err = BlockIndex::decode(&out_of_order, 7, 1_000).unwrap_err();
        assert!(format!("{err:?}").contains("out of order"), "{err:?}");
        let past_the_data = index_block(&[("a", 1), ("b", 1)]);
        let err = BlockIndex::decode(&past_the_data, 7, 150).unwrap_err();
        assert!(format!("{err:?}").contains("out of place"), "{err:?}");
    }
}
