//! Writes the seed corpus of every target into `fuzz/corpus/<target>/`: real blocks,
//! tables, WAL segments, manifests and edits made by the engine itself, so the
//! fuzzer starts from valid inputs and mutates them.
//!
//! `cargo run -p aeternus-fuzz --bin gen_corpus [DIR]` (default: `fuzz/corpus`).
//! Existing files of the same names are overwritten; others are left alone.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use aeternusdb::fs::{FaultFs, FileSystem};
use aeternusdb::internals::{
    BlockBuilder, BlockHandle, FilterBuilder, Footer, ManifestState, TableMeta, ValueKind,
    VersionEdit, WalWriter, encode_block, encode_wal_record,
};
use aeternusdb::{Compression, Db, Options, WriteBatch, WriteOptions};
use bytes::Bytes;

struct Corpus {
    root: PathBuf,
    written: usize,
}

impl Corpus {
    fn add(&mut self, target: &str, name: &str, data: &[u8]) {
        let dir = self.root.join(target);
        std::fs::create_dir_all(&dir).expect("create corpus directory");
        std::fs::write(dir.join(name), data).expect("write corpus file");
        self.written += 1;
    }
}

fn with_flags(flags: u8, data: &[u8]) -> Vec<u8> {
    let mut out = vec![flags];
    out.extend_from_slice(data);
    out
}

fn main() {
    let root = std::env::args_os()
        .nth(1)
        .map_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus"), PathBuf::from);
    let mut corpus = Corpus { root, written: 0 };
    blocks(&mut corpus);
    filters(&mut corpus);
    footers(&mut corpus);
    framing(&mut corpus);
    edits(&mut corpus);
    batches(&mut corpus);
    wal_segments(&mut corpus);
    database_files(&mut corpus);
    model_programs(&mut corpus);
    println!("wrote {} files under {}", corpus.written, corpus.root.display());
}

fn block_of(entries: &[(&[u8], u64, ValueKind, &[u8])]) -> Vec<u8> {
    let mut b = BlockBuilder::new();
    for &(key, seqno, kind, value) in entries {
        b.add(key, seqno, kind, value);
    }
    b.finish()
}

fn blocks(c: &mut Corpus) {
    c.add("block", "empty", &block_of(&[]));
    c.add("block", "one", &block_of(&[(b"key", 7, ValueKind::Put, b"value")]));
    let keys: Vec<String> = (0..40).map(|i| format!("key{:04}", i / 2)).collect();
    let entries: Vec<(&[u8], u64, ValueKind, &[u8])> = keys
        .iter()
        .enumerate()
        .map(|(i, k)| {
            let kind = if i % 5 == 3 { ValueKind::Delete } else { ValueKind::Put };
            let value: &[u8] = if kind == ValueKind::Put { b"some value" } else { b"" };
            (k.as_bytes(), 100 - i as u64 % 2, kind, value)
        })
        .collect();
    c.add("block", "restarts", &block_of(&entries));
    // Index blocks: handles of contiguous 100-byte blocks, data ending at 1000.
    let mut b = BlockBuilder::new();
    for (i, k) in ["apple", "banana", "cherry", "damson"].iter().enumerate() {
        let mut value = Vec::new();
        BlockHandle { offset: 100 * i as u64, size: 100 }.encode_to(&mut value);
        b.add(k.as_bytes(), 9, ValueKind::Put, &value);
    }
    let index = b.finish();
    let mut input = 1000u64.to_le_bytes().to_vec();
    input.extend_from_slice(&index);
    c.add("index", "four_blocks", &input);
    c.add("block", "index", &index);
    let mut input = 0u64.to_le_bytes().to_vec();
    input.extend_from_slice(&block_of(&[]));
    c.add("index", "empty", &input);
}

fn filters(c: &mut Corpus) {
    let mut f = FilterBuilder::new(10);
    for i in 0..50 {
        f.add_key(format!("key{i}").as_bytes());
    }
    c.add("filter", "fifty_keys", &with_flags(0, &f.finish()));
    c.add("filter", "disabled", &with_flags(0, &FilterBuilder::new(0).finish()));
    c.add("filter", "build_10_bits", &with_flags(1 | (10 << 1), b"alpha\xffbeta\xffgamma\xff"));
    c.add("filter", "build_1_bit", &with_flags(1 | (1 << 1), b"a\xffb"));
}

fn footers(c: &mut Corpus) {
    let footer = Footer {
        index: BlockHandle { offset: 500, size: 40 },
        filter: BlockHandle { offset: 400, size: 70 },
        range_tombstones: BlockHandle { offset: 470, size: 9 },
        properties: BlockHandle { offset: 479, size: 21 },
    };
    let mut input = 540u64.to_le_bytes().to_vec();
    input.extend_from_slice(&footer.encode());
    c.add("footer", "valid", &with_flags(0, &input));
    c.add("footer", "valid_fixing_crc", &with_flags(1, &input));
}

fn framing(c: &mut Corpus) {
    let payload = b"a block payload that compresses: abcabcabcabcabcabcabcabcabcabc".repeat(4);
    for (name, compression) in
        [("none", Compression::None), ("lz4", Compression::Lz4), ("zstd", Compression::Zstd)]
    {
        let framed = encode_block(payload.clone(), compression);
        c.add("framing", &format!("framed_{name}"), &with_flags(0, &framed));
        // The payload as stored (compressed), framed by the target with a valid checksum.
        let stored = &framed[..framed.len() - 5];
        let tag = compression as u8;
        c.add("framing", &format!("payload_{name}"), &with_flags(1 | (tag << 1), stored));
    }
}

fn table_meta(number: u64, level: u32) -> TableMeta {
    TableMeta {
        number,
        level,
        size: 4096 + number,
        smallest: Bytes::from(format!("a{number}")),
        largest: Bytes::from(format!("z{number}")),
        min_seqno: number,
        max_seqno: number * 10,
    }
}

fn edits(c: &mut Corpus) {
    let mut state = ManifestState::new(uuid::Uuid::from_u128(0x1234_5678_9abc_def0));
    state.next_file_number = 9;
    state.last_seqno = 77;
    state.log_number = 3;
    state.last_wal = 4;
    for (n, level) in [(5, 0), (6, 1), (7, 2)] {
        state.tables.insert(n, table_meta(n, level));
    }
    c.add("manifest_edit", "snapshot", &state.snapshot_edit().encode());
    let edit = VersionEdit {
        log_number: Some(8),
        added: vec![table_meta(10, 1)],
        removed: vec![(0, 5)],
        ..VersionEdit::default()
    };
    c.add("manifest_edit", "flush", &edit.encode());
    c.add("manifest_edit", "empty", &VersionEdit::default().encode());
}

fn sample_batches() -> Vec<WriteBatch> {
    let mut a = WriteBatch::new();
    a.put("k1", "v1").and_then(|b| b.delete("k2")).expect("batch");
    let mut b = WriteBatch::new();
    b.delete_range("a", "m").and_then(|b| b.put("x", vec![7u8; 40])).expect("batch");
    vec![a, b]
}

fn batches(c: &mut Corpus) {
    let batches = sample_batches();
    c.add("batch", "two_batches", &encode_wal_record(&batches, 100));
    c.add("batch", "one_batch", &encode_wal_record(&batches[..1], 1));
    c.add("batch", "empty_group", &encode_wal_record(&[], 5));
}

fn wal_segments(c: &mut Corpus) {
    let fs = FaultFs::new();
    let dir = Path::new("/wal");
    fs.create_dir_all(dir).expect("dir");
    let id = uuid::Uuid::from_u128(42);
    let mut w = WalWriter::create(&fs, dir, 3, id).expect("create segment");
    let batches = sample_batches();
    for i in 0..4u64 {
        w.append(&encode_wal_record(&batches, 1 + 4 * i)).expect("append");
    }
    w.finish().expect("finish");
    let segment = fs.read_all(&dir.join("000003.wal")).expect("read segment");
    c.add("wal", "four_records", &with_flags(0, &segment));
    c.add("wal", "four_records_fixing_crc_last", &with_flags(1 | 2, &segment));
    let torn = &segment[..segment.len() - 7];
    c.add("wal", "torn_tail_last", &with_flags(2, torn));
    c.add("wal", "torn_tail_salvage", &with_flags(4 | 1, torn));
}

/// Runs a small workload on a database and keeps its tables, WAL segment and
/// manifest as seeds.
fn database_files(c: &mut Corpus) {
    for (name, compression, bloom) in [
        ("lz4", Compression::Lz4, 10),
        ("none", Compression::None, 0),
        ("zstd", Compression::Zstd, 6),
    ] {
        let fs = FaultFs::new();
        let options = Options {
            fs: Arc::new(fs.clone()),
            write_buffer_size: 4096,
            block_size: 256,
            compression,
            bloom_bits_per_key: bloom,
            auto_compaction: false,
            ..Options::default()
        };
        let db = Db::open("/db", options).expect("open");
        for i in 0..60u32 {
            db.put(format!("key{:03}", i % 40), format!("value-{i}-").repeat(3)).expect("put");
            if i % 9 == 0 {
                db.delete(format!("key{:03}", i / 2)).expect("delete");
            }
        }
        db.delete_range("key010", "key015").expect("delete_range");
        db.flush().expect("flush");
        db.write_with(&sample_batches()[0], WriteOptions { sync: true }).expect("write");
        db.close().expect("close");
        let mut names: Vec<PathBuf> = fs.file_names();
        names.sort();
        for path in names {
            let file_name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
            let data = fs.read_all(&path).expect("read");
            if file_name.ends_with(".sst") {
                c.add("table", &format!("{name}_{file_name}"), &with_flags(0, &data));
                c.add("table", &format!("{name}_{file_name}_fixing_crc"), &with_flags(1, &data));
                if let Some(props) = table_properties(&fs, &path) {
                    c.add("properties", &format!("{name}_{file_name}"), &props);
                }
            } else if file_name.ends_with(".wal") {
                c.add("wal", &format!("db_{name}_{file_name}"), &with_flags(2, &data));
            } else if file_name.starts_with("MANIFEST-") {
                c.add("manifest", &format!("{name}_{file_name}"), &with_flags(0, &data));
                c.add("manifest", &format!("{name}_fixing_crc"), &with_flags(1, &data));
            }
        }
    }
}

fn table_properties(fs: &FaultFs, path: &Path) -> Option<Vec<u8>> {
    let cache = Arc::new(aeternusdb::internals::BlockCache::new(1 << 20));
    let table = aeternusdb::internals::Table::open(fs, path, 1, cache).ok()?;
    Some(table.properties().encode())
}

fn model_programs(c: &mut Corpus) {
    // Opcodes (see the model target): 0-4 put, 5 delete, 6 delete_range, 7 batch,
    // 8 get, 9 scan, 10 flush, 11 compact, 12 sync_wal, 13 fault, 14 reopen, 15 check.
    let mut puts = vec![0u8];
    for i in 0..40u8 {
        puts.extend_from_slice(&[i % 5, i, 20]);
    }
    puts.extend_from_slice(&[15, 10, 15, 11, 15]);
    c.add("model", "puts_flush_compact", &puts);
    let mut mixed = vec![0x41u8];
    mixed.extend_from_slice(&[0, 1, 5, 3, 2, 10, 5, 0x12, 6, 2, 9, 4, 7, 3, 1, 0x82, 5, 8, 8, 1]);
    mixed.extend_from_slice(&[9, 0x80, 0x80, 9, 0xc0, 0x80, 14, 0, 15, 14, 1, 15, 14, 2, 15]);
    c.add("model", "mixed_reopens", &mixed);
    let mut faults = vec![0u8];
    for i in 0..12u8 {
        faults.extend_from_slice(&[3, i, 30, 0, i + 1, 10]);
    }
    faults.extend_from_slice(&[13, 0, 2, 0, 1, 1, 1, 2, 2, 10, 14, 2, 15]);
    faults.extend_from_slice(&[13, 1, 0, 4, 5, 5, 12, 14, 1, 15]);
    faults.extend_from_slice(&[0, 9, 9, 13, 4, 1, 0x1e, 2, 15, 10, 11, 15]);
    c.add("model", "faults_and_power_loss", &faults);
}
