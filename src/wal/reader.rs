//! Replaying one WAL segment during recovery.
//!
//! # What is accepted
//! 1. The header must match (magic, version, checksum, database uuid, and the number
//!    in the file name); otherwise the segment is [`Error::Corruption`] naming the file,
//!    in every [`WalRecovery`] mode: a foreign or renamed file is never replayed.
//!    That includes a segment shorter than its header or holding only zero bytes, even
//!    the last one: a crash while creating a segment leaves exactly that, but every
//!    segment the manifest names had its header synced before it was named (rotation
//!    and open create the segment, then write the manifest edit), and recovery never
//!    replays an unnamed one. Only under [`WalRecovery::SkipDamagedTail`] is such a
//!    *last* segment skipped (reported in [`ReplayOutcome::skipped_damage`], offset 0).
//! 2. Records are replayed in file order; each one passed its checksums.
//! 3. A torn tail (see [`crate::log_record`]) is dropped only in the last segment.
//!    Earlier segments were synced before the next one was created, so a torn record
//!    there is damage.
//! 4. Damage before the tail is [`Error::Corruption`] with the file and offset under
//!    [`WalRecovery::Strict`]. Under [`WalRecovery::SkipDamagedTail`] the segment's
//!    replay stops at the damage, and [`ReplayOutcome::skipped_damage`] reports it.
//! 5. The segment is read in chunks of [`REPLAY_CHUNK`] bytes (a longer record is read
//!    whole), and payloads are handed out as slices of those chunks, not copies.

use std::path::Path;

use bytes::Bytes;

use super::stream::{ChunkRead, ChunkedLogReader, all_zero_from};
use super::{SEGMENT_HEADER_LEN, check_header, segment_file_name};
use crate::error::{Corruption, Error, Result};
use crate::fs::FileSystem;
use crate::log_record::{HEADER_LEN, LogEnd};
use crate::options::WalRecovery;

/// Bytes of a segment read at a time during replay. Records keep their chunk alive
/// until they leave the memtable, so this is also the granularity of that memory.
const REPLAY_CHUNK: usize = 1 << 20;

/// What replaying one segment found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReplayOutcome {
    /// Records handed to the callback.
    pub records: u64,
    /// Payload bytes handed to the callback.
    pub bytes: u64,
    /// Offset just past the last replayed record (the header's end if there was none;
    /// 0 if the header itself was skipped as damage).
    pub valid_len: u64,
    /// Where a torn tail started, if one was dropped (only ever in the last segment).
    pub torn_tail: Option<u64>,
    /// The torn tail was zeros to the end of the file: space reserved ahead that no
    /// append reached (a crash between appends), not an interrupted append.
    pub torn_tail_is_reserved_space: bool,
    /// Damage skipped under [`WalRecovery::SkipDamagedTail`]: everything in the
    /// segment from its offset on was not replayed.
    pub skipped_damage: Option<Corruption>,
}

/// Why the record callback of [`replay_segment`] stopped the replay.
#[derive(Debug)]
pub enum ReplayError {
    /// The record passed its checksums but its payload makes no sense to the caller
    /// (an undecodable batch, seqnos that do not continue), at an offset relative to
    /// the payload's start. [`replay_segment`] reports it as [`Error::Corruption`] in
    /// the segment, at that offset in the file.
    Damaged(Corruption),
    /// Applying the record failed for a reason its own bytes do not explain (such as
    /// records missing at the end of the previous segment, an error that names its
    /// file already). [`replay_segment`] returns it as it is.
    Apply(Error),
}

/// Replays segment `number` of database `db_id` in `dir`, calling `on_record` with each
/// record's payload in order.
///
/// The segment is read in chunks of `REPLAY_CHUNK` bytes; a payload is a slice of
/// its chunk, so keeping it costs no copy.
/// `is_last` says whether this is the newest segment, the only one allowed a torn tail.
/// An error from `on_record` stops the replay and is returned (see [`ReplayError`]).
pub fn replay_segment(
    fs: &dyn FileSystem,
    dir: &Path,
    number: u64,
    db_id: uuid::Uuid,
    is_last: bool,
    mode: WalRecovery,
    mut on_record: impl FnMut(&Bytes) -> Result<(), ReplayError>,
) -> Result<ReplayOutcome> {
    let path = dir.join(segment_file_name(number));
    let file = fs.open(&path)?;
    let mut outcome = ReplayOutcome::default();

    let mut header = vec![0u8; file.len().min(SEGMENT_HEADER_LEN as u64) as usize];
    file.read_exact_at(&mut header, 0)?;
    if let Err(mut damage) = check_header(&header, number, db_id) {
        let short = header.len() < SEGMENT_HEADER_LEN;
        let zeros = !short && all_zero_from(&*file, 0, REPLAY_CHUNK)?;
        if zeros {
            damage = Corruption::new(0, "segment holds only zero bytes, no header");
        }
        // What a crash while creating the segment leaves: damage here (see the module
        // docs), which salvage may skip in the last segment only.
        if (short || zeros) && is_last && matches!(mode, WalRecovery::SkipDamagedTail) {
            outcome.skipped_damage = Some(damage);
            return Ok(outcome);
        }
        return Err(damage.in_file(&path));
    }

    let mut reader = ChunkedLogReader::new(file.clone(), SEGMENT_HEADER_LEN as u64, REPLAY_CHUNK);
    let end = loop {
        match reader.read()? {
            ChunkRead::Record { offset, payload } => {
                on_record(&payload).map_err(|e| locate(e, &path, offset))?;
                outcome.records += 1;
                outcome.bytes += payload.len() as u64;
            }
            ChunkRead::End(end) => break end,
        }
    };
    outcome.valid_len = reader.position();

    let damage = match end {
        LogEnd::Clean => return Ok(outcome),
        LogEnd::TornTail { offset } if is_last => {
            outcome.torn_tail = Some(offset);
            outcome.torn_tail_is_reserved_space = all_zero_from(&*file, offset, REPLAY_CHUNK)?;
            return Ok(outcome);
        }
        LogEnd::TornTail { offset } => Corruption::new(
            offset,
            "torn record in a segment that is not the last (it was synced before rotation)",
        ),
        LogEnd::Corruption(c) => c,
    };
    match mode {
        WalRecovery::Strict => Err(damage.in_file(&path)),
        WalRecovery::SkipDamagedTail => {
            outcome.skipped_damage = Some(damage);
            Ok(outcome)
        }
    }
}

/// The error a callback's [`ReplayError`] for the record at `record_offset` of the
/// segment at `path` stands for.
fn locate(error: ReplayError, path: &Path, record_offset: u64) -> Error {
    match error {
        ReplayError::Damaged(Corruption { offset, message }) => {
            Corruption::new(record_offset + HEADER_LEN as u64 + offset, message).in_file(path)
        }
        ReplayError::Apply(error) => error,
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use proptest::prelude::*;

    use super::super::WalWriter;
    use super::*;
    use crate::fs::OsFs;

    fn payload(i: usize) -> Vec<u8> {
        format!("record number {i} ").repeat(i % 7).into_bytes()
    }

    /// Writes segment `number` with `n` records; returns the file's path.
    fn write_segment(dir: &Path, number: u64, id: uuid::Uuid, n: usize) -> PathBuf {
        let mut w = WalWriter::create(&OsFs, dir, number, id).unwrap();
        for i in 0..n {
            w.append(&payload(i)).unwrap();
        }
        w.finish().unwrap();
        dir.join(segment_file_name(number))
    }

    fn replay(
        dir: &Path,
        number: u64,
        id: uuid::Uuid,
        is_last: bool,
        mode: WalRecovery,
    ) -> Result<(Vec<Vec<u8>>, ReplayOutcome)> {
        let mut seen = Vec::new();
        let outcome = replay_segment(&OsFs, dir, number, id, is_last, mode, |p| {
            seen.push(p.to_vec());
            Ok(())
        })?;
        Ok((seen, outcome))
    }

    fn expect_corruption(result: Result<impl std::fmt::Debug>, path: &Path) -> u64 {
        match result {
            Err(Error::Corruption { file, offset, .. }) => {
                assert_eq!(file, path);
                offset
            }
            other => panic!("expected corruption in {}, got {other:?}", path.display()),
        }
    }

    /// Offset of record `i` in a segment written by [`write_segment`].
    fn record_offset(i: usize) -> u64 {
        (SEGMENT_HEADER_LEN + (0..i).map(|j| HEADER_LEN + payload(j).len()).sum::<usize>()) as u64
    }

    #[test]
    fn replays_what_was_written() {
        let dir = tempfile::tempdir().unwrap();
        let id = uuid::Uuid::new_v4();
        let path = write_segment(dir.path(), 3, id, 50);
        for is_last in [true, false] {
            let (seen, outcome) = replay(dir.path(), 3, id, is_last, WalRecovery::Strict).unwrap();
            assert_eq!(seen, (0..50).map(payload).collect::<Vec<_>>());
            assert_eq!(outcome.records, 50);
            assert_eq!(outcome.bytes, seen.iter().map(|p| p.len() as u64).sum::<u64>());
            assert_eq!(outcome.valid_len, std::fs::metadata(&path).unwrap().len());
            assert_eq!((outcome.torn_tail, outcome.skipped_damage), (None, None));
        }
    }

    /// A segment its writer never finished (a crash) ends in reserved space, zeros:
    /// all its records replay and the zeros are a torn tail, which only the last
    /// segment may have.
    #[test]
    fn an_unfinished_segment_ends_in_a_reserved_tail() {
        let dir = tempfile::tempdir().unwrap();
        let id = uuid::Uuid::new_v4();
        let mut w = WalWriter::create(&OsFs, dir.path(), 3, id).unwrap();
        for i in 0..50 {
            w.append(&payload(i)).unwrap();
        }
        w.sync().unwrap();
        let path = dir.path().join(segment_file_name(3));
        let size = std::fs::metadata(&path).unwrap().len();
        let end = record_offset(50);
        if size == end {
            eprintln!("skipped: this filesystem does not preallocate");
            return;
        }
        assert_eq!(size, super::super::writer::PREALLOCATE_STEP);
        let (seen, outcome) = replay(dir.path(), 3, id, true, WalRecovery::Strict).unwrap();
        assert_eq!(seen, (0..50).map(payload).collect::<Vec<_>>());
        assert_eq!((outcome.torn_tail, outcome.valid_len), (Some(end), end));
        assert!(outcome.torn_tail_is_reserved_space);
        let result = replay(dir.path(), 3, id, false, WalRecovery::Strict);
        assert_eq!(expect_corruption(result, &path), end);
        // Finished, it ends with its last record.
        w.finish().unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().len(), end);
        let (_, outcome) = replay(dir.path(), 3, id, false, WalRecovery::Strict).unwrap();
        assert_eq!(outcome.torn_tail, None);
    }

    #[test]
    fn empty_segment_replays_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let id = uuid::Uuid::new_v4();
        write_segment(dir.path(), 1, id, 0);
        let (seen, outcome) = replay(dir.path(), 1, id, false, WalRecovery::Strict).unwrap();
        assert!(seen.is_empty());
        assert_eq!(outcome.valid_len, SEGMENT_HEADER_LEN as u64);
    }

    #[test]
    fn wrong_uuid_number_or_magic_is_corruption_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let id = uuid::Uuid::new_v4();
        let path = write_segment(dir.path(), 4, id, 3);
        for mode in [WalRecovery::Strict, WalRecovery::SkipDamagedTail] {
            let other = uuid::Uuid::new_v4();
            assert_eq!(expect_corruption(replay(dir.path(), 4, other, true, mode), &path), 12);
        }
        // A segment renamed to another number.
        let renamed = dir.path().join(segment_file_name(5));
        std::fs::copy(&path, &renamed).unwrap();
        let result = replay(dir.path(), 5, id, true, WalRecovery::Strict);
        assert_eq!(expect_corruption(result, &renamed), 28);
        // Bad magic.
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[0] ^= 0xff;
        std::fs::write(&path, &bytes).unwrap();
        let result = replay(dir.path(), 4, id, true, WalRecovery::Strict);
        assert_eq!(expect_corruption(result, &path), 0);
    }

    /// Regression (issue 8, item 4): a newest segment cut inside its header or zeroed
    /// was replayed as empty in strict mode, losing its records silently. Every named
    /// segment had its header synced, so it is damage; only salvage skips it.
    #[test]
    fn short_or_zeroed_header_is_corruption_and_skipped_only_by_salvage() {
        let dir = tempfile::tempdir().unwrap();
        let id = uuid::Uuid::new_v4();
        let path = write_segment(dir.path(), 2, id, 3);
        let bytes = std::fs::read(&path).unwrap();
        let mut damaged: Vec<Vec<u8>> =
            (0..SEGMENT_HEADER_LEN).map(|cut| bytes[..cut].to_vec()).collect();
        damaged.push(vec![0u8; 4096]);
        damaged.push(vec![0u8; bytes.len()]);
        for data in damaged {
            std::fs::write(&path, &data).unwrap();
            for is_last in [true, false] {
                let result = replay(dir.path(), 2, id, is_last, WalRecovery::Strict);
                assert_eq!(expect_corruption(result, &path), 0, "{} bytes", data.len());
            }
            let result = replay(dir.path(), 2, id, false, WalRecovery::SkipDamagedTail);
            expect_corruption(result, &path);
            let (seen, outcome) =
                replay(dir.path(), 2, id, true, WalRecovery::SkipDamagedTail).unwrap();
            assert!(seen.is_empty());
            assert_eq!(outcome.valid_len, 0);
            assert_eq!(outcome.skipped_damage.map(|c| c.offset), Some(0));
        }
        // A header of zeros followed by anything else is not a zeroed segment: salvage
        // must not skip (and recovery then overwrite) what may be another file.
        let mut data = vec![0u8; 100];
        data[99] = 1;
        std::fs::write(&path, &data).unwrap();
        let result = replay(dir.path(), 2, id, true, WalRecovery::SkipDamagedTail);
        expect_corruption(result, &path);
    }

    /// Records longer than a read chunk, and many records spanning chunk boundaries,
    /// replay exactly (the segment is streamed, not read whole).
    #[test]
    fn records_spanning_read_chunks_replay_exactly() {
        let dir = tempfile::tempdir().unwrap();
        let id = uuid::Uuid::new_v4();
        let mut w = WalWriter::create(&OsFs, dir.path(), 3, id).unwrap();
        let sizes = [10, REPLAY_CHUNK - 30, 100, 3 * REPLAY_CHUNK + 7, 0, REPLAY_CHUNK, 5];
        let payloads: Vec<Vec<u8>> =
            sizes.iter().enumerate().map(|(i, &n)| vec![i as u8 + 1; n]).collect();
        for p in &payloads {
            w.append(p).unwrap();
        }
        w.finish().unwrap();
        let (seen, outcome) = replay(dir.path(), 3, id, true, WalRecovery::Strict).unwrap();
        assert!(seen == payloads, "payloads differ");
        let path = dir.path().join(segment_file_name(3));
        let size = std::fs::metadata(&path).unwrap().len();
        assert_eq!(outcome.valid_len, size);
        // A torn copy of the last record after them is still a torn tail.
        let mut bytes = std::fs::read(&path).unwrap();
        bytes.extend_from_slice(&[9u8; 10]); // an incomplete record header
        std::fs::write(&path, &bytes).unwrap();
        let (seen, outcome) = replay(dir.path(), 3, id, true, WalRecovery::Strict).unwrap();
        assert_eq!(seen.len(), payloads.len());
        assert_eq!(outcome.torn_tail, Some(size));
        assert!(
            !outcome.torn_tail_is_reserved_space,
            "an interrupted append is not reserved space"
        );
    }

    #[test]
    fn torn_tail_is_dropped_in_the_last_segment_only() {
        let dir = tempfile::tempdir().unwrap();
        let id = uuid::Uuid::new_v4();
        let path = write_segment(dir.path(), 7, id, 10);
        let bytes = std::fs::read(&path).unwrap();
        let last = record_offset(9);
        for cut in last + 1..bytes.len() as u64 {
            std::fs::write(&path, &bytes[..cut as usize]).unwrap();
            let (seen, outcome) = replay(dir.path(), 7, id, true, WalRecovery::Strict).unwrap();
            assert_eq!(seen.len(), 9);
            assert_eq!(outcome.torn_tail, Some(last));
            assert_eq!(outcome.valid_len, last);
            let result = replay(dir.path(), 7, id, false, WalRecovery::Strict);
            assert_eq!(expect_corruption(result, &path), last);
        }
    }

    #[test]
    fn damage_before_the_tail_is_corruption_or_skipped_by_mode() {
        let dir = tempfile::tempdir().unwrap();
        let id = uuid::Uuid::new_v4();
        let path = write_segment(dir.path(), 8, id, 10);
        let mut bytes = std::fs::read(&path).unwrap();
        let damaged = record_offset(4);
        bytes[damaged as usize + HEADER_LEN + 1] ^= 0x55;
        std::fs::write(&path, &bytes).unwrap();
        for is_last in [true, false] {
            let result = replay(dir.path(), 8, id, is_last, WalRecovery::Strict);
            assert_eq!(expect_corruption(result, &path), damaged);

            let (seen, outcome) =
                replay(dir.path(), 8, id, is_last, WalRecovery::SkipDamagedTail).unwrap();
            assert_eq!(seen, (0..4).map(payload).collect::<Vec<_>>());
            assert_eq!(outcome.skipped_damage.map(|c| c.offset), Some(damaged));
            assert_eq!(outcome.torn_tail, None);
        }
    }

    #[test]
    fn skip_mode_reports_a_torn_record_in_a_middle_segment() {
        let dir = tempfile::tempdir().unwrap();
        let id = uuid::Uuid::new_v4();
        let path = write_segment(dir.path(), 9, id, 5);
        let len = std::fs::metadata(&path).unwrap().len();
        std::fs::OpenOptions::new().write(true).open(&path).unwrap().set_len(len - 1).unwrap();
        let (seen, outcome) =
            replay(dir.path(), 9, id, false, WalRecovery::SkipDamagedTail).unwrap();
        assert_eq!(seen.len(), 4);
        assert_eq!(outcome.skipped_damage.map(|c| c.offset), Some(record_offset(4)));
    }

    /// Replays segment 10 (5 records) with a callback that fails on the third record
    /// with `error`; returns the segment's path, the result and the number of calls.
    fn fail_third_record(error: ReplayError) -> (PathBuf, Result<ReplayOutcome>, usize) {
        let dir = tempfile::tempdir().unwrap();
        let id = uuid::Uuid::new_v4();
        let path = write_segment(dir.path(), 10, id, 5);
        let mut calls = 0;
        let mut error = Some(error);
        let result = replay_segment(&OsFs, dir.path(), 10, id, true, WalRecovery::Strict, |_| {
            calls += 1;
            match error.take_if(|_| calls == 3) {
                Some(e) => Err(e),
                None => Ok(()),
            }
        });
        (path, result, calls)
    }

    #[test]
    fn a_damaged_record_stops_replay_and_is_located_in_the_segment() {
        let (path, result, calls) =
            fail_third_record(ReplayError::Damaged(Corruption::new(2, "bad batch")));
        assert_eq!(calls, 3);
        let offset = expect_corruption(result, &path);
        assert_eq!(offset, record_offset(2) + HEADER_LEN as u64 + 2);
    }

    /// The error of a failed apply comes back as it is, even a corruption with an
    /// empty file name (which the reader used to take for "locate me").
    #[test]
    fn a_failed_apply_stops_replay_and_is_returned_unchanged() {
        let elsewhere = PathBuf::from("elsewhere.wal");
        for file in [elsewhere, PathBuf::new()] {
            let error = Corruption::new(7, "records are missing").in_file(&file);
            let (_, result, calls) = fail_third_record(ReplayError::Apply(error));
            assert_eq!(calls, 3);
            assert_eq!(expect_corruption(result, &file), 7);
        }
        let (_, result, _) = fail_third_record(ReplayError::Apply(Error::Closed));
        assert!(matches!(result, Err(Error::Closed)), "{result:?}");
    }

    #[test]
    fn missing_segment_is_an_io_error() {
        let dir = tempfile::tempdir().unwrap();
        let result = replay(dir.path(), 1, uuid::Uuid::new_v4(), true, WalRecovery::Strict);
        assert!(matches!(result, Err(Error::Io(e)) if e.kind() == std::io::ErrorKind::NotFound));
    }

    #[test]
    fn oversized_append_is_an_invalid_argument() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = WalWriter::create(&OsFs, dir.path(), 1, uuid::Uuid::new_v4()).unwrap();
        let big = vec![0u8; crate::log_record::MAX_RECORD_SIZE + 1];
        assert!(matches!(w.append(&big), Err(Error::InvalidArgument(_))));
        let path = dir.path().join(segment_file_name(1));
        assert_eq!(std::fs::metadata(path).unwrap().len(), SEGMENT_HEADER_LEN as u64);
    }

    proptest! {
        #[test]
        fn arbitrary_records_never_panic(
            tail in proptest::collection::vec(any::<u8>(), 0..200),
            is_last in any::<bool>(),
            skip in any::<bool>(),
        ) {
            let dir = tempfile::tempdir().unwrap();
            let id = uuid::Uuid::from_u128(7);
            let path = write_segment(dir.path(), 1, id, 2);
            let mut bytes = std::fs::read(&path).unwrap();
            bytes.extend(&tail);
            std::fs::write(&path, &bytes).unwrap();
            let mode = if skip { WalRecovery::SkipDamagedTail } else { WalRecovery::Strict };
            match replay(dir.path(), 1, id, is_last, mode) {
                Ok((seen, outcome)) => {
                    prop_assert!(seen.len() >= 2);
                    prop_assert!(outcome.valid_len <= bytes.len() as u64);
                }
                Err(e) => prop_assert!(e.is_corruption(), "{e:?}"),
            }
        }
    }
}
