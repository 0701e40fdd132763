//! Every file name in a database directory, and the temporary-name rule: the one
//! place that spells them (LevelDB's `db/filename.h`).
//!
//! ```text
//! LOCK              held while the database is open
//! CURRENT           names the live manifest (replaced atomically)
//! 000001.wal        WAL segments
//! MANIFEST-000002   log of version edits
//! 000003.sst        SSTables
//! <name>.tmp        a file being written under its temporary name; never live,
//!                   removed first thing at open
//! ```
//! All numbers come from one counter (`next_file_number` in the manifest), so no two
//! files ever share a number. Only the canonical spelling of a number counts (`7.sst`
//! or `+00007.sst` is not table 7). Part of the on-disk layout: never change.
//!
//! A file that must appear whole is written under [`temp_file_name`] of its name,
//! synced, and renamed over the final name; a crash before the rename leaves only a
//! `.tmp` file, which no manifest ever names.
//!
//! This module sits on the ground floor: it depends on nothing, and the modules that
//! own each kind of file (`wal`, `manifest`, `sstable`, `db`) re-export what they use.

/// The lock file's name.
pub const LOCK_FILE: &str = "LOCK";

/// Name of the file pointing at the live manifest.
pub const CURRENT: &str = "CURRENT";

/// What a temporary file's name ends with.
pub const TEMP_SUFFIX: &str = ".tmp";

/// File name prefix of manifest files.
const MANIFEST_PREFIX: &str = "MANIFEST-";

/// File name suffix of WAL segments.
const WAL_SUFFIX: &str = ".wal";

/// File name suffix of SSTables.
const TABLE_SUFFIX: &str = ".sst";

/// The name `name` is written under before it is renamed into place.
pub fn temp_file_name(name: &str) -> String {
    format!("{name}{TEMP_SUFFIX}")
}

/// The file name of SSTable `number`: `000003.sst`.
pub fn table_file_name(number: u64) -> String {
    format!("{number:06}{TABLE_SUFFIX}")
}

/// The file name of WAL segment `number`: `000042.wal`.
pub fn segment_file_name(number: u64) -> String {
    format!("{number:06}{WAL_SUFFIX}")
}

/// The file name of manifest `number`: `MANIFEST-000005`.
pub fn manifest_file_name(number: u64) -> String {
    format!("{MANIFEST_PREFIX}{number:06}")
}

/// The number of a file named by [`table_file_name`], or `None` for any other name.
pub fn parse_table_file_name(name: &str) -> Option<u64> {
    parse_number(name.strip_suffix(TABLE_SUFFIX)?).filter(|&n| table_file_name(n) == name)
}

/// The segment number of a file named by [`segment_file_name`], or `None` for any
/// other name (including non-canonical spellings such as `42.wal`).
pub fn parse_segment_file_name(name: &str) -> Option<u64> {
    parse_number(name.strip_suffix(WAL_SUFFIX)?).filter(|&n| segment_file_name(n) == name)
}

/// The number of a file named by [`manifest_file_name`], or `None` for any other name.
pub fn parse_manifest_file_name(name: &str) -> Option<u64> {
    parse_number(name.strip_prefix(MANIFEST_PREFIX)?).filter(|&n| manifest_file_name(n) == name)
}

/// `digits` as a number if it is a non-empty run of ASCII digits that fits a `u64`
/// (callers then insist on the canonical spelling).
fn parse_number(digits: &str) -> Option<u64> {
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// What a file in the directory is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    /// A WAL segment.
    Wal(u64),
    /// An SSTable.
    Table(u64),
    /// A manifest log.
    Manifest(u64),
    /// A temporary file.
    Temp,
    /// `CURRENT` or `LOCK`.
    Fixed,
    /// Not ours.
    Unknown,
}

/// Classifies a file name.
pub fn classify(name: &str) -> FileKind {
    if name.ends_with(TEMP_SUFFIX) {
        return FileKind::Temp;
    }
    if name == LOCK_FILE || name == CURRENT {
        return FileKind::Fixed;
    }
    if let Some(n) = parse_segment_file_name(name) {
        return FileKind::Wal(n);
    }
    if let Some(n) = parse_manifest_file_name(name) {
        return FileKind::Manifest(n);
    }
    match parse_table_file_name(name) {
        Some(n) => FileKind::Table(n),
        None => FileKind::Unknown,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        assert_eq!(classify(&table_file_name(7)), FileKind::Table(7));
        assert_eq!(classify(&segment_file_name(8)), FileKind::Wal(8));
        assert_eq!(classify(&manifest_file_name(9)), FileKind::Manifest(9));
        assert_eq!(classify("000009.sst.tmp"), FileKind::Temp);
        assert_eq!(classify(&temp_file_name(&table_file_name(9))), FileKind::Temp);
        assert_eq!(classify(&temp_file_name(CURRENT)), FileKind::Temp);
        assert_eq!(classify("CURRENT"), FileKind::Fixed);
        assert_eq!(classify("LOCK"), FileKind::Fixed);
        assert_eq!(classify("notes.txt"), FileKind::Unknown);
        assert_eq!(classify(".sst"), FileKind::Unknown);
        assert_eq!(classify("7.sst"), FileKind::Unknown);
        assert_eq!(classify("+00007.sst"), FileKind::Unknown);
    }

    /// The spellings are part of the on-disk layout: a change here is a format change.
    #[test]
    fn names_are_spelled_as_the_format_says() {
        assert_eq!(table_file_name(3), "000003.sst");
        assert_eq!(segment_file_name(42), "000042.wal");
        assert_eq!(manifest_file_name(5), "MANIFEST-000005");
        assert_eq!(temp_file_name("000003.sst"), "000003.sst.tmp");
        assert_eq!(temp_file_name(CURRENT), "CURRENT.tmp");
        assert_eq!(table_file_name(1_234_567), "1234567.sst");
        assert_eq!(parse_table_file_name("1234567.sst"), Some(1_234_567));
    }

    #[test]
    fn segment_numbers_round_trip_and_near_misses_parse_as_none() {
        for n in [0, 1, 42, 999_999, 1_000_000, u64::MAX] {
            assert_eq!(parse_segment_file_name(&segment_file_name(n)), Some(n));
        }
        for bad in ["7.wal", "000007.log", "00000a.wal", ".wal", "+00007.wal", "0000007.wal"] {
            assert_eq!(parse_segment_file_name(bad), None, "{bad}");
        }
    }
}
