//! The read path: point lookups, scans and snapshots.
//!
//! A read of the latest state loads the read view *first*, then the visible seqno.
//! Every table in that view was compacted against snapshot seqnos taken no later than
//! the read's seqno, so no version the read needs was merged away; and a commit group
//! always lands whole in one memtable, so the view shows exactly the groups up to some
//! point at or before that seqno, including every write acknowledged before the read
//! began. (Loading the seqno first would let a compaction installed in between drop a
//! version the read still needs.)
//!
//! A snapshot loads its seqno and registers it under the registry's lock, the same
//! lock compaction takes to list live snapshots: a compaction either sees the
//! snapshot, or started before its seqno was read and so holds only older data.

use std::collections::BTreeMap;
use std::ops::{Bound, RangeBounds};
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use parking_lot::Mutex;

use crate::error::Result;
use crate::iter::DbIter;
use crate::key::SeqNo;

use super::{Db, DbCore};

/// Seqnos of live snapshots (with counts), so compaction can keep what they see.
#[derive(Default)]
pub(crate) struct SnapshotRegistry {
    live: Mutex<BTreeMap<SeqNo, usize>>,
}

impl SnapshotRegistry {
    /// Registers a snapshot at the current `visible` seqno, read under the lock.
    fn register_current(&self, visible: &AtomicU64) -> SeqNo {
        let mut live = self.live.lock();
        let seqno = visible.load(Ordering::Acquire);
        *live.entry(seqno).or_default() += 1;
        seqno
    }

    fn release(&self, seqno: SeqNo) {
        let mut live = self.live.lock();
        if let Some(count) = live.get_mut(&seqno) {
            *count -= 1;
            if *count == 0 {
                live.remove(&seqno);
            }
        }
    }

    /// The seqnos of open snapshots, ascending (what compaction must keep visible).
    pub(crate) fn live_seqnos(&self) -> Vec<SeqNo> {
        self.live.lock().keys().copied().collect()
    }

    /// How many snapshots are open.
    pub(crate) fn count(&self) -> usize {
        self.live.lock().values().sum()
    }
}

/// The state a read sees.
#[derive(Clone, Copy)]
enum ReadPoint {
    /// Everything visible when the read starts.
    Latest,
    /// A registered snapshot's seqno.
    At(SeqNo),
}

impl DbCore {
    fn seqno_for(&self, point: ReadPoint) -> SeqNo {
        match point {
            ReadPoint::Latest => self.read_seqno(),
            ReadPoint::At(seqno) => seqno,
        }
    }

    fn get_at(&self, key: &[u8], point: ReadPoint) -> Result<Option<Bytes>> {
        self.check_open()?;
        let view = self.view.load();
        view.get(key, self.seqno_for(point))
    }

    fn iter_at(
        &self,
        point: ReadPoint,
        lower: Bound<Bytes>,
        upper: Bound<Bytes>,
    ) -> Result<DbIter> {
        self.check_open()?;
        let view = self.view.load_full();
        let (low, high) = (lower.as_ref().map(Bytes::as_ref), upper.as_ref().map(Bytes::as_ref));
        if view.version.charge_scan(low, high) {
            self.background.wake_compactors();
        }
        Ok(DbIter::new(view, self.seqno_for(point), lower, upper))
    }

    pub(crate) fn read_seqno(&self) -> SeqNo {
        self.visible_seqno.load(Ordering::Acquire)
    }
}

/// Owned bounds of a user range.
fn owned_bounds<K: AsRef<[u8]>>(range: &impl RangeBounds<K>) -> (Bound<Bytes>, Bound<Bytes>) {
    let own = |b: Bound<&K>| b.map(|k| Bytes::copy_from_slice(k.as_ref()));
    (own(range.start_bound()), own(range.end_bound()))
}

/// The bounds selecting every key that starts with `prefix`.
fn prefix_bounds(prefix: &[u8]) -> (Bound<Bytes>, Bound<Bytes>) {
    let lower = Bound::Included(Bytes::copy_from_slice(prefix));
    // The smallest key greater than every key with the prefix: drop trailing 0xff
    // bytes and increment the last one; none left means no upper bound.
    let mut end = prefix.to_vec();
    while end.last() == Some(&0xff) {
        end.pop();
    }
    let upper = match end.last_mut() {
        Some(last) => {
            *last += 1;
            Bound::Excluded(Bytes::from(end))
        }
        None => Bound::Unbounded,
    };
    (lower, upper)
}

impl Db {
    /// The value of `key`, or `None`.
    ///
    /// Holding returned values never keeps much more memory alive than the values
    /// themselves: a value is handed out without a copy only where it is at least 1/8
    /// of the memory it lives in (a large value: one of more than 128 KiB from a
    /// memtable, one of at least 1/8 of its block from a table), and is copied
    /// otherwise. Values from iterators are slices of that memory: copy those you keep.
    pub fn get(&self, key: impl AsRef<[u8]>) -> Result<Option<Bytes>> {
        self.core().get_at(key.as_ref(), ReadPoint::Latest)
    }

    /// Every key in order (reversible with `.rev()`).
    pub fn iter(&self) -> Result<DbIter> {
        self.range::<&[u8], _>(..)
    }

    /// The keys within `range` in order, e.g. `db.range("a".."c")` (reversible).
    /// An empty or inverted range yields nothing.
    pub fn range<K: AsRef<[u8]>, R: RangeBounds<K>>(&self, range: R) -> Result<DbIter> {
        let (lower, upper) = owned_bounds(&range);
        self.core().iter_at(ReadPoint::Latest, lower, upper)
    }

    /// The keys starting with `prefix`, in order (reversible).
    pub fn prefix(&self, prefix: impl AsRef<[u8]>) -> Result<DbIter> {
        let (lower, upper) = prefix_bounds(prefix.as_ref());
        self.core().iter_at(ReadPoint::Latest, lower, upper)
    }

    /// A consistent read view at the current state, unaffected by later writes.
    pub fn snapshot(&self) -> Result<Snapshot> {
        let core = self.core();
        core.check_open()?;
        let seqno = core.snapshots.register_current(&core.visible_seqno);
        Ok(Snapshot { db: self.clone(), seqno })
    }
}

/// A read-only view of the database at one moment. Keeps the database open.
pub struct Snapshot {
    db: Db,
    seqno: SeqNo,
}

impl std::fmt::Debug for Snapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Snapshot").field("seqno", &self.seqno).finish()
    }
}

impl Snapshot {
    /// The seqno this snapshot reads at.
    pub fn seqno(&self) -> SeqNo {
        self.seqno
    }

    /// The value of `key` at the snapshot.
    pub fn get(&self, key: impl AsRef<[u8]>) -> Result<Option<Bytes>> {
        self.db.core().get_at(key.as_ref(), ReadPoint::At(self.seqno))
    }

    /// Every key at the snapshot.
    pub fn iter(&self) -> Result<DbIter> {
        self.range::<&[u8], _>(..)
    }

    /// The keys within `range` at the snapshot.
    pub fn range<K: AsRef<[u8]>, R: RangeBounds<K>>(&self, range: R) -> Result<DbIter> {
        let (lower, upper) = owned_bounds(&range);
        self.db.core().iter_at(ReadPoint::At(self.seqno), lower, upper)
    }

    /// The keys starting with `prefix` at the snapshot.
    pub fn prefix(&self, prefix: impl AsRef<[u8]>) -> Result<DbIter> {
        let (lower, upper) = prefix_bounds(prefix.as_ref());
        self.db.core().iter_at(ReadPoint::At(self.seqno), lower, upper)
    }
}

impl Drop for Snapshot {
    fn drop(&mut self) {
        self.db.core().snapshots.release(self.seqno);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_bounds_cover_exactly_the_prefix() {
        let b = |s: &[u8]| Bytes::copy_from_slice(s);
        assert_eq!(prefix_bounds(b"ab"), (Bound::Included(b(b"ab")), Bound::Excluded(b(b"ac"))));
        assert_eq!(
            prefix_bounds(b"a\xff"),
            (Bound::Included(b(b"a\xff")), Bound::Excluded(b(b"b")))
        );
        assert_eq!(prefix_bounds(b"\xff\xff").1, Bound::Unbounded);
        assert_eq!(prefix_bounds(b"").1, Bound::Unbounded);
    }
}
