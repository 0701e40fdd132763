//! `Block::decode`, then every entry forward, seeks and point lookups.
//!
//! Input: the bytes of one decompressed block. A block that decodes and that the
//! builder would write byte for byte the same (a canonical block: ordered entries,
//! restarts where the builder puts them) must also seek and look up exactly.

use aeternusdb::internals::{Block, BlockBuilder, BlockGet, Entry, MAX_SEQNO, compare_internal};
use bytes::Bytes;

/// Most entries read from one block (inputs are small; this only bounds the work).
const MAX_ENTRIES: usize = 10_000;

pub fn run(data: &[u8]) {
    let Ok(block) = Block::decode(Bytes::copy_from_slice(data), 0) else { return };
    let mut entries = Vec::new();
    let mut clean = true;
    let mut it = block.iter();
    while entries.len() < MAX_ENTRIES {
        match it.advance() {
            Ok(true) => {
                let current = it.current();
                assert_eq!(current.key, &it.entry().key[..]);
                entries.push(it.entry());
            }
            Ok(false) => break,
            Err(_) => {
                clean = false;
                break;
            }
        }
    }
    // Seeks to targets around what the block holds: none may panic.
    let mut targets: Vec<(Vec<u8>, u64)> = vec![(Vec::new(), MAX_SEQNO), (vec![0xff; 8], 0)];
    for e in entries.iter().step_by(entries.len() / 8 + 1) {
        targets.push((e.key.to_vec(), e.seqno));
        targets.push((e.key.to_vec(), e.seqno.saturating_sub(1)));
        let mut after = e.key.to_vec();
        after.push(0);
        targets.push((after, MAX_SEQNO));
    }
    for (key, seqno) in &targets {
        let mut it = block.iter();
        if it.seek(key, *seqno).is_ok() {
            let _ = it.take(3).count();
        }
        let _ = block.get(key, *seqno);
    }
    if clean && is_canonical(data, &entries) {
        check_lookups(&block, &entries);
    }
}

/// True if `entries` are strictly ordered and the builder encodes them to `data`.
fn is_canonical(data: &[u8], entries: &[Entry]) -> bool {
    let ordered = entries
        .windows(2)
        .all(|w| compare_internal(&w[0].key, w[0].seqno, &w[1].key, w[1].seqno).is_lt());
    if !ordered {
        return false;
    }
    let mut builder = BlockBuilder::new();
    for e in entries {
        builder.add(&e.key, e.seqno, e.kind, &e.value);
    }
    builder.finish() == data
}

/// In a canonical block every entry is found by a seek to it and by a lookup.
fn check_lookups(block: &Block, entries: &[Entry]) {
    for (i, e) in entries.iter().enumerate() {
        let mut it = block.iter();
        it.seek(&e.key, e.seqno).expect("seek in a canonical block");
        let rest: Vec<Entry> = it.map(|r| r.expect("scan of a canonical block")).collect();
        assert_eq!(rest, entries[i..], "seek to entry {i}");
        match block.get(&e.key, e.seqno).expect("get in a canonical block") {
            BlockGet::Found(v) => {
                assert_eq!((v.seqno, v.kind, &v.value), (e.seqno, e.kind, &e.value), "get {i}")
            }
            other => panic!("get of entry {i} found {other:?}"),
        }
    }
    if let Some(last) = entries.last() {
        let mut past = last.key.to_vec();
        past.push(0);
        assert!(matches!(block.get(&past, MAX_SEQNO), Ok(BlockGet::PastEnd)));
    }
}
