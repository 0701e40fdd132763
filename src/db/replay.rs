//! Replaying the WAL into memtables: step 5 of opening a database (see
//! [`super::recovery`]).
//!
//! # Invariants
//! 1. Segments are replayed in order, records in file order; seqnos the manifest says
//!    were flushed (at or below its `last_seqno`) are skipped: they are in tables.
//! 2. Seqnos continue without gaps from one record, and one segment, to the next
//!    ([`SeqnoContinuity`]); a gap is corruption, so a lost segment or a segment cut
//!    at a record boundary never goes unnoticed.
//! 3. A memtable that fills up is frozen and the next one starts from the highest seqno
//!    seen so far (`inject_max_lsn`), so no seqno is ever reused. Each memtable holds a
//!    consecutive seqno range.
//! 4. Only the newest segment may end in a torn record. A segment whose replay dropped
//!    bytes (a torn tail, or damage skipped in salvage mode) is cut at its last valid
//!    record in place (no copy, so a full disk does not stop it), because newer
//!    segments will follow it.
//! 5. Segments are read in bounded chunks and the memtables keep slices of them, not
//!    copies.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;

use crate::batch::{BatchOp, decode_group};
use crate::coding::Decoder;
use crate::error::{Corruption, Result};
use crate::fs::FileSystem;
use crate::key::{Entry, SeqNo, key_prefix};
use crate::manifest::ManifestState;
use crate::memtable::Memtable;
use crate::options::Options;
use crate::wal::{ReplayError, ReplayOutcome, replay_segment, segment_file_name, truncate_segment};

/// The memtables rebuilt from the WAL.
pub(super) struct Replayed {
    /// Memtables that filled up during replay, oldest first; none is empty.
    pub(super) frozen: Vec<Arc<Memtable>>,
    /// The memtable the newest records went into (empty if there were none).
    pub(super) active: Memtable,
    /// The highest seqno replayed, or the manifest's `last_seqno` if none was higher.
    pub(super) last_seqno: SeqNo,
    /// Records and their bytes read from the segments, for the `opened` event.
    pub(super) records: u64,
    pub(super) bytes: u64,
    /// True if the newest segment ended in a torn record, which was cut off.
    pub(super) torn_tail_cut: bool,
}

/// Replays `segments` (in order; the last is the newest) of the database `state`
/// describes into memtables of `options.write_buffer_size` bytes.
pub(super) fn replay_wal(
    fs: &dyn FileSystem,
    dir: &Path,
    state: &ManifestState,
    segments: &[u64],
    options: &Options,
) -> Result<Replayed> {
    let flushed_through = state.last_seqno;
    let mut frozen: Vec<Arc<Memtable>> = Vec::new();
    let mut active =
        Memtable::new(segments.first().copied().unwrap_or(0), options.write_buffer_size);
    active.inject_max_lsn(flushed_through);
    let mut seqnos = SeqnoContinuity::new(flushed_through);
    let mut pending = ReplayBuffer::default();
    let (mut records, mut bytes, mut torn_tail_cut) = (0u64, 0u64, false);
    for (i, &number) in segments.iter().enumerate() {
        let is_last = i + 1 == segments.len();
        let mut first_in_segment = true;
        let outcome = replay_segment(
            fs,
            dir,
            number,
            state.db_id,
            is_last,
            options.wal_recovery,
            |record| {
                seqnos.check(record, std::mem::take(&mut first_in_segment))?;
                // Keys and values are slices of the record (of the replay's read chunk):
                // no copy.
                pending.add_group(record, flushed_through, &active).map_err(|offset| {
                    ReplayError::Damaged(Corruption::new(
                        offset as u64,
                        "WAL record holds an undecodable batch",
                    ))
                })?;
                if active.approximate_size() + pending.bytes >= options.write_buffer_size {
                    pending.insert_into(&active);
                    let next = Memtable::new(number, options.write_buffer_size);
                    next.inject_max_lsn(active.max_lsn());
                    frozen.push(Arc::new(std::mem::replace(&mut active, next)));
                }
                Ok(())
            },
        )?;
        seqnos.end_segment(dir.join(segment_file_name(number)), &outcome);
        records += outcome.records;
        bytes += outcome.bytes;
        if let Some(offset) = outcome.torn_tail {
            torn_tail_cut = true;
            // After a crash between appends the tail is only the space reserved ahead:
            // expected, not worth a warning.
            if outcome.torn_tail_is_reserved_space {
                tracing::debug!(
                    target: "aeternusdb::recovery",
                    segment = number,
                    offset,
                    "cut the unused reserved space off the newest WAL segment"
                );
            } else {
                tracing::warn!(
                    target: "aeternusdb::recovery",
                    segment = number,
                    offset,
                    "cut a torn tail (an interrupted append) off the newest WAL segment"
                );
            }
        }
        if let Some(damage) = &outcome.skipped_damage {
            tracing::warn!(
                target: "aeternusdb::recovery",
                segment = number,
                offset = damage.offset,
                error = %damage.message,
                "skipped damaged WAL records (WalRecovery::SkipDamagedTail)"
            );
        }
        // Newer segments will follow this one: cut what was dropped. And make what
        // was replayed durable even if nothing was: a crashed process may have written
        // records it never synced, which are now in memtables the next synced write
        // (in a newer segment) would be acknowledged after. A power loss must not keep
        // that write and lose them (a seqno gap: the next open refuses the WAL).
        truncate_segment(fs, dir, number, state.db_id, outcome.valid_len)?;
    }
    pending.insert_into(&active);
    let last_seqno = active.max_lsn();
    frozen.retain(|m| !m.is_empty());
    Ok(Replayed { frozen, active, last_seqno, records, bytes, torn_tail_cut })
}

/// Checks that the replayed WAL records continue each other's seqnos.
///
/// Every commit group takes the seqnos right after the previous group's, and the
/// first unflushed group starts at or before `last_seqno + 1` of the manifest. A
/// segment truncated at a record boundary, or a missing segment between two others,
/// leaves no damaged record behind, only a gap in the seqnos: without this check such
/// a loss of acknowledged writes would go unnoticed. The gap is blamed on the segment
/// replayed before it, at the end of its valid records.
struct SeqnoContinuity {
    /// The seqno the next group must start at (`exact`) or at or before (first group).
    expected: SeqNo,
    exact: bool,
    /// The segment replayed before the current one and where its records ended.
    previous: Option<(PathBuf, u64)>,
}

impl SeqnoContinuity {
    fn new(flushed_through: SeqNo) -> Self {
        SeqnoContinuity { expected: flushed_through + 1, exact: false, previous: None }
    }

    /// Checks one record (a commit group: `base_seqno u64 | count u32 | ops`).
    fn check(&mut self, record: &[u8], first_in_segment: bool) -> Result<(), ReplayError> {
        let mut d = Decoder::new(record);
        let (Some(base), Some(count)) = (d.u64(), d.u32()) else {
            // Undecodable: reported by the batch decoder.
            return Ok(());
        };
        let fits = if self.exact { base == self.expected } else { base <= self.expected };
        if !fits {
            let message = format!(
                "WAL records are missing: the next record starts at seqno {base}, expected {}",
                self.expected
            );
            return Err(match (&self.previous, first_in_segment) {
                (Some((path, end)), true) => {
                    ReplayError::Apply(Corruption::new(*end, message).in_file(path))
                }
                // At the start of this record.
                _ => ReplayError::Damaged(Corruption::new(0, message)),
            });
        }
        self.expected = base.saturating_add(u64::from(count));
        self.exact = true;
        Ok(())
    }

    /// Notes the end of a segment. After damage skipped in salvage mode a gap is
    /// expected, so the next group may start anywhere.
    fn end_segment(&mut self, path: PathBuf, outcome: &ReplayOutcome) {
        if outcome.skipped_damage.is_some() {
            self.expected = SeqNo::MAX;
            self.exact = false;
        }
        self.previous = Some((path, outcome.valid_len));
    }
}

/// Point entries replayed from the WAL, waiting to be inserted into a memtable.
///
/// Inserting into a skiplist in random key order costs a cache miss per level;
/// sorting a memtable's worth of entries first and inserting them in key order keeps
/// the search path in cache (profiled: 64% of a 64 MiB replay was skiplist search).
/// Every entry of a buffer goes into the same memtable, so memtables still hold
/// consecutive seqno ranges.
#[derive(Default)]
struct ReplayBuffer {
    /// Each entry with its key's inline prefix, computed once: comparing prefixes
    /// first avoids most pointer chases while sorting. Kept in this one vector (not
    /// paired up at sort time) so replay holds one entry list, not two.
    entries: Vec<(u128, Entry)>,
    bytes: usize,
}

impl ReplayBuffer {
    /// Buffers the point operations of a group with seqnos above `skip_through`;
    /// range tombstones go straight into `memtable` (they have their own structure).
    fn add_group(
        &mut self,
        payload: &Bytes,
        skip_through: SeqNo,
        memtable: &Memtable,
    ) -> Result<(), usize> {
        for op in decode_group(payload)? {
            let (seqno, op) = op?;
            if seqno <= skip_through {
                continue;
            }
            match op {
                BatchOp::Point { key, kind, value } => {
                    self.bytes += Memtable::footprint(key.len(), value.len());
                    self.entries.push((key_prefix(&key), Entry { key, seqno, kind, value }));
                }
                BatchOp::RangeDelete { start, end } => {
                    memtable.insert_range_tombstone(start, end, seqno)
                }
            }
        }
        Ok(())
    }

    /// Sorts the buffered entries and inserts them into `memtable`.
    fn insert_into(&mut self, memtable: &Memtable) {
        let keyed = &mut self.entries;
        keyed.sort_unstable_by(|(pa, a), (pb, b)| pa.cmp(pb).then_with(|| a.cmp_internal(b)));
        for (_, entry) in keyed.drain(..) {
            memtable.insert(entry.key, entry.seqno, entry.kind, entry.value);
        }
        self.bytes = 0;
    }
}
