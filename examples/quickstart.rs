//! Opens a database in a temporary directory, writes, reads, scans, reopens, and
//! prints what it did and how fast.
//!
//! ```text
//! cargo run --release --example quickstart                      # 100,000 keys
//! cargo run --release --example quickstart -- --keys 1000000    # the issue's figures
//! cargo run --release --example quickstart -- --strategy tiered  # size-tiered compaction
//! ```
//! Keys are 16 bytes (`{:016}`), written in a fixed random order; values are 100
//! bytes, half random and half repeated, so compression has something to do.

use std::sync::Arc;
use std::time::{Duration, Instant};

use aeternusdb::{
    CompactionStrategyOptions, Db, LeveledOptions, Options, SizeTieredOptions, WriteBatch,
    WriteOptions,
};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

struct Settings {
    keys: u64,
    sync_ops: u64,
    wal_mib: u64,
    compaction: CompactionStrategyOptions,
}

fn parse_args() -> Result<Settings, String> {
    let mut settings = Settings {
        keys: 100_000,
        sync_ops: 4_000,
        wal_mib: 64,
        compaction: CompactionStrategyOptions::default(),
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut number = |name: &str| -> Result<u64, String> {
            let raw = args.next().ok_or(format!("{name} needs a number"))?;
            raw.replace('_', "").parse().map_err(|_| format!("{name}: not a number: {raw}"))
        };
        match arg.as_str() {
            "--keys" => settings.keys = number("--keys")?,
            "--sync-ops" => settings.sync_ops = number("--sync-ops")?,
            "--wal-mib" => settings.wal_mib = number("--wal-mib")?,
            "--strategy" => {
                settings.compaction = match args.next().as_deref() {
                    Some("leveled") => {
                        CompactionStrategyOptions::Leveled(LeveledOptions::default())
                    }
                    Some("tiered") => {
                        CompactionStrategyOptions::SizeTiered(SizeTieredOptions::default())
                    }
                    _ => return Err("--strategy takes leveled or tiered".into()),
                }
            }
            "--help" | "-h" => {
                return Err("usage: quickstart [--keys N] [--sync-ops N] [--wal-mib N] \
                            [--strategy leveled|tiered]"
                    .into());
            }
            other => return Err(format!("unknown argument {other} (try --help)")),
        }
    }
    if settings.keys == 0 || settings.sync_ops < 4 {
        return Err("--keys must be positive and --sync-ops at least 4".into());
    }
    Ok(settings)
}

fn key(i: u64) -> [u8; 16] {
    let mut k = [0u8; 16];
    k.copy_from_slice(format!("{i:016}").as_bytes());
    k
}

fn value(i: u64, salt: u64) -> Vec<u8> {
    let mut rng = StdRng::seed_from_u64(i ^ salt.rotate_left(32));
    let mut v = vec![b'x'; 100];
    rng.fill(&mut v[..50]);
    v
}

/// Waits until no flush or compaction is pending, so reads are not measured mid-way.
fn settle(db: &Db) -> aeternusdb::Result<Duration> {
    let started = Instant::now();
    db.flush()?;
    loop {
        let stats = db.stats()?;
        if stats.frozen_memtables == 0 && !stats.compaction_pending {
            return Ok(started.elapsed());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Reads every key in random order, checking each value.
fn read_all(db: &Db, order: &[u64], salt: u64) -> Result<Duration, Box<dyn std::error::Error>> {
    let started = Instant::now();
    for &i in order {
        if db.get(key(i))?.as_deref() != Some(&value(i, salt)[..]) {
            return Err(format!("key {i}: wrong value").into());
        }
    }
    Ok(started.elapsed())
}

fn rate(ops: u64, elapsed: Duration) -> String {
    format!("{:>12.0} ops/s", ops as f64 / elapsed.as_secs_f64())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let settings = parse_args().map_err(|e| {
        eprintln!("{e}");
        std::process::exit(2)
    })?;
    let n = settings.keys;
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("db");
    println!("AeternusDB quickstart in {}", path.display());
    println!("{n} keys of 16 B with 100 B values, keys in random order\n");

    let mut order: Vec<u64> = (0..n).collect();
    order.shuffle(&mut StdRng::seed_from_u64(42));

    let buffered = Options {
        sync_writes: false,
        compaction: settings.compaction.clone(),
        ..Options::default()
    };
    let strategy = match settings.compaction {
        CompactionStrategyOptions::Leveled(_) => "leveled",
        CompactionStrategyOptions::SizeTiered(_) => "size-tiered",
    };
    println!("buffered writes (WAL to the OS, no fsync), {strategy} compaction\n");
    let db = Db::open(&path, buffered.clone())?;

    let started = Instant::now();
    for &i in &order {
        db.put(key(i), value(i, 0))?;
    }
    let fill = started.elapsed();
    println!("fillrandom               {}  ({n} puts in {fill:.2?})", rate(n, fill));
    println!("flush + compaction       {:>12.2?}  until settled", settle(&db)?);

    let mut reads = order.clone();
    reads.shuffle(&mut StdRng::seed_from_u64(7));
    let elapsed = read_all(&db, &reads, 0)?;
    println!("readrandom               {}  (every value verified)", rate(n, elapsed));

    order.shuffle(&mut StdRng::seed_from_u64(9));
    let started = Instant::now();
    for &i in &order {
        db.put(key(i), value(i, 1))?;
    }
    let overwrite = started.elapsed();
    println!("overwrite                {}  (every key once more)", rate(n, overwrite));
    println!("flush + compaction       {:>12.2?}  until settled", settle(&db)?);
    let stats = db.stats()?;
    println!(
        "amplification            write {:.2}x, space {:.2}x ({:.1} MiB on disk for {:.1} MiB \
         of user data)",
        stats.write_amplification,
        stats.space_amplification,
        stats.disk_bytes as f64 / (1 << 20) as f64,
        (n * 116) as f64 / (1 << 20) as f64,
    );
    let shape: Vec<String> = stats
        .levels
        .iter()
        .enumerate()
        .filter(|(_, l)| l.tables > 0)
        .map(|(i, l)| {
            format!("L{i}: {} tables {:.1} MiB", l.tables, l.bytes as f64 / (1 << 20) as f64)
        })
        .collect();
    println!("tree                     {}", shape.join(", "));
    let elapsed = read_all(&db, &reads, 1)?;
    println!("readrandom               {}  (after overwrite)", rate(n, elapsed));

    let started = Instant::now();
    let forward = db.iter()?.try_fold(0u64, |count, item| item.map(|_| count + 1))?;
    let backward = db.iter()?.rev().try_fold(0u64, |count, item| item.map(|_| count + 1))?;
    let scans = started.elapsed();
    if forward != n || backward != n {
        return Err(format!("scans saw {forward} and {backward} keys, expected {n}").into());
    }
    println!("scan forward + reverse   {}  ({} keys each way)", rate(2 * n, scans), n);

    let mut batch = WriteBatch::new();
    batch.delete_range(key(0), key(n / 10))?.put("hello", "world")?;
    db.write(batch)?;
    let remaining = db.iter()?.count() as u64;
    println!("delete_range of 10%      {remaining} keys left (+1 for \"hello\")");
    db.close()?;
    println!();

    // Group commit: the same number of synced puts from one thread, then from four.
    let sync_path = dir.path().join("sync");
    let db = Db::open(&sync_path, Options::default())?;
    let ops = settings.sync_ops;
    let started = Instant::now();
    for i in 0..ops {
        db.put(key(i), value(i, 1))?;
    }
    let one = started.elapsed();
    println!("fillsync, 1 thread       {}  ({ops} puts, fsync each)", rate(ops, one));
    let db = Arc::new(db);
    let started = Instant::now();
    let threads: Vec<_> = (0..4u64)
        .map(|t| {
            let db = db.clone();
            std::thread::spawn(move || -> aeternusdb::Result<()> {
                for i in (t..ops).step_by(4) {
                    db.write_with(
                        WriteBatch::new().put(key(ops + i), value(i, 2))?,
                        WriteOptions { sync: true },
                    )?;
                }
                Ok(())
            })
        })
        .collect();
    for thread in threads {
        thread.join().map_err(|_| "writer thread panicked")??;
    }
    let four = started.elapsed();
    println!("fillsync, 4 threads      {}  (group commit)", rate(ops, four));
    db.close()?;

    // Reopen with a WAL full of unflushed writes.
    let wal_path = dir.path().join("reopen");
    let big_buffer = Options {
        write_buffer_size: ((settings.wal_mib + 64) << 20) as usize,
        sync_writes: false,
        ..Options::default()
    };
    let db = Db::open(&wal_path, big_buffer.clone())?;
    let mut written = 0u64;
    let mut i = 0u64;
    while written < settings.wal_mib << 20 {
        db.put(key(i), value(i, 3))?;
        i += 1;
        if i.is_multiple_of(1024) {
            written = db.stats()?.wal_bytes_written;
        }
    }
    db.close()?;
    let started = Instant::now();
    let db = Db::open(&wal_path, big_buffer)?;
    let open = started.elapsed();
    if db.get(key(i - 1))?.as_deref() != Some(&value(i - 1, 3)[..]) {
        return Err("the last write was not recovered".into());
    }
    println!(
        "reopen                   {open:>12.2?}  ({i} writes, {:.1} MiB of unflushed WAL)",
        written as f64 / (1 << 20) as f64
    );
    db.close()?;
    Ok(())
}
