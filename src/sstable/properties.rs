//! Table properties: counts, key range and seqno range, stored in their own block.
//!
//! # Layout (part of the file format, never change)
//! ```text
//! entry_count varint | point_delete_count varint | range_tombstone_count varint
//! | min_seqno varint | max_seqno varint
//! | smallest_key (varint length + bytes) | largest_key (varint length + bytes)
//! | raw_key_bytes varint | raw_value_bytes varint | data_block_count varint
//! | compression tag u8 | created_at_secs varint
//! ```
//!
//! # Invariants
//! 1. `smallest_key..=largest_key` covers every point key and every range tombstone's
//!    extent. `largest_key` may therefore be a tombstone's *end*, which is exclusive:
//!    treat it as an upper bound, not as a key stored in the table.
//! 2. `min_seqno`/`max_seqno` cover point entries and range tombstones; both are 0
//!    (and both keys empty) for a table with neither.
//! 3. Decoding consumes the block exactly; anything else is corruption.

use bytes::Bytes;

use crate::coding::{Decoder, put_length_prefixed, put_varint};
use crate::error::Corruption;
use crate::key::SeqNo;
use crate::options::Compression;

/// What a table holds, summarised when it was built.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Properties {
    /// Point entries (puts and deletes).
    pub entry_count: u64,
    /// Point entries that are deletes.
    pub point_delete_count: u64,
    /// Range tombstones.
    pub range_tombstone_count: u64,
    /// Smallest seqno of any entry or tombstone.
    pub min_seqno: SeqNo,
    /// Largest seqno of any entry or tombstone.
    pub max_seqno: SeqNo,
    /// Smallest user key or tombstone start.
    pub smallest_key: Bytes,
    /// Largest user key or tombstone end (see invariant 1: may be exclusive).
    pub largest_key: Bytes,
    /// Sum of the user keys' lengths of the point entries.
    pub raw_key_bytes: u64,
    /// Sum of the values' lengths of the point entries.
    pub raw_value_bytes: u64,
    /// Data blocks in the table.
    pub data_block_count: u64,
    /// Compression the blocks were written with (blocks that did not shrink enough
    /// are stored uncompressed).
    pub compression: Compression,
    /// When the table was built, in seconds since the Unix epoch (0 if unknown).
    /// Compaction strategies derive a table's age from it.
    pub created_at_secs: u64,
}

impl Properties {
    /// The encoded block payload.
    pub fn encode(&self) -> Vec<u8> {
        let mut buf = Vec::new();
        for v in [
            self.entry_count,
            self.point_delete_count,
            self.range_tombstone_count,
            self.min_seqno,
            self.max_seqno,
        ] {
            put_varint(&mut buf, v);
        }
        put_length_prefixed(&mut buf, &self.smallest_key);
        put_length_prefixed(&mut buf, &self.largest_key);
        for v in [self.raw_key_bytes, self.raw_value_bytes, self.data_block_count] {
            put_varint(&mut buf, v);
        }
        buf.push(self.compression as u8);
        put_varint(&mut buf, self.created_at_secs);
        buf
    }

    /// Decodes a properties block read from `file_offset`.
    pub fn decode(buf: &[u8], file_offset: u64) -> Result<Properties, Corruption> {
        let mut d = Decoder::new(buf);
        let bad = |d: &Decoder<'_>, what: &str| {
            Corruption::new(file_offset, format!("bad properties: {what} at byte {}", d.position()))
        };
        let varint = |d: &mut Decoder<'_>, what| d.varint().ok_or_else(|| bad(d, what));
        let entry_count = varint(&mut d, "entry count")?;
        let point_delete_count = varint(&mut d, "delete count")?;
        let range_tombstone_count = varint(&mut d, "range tombstone count")?;
        let min_seqno = varint(&mut d, "min seqno")?;
        let max_seqno = varint(&mut d, "max seqno")?;
        let smallest_key = d.length_prefixed().ok_or_else(|| bad(&d, "smallest key"))?;
        let largest_key = d.length_prefixed().ok_or_else(|| bad(&d, "largest key"))?;
        let raw_key_bytes = varint(&mut d, "raw key bytes")?;
        let raw_value_bytes = varint(&mut d, "raw value bytes")?;
        let data_block_count = varint(&mut d, "data block count")?;
        let compression =
            d.u8().and_then(Compression::from_tag).ok_or_else(|| bad(&d, "compression"))?;
        let created_at_secs = varint(&mut d, "creation time")?;
        if !d.is_empty() {
            return Err(bad(&d, "trailing bytes"));
        }
        if min_seqno > max_seqno || point_delete_count > entry_count {
            return Err(bad(&d, "inconsistent counts"));
        }
        Ok(Properties {
            entry_count,
            point_delete_count,
            range_tombstone_count,
            min_seqno,
            max_seqno,
            smallest_key: Bytes::copy_from_slice(smallest_key),
            largest_key: Bytes::copy_from_slice(largest_key),
            raw_key_bytes,
            raw_value_bytes,
            data_block_count,
            compression,
            created_at_secs,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn properties_decode_to_themselves_and_refuse_trailing_bytes() {
        let p = Properties {
            entry_count: 1000,
            point_delete_count: 10,
            range_tombstone_count: 3,
            min_seqno: 5,
            max_seqno: 1 << 50,
            smallest_key: Bytes::from_static(b"aaa"),
            largest_key: Bytes::from_static(b"zzz"),
            raw_key_bytes: 12345,
            raw_value_bytes: 999_999,
            data_block_count: 17,
            compression: Compression::Zstd,
            created_at_secs: 1_700_000_000,
        };
        assert_eq!(Properties::decode(&p.encode(), 0).unwrap(), p);
        assert_eq!(
            Properties::decode(&Properties::default().encode(), 0).unwrap(),
            Properties::default()
        );
        let mut long = p.encode();
        long.push(0);
        assert!(Properties::decode(&long, 0).is_err());
    }

    proptest! {
        #[test]
        fn any_properties_round_trip(
            counts in proptest::array::uniform6(any::<u64>()),
            seqnos in (any::<u64>(), any::<u64>()),
            keys in (proptest::collection::vec(any::<u8>(), 0..8), proptest::collection::vec(any::<u8>(), 0..8)),
            created_at_secs in any::<u64>(),
        ) {
            let p = Properties {
                entry_count: counts[0].max(counts[1]),
                point_delete_count: counts[0].min(counts[1]),
                range_tombstone_count: counts[2],
                min_seqno: seqnos.0.min(seqnos.1),
                max_seqno: seqnos.0.max(seqnos.1),
                smallest_key: Bytes::from(keys.0),
                largest_key: Bytes::from(keys.1),
                raw_key_bytes: counts[3],
                raw_value_bytes: counts[4],
                data_block_count: counts[5],
                compression: Compression::None,
                created_at_secs,
            };
            prop_assert_eq!(Properties::decode(&p.encode(), 0).unwrap(), p);
        }

        #[test]
        fn decoding_garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = Properties::decode(&bytes, 0);
        }
    }
}
