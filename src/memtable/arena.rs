//! `ByteArena`: the memory behind a memtable's keys and values.
//!
//! Every commit group's payload of up to [`LARGE`] bytes is copied into the current
//! 1 MiB chunk, and the memtable's entries slice it. A memtable of a million small
//! writes then owns about 64 chunks, not a million separately allocated payloads (each
//! with its own reference-count block). Freeing a flushed memtable used to free every
//! payload one by one, and that contended with writers for the allocator's lock. Now
//! each entry only decrements the count of a chunk that is hot in cache.
//!
//! A larger payload is kept in its own allocation as it came, without a copy: copying
//! it would briefly double the memory of a large value.
//!
//! # Invariants
//! 1. A chunk or payload is freed when the last `Bytes` slicing it is dropped.
//! 2. Every value of more than [`LARGE`] bytes the memtable keeps is at least 1/8 of
//!    the allocation it slices ([`settle`] copies the others), and every
//!    value in a chunk is at most [`LARGE`] bytes. So [`detach`], which copies the
//!    values of up to [`LARGE`] bytes, hands out no value that keeps more than 8 times
//!    its size alive.

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
    pub(crate) fn hold(&self, mut payload: Vec<u8>) -> Bytes {
        if payload.len() > LARGE {
            // A group of several batches may have left spare capacity; invariant 2
            // measures values against the payload's length. Shrinking an
            // allocation does not move it with common allocators.
            payload.shrink_to_fit();
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

/// `value`, a slice of a payload of `payload_len` bytes kept by [`ByteArena::hold`],
/// as the memtable should keep it: copied if it is above [`LARGE`] bytes but less than
/// 1/8 of the payload (invariant 2), else as it is.
pub(crate) fn settle(value: Bytes, payload_len: usize) -> Bytes {
    if value.len() > LARGE && value.len() < payload_len / 8 {
        Bytes::copy_from_slice(&value)
    } else {
        value
    }
}

/// `value` as a read hands it out: a copy if it is at most [`LARGE`] bytes, so that
/// holding it does not keep its chunk or payload alive, else the shared slice.
pub(crate) fn detach(value: &Bytes) -> Bytes {
    if value.len() <= LARGE { Bytes::copy_from_slice(value) } else { value.clone() }
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

    #[test]
    fn small_values_are_handed_out_as_copies_and_large_ones_shared() {
        let arena = ByteArena::default();
        let small = arena.hold(b"small".to_vec());
        let out = detach(&small);
        assert_eq!(out, small);
        assert_ne!(out.as_ptr(), small.as_ptr());
        // Alone in its payload, a large value is shared.
        let payload = arena.hold(vec![4u8; 2 * LARGE]);
        let large = settle(payload.slice(1..), payload.len());
        assert_eq!(large.as_ptr(), payload.as_ptr().wrapping_add(1));
        assert_eq!(detach(&large).as_ptr(), large.as_ptr());
        // One of many in a payload, it gets an allocation of its own.
        let payload = arena.hold(vec![5u8; 9 * (LARGE + 1)]);
        let one = settle(payload.slice(..LARGE + 1), payload.len());
        assert_ne!(one.as_ptr(), payload.as_ptr());
        assert_eq!(one, payload.slice(..LARGE + 1));
    }
}
