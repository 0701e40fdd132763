//! Keys, sequence numbers and the one entry type shared by every layer.
//!
//! # Invariants
//! 1. Every write gets a sequence number (LSN); a batch gets a block of consecutive
//!    numbers and becomes visible all at once, when the highest of them is published.
//! 2. Internal order is `(user_key ASC, seqno DESC)`: for one user key the newest
//!    version comes first. The memtable, SSTables and merging iterators all use it.
//! 3. [`Entry`] is what the memtable yields for flush, what the SSTable builder
//!    consumes and what iterators merge: there is no translation between layers.
//!
//! # On-disk tags
//! [`ValueKind`] discriminants are part of the file format (WAL, SSTable): never change.
//! A seqno and its kind are packed into one `u64` as `seqno << 8 | kind`, so a seqno
//! is at most [`MAX_SEQNO`] (2^56 - 1).

use std::cmp::Ordering;

use bytes::Bytes;

/// A sequence number (log sequence number, LSN).
pub type SeqNo = u64;

/// The largest sequence number that can be stored.
pub const MAX_SEQNO: SeqNo = (1 << 56) - 1;

/// The largest key accepted, in bytes.
pub const MAX_KEY_SIZE: usize = 64 * 1024;

/// The largest value accepted, in bytes (256 MiB).
pub const MAX_VALUE_SIZE: usize = 256 * 1024 * 1024;

/// What a point entry says about its key. Part of the file format: never change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum ValueKind {
    /// The key was deleted at this seqno.
    Delete = 0,
    /// The key was set to a value at this seqno.
    Put = 1,
}

impl ValueKind {
    /// Decodes an on-disk tag.
    pub fn from_tag(tag: u8) -> Option<ValueKind> {
        match tag {
            0 => Some(ValueKind::Delete),
            1 => Some(ValueKind::Put),
            _ => None,
        }
    }
}

/// Packs a seqno and a kind into the 8-byte on-disk trailer of an internal key.
pub fn pack_trailer(seqno: SeqNo, kind: ValueKind) -> u64 {
    debug_assert!(seqno <= MAX_SEQNO);
    (seqno << 8) | kind as u64
}

/// Inverse of [`pack_trailer`]; `None` for an unknown kind tag.
pub fn unpack_trailer(trailer: u64) -> Option<(SeqNo, ValueKind)> {
    ValueKind::from_tag((trailer & 0xff) as u8).map(|kind| (trailer >> 8, kind))
}

/// Compares two internal keys: user key ascending, then seqno descending.
#[inline]
pub fn compare_internal(a_key: &[u8], a_seqno: SeqNo, b_key: &[u8], b_seqno: SeqNo) -> Ordering {
    a_key.cmp(b_key).then_with(|| b_seqno.cmp(&a_seqno))
}

/// The first 16 bytes of `key`, zero-padded, as a big-endian integer.
///
/// Where two prefixes differ they order the keys as comparing the keys would (a
/// shorter key's zero padding sorts below any byte a longer key has there, or ties
/// and falls through to the full comparison). Kept inline next to a key pointer, it
/// decides most comparisons in skiplists and index searches without a cache miss.
pub fn key_prefix(key: &[u8]) -> u128 {
    let mut buf = [0u8; 16];
    let n = key.len().min(16);
    buf[..n].copy_from_slice(&key[..n]);
    u128::from_be_bytes(buf)
}

/// One version of one key: the record shared by memtable, SSTables and iterators.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The user key.
    pub key: Bytes,
    /// When it was written.
    pub seqno: SeqNo,
    /// Put or delete.
    pub kind: ValueKind,
    /// The value; empty for a delete.
    pub value: Bytes,
}

impl Entry {
    /// Orders entries in internal order.
    pub fn cmp_internal(&self, other: &Entry) -> Ordering {
        compare_internal(&self.key, self.seqno, &other.key, other.seqno)
    }

    /// The entry, borrowed.
    pub fn borrowed(&self) -> EntryRef<'_> {
        EntryRef { key: &self.key, seqno: self.seqno, kind: self.kind, value: &self.value }
    }
}

/// An [`Entry`] read where it lies (in a decoded block, say), not copied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EntryRef<'a> {
    /// The user key.
    pub key: &'a [u8],
    /// When it was written.
    pub seqno: SeqNo,
    /// Put or delete.
    pub kind: ValueKind,
    /// The value; empty for a delete.
    pub value: &'a [u8],
}

impl EntryRef<'_> {
    /// Orders entries in internal order.
    pub fn cmp_internal(&self, other: &EntryRef<'_>) -> Ordering {
        compare_internal(self.key, self.seqno, other.key, other.seqno)
    }
}

/// One version of a key the caller already knows: what a point lookup finds, without
/// a copy of the key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyVersion {
    /// When it was written.
    pub seqno: SeqNo,
    /// Put or delete.
    pub kind: ValueKind,
    /// The value; empty for a delete.
    pub value: Bytes,
}

impl From<Entry> for KeyVersion {
    fn from(e: Entry) -> Self {
        KeyVersion { seqno: e.seqno, kind: e.kind, value: e.value }
    }
}

/// A deletion of every key in `[start, end)` written at `seqno`.
///
/// It hides versions of those keys with a smaller seqno, never newer ones.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RangeTombstone {
    /// First deleted key (inclusive).
    pub start: Bytes,
    /// End of the range (exclusive). Always `> start`.
    pub end: Bytes,
    /// When it was written.
    pub seqno: SeqNo,
}

impl RangeTombstone {
    /// True if `key` lies in `[start, end)`.
    pub fn covers(&self, key: &[u8]) -> bool {
        self.start.as_ref() <= key && key < self.end.as_ref()
    }

    /// Orders tombstones by `(start ASC, seqno DESC)`, the order they are stored in.
    pub fn cmp_internal(&self, other: &RangeTombstone) -> Ordering {
        compare_internal(&self.start, self.seqno, &other.start, other.seqno)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trailer_round_trips() {
        for seqno in [0, 1, 255, 1 << 40, MAX_SEQNO] {
            for kind in [ValueKind::Put, ValueKind::Delete] {
                assert_eq!(unpack_trailer(pack_trailer(seqno, kind)), Some((seqno, kind)));
            }
        }
        assert_eq!(unpack_trailer(7), None);
    }

    proptest::proptest! {
        #[test]
        fn differing_prefixes_order_like_keys(
            a in proptest::collection::vec(0u8..3, 0..24),
            b in proptest::collection::vec(0u8..3, 0..24),
        ) {
            let (pa, pb) = (key_prefix(&a), key_prefix(&b));
            if pa != pb {
                proptest::prop_assert_eq!(pa.cmp(&pb), a.cmp(&b));
            }
        }
    }

    #[test]
    fn newest_version_sorts_first() {
        assert_eq!(compare_internal(b"a", 5, b"a", 3), Ordering::Less);
        assert_eq!(compare_internal(b"a", 1, b"b", 9), Ordering::Less);
        assert_eq!(compare_internal(b"a", 1, b"a", 1), Ordering::Equal);
    }
}
