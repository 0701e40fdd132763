//! `Footer::decode`, and that a footer that decodes encodes to the same bytes.
//!
//! Input: flags byte (bit 0: fix the footer's checksum), the footer's file offset
//! (8 bytes, little-endian), then the footer bytes (64 when well formed).

use aeternusdb::internals::{FOOTER_SIZE, Footer};

pub fn run(data: &[u8]) {
    let (flags, rest) = crate::split_flags(data);
    let (offset, footer) = match rest.split_first_chunk::<8>() {
        Some((offset, footer)) => (u64::from_le_bytes(*offset), footer),
        None => (0, rest),
    };
    let mut footer = footer.to_vec();
    if flags & 1 == 1 && footer.len() == FOOTER_SIZE {
        let crc = crc32c::crc32c(&footer[..52]);
        footer[52..56].copy_from_slice(&crc.to_le_bytes());
    }
    if let Ok(decoded) = Footer::decode(&footer, offset) {
        assert_eq!(decoded.encode(), footer, "a decoded footer encodes to its bytes");
        for h in [decoded.index, decoded.filter, decoded.range_tombstones, decoded.properties] {
            assert!(h.end() <= offset, "handle {h:?} past the footer at {offset}");
        }
    }
}
