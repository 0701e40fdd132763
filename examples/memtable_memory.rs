//! How much memory a memtable really takes against what it counts towards
//! `write_buffer_size`.
//!
//! ```text
//! cargo run --release --example memtable_memory
//! ```
//! Puts 1,000,000 keys of 16 bytes with 100-byte values into a write buffer large
//! enough that nothing flushes, then prints the growth of the process's resident set
//! beside `Stats::active_memtable_bytes`. A ratio near 1 means the write buffer
//! bounds what memtables take; `memtable::ENTRY_OVERHEAD` is set from this.

use aeternusdb::{Db, Options};

/// The process's resident set in bytes (Linux).
fn resident_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kib = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok());
    kib.unwrap_or(0) * 1024
}

fn main() -> aeternusdb::Result<()> {
    const KEYS: u64 = 1_000_000;
    let dir = tempfile::tempdir()?;
    let options = Options { sync_writes: false, write_buffer_size: 1 << 30, ..Options::default() };
    let db = Db::open(dir.path(), options)?;
    let before = resident_bytes();
    for i in 0..KEYS {
        // A stride coprime to KEYS: every key once, not in order.
        db.put(format!("{:016}", (i * 7919) % KEYS), [7u8; 100])?;
    }
    let grown = resident_bytes().saturating_sub(before);
    let counted = db.stats()?.active_memtable_bytes;
    println!(
        "resident growth {} MiB, counted {} MiB: {:.2}x; {} bytes per entry",
        grown >> 20,
        counted >> 20,
        grown as f64 / counted as f64,
        grown / KEYS
    );
    db.close()
}
