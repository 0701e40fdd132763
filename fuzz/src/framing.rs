//! `decode_block`: the checksum, the compression tag and decompression (LZ4, zstd).
//!
//! Input: flags byte. Bit 0 clear: the rest is a framed block as read from a file.
//! Bit 0 set: the rest is a payload framed here with tag `flags >> 1 & 3` and a valid
//! checksum, so the decompressors see it; and the payload is also framed by
//! `encode_block` with every compression, which must decode back to it.

use aeternusdb::Compression;
use aeternusdb::internals::{decode_block, encode_block};

pub fn run(data: &[u8]) {
    let (flags, rest) = crate::split_flags(data);
    if flags & 1 == 0 {
        let _ = decode_block(rest.to_vec(), 0);
        return;
    }
    let mut framed = rest.to_vec();
    framed.push((flags >> 1) & 3);
    let crc = crc32c::crc32c(&framed);
    framed.extend_from_slice(&crc.to_le_bytes());
    if let Ok(block) = decode_block(framed, 0) {
        assert!(block.len() <= 512 << 20);
    }
    for compression in [Compression::None, Compression::Lz4, Compression::Zstd] {
        let framed = encode_block(rest.to_vec(), compression);
        let block = decode_block(framed, 0).expect("an encoded block decodes");
        assert_eq!(&block[..], rest, "{compression:?} round trip");
    }
}
