//! [`VersionEdit`]: one change to the set of live tables and counters, as recorded in
//! the manifest log.
//!
//! # Encoding
//! An edit is a sequence of tagged fields, each a varint tag followed by its value;
//! every field is optional and a field may appear in any order:
//! ```text
//! tag 1 db_id             16 bytes (uuid, big-endian form)
//! tag 2 log_number        varint
//! tag 3 last_wal          varint
//! tag 4 next_file_number  varint
//! tag 5 last_seqno        varint
//! tag 6 added table       varint level, varint number, varint size,
//!                         varint len + smallest key, varint len + largest key,
//!                         varint min_seqno, varint max_seqno
//! tag 7 removed table     varint level, varint number
//! ```
//! Tags 1–5 appear at most once; 6 and 7 once per table. The tag values are part of
//! the file format: never change or reuse them. An unknown tag is corruption, so an
//! older binary never silently ignores a field it does not understand.
//!
//! Decoding arbitrary bytes returns an error or an edit, never panics.

use bytes::Bytes;

use crate::coding::{Decoder, put_length_prefixed, put_varint};
use crate::error::Corruption;
use crate::key::{MAX_SEQNO, SeqNo};

/// Field tags. Part of the file format: never change or reuse.
const TAG_DB_ID: u64 = 1;
const TAG_LOG_NUMBER: u64 = 2;
const TAG_LAST_WAL: u64 = 3;
const TAG_NEXT_FILE_NUMBER: u64 = 4;
const TAG_LAST_SEQNO: u64 = 5;
const TAG_ADDED_TABLE: u64 = 6;
const TAG_REMOVED_TABLE: u64 = 7;

/// What the manifest records about one SSTable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableMeta {
    /// The table's file number.
    pub number: u64,
    /// The level it lives in.
    pub level: u32,
    /// File size in bytes.
    pub size: u64,
    /// Smallest user key in the table.
    pub smallest: Bytes,
    /// Largest user key in the table.
    pub largest: Bytes,
    /// Smallest seqno of any entry in the table.
    pub min_seqno: SeqNo,
    /// Largest seqno of any entry in the table.
    pub max_seqno: SeqNo,
}

/// One change to the manifest state; `None` fields are left unchanged.
///
/// Applying an edit removes the tables in `removed`, then adds those in `added`, so an
/// edit may move a table between levels by removing and re-adding its number.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VersionEdit {
    /// The database's identity (set once, by the first edit).
    pub db_id: Option<uuid::Uuid>,
    /// The oldest WAL segment still needed: older ones are fully flushed.
    pub log_number: Option<u64>,
    /// The newest WAL segment created.
    pub last_wal: Option<u64>,
    /// The next unused file number.
    pub next_file_number: Option<u64>,
    /// The highest seqno in any table.
    pub last_seqno: Option<SeqNo>,
    /// Tables added.
    pub added: Vec<TableMeta>,
    /// Tables removed, as `(level, number)`.
    pub removed: Vec<(u32, u64)>,
}

impl VersionEdit {
    /// Encodes the edit (see the module documentation).
    pub fn encode(&self) -> Vec<u8> {
        let mut buf = Vec::new();
        if let Some(id) = self.db_id {
            put_varint(&mut buf, TAG_DB_ID);
            buf.extend_from_slice(id.as_bytes());
        }
        for (tag, value) in [
            (TAG_LOG_NUMBER, self.log_number),
            (TAG_LAST_WAL, self.last_wal),
            (TAG_NEXT_FILE_NUMBER, self.next_file_number),
            (TAG_LAST_SEQNO, self.last_seqno),
        ] {
            if let Some(value) = value {
                put_varint(&mut buf, tag);
                put_varint(&mut buf, value);
            }
        }
        for table in &self.added {
            put_varint(&mut buf, TAG_ADDED_TABLE);
            put_varint(&mut buf, u64::from(table.level));
            put_varint(&mut buf, table.number);
            put_varint(&mut buf, table.size);
            put_length_prefixed(&mut buf, &table.smallest);
            put_length_prefixed(&mut buf, &table.largest);
            put_varint(&mut buf, table.min_seqno);
            put_varint(&mut buf, table.max_seqno);
        }
        for &(level, number) in &self.removed {
            put_varint(&mut buf, TAG_REMOVED_TABLE);
            put_varint(&mut buf, u64::from(level));
            put_varint(&mut buf, number);
        }
        buf
    }

    /// Decodes an edit; offsets in the error are relative to the start of `bytes`.
    pub fn decode(bytes: &[u8]) -> Result<VersionEdit, Corruption> {
        let mut d = Decoder::new(bytes);
        let mut edit = VersionEdit::default();
        while !d.is_empty() {
            let at = d.position() as u64;
            let field = |what: &str| Corruption::new(at, format!("version edit: bad {what}"));
            let tag = d.varint().ok_or_else(|| field("field tag"))?;
            match tag {
                TAG_DB_ID => {
                    let raw = d.bytes(16).ok_or_else(|| field("db_id"))?;
                    let id = uuid::Uuid::from_slice(raw).map_err(|_| field("db_id"))?;
                    set_once(&mut edit.db_id, id, at, "db_id")?;
                }
                TAG_LOG_NUMBER => {
                    let v = d.varint().ok_or_else(|| field("log_number"))?;
                    set_once(&mut edit.log_number, v, at, "log_number")?;
                }
                TAG_LAST_WAL => {
                    let v = d.varint().ok_or_else(|| field("last_wal"))?;
                    set_once(&mut edit.last_wal, v, at, "last_wal")?;
                }
                TAG_NEXT_FILE_NUMBER => {
                    let v = d.varint().ok_or_else(|| field("next_file_number"))?;
                    set_once(&mut edit.next_file_number, v, at, "next_file_number")?;
                }
                TAG_LAST_SEQNO => {
                    let v = seqno(&mut d).ok_or_else(|| field("last_seqno"))?;
                    set_once(&mut edit.last_seqno, v, at, "last_seqno")?;
                }
                TAG_ADDED_TABLE => {
                    edit.added.push(decode_table(&mut d).ok_or_else(|| field("added table"))?);
                }
                TAG_REMOVED_TABLE => {
                    let level = level(&mut d).ok_or_else(|| field("removed table"))?;
                    let number = d.varint().ok_or_else(|| field("removed table"))?;
                    edit.removed.push((level, number));
                }
                _ => return Err(Corruption::new(at, format!("version edit: unknown tag {tag}"))),
            }
        }
        Ok(edit)
    }
}

fn set_once<T>(slot: &mut Option<T>, value: T, at: u64, what: &str) -> Result<(), Corruption> {
    if slot.replace(value).is_some() {
        return Err(Corruption::new(at, format!("version edit: {what} appears twice")));
    }
    Ok(())
}

fn level(d: &mut Decoder<'_>) -> Option<u32> {
    u32::try_from(d.varint()?).ok()
}

fn seqno(d: &mut Decoder<'_>) -> Option<SeqNo> {
    d.varint().filter(|&s| s <= MAX_SEQNO)
}

fn decode_table(d: &mut Decoder<'_>) -> Option<TableMeta> {
    Some(TableMeta {
        level: level(d)?,
        number: d.varint()?,
        size: d.varint()?,
        smallest: Bytes::copy_from_slice(d.length_prefixed()?),
        largest: Bytes::copy_from_slice(d.length_prefixed()?),
        min_seqno: seqno(d)?,
        max_seqno: seqno(d)?,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use proptest::prelude::*;

    use super::*;

    pub(crate) fn table(number: u64, level: u32) -> TableMeta {
        TableMeta {
            number,
            level,
            size: 1000 + number,
            smallest: Bytes::from(format!("a{number}")),
            largest: Bytes::from(format!("z{number}")),
            min_seqno: number,
            max_seqno: number + 10,
        }
    }

    fn arb_table() -> impl Strategy<Value = TableMeta> {
        (
            any::<u64>(),
            any::<u32>(),
            any::<u64>(),
            proptest::collection::vec(any::<u8>(), 0..16),
            proptest::collection::vec(any::<u8>(), 0..16),
            0..=MAX_SEQNO,
            0..=MAX_SEQNO,
        )
            .prop_map(|(number, level, size, smallest, largest, min_seqno, max_seqno)| {
                TableMeta {
                    number,
                    level,
                    size,
                    smallest: smallest.into(),
                    largest: largest.into(),
                    min_seqno,
                    max_seqno,
                }
            })
    }

    fn arb_edit() -> impl Strategy<Value = VersionEdit> {
        (
            proptest::option::of(any::<u128>()),
            proptest::option::of(any::<u64>()),
            proptest::option::of(any::<u64>()),
            proptest::option::of(any::<u64>()),
            proptest::option::of(0..=MAX_SEQNO),
            proptest::collection::vec(arb_table(), 0..4),
            proptest::collection::vec((any::<u32>(), any::<u64>()), 0..4),
        )
            .prop_map(
                |(id, log_number, last_wal, next_file_number, last_seqno, added, removed)| {
                    VersionEdit {
                        db_id: id.map(uuid::Uuid::from_u128),
                        log_number,
                        last_wal,
                        next_file_number,
                        last_seqno,
                        added,
                        removed,
                    }
                },
            )
    }

    #[test]
    fn empty_edit_encodes_to_nothing() {
        assert!(VersionEdit::default().encode().is_empty());
        assert_eq!(VersionEdit::decode(&[]).unwrap(), VersionEdit::default());
    }

    #[test]
    fn unknown_tag_is_corruption() {
        let mut bytes = VersionEdit { log_number: Some(3), ..Default::default() }.encode();
        let at = bytes.len() as u64;
        bytes.push(99);
        assert_eq!(VersionEdit::decode(&bytes).unwrap_err().offset, at);
    }

    #[test]
    fn repeated_singular_field_is_corruption() {
        let mut bytes = VersionEdit { last_wal: Some(3), ..Default::default() }.encode();
        bytes.extend(VersionEdit { last_wal: Some(4), ..Default::default() }.encode());
        assert!(VersionEdit::decode(&bytes).is_err());
    }

    #[test]
    fn truncated_edit_is_corruption() {
        let edit = VersionEdit { added: vec![table(5, 1)], ..Default::default() };
        let bytes = edit.encode();
        for cut in 1..bytes.len() {
            assert!(VersionEdit::decode(&bytes[..cut]).is_err(), "cut at {cut}");
        }
    }

    #[test]
    fn out_of_range_level_or_seqno_is_corruption() {
        let mut bytes = Vec::new();
        put_varint(&mut bytes, TAG_REMOVED_TABLE);
        put_varint(&mut bytes, u64::from(u32::MAX) + 1);
        put_varint(&mut bytes, 1);
        assert!(VersionEdit::decode(&bytes).is_err());
        let mut bytes = Vec::new();
        put_varint(&mut bytes, TAG_LAST_SEQNO);
        put_varint(&mut bytes, MAX_SEQNO + 1);
        assert!(VersionEdit::decode(&bytes).is_err());
    }

    proptest! {
        #[test]
        fn edits_round_trip(edit in arb_edit()) {
            prop_assert_eq!(VersionEdit::decode(&edit.encode()).unwrap(), edit);
        }

        #[test]
        fn decoding_arbitrary_bytes_never_panics(
            bytes in proptest::collection::vec(any::<u8>(), 0..128),
        ) {
            if let Ok(edit) = VersionEdit::decode(&bytes) {
                // Whatever decodes re-encodes to something that decodes the same.
                prop_assert_eq!(VersionEdit::decode(&edit.encode()).unwrap(), edit);
            }
        }
    }
}
