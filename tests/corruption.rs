//! Corruption tests: flip a byte in, or truncate, every kind of file of a closed
//! database (WAL segments, SSTables, MANIFEST, CURRENT), then open it and read
//! everything back (a `get` of every key ever written, a full forward and a full
//! reverse scan).
//!
//! # What is acceptable
//! The result must be `Error::Corruption` whose `file` is the damaged file, or data
//! equal to what was written. Never other data, never another error, never a panic.
//!
//! # Documented exceptions (damage the engine cannot tell from a crash)
//! Both concern only the *newest* WAL segment, whose tail is where a crash leaves a
//! torn record:
//! 1. Truncating it at length `L` is indistinguishable from a crash before the
//!    records past `L` were written. The result must be exactly the state after the
//!    last write whose record ends at or before `L`. The writes were acknowledged with
//!    `sync`, so this loses acknowledged data; no log format without an out-of-band
//!    length can avoid it. An `L` inside the 40-byte segment header is corruption,
//!    though: the header was synced before the manifest named the segment.
//! 2. A flip inside its *last* record's payload or payload checksum makes that record
//!    look like a torn append (bad payload checksum followed by nothing); it may be
//!    dropped, giving the state before the last write.
//!
//! Any damage to an older segment is an error: it was synced before the next one was
//! created, and the first record of the next segment must continue its seqnos.
//!
//! The pristine databases are built once; every trial copies one into a fresh
//! directory (on `/dev/shm` when there is one: opening fsyncs) with `std::fs`.

mod common;

use std::collections::BTreeMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;
use std::sync::OnceLock;

use aeternusdb::{Db, Error, Options, WalRecovery};
use common::{copy_files, key};

/// Bytes in a WAL segment header.
const SEGMENT_HEADER_LEN: usize = 40;

/// Bytes in a log record header (`crc u32 | len u32 | type u8 | payload crc u32`).
const RECORD_HEADER_LEN: usize = 13;

/// Where the records of a WAL segment end: before the space the writer reserved
/// ahead of them (zeros), which the file's length includes while it is being written.
fn records_end(segment: &[u8]) -> u64 {
    let mut at = SEGMENT_HEADER_LEN;
    while let Some(header) = segment.get(at..at + RECORD_HEADER_LEN) {
        if header.iter().all(|&b| b == 0) {
            break;
        }
        let len = u32::from_le_bytes(header[4..8].try_into().unwrap()) as usize;
        at += RECORD_HEADER_LEN + len;
    }
    at.min(segment.len()) as u64
}

type State = BTreeMap<Vec<u8>, Vec<u8>>;

/// A closed database and what it must hold.
struct Fixture {
    dir: tempfile::TempDir,
    /// The state after every write.
    full: State,
    /// Every key ever written (deleted ones too: their `get` must say `None`).
    keys: Vec<Vec<u8>>,
    /// File name of the newest WAL segment.
    newest_wal: String,
    /// `(size of the newest segment, state)` before its first write and after each
    /// write to it.
    tail: Vec<(u64, State)>,
}

fn options() -> Options {
    // No background compaction: the fixtures need several tables and a manifest with
    // many edits to damage.
    // 8 KiB holds about 40 of these entries (each counts its key, value and about 160
    // bytes of memtable overhead), as the fixtures' geometry needs.
    Options {
        write_buffer_size: 8 << 10,
        block_size: 256,
        auto_compaction: false,
        ..Options::default()
    }
}

fn value(i: u32, version: u32) -> Vec<u8> {
    format!("value-{i}-v{version}-{}", "x".repeat((i % 13) as usize)).into_bytes()
}

fn scratch_root() -> Option<&'static Path> {
    let shm = Path::new("/dev/shm");
    shm.is_dir().then_some(shm)
}

fn tempdir() -> tempfile::TempDir {
    match scratch_root() {
        Some(root) => tempfile::Builder::new().prefix("aeternus-corruption").tempdir_in(root),
        None => tempfile::tempdir(),
    }
    .unwrap()
}

fn names_with(dir: &Path, suffix_or_prefix: impl Fn(&str) -> bool) -> Vec<String> {
    common::file_names(dir).into_iter().filter(|n| suffix_or_prefix(n)).collect()
}

fn newest_wal(dir: &Path) -> String {
    names_with(dir, |n| n.ends_with(".wal")).pop().expect("a WAL segment")
}

/// Records writes to the open database and the model.
struct Writer<'a> {
    db: &'a Db,
    state: State,
    keys: std::collections::BTreeSet<Vec<u8>>,
}

impl Writer<'_> {
    fn put(&mut self, i: u32, version: u32) {
        self.db.put(key(i), value(i, version)).unwrap();
        self.state.insert(key(i), value(i, version));
        self.keys.insert(key(i));
    }

    fn delete(&mut self, i: u32) {
        self.db.delete(key(i)).unwrap();
        self.state.remove(&key(i));
        self.keys.insert(key(i));
    }

    fn delete_range(&mut self, start: u32, end: u32) {
        self.db.delete_range(key(start), key(end)).unwrap();
        self.state.retain(|k, _| *k < key(start) || *k >= key(end));
    }

    /// Writes into the newest WAL segment, recording where its records end after
    /// each write.
    fn tail_writes(&mut self, dir: &Path, base: u32, count: u32) -> Vec<(u64, State)> {
        let wal = dir.join(newest_wal(dir));
        let size = || records_end(&std::fs::read(&wal).unwrap());
        let mut tail = vec![(size(), self.state.clone())];
        for n in 0..count {
            match n % 5 {
                3 => self.delete(base + n - 2),
                4 => self.delete_range(n * 11, n * 11 + 3),
                _ => self.put(base + n, 1),
            }
            tail.push((size(), self.state.clone()));
        }
        // End with a put of a new key, so losing the last record is observable.
        self.put(base + count, 1);
        tail.push((size(), self.state.clone()));
        assert_eq!(newest_wal(dir), wal.file_name().unwrap().to_str().unwrap(), "no rotation");
        tail
    }
}

/// A database with several SSTables (flushed by an 8 KiB write buffer and by explicit
/// flushes), a manifest holding a snapshot and many edits, and one WAL segment holding
/// unflushed writes.
fn flushed() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let dir = tempdir();
        let db = Db::open(dir.path(), options()).unwrap();
        let mut w = Writer { db: &db, state: State::new(), keys: Default::default() };
        for round in 0..3u32 {
            for i in 0..120 {
                w.put(i * 3 + round, round);
                if i % 17 == 5 {
                    w.delete(i * 2);
                }
            }
            w.delete_range(round * 50 + 10, round * 50 + 25);
            db.flush().unwrap();
        }
        let tail = w.tail_writes(dir.path(), 1000, 20);
        let (full, keys) = (w.state, w.keys.into_iter().collect());
        db.close().unwrap();
        let newest_wal = newest_wal(dir.path());
        let tables = names_with(dir.path(), |n| n.ends_with(".sst"));
        assert!(tables.len() >= 3, "{tables:?}");
        assert_eq!(
            names_with(dir.path(), |n| n.ends_with(".wal")),
            std::slice::from_ref(&newest_wal)
        );
        let manifest = names_with(dir.path(), |n| n.starts_with("MANIFEST-"));
        assert_eq!(manifest.len(), 1);
        Fixture { dir, full, keys, newest_wal, tail }
    })
}

/// [`flushed`], reopened and written to without a flush: two WAL segments (the older
/// one no longer the newest) and a manifest that is one snapshot.
fn two_segments() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let base = flushed();
        let dir = tempdir();
        copy_files(base.dir.path(), dir.path());
        let db = Db::open(dir.path(), options()).unwrap();
        let mut w =
            Writer { db: &db, state: base.full.clone(), keys: base.keys.iter().cloned().collect() };
        let tail = w.tail_writes(dir.path(), 2000, 15);
        let (full, keys) = (w.state, w.keys.into_iter().collect());
        db.close().unwrap();
        let wals = names_with(dir.path(), |n| n.ends_with(".wal"));
        assert_eq!(wals.len(), 2, "{wals:?}");
        assert_eq!(wals[0], base.newest_wal);
        let newest_wal = newest_wal(dir.path());
        Fixture { dir, full, keys, newest_wal, tail }
    })
}

/// Everything a reader sees.
#[derive(Debug)]
struct Observed {
    gets: Vec<Option<Vec<u8>>>,
    forward: Vec<(Vec<u8>, Vec<u8>)>,
    reverse: Vec<(Vec<u8>, Vec<u8>)>,
}

impl Observed {
    fn matches(&self, keys: &[Vec<u8>], state: &State) -> bool {
        let expected: Vec<_> = state.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        let gets: Vec<_> = keys.iter().map(|k| state.get(k).cloned()).collect();
        self.gets == gets
            && self.forward == expected
            && self.reverse.iter().rev().eq(expected.iter())
    }
}

/// Opens `dir` and reads everything: every key, a forward and a reverse scan.
fn observe(dir: &Path, keys: &[Vec<u8>]) -> Result<Observed, Error> {
    let db = Db::open(dir, options())?;
    let gets =
        keys.iter().map(|k| db.get(k).map(|v| v.map(|v| v.to_vec()))).collect::<Result<_, _>>()?;
    let pair = |item: Result<(aeternusdb::Bytes, aeternusdb::Bytes), Error>| {
        item.map(|(k, v)| (k.to_vec(), v.to_vec()))
    };
    let forward = db.iter()?.map(pair).collect::<Result<_, _>>()?;
    let reverse = db.iter()?.rev().map(pair).collect::<Result<_, _>>()?;
    db.close()?;
    Ok(Observed { gets, forward, reverse })
}

#[derive(Debug, Clone, Copy)]
enum Damage {
    Flip { offset: usize, mask: u8 },
    Truncate { len: usize },
}

/// What a trial may legitimately read besides the full state (see the module docs).
fn allowed_states<'a>(fixture: &'a Fixture, name: &str, damage: Damage) -> Vec<&'a State> {
    let mut allowed = Vec::new();
    if name == fixture.newest_wal {
        let tail = &fixture.tail;
        match damage {
            // The header was synced before the segment was named: only corruption.
            Damage::Truncate { len } if len < SEGMENT_HEADER_LEN => return Vec::new(),
            Damage::Truncate { len } => {
                // Exactly the writes whose records end at or before the cut.
                let kept = tail.iter().rposition(|(size, _)| *size <= len as u64).unwrap_or(0);
                return vec![&tail[kept].1];
            }
            Damage::Flip { offset, .. } => {
                let n = tail.len() - 1;
                if n > 0 && offset as u64 >= tail[n - 1].0 {
                    allowed.push(&tail[n - 1].1);
                }
            }
        }
    }
    allowed.push(&fixture.full);
    allowed
}

/// Damages `name` in a fresh copy of the fixture, reads everything, and returns a
/// description of what was wrong, if anything.
fn trial(fixture: &Fixture, name: &str, original: &[u8], damage: Damage) -> Option<String> {
    let copy = tempdir();
    copy_files(fixture.dir.path(), copy.path());
    let damaged = copy.path().join(name);
    let bytes = match damage {
        Damage::Flip { offset, mask } => {
            let mut bytes = original.to_vec();
            bytes[offset] ^= mask;
            bytes
        }
        Damage::Truncate { len } => original[..len].to_vec(),
    };
    std::fs::write(&damaged, bytes).unwrap();
    let outcome = catch_unwind(AssertUnwindSafe(|| observe(copy.path(), &fixture.keys)));
    let what = format!("{name} {damage:?}");
    match outcome {
        Err(panic) => {
            let message = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            Some(format!("{what}: panicked: {message}"))
        }
        Ok(Err(Error::Corruption { file, .. })) if file == damaged => None,
        Ok(Err(e)) => Some(format!("{what}: wrong error: {e:?}")),
        Ok(Ok(observed)) => {
            let allowed = allowed_states(fixture, name, damage);
            if allowed.iter().any(|state| observed.matches(&fixture.keys, state)) {
                None
            } else {
                let missing = fixture
                    .full
                    .keys()
                    .filter(|k| !observed.forward.iter().any(|(o, _)| o == *k))
                    .count();
                Some(format!(
                    "{what}: wrong data ({} keys read, {} expected, {missing} expected keys missing)",
                    observed.forward.len(),
                    fixture.full.len()
                ))
            }
        }
    }
}

/// `count` positions spread over `0..len` (all of them if `len <= count`), always
/// including both ends, where headers and footers live.
fn spread(len: usize, count: usize) -> Vec<usize> {
    if len <= count {
        return (0..len).collect();
    }
    let mut at: Vec<usize> = (0..count).map(|i| i * (len - 1) / (count - 1)).collect();
    at.extend(0..16.min(len));
    at.extend(len.saturating_sub(16)..len);
    at.sort_unstable();
    at.dedup();
    at
}

/// Flips and truncations of `name`: every offset of a file up to `per_file` bytes,
/// a spread of `per_file` positions in a larger one.
fn damage_file(fixture: &Fixture, name: &str, per_file: usize) -> Vec<String> {
    let original = std::fs::read(fixture.dir.path().join(name)).unwrap();
    assert!(!original.is_empty(), "{name} is empty");
    let mut failures = Vec::new();
    for offset in spread(original.len(), per_file) {
        // Vary the bit so every bit position of a field is hit somewhere.
        let mask = 1u8 << (offset % 8);
        failures.extend(trial(fixture, name, &original, Damage::Flip { offset, mask }));
        // And a whole-byte change.
        if offset % 3 == 0 {
            failures.extend(trial(fixture, name, &original, Damage::Flip { offset, mask: 0xff }));
        }
    }
    for len in spread(original.len(), per_file) {
        failures.extend(trial(fixture, name, &original, Damage::Truncate { len }));
    }
    failures
}

fn check(failures: Vec<String>) {
    assert!(
        failures.is_empty(),
        "{} failed trials:\n{}",
        failures.len(),
        failures.iter().take(40).cloned().collect::<Vec<_>>().join("\n")
    );
}

/// The pristine fixtures read back exactly: the harness itself can tell.
#[test]
fn fixtures_read_back_exactly() {
    for fixture in [flushed(), two_segments()] {
        // Always a copy: opening writes a new manifest and WAL segment.
        let copy = tempdir();
        copy_files(fixture.dir.path(), copy.path());
        let observed = observe(copy.path(), &fixture.keys).unwrap();
        assert!(observed.matches(&fixture.keys, &fixture.full));
        let shorter = &fixture.tail[fixture.tail.len() - 2].1;
        assert!(!observed.matches(&fixture.keys, shorter), "the last write is observable");
    }
}

#[test]
fn a_damaged_newest_wal_segment_is_corruption_or_loses_only_its_tail() {
    let fixture = flushed();
    check(damage_file(fixture, &fixture.newest_wal.clone(), 400));
}

#[test]
fn damage_to_either_of_two_wal_segments_is_corruption_unless_in_the_newest_tail() {
    let fixture = two_segments();
    let mut failures = Vec::new();
    for name in names_with(fixture.dir.path(), |n| n.ends_with(".wal")) {
        failures.extend(damage_file(fixture, &name, 200));
    }
    check(failures);
}

#[test]
fn a_damaged_sstable_is_corruption_naming_it_or_reads_back_exactly() {
    let fixture = flushed();
    let tables = names_with(fixture.dir.path(), |n| n.ends_with(".sst"));
    let mut failures = Vec::new();
    // The first table gets the full spread; the others a lighter one.
    for (i, name) in tables.iter().enumerate() {
        failures.extend(damage_file(fixture, name, if i == 0 { 200 } else { 60 }));
    }
    check(failures);
}

#[test]
fn a_damaged_manifest_with_edits_is_corruption_naming_it_or_reads_back_exactly() {
    let fixture = flushed();
    let name = names_with(fixture.dir.path(), |n| n.starts_with("MANIFEST-")).remove(0);
    check(damage_file(fixture, &name, 300));
}

#[test]
fn a_damaged_snapshot_only_manifest_is_corruption_naming_it_or_reads_back_exactly() {
    let fixture = two_segments();
    let name = names_with(fixture.dir.path(), |n| n.starts_with("MANIFEST-")).remove(0);
    check(damage_file(fixture, &name, 300));
}

#[test]
fn a_damaged_current_is_corruption_naming_it_or_reads_back_exactly() {
    let mut failures = Vec::new();
    for fixture in [flushed(), two_segments()] {
        failures.extend(damage_file(fixture, "CURRENT", usize::MAX));
    }
    check(failures);
}

/// A file the manifest names that is missing is corruption in the manifest (the file
/// whose reference no longer resolves), naming the missing file in the message; a
/// missing manifest is corruption in `CURRENT`.
#[test]
fn missing_files_are_corruption_in_the_file_naming_them() {
    for fixture in [flushed(), two_segments()] {
        let manifest = names_with(fixture.dir.path(), |n| n.starts_with("MANIFEST-")).remove(0);
        let named = names_with(fixture.dir.path(), |n| {
            n.ends_with(".sst") || n.ends_with(".wal") || n.starts_with("MANIFEST-")
        });
        for name in named {
            let copy = tempdir();
            copy_files(fixture.dir.path(), copy.path());
            std::fs::remove_file(copy.path().join(&name)).unwrap();
            let referrer = if name == manifest { "CURRENT" } else { manifest.as_str() };
            match observe(copy.path(), &fixture.keys) {
                Err(Error::Corruption { file, message, .. }) => {
                    assert_eq!(file, copy.path().join(referrer), "{name} removed: {message}");
                    assert!(message.contains(&name), "{name} removed: {message}");
                }
                other => panic!(
                    "{name} removed from {:?}: {:?}",
                    names_with(fixture.dir.path(), |_| true),
                    other.map(|o| o.forward.len())
                ),
            }
        }
    }
}

/// Every offset and every length of every file of both fixtures (minutes).
#[test]
#[ignore = "exhaustive: run with --ignored"]
fn every_flip_and_cut_of_every_file_is_corruption_or_an_allowed_state() {
    let mut failures = Vec::new();
    for fixture in [flushed(), two_segments()] {
        for name in names_with(fixture.dir.path(), |n| n != "LOCK") {
            failures.extend(damage_file(fixture, &name, usize::MAX));
        }
    }
    check(failures);
}

/// A torn tail dropped at one open must not turn into "damage before the tail" at the
/// next open, when its segment is no longer the newest (recovery cuts the segment back
/// to its valid prefix).
#[test]
fn torn_tail_survives_two_reopens() {
    let dir = tempdir();
    let db = Db::open(dir.path(), options()).unwrap();
    db.put("a", "1").unwrap();
    db.close().unwrap();
    let wal = dir.path().join(newest_wal(dir.path()));
    let mut bytes = std::fs::read(&wal).unwrap();
    let record = bytes[40..].to_vec();
    bytes.extend_from_slice(&record[..record.len() - 1]); // a torn copy of the record
    std::fs::write(&wal, bytes).unwrap();
    for round in 0..3 {
        let db = Db::open(dir.path(), options()).unwrap();
        assert_eq!(db.get("a").unwrap().as_deref(), Some(&b"1"[..]), "round {round}");
        db.put(format!("b{round}"), "2").unwrap();
        db.close().unwrap();
    }
}

/// Regression (issue 8, item 4): a newest WAL segment cut inside its header or zeroed
/// was replayed as empty, so a strict open silently dropped its records. Its header
/// was synced before the manifest named it, so this is damage: a strict open reports
/// it; salvage skips it (losing that segment's writes, nothing else), and the
/// segment, recreated empty, no longer stops later strict opens.
#[test]
fn zeroed_or_header_cut_newest_segment_is_corruption_unless_salvaging() {
    let fixture = flushed();
    let before_segment = &fixture.tail[0].1;
    let original = std::fs::read(fixture.dir.path().join(&fixture.newest_wal)).unwrap();
    let damaged: [(&str, Vec<u8>); 3] = [
        ("empty", Vec::new()),
        ("cut inside the header", original[..SEGMENT_HEADER_LEN - 1].to_vec()),
        ("zeroed", vec![0; original.len()]),
    ];
    for (what, bytes) in damaged {
        let copy = tempdir();
        copy_files(fixture.dir.path(), copy.path());
        let wal = copy.path().join(&fixture.newest_wal);
        std::fs::write(&wal, bytes).unwrap();
        match observe(copy.path(), &fixture.keys) {
            Err(Error::Corruption { file, offset: 0, .. }) if file == wal => {}
            other => panic!("{what}: expected corruption in {wal:?}, got {:?}", other.err()),
        }
        let salvage = Options { wal_recovery: WalRecovery::SkipDamagedTail, ..options() };
        let db = Db::open(copy.path(), salvage).unwrap_or_else(|e| panic!("{what}: {e}"));
        for k in &fixture.keys {
            assert_eq!(db.get(k).unwrap().map(|v| v.to_vec()).as_ref(), before_segment.get(k));
        }
        db.put("after", "salvage").unwrap();
        db.close().unwrap();
        for round in 0..2 {
            let db = Db::open(copy.path(), options())
                .unwrap_or_else(|e| panic!("{what}: strict reopen {round}: {e}"));
            assert_eq!(db.get("after").unwrap().as_deref(), Some(&b"salvage"[..]), "{what}");
            db.close().unwrap();
        }
    }
}

/// A WAL segment created but never named by the manifest (a crash in a rotation or
/// an open before the manifest edit) may be empty or torn inside its header: it is
/// not replayed, only removed.
#[test]
fn unnamed_torn_segment_is_removed_not_replayed() {
    let fixture = flushed();
    for bytes in [&b""[..], &[0u8; 17][..], &[0u8; 4096][..]] {
        let copy = tempdir();
        copy_files(fixture.dir.path(), copy.path());
        let unnamed = copy.path().join("999990.wal");
        std::fs::write(&unnamed, bytes).unwrap();
        let observed = observe(copy.path(), &fixture.keys).unwrap();
        assert!(observed.matches(&fixture.keys, &fixture.full));
        assert!(!unnamed.exists(), "the unnamed segment was not removed");
    }
}
