//! The in-memory write buffer.
//!
//! # Design invariants
//! 1. Two separate sorted structures: point entries in a skiplist ([`skiplist`]) ordered
//!    `(key ASC, seqno DESC)`, range tombstones in their own skiplist ordered
//!    `(start ASC, seqno DESC)`. Readers merge them at read time; nothing is collapsed.
//!    The tombstones are also indexed for lookups ([`tombstones`]): the skiplist is
//!    their order for flush, the index answers "which tombstone covers this key".
//! 2. Every version written is kept exactly as written until flush; the flush
//!    iterators ([`Memtable::entries`], [`Memtable::range_tombstones`]) yield them all.
//! 3. `max_lsn` is the highest seqno ever inserted or injected; it only grows.
//!    Recovery calls [`Memtable::inject_max_lsn`] so that no seqno is reused.
//!
//! # Thread safety
//! One writer at a time (the commit leader, see `db::write`) inserts; any number of
//! readers run concurrently without locks and filter out seqnos above their snapshot,
//! so a half-inserted batch is never visible. Once frozen ([`FrozenMemtable`]) a
//! memtable is never written again and is flushed while readers keep using it.

mod arena;
mod cursor;
mod key_filter;
mod skiplist;
mod tombstones;

use std::cmp::Ordering;
use std::ops::{Bound, Deref};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering as AtomicOrdering};

use arena::{ByteArena, detach};
use bytes::Bytes;
use key_filter::KeyFilter;
use skiplist::SkipList;
use tombstones::MemtableTombstones;

pub use cursor::MemtableCursor;
pub use tombstones::TombstoneLevels;

use crate::key::{
    Entry, KeyVersion, MAX_SEQNO, RangeTombstone, SeqNo, ValueKind, compare_internal, key_prefix,
};

/// What one entry costs beyond its key and value bytes, counted towards the write
/// buffer so that `write_buffer_size` bounds the memory memtables really take: its
/// skiplist node (the key and value structs), the node's tower of links (4/3 on
/// average, counted as two to cover the end of each chunk), its record's header in the
/// arena and its byte of the key filter. Measured with `examples/memtable_memory`:
/// 1,000,000 puts of 16-byte keys and 100-byte values grew the process by 246 bytes
/// each against 237 counted (1.04×; crossbeam-skiplist's nodes made it 296).
const ENTRY_OVERHEAD: usize =
    size_of::<InternalKey>() + size_of::<PointValue>() + 2 * size_of::<usize>() + RECORD_HEADER + 1;

/// Bytes of a put's encoding in the group record besides its key and value (tag and
/// two varint lengths), which the arena holds with them.
const RECORD_HEADER: usize = 8;

/// A skiplist key: user key plus seqno, ordered `(key ASC, seqno DESC)`.
///
/// The first 16 bytes of the key are also kept inline, zero-padded, as a big-endian
/// `u128`. Skiplist search is dominated by cache misses; comparing the inline prefix
/// decides most comparisons without following the pointer to the key bytes. Padding
/// with zeros preserves order: two keys whose padded prefixes differ compare the same
/// way as the keys themselves (profiled: fillrandom spent ~40% in skiplist search).
///
/// The prefix is stored as two `u64` halves rather than a `u128`, whose 16-byte
/// alignment would pad every skiplist node by 16 bytes.
#[derive(Debug, Clone)]
pub(crate) struct InternalKey {
    prefix: [u64; 2],
    pub(crate) user_key: Bytes,
    pub(crate) seqno: SeqNo,
}

impl InternalKey {
    pub(crate) fn new(user_key: Bytes, seqno: SeqNo) -> InternalKey {
        let prefix = key_prefix(&user_key);
        InternalKey { prefix: [(prefix >> 64) as u64, prefix as u64], user_key, seqno }
    }
}

/// A borrowed view of an internal key, so lookups need not allocate an owned key.
pub(crate) trait KeyView {
    fn parts(&self) -> (u128, &[u8], SeqNo);
}

impl KeyView for InternalKey {
    fn parts(&self) -> (u128, &[u8], SeqNo) {
        let [high, low] = self.prefix;
        ((u128::from(high) << 64) | u128::from(low), &self.user_key, self.seqno)
    }
}

/// A lookup key borrowing the caller's bytes.
pub(crate) struct Probe<'a> {
    prefix: u128,
    key: &'a [u8],
    seqno: SeqNo,
}

impl<'a> Probe<'a> {
    pub(crate) fn new(key: &'a [u8], seqno: SeqNo) -> Probe<'a> {
        Probe { prefix: key_prefix(key), key, seqno }
    }
}

impl KeyView for Probe<'_> {
    fn parts(&self) -> (u128, &[u8], SeqNo) {
        (self.prefix, self.key, self.seqno)
    }
}

fn compare_keys<A: KeyView + ?Sized, B: KeyView + ?Sized>(a: &A, b: &B) -> Ordering {
    let (pa, ka, sa) = a.parts();
    let (pb, kb, sb) = b.parts();
    pa.cmp(&pb).then_with(|| compare_internal(ka, sa, kb, sb))
}

impl PartialEq for InternalKey {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for InternalKey {}
impl PartialOrd for InternalKey {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for InternalKey {
    fn cmp(&self, other: &Self) -> Ordering {
        compare_keys(self, other)
    }
}

/// The stored half of a point entry.
#[derive(Debug, Clone)]
pub(crate) struct PointValue {
    pub(crate) kind: ValueKind,
    pub(crate) value: Bytes,
}

/// The active, writable memtable.
#[derive(Debug)]
pub struct Memtable {
    points: SkipList<PointValue>,
    range_tombstones: SkipList<Bytes>,
    /// The same tombstones, indexed for lookups.
    tombstone_index: MemtableTombstones,
    /// The user keys of `points`, so most lookups of other keys skip the search.
    keys: KeyFilter,
    /// Where the keys and values inserted by the write path live.
    arena: ByteArena,
    approximate_size: AtomicUsize,
    max_lsn: AtomicU64,
    /// The first WAL segment holding this memtable's writes; once it is flushed,
    /// segments before the next memtable's `first_wal` can be deleted.
    first_wal: u64,
}

impl Memtable {
    /// An empty memtable whose writes start in WAL segment `first_wal`, sized for
    /// about `capacity` bytes of [`Memtable::approximate_size`] (the write buffer).
    pub fn new(first_wal: u64, capacity: usize) -> Memtable {
        Memtable {
            points: SkipList::new(),
            range_tombstones: SkipList::new(),
            tombstone_index: MemtableTombstones::default(),
            // Every entry's footprint is at least ENTRY_OVERHEAD, which counts its byte.
            keys: KeyFilter::new(capacity / ENTRY_OVERHEAD),
            arena: ByteArena::default(),
            approximate_size: AtomicUsize::new(0),
            max_lsn: AtomicU64::new(0),
            first_wal,
        }
    }

    /// What an entry of these sizes adds to [`Memtable::approximate_size`].
    pub fn footprint(key_len: usize, value_len: usize) -> usize {
        key_len + value_len + ENTRY_OVERHEAD
    }

    /// A commit group's `payload` as this memtable keeps it, for keys and values to
    /// slice: copied into the arena, or kept as it is if large (see `arena`).
    pub fn hold(&self, payload: Vec<u8>) -> Bytes {
        self.arena.hold(payload)
    }

    /// `value`, a slice of a payload of `payload_len` bytes from [`Memtable::hold`],
    /// as it should be inserted: a large value that is a small part of a large
    /// payload is copied, so that [`Memtable::get`] can hand it out without pinning
    /// the rest of the payload.
    pub fn settle(value: Bytes, payload_len: usize) -> Bytes {
        arena::settle(value, payload_len)
    }

    /// Inserts one point version. A version already present (the same key and seqno,
    /// which only recovery after skipped WAL damage can produce) is kept as it was.
    pub fn insert(&self, key: Bytes, seqno: SeqNo, kind: ValueKind, value: Bytes) {
        let size = Memtable::footprint(key.len(), value.len());
        self.keys.insert(&key);
        if self.points.insert(InternalKey::new(key, seqno), PointValue { kind, value }) {
            self.approximate_size.fetch_add(size, AtomicOrdering::Relaxed);
        }
        self.inject_max_lsn(seqno);
    }

    /// Inserts a range tombstone over `[start, end)`; like [`Memtable::insert`], one
    /// with the start and seqno of one present is not inserted again.
    pub fn insert_range_tombstone(&self, start: Bytes, end: Bytes, seqno: SeqNo) {
        let size = start.len() + end.len() + ENTRY_OVERHEAD;
        let tombstone = RangeTombstone { start: start.clone(), end: end.clone(), seqno };
        if self.range_tombstones.insert(InternalKey::new(start, seqno), end) {
            // Indexed before the seqno is published (the caller publishes it after the
            // insert returns), so every reader that can see it finds it.
            self.tombstone_index.insert(tombstone);
            self.approximate_size.fetch_add(size, AtomicOrdering::Relaxed);
        }
        self.inject_max_lsn(seqno);
    }

    /// Raises `max_lsn` to at least `lsn` (recovery uses it so no seqno is reused).
    pub fn inject_max_lsn(&self, lsn: SeqNo) {
        self.max_lsn.fetch_max(lsn, AtomicOrdering::AcqRel);
    }

    /// The highest seqno inserted or injected.
    pub fn max_lsn(&self) -> SeqNo {
        self.max_lsn.load(AtomicOrdering::Acquire)
    }

    /// Bytes of keys and values held, plus a per-entry overhead.
    pub fn approximate_size(&self) -> usize {
        self.approximate_size.load(AtomicOrdering::Relaxed)
    }

    /// True if nothing was inserted.
    pub fn is_empty(&self) -> bool {
        self.points.is_empty() && self.range_tombstones.is_empty()
    }

    /// The first WAL segment holding this memtable's writes.
    pub fn first_wal(&self) -> u64 {
        self.first_wal
    }

    /// The newest version of `key` with seqno `<= snapshot`, put or delete.
    ///
    /// A value of up to 128 KiB is a copy, so that a caller holding it does not keep
    /// the 1 MiB chunk (or larger payload) it lives in alive; a larger value is a
    /// slice of memory at most 8 times its size (see `arena`).
    pub fn get(&self, key: &[u8], snapshot: SeqNo) -> Option<KeyVersion> {
        if !self.keys.may_contain(key) {
            return None;
        }
        let probe = Probe::new(key, snapshot);
        let found = self.points.lower_bound(Bound::Included(&probe))?;
        let ikey = found.key();
        if ikey.user_key.as_ref() != key {
            return None;
        }
        let value = found.value();
        Some(KeyVersion { seqno: ikey.seqno, kind: value.kind, value: detach(&value.value) })
    }

    /// The highest seqno `<= snapshot` of a range tombstone covering `key`, if any.
    pub fn max_covering_tombstone(&self, key: &[u8], snapshot: SeqNo) -> Option<SeqNo> {
        if self.range_tombstones.is_empty() {
            return None;
        }
        self.tombstone_index.levels().max_covering(key, snapshot)
    }

    /// The range tombstones inserted so far, indexed; later inserts do not change it.
    pub fn tombstone_levels(&self) -> TombstoneLevels {
        self.tombstone_index.levels()
    }

    /// Every point version in internal order (for flush).
    pub fn entries(&self) -> impl Iterator<Item = Entry> + '_ {
        self.points.iter().map(|e| Entry {
            key: e.key().user_key.clone(),
            seqno: e.key().seqno,
            kind: e.value().kind,
            value: e.value().value.clone(),
        })
    }

    /// Every range tombstone in `(start ASC, seqno DESC)` order.
    pub fn range_tombstones(&self) -> impl Iterator<Item = RangeTombstone> + '_ {
        self.range_tombstones.iter().map(|e| RangeTombstone {
            start: e.key().user_key.clone(),
            end: e.value().clone(),
            seqno: e.key().seqno,
        })
    }

    /// Number of point versions.
    pub fn point_count(&self) -> usize {
        self.points.len()
    }

    pub(crate) fn points(&self) -> &SkipList<PointValue> {
        &self.points
    }
}

/// A memtable that takes no more writes and waits for (or is in) flush.
///
/// Shares the memtable by `Arc` with readers; it only exposes reads.
#[derive(Debug, Clone)]
pub struct FrozenMemtable {
    memtable: Arc<Memtable>,
}

impl FrozenMemtable {
    /// Freezes `memtable`: the caller must have stopped writing to it.
    pub fn new(memtable: Arc<Memtable>) -> FrozenMemtable {
        FrozenMemtable { memtable }
    }

    /// The underlying memtable (read-only through `&`).
    pub fn memtable(&self) -> &Arc<Memtable> {
        &self.memtable
    }
}

impl Deref for FrozenMemtable {
    type Target = Memtable;

    fn deref(&self) -> &Memtable {
        &self.memtable
    }
}

/// Maps user-key bounds to internal-key bounds that select every version.
pub(crate) fn internal_bounds(
    lower: Bound<&[u8]>,
    upper: Bound<&[u8]>,
) -> (Bound<InternalKey>, Bound<InternalKey>) {
    let ik = |k: &[u8], seqno| InternalKey::new(Bytes::copy_from_slice(k), seqno);
    let lower = match lower {
        Bound::Included(k) => Bound::Included(ik(k, MAX_SEQNO)),
        Bound::Excluded(k) => Bound::Excluded(ik(k, 0)),
        Bound::Unbounded => Bound::Unbounded,
    };
    let upper = match upper {
        Bound::Included(k) => Bound::Included(ik(k, 0)),
        Bound::Excluded(k) => Bound::Excluded(ik(k, MAX_SEQNO)),
        Bound::Unbounded => Bound::Unbounded,
    };
    (lower, upper)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(s: &str) -> Bytes {
        Bytes::copy_from_slice(s.as_bytes())
    }

    #[test]
    fn get_returns_newest_visible_version() {
        let m = Memtable::new(1, 1 << 20);
        m.insert(b("k"), 1, ValueKind::Put, b("v1"));
        m.insert(b("k"), 3, ValueKind::Put, b("v3"));
        m.insert(b("k"), 5, ValueKind::Delete, Bytes::new());
        m.insert(b("ka"), 4, ValueKind::Put, b("other"));
        assert_eq!(m.get(b"k", 0), None);
        assert_eq!(m.get(b"k", 2).unwrap().value, b("v1"));
        assert_eq!(m.get(b"k", 4).unwrap().value, b("v3"));
        assert_eq!(m.get(b"k", 9).unwrap().kind, ValueKind::Delete);
        assert_eq!(m.get(b"j", 9), None);
        assert_eq!(m.get(b"kb", 9), None);
        assert_eq!(m.max_lsn(), 5);
    }

    #[test]
    fn covering_tombstones_respect_range_and_snapshot() {
        let m = Memtable::new(1, 1 << 20);
        m.insert_range_tombstone(b("b"), b("d"), 7);
        m.insert_range_tombstone(b("a"), b("c"), 9);
        assert_eq!(m.max_covering_tombstone(b"b", 100), Some(9));
        assert_eq!(m.max_covering_tombstone(b"c", 100), Some(7));
        assert_eq!(m.max_covering_tombstone(b"c", 6), None);
        assert_eq!(m.max_covering_tombstone(b"b", 8), Some(7));
        assert_eq!(m.max_covering_tombstone(b"d", 100), None);
        assert_eq!(m.max_covering_tombstone(b"0", 100), None);
    }

    /// One writer inserts nested tombstones and publishes each seqno after its insert,
    /// as the commit leader does; readers at the published seqno must find it.
    #[test]
    fn readers_find_every_published_tombstone() {
        let m = Arc::new(Memtable::new(1, 1 << 20));
        let published = Arc::new(AtomicU64::new(0));
        let readers: Vec<_> = (0..2)
            .map(|_| {
                let (m, published) = (m.clone(), published.clone());
                std::thread::spawn(move || {
                    loop {
                        let seqno = published.load(AtomicOrdering::Acquire);
                        let found = m.max_covering_tombstone(b"q:", seqno);
                        assert_eq!(found, (seqno > 0).then_some(seqno));
                        let levels = m.tombstone_levels();
                        assert_eq!(levels.max_covering(b"q:", seqno), found);
                        if seqno == 2_000 {
                            break;
                        }
                    }
                })
            })
            .collect();
        for seqno in 1..=2_000u64 {
            m.insert_range_tombstone(b("q:"), Bytes::from(format!("q:{seqno:08}")), seqno);
            published.store(seqno, AtomicOrdering::Release);
        }
        for reader in readers {
            reader.join().unwrap();
        }
    }

    #[test]
    fn flush_iterators_keep_every_version_in_order() {
        let m = Memtable::new(1, 1 << 20);
        m.insert(b("b"), 2, ValueKind::Put, b("x"));
        m.insert(b("a"), 1, ValueKind::Put, b("y"));
        m.insert(b("b"), 3, ValueKind::Delete, Bytes::new());
        let got: Vec<_> = m.entries().map(|e| (e.key, e.seqno)).collect();
        assert_eq!(got, vec![(b("a"), 1), (b("b"), 3), (b("b"), 2)]);
        m.insert_range_tombstone(b("a"), b("z"), 4);
        m.insert_range_tombstone(b("a"), b("c"), 5);
        let t: Vec<_> = m.range_tombstones().map(|t| t.seqno).collect();
        assert_eq!(t, vec![5, 4]);
    }

    proptest::proptest! {
        #[test]
        fn inline_prefix_preserves_internal_order(
            a in proptest::collection::vec(0u8..4, 0..20),
            b in proptest::collection::vec(0u8..4, 0..20),
            sa in 0u64..3,
            sb in 0u64..3,
        ) {
            let (ka, kb) = (InternalKey::new(Bytes::from(a.clone()), sa), InternalKey::new(Bytes::from(b.clone()), sb));
            proptest::prop_assert_eq!(ka.cmp(&kb), compare_internal(&a, sa, &b, sb));
            let probe = Probe::new(&b, sb);
            proptest::prop_assert_eq!(compare_keys(&ka, &probe), compare_internal(&a, sa, &b, sb));
        }
    }

    #[test]
    fn inject_max_lsn_only_grows() {
        let m = Memtable::new(1, 1 << 20);
        m.inject_max_lsn(10);
        m.inject_max_lsn(4);
        assert_eq!(m.max_lsn(), 10);
    }
}
