//! Appending to one WAL segment.
//!
//! # Thread safety
//! A [`WalWriter`] takes `&mut self` for every write; the write path's group-commit
//! leader is its only user, so records never interleave.
//!
//! # Invariants
//! 1. When [`WalWriter::create`] returns, the segment's header and its directory entry
//!    are durable: a replay never finds an acknowledged record in a segment that
//!    might vanish.
//! 2. [`WalWriter::append`] hands the whole record to the OS before returning (it
//!    survives a process crash); [`WalWriter::sync`] makes it survive a power loss.
//! 3. After an I/O error the writer refuses further writes (see
//!    [`LogWriter`]); the database must stop writing.
//! 4. Space is reserved ahead of the records in steps of [`PREALLOCATE_STEP`]
//!    ([`WritableFile::preallocate`](crate::fs::WritableFile::preallocate)), so a
//!    synced append seldom changes the file's size: measured on ext4 here, 1.5× the
//!    synced appends per second. The reserved tail reads as zeros, which replay takes
//!    for a torn tail and cuts, as after any crash. [`WalWriter::finish`] gives it
//!    back before the next segment is created: only the last segment may end in one.

use std::path::{Path, PathBuf};

use super::{encode_header, segment_file_name};
use crate::error::{Error, Result};
use crate::fs::FileSystem;
use crate::log_record::{HEADER_LEN, LogWriter, MAX_RECORD_SIZE};

/// Bytes reserved at a time ahead of the records.
pub const PREALLOCATE_STEP: u64 = 1 << 20;

/// Writes records to one WAL segment.
pub struct WalWriter {
    log: LogWriter,
    path: PathBuf,
    /// The file is reserved up to here (0: nothing reserved).
    reserved: u64,
    /// False once the filesystem refused a reservation for a reason other than space.
    preallocating: bool,
}

impl std::fmt::Debug for WalWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WalWriter")
            .field("path", &self.path)
            .field("size", &self.log.len())
            .finish_non_exhaustive()
    }
}

/// Cuts segment `number` back to its first `valid_len` bytes, durably.
///
/// Recovery calls this for every segment it replayed. Where it dropped a torn tail
/// (or, in salvage mode, skipped damage), once newer segments exist a torn record
/// would no longer be at the tail of the log and the next open would rightly call it
/// corruption. Where it dropped nothing, the cut is a sync: the records a crashed
/// process wrote but never synced become durable before newer synced ones. The file is cut in
/// place ([`FileSystem::set_len`]), so this needs no free space: it is what lets a
/// database reopen after the disk filled up. A segment whose header itself was
/// skipped is recreated empty (a 40-byte file).
pub fn truncate_segment(
    fs: &dyn FileSystem,
    dir: &Path,
    number: u64,
    db_id: uuid::Uuid,
    valid_len: u64,
) -> Result<()> {
    if valid_len < super::SEGMENT_HEADER_LEN as u64 {
        WalWriter::create(fs, dir, number, db_id)?;
        return Ok(());
    }
    fs.set_len(&dir.join(segment_file_name(number)), valid_len)?;
    Ok(())
}

impl WalWriter {
    /// Creates segment `number` of database `db_id` in `dir` (truncating a file of
    /// that name), writes its header and syncs the file and the directory.
    pub fn create(
        fs: &dyn FileSystem,
        dir: &Path,
        number: u64,
        db_id: uuid::Uuid,
    ) -> Result<WalWriter> {
        let path = dir.join(segment_file_name(number));
        let mut file = fs.create(&path)?;
        file.append(&encode_header(number, db_id))?;
        file.sync()?;
        fs.sync_dir(dir)?;
        Ok(WalWriter { log: LogWriter::new(file), path, reserved: 0, preallocating: true })
    }

    /// Appends one record. A payload above
    /// [`MAX_RECORD_SIZE`] is an `InvalidArgument` and writes nothing.
    pub fn append(&mut self, payload: &[u8]) -> Result<()> {
        if payload.len() > MAX_RECORD_SIZE {
            return Err(Error::invalid(format!(
                "WAL record of {} bytes exceeds the maximum of {MAX_RECORD_SIZE}",
                payload.len()
            )));
        }
        self.reserve(self.log.len() + (HEADER_LEN + payload.len()) as u64);
        let appended = self.log.add_record(payload);
        if appended.is_err() {
            // A taken-back append also cut the reservation.
            self.reserved = 0;
        }
        Ok(appended?)
    }

    /// Reserves space up to past `end` if it is not yet. Best effort: a full disk
    /// leaves the append to find out how much fits, and a filesystem that cannot
    /// reserve is not asked again.
    fn reserve(&mut self, end: u64) {
        if !self.preallocating || end <= self.reserved {
            return;
        }
        let target = end.div_ceil(PREALLOCATE_STEP) * PREALLOCATE_STEP;
        match self.log.preallocate(target) {
            Ok(()) => self.reserved = target,
            Err(e) if e.kind() == std::io::ErrorKind::StorageFull => {}
            Err(e) => {
                tracing::debug!(
                    target: "aeternusdb::wal",
                    path = %self.path.display(),
                    error = %e,
                    "WAL preallocation refused; appending without it"
                );
                self.preallocating = false;
            }
        }
    }

    /// Syncs every record and gives back the reserved tail, durably: the segment then
    /// ends with its last record. Called before the next segment is created and on
    /// close.
    pub fn finish(&mut self) -> Result<()> {
        self.sync()?;
        if self.reserved > self.log.len() {
            self.log.trim()?;
            self.reserved = 0;
        }
        Ok(())
    }

    /// False once an error made the writer refuse further records.
    pub fn is_usable(&self) -> bool {
        self.log.is_usable()
    }

    /// Makes every record appended so far durable.
    pub fn sync(&mut self) -> Result<()> {
        Ok(self.log.sync()?)
    }
}
