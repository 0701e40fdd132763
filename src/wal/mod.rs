//! The write-ahead log: numbered segment files of framed records.
//!
//! Payloads are opaque here (the write batch encoding gives them meaning); records are
//! framed by [`crate::log_record`].
//!
//! # Layout
//! A segment is named `{number:06}.wal` (see [`segment_file_name`]) and holds a 40-byte
//! header followed by records:
//! ```text
//! +-----------+-------------+--------------+----------------+-----------+----------
//! | magic u64 | version u32 | db uuid 16 B | segment no u64 | crc32c u32| records…
//! +-----------+-------------+--------------+----------------+-----------+----------
//!                                            crc32c covers the preceding 36 bytes
//! ```
//! Integers are little-endian; the uuid is stored in its 16-byte big-endian form.
//! [`SEGMENT_MAGIC`], [`SEGMENT_FORMAT_VERSION`] and the header layout are part of the
//! file format: never change them (add a new version instead).
//!
//! # Invariants
//! 1. A segment's header names the database and the segment's own number, so a file
//!    from another database or a renamed file is detected on replay.
//! 2. [`WalWriter::create`] syncs the header and the directory entry before returning,
//!    and a segment is synced before the next one is created. Therefore only the last
//!    segment can legitimately end in a torn record. No segment the manifest names can
//!    be shorter than its header: rotation and open name a segment only after
//!    [`WalWriter::create`] returned (a crash during creation leaves an unnamed one,
//!    which recovery removes, durably, before a new manifest's range can cover it).

mod reader;
mod stream;
mod writer;

pub use reader::{ReplayError, ReplayOutcome, replay_segment};
pub use writer::{WalWriter, truncate_segment};

pub use crate::file_names::segment_file_name;

use crate::coding::Decoder;
use crate::error::Corruption;

/// Identifies a WAL segment file ("AEWALSEG"). Part of the file format: never change.
pub const SEGMENT_MAGIC: u64 = u64::from_le_bytes(*b"AEWALSEG");

/// The segment format written by this version. Part of the file format: never change
/// the meaning of an existing version.
pub const SEGMENT_FORMAT_VERSION: u32 = 1;

/// Bytes in a segment header. Part of the file format: never change.
pub const SEGMENT_HEADER_LEN: usize = 8 + 4 + 16 + 8 + 4;

/// Encodes the header of segment `number` of database `db_id`.
fn encode_header(number: u64, db_id: uuid::Uuid) -> Vec<u8> {
    let mut buf = Vec::with_capacity(SEGMENT_HEADER_LEN);
    buf.extend_from_slice(&SEGMENT_MAGIC.to_le_bytes());
    buf.extend_from_slice(&SEGMENT_FORMAT_VERSION.to_le_bytes());
    buf.extend_from_slice(db_id.as_bytes());
    buf.extend_from_slice(&number.to_le_bytes());
    let crc = crc32c::crc32c(&buf);
    buf.extend_from_slice(&crc.to_le_bytes());
    buf
}

/// Checks a segment header against the expected database and number.
fn check_header(data: &[u8], number: u64, db_id: uuid::Uuid) -> Result<(), Corruption> {
    let mut d = Decoder::new(data);
    let (Some(magic), Some(version), Some(id), Some(header_number)) =
        (d.u64(), d.u32(), d.bytes(16), d.u64())
    else {
        return Err(Corruption::new(0, "segment shorter than its header"));
    };
    let covered = data.get(..SEGMENT_HEADER_LEN - 4).unwrap_or_default();
    let Some(crc) = d.u32() else {
        return Err(Corruption::new(0, "segment shorter than its header"));
    };
    if magic != SEGMENT_MAGIC {
        return Err(Corruption::new(0, "not a WAL segment (bad magic)"));
    }
    if crc32c::crc32c(covered) != crc {
        return Err(Corruption::new(36, "bad segment header checksum"));
    }
    if version != SEGMENT_FORMAT_VERSION {
        return Err(Corruption::new(8, format!("unsupported WAL format version {version}")));
    }
    if id != db_id.as_bytes() {
        return Err(Corruption::new(12, "segment belongs to another database (uuid mismatch)"));
    }
    if header_number != number {
        return Err(Corruption::new(
            28,
            format!("segment header says number {header_number}, file name says {number}"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trips_and_checks_every_field() {
        let id = uuid::Uuid::new_v4();
        let header = encode_header(5, id);
        assert_eq!(header.len(), SEGMENT_HEADER_LEN);
        check_header(&header, 5, id).unwrap();
        assert_eq!(check_header(&header, 6, id).unwrap_err().offset, 28);
        assert_eq!(check_header(&header, 5, uuid::Uuid::new_v4()).unwrap_err().offset, 12);
        assert!(check_header(&header[..39], 5, id).is_err());
        for i in 0..SEGMENT_HEADER_LEN {
            let mut bad = header.clone();
            bad[i] ^= 1;
            assert!(check_header(&bad, 5, id).is_err(), "flip at {i}");
        }
    }
}
