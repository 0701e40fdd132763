//! `ByteArena`: the memory behind a memtable's keys and values.
//!
//! Every commit group's payload is copied into the current 1 MiB chunk, and the
//! memtable's entries slice it. A memtable of a million small writes then owns about
//! 64 chunks, not a million separately allocated payloads (each with its own
//! reference-count block). Freeing a flushed memtable used to free every payload one by
//! one, and that contended with writers for the allocator's lock. Now each entry only
//! decrements the count of a chunk that is hot in cache.
//!
//! Invariant: a chunk is freed when the last `Bytes` slicing it is dropped. A value
//! handed out by a read keeps its whole chunk alive, as a snapshot keeps its whole
//! memtable alive.

use bytes::{Bytes, BytesMut};
use parking_lot::Mutex;

/// Bytes per chunk.
const CHUNK_SIZE: usize = 1 << 20;
/// Payloads above this get an allocation of their own rather than waste a chunk's tail.
const LARGE: usize = CHUNK_SIZE / 8;

#[derive(Debug, Default)]
pub(crate) struct ByteArena {
    /// The unused tail of the current chunk.
    current: Mutex<BytesMut>,
}

impl ByteArena {
    /// A copy of `bytes` in the arena.
    pub(crate) fn copy(&self, bytes: &[u8]) -> Bytes {
        if bytes.len() > LARGE {
            return Bytes::copy_from_slice(bytes);
        }
        let mut current = self.current.lock();
        if current.capacity() - current.len() < bytes.len() {
            *current = BytesMut::with_capacity(CHUNK_SIZE);
        }
        current.extend_from_slice(bytes);
        current.split().freeze()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_are_equal_and_share_chunks() {
        let arena = ByteArena::default();
        let a = arena.copy(b"hello");
        let b = arena.copy(b"world");
        assert_eq!((&a[..], &b[..]), (&b"hello"[..], &b"world"[..]));
        // Consecutive in one chunk.
        assert_eq!(a.as_ptr().wrapping_add(5), b.as_ptr());
        let big = vec![9u8; LARGE + 1];
        assert_eq!(&arena.copy(&big)[..], &big[..]);
        // A full chunk starts a new one; earlier copies stay valid.
        let fill = vec![1u8; LARGE];
        let copies: Vec<Bytes> = (0..20).map(|_| arena.copy(&fill)).collect();
        assert!(copies.iter().all(|c| c[..] == fill[..]));
        assert_eq!(&a[..], b"hello");
    }
}
