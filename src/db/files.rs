//! Names of the files in a database directory.
//!
//! ```text
//! LOCK              held while the database is open
//! CURRENT           names the live manifest (replaced atomically)
//! 000001.wal        WAL segments
//! MANIFEST-000002   log of version edits
//! 000003.sst        SSTables
//! *.tmp             files being written; never live, removed first thing at open
//! ```
//! All numbers come from one counter (`next_file_number` in the manifest), so no two
//! files ever share a number. Part of the on-disk layout: never change.

use crate::manifest::parse_manifest_file_name;
use crate::sstable::table_file_name;
use crate::wal::parse_segment_file_name;

/// The lock file's name.
pub const LOCK_FILE: &str = "LOCK";

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
    if name.ends_with(".tmp") {
        return FileKind::Temp;
    }
    if name == LOCK_FILE || name == crate::manifest::CURRENT {
        return FileKind::Fixed;
    }
    if let Some(n) = parse_segment_file_name(name) {
        return FileKind::Wal(n);
    }
    if let Some(n) = parse_manifest_file_name(name) {
        return FileKind::Manifest(n);
    }
    // Only the canonical spelling counts, so a stray `7.sst` is never taken for table 7.
    match name.strip_suffix(".sst").and_then(|digits| digits.parse().ok()) {
        Some(n) if table_file_name(n) == name => FileKind::Table(n),
        _ => FileKind::Unknown,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        assert_eq!(classify(&table_file_name(7)), FileKind::Table(7));
        assert_eq!(classify(&crate::wal::segment_file_name(8)), FileKind::Wal(8));
        assert_eq!(classify("000009.sst.tmp"), FileKind::Temp);
        assert_eq!(classify("CURRENT"), FileKind::Fixed);
        assert_eq!(classify("notes.txt"), FileKind::Unknown);
        assert_eq!(classify(".sst"), FileKind::Unknown);
        assert_eq!(classify("7.sst"), FileKind::Unknown);
        assert_eq!(classify("+00007.sst"), FileKind::Unknown);
    }
}
