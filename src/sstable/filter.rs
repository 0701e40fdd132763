//! Bloom filter over a table's user keys.
//!
//! Hand-written rather than taken from a crate: the bits are part of the file format,
//! and a crate's serialisation or hash could change under us in an update.
//!
//! # Layout (part of the file format, never change)
//! ```text
//! bit array (n bytes, bit i is byte i / 8, bit i % 8) | probe count u8
//! ```
//! A key's probes use double hashing on `h = xxh3_64(key)`: with `h1 = h & 0xffff_ffff`
//! and `h2 = h >> 32`, probe `i` sets bit `(h1 + i * h2) mod (8 * n)` (64-bit wrapping
//! arithmetic). The hash function is part of the format.
//!
//! # Invariants
//! 1. No false negatives: every added key makes [`BloomFilter::may_contain`] true.
//! 2. An empty filter block (bloom disabled) matches every key.
//! 3. The probe count is between 1 and [`MAX_PROBES`]; decoding checks it.

use bytes::Bytes;
use xxhash_rust::xxh3::xxh3_64;

use crate::error::Corruption;

/// The largest probe count written or accepted.
pub const MAX_PROBES: u8 = 30;

/// Collects key hashes and encodes the filter.
#[derive(Debug)]
pub struct FilterBuilder {
    bits_per_key: u32,
    hashes: Vec<u64>,
}

impl FilterBuilder {
    /// A builder using about `bits_per_key` bits per key; 0 builds an empty filter.
    pub fn new(bits_per_key: u32) -> Self {
        FilterBuilder { bits_per_key, hashes: Vec::new() }
    }

    /// Adds a user key. Adding the same key twice only costs memory.
    pub fn add_key(&mut self, key: &[u8]) {
        if self.bits_per_key > 0 {
            self.hashes.push(xxh3_64(key));
        }
    }

    /// Bytes the filter would take if finished now.
    pub fn estimated_size(&self) -> usize {
        self.hashes.len() * self.bits_per_key as usize / 8 + 1
    }

    /// The encoded filter.
    pub fn finish(self) -> Vec<u8> {
        if self.bits_per_key == 0 {
            return Vec::new();
        }
        let bits = (self.hashes.len() * self.bits_per_key as usize).max(64);
        let len = bits.div_ceil(8);
        // k = ln 2 * bits per key minimises the false-positive rate.
        let probes = ((f64::from(self.bits_per_key) * 0.69).round() as u8).clamp(1, MAX_PROBES);
        let mut out = vec![0u8; len + 1];
        for &h in &self.hashes {
            for bit in probe_bits(h, probes, len as u64 * 8) {
                if let Some(byte) = out.get_mut((bit / 8) as usize) {
                    *byte |= 1 << (bit % 8);
                }
            }
        }
        out[len] = probes;
        out
    }
}

fn probe_bits(h: u64, probes: u8, bits: u64) -> impl Iterator<Item = u64> {
    let (h1, h2) = (h & 0xffff_ffff, h >> 32);
    (0..u64::from(probes)).map(move |i| h1.wrapping_add(i.wrapping_mul(h2)) % bits)
}

/// A decoded filter.
#[derive(Debug, Clone)]
pub struct BloomFilter {
    bits: Bytes,
    probes: u8,
}

impl BloomFilter {
    /// Decodes a filter block read from `file_offset`.
    pub fn decode(data: Bytes, file_offset: u64) -> Result<BloomFilter, Corruption> {
        let Some((&probes, _)) = data.split_last() else {
            return Ok(BloomFilter { bits: Bytes::new(), probes: 0 });
        };
        if !(1..=MAX_PROBES).contains(&probes) || data.len() < 2 {
            return Err(Corruption::new(
                file_offset,
                format!("bad bloom filter ({probes} probes)"),
            ));
        }
        Ok(BloomFilter { bits: data.slice(..data.len() - 1), probes })
    }

    /// False only if `key` was certainly not added.
    pub fn may_contain(&self, key: &[u8]) -> bool {
        if self.bits.is_empty() {
            return true;
        }
        let bits = self.bits.len() as u64 * 8;
        probe_bits(xxh3_64(key), self.probes, bits).all(|bit| {
            self.bits.get((bit / 8) as usize).is_some_and(|byte| byte & (1 << (bit % 8)) != 0)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn build(keys: impl Iterator<Item = Vec<u8>>, bits_per_key: u32) -> BloomFilter {
        let mut b = FilterBuilder::new(bits_per_key);
        for k in keys {
            b.add_key(&k);
        }
        BloomFilter::decode(Bytes::from(b.finish()), 0).unwrap()
    }

    #[test]
    fn no_false_negatives_and_about_one_percent_false_positives() {
        let n = 20_000;
        let f = build((0..n).map(|i| format!("key{i}").into_bytes()), 10);
        for i in 0..n {
            assert!(f.may_contain(format!("key{i}").as_bytes()));
        }
        let trials = 100_000;
        let fp = (0..trials).filter(|i| f.may_contain(format!("other{i}").as_bytes())).count();
        let rate = fp as f64 / trials as f64;
        assert!(rate < 0.02, "false-positive rate {rate}");
        assert!(rate > 0.002, "suspiciously low false-positive rate {rate}");
    }

    #[test]
    fn disabled_or_empty_filters_match_everything() {
        let f = build(std::iter::empty(), 0);
        assert!(f.may_contain(b"anything"));
        let f = build(std::iter::once(b"a".to_vec()), 10);
        assert!(f.may_contain(b"a"));
    }

    proptest! {
        #[test]
        fn decoding_garbage_never_panics(
            bytes in proptest::collection::vec(any::<u8>(), 0..64),
            key in proptest::collection::vec(any::<u8>(), 0..8),
        ) {
            if let Ok(f) = BloomFilter::decode(Bytes::from(bytes), 0) {
                let _ = f.may_contain(&key);
            }
        }
    }
}
