//! The version-collapsing rules of a compaction, with their proof: which versions and
//! tombstones no reader can miss. A pure function of the merged entries, the input
//! range tombstones and the live snapshots; it knows nothing about files.
//!
//! # Definitions
//! Let `S_1 < … < S_n` be the live snapshot seqnos. A reader at `S` (a live snapshot,
//! or "latest" = +∞; a snapshot taken later sees at least everything and behaves as
//! latest) sees, for key `k`, the newest version `v` of `k` with `seqno(v) <= S`,
//! unless `v` is a delete or a range tombstone `t` covering `k` has
//! `seqno(v) < seqno(t) <= S`. The **stripe** of a seqno `s` is the smallest `S_i >= s`
//! (its index `i`), or "latest" if there is none. A reader at `S` sees exactly the
//! seqnos `<= S`, and for a live `S` those are whole stripes: stripe boundaries are the
//! only places a reader can cut.
//!
//! # Rules, per user key (versions arrive newest first)
//! 1. **Stripe collapse.** Keep only the newest version of each stripe.
//! 2. **Covered.** Also drop a version `v` when an input range tombstone `t` covering
//!    its key has `seqno(v) < seqno(t)` and `t` is in `v`'s stripe (found with a
//!    [`TombstoneIndex`] query at the stripe's upper bound). Every input tombstone
//!    counts, kept or dropped (rule 4).
//! 3. **Bottom deletes.** With `drop_tombstones`, after rules 1–2, drop the *oldest
//!    kept* version while it is a point delete (repeatedly: a run of deletes at the
//!    old end of the kept list goes away).
//! 4. **Range tombstones.** Kept unless `drop_tombstones` and no live snapshot is
//!    `< seqno(t)` (i.e. `t` is in the earliest stripe, stripe 0). Pieces of one
//!    tombstone (same seqno) that an earlier compaction cut apart, found in several
//!    inputs, are first joined back together.
//!
//! # Proof sketch (every reader at a live snapshot or latest sees the same values)
//! Fix `k` and a reader at `S`; let `v*` be the version it picks among the inputs.
//! Versions outside the inputs are untouched, so only the inputs' answer matters.
//! - `stripe(v*) <= S` (`S` is a snapshot `>= seqno(v*)` or latest), so any newer
//!   version in `v*`'s stripe would have seqno `<= S`, contradicting the choice of
//!   `v*`: `v*` is the newest of its stripe and rule 1 keeps it. Versions rule 1 drops
//!   are never picked by any reader.
//! - If rule 2 drops `v*` for `t`, then `seqno(v*) < seqno(t) <= stripe(v*) <= S`: the
//!   reader saw `k` hidden by `t`. Afterwards no kept version lies in
//!   `(seqno(v*), S]` (there was none in the inputs), and every older kept version `v'`
//!   is covered by `t` with `seqno(v') < seqno(t) <= S`: still hidden, *if `t` is
//!   kept*. If rule 4 dropped `t`, no snapshot is `< seqno(t)`, so there is no stripe
//!   boundary in `[seqno(v'), seqno(t))`: `v'` is in `t`'s stripe and rule 2 dropped it.
//!   Nothing is left to pick; `drop_tombstones` guarantees no older version outside.
//! - Rule 3 drops a delete `d` only when no older version of `k` is kept. A reader at
//!   `S < seqno(d)` never saw `d`. A reader at `S >= seqno(d)` that picked `d` saw no
//!   value; without `d` it picks the next older kept version of `k`, and there is
//!   none in the outputs nor (by `drop_tombstones`) outside the inputs: still no
//!   value. Readers that picked something newer than `d` are unaffected. RocksDB asks
//!   instead that the delete be in the earliest stripe; that is a sufficient proxy for
//!   "nothing older kept" when versions cannot be looked ahead at. Grouping each key's
//!   versions lets the collapser test the condition itself, which also drops deletes in
//!   later stripes whose older versions were all dropped (e.g. shadowed by range
//!   tombstones).
//! - Rule 4: readers at `S < seqno(t)` never saw `t`. Every input version `t` hid is
//!   in `t`'s stripe (no boundary below `t`), hence dropped by rule 2, and nothing
//!   older exists outside the inputs (`drop_tombstones`).
//! - Cutting kept tombstones at output boundaries (see [`super::output`]) keeps every
//!   covered key covered at the same seqno, since each key lies in exactly one
//!   output's range.
//!
//! # Cost
//! One pass over the entries. Versions are streamed: rules 1–2 are applied as each
//! version arrives, so memory holds only the *kept* versions of the current user key
//! — at most one per stripe, i.e. live snapshots + 1, however many versions the key
//! has ([`CollapseStats::max_versions_buffered`]) — plus every input range
//! tombstone. Rule 3 needs the kept list of the whole key, which that bound covers.

use crate::error::Result;
use crate::key::{Entry, RangeTombstone, SeqNo, ValueKind};
use crate::tombstones::TombstoneIndex;

/// What collapsing dropped and kept, in counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CollapseStats {
    /// Point entries read.
    pub entries_in: u64,
    /// Point entries kept.
    pub entries_out: u64,
    /// Point versions dropped as invisible (rules 1 and 2).
    pub versions_dropped: u64,
    /// Point deletes (rule 3) and range tombstones (rule 4, counted after joining
    /// pieces of one tombstone) dropped.
    pub tombstones_dropped: u64,
    /// Most versions of one user key held in memory at once: at most one per snapshot
    /// stripe, however many versions the key has.
    pub max_versions_buffered: u64,
}

/// Applies rules 1–4 of the module documentation.
pub struct Collapser {
    /// Every input range tombstone.
    index: TombstoneIndex,
    /// Sorted, deduplicated.
    snapshots: Vec<SeqNo>,
    drop_tombstones: bool,
}

impl Collapser {
    /// The rules for inputs holding `tombstones` (every input range tombstone) with
    /// live `snapshots` (any order, duplicates allowed). `drop_tombstones`: nothing
    /// outside the inputs holds an older version of a key in their range.
    pub fn new(
        tombstones: &[RangeTombstone],
        mut snapshots: Vec<SeqNo>,
        drop_tombstones: bool,
    ) -> Collapser {
        snapshots.sort_unstable();
        snapshots.dedup();
        Collapser {
            index: TombstoneIndex::new(tombstones.iter().cloned()),
            snapshots,
            drop_tombstones,
        }
    }

    /// Rule 4 on `tombstones` (every input range tombstone), after joining the pieces
    /// of each one ([`coalesce`]): the kept ones, sorted by (start ASC, seqno DESC).
    pub fn kept_range_tombstones(
        &self,
        tombstones: Vec<RangeTombstone>,
        stats: &mut CollapseStats,
    ) -> Vec<RangeTombstone> {
        let joined = coalesce(tombstones);
        let count = joined.len() as u64;
        let kept: Vec<RangeTombstone> =
            joined.into_iter().filter(|t| self.keep_range_tombstone(t)).collect();
        stats.tombstones_dropped += count - kept.len() as u64;
        kept
    }

    /// Index of the smallest snapshot `>= seqno`; `snapshots.len()` means "latest".
    fn stripe(&self, seqno: SeqNo) -> usize {
        self.snapshots.partition_point(|&s| s < seqno)
    }

    /// Rule 4.
    fn keep_range_tombstone(&self, t: &RangeTombstone) -> bool {
        !(self.drop_tombstones && self.stripe(t.seqno) == 0)
    }

    /// Applies rules 1–3 to `entries` (internal order), handing the kept versions of
    /// each user key, newest first, to `sink` (never an empty list). Versions are
    /// consumed one at a time: only kept ones are held, at most one per stripe. The
    /// first error from `entries` or `sink` stops the run and is returned.
    pub fn run(
        &self,
        entries: impl IntoIterator<Item = Result<Entry>>,
        stats: &mut CollapseStats,
        mut sink: impl FnMut(&[Entry]) -> Result<()>,
    ) -> Result<()> {
        let mut key = KeyVersions::default();
        for entry in entries {
            let entry = entry?;
            stats.entries_in += 1;
            if !key.is(&entry.key) {
                self.finish_key(&mut key, stats, &mut sink)?;
                key.start(&entry.key);
            }
            self.offer(&mut key, entry, stats);
        }
        self.finish_key(&mut key, stats, &mut sink)
    }

    /// Rules 1–2 for the next (older) version of the current key.
    fn offer(&self, key: &mut KeyVersions, v: Entry, stats: &mut CollapseStats) {
        let stripe = self.stripe(v.seqno);
        if key.last_stripe == Some(stripe) {
            stats.versions_dropped += 1; // Rule 1: an older version in the same stripe.
            return;
        }
        key.last_stripe = Some(stripe);
        let upper = self.snapshots.get(stripe).copied().unwrap_or(SeqNo::MAX);
        // Rule 2: the newest tombstone <= the stripe's bound is in the stripe iff it is
        // newer than `v` (which is in the stripe).
        if self.index.max_covering(&v.key, upper).is_none_or(|t| t <= v.seqno) {
            key.kept.push(v);
            stats.max_versions_buffered = stats.max_versions_buffered.max(key.kept.len() as u64);
        } else {
            stats.versions_dropped += 1;
        }
    }

    /// Rule 3 on the kept versions of the current key, then hands them to `sink`.
    fn finish_key(
        &self,
        key: &mut KeyVersions,
        stats: &mut CollapseStats,
        sink: &mut impl FnMut(&[Entry]) -> Result<()>,
    ) -> Result<()> {
        if self.drop_tombstones {
            while key.kept.last().is_some_and(|v| v.kind == ValueKind::Delete) {
                key.kept.pop(); // Rule 3.
                stats.tombstones_dropped += 1;
            }
        }
        stats.entries_out += key.kept.len() as u64;
        if key.kept.is_empty() { Ok(()) } else { sink(&key.kept) }
    }
}

/// The user key being collapsed and its kept versions, newest first.
#[derive(Default)]
struct KeyVersions {
    /// The key, copied into a reused buffer (`None` before the first entry).
    key: Option<Vec<u8>>,
    /// At most one per stripe (rule 1).
    kept: Vec<Entry>,
    /// Stripe of the last version seen (kept or not).
    last_stripe: Option<usize>,
}

impl KeyVersions {
    fn is(&self, key: &[u8]) -> bool {
        self.key.as_deref() == Some(key)
    }

    /// Starts collapsing `key`, reusing the buffers.
    fn start(&mut self, key: &[u8]) {
        let buffer = self.key.get_or_insert_with(Vec::new);
        buffer.clear();
        buffer.extend_from_slice(key);
        self.kept.clear();
        self.last_stripe = None;
    }
}

/// Joins overlapping or adjacent tombstones of equal seqno (pieces of one tombstone
/// cut by an earlier compaction) and sorts the result by (start ASC, seqno DESC).
fn coalesce(mut tombstones: Vec<RangeTombstone>) -> Vec<RangeTombstone> {
    tombstones.sort_by(|a, b| a.seqno.cmp(&b.seqno).then_with(|| a.start.cmp(&b.start)));
    let mut out: Vec<RangeTombstone> = Vec::with_capacity(tombstones.len());
    for t in tombstones {
        match out.last_mut() {
            Some(last) if last.seqno == t.seqno && t.start <= last.end => {
                if t.end > last.end {
                    last.end = t.end;
                }
            }
            _ => out.push(t),
        }
    }
    out.sort_by(RangeTombstone::cmp_internal);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compaction::fixtures::{del, key, put, rt};
    use bytes::Bytes;

    /// Collapses `entries` (any order) of inputs holding `tombstones`: the kept
    /// entries in internal order, the kept range tombstones and the counts.
    fn collapse(
        mut entries: Vec<Entry>,
        tombstones: &[RangeTombstone],
        snapshots: &[SeqNo],
        drop_tombstones: bool,
    ) -> (Vec<Entry>, Vec<RangeTombstone>, CollapseStats) {
        entries.sort_by(Entry::cmp_internal);
        let collapser = Collapser::new(tombstones, snapshots.to_vec(), drop_tombstones);
        let mut stats = CollapseStats::default();
        let kept_tombstones = collapser.kept_range_tombstones(tombstones.to_vec(), &mut stats);
        let mut kept = Vec::new();
        collapser
            .run(entries.into_iter().map(Ok), &mut stats, |versions| {
                kept.extend_from_slice(versions);
                Ok(())
            })
            .unwrap();
        (kept, kept_tombstones, stats)
    }

    #[test]
    fn versions_collapse_by_snapshot_stripe() {
        let entries = vec![
            put(0, 1, b"1"),
            put(0, 3, b"3"),
            put(1, 2, b"x"),
            put(0, 5, b"5"),
            put(0, 7, b"7"),
            del(1, 6),
        ];
        // Stripes: (..=4] and latest.
        let (kept, _, stats) = collapse(entries.clone(), &[], &[4], false);
        let kept: Vec<(Bytes, SeqNo)> = kept.iter().map(|e| (e.key.clone(), e.seqno)).collect();
        assert_eq!(kept, vec![(key(0), 7), (key(0), 3), (key(1), 6), (key(1), 2)]);
        assert_eq!(stats.versions_dropped, 2);
        assert_eq!(stats.tombstones_dropped, 0);

        // Without snapshots and at the bottom: the delete and what it hid vanish.
        let (kept, _, stats) = collapse(entries, &[], &[], true);
        assert_eq!(kept, vec![put(0, 7, b"7")]);
        assert_eq!(stats.versions_dropped, 4);
        assert_eq!(stats.tombstones_dropped, 1);
    }

    #[test]
    fn range_tombstones_drop_covered_versions_in_their_stripe_only() {
        let entries = vec![put(1, 1, b"old"), put(2, 3, b"mid"), put(5, 2, b"out")];
        let tombstones = [rt(0, 4, 4)];
        // Snapshot 2 separates version 1 from the tombstone; version 3 shares its stripe.
        let (kept, kept_tombstones, _) = collapse(entries.clone(), &tombstones, &[2], true);
        let seqnos: Vec<SeqNo> = kept.iter().map(|e| e.seqno).collect();
        assert_eq!(seqnos, vec![1, 2]);
        assert_eq!(kept_tombstones, vec![rt(0, 4, 4)]);
        // No snapshot: the tombstone and everything it covered go.
        let (kept, kept_tombstones, _) = collapse(entries.clone(), &tombstones, &[], true);
        assert_eq!(kept, vec![put(5, 2, b"out")]);
        assert!(kept_tombstones.is_empty());
        // Not at the bottom: the tombstone stays (older data may exist below).
        let (kept, kept_tombstones, _) = collapse(entries, &tombstones, &[], false);
        assert_eq!(kept, vec![put(5, 2, b"out")]);
        assert_eq!(kept_tombstones, vec![rt(0, 4, 4)]);
    }

    /// Pieces of one tombstone (same seqno, touching or overlapping) become one again
    /// before rule 4 counts them; tombstones of other seqnos stay apart.
    #[test]
    fn pieces_of_one_tombstone_are_joined_before_they_are_counted() {
        let pieces = [rt(3, 6, 5), rt(0, 3, 5), rt(1, 2, 4), rt(8, 9, 5), rt(2, 4, 5)];
        let (_, kept, stats) = collapse(vec![], &pieces, &[], false);
        assert_eq!(kept, vec![rt(0, 6, 5), rt(1, 2, 4), rt(8, 9, 5)]);
        assert_eq!(stats.tombstones_dropped, 0);
        let (_, kept, stats) = collapse(vec![], &pieces, &[], true);
        assert!(kept.is_empty());
        assert_eq!(stats.tombstones_dropped, 3);
        // A snapshot at 4 is below seqno 5: those stay. Seqno 4 is in stripe 0 and goes.
        let (_, kept, stats) = collapse(vec![], &pieces, &[4], true);
        assert_eq!(kept, vec![rt(0, 6, 5), rt(8, 9, 5)]);
        assert_eq!(stats.tombstones_dropped, 1);
    }

    /// A key overwritten a million times is collapsed from a stream: the versions are
    /// generated one at a time and never materialised, and the job holds at most one
    /// per snapshot stripe (here 3), not a million.
    #[test]
    fn a_hot_key_is_collapsed_in_bounded_memory() {
        const VERSIONS: u64 = 1_000_000;
        let snapshots = [10, VERSIONS / 2];
        let collapser = Collapser::new(&[], snapshots.to_vec(), true);
        // Newest first; every third version a delete, the oldest a delete too.
        let hot = (0..VERSIONS).map(|i| {
            let seqno = VERSIONS - i;
            Ok(if seqno.is_multiple_of(3) || seqno == 1 {
                del(0, seqno)
            } else {
                put(0, seqno, b"v")
            })
        });
        let entries = hot.chain([Ok(put(1, VERSIONS + 1, b"cold"))]);
        let mut stats = CollapseStats::default();
        let mut out: Vec<Vec<(SeqNo, ValueKind)>> = Vec::new();
        collapser
            .run(entries, &mut stats, |kept| {
                out.push(kept.iter().map(|v| (v.seqno, v.kind)).collect());
                Ok(())
            })
            .unwrap();
        // The newest of each stripe: 1_000_000 (latest), 500_000 and 10, all puts (no
        // multiple of 3), so rule 3 drops nothing.
        assert_eq!(
            out,
            vec![
                vec![
                    (VERSIONS, ValueKind::Put),
                    (VERSIONS / 2, ValueKind::Put),
                    (10, ValueKind::Put)
                ],
                vec![(VERSIONS + 1, ValueKind::Put)],
            ]
        );
        assert_eq!(stats.entries_in, VERSIONS + 1);
        assert_eq!(stats.entries_out, 4);
        assert_eq!(stats.versions_dropped, VERSIONS - 3);
        assert_eq!(stats.max_versions_buffered, snapshots.len() as u64 + 1);

        // With a delete newest in the oldest stripe and nothing older kept, rule 3 still
        // applies to the streamed key: only the two newer stripes survive.
        let hot = (0..VERSIONS).map(|i| {
            let seqno = VERSIONS - i;
            Ok(if seqno <= 10 { del(0, seqno) } else { put(0, seqno, b"v") })
        });
        let mut stats = CollapseStats::default();
        let mut kept = Vec::new();
        collapser
            .run(hot, &mut stats, |k| {
                kept.extend(k.iter().map(|v| v.seqno));
                Ok(())
            })
            .unwrap();
        assert_eq!(kept, vec![VERSIONS, VERSIONS / 2]);
        assert_eq!(stats.tombstones_dropped, 1);
        assert_eq!(stats.max_versions_buffered, 3);
    }
}
