//! How every block is stored on disk: payload, compression tag and checksum.
//!
//! # Layout (part of the file format, never change)
//! ```text
//! payload | compression tag u8 | crc32c u32 LE (over payload and tag)
//! ```
//! The tag is a [`Compression`] discriminant. Payload by tag:
//! - `None` (0): the block itself.
//! - `Lz4` (1): `lz4_flex::block` output with the uncompressed size prepended
//!   (u32 LE, as `compress_prepend_size` writes it).
//! - `Zstd` (2): uncompressed size u32 LE, then one zstd frame (level 3).
//!
//! # Invariants
//! 1. A block is stored compressed only if that saves at least 1/8 of its size. A
//!    block above [`SAMPLED_ABOVE`] bytes (a large value) is compressed whole only if
//!    its first [`SAMPLE_SIZE`] bytes save that much: large values are often
//!    compressed already, and a futile attempt costs another copy of the block in
//!    memory and the time to compress it.
//! 2. The checksum is verified on every read from disk, before decompressing.
//! 3. A declared uncompressed size above [`MAX_BLOCK_SIZE`] is corruption, so damaged
//!    input can't make the reader allocate without bound.

use bytes::Bytes;

use crate::error::Corruption;
use crate::options::Compression;

/// Bytes after the payload: the tag and the checksum.
pub const TRAILER_SIZE: usize = 5;

/// The largest decompressed block accepted (one maximal key and value, with room).
pub const MAX_BLOCK_SIZE: usize = 512 << 20;

/// Blocks above this size are compressed whole only if a sample compresses well.
pub const SAMPLED_ABOVE: usize = 1 << 20;

/// How much of a large block is compressed as a sample.
pub const SAMPLE_SIZE: usize = 64 << 10;

/// Frames `payload` for disk, compressing it with `compression` if that pays off.
/// Stored uncompressed, the frame is `payload`'s own buffer extended (no copy if it
/// has room for the [`TRAILER_SIZE`] bytes).
pub fn encode_block(payload: Vec<u8>, compression: Compression) -> Vec<u8> {
    let worth_it = |c: &Vec<u8>, of: &[u8]| c.len() <= of.len() - of.len() / 8;
    let sample = &payload[..payload.len().min(SAMPLE_SIZE)];
    let promising = payload.len() <= SAMPLED_ABOVE
        || compress(sample, compression).is_some_and(|c| worth_it(&c, sample));
    let compressed = if promising { compress(&payload, compression) } else { None };
    let (mut out, tag) = match compressed.filter(|c| worth_it(c, &payload)) {
        Some(c) => (c, compression),
        None => (payload, Compression::None),
    };
    out.push(tag as u8);
    let crc = crc32c::crc32c(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

fn compress(payload: &[u8], compression: Compression) -> Option<Vec<u8>> {
    match compression {
        Compression::None => None,
        Compression::Lz4 => Some(lz4_flex::block::compress_prepend_size(payload)),
        Compression::Zstd => compress_zstd(payload),
    }
}

#[cfg(feature = "zstd")]
fn compress_zstd(payload: &[u8]) -> Option<Vec<u8>> {
    let mut out = (payload.len() as u32).to_le_bytes().to_vec();
    out.extend_from_slice(&zstd::bulk::compress(payload, 3).ok()?);
    Some(out)
}

#[cfg(not(feature = "zstd"))]
fn compress_zstd(_payload: &[u8]) -> Option<Vec<u8>> {
    None
}

/// Checks and decompresses a framed block read from `file_offset`. An uncompressed
/// block is returned in `raw`'s own allocation (no copy; a large value is then held
/// once, not twice, while it is read).
pub fn decode_block(mut raw: Vec<u8>, file_offset: u64) -> Result<Bytes, Corruption> {
    let bad = |message: String| Corruption::new(file_offset, message);
    let body_len = raw
        .len()
        .checked_sub(4)
        .filter(|&n| n >= 1)
        .ok_or_else(|| bad(format!("block of {} bytes is too short", raw.len())))?;
    let (body, crc) = raw.split_at(body_len);
    let expected = u32::from_le_bytes([crc[0], crc[1], crc[2], crc[3]]);
    let actual = crc32c::crc32c(body);
    if expected != actual {
        return Err(bad(format!(
            "block checksum mismatch: expected {expected:#010x}, actual {actual:#010x}"
        )));
    }
    let (payload, tag) = body.split_at(body_len - 1);
    let tag = tag[0];
    match Compression::from_tag(tag) {
        Some(Compression::None) => {
            raw.truncate(payload.len());
            Ok(Bytes::from(raw))
        }
        Some(Compression::Lz4) => {
            declared_size(payload).map_err(bad)?;
            lz4_flex::block::decompress_size_prepended(payload)
                .map(Bytes::from)
                .map_err(|e| bad(format!("lz4 block does not decompress: {e}")))
        }
        Some(Compression::Zstd) => decompress_zstd(payload).map_err(bad),
        None => Err(bad(format!("unknown compression tag {tag}"))),
    }
}

fn declared_size(payload: &[u8]) -> Result<usize, String> {
    let size = match payload {
        [a, b, c, d, ..] => u32::from_le_bytes([*a, *b, *c, *d]) as usize,
        _ => return Err("compressed block without its size".into()),
    };
    if size > MAX_BLOCK_SIZE {
        return Err(format!("declared block size {size} is too large"));
    }
    Ok(size)
}

#[cfg(feature = "zstd")]
fn decompress_zstd(payload: &[u8]) -> Result<Bytes, String> {
    let size = declared_size(payload)?;
    let out = zstd::bulk::decompress(payload.get(4..).unwrap_or_default(), size)
        .map_err(|e| format!("zstd block does not decompress: {e}"))?;
    if out.len() != size {
        return Err(format!("zstd block decompressed to {} bytes, not {size}", out.len()));
    }
    Ok(Bytes::from(out))
}

#[cfg(not(feature = "zstd"))]
fn decompress_zstd(_payload: &[u8]) -> Result<Bytes, String> {
    Err("zstd-compressed block, but this build lacks the `zstd` feature".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const ALL: [Compression; 3] = [Compression::None, Compression::Lz4, Compression::Zstd];

    #[test]
    fn round_trips_with_every_compression() {
        let compressible = b"abcdefgh".repeat(500);
        let random: Vec<u8> =
            (0..4000u32).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8).collect();
        for c in ALL {
            for payload in [&compressible[..], &random[..], b""] {
                let framed = encode_block(payload.to_vec(), c);
                assert_eq!(decode_block(framed, 0).unwrap(), payload);
            }
            let framed = encode_block(compressible.clone(), c);
            let expect_tag = if cfg!(feature = "zstd") || c != Compression::Zstd {
                c
            } else {
                Compression::None
            };
            assert_eq!(framed[framed.len() - 5], expect_tag as u8);
            assert!(expect_tag == Compression::None || framed.len() < compressible.len() / 2);
        }
    }

    #[test]
    fn a_large_block_is_compressed_only_if_its_sample_compresses() {
        let noise = |n: usize| -> Vec<u8> {
            let mut x = 0x9e37_79b9_7f4a_7c15u64;
            (0..n)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x as u8
                })
                .collect()
        };
        // Incompressible at its start, compressible after: stored as it is, framed in
        // its own buffer.
        let mut large = Vec::with_capacity(SAMPLED_ABOVE + 1 + TRAILER_SIZE);
        large.extend(noise(SAMPLE_SIZE));
        large.resize(SAMPLED_ABOVE + 1, 0);
        let (at, copy) = (large.as_ptr(), large.clone());
        let framed = encode_block(large, Compression::Lz4);
        assert_eq!(framed[framed.len() - 5], Compression::None as u8);
        assert_eq!(framed.as_ptr(), at);
        let mut large = decode_block(framed, 0).unwrap().to_vec();
        assert_eq!(large, copy);
        // Compressible at its start: compressed whole.
        large.reverse();
        let framed = encode_block(large.clone(), Compression::Lz4);
        assert_eq!(framed[framed.len() - 5], Compression::Lz4 as u8);
        assert_eq!(decode_block(framed, 0).unwrap(), large);
    }

    #[test]
    fn an_uncompressed_block_is_returned_without_a_copy() {
        let framed = encode_block(vec![3u8; 1000], Compression::None);
        let at = framed.as_ptr();
        let block = decode_block(framed, 0).unwrap();
        assert_eq!((block.as_ptr(), &block[..]), (at, &[3u8; 1000][..]));
    }

    #[test]
    fn checksum_catches_every_flipped_byte() {
        let framed = encode_block(b"hello world ".repeat(50), Compression::Lz4);
        for i in 0..framed.len() {
            let mut bad = framed.clone();
            bad[i] ^= 0x40;
            let err = decode_block(bad, 77).unwrap_err();
            assert_eq!(err.offset, 77);
        }
    }

    proptest! {
        #[test]
        fn decoding_garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..100)) {
            let _ = decode_block(bytes.clone(), 0);
            // With a valid checksum the payload parsers see the garbage too.
            for c in ALL {
                let mut framed = bytes.clone();
                framed.push(c as u8);
                let crc = crc32c::crc32c(&framed);
                framed.extend_from_slice(&crc.to_le_bytes());
                let _ = decode_block(framed, 0);
            }
        }
    }
}
