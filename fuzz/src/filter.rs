//! `BloomFilter::decode` and probes, and the builder's promise of no false negatives.
//!
//! Input: flags byte. Bit 0 clear: the rest is a filter block, decoded and probed.
//! Bit 0 set: the rest is a list of keys separated by `0xff`, added to a filter of
//! `flags >> 1` bits per key (0–127); every key must then match.

use aeternusdb::internals::{BloomFilter, FilterBuilder};
use bytes::Bytes;

pub fn run(data: &[u8]) {
    let (flags, rest) = crate::split_flags(data);
    if flags & 1 == 0 {
        if let Ok(filter) = BloomFilter::decode(Bytes::copy_from_slice(rest), 0) {
            for key in [&b""[..], b"a", b"key00001", rest] {
                let _ = filter.may_contain(key);
            }
            for key in rest.split(|&b| b == 0xff).take(32) {
                let _ = filter.may_contain(key);
            }
        }
        return;
    }
    let bits_per_key = u32::from(flags >> 1);
    let keys: Vec<&[u8]> = rest.split(|&b| b == 0xff).collect();
    let mut builder = FilterBuilder::new(bits_per_key);
    for key in &keys {
        builder.add_key(key);
    }
    let encoded = builder.finish();
    let filter = BloomFilter::decode(Bytes::from(encoded), 0).expect("a built filter decodes");
    for key in &keys {
        assert!(filter.may_contain(key), "false negative for {key:?} at {bits_per_key} bits");
    }
}
