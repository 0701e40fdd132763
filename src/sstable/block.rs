//! Data block format: prefix-compressed entries with restart points.
//!
//! The same format holds data blocks, the index block (key = last internal key of a
//! data block, value = its encoded [`BlockHandle`](super::footer::BlockHandle)) and the
//! range-tombstone block (key = start, value = end, kind = delete).
//!
//! # Layout (part of the file format, never change)
//! ```text
//! entry*  restart_offset (u32 LE)*  restart_count (u32 LE)
//!
//! entry := shared varint | unshared varint | value_len varint
//!          | key_delta [unshared] | trailer u64 LE | value [value_len]
//! ```
//! `shared` is the length of the prefix shared with the previous entry's user key;
//! `trailer` is `pack_trailer(seqno, kind)` ([`pack_trailer`]).
//! Every [`RESTART_INTERVAL`] entries a restart point stores its key whole
//! (`shared = 0`) and its offset is listed in the restart array.
//!
//! # Invariants
//! 1. Entries are in strictly increasing internal order (user key ASC, seqno DESC).
//! 2. The first restart offset is 0 and restart offsets strictly increase, each
//!    pointing before the restart array. An empty block has no restarts.
//! 3. [`Block::decode`] checks the restart array, and that the block ends within
//!    `u64` file offsets (so an entry's offset in the file never overflows); entries
//!    are checked as they are read. Decoding arbitrary bytes returns [`Corruption`],
//!    never panics.
//!
//! An iterator's current entry is read in place ([`BlockIter::current`]); owned, its
//! value is a [`Bytes`] slice of the block, without copying.

use std::cmp::Ordering;

use bytes::Bytes;

use super::framing::TRAILER_SIZE;
use crate::coding::{Decoder, put_varint};
use crate::error::Corruption;
use crate::key::{
    Entry, EntryRef, KeyVersion, SeqNo, ValueKind, compare_internal, pack_trailer, unpack_trailer,
};

/// Entries between two restart points.
pub const RESTART_INTERVAL: usize = 16;

/// A value of at least this size makes the builder reserve room for the rest of the
/// block, restarts and frame trailer included, before copying the value in.
const LARGE_VALUE: usize = 64 << 10;

/// Builds one block in memory.
#[derive(Debug, Default)]
pub struct BlockBuilder {
    buf: Vec<u8>,
    restarts: Vec<u32>,
    since_restart: usize,
    last_key: Vec<u8>,
    entries: usize,
}

impl BlockBuilder {
    /// An empty builder.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends an entry. The caller guarantees internal order (invariant 1).
    pub fn add(&mut self, key: &[u8], seqno: SeqNo, kind: ValueKind, value: &[u8]) {
        let shared = if self.since_restart == RESTART_INTERVAL || self.entries == 0 {
            self.restarts.push(self.buf.len() as u32);
            self.since_restart = 0;
            0
        } else {
            self.last_key.iter().zip(key).take_while(|(a, b)| a == b).count()
        };
        let unshared = &key[shared..];
        if value.len() >= LARGE_VALUE {
            // Room for the whole block as framed, so that neither `finish` nor the
            // framing reallocates (a copy of a large value, with some allocators).
            let tail = 4 * (self.restarts.len() + 1) + TRAILER_SIZE;
            self.buf.reserve(3 * 10 + unshared.len() + 8 + value.len() + tail);
        }
        put_varint(&mut self.buf, shared as u64);
        put_varint(&mut self.buf, unshared.len() as u64);
        put_varint(&mut self.buf, value.len() as u64);
        self.buf.extend_from_slice(unshared);
        self.buf.extend_from_slice(&pack_trailer(seqno, kind).to_le_bytes());
        self.buf.extend_from_slice(value);
        self.last_key.truncate(shared);
        self.last_key.extend_from_slice(unshared);
        self.since_restart += 1;
        self.entries += 1;
    }

    /// Size of the block if finished now.
    pub fn estimated_size(&self) -> usize {
        self.buf.len() + 4 * self.restarts.len() + 4
    }

    /// True if no entry was added since the last [`finish`](Self::finish).
    pub fn is_empty(&self) -> bool {
        self.entries == 0
    }

    /// Returns the encoded block and resets the builder for the next one.
    pub fn finish(&mut self) -> Vec<u8> {
        let mut out = std::mem::take(&mut self.buf);
        out.reserve_exact(4 * self.restarts.len() + 4);
        for r in &self.restarts {
            out.extend_from_slice(&r.to_le_bytes());
        }
        out.extend_from_slice(&(self.restarts.len() as u32).to_le_bytes());
        self.restarts.clear();
        self.since_restart = 0;
        self.last_key.clear();
        self.entries = 0;
        out
    }
}

/// A decoded block: the bytes plus the location of its restart array.
///
/// Cheap to clone (the bytes are reference-counted).
#[derive(Debug, Clone)]
pub struct Block {
    data: Bytes,
    /// Offset of the block in its file, so errors name absolute offsets.
    file_offset: u64,
    /// Where entries end and the restart array begins.
    restarts_start: usize,
    restart_count: usize,
}

impl Block {
    /// Checks the restart array of `data`, a block that starts at `file_offset`.
    pub fn decode(data: Bytes, file_offset: u64) -> Result<Block, Corruption> {
        let bad = |message: &str| Corruption::new(file_offset, format!("bad block: {message}"));
        let len = data.len();
        if u64::try_from(len).ok().and_then(|len| file_offset.checked_add(len)).is_none() {
            return Err(bad("ends past the largest file offset"));
        }
        let count_at = len.checked_sub(4).ok_or_else(|| bad("shorter than 4 bytes"))?;
        let restart_count = Decoder::new(&data[count_at..])
            .u32()
            .and_then(|n| usize::try_from(n).ok())
            .ok_or_else(|| bad("no restart count"))?;
        let restarts_start = restart_count
            .checked_mul(4)
            .and_then(|n| count_at.checked_sub(n))
            .ok_or_else(|| bad("restart count larger than the block"))?;
        if restart_count == 0 && restarts_start != 0 {
            return Err(bad("entries without restart points"));
        }
        let mut d = Decoder::new(&data[restarts_start..count_at]);
        let mut previous = None;
        while !d.is_empty() {
            let r = d.u32().ok_or_else(|| bad("truncated restart array"))? as usize;
            let ok = match previous {
                None => r == 0 && r < restarts_start,
                Some(p) => r > p && r < restarts_start,
            };
            if !ok {
                return Err(bad("restart offsets out of order"));
            }
            previous = Some(r);
        }
        Ok(Block { data, file_offset, restarts_start, restart_count })
    }

    /// Bytes of the block (its weight in the cache).
    pub fn size(&self) -> usize {
        self.data.len()
    }

    /// An iterator over the entries, positioned before the first.
    pub fn iter(&self) -> BlockIter {
        BlockIter {
            block: self.clone(),
            key: Vec::new(),
            seqno: 0,
            kind: ValueKind::Put,
            value: (0, 0),
            current: 0,
            next: 0,
            state: State::Consumed,
        }
    }

    /// A point lookup: the first entry at or after `(key, snapshot)`, if it is a
    /// version of `key`. The value is a slice of the block.
    pub fn get(&self, key: &[u8], snapshot: SeqNo) -> Result<BlockGet, Corruption> {
        let mut it = self.iter();
        it.seek(key, snapshot)?;
        Ok(match it.state {
            State::Pending if it.key == key => BlockGet::Found(KeyVersion {
                seqno: it.seqno,
                kind: it.kind,
                value: self.data.slice(it.value.0..it.value.1),
            }),
            State::Pending => BlockGet::Absent,
            State::Consumed | State::Done => BlockGet::PastEnd,
        })
    }

    fn restart(&self, i: usize) -> usize {
        let at = self.restarts_start + 4 * i;
        // Checked by `decode`; a short read cannot happen, 0 is a harmless default.
        Decoder::new(self.data.get(at..).unwrap_or_default()).u32().unwrap_or(0) as usize
    }

    /// The key and seqno of restart point `i`, read in place: a restart stores its key
    /// whole, so a seek's binary search copies no key.
    fn restart_key(&self, i: usize) -> Result<(&[u8], SeqNo), Corruption> {
        let offset = self.restart(i);
        let raw = self.parse_entry(offset)?;
        if raw.shared != 0 {
            return Err(shared_too_long(self.file_offset + offset as u64));
        }
        Ok((raw.delta, raw.seqno))
    }

    /// Parses the entry at `offset`, checking that all of it lies in the block.
    fn parse_entry(&self, offset: usize) -> Result<RawEntry<'_>, Corruption> {
        let at = self.file_offset + offset as u64;
        let bad = |message: &str| Corruption::new(at, format!("bad block entry: {message}"));
        let entries = self.data.get(..self.restarts_start).unwrap_or_default();
        let mut d = Decoder::new(entries.get(offset..).ok_or_else(|| bad("offset past end"))?);
        let shared = d.varint_usize().ok_or_else(|| bad("truncated header"))?;
        let unshared = d.varint_usize().ok_or_else(|| bad("truncated header"))?;
        let value_len = d.varint_usize().ok_or_else(|| bad("truncated header"))?;
        let delta = d.bytes(unshared).ok_or_else(|| bad("truncated key"))?;
        let trailer = d.u64().ok_or_else(|| bad("truncated trailer"))?;
        let (seqno, kind) = unpack_trailer(trailer).ok_or_else(|| bad("unknown value kind"))?;
        let value_start = offset + d.position();
        d.bytes(value_len).ok_or_else(|| bad("truncated value"))?;
        let value = (value_start, value_start + value_len);
        Ok(RawEntry { shared, delta, seqno, kind, value, next: offset + d.position() })
    }
}

/// What a block holds for a point lookup ([`Block::get`]).
#[derive(Debug)]
pub enum BlockGet {
    /// The newest version of the key at or below the snapshot.
    Found(KeyVersion),
    /// The first entry at or after the target is another key: the table has no
    /// visible version of it.
    Absent,
    /// Every entry is before the target: the next block may hold it.
    PastEnd,
}

/// One entry as stored: its key is `delta` after `shared` bytes of the previous key.
struct RawEntry<'a> {
    shared: usize,
    delta: &'a [u8],
    seqno: SeqNo,
    kind: ValueKind,
    /// Range of the value in the block.
    value: (usize, usize),
    /// Offset of the entry after it.
    next: usize,
}

/// Asks the CPU to start loading the two cache lines at the start of `bytes`.
///
/// A scan walks cached blocks that are no longer in the CPU's caches, and the load of
/// each entry's header stalled on memory: 19% of a scan's time sat on that one
/// instruction (`perf annotate` of `Decoder::varint`). Prefetching the next entry
/// while the caller handles the current one hides that wait. Elsewhere than x86-64
/// it does nothing.
#[inline]
fn prefetch(bytes: &[u8]) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        let at = bytes.as_ptr().cast::<i8>();
        // SAFETY: `_mm_prefetch` needs SSE, which every x86-64 CPU has; it is a hint
        // that reads nothing into the program and never faults, whatever the address,
        // so `wrapping_add` past the end of `bytes` is harmless. Every block scan in
        // the tests (block.rs, iter.rs) runs it.
        unsafe {
            _mm_prefetch::<_MM_HINT_T0>(at);
            _mm_prefetch::<_MM_HINT_T0>(at.wrapping_add(64));
        }
    }
}

fn shared_too_long(at: u64) -> Corruption {
    Corruption::new(at, "bad block entry: shared prefix longer than the previous key")
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// The current entry was positioned by a seek and not yet returned.
    Pending,
    /// The current entry was reached; `advance` decodes the following one.
    Consumed,
    /// Exhausted or failed.
    Done,
}

/// Walks a block's entries in internal order.
///
/// [`advance`](BlockIter::advance) steps to each entry once and
/// [`current`](BlockIter::current) reads it in place (as an [`Iterator`] it yields owned
/// copies); [`seek`](BlockIter::seek) repositions it so the next step reaches the first
/// entry `>=` a target internal key. After an error it has no more entries.
#[derive(Debug)]
pub struct BlockIter {
    block: Block,
    key: Vec<u8>,
    seqno: SeqNo,
    kind: ValueKind,
    /// Range of the current value in the block.
    value: (usize, usize),
    /// Offset of the current entry.
    current: usize,
    /// Offset of the entry after it.
    next: usize,
    state: State,
}

impl BlockIter {
    /// Positions the iterator so the next entry returned is the first one whose
    /// internal key is `>= (key, seqno)`.
    pub fn seek(&mut self, key: &[u8], seqno: SeqNo) -> Result<(), Corruption> {
        let result = self.seek_inner(key, seqno);
        if result.is_err() {
            self.state = State::Done;
        }
        result
    }

    fn seek_inner(&mut self, key: &[u8], seqno: SeqNo) -> Result<(), Corruption> {
        if self.block.restart_count == 0 {
            self.state = State::Done;
            return Ok(());
        }
        // Find the last restart point whose key is < target.
        let (mut left, mut right) = (0, self.block.restart_count - 1);
        while left < right {
            let mid = left + (right - left).div_ceil(2);
            let (restart_key, restart_seqno) = self.block.restart_key(mid)?;
            if compare_internal(restart_key, restart_seqno, key, seqno) == Ordering::Less {
                left = mid;
            } else {
                right = mid - 1;
            }
        }
        self.key.clear();
        self.next = self.block.restart(left);
        while self.next < self.block.restarts_start {
            self.decode_at(self.next)?;
            if compare_internal(&self.key, self.seqno, key, seqno) != Ordering::Less {
                self.state = State::Pending;
                return Ok(());
            }
        }
        self.state = State::Done;
        Ok(())
    }

    /// Offset within the block of the entry returned last.
    pub fn current_offset(&self) -> usize {
        self.current
    }

    /// Decodes the entry at `offset`, with `self.key` holding the previous key.
    fn decode_at(&mut self, offset: usize) -> Result<(), Corruption> {
        let raw = self.block.parse_entry(offset)?;
        if raw.shared > self.key.len() {
            return Err(shared_too_long(self.block.file_offset + offset as u64));
        }
        self.key.truncate(raw.shared);
        self.key.extend_from_slice(raw.delta);
        self.seqno = raw.seqno;
        self.kind = raw.kind;
        self.value = raw.value;
        self.current = offset;
        self.next = raw.next;
        // Entries are about 130 bytes in the benchmarks: two lines cover the next
        // header and key.
        prefetch(self.block.data.get(raw.next..).unwrap_or_default());
        Ok(())
    }

    /// Steps to the next entry: `true` if there is one. After an error, `false`.
    pub fn advance(&mut self) -> Result<bool, Corruption> {
        match self.state {
            State::Done => Ok(false),
            State::Pending => {
                self.state = State::Consumed;
                Ok(true)
            }
            State::Consumed => {
                if self.next >= self.block.restarts_start {
                    self.state = State::Done;
                    return Ok(false);
                }
                match self.decode_at(self.next) {
                    Ok(()) => Ok(true),
                    Err(e) => {
                        self.state = State::Done;
                        Err(e)
                    }
                }
            }
        }
    }

    /// The entry `advance` stepped to, borrowed from the iterator and its block.
    pub fn current(&self) -> EntryRef<'_> {
        EntryRef {
            key: &self.key,
            seqno: self.seqno,
            kind: self.kind,
            value: &self.block.data[self.value.0..self.value.1],
        }
    }

    /// The entry `advance` stepped to, owned: a copy of the key, a slice of the block.
    pub fn entry(&self) -> Entry {
        Entry {
            key: Bytes::copy_from_slice(&self.key),
            seqno: self.seqno,
            kind: self.kind,
            value: self.block.data.slice(self.value.0..self.value.1),
        }
    }
}

impl Iterator for BlockIter {
    type Item = Result<Entry, Corruption>;

    fn next(&mut self) -> Option<Self::Item> {
        self.advance().map(|more| more.then(|| self.entry())).transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn entries(n: usize) -> Vec<Entry> {
        let mut out = Vec::new();
        for i in 0..n {
            for seqno in [30, 20, 10] {
                out.push(Entry {
                    key: Bytes::from(format!("key{:05}", i)),
                    seqno: seqno + i as u64,
                    kind: if seqno == 20 { ValueKind::Delete } else { ValueKind::Put },
                    value: Bytes::from(format!("value-{i}-{seqno}")),
                });
            }
        }
        out
    }

    fn build(entries: &[Entry]) -> Block {
        let mut b = BlockBuilder::new();
        for e in entries {
            b.add(&e.key, e.seqno, e.kind, &e.value);
        }
        Block::decode(Bytes::from(b.finish()), 0).unwrap()
    }

    #[test]
    fn every_entry_reads_back_in_order_around_restart_points() {
        for n in [0, 1, 5, 16, 17, 100] {
            let want = entries(n);
            let block = build(&want);
            let got: Vec<Entry> = block.iter().map(|e| e.unwrap()).collect();
            assert_eq!(got, want);
        }
    }

    #[test]
    fn seek_finds_first_entry_at_or_after_target() {
        let want = entries(60);
        let block = build(&want);
        let mut it = block.iter();
        for (i, e) in want.iter().enumerate() {
            // Exact hits.
            it.seek(&e.key, e.seqno).unwrap();
            assert_eq!(it.next().unwrap().unwrap(), *e);
            // Just after: seqno one lower finds the next entry.
            it.seek(&e.key, e.seqno - 1).unwrap();
            assert_eq!(it.next().map(|e| e.unwrap()).as_ref(), want.get(i + 1));
        }
        it.seek(b"", u64::MAX).unwrap();
        assert_eq!(it.next().unwrap().unwrap(), want[0]);
        it.seek(b"zzz", 0).unwrap();
        assert!(it.next().is_none());
        // Continues after the seek position.
        it.seek(&want[40].key, want[40].seqno).unwrap();
        let rest: Vec<Entry> = it.map(|e| e.unwrap()).collect();
        assert_eq!(rest, want[40..]);
    }

    #[test]
    fn get_finds_the_newest_visible_version_or_says_where_to_look() {
        let want = entries(60);
        let block = build(&want);
        // key00007 has versions at 37, 27 (a delete) and 17.
        let found = |snapshot| match block.get(b"key00007", snapshot).unwrap() {
            BlockGet::Found(v) => Some((v.seqno, v.kind, v.value)),
            other => panic!("{other:?}"),
        };
        assert_eq!(found(u64::MAX), Some((37, ValueKind::Put, Bytes::from("value-7-30"))));
        assert_eq!(found(36).map(|v| v.1), Some(ValueKind::Delete));
        assert_eq!(found(17).map(|v| v.0), Some(17));
        // Below its oldest version, the next entry is another key.
        assert!(matches!(block.get(b"key00007", 16).unwrap(), BlockGet::Absent));
        assert!(matches!(block.get(b"key00007x", u64::MAX).unwrap(), BlockGet::Absent));
        assert!(matches!(block.get(b"zzz", u64::MAX).unwrap(), BlockGet::PastEnd));
        assert!(matches!(build(&[]).get(b"a", 1).unwrap(), BlockGet::PastEnd));
    }

    /// A restart entry must store its key whole; the seek reads restart keys in place.
    #[test]
    fn a_restart_entry_that_shares_a_prefix_is_corruption() {
        let want = entries(40);
        let mut bytes = build(&want).data.to_vec();
        // The second restart point (entry 16) starts with its `shared` varint.
        let mut b = BlockBuilder::new();
        for e in &want[..RESTART_INTERVAL] {
            b.add(&e.key, e.seqno, e.kind, &e.value);
        }
        let second_restart = b.estimated_size() - 4 - 4; // minus count and one restart
        assert_eq!(bytes[second_restart], 0);
        bytes[second_restart] = 3;
        let block = Block::decode(Bytes::from(bytes), 0).unwrap();
        assert!(block.get(&want[17].key, want[17].seqno).is_err());
    }

    #[test]
    fn empty_block_is_valid() {
        let block = build(&[]);
        let mut it = block.iter();
        assert!(it.next().is_none());
        it.seek(b"a", 1).unwrap();
        assert!(it.next().is_none());
    }

    proptest! {
        #[test]
        fn arbitrary_entries_round_trip_and_seek(
            versions in proptest::collection::btree_set(
                (proptest::collection::vec(any::<u8>(), 0..12), 0u64..1000),
                0..120,
            ),
            target in (proptest::collection::vec(any::<u8>(), 0..12), 0u64..1000),
        ) {
            let mut want: Vec<Entry> = versions
                .iter()
                .map(|(k, s)| Entry {
                    key: Bytes::from(k.clone()),
                    seqno: *s,
                    kind: if s % 3 == 0 { ValueKind::Delete } else { ValueKind::Put },
                    value: Bytes::from(vec![*s as u8; (*s % 20) as usize]),
                })
                .collect();
            want.sort_by(Entry::cmp_internal);
            let block = build(&want);
            let got: Vec<Entry> = block.iter().map(|e| e.unwrap()).collect();
            prop_assert_eq!(&got, &want);
            let mut it = block.iter();
            it.seek(&target.0, target.1).unwrap();
            let first = want
                .iter()
                .position(|e| compare_internal(&e.key, e.seqno, &target.0, target.1).is_ge())
                .unwrap_or(want.len());
            let rest: Vec<Entry> = it.map(|e| e.unwrap()).collect();
            prop_assert_eq!(&rest[..], &want[first..]);
        }

        #[test]
        fn decoding_garbage_never_panics(
            bytes in proptest::collection::vec(any::<u8>(), 0..200),
            key in proptest::collection::vec(any::<u8>(), 0..4),
        ) {
            if let Ok(block) = Block::decode(Bytes::from(bytes), 0) {
                for e in block.iter() {
                    if e.is_err() { break; }
                }
                let mut it = block.iter();
                if it.seek(&key, 5).is_ok() {
                    for e in it {
                        if e.is_err() { break; }
                    }
                }
            }
        }

        /// Found by the `index` fuzz target: an entry's error offset in the file,
        /// `file_offset + offset`, overflowed for a block placed near `u64::MAX`.
        #[test]
        fn a_block_placed_past_the_largest_file_offset_is_corrupt(back in 0u64..64) {
            let data = Bytes::from(build(&entries(3)).data.to_vec());
            let len = data.len() as u64;
            let placed = Block::decode(data.clone(), u64::MAX - back);
            prop_assert_eq!(placed.is_ok(), back >= len);
            if let Ok(block) = placed {
                prop_assert_eq!(block.iter().count(), 9);
            }
            let mut damaged = data.to_vec();
            damaged[0] = 0x7f; // `shared` past the (empty) previous key
            if let Ok(block) = Block::decode(Bytes::from(damaged), u64::MAX - len) {
                let offset = block.iter().next().and_then(Result::err).map(|e| e.offset);
                prop_assert_eq!(offset, Some(u64::MAX - len));
            }
        }

        #[test]
        fn damaged_blocks_never_panic(index in any::<prop::sample::Index>(), byte in any::<u8>()) {
            let mut b = BlockBuilder::new();
            for e in entries(20) {
                b.add(&e.key, e.seqno, e.kind, &e.value);
            }
            let mut data = b.finish();
            let i = index.index(data.len());
            data[i] = byte;
            if let Ok(block) = Block::decode(Bytes::from(data), 0) {
                let _ = block.iter().take_while(|e| e.is_ok()).count();
                let _ = block.iter().seek(b"key00007", 17);
            }
        }
    }
}
