//! `ByteArena`: the memory behind a memtable's keys and values.
//!
//! Every commit group's payload of up to [`LARGE`] bytes is copied into the current
//! 1 MiB chunk, and the memtable's entries slice it; a larger payload is kept in its
//! own allocation as it came, without a copy (copying it would briefly double the
//! memory of a large value, and it would waste a chunk's tail anyway). A memtable of a million small writes then owns about
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
    /// `payload` as the memtable keeps it: copied into the current chunk, or, above
    /// [`LARGE`] bytes, the same allocation.
    pub(crate) fn hold(&self, payload: Vec<u8>) -> Bytes {
        if payload.len() > LARGE {
            return Bytes::from(payload);
        }
        let mut current = self.current.lock();
        if current.capacity() - current.len() < payload.len() {
            *current = BytesMut::with_capacity(CHUNK_SIZE);
        }
        current.extend_from_slice(&payload);
        current.split().freeze()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_payloads_share_chunks_and_large_ones_are_not_copied() {
        let arena = ByteArena::default();
        let a = arena.hold(b"hello".to_vec());
        let b = arena.hold(b"world".to_vec());
        assert_eq!((&a[..], &b[..]), (&b"hello"[..], &b"world"[..]));
        // Consecutive in one chunk.
        assert_eq!(a.as_ptr().wrapping_add(5), b.as_ptr());
        let big = vec![9u8; LARGE + 1];
        let big_at = big.as_ptr();
        let held = arena.hold(big);
        assert_eq!(held.as_ptr(), big_at);
        assert!(held.len() == LARGE + 1 && held.iter().all(|&byte| byte == 9));
        // A full chunk starts a new one; earlier copies stay valid.
        let fill = vec![1u8; LARGE];
        let copies: Vec<Bytes> = (0..20).map(|_| arena.hold(fill.clone())).collect();
        assert!(copies.iter().all(|c| c[..] == fill[..]));
        assert_eq!(&a[..], b"hello");
    }
}
