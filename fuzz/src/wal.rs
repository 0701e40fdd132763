//! A whole WAL segment through `replay_segment` (header check, chunked record
//! reading, torn-tail and damage classification), each record's payload through
//! `decode_wal_record` as recovery does.
//!
//! Input: flags byte, then the segment's bytes. Flags: bit 0 fixes the header's and
//! the records' checksums; bit 1 replays it as the last segment (a torn tail is
//! allowed); bit 2 replays under `WalRecovery::SkipDamagedTail` instead of `Strict`.
//! The database id and segment number expected are the ones the header names, so a
//! header that passes its checksum is accepted.

use std::path::Path;

use aeternusdb::WalRecovery;
use aeternusdb::internals::{ReplayError, decode_wal_record, replay_segment, segment_file_name};

/// Where a WAL segment's header ends (`wal::SEGMENT_HEADER_LEN`).
const HEADER_LEN: usize = 40;

pub fn run(data: &[u8]) {
    let (flags, segment) = crate::split_flags(data);
    let mut segment = segment.to_vec();
    let (db_id, number) = match segment.get(..HEADER_LEN) {
        Some(header) => {
            let id = uuid::Uuid::from_slice(&header[12..28]).expect("16 bytes");
            let number = u64::from_le_bytes(header[28..36].try_into().expect("8 bytes"));
            (id, number)
        }
        None => (uuid::Uuid::nil(), 1),
    };
    if flags & 1 == 1 && segment.len() >= HEADER_LEN {
        let crc = crc32c::crc32c(&segment[..36]);
        segment[36..40].copy_from_slice(&crc.to_le_bytes());
        crate::fix_log_checksums(&mut segment, HEADER_LEN);
    }
    let dir = Path::new("/wal");
    let fs = crate::fs_with_file(&dir.join(segment_file_name(number)), &segment);
    let mode = if flags & 4 == 0 { WalRecovery::Strict } else { WalRecovery::SkipDamagedTail };
    let mut records = 0u64;
    let result = replay_segment(&fs, dir, number, db_id, flags & 2 != 0, mode, |payload| {
        records += 1;
        match decode_wal_record(payload) {
            Ok(_) => Ok(()),
            Err(at) => Err(ReplayError::Damaged(aeternusdb::internals::Corruption::new(
                at as u64,
                "undecodable batch",
            ))),
        }
    });
    if let Ok(outcome) = result {
        assert_eq!(outcome.records, records);
        assert!(outcome.valid_len <= segment.len() as u64);
    }
}
