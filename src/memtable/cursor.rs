//! A lazy, owning cursor over a range of a memtable's point entries.
//!
//! It owns an `Arc<Memtable>` instead of borrowing it, so user-facing iterators can
//! outlive the read that created them. It fetches entries in chunks: each refill
//! seeks once past the last entry it returned (O(log n)) and copies out up to a
//! chunk of `Entry` handles (reference-counted, no byte copies). Chunks start small
//! and grow, so a seek followed by a few steps stays cheap while long scans amortise
//! the seek. Entries inserted after the cursor was created may or may not be seen;
//! readers filter by seqno, so this never changes what a snapshot shows.

use std::collections::VecDeque;
use std::ops::{Bound, RangeBounds};
use std::sync::Arc;

use crate::key::Entry;

use super::skiplist::NodeRef;
use super::{InternalKey, Memtable, PointValue, internal_bounds};

const FIRST_CHUNK: usize = 8;
const MAX_CHUNK: usize = 256;

/// Direction of a [`MemtableCursor`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Direction {
    Forward,
    Backward,
}

/// Iterates the point versions of a memtable within user-key bounds, in internal
/// order (forward) or exactly reverse internal order (backward).
#[derive(Debug)]
pub struct MemtableCursor {
    memtable: Arc<Memtable>,
    direction: Direction,
    lower: Bound<InternalKey>,
    upper: Bound<InternalKey>,
    buffer: VecDeque<Entry>,
    chunk: usize,
    exhausted: bool,
}

impl MemtableCursor {
    /// A cursor over versions whose user key lies within `(lower, upper)`.
    pub fn new(
        memtable: Arc<Memtable>,
        lower: Bound<&[u8]>,
        upper: Bound<&[u8]>,
        reverse: bool,
    ) -> MemtableCursor {
        let (lower, upper) = internal_bounds(lower, upper);
        MemtableCursor {
            memtable,
            direction: if reverse { Direction::Backward } else { Direction::Forward },
            lower,
            upper,
            buffer: VecDeque::new(),
            chunk: FIRST_CHUNK,
            exhausted: false,
        }
    }

    fn refill(&mut self) {
        let points = self.memtable.points();
        let range = (self.lower.as_ref(), self.upper.as_ref());
        let to_entry = |n: NodeRef<'_, PointValue>| Entry {
            key: n.key().user_key.clone(),
            seqno: n.key().seqno,
            kind: n.value().kind,
            value: n.value().value.clone(),
        };
        let forward = self.direction == Direction::Forward;
        let mut at = if forward {
            points.lower_bound(self.lower.as_ref())
        } else {
            points.upper_bound(self.upper.as_ref())
        };
        while let Some(node) = at.filter(|n| range.contains(n.key())) {
            self.buffer.push_back(to_entry(node));
            if self.buffer.len() == self.chunk {
                break;
            }
            at = if forward { points.next(node) } else { points.prev(node) };
        }
        if self.buffer.len() < self.chunk {
            self.exhausted = true;
        }
        // The next refill starts after the last entry fetched.
        if let Some(last) = self.buffer.back() {
            let bound = Bound::Excluded(InternalKey::new(last.key.clone(), last.seqno));
            match self.direction {
                Direction::Forward => self.lower = bound,
                Direction::Backward => self.upper = bound,
            }
        }
        self.chunk = (self.chunk * 2).min(MAX_CHUNK);
    }
}

impl Iterator for MemtableCursor {
    type Item = Entry;

    fn next(&mut self) -> Option<Entry> {
        if self.buffer.is_empty() && !self.exhausted {
            self.refill();
        }
        self.buffer.pop_front()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key::ValueKind;
    use bytes::Bytes;

    fn filled() -> Arc<Memtable> {
        let m = Memtable::new(1, 1 << 20);
        let mut seqno = 0;
        for i in 0..1000u32 {
            for _ in 0..(i % 3 + 1) {
                seqno += 1;
                let key = Bytes::from(format!("{i:05}"));
                m.insert(key, seqno, ValueKind::Put, Bytes::from(seqno.to_string()));
            }
        }
        Arc::new(m)
    }

    #[test]
    fn forward_and_backward_match_the_skiplist() {
        let m = filled();
        let all: Vec<Entry> = m.entries().collect();
        let fwd: Vec<Entry> =
            MemtableCursor::new(m.clone(), Bound::Unbounded, Bound::Unbounded, false).collect();
        assert_eq!(fwd, all);
        let mut bwd: Vec<Entry> =
            MemtableCursor::new(m.clone(), Bound::Unbounded, Bound::Unbounded, true).collect();
        bwd.reverse();
        assert_eq!(bwd, all);
    }

    #[test]
    fn bounds_select_whole_keys() {
        let m = filled();
        let lo = Bytes::from("00010");
        let hi = Bytes::from("00020");
        let keys = |lower, upper, reverse| {
            let mut v: Vec<Bytes> =
                MemtableCursor::new(m.clone(), lower, upper, reverse).map(|e| e.key).collect();
            v.dedup();
            v
        };
        let inc_exc = keys(Bound::Included(&lo[..]), Bound::Excluded(&hi[..]), false);
        assert_eq!(inc_exc.len(), 10);
        assert_eq!(inc_exc[0], lo);
        let exc_inc = keys(Bound::Excluded(&lo[..]), Bound::Included(&hi[..]), true);
        assert_eq!(exc_inc.len(), 10);
        assert_eq!(exc_inc[0], hi);
        // Every version of a bounding key is included or excluded together.
        let versions = MemtableCursor::new(
            m.clone(),
            Bound::Included(&hi[..]),
            Bound::Included(&hi[..]),
            false,
        )
        .count();
        assert_eq!(versions, 20 % 3 + 1);
    }
}
