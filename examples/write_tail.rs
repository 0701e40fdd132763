//! The latency tail of buffered writes just after a flush: loads 1,000,000 keys,
//! flushes, waits until nothing is pending, then times 200,000 range deletes one by one;
//! then waits 5 s and times 200,000 more. Prints the percentiles of both rounds.
//!
//! ```text
//! cargo run --release --example write_tail
//! ```
//! This is the reproduction behind docs/benchmarks/analysis.md. The medians of the two
//! rounds are alike, but the first round's p99 is several times the second's: the
//! flush thread is still freeing the flushed memtable, node by node.

use std::time::{Duration, Instant};

use aeternusdb::{Db, Options};

const KEYS: u64 = 1_000_000;
const OPS: usize = 200_000;

fn key(i: u64) -> [u8; 16] {
    let mut k = [0u8; 16];
    k.copy_from_slice(format!("{i:016}").as_bytes());
    k
}

/// Runs `op(i)` `OPS` times and prints its throughput and latency percentiles.
fn timed(name: &str, mut op: impl FnMut(u64) -> aeternusdb::Result<()>) -> aeternusdb::Result<()> {
    let mut nanos = Vec::with_capacity(OPS);
    let started = Instant::now();
    for i in 0..OPS as u64 {
        let t = Instant::now();
        op(i)?;
        nanos.push(t.elapsed().as_nanos() as u64);
    }
    let elapsed = started.elapsed();
    nanos.sort_unstable();
    let us = |q: f64| nanos[((OPS as f64 * q) as usize).min(OPS - 1)] as f64 / 1000.0;
    println!(
        "{name:<12} {:>9.0} ops/s  p50 {:>6.1} µs  p99 {:>6.1} µs  p99.9 {:>6.1} µs",
        OPS as f64 / elapsed.as_secs_f64(),
        us(0.5),
        us(0.99),
        us(0.999)
    );
    Ok(())
}

fn main() -> aeternusdb::Result<()> {
    let dir = tempfile::tempdir()?;
    let db = Db::open(dir.path(), Options { sync_writes: false, ..Options::default() })?;
    let value = [7u8; 100];
    // A fixed pseudo-random order (an LCG), so runs are comparable.
    let mut x = 12_345u64;
    for _ in 0..KEYS {
        x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        db.put(key((x >> 20) % KEYS), value)?;
    }
    db.flush()?;
    while db.stats()?.compaction_pending {
        std::thread::sleep(Duration::from_millis(20));
    }
    let block = |i: u64| (i * 7_919) % (KEYS / 100) * 100;
    let delete = |i: u64| db.delete_range(key(block(i)), key(block(i) + 100));
    timed("at once", delete)?;
    std::thread::sleep(Duration::from_secs(5));
    timed("5 s later", delete)?;
    db.close()
}
