//! The index block of a table: `Block::decode`, then the index `Table::open` builds
//! from it (handles contiguous from offset 0, last keys ordered), then seeks.
//!
//! Input: 8 bytes, the offset where the table's data blocks end (little-endian), then
//! the bytes of the index block.

use aeternusdb::internals::{Block, MAX_SEQNO, decode_index_block};
use bytes::Bytes;

pub fn run(data: &[u8]) {
    let (data_end, block) = match data.split_first_chunk::<8>() {
        Some((end, block)) => (u64::from_le_bytes(*end), block),
        None => (0, data),
    };
    let Ok(block) = Block::decode(Bytes::copy_from_slice(block), data_end) else { return };
    let keys: Vec<(Vec<u8>, u64)> =
        block.iter().take(64).map_while(Result::ok).map(|e| (e.key.to_vec(), e.seqno)).collect();
    let Ok(blocks) = decode_index_block(&block, data_end, data_end, b"", MAX_SEQNO) else {
        return;
    };
    assert!(blocks >= keys.len(), "every entry of a decoded index is a block");
    for (key, seqno) in keys {
        let n = decode_index_block(&block, data_end, data_end, &key, seqno)
            .expect("an index that decoded once decodes again");
        assert_eq!(n, blocks);
        let _ = decode_index_block(&block, data_end, data_end, &key, seqno.saturating_sub(1));
    }
}
