//! The manifest: a log of [`VersionEdit`]s naming the live tables and the counters,
//! plus a `CURRENT` file pointing at the live log.
//!
//! # Layout
//! `CURRENT` holds the live manifest's file name and a newline: `MANIFEST-000005\n`.
//! A manifest file `MANIFEST-{number:06}` is a 16-byte header followed by records
//! framed by [`crate::log_record`], each holding one encoded [`VersionEdit`]:
//! ```text
//! +-----------+-------------+------------+--------------------+---------------
//! | magic u64 | version u32 | crc32c u32 | record: snapshot   | record: edit …
//! +-----------+-------------+------------+--------------------+---------------
//!                             of the preceding 12 bytes
//! ```
//! Integers are little-endian. [`MANIFEST_MAGIC`], [`MANIFEST_FORMAT_VERSION`], the
//! header layout and the names `CURRENT` / `MANIFEST-` are part of the file format:
//! never change them.
//!
//! # Invariants
//! 1. The first record of every manifest file is a snapshot of the whole state; the
//!    file is synced, and its directory entry too, before `CURRENT` points at it.
//! 2. `CURRENT` is replaced atomically (write `CURRENT.tmp`, sync, rename, sync the
//!    directory), so it always names a complete manifest.
//! 3. An edit is durable (appended and synced) before it changes the in-memory state;
//!    an edit that does not apply to the state is refused before anything is written.
//! 4. A manifest's own file number is below the `next_file_number` it records, so it
//!    is never handed out again.
//! 5. After any I/O error the [`Manifest`] refuses further edits: what is on disk is
//!    no longer known. The database must stop and be reopened.
//!
//! # Recovery
//! [`Manifest::load`] replays the file `CURRENT` names. Only the last record may be
//! torn (a crash during an append, before it was acknowledged); it is dropped. Any
//! other damage is [`Error::Corruption`] naming the file. A loaded state is written
//! into a fresh manifest with [`Manifest::create`], never appended to the old file,
//! whose torn tail would otherwise sit in front of new records.

mod edit;
mod state;

use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use edit::{TableMeta, VersionEdit};
pub use state::ManifestState;

pub use crate::file_names::{CURRENT, manifest_file_name, parse_manifest_file_name};

use crate::coding::Decoder;
use crate::error::{Corruption, Error, Result};
use crate::file_names::temp_file_name;
use crate::fs::FileSystem;
use crate::log_record::{HEADER_LEN, LogEnd, LogRead, LogReader, LogWriter};

/// Identifies a manifest file ("AEMANIFS"). Part of the file format: never change.
pub const MANIFEST_MAGIC: u64 = u64::from_le_bytes(*b"AEMANIFS");

/// The manifest format written by this version. Part of the file format: never change
/// the meaning of an existing version.
pub const MANIFEST_FORMAT_VERSION: u32 = 1;

/// Bytes in a manifest file header. Part of the file format: never change.
pub const MANIFEST_HEADER_LEN: usize = 8 + 4 + 4;

/// The live manifest file, open for appending edits, and the state it adds up to.
///
/// # Thread safety
/// Every change takes `&mut self`; the owner serializes edits (one writer of metadata).
pub struct Manifest {
    fs: Arc<dyn FileSystem>,
    dir: PathBuf,
    number: u64,
    log: LogWriter,
    state: ManifestState,
    max_size: u64,
    failed: bool,
}

impl std::fmt::Debug for Manifest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Manifest")
            .field("dir", &self.dir)
            .field("number", &self.number)
            .field("size", &self.log.len())
            .field("max_size", &self.max_size)
            .field("failed", &self.failed)
            .finish_non_exhaustive()
    }
}

impl Manifest {
    /// Writes manifest `number` in `dir` holding `state` as one snapshot, points
    /// `CURRENT` at it and removes every other manifest file.
    ///
    /// `state.next_file_number` is raised above `number` if needed (invariant 4). Once
    /// the log grows past `max_size` bytes, [`Manifest::apply`] rolls over to a fresh
    /// snapshot. `number` must not be the manifest `CURRENT` names now: that file
    /// would be truncated before `CURRENT` moves away from it.
    pub fn create(
        fs: Arc<dyn FileSystem>,
        dir: &Path,
        number: u64,
        mut state: ManifestState,
        max_size: u64,
    ) -> Result<Manifest> {
        if current_manifest_number(fs.as_ref(), dir).ok() == Some(number) {
            return Err(Error::invalid(format!(
                "{} is the current manifest and cannot be recreated",
                manifest_file_name(number)
            )));
        }
        let log = install_new_manifest(fs.as_ref(), dir, number, &mut state)
            .map_err(Rollover::into_error)?;
        Ok(Manifest { fs, dir: dir.to_path_buf(), number, log, state, max_size, failed: false })
    }

    /// Reads `CURRENT` in `dir` and replays the manifest it names.
    ///
    /// A missing or garbled `CURRENT` is [`Error::Corruption`] naming `CURRENT` (check
    /// that it exists first to tell "no database here" apart), and so is a `CURRENT`
    /// naming a manifest that is missing. A damaged manifest is [`Error::Corruption`]
    /// naming it; only a torn last record is dropped.
    pub fn load(fs: &dyn FileSystem, dir: &Path) -> Result<ManifestState> {
        let current = dir.join(CURRENT);
        let number = current_manifest_number(fs, dir)?;
        let path = dir.join(manifest_file_name(number));
        let data = fs.read_all(&path).map_err(|e| match e.kind() {
            // `CURRENT` is the file whose content no longer matches the directory
            // (a flipped digit names a manifest that never existed).
            std::io::ErrorKind::NotFound => Corruption::new(
                0,
                format!("{CURRENT} names {}, which is missing", manifest_file_name(number)),
            )
            .in_file(&current),
            _ => Error::Io(e),
        })?;
        check_header(&data).map_err(|c| c.in_file(&path))?;

        let mut state = ManifestState::default();
        let mut records = 0u64;
        let mut reader = LogReader::new(&data, MANIFEST_HEADER_LEN);
        let end = loop {
            match reader.read() {
                LogRead::Record { offset, payload } => {
                    let edit = VersionEdit::decode(payload).map_err(|c| {
                        Corruption::new(offset + HEADER_LEN as u64 + c.offset, c.message)
                            .in_file(&path)
                    })?;
                    state
                        .apply(&edit)
                        .map_err(|c| Corruption::new(offset, c.message).in_file(&path))?;
                    records += 1;
                }
                LogRead::End(end) => break end,
            }
        };
        match end {
            LogEnd::Clean | LogEnd::TornTail { .. } => {}
            LogEnd::Corruption(c) => return Err(c.in_file(&path)),
        }
        if records == 0 || state.db_id.is_nil() {
            return Err(Corruption::new(
                MANIFEST_HEADER_LEN as u64,
                "manifest does not start with a snapshot",
            )
            .in_file(&path));
        }
        Ok(state)
    }

    /// The path of the manifest file `CURRENT` in `dir` names (corruption naming
    /// `CURRENT` if it is missing or garbled).
    pub fn current_path(fs: &dyn FileSystem, dir: &Path) -> Result<PathBuf> {
        Ok(dir.join(manifest_file_name(current_manifest_number(fs, dir)?)))
    }

    /// Makes `edit` durable and applies it to the state.
    ///
    /// An edit that does not apply (unknown table removed, duplicate table added, …)
    /// is `Error::InvalidArgument` and nothing is written. If the log then exceeds
    /// `max_size`, the manifest rolls over: a fresh snapshot is written as manifest
    /// `new_file_number()`, `CURRENT` switches to it and the old file is removed.
    /// After an I/O error every later call fails (invariant 5), except for an edit
    /// refused for lack of space that the log took back, and a rollover that found no
    /// space before `CURRENT` named the new file (the old manifest stays in use).
    pub fn apply(
        &mut self,
        edit: VersionEdit,
        new_file_number: impl FnOnce() -> u64,
    ) -> Result<()> {
        if self.failed {
            return Err(Error::Io(std::io::Error::other(
                "an earlier manifest write failed; reopen the database",
            )));
        }
        self.state.check(&edit).map_err(|c| Error::invalid(c.message))?;
        if let Err(e) = self.log.add_record(&edit.encode()) {
            let e = Error::Io(e);
            // Only an append refused for lack of space that the log took back leaves
            // the manifest as it was: the edit did not happen, and a later one may.
            self.failed = !(e.is_no_space() && self.log.is_usable());
            return Err(e);
        }
        // From here the edit may be durable: any failure is final.
        let result = self.finish_edit(&edit, new_file_number);
        self.failed = result.is_err();
        result
    }

    /// Syncs the appended `edit`, applies it and rolls the manifest over if due.
    fn finish_edit(
        &mut self,
        edit: &VersionEdit,
        new_file_number: impl FnOnce() -> u64,
    ) -> Result<()> {
        self.log.sync()?;
        self.state.apply(edit).map_err(|c| Error::invalid(c.message))?;
        if self.log.len() > self.max_size {
            let number = new_file_number();
            if number == self.number {
                return Err(Error::invalid(format!(
                    "manifest rollover was given the live manifest's number {number}"
                )));
            }
            match install_new_manifest(self.fs.as_ref(), &self.dir, number, &mut self.state) {
                Ok(log) => {
                    self.log = log;
                    self.number = number;
                }
                // The edit is durable in the old manifest, which `CURRENT` still names:
                // keep using it and roll over at a later edit, once there is space.
                Err(Rollover::NotInstalled(e)) if e.is_no_space() => {
                    let _ = self.fs.remove_file(&self.dir.join(manifest_file_name(number)));
                    let _ = self.fs.remove_file(&self.dir.join(temp_file_name(CURRENT)));
                }
                Err(Rollover::NotInstalled(e) | Rollover::MaybeInstalled(e)) => return Err(e),
            }
        }
        Ok(())
    }

    /// False once a failed write or sync made every later edit fail.
    pub fn is_usable(&self) -> bool {
        !self.failed
    }
}

/// Writes manifest `number` holding a snapshot of `state`, makes it durable, points
/// `CURRENT` at it and removes other manifest files. Returns the log to append to.
/// How installing a new manifest failed: before `CURRENT` could name it, or in or
/// after the rename that switches `CURRENT` (after which it may name either file).
enum Rollover {
    NotInstalled(Error),
    MaybeInstalled(Error),
}

impl Rollover {
    fn into_error(self) -> Error {
        match self {
            Rollover::NotInstalled(e) | Rollover::MaybeInstalled(e) => e,
        }
    }
}

fn install_new_manifest(
    fs: &dyn FileSystem,
    dir: &Path,
    number: u64,
    state: &mut ManifestState,
) -> Result<LogWriter, Rollover> {
    state.next_file_number = state.next_file_number.max(number.saturating_add(1));
    let log = (|| {
        let mut file = fs.create(&dir.join(manifest_file_name(number)))?;
        file.append(&encode_header())?;
        let mut log = LogWriter::new(file);
        log.add_record(&state.snapshot_edit().encode())?;
        log.sync()?;
        fs.sync_dir(dir)?;
        write_current_tmp(fs, dir, number)?;
        Ok(log)
    })()
    .map_err(Rollover::NotInstalled)?;
    switch_current(fs, dir).map_err(Rollover::MaybeInstalled)?;
    remove_other_manifests(fs, dir, number);
    Ok(log)
}

/// Writes and syncs `CURRENT.tmp` naming manifest `number`; with [`switch_current`]
/// it points `CURRENT` at the manifest atomically (invariant 2).
fn write_current_tmp(fs: &dyn FileSystem, dir: &Path, number: u64) -> Result<()> {
    let mut file = fs.create(&dir.join(temp_file_name(CURRENT)))?;
    file.append(format!("{}\n", manifest_file_name(number)).as_bytes())?;
    file.sync()?;
    Ok(())
}

/// Renames `CURRENT.tmp` over `CURRENT` and makes the rename durable.
fn switch_current(fs: &dyn FileSystem, dir: &Path) -> Result<()> {
    fs.rename(&dir.join(temp_file_name(CURRENT)), &dir.join(CURRENT))?;
    fs.sync_dir(dir)?;
    Ok(())
}

/// Removes every manifest file but `keep`. Best effort: `CURRENT` already names
/// `keep`, so a leftover file is garbage, never read, removed again next time.
fn remove_other_manifests(fs: &dyn FileSystem, dir: &Path, keep: u64) {
    let Ok(names) = fs.list_dir(dir) else { return };
    for name in names {
        if parse_manifest_file_name(&name).is_some_and(|n| n != keep) {
            let _ = fs.remove_file(&dir.join(name));
        }
    }
}

/// The manifest number `CURRENT` names; corruption naming `CURRENT` if it is missing
/// or garbled.
fn current_manifest_number(fs: &dyn FileSystem, dir: &Path) -> Result<u64> {
    let path = dir.join(CURRENT);
    let bytes = fs.read_all(&path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => Corruption::new(0, "CURRENT is missing").in_file(&path),
        _ => Error::Io(e),
    })?;
    std::str::from_utf8(&bytes)
        .ok()
        .and_then(|s| s.strip_suffix('\n'))
        .and_then(parse_manifest_file_name)
        .ok_or_else(|| Corruption::new(0, "CURRENT does not name a manifest file").in_file(&path))
}

fn encode_header() -> Vec<u8> {
    let mut buf = Vec::with_capacity(MANIFEST_HEADER_LEN);
    buf.extend_from_slice(&MANIFEST_MAGIC.to_le_bytes());
    buf.extend_from_slice(&MANIFEST_FORMAT_VERSION.to_le_bytes());
    let crc = crc32c::crc32c(&buf);
    buf.extend_from_slice(&crc.to_le_bytes());
    buf
}

fn check_header(data: &[u8]) -> Result<(), Corruption> {
    let mut d = Decoder::new(data);
    let (Some(magic), Some(version), Some(crc)) = (d.u64(), d.u32(), d.u32()) else {
        return Err(Corruption::new(0, "manifest shorter than its header"));
    };
    if magic != MANIFEST_MAGIC {
        return Err(Corruption::new(0, "not a manifest file (bad magic)"));
    }
    if crc32c::crc32c(data.get(..12).unwrap_or_default()) != crc {
        return Err(Corruption::new(12, "bad manifest header checksum"));
    }
    if version != MANIFEST_FORMAT_VERSION {
        return Err(Corruption::new(8, format!("unsupported manifest format version {version}")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::edit::tests::table;
    use super::*;
    use crate::fs::{FaultFs, FaultKind, OsFs};

    fn fs() -> Arc<dyn FileSystem> {
        Arc::new(OsFs)
    }

    fn manifest_files(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| parse_manifest_file_name(n).is_some())
            .collect();
        names.sort();
        names
    }

    fn expect_corruption(result: Result<ManifestState>, path: &Path) {
        match result {
            Err(Error::Corruption { file, .. }) => assert_eq!(file, path),
            other => panic!("expected corruption in {}, got {other:?}", path.display()),
        }
    }

    /// A manifest in `dir` with a few edits applied.
    fn populated(dir: &Path) -> Manifest {
        let state = ManifestState::new(uuid::Uuid::new_v4());
        let mut m = Manifest::create(fs(), dir, 1, state, 1 << 20).unwrap();
        m.apply(
            VersionEdit {
                added: vec![table(2, 0), table(3, 0)],
                last_wal: Some(4),
                ..Default::default()
            },
            || unreachable!(),
        )
        .unwrap();
        m.apply(
            VersionEdit {
                removed: vec![(0, 2), (0, 3)],
                added: vec![table(5, 1)],
                log_number: Some(4),
                last_seqno: Some(99),
                next_file_number: Some(6),
                ..Default::default()
            },
            || unreachable!(),
        )
        .unwrap();
        m
    }

    #[test]
    fn file_names_round_trip() {
        assert_eq!(manifest_file_name(5), "MANIFEST-000005");
        for n in [0, 5, 1_234_567, u64::MAX] {
            assert_eq!(parse_manifest_file_name(&manifest_file_name(n)), Some(n));
        }
        for bad in ["MANIFEST-5", "MANIFEST-", "MANIFEST-00000x", "manifest-000005", "CURRENT"] {
            assert_eq!(parse_manifest_file_name(bad), None, "{bad}");
        }
    }

    #[test]
    fn load_returns_what_was_applied() {
        let dir = tempfile::tempdir().unwrap();
        let m = populated(dir.path());
        assert_eq!(m.number, 1);
        let loaded = Manifest::load(&OsFs, dir.path()).unwrap();
        assert_eq!(loaded, m.state);
        assert_eq!(loaded.tables.keys().copied().collect::<Vec<_>>(), vec![5]);
        assert_eq!((loaded.log_number, loaded.last_wal, loaded.last_seqno), (4, 4, 99));
        let current = std::fs::read_to_string(dir.path().join(CURRENT)).unwrap();
        assert_eq!(current, "MANIFEST-000001\n");
    }

    #[test]
    fn own_number_is_never_handed_out_again() {
        let dir = tempfile::tempdir().unwrap();
        let m =
            Manifest::create(fs(), dir.path(), 7, ManifestState::new(uuid::Uuid::new_v4()), 4096)
                .unwrap();
        assert_eq!(m.state.next_file_number, 8);
        assert_eq!(Manifest::load(&OsFs, dir.path()).unwrap().next_file_number, 8);
    }

    #[test]
    fn reopening_writes_a_fresh_manifest_and_removes_the_old_one() {
        let dir = tempfile::tempdir().unwrap();
        let before = populated(dir.path()).state.clone();
        let loaded = Manifest::load(&OsFs, dir.path()).unwrap();
        let next = loaded.next_file_number;
        let m = Manifest::create(fs(), dir.path(), next, loaded, 4096).unwrap();
        assert_eq!(manifest_files(dir.path()), vec![manifest_file_name(next)]);
        assert_eq!(m.state.tables, before.tables);
        assert_eq!(Manifest::load(&OsFs, dir.path()).unwrap(), m.state);
        // Recreating the live manifest in place is refused.
        let again = Manifest::create(fs(), dir.path(), next, m.state.clone(), 4096);
        assert!(matches!(again, Err(Error::InvalidArgument(_))));
    }

    #[test]
    fn rollover_keeps_the_state_and_one_manifest_file() {
        let dir = tempfile::tempdir().unwrap();
        let state = ManifestState::new(uuid::Uuid::new_v4());
        let mut m = Manifest::create(fs(), dir.path(), 1, state, 1024).unwrap();
        let mut next = 1000;
        let mut rollovers = 0;
        for i in 0..200u64 {
            let before = m.number;
            let mut edit = VersionEdit { added: vec![table(10 + i, 0)], ..Default::default() };
            if i >= 5 {
                edit.removed.push((0, 5 + i));
            }
            m.apply(edit, || {
                next += 1;
                next
            })
            .unwrap();
            if m.number != before {
                rollovers += 1;
                assert_eq!(manifest_files(dir.path()), vec![manifest_file_name(m.number)]);
            }
            assert!(m.log.len() <= 1024 + 200, "size {}", m.log.len());
        }
        assert!(rollovers > 5, "only {rollovers} rollovers");
        assert_eq!(m.state.tables.len(), 5);
        assert!(m.state.next_file_number > m.number);
        assert_eq!(Manifest::load(&OsFs, dir.path()).unwrap(), m.state);
        assert_eq!(manifest_files(dir.path()).len(), 1);
        assert!(!dir.path().join(temp_file_name(CURRENT)).exists());
    }

    #[test]
    fn invalid_edit_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let mut m = populated(dir.path());
        let (size, state) = (m.log.len(), m.state.clone());
        let bad = VersionEdit { removed: vec![(0, 42)], ..Default::default() };
        assert!(matches!(m.apply(bad, || unreachable!()), Err(Error::InvalidArgument(_))));
        assert_eq!((m.log.len(), &m.state), (size, &state));
        // Still usable.
        m.apply(VersionEdit { last_seqno: Some(100), ..Default::default() }, || unreachable!())
            .unwrap();
        assert_eq!(Manifest::load(&OsFs, dir.path()).unwrap().last_seqno, 100);
    }

    #[test]
    fn missing_or_garbled_current_is_corruption_naming_current() {
        let dir = tempfile::tempdir().unwrap();
        let current = dir.path().join(CURRENT);
        expect_corruption(Manifest::load(&OsFs, dir.path()), &current);
        populated(dir.path());
        for garbage in [&b""[..], b"MANIFEST-000001", b"MANIFEST-1\n", b"\xff\xfe\n", b"junk\n"] {
            std::fs::write(&current, garbage).unwrap();
            expect_corruption(Manifest::load(&OsFs, dir.path()), &current);
        }
        // CURRENT naming a manifest that is not there (e.g. a flipped digit).
        std::fs::write(&current, "MANIFEST-000009\n").unwrap();
        expect_corruption(Manifest::load(&OsFs, dir.path()), &current);
    }

    #[test]
    fn torn_last_edit_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let m = populated(dir.path());
        let path = dir.path().join(manifest_file_name(1));
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() - 3]).unwrap();
        let loaded = Manifest::load(&OsFs, dir.path()).unwrap();
        assert_ne!(loaded, m.state);
        assert_eq!(loaded.tables.keys().copied().collect::<Vec<_>>(), vec![2, 3]);
    }

    #[test]
    fn failed_rollover_stops_the_manifest_and_keeps_the_old_one_current() {
        // Regression (no space): a rename of `CURRENT` refused for lack of space was
        // taken for an edit that never happened, though the edit was durable and
        // `CURRENT` may already have named the new file.
        for error in [std::io::ErrorKind::Other, std::io::ErrorKind::StorageFull] {
            rollover_failing_in_rename(error);
        }
    }

    /// Fails the rename of a rollover (the one that switches `CURRENT`) with `error`.
    fn rollover_failing_in_rename(error: std::io::ErrorKind) {
        let fs = FaultFs::new();
        let dir = Path::new("/db");
        fs.create_dir_all(dir).unwrap();
        let state = ManifestState::new(uuid::Uuid::new_v4());
        let mut m = Manifest::create(Arc::new(fs.clone()), dir, 1, state, 4096).unwrap();
        // The next rename is the rollover's switch of `CURRENT`; only it fails.
        fs.fail_after_with(FaultKind::Rename, 0, error);
        let mut i = 10;
        let err = loop {
            let edit = VersionEdit { added: vec![table(i, 0)], ..Default::default() };
            if let Err(e) = m.apply(edit, || 10_000) {
                break e;
            }
            i += 1;
            assert!(i < 1000, "{error:?}: no rollover ever failed");
        };
        assert!(matches!(err, Error::Io(_)), "{err:?}");
        assert!(!m.is_usable(), "{error:?}: the manifest goes on after a failed rename");
        // Every edit was made durable in the old manifest before the rollover failed.
        let loaded = Manifest::load(&fs, dir).unwrap();
        assert_eq!(loaded.tables.len() as u64, i - 10 + 1);
        // Later edits are refused, though the filesystem has recovered (the fault
        // fired once).
        let edit = VersionEdit { last_seqno: Some(1), ..Default::default() };
        assert!(m.apply(edit, || 10_001).is_err());
    }

    #[test]
    fn damaged_manifest_is_corruption_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        populated(dir.path());
        let path = dir.path().join(manifest_file_name(1));
        let bytes = std::fs::read(&path).unwrap();
        // Every single-byte flip before the last record is reported, never accepted.
        let last_record_start = {
            let mut reader = LogReader::new(&bytes, MANIFEST_HEADER_LEN);
            let mut last = 0;
            while let LogRead::Record { offset, .. } = reader.read() {
                last = offset as usize;
            }
            last
        };
        for i in 0..last_record_start {
            let mut bad = bytes.clone();
            bad[i] ^= 0x08;
            std::fs::write(&path, &bad).unwrap();
            expect_corruption(Manifest::load(&OsFs, dir.path()), &path);
        }
        // A manifest with only its header has no snapshot.
        std::fs::write(&path, &bytes[..MANIFEST_HEADER_LEN]).unwrap();
        expect_corruption(Manifest::load(&OsFs, dir.path()), &path);
    }
}
