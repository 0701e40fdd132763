//! Record framing for append-only logs, shared by the WAL and the manifest.
//!
//! This module knows nothing about what the payloads mean: it cuts a byte stream into
//! checksummed records and, when reading, tells a crash-torn tail apart from damage.
//!
//! # Layout
//! A log is a sequence of records, each a 13-byte header followed by the payload:
//! ```text
//! +----------------+-----------+---------+-----------------+-------------------+
//! | header_crc u32 | len u32   | type u8 | payload_crc u32 | payload (len B)   |
//! +----------------+-----------+---------+-----------------+-------------------+
//!   crc32c of the    payload     1 = full  crc32c of the
//!   next 5 bytes     length      record    payload
//! ```
//! Integers are little-endian. The header size, the type tags and the checksum
//! algorithm (CRC32C, unmasked) are part of the file format: never change them.
//! Whatever precedes the first record (a file header) belongs to the caller, which
//! passes the offset where records start to [`LogReader::new`].
//!
//! # Invariants
//! 1. [`LogWriter::add_record`] hands a record to the file in one `append`, or, for a
//!    payload above [`COPY_LIMIT`], in two: the header, then the payload itself
//!    (copying a huge payload behind its header would double its memory). Nothing is
//!    appended after a failed append (invariant 2), so either way a crash leaves at
//!    most the last record incomplete, which reads as a torn tail.
//! 2. After any I/O error a [`LogWriter`] refuses further work: the file may end in a
//!    partial record, and records appended after it would be unreadable. After a
//!    failed `sync` the page cache cannot be trusted either (see `docs/architecture.md`).
//!    The one exception is an append refused for lack of space whose partial record
//!    was cut off again ([`WritableFile::truncate`]): the file then ends where the last
//!    whole record does, exactly as before the append.
//! 3. Reading arbitrary bytes never panics, and every record returned passed both
//!    checksums.
//!
//! # How the end of a log is classified
//! Reading stops with a [`LogEnd`]:
//! - [`LogEnd::Clean`]: the data ends exactly after a record.
//! - [`LogEnd::TornTail`]: what follows the last good record is what a crash during
//!   the final append can leave behind: an incomplete header; a valid header whose
//!   payload runs past the end of the data; a payload checksum mismatch in a record
//!   that is followed by nothing but zero bytes (usually: that ends the data); a
//!   damaged header followed by nothing but zero bytes (a write torn inside the
//!   header, e.g. across a page boundary); or nothing but zero bytes (a file extended
//!   but never written).
//! - [`LogEnd::Corruption`]: anything else, e.g. a bad header checksum with non-zero
//!   bytes after the header, a bad payload checksum with more data after the record, an
//!   unknown record type or a length above [`MAX_RECORD_SIZE`]. Dropping such a record
//!   could silently lose acknowledged data, so the caller decides.

use std::io;

use crate::error::Corruption;
use crate::fs::WritableFile;

/// Bytes in a record header. Part of the file format: never change.
pub const HEADER_LEN: usize = 13;

/// Record type of a record holding one whole payload. Part of the file format: never change.
pub const FULL_RECORD: u8 = 1;

/// The largest payload a record may carry (1 GiB); larger lengths read as corruption.
pub const MAX_RECORD_SIZE: usize = 1 << 30;

/// Payloads up to this size are copied behind their header into one buffer and
/// appended at once (one system call); larger ones are appended after their header
/// without a copy. So the scratch buffer never grows beyond this.
const COPY_LIMIT: usize = 64 << 10;

/// Appends framed records to a file.
///
/// Not thread-safe by itself (`&mut self`); the owner serializes writers.
pub struct LogWriter {
    file: Box<dyn WritableFile>,
    buf: Vec<u8>,
    failed: bool,
}

impl LogWriter {
    /// Frames records onto `file`, after whatever it already holds.
    pub fn new(file: Box<dyn WritableFile>) -> Self {
        LogWriter { file, buf: Vec::new(), failed: false }
    }

    /// Appends one record holding `payload`: a single `append` call, or for a payload
    /// above [`COPY_LIMIT`] one for the header and one for the payload.
    ///
    /// Payloads above [`MAX_RECORD_SIZE`] are refused with `InvalidInput` and nothing
    /// is written. An I/O error makes this writer unusable (invariant 2), except a
    /// full disk (`StorageFull`, `QuotaExceeded`) when the file could be cut back to
    /// where the record began: then nothing of the record remains and the writer may
    /// go on once there is space.
    pub fn add_record(&mut self, payload: &[u8]) -> io::Result<()> {
        self.check_usable()?;
        if payload.len() > MAX_RECORD_SIZE {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("log record of {} bytes exceeds the maximum", payload.len()),
            ));
        }
        self.buf.clear();
        encode_header(&mut self.buf, payload);
        let start = self.file.len();
        let result = if payload.len() > COPY_LIMIT {
            self.file.append(&self.buf).and_then(|()| self.file.append(payload))
        } else {
            self.buf.extend_from_slice(payload);
            self.file.append(&self.buf)
        };
        if let Err(e) = &result {
            let taken_back =
                matches!(e.kind(), io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded)
                    && self.file.truncate(start).is_ok();
            self.failed = !taken_back;
        }
        result
    }

    /// Makes every record appended so far durable.
    pub fn sync(&mut self) -> io::Result<()> {
        self.check_usable()?;
        let result = self.file.sync();
        self.failed = result.is_err();
        result
    }

    /// Reserves space for the log to grow to `len` bytes
    /// ([`WritableFile::preallocate`]). Reserved space reads as zeros, which readers
    /// take for the end of the log. A failure changes nothing and is only returned.
    pub fn preallocate(&mut self, len: u64) -> io::Result<()> {
        self.check_usable()?;
        self.file.preallocate(len)
    }

    /// Gives back the space reserved beyond the last record, durably: the file ends
    /// where its last record does.
    pub fn trim(&mut self) -> io::Result<()> {
        self.check_usable()?;
        let result = self.file.truncate(self.file.len());
        self.failed = result.is_err();
        result
    }

    /// Bytes in the file, including anything written before this writer took it.
    pub fn len(&self) -> u64 {
        self.file.len()
    }

    /// False once an error made this writer refuse further work.
    pub fn is_usable(&self) -> bool {
        !self.failed
    }

    fn check_usable(&self) -> io::Result<()> {
        if self.failed {
            Err(io::Error::other("log writer failed earlier; the log must be reopened"))
        } else {
            Ok(())
        }
    }
}

/// Appends the header of a record carrying `payload` to `buf`.
fn encode_header(buf: &mut Vec<u8>, payload: &[u8]) {
    let mut len_type = [0u8; 5];
    // `add_record` guarantees payload.len() <= MAX_RECORD_SIZE < u32::MAX.
    len_type[..4].copy_from_slice(&(payload.len() as u32).to_le_bytes());
    len_type[4] = FULL_RECORD;
    buf.extend_from_slice(&crc32c::crc32c(&len_type).to_le_bytes());
    buf.extend_from_slice(&len_type);
    buf.extend_from_slice(&crc32c::crc32c(payload).to_le_bytes());
}

/// How reading a log ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogEnd {
    /// The data ends exactly after the last record.
    Clean,
    /// The bytes from `offset` on are the remains of an interrupted append.
    TornTail {
        /// Where the torn record starts.
        offset: u64,
    },
    /// The record at the corruption's offset is damaged and more data follows it.
    Corruption(Corruption),
}

/// One step of reading a log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogRead<'a> {
    /// A record whose checksums hold.
    Record {
        /// Where the record's header starts.
        offset: u64,
        /// The payload.
        payload: &'a [u8],
    },
    /// No more records; repeated on every later call.
    End(LogEnd),
}

/// Reads framed records from a log held in memory.
#[derive(Debug, Clone)]
pub struct LogReader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> LogReader<'a> {
    /// Reads the records of `data` that start at byte `start` (after any file header).
    /// Offsets reported are positions in `data`.
    pub fn new(data: &'a [u8], start: usize) -> Self {
        LogReader { data, pos: start }
    }

    /// Offset just past the last record returned (the chunked reader's tests compare it).
    #[cfg(test)]
    pub fn position(&self) -> u64 {
        self.pos as u64
    }

    /// The next record, or how the log ends.
    pub fn read(&mut self) -> LogRead<'a> {
        match self.next_record() {
            Ok((payload, next)) => {
                let offset = self.pos as u64;
                self.pos = next;
                LogRead::Record { offset, payload }
            }
            Err(end) => LogRead::End(end),
        }
    }

    fn next_record(&self) -> Result<(&'a [u8], usize), LogEnd> {
        let offset = self.pos as u64;
        let Some(rest) = self.data.get(self.pos..) else {
            return Err(LogEnd::Corruption(Corruption::new(offset, "log starts past its end")));
        };
        if rest.is_empty() {
            return Err(LogEnd::Clean);
        }
        let torn = LogEnd::TornTail { offset };
        // A damaged header with nothing but zeros after it is a write torn inside the
        // header (e.g. across a page boundary): no later record can be behind it.
        let damaged = |message: &str| {
            if all_zero(rest.get(HEADER_LEN..).unwrap_or_default()) {
                LogEnd::TornTail { offset }
            } else {
                LogEnd::Corruption(Corruption::new(offset, message))
            }
        };
        let Some(header) = rest.get(..HEADER_LEN) else {
            return Err(torn);
        };
        let header_crc = u32_at(header, 0);
        let len_type = &header[4..9];
        let payload_crc = u32_at(header, 9);
        if crc32c::crc32c(len_type) != header_crc {
            return Err(damaged("bad record header checksum"));
        }
        if header[8] != FULL_RECORD {
            return Err(damaged("unknown record type"));
        }
        let len = u32_at(header, 4) as usize;
        if len > MAX_RECORD_SIZE {
            return Err(damaged("record length exceeds the maximum"));
        }
        let end = HEADER_LEN + len;
        let Some(payload) = rest.get(HEADER_LEN..end) else {
            return Err(torn);
        };
        if crc32c::crc32c(payload) != payload_crc {
            let after = rest.get(end..).unwrap_or_default();
            return Err(if all_zero(after) {
                torn
            } else {
                LogEnd::Corruption(Corruption::new(offset, "bad record payload checksum"))
            });
        }
        Ok((payload, self.pos + end))
    }
}

fn all_zero(bytes: &[u8]) -> bool {
    bytes.iter().all(|&b| b == 0)
}

/// Reads a little-endian `u32` at `at`; callers pass a slice long enough.
fn u32_at(bytes: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    if let Some(b) = bytes.get(at..at + 4) {
        a.copy_from_slice(b);
    }
    u32::from_le_bytes(a)
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use proptest::prelude::*;

    use super::*;

    /// An in-memory file whose bytes the test can inspect.
    #[derive(Clone, Default)]
    struct MemFile(Arc<Mutex<Vec<u8>>>);

    impl WritableFile for MemFile {
        fn append(&mut self, data: &[u8]) -> io::Result<()> {
            self.0.lock().unwrap().extend_from_slice(data);
            Ok(())
        }
        fn sync(&mut self) -> io::Result<()> {
            Ok(())
        }
        fn len(&self) -> u64 {
            self.0.lock().unwrap().len() as u64
        }
    }

    fn encode(payloads: &[&[u8]]) -> Vec<u8> {
        let file = MemFile::default();
        let mut writer = LogWriter::new(Box::new(file.clone()));
        for p in payloads {
            writer.add_record(p).unwrap();
        }
        writer.sync().unwrap();
        assert_eq!(writer.len(), file.len());
        file.0.lock().unwrap().clone()
    }

    /// Every record, then the end.
    fn read_all(data: &[u8]) -> (Vec<Vec<u8>>, LogEnd) {
        let mut reader = LogReader::new(data, 0);
        let mut out = Vec::new();
        loop {
            match reader.read() {
                LogRead::Record { payload, .. } => out.push(payload.to_vec()),
                LogRead::End(end) => {
                    assert_eq!(reader.read(), LogRead::End(end.clone()), "end repeats");
                    return (out, end);
                }
            }
        }
    }

    fn corruption_at(end: &LogEnd) -> Option<u64> {
        match end {
            LogEnd::Corruption(c) => Some(c.offset),
            _ => None,
        }
    }

    const PAYLOADS: [&[u8]; 4] = [b"first", b"", b"third record", b"fourth"];

    /// Offset of record `i` of [`PAYLOADS`].
    fn record_offset(i: usize) -> usize {
        PAYLOADS[..i].iter().map(|p| HEADER_LEN + p.len()).sum()
    }

    #[test]
    fn records_read_back_in_order_at_their_offsets_and_the_log_ends_clean() {
        let data = encode(&PAYLOADS);
        let mut reader = LogReader::new(&data, 0);
        for (i, p) in PAYLOADS.iter().enumerate() {
            assert_eq!(
                reader.read(),
                LogRead::Record { offset: record_offset(i) as u64, payload: p }
            );
        }
        assert_eq!(reader.read(), LogRead::End(LogEnd::Clean));
        assert_eq!(reader.pos, data.len());
    }

    #[test]
    fn a_large_payload_is_appended_without_a_copy() {
        /// Where each appended slice lived (address, length), and the bytes.
        type Log = (Vec<(usize, usize)>, Vec<u8>);
        #[derive(Default)]
        struct Appends(Arc<Mutex<Log>>);
        impl WritableFile for Appends {
            fn append(&mut self, data: &[u8]) -> io::Result<()> {
                let mut inner = self.0.lock().unwrap();
                inner.0.push((data.as_ptr() as usize, data.len()));
                inner.1.extend_from_slice(data);
                Ok(())
            }
            fn sync(&mut self) -> io::Result<()> {
                Ok(())
            }
            fn len(&self) -> u64 {
                self.0.lock().unwrap().1.len() as u64
            }
        }
        let file = Appends::default();
        let appends = file.0.clone();
        let mut writer = LogWriter::new(Box::new(file));
        let large = vec![7u8; COPY_LIMIT + 1];
        writer.add_record(b"small").unwrap();
        writer.add_record(&large).unwrap();
        let (calls, data) = &*appends.lock().unwrap();
        // The small record in one append, the large one as header + the caller's bytes.
        assert_eq!(calls.len(), 3);
        assert_eq!(calls[1].1, HEADER_LEN);
        assert_eq!(calls[2], (large.as_ptr() as usize, large.len()));
        let (records, end) = read_all(data);
        assert_eq!(records, vec![b"small".to_vec(), large.clone()]);
        assert_eq!(end, LogEnd::Clean);
    }

    #[test]
    fn empty_log_is_clean() {
        assert_eq!(read_all(&[]), (vec![], LogEnd::Clean));
    }

    #[test]
    fn reading_starts_at_the_given_offset() {
        let mut data = b"file header".to_vec();
        data.extend(encode(&[b"x"]));
        let mut reader = LogReader::new(&data, 11);
        assert_eq!(reader.read(), LogRead::Record { offset: 11, payload: b"x" });
        assert_eq!(reader.read(), LogRead::End(LogEnd::Clean));
        let mut past = LogReader::new(&data, data.len() + 1);
        assert!(matches!(past.read(), LogRead::End(LogEnd::Corruption(_))));
    }

    #[test]
    fn truncation_anywhere_in_the_last_record_is_a_torn_tail() {
        let data = encode(&PAYLOADS);
        let last = record_offset(3);
        for cut in last + 1..data.len() {
            let (records, end) = read_all(&data[..cut]);
            assert_eq!(records.len(), 3, "cut at {cut}");
            assert_eq!(end, LogEnd::TornTail { offset: last as u64 }, "cut at {cut}");
        }
    }

    #[test]
    fn zero_filled_tail_is_torn() {
        let mut data = encode(&PAYLOADS);
        data.extend([0u8; 100]);
        let (records, end) = read_all(&data);
        assert_eq!(records.len(), 4);
        assert_eq!(end, LogEnd::TornTail { offset: record_offset(4) as u64 });
        // Only zeros after the header start.
        let (records, end) = read_all(&[0u8; 5]);
        assert_eq!((records.len(), end), (0, LogEnd::TornTail { offset: 0 }));
    }

    #[test]
    fn header_torn_before_zeros_is_torn() {
        // The last record's header is half written, the rest of the page never was.
        let mut data = encode(&PAYLOADS[..2]);
        let last = record_offset(2);
        let mut tail = encode(&PAYLOADS[2..3]);
        for b in &mut tail[6..] {
            *b = 0;
        }
        data.extend(tail);
        let (records, end) = read_all(&data);
        assert_eq!(records.len(), 2);
        assert_eq!(end, LogEnd::TornTail { offset: last as u64 });
    }

    #[test]
    fn bad_header_checksum_with_data_after_is_corruption() {
        let mut data = encode(&PAYLOADS);
        data[record_offset(1)] ^= 1;
        let (records, end) = read_all(&data);
        assert_eq!(records.len(), 1);
        assert_eq!(corruption_at(&end), Some(record_offset(1) as u64));
    }

    #[test]
    fn bad_length_is_corruption() {
        let mut data = encode(&PAYLOADS);
        // Changing the length breaks the header checksum.
        data[record_offset(2) + 4] ^= 0x10;
        let (records, end) = read_all(&data);
        assert_eq!(records.len(), 2);
        assert_eq!(corruption_at(&end), Some(record_offset(2) as u64));
    }

    #[test]
    fn oversized_length_with_valid_header_checksum_is_corruption() {
        let mut data = Vec::new();
        let mut len_type = [0u8; 5];
        len_type[..4].copy_from_slice(&(MAX_RECORD_SIZE as u32 + 1).to_le_bytes());
        len_type[4] = FULL_RECORD;
        data.extend(crc32c::crc32c(&len_type).to_le_bytes());
        data.extend(len_type);
        data.extend([1u8; 20]);
        assert_eq!(corruption_at(&read_all(&data).1), Some(0));
    }

    #[test]
    fn unknown_record_type_is_corruption() {
        let mut data = encode(&[b"abc"]);
        data[8] = 2;
        let crc = crc32c::crc32c(&data[4..9]);
        data[..4].copy_from_slice(&crc.to_le_bytes());
        assert_eq!(corruption_at(&read_all(&data).1), Some(0));
    }

    #[test]
    fn bad_payload_checksum_in_the_middle_is_corruption() {
        let mut data = encode(&PAYLOADS);
        data[record_offset(2) + HEADER_LEN + 3] ^= 0x40;
        let (records, end) = read_all(&data);
        assert_eq!(records.len(), 2);
        assert_eq!(corruption_at(&end), Some(record_offset(2) as u64));
    }

    #[test]
    fn bad_payload_checksum_at_the_tail_is_torn() {
        let mut data = encode(&PAYLOADS);
        let last = data.len() - 1;
        data[last] ^= 0x40;
        let (records, end) = read_all(&data);
        assert_eq!(records.len(), 3);
        assert_eq!(end, LogEnd::TornTail { offset: record_offset(3) as u64 });
    }

    #[test]
    fn payloads_past_the_maximum_are_refused() {
        struct NoFile;
        impl WritableFile for NoFile {
            fn append(&mut self, _: &[u8]) -> io::Result<()> {
                panic!("nothing may be written")
            }
            fn sync(&mut self) -> io::Result<()> {
                Ok(())
            }
            fn len(&self) -> u64 {
                0
            }
        }
        let mut writer = LogWriter::new(Box::new(NoFile));
        let big = vec![0u8; MAX_RECORD_SIZE + 1];
        let err = writer.add_record(&big).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    }

    #[test]
    fn a_failed_append_poisons_the_writer() {
        struct FailOnce(bool);
        impl WritableFile for FailOnce {
            fn append(&mut self, _: &[u8]) -> io::Result<()> {
                if std::mem::replace(&mut self.0, false) {
                    Err(io::Error::other("injected"))
                } else {
                    Ok(())
                }
            }
            fn sync(&mut self) -> io::Result<()> {
                Ok(())
            }
            fn len(&self) -> u64 {
                0
            }
        }
        let mut writer = LogWriter::new(Box::new(FailOnce(true)));
        assert!(writer.add_record(b"a").is_err());
        assert!(writer.add_record(b"b").is_err());
        assert!(writer.sync().is_err());
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(
            data in proptest::collection::vec(any::<u8>(), 0..256),
            start in 0usize..300,
        ) {
            let mut reader = LogReader::new(&data, start);
            let mut steps = 0;
            while let LogRead::Record { offset, payload } = reader.read() {
                prop_assert!(offset as usize + HEADER_LEN + payload.len() <= data.len());
                steps += 1;
                prop_assert!(steps <= data.len() / HEADER_LEN);
            }
        }

        #[test]
        fn records_round_trip_and_truncation_is_torn(
            payloads in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..40), 0..8),
            cut in any::<prop::sample::Index>(),
        ) {
            let refs: Vec<&[u8]> = payloads.iter().map(Vec::as_slice).collect();
            let data = encode(&refs);
            let (records, end) = read_all(&data);
            prop_assert_eq!(&records, &payloads);
            prop_assert_eq!(end, LogEnd::Clean);

            let cut = cut.index(data.len() + 1);
            let (records, end) = read_all(&data[..cut]);
            prop_assert!(payloads.starts_with(&records));
            let acceptable = end == LogEnd::Clean || matches!(end, LogEnd::TornTail { .. });
            prop_assert!(acceptable, "unexpected end {:?}", end);
        }
    }
}
