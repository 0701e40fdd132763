//! Block handles and the fixed-size footer at the end of every table file.
//!
//! # Layout (part of the file format, never change)
//! ```text
//! block handle := offset u64 LE | size u32 LE                  (12 bytes)
//!
//! footer := index handle | filter handle | range-tombstone handle | properties handle
//!           | format version u32 LE | crc32c u32 LE (over everything before it)
//!           | magic u64 LE                                     (64 bytes)
//! ```
//! A handle's `size` counts the whole framed block, checksum trailer included
//! (see [`framing`](super::framing)).
//!
//! # Invariants
//! 1. The footer is the last [`FOOTER_SIZE`] bytes of the file; [`MAGIC`] is the last
//!    eight, so a truncated or foreign file is recognised before anything else is read.
//! 2. Every handle in the footer lies inside the file, before the footer.

use crate::coding::Decoder;
use crate::error::Corruption;

/// Identifies an AeternusDB table file ("AeSSTabl"). Part of the file format, never change.
pub const MAGIC: u64 = u64::from_le_bytes(*b"AeSSTabl");

/// The table format this code writes. Part of the file format, never change.
pub const FORMAT_VERSION: u32 = 1;

/// Encoded size of a [`BlockHandle`].
pub const BLOCK_HANDLE_SIZE: usize = 12;

/// Encoded size of a [`Footer`].
pub const FOOTER_SIZE: usize = 4 * BLOCK_HANDLE_SIZE + 4 + 4 + 8;

/// Where a framed block lies in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BlockHandle {
    /// Offset of the block's first byte.
    pub offset: u64,
    /// Bytes on disk, including the compression tag and checksum.
    pub size: u32,
}

impl BlockHandle {
    /// Appends the 12-byte encoding.
    pub fn encode_to(&self, buf: &mut Vec<u8>) {
        buf.extend_from_slice(&self.offset.to_le_bytes());
        buf.extend_from_slice(&self.size.to_le_bytes());
    }

    /// Reads a handle from `d`; `None` if the bytes run out.
    pub fn decode_from(d: &mut Decoder<'_>) -> Option<BlockHandle> {
        Some(BlockHandle { offset: d.u64()?, size: d.u32()? })
    }

    /// One past the block's last byte (saturating, for range checks).
    pub fn end(&self) -> u64 {
        self.offset.saturating_add(u64::from(self.size))
    }
}

/// The handles of a table's metadata blocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Footer {
    /// The index block: one entry per data block.
    pub index: BlockHandle,
    /// The bloom filter block.
    pub filter: BlockHandle,
    /// The range-tombstone block.
    pub range_tombstones: BlockHandle,
    /// The properties block.
    pub properties: BlockHandle,
}

impl Footer {
    /// The [`FOOTER_SIZE`]-byte encoding.
    pub fn encode(&self) -> Vec<u8> {
        let mut buf = Vec::with_capacity(FOOTER_SIZE);
        for h in [self.index, self.filter, self.range_tombstones, self.properties] {
            h.encode_to(&mut buf);
        }
        buf.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        let crc = crc32c::crc32c(&buf);
        buf.extend_from_slice(&crc.to_le_bytes());
        buf.extend_from_slice(&MAGIC.to_le_bytes());
        buf
    }

    /// Decodes the footer found at `file_offset` (the file's last [`FOOTER_SIZE`]
    /// bytes) and checks that its handles lie before it.
    pub fn decode(buf: &[u8], file_offset: u64) -> Result<Footer, Corruption> {
        let bad = |message: String| Corruption::new(file_offset, message);
        if buf.len() != FOOTER_SIZE {
            return Err(bad(format!("footer of {} bytes, expected {FOOTER_SIZE}", buf.len())));
        }
        let mut d = Decoder::new(buf);
        let handles = d.bytes(4 * BLOCK_HANDLE_SIZE).unwrap_or_default();
        let version = d.u32().unwrap_or_default();
        let crc = d.u32().unwrap_or_default();
        let magic = d.u64().unwrap_or_default();
        if magic != MAGIC {
            return Err(bad(format!("bad magic {magic:#018x}: not a table file, or truncated")));
        }
        let actual = crc32c::crc32c(buf.get(..4 * BLOCK_HANDLE_SIZE + 4).unwrap_or_default());
        if crc != actual {
            return Err(bad(format!(
                "footer checksum mismatch: expected {crc:#010x}, actual {actual:#010x}"
            )));
        }
        if version != FORMAT_VERSION {
            return Err(bad(format!("unsupported table format version {version}")));
        }
        let mut d = Decoder::new(handles);
        let mut next = || BlockHandle::decode_from(&mut d).unwrap_or_default();
        let footer =
            Footer { index: next(), filter: next(), range_tombstones: next(), properties: next() };
        for h in [footer.index, footer.filter, footer.range_tombstones, footer.properties] {
            if h.end() > file_offset {
                return Err(bad(format!("block handle {h:?} points past the footer")));
            }
        }
        Ok(footer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample() -> Footer {
        Footer {
            index: BlockHandle { offset: 100, size: 20 },
            filter: BlockHandle { offset: 0, size: 10 },
            range_tombstones: BlockHandle { offset: 10, size: 5 },
            properties: BlockHandle { offset: 15, size: 85 },
        }
    }

    #[test]
    fn a_footer_decodes_to_itself_and_refuses_a_block_past_its_offset() {
        let buf = sample().encode();
        assert_eq!(buf.len(), FOOTER_SIZE);
        assert_eq!(Footer::decode(&buf, 120).unwrap(), sample());
        // A handle past the footer is rejected.
        assert!(Footer::decode(&buf, 119).is_err());
    }

    #[test]
    fn every_flipped_byte_is_detected() {
        let buf = sample().encode();
        for i in 0..buf.len() {
            let mut bad = buf.clone();
            bad[i] ^= 1;
            assert_eq!(Footer::decode(&bad, 500).unwrap_err().offset, 500);
        }
    }

    proptest! {
        #[test]
        fn decoding_garbage_never_panics(
            bytes in proptest::collection::vec(any::<u8>(), 0..80),
            offset in any::<u64>(),
        ) {
            let _ = Footer::decode(&bytes, offset);
            let mut valid = bytes.clone();
            valid.resize(FOOTER_SIZE - 12, 0);
            let crc = crc32c::crc32c(&valid[..52]);
            valid.truncate(52);
            valid.extend_from_slice(&crc.to_le_bytes());
            valid.extend_from_slice(&MAGIC.to_le_bytes());
            let _ = Footer::decode(&valid, offset);
        }
    }
}
