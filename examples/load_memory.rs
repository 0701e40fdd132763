//! Where the resident set goes during a large load, beside what the engine budgets.
//!
//! ```text
//! cargo run --release --example load_memory -- DIR [KEYS]
//! ```
//! Puts `KEYS` keys (default 10,000,000: 16-byte keys in a scattered order, 100-byte
//! values half random and half repeated) into a new database in `DIR` without syncing,
//! then flushes and waits for compaction to settle. Every 200 ms it samples the
//! process's resident set and `Stats` (memtables, block cache); it prints a line each
//! time the resident set reaches a new high, and at the end the peak beside the
//! largest budgeted memory seen. Run it under another allocator with `LD_PRELOAD` to
//! see how much of the peak is the allocator's, not the engine's live data.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use aeternusdb::{Db, Options, Stats};

/// A field of `/proc/self/status` in MiB (Linux; 0 elsewhere).
fn status_mib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kib = status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok());
    kib.unwrap_or(0) >> 10
}

/// Memory the engine counts: the active memtable, the frozen ones at up to a full
/// write buffer each, and the block cache.
fn budgeted_mib(stats: &Stats, write_buffer: u64) -> u64 {
    let frozen = stats.frozen_memtables as u64 * write_buffer;
    (stats.active_memtable_bytes + frozen + stats.block_cache_bytes) >> 20
}

fn main() -> aeternusdb::Result<()> {
    let mut args = std::env::args().skip(1);
    let dir = args.next().expect("usage: load_memory DIR [KEYS]");
    let keys: u64 = args.next().map_or(10_000_000, |n| n.parse().expect("KEYS is a number"));
    let options = Options { sync_writes: false, ..Options::default() };
    let write_buffer = options.write_buffer_size as u64;
    let db = Db::open(&dir, options)?;
    let loaded = AtomicBool::new(false);
    let most_budgeted = std::thread::scope(|scope| {
        let sampler = scope.spawn(|| -> aeternusdb::Result<u64> {
            let (mut high, mut most_budgeted) = (0, 0);
            while !loaded.load(Ordering::Relaxed) {
                let rss = status_mib("VmRSS:");
                let stats = db.stats()?;
                let budgeted = budgeted_mib(&stats, write_buffer);
                most_budgeted = most_budgeted.max(budgeted);
                if rss > high {
                    high = rss;
                    let level0 = stats.levels.first().map_or(0, |l| l.tables);
                    println!(
                        "rss {rss} MiB, budgeted {budgeted} MiB (frozen memtables {}, \
                         level-0 tables {level0}, compactions {})",
                        stats.frozen_memtables, stats.running_compactions
                    );
                }
                std::thread::sleep(Duration::from_millis(200));
            }
            Ok(most_budgeted)
        });
        let load = || -> aeternusdb::Result<()> {
            // An odd multiplier scatters 0..keys without a shuffled array of them;
            // the remainder keeps keys at 16 digits (a few may repeat).
            for i in 0..keys {
                let k = i.wrapping_mul(0x9E37_79B9_7F4A_7C15) % 10_000_000_000_000_000;
                let mut value: Vec<u8> =
                    (0..50u64).map(|j| (k ^ j.wrapping_mul(0x2545_F491)) as u8).collect();
                value.extend([b'x'; 50]);
                db.put(format!("{k:016}"), value)?;
            }
            db.flush()?;
            loop {
                let stats = db.stats()?;
                if stats.frozen_memtables == 0 && !stats.compaction_pending {
                    return Ok(());
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        };
        let result = load();
        loaded.store(true, Ordering::Relaxed);
        let most_budgeted = sampler.join().expect("the sampler does not panic")?;
        result.map(|()| most_budgeted)
    })?;
    println!(
        "peak rss {} MiB; at most {most_budgeted} MiB budgeted at a sample",
        status_mib("VmHWM:")
    );
    db.close()
}
