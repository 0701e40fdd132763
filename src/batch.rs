//! Atomic write batches and their encoding, which is also the WAL record payload.
//!
//! A batch keeps its operations already encoded, behind room for the group header,
//! so committing a group of batches is one copy of each batch into the group's WAL
//! record, and a group of one batch handed over by value is no copy at all: the
//! batch's buffer becomes the record payload (for a large value, the difference
//! between one and two copies of it in memory).
//!
//! # Layout
//! ```text
//! WAL record payload (one commit group):
//!   base_seqno u64 LE | count u32 LE | op * count
//! op:
//!   tag u8 | key_len varint | key | (value_len varint | value)   tag = Put (1)
//!   tag u8 | key_len varint | key                                tag = Delete (0)
//!   tag u8 | start_len varint | start | end_len varint | end     tag = RangeDelete (2)
//! ```
//! Operation `i` of the group gets seqno `base_seqno + i`. Tags are part of the WAL
//! format: never change.

use std::borrow::Cow;

use bytes::Bytes;

use crate::coding::{Decoder, put_length_prefixed};
use crate::error::{Error, Result};
use crate::key::{MAX_KEY_SIZE, MAX_VALUE_SIZE, SeqNo, ValueKind};

const TAG_DELETE: u8 = 0;
const TAG_PUT: u8 = 1;
const TAG_RANGE_DELETE: u8 = 2;

/// Bytes of the group header: base seqno and count.
pub(crate) const GROUP_HEADER_LEN: usize = 12;

/// The largest encoded batch accepted (512 MiB): two of them always fit in one WAL
/// record (at most 1 GiB), so a commit group never has to split a batch.
pub const MAX_BATCH_SIZE: usize = 512 << 20;

/// A commit group stops taking batches at this size: a WAL record is at most 1 GiB.
pub(crate) const MAX_GROUP_SIZE: usize = crate::log_record::MAX_RECORD_SIZE - GROUP_HEADER_LEN;

/// A set of writes applied atomically by [`Db::write`](crate::Db::write): after a
/// crash, either all of them are there or none.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WriteBatch {
    /// Empty, or [`GROUP_HEADER_LEN`] placeholder bytes followed by the encoded
    /// operations: the layout of a group payload, so a group can take it whole.
    rep: Vec<u8>,
    count: u32,
    /// Sum of the key and value (or range end) lengths: the user's bytes, the
    /// denominator of write amplification.
    user_bytes: u64,
}

impl WriteBatch {
    /// An empty batch.
    pub fn new() -> WriteBatch {
        WriteBatch::default()
    }

    /// An empty batch with room for `bytes` of encoded operations (about the sum of
    /// key and value lengths plus a few bytes per operation).
    pub fn with_capacity(bytes: usize) -> WriteBatch {
        WriteBatch { rep: Vec::with_capacity(GROUP_HEADER_LEN + bytes), count: 0, user_bytes: 0 }
    }

    /// Sets `key` to `value`.
    ///
    /// `Error::InvalidArgument` if the key exceeds 64 KiB or the value 256 MiB
    /// ([`MAX_KEY_SIZE`], [`MAX_VALUE_SIZE`]); the batch is then unchanged.
    pub fn put(&mut self, key: impl AsRef<[u8]>, value: impl AsRef<[u8]>) -> Result<&mut Self> {
        let (key, value) = (key.as_ref(), value.as_ref());
        check_key(key)?;
        if value.len() > MAX_VALUE_SIZE {
            return Err(Error::invalid(format!(
                "value of {} bytes exceeds the limit of {MAX_VALUE_SIZE}",
                value.len()
            )));
        }
        self.push(TAG_PUT, key, Some(value))
    }

    /// Deletes `key`.
    pub fn delete(&mut self, key: impl AsRef<[u8]>) -> Result<&mut Self> {
        let key = key.as_ref();
        check_key(key)?;
        self.push(TAG_DELETE, key, None)
    }

    /// Deletes every key in `[start, end)`. `start > end` is `InvalidArgument`;
    /// `start == end` deletes nothing and adds nothing.
    pub fn delete_range(
        &mut self,
        start: impl AsRef<[u8]>,
        end: impl AsRef<[u8]>,
    ) -> Result<&mut Self> {
        let (start, end) = (start.as_ref(), end.as_ref());
        check_key(start)?;
        check_key(end)?;
        if start > end {
            return Err(Error::invalid("delete_range start is after its end"));
        }
        if start == end {
            return Ok(self);
        }
        self.push(TAG_RANGE_DELETE, start, Some(end))
    }

    fn push(&mut self, tag: u8, key: &[u8], second: Option<&[u8]>) -> Result<&mut Self> {
        if self.count == u32::MAX {
            return Err(Error::invalid("a batch holds at most 2^32 - 1 operations"));
        }
        let added = 1 + 20 + key.len() + second.map_or(0, <[u8]>::len);
        if self.encoded_size() + added > MAX_BATCH_SIZE {
            return Err(Error::invalid(format!(
                "a batch holds at most {MAX_BATCH_SIZE} bytes of encoded operations"
            )));
        }
        if self.rep.is_empty() {
            self.rep.resize(GROUP_HEADER_LEN, 0);
        }
        self.rep.push(tag);
        put_length_prefixed(&mut self.rep, key);
        if let Some(second) = second {
            put_length_prefixed(&mut self.rep, second);
        }
        self.count += 1;
        self.user_bytes += (key.len() + second.map_or(0, <[u8]>::len)) as u64;
        Ok(self)
    }

    /// Number of operations.
    pub fn len(&self) -> usize {
        self.count as usize
    }

    /// True if the batch holds no operation.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Removes every operation.
    pub fn clear(&mut self) {
        self.rep.clear();
        self.count = 0;
        self.user_bytes = 0;
    }

    /// Approximate bytes the batch will occupy in the WAL.
    pub fn encoded_size(&self) -> usize {
        self.encoded_ops().len()
    }

    pub(crate) fn encoded_ops(&self) -> &[u8] {
        self.rep.get(GROUP_HEADER_LEN..).unwrap_or_default()
    }

    pub(crate) fn count(&self) -> u32 {
        self.count
    }
}

/// A batch handed over by value: the write path may take its buffer.
impl From<WriteBatch> for Cow<'_, WriteBatch> {
    fn from(batch: WriteBatch) -> Self {
        Cow::Owned(batch)
    }
}

/// A borrowed batch: the write path copies it.
impl<'a> From<&'a WriteBatch> for Cow<'a, WriteBatch> {
    fn from(batch: &'a WriteBatch) -> Self {
        Cow::Borrowed(batch)
    }
}

fn check_key(key: &[u8]) -> Result<()> {
    if key.len() > MAX_KEY_SIZE {
        return Err(Error::invalid(format!(
            "key of {} bytes exceeds the limit of {MAX_KEY_SIZE}",
            key.len()
        )));
    }
    Ok(())
}

/// One decoded operation, with its seqno; the byte fields slice the record buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BatchOp {
    /// A put or a delete (with an empty value), as the memtable stores it.
    Point {
        /// The user key.
        key: Bytes,
        /// Put or delete.
        kind: ValueKind,
        /// The value (empty for a delete).
        value: Bytes,
    },
    /// A deletion of every key in `[start, end)`.
    RangeDelete {
        /// First key deleted.
        start: Bytes,
        /// First key not deleted.
        end: Bytes,
    },
}

/// A commit group's WAL payload being assembled.
#[derive(Debug, Default)]
pub(crate) struct GroupBuilder {
    buf: Vec<u8>,
    count: u32,
    user_bytes: u64,
}

impl GroupBuilder {
    /// An empty group; it allocates when the first batch joins.
    pub(crate) fn new() -> GroupBuilder {
        GroupBuilder { buf: Vec::new(), count: 0, user_bytes: 0 }
    }

    /// Appends a batch; `false` (and nothing appended) if the count would overflow.
    /// The first batch of a group, if owned, becomes the group's buffer uncopied.
    pub(crate) fn append(&mut self, batch: Cow<'_, WriteBatch>) -> bool {
        let Some(count) = self.count.checked_add(batch.count()) else { return false };
        self.count = count;
        self.user_bytes += batch.user_bytes;
        match batch {
            Cow::Owned(batch) if self.buf.is_empty() => self.buf = batch.rep,
            batch => {
                if self.buf.is_empty() {
                    self.buf.reserve_exact(GROUP_HEADER_LEN + batch.encoded_ops().len());
                    self.buf.resize(GROUP_HEADER_LEN, 0);
                }
                self.buf.extend_from_slice(batch.encoded_ops());
            }
        }
        true
    }

    pub(crate) fn count(&self) -> u32 {
        self.count
    }

    /// Key and value bytes of the group's batches.
    pub(crate) fn user_bytes(&self) -> u64 {
        self.user_bytes
    }

    /// True if `batch` can join without the group exceeding [`MAX_GROUP_SIZE`].
    pub(crate) fn has_room_for(&self, batch: &WriteBatch) -> bool {
        self.buf.len() + batch.encoded_ops().len() <= MAX_GROUP_SIZE
    }

    /// Stamps the base seqno and returns the finished payload.
    pub(crate) fn finish(mut self, base_seqno: SeqNo) -> Vec<u8> {
        if self.buf.is_empty() {
            self.buf.resize(GROUP_HEADER_LEN, 0);
        }
        self.buf[0..8].copy_from_slice(&base_seqno.to_le_bytes());
        self.buf[8..12].copy_from_slice(&self.count.to_le_bytes());
        self.buf
    }
}

/// Decodes a group payload lazily into `(seqno, op)` pairs whose byte fields slice
/// `payload` (no copies, no allocation). A decoding error carries the offset within
/// the payload of the first undecodable byte and ends the iteration.
pub(crate) fn decode_group(payload: &Bytes) -> Result<GroupOps<'_>, usize> {
    let mut decoder = Decoder::new(payload);
    let (Some(base), Some(count)) = (decoder.u64(), decoder.u32()) else { return Err(0) };
    Ok(GroupOps { payload, decoder, next_seqno: base, remaining: count, failed: false })
}

/// Decodes a whole WAL record payload (one commit group, see the module docs) into
/// its operations and their seqnos, for tools that inspect WAL segments.
///
/// `Err(offset)` gives the offset within `payload` of the first undecodable byte;
/// nothing is returned for a payload that does not decode completely.
pub fn decode_wal_record(payload: &[u8]) -> Result<Vec<(SeqNo, BatchOp)>, usize> {
    let payload = Bytes::copy_from_slice(payload);
    decode_group(&payload)?.collect()
}

/// Iterator over the operations of a group payload; see [`decode_group`].
pub(crate) struct GroupOps<'a> {
    payload: &'a Bytes,
    decoder: Decoder<'a>,
    next_seqno: SeqNo,
    remaining: u32,
    failed: bool,
}

impl GroupOps<'_> {
    fn slice(&mut self) -> Option<Bytes> {
        let bytes = self.decoder.length_prefixed()?;
        let end = self.decoder.position();
        Some(self.payload.slice(end - bytes.len()..end))
    }

    fn op(&mut self) -> Option<BatchOp> {
        match self.decoder.u8()? {
            TAG_PUT => Some(BatchOp::Point {
                key: self.slice()?,
                kind: ValueKind::Put,
                value: self.slice()?,
            }),
            TAG_DELETE => Some(BatchOp::Point {
                key: self.slice()?,
                kind: ValueKind::Delete,
                value: Bytes::new(),
            }),
            TAG_RANGE_DELETE => {
                Some(BatchOp::RangeDelete { start: self.slice()?, end: self.slice()? })
            }
            _ => None,
        }
    }
}

impl Iterator for GroupOps<'_> {
    type Item = Result<(SeqNo, BatchOp), usize>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        if self.remaining == 0 {
            if self.decoder.is_empty() {
                return None;
            }
            self.failed = true;
            return Some(Err(self.decoder.position()));
        }
        let at = self.decoder.position();
        let seqno = self.next_seqno;
        match (self.op(), self.next_seqno.checked_add(1)) {
            (Some(op), Some(next)) => {
                self.next_seqno = next;
                self.remaining -= 1;
                Some(Ok((seqno, op)))
            }
            _ => {
                self.failed = true;
                Some(Err(at))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn group_round_trips() {
        let mut a = WriteBatch::new();
        a.put("k1", "v1").unwrap().delete("k2").unwrap();
        let mut b = WriteBatch::new();
        b.delete_range("a", "c").unwrap().put("", "").unwrap();
        let mut g = GroupBuilder::new();
        assert!(g.append((&a).into()) && g.append((&b).into()));
        let payload = Bytes::from(g.finish(41));
        let ops: Vec<_> = decode_group(&payload).unwrap().map(|op| op.unwrap()).collect();
        let b = |s: &str| Bytes::copy_from_slice(s.as_bytes());
        assert_eq!(
            ops,
            vec![
                (41, BatchOp::Point { key: b("k1"), kind: ValueKind::Put, value: b("v1") }),
                (42, BatchOp::Point { key: b("k2"), kind: ValueKind::Delete, value: b("") }),
                (43, BatchOp::RangeDelete { start: b("a"), end: b("c") }),
                (44, BatchOp::Point { key: b(""), kind: ValueKind::Put, value: b("") }),
            ]
        );
    }

    #[test]
    fn a_group_takes_the_buffer_of_its_first_batch_if_owned() {
        let mut first = WriteBatch::with_capacity(1 << 10);
        first.put("k", vec![5u8; 1 << 10]).unwrap();
        let at = first.encoded_ops().as_ptr();
        let mut second = WriteBatch::new();
        second.delete("d").unwrap();
        let mut g = GroupBuilder::new();
        assert!(g.append(first.into()));
        let alone = g.finish(3);
        assert_eq!(alone[GROUP_HEADER_LEN..].as_ptr(), at);
        // An owned batch joining a group is appended like a borrowed one.
        let mut g = GroupBuilder::new();
        assert!(g.append((&second).into()) && g.append(second.clone().into()));
        let ops = decode_wal_record(&g.finish(9)).unwrap();
        assert_eq!(ops.iter().map(|(s, _)| *s).collect::<Vec<_>>(), vec![9, 10]);
        let ops = decode_wal_record(&alone).unwrap();
        assert!(matches!(&ops[..], [(3, BatchOp::Point { key, value, .. })]
            if key == "k" && value.len() == 1 << 10));
    }

    #[test]
    fn decode_wal_record_returns_every_op_or_the_damage_offset() {
        let mut a = WriteBatch::new();
        a.put("k", "v").unwrap().delete_range("a", "b").unwrap();
        let mut g = GroupBuilder::new();
        assert!(g.append((&a).into()));
        let payload = g.finish(7);
        let ops = decode_wal_record(&payload).unwrap();
        assert_eq!(ops.iter().map(|(s, _)| *s).collect::<Vec<_>>(), vec![7, 8]);
        assert!(
            matches!(&ops[1].1, BatchOp::RangeDelete { start, end } if start == "a" && end == "b")
        );
        // A truncated payload names where decoding failed, after the header.
        assert_eq!(decode_wal_record(&payload[..payload.len() - 1]), Err(GROUP_HEADER_LEN + 5));
        assert_eq!(decode_wal_record(&payload[..4]), Err(0));
    }

    #[test]
    fn invalid_arguments_leave_the_batch_unchanged() {
        let mut batch = WriteBatch::new();
        assert!(batch.put(vec![0; MAX_KEY_SIZE + 1], "v").is_err());
        assert!(batch.delete_range("b", "a").is_err());
        batch.delete_range("a", "a").unwrap();
        assert!(batch.is_empty());
        assert_eq!(batch.encoded_size(), 0);
    }

    proptest! {
        #[test]
        fn decoding_garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let bytes = Bytes::from(bytes);
            if let Ok(ops) = decode_group(&bytes) {
                ops.for_each(drop);
            }
        }
    }
}
