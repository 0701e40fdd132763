//! Reading the records of a log file in bounded chunks, so replaying a WAL segment
//! does not hold the whole segment in memory.
//!
//! # Invariants
//! 1. Records and the way the log ends are exactly what [`LogReader`] reports for the
//!    whole file read into memory (offsets relative to the file). [`LogReader`] judges
//!    the record at its position from the record's own bytes and, for a damaged one,
//!    only from whether *all* bytes after it are zero; so the window holds the whole
//!    record whenever its header is valid, and a "torn" verdict reached on the window
//!    is confirmed by scanning the rest of the file for a non-zero byte.
//! 2. Memory is bounded by the chunk size or the largest record, whichever is larger:
//!    the window holds at most one chunk, or one record that spans chunks (assembled
//!    into one buffer of that record's size).
//! 3. A payload is a [`Bytes`] slice of the window, never a copy: a caller that keeps
//!    it keeps (only) its window alive.

use std::io;
use std::sync::Arc;

use bytes::Bytes;

use crate::error::Corruption;
use crate::fs::RandomAccessFile;
use crate::log_record::{FULL_RECORD, HEADER_LEN, LogEnd, LogRead, LogReader, MAX_RECORD_SIZE};

/// What [`ChunkedLogReader::read`] found next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum ChunkRead {
    /// A record whose checksums hold.
    Record {
        /// Where the record's header starts in the file.
        offset: u64,
        /// The payload, a slice of the reader's window.
        payload: Bytes,
    },
    /// No more records; offsets in it are relative to the file.
    End(LogEnd),
}

/// Reads framed records from a [`RandomAccessFile`], `chunk` bytes at a time.
pub(super) struct ChunkedLogReader {
    file: Arc<dyn RandomAccessFile>,
    file_len: u64,
    chunk: usize,
    /// File bytes `[base, base + window.len())`.
    window: Bytes,
    base: u64,
    /// The next record's offset in `window`.
    pos: usize,
}

impl ChunkedLogReader {
    /// Reads the records of `file` that start at byte `start` (after any file header).
    pub(super) fn new(file: Arc<dyn RandomAccessFile>, start: u64, chunk: usize) -> Self {
        let file_len = file.len();
        ChunkedLogReader {
            file,
            file_len,
            chunk: chunk.max(1),
            window: Bytes::new(),
            base: start,
            pos: 0,
        }
    }

    /// Offset in the file just past the last record returned: where valid data ends.
    pub(super) fn position(&self) -> u64 {
        self.base + self.pos as u64
    }

    /// The next record, or how the log ends. An I/O error is the file's, not damage.
    pub(super) fn read(&mut self) -> io::Result<ChunkRead> {
        if self.position() > self.file_len {
            let offset = self.position();
            let past_end = Corruption::new(offset, "log starts past its end");
            return Ok(ChunkRead::End(LogEnd::Corruption(past_end)));
        }
        self.fill_for_next_record()?;
        let mut reader = LogReader::new(&self.window, self.pos);
        match reader.read() {
            LogRead::Record { payload, .. } => {
                let offset = self.position();
                let start = self.pos + HEADER_LEN;
                let payload = self.window.slice(start..start + payload.len());
                self.pos = start + payload.len();
                Ok(ChunkRead::Record { offset, payload })
            }
            LogRead::End(end) => {
                let at_eof = self.base + self.window.len() as u64 == self.file_len;
                let end = match end {
                    LogEnd::TornTail { offset } if !at_eof && !self.rest_is_zero()? => {
                        self.judge_before_more_data(offset)
                    }
                    end => self.in_file(end, 0),
                };
                Ok(ChunkRead::End(end))
            }
        }
    }

    /// Makes the window hold the next record whole (if its header is valid and the
    /// file holds it), or at least its header, or everything up to the end of file.
    fn fill_for_next_record(&mut self) -> io::Result<()> {
        loop {
            let available = self.window.len() - self.pos;
            let left_in_file = self.file_len - self.position();
            let needed = self.next_record_len().unwrap_or(HEADER_LEN) as u64;
            if available as u64 >= needed.min(left_in_file) {
                return Ok(());
            }
            // A new buffer rather than a reused one: payloads handed out keep the old
            // window alive. The partial record at its end is all that is copied.
            let target = needed.max(self.chunk as u64).min(left_in_file) as usize;
            let mut buf = Vec::with_capacity(target);
            buf.extend_from_slice(&self.window[self.pos..]);
            buf.resize(target, 0);
            self.file.read_exact_at(&mut buf[available..], self.position() + available as u64)?;
            self.base = self.position();
            self.pos = 0;
            self.window = Bytes::from(buf);
        }
    }

    /// The length of the record at `pos`, header included, if the window holds a valid
    /// header there (the same checks as [`LogReader`] makes before trusting a length).
    fn next_record_len(&self) -> Option<usize> {
        let header = self.window.get(self.pos..self.pos + HEADER_LEN)?;
        let stored_crc = u32::from_le_bytes(header[..4].try_into().ok()?);
        let len = u32::from_le_bytes(header[4..8].try_into().ok()?) as usize;
        (crc32c::crc32c(&header[4..9]) == stored_crc
            && header[8] == FULL_RECORD
            && len <= MAX_RECORD_SIZE)
            .then_some(HEADER_LEN + len)
    }

    /// True if every byte of the file after the window is zero.
    fn rest_is_zero(&self) -> io::Result<bool> {
        all_zero_from(&*self.file, self.base + self.window.len() as u64, self.chunk)
    }

    /// The verdict on the record at `pos` when non-zero bytes follow the window: the
    /// window holds the record whole (or its damaged header), so a non-zero byte right
    /// after the window stands for whatever follows in the file. `torn_at` is the
    /// verdict on the window alone.
    fn judge_before_more_data(&self, torn_at: u64) -> LogEnd {
        let mut data = Vec::with_capacity(self.window.len() - self.pos + 1);
        data.extend_from_slice(&self.window[self.pos..]);
        data.push(1);
        match LogReader::new(&data, 0).read() {
            LogRead::End(end) => self.in_file(end, self.pos),
            // Not reached: the same bytes failed their checksums on the window.
            LogRead::Record { .. } => self.in_file(LogEnd::TornTail { offset: torn_at }, 0),
        }
    }

    /// Makes the offsets of `end`, relative to `window[from..]`, relative to the file.
    fn in_file(&self, end: LogEnd, from: usize) -> LogEnd {
        let shift = self.base + from as u64;
        match end {
            LogEnd::Clean => LogEnd::Clean,
            LogEnd::TornTail { offset } => LogEnd::TornTail { offset: offset + shift },
            LogEnd::Corruption(mut c) => {
                c.offset += shift;
                LogEnd::Corruption(c)
            }
        }
    }
}

/// True if every byte of `file` from `offset` on is zero; reads `chunk` bytes at a time.
pub(super) fn all_zero_from(
    file: &dyn RandomAccessFile,
    mut offset: u64,
    chunk: usize,
) -> io::Result<bool> {
    let mut buf = vec![0u8; (chunk as u64).min(file.len().saturating_sub(offset)) as usize];
    while offset < file.len() {
        let n = (file.len() - offset).min(buf.len() as u64) as usize;
        file.read_exact_at(&mut buf[..n], offset)?;
        if buf[..n].iter().any(|&b| b != 0) {
            return Ok(false);
        }
        offset += n as u64;
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::fs::WritableFile;
    use crate::log_record::LogWriter;

    /// An in-memory file.
    struct MemFile(Vec<u8>);

    impl RandomAccessFile for MemFile {
        fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
            let start = offset as usize;
            let source =
                self.0.get(start..start + buf.len()).ok_or(io::ErrorKind::UnexpectedEof)?;
            buf.copy_from_slice(source);
            Ok(())
        }
        fn len(&self) -> u64 {
            self.0.len() as u64
        }
    }

    /// Collects appended bytes.
    struct Sink(Arc<parking_lot::Mutex<Vec<u8>>>);

    impl WritableFile for Sink {
        fn append(&mut self, data: &[u8]) -> io::Result<()> {
            self.0.lock().extend_from_slice(data);
            Ok(())
        }
        fn sync(&mut self) -> io::Result<()> {
            Ok(())
        }
        fn len(&self) -> u64 {
            self.0.lock().len() as u64
        }
    }

    fn encode(payloads: &[Vec<u8>]) -> Vec<u8> {
        let bytes = Arc::new(parking_lot::Mutex::new(Vec::new()));
        let mut writer = LogWriter::new(Box::new(Sink(bytes.clone())));
        for p in payloads {
            writer.add_record(p).unwrap();
        }
        bytes.lock().clone()
    }

    /// Every record and the end, read whole by `LogReader`.
    fn whole(data: &[u8], start: usize) -> (Vec<(u64, Vec<u8>)>, LogEnd, u64) {
        let mut reader = LogReader::new(data, start);
        let mut records = Vec::new();
        loop {
            match reader.read() {
                LogRead::Record { offset, payload } => records.push((offset, payload.to_vec())),
                LogRead::End(end) => return (records, end, reader.position()),
            }
        }
    }

    /// The same, read in chunks of `chunk` bytes.
    fn chunked(data: &[u8], start: usize, chunk: usize) -> (Vec<(u64, Vec<u8>)>, LogEnd, u64) {
        let file = Arc::new(MemFile(data.to_vec()));
        let mut reader = ChunkedLogReader::new(file, start as u64, chunk);
        let mut records = Vec::new();
        loop {
            match reader.read().unwrap() {
                ChunkRead::Record { offset, payload } => records.push((offset, payload.to_vec())),
                ChunkRead::End(end) => return (records, end, reader.position()),
            }
        }
    }

    #[test]
    fn damage_past_the_first_chunk_is_judged_on_the_whole_file() {
        let payloads: Vec<Vec<u8>> = (0..6).map(|i| vec![i as u8 + 1; 20]).collect();
        let clean = encode(&payloads);
        // A bad payload checksum in the second record, with zeros up to the chunk's end
        // but a non-zero byte far behind it: corruption, not a torn tail.
        let mut data = clean[..66].to_vec();
        data[33 + 13] ^= 1;
        data.extend(vec![0u8; 500]);
        data.push(7);
        assert!(matches!(whole(&data, 0).1, LogEnd::Corruption(_)));
        for chunk in [1, 13, 40, 70, 100, 1000] {
            assert_eq!(chunked(&data, 0, chunk), whole(&data, 0), "chunk {chunk}");
        }
        // The same with only zeros behind: a torn tail.
        data.pop();
        assert!(matches!(whole(&data, 0).1, LogEnd::TornTail { offset: 33 }));
        for chunk in [1, 13, 40, 70, 100, 1000] {
            assert_eq!(chunked(&data, 0, chunk), whole(&data, 0), "chunk {chunk}");
        }
    }

    #[test]
    fn a_start_past_the_end_is_corruption() {
        let (records, end, _) = chunked(b"abc", 4, 8);
        assert!(records.is_empty());
        assert!(matches!(end, LogEnd::Corruption(c) if c.offset == 4));
    }

    proptest! {
        /// Chunked reading agrees with reading the whole file, for any damage.
        #[test]
        fn chunked_reading_matches_whole_reading(
            payloads in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..60), 0..8),
            flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..3),
            cut in any::<prop::sample::Index>(),
            zeros in 0usize..80,
            tail in proptest::collection::vec(any::<u8>(), 0..3),
            start in 0usize..3,
            chunk in 1usize..90,
        ) {
            let mut data = vec![0xaa; start];
            data.extend(encode(&payloads));
            for (at, mask) in flips {
                if !data.is_empty() {
                    let i = at.index(data.len());
                    data[i] ^= mask;
                }
            }
            let cut = cut.index(data.len() + 1);
            data.truncate(cut.max(start));
            data.extend(vec![0u8; zeros]);
            data.extend(tail);
            prop_assert_eq!(chunked(&data, start, chunk), whole(&data, start));
        }
    }
}
