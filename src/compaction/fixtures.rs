//! Builders shared by the compaction tests: table summaries for the strategies, and
//! entries, tombstones and table contents for the collapsing rules, the output writer
//! and the job.

use std::ops::Bound;
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;

use super::TableSummary;
use super::output::CompactionOutput;
use crate::fs::FaultFs;
use crate::key::{Entry, RangeTombstone, SeqNo, ValueKind};
use crate::options::Compression;
use crate::sstable::{Table, TableOptions, table_file_name};

pub(super) const MIB: u64 = 1 << 20;

/// A table of `level`: number, size in bytes, inclusive key range, seqnos; 100
/// entries, no tombstones, very old.
pub(super) fn table(
    level: u32,
    number: u64,
    size: u64,
    keys: (&str, &str),
    seqnos: (u64, u64),
) -> TableSummary {
    TableSummary {
        number,
        level,
        size,
        smallest: Bytes::copy_from_slice(keys.0.as_bytes()),
        largest: Bytes::copy_from_slice(keys.1.as_bytes()),
        min_seqno: seqnos.0,
        max_seqno: seqnos.1,
        entries: 100,
        tombstones: 0,
        age_secs: u64::MAX,
        scans: 0,
    }
}

/// User key `k`: one byte, `a` + `k`.
pub(super) fn key(k: u8) -> Bytes {
    Bytes::from(vec![b'a' + k])
}

pub(super) fn put(k: u8, seqno: SeqNo, value: &[u8]) -> Entry {
    Entry { key: key(k), seqno, kind: ValueKind::Put, value: Bytes::copy_from_slice(value) }
}

pub(super) fn del(k: u8, seqno: SeqNo) -> Entry {
    Entry { key: key(k), seqno, kind: ValueKind::Delete, value: Bytes::new() }
}

pub(super) fn rt(start: u8, end: u8, seqno: SeqNo) -> RangeTombstone {
    RangeTombstone { start: key(start), end: key(end), seqno }
}

/// Small blocks, so a few entries make several.
pub(super) const OPTIONS: TableOptions =
    TableOptions { block_size: 128, compression: Compression::None, bloom_bits_per_key: 10 };

/// Everything a set of tables holds.
pub(super) fn contents(tables: &[Arc<Table>]) -> (Vec<Entry>, Vec<RangeTombstone>) {
    let entries = tables
        .iter()
        .flat_map(|t| t.iter(Bound::Unbounded, Bound::Unbounded).map(|e| e.unwrap()))
        .collect();
    let tombstones = tables.iter().flat_map(|t| t.range_tombstones().to_vec()).collect();
    (entries, tombstones)
}

pub(super) fn output_tables(outputs: &[CompactionOutput]) -> Vec<Arc<Table>> {
    outputs.iter().map(|o| o.table.clone()).collect()
}

/// Checks the shape of compaction outputs in `dir`: sorted, non-overlapping,
/// tombstones clipped to each table's range, all files named as reported, no
/// temporary file left, each table at most `target` plus one key's versions.
pub(super) fn check_shape(fs: &FaultFs, dir: &Path, outputs: &[CompactionOutput], target: u64) {
    let mut first_keys = Vec::new();
    for o in outputs {
        assert_eq!(o.table.properties(), &o.properties);
        assert_eq!(o.table.path(), dir.join(table_file_name(o.number)));
        let (entries, tombstones) = contents(std::slice::from_ref(&o.table));
        assert!(!entries.is_empty() || outputs.len() == 1, "empty middle table");
        for e in &entries {
            assert!(o.properties.smallest_key <= e.key && e.key <= o.properties.largest_key);
        }
        for t in &tombstones {
            assert!(o.properties.smallest_key <= t.start && t.end <= o.properties.largest_key);
        }
        // At most the target plus one key's versions plus tombstones and metadata.
        let largest_key_bytes = entries
            .chunk_by(|a, b| a.key == b.key)
            .map(|run| run.iter().map(|e| e.key.len() + e.value.len() + 16).sum::<usize>())
            .max()
            .unwrap_or(0) as u64;
        let slack = 1024 + 32 * tombstones.len() as u64;
        assert!(
            o.table.file_size() <= target + largest_key_bytes + slack,
            "table of {} bytes, target {target}",
            o.table.file_size()
        );
        first_keys.push(entries.first().map(|e| e.key.clone()));
    }
    for (i, pair) in outputs.windows(2).enumerate() {
        let (a, b) = (contents(&[pair[0].table.clone()]), contents(&[pair[1].table.clone()]));
        let next_first = first_keys[i + 1].clone().unwrap();
        // Every key of a sorts before every key of b: versions never straddle.
        assert!(a.0.last().unwrap().key < next_first);
        assert!(pair[0].properties.largest_key <= pair[1].properties.smallest_key);
        for t in &a.1 {
            assert!(t.end <= next_first, "tombstone {t:?} runs into the next table");
        }
        for t in &b.1 {
            assert!(t.start >= next_first, "tombstone {t:?} starts before its table");
        }
    }
    let mut numbers: Vec<u64> = outputs.iter().map(|o| o.number).collect();
    numbers.dedup();
    assert_eq!(numbers.len(), outputs.len());
    for name in fs.file_names() {
        assert!(!name.to_string_lossy().ends_with(crate::file_names::TEMP_SUFFIX), "{name:?} left");
    }
}
