//! The cost of many nested range tombstones, the queue pattern: `n + 1000` items
//! `q:{i:08}` are pushed, then each of `n` pops deletes `["q:", q:{i})`, so every
//! tombstone covers all the older ones. Times, through the public `Db` API, with the
//! tombstones in the memtable and then in a table: `iter()` creation, the first item
//! (skipping the `n` deleted ones), a `get`; `flush()`; reopen from the table and reopen
//! replaying the WAL. Each figure is the best of three runs.
//!
//! ```text
//! CARGO_PROFILE_RELEASE_DEBUG=0 nice cargo run --release --example range_tombstones
//! cargo run --release --example range_tombstones -- 1000 10000   # chosen sizes
//! ```
//! Figures are in docs/measurements.md.

use std::time::{Duration, Instant};

use aeternusdb::{Db, Options};

/// Items left in the queue after the last pop.
const LIVE: u64 = 1000;
/// `get`s per measurement, half on popped items and half on live ones.
const GETS: u64 = 1000;
/// Each figure is the best of this many runs: the machine is shared and noisy.
const RUNS: usize = 3;

fn key(i: u64) -> String {
    format!("q:{i:08}")
}

fn options() -> Options {
    // No compaction: it would drop the tombstones, and they are what is measured.
    Options { sync_writes: false, auto_compaction: false, ..Options::default() }
}

/// The time `f` takes, and its result.
fn timed<T>(f: impl FnOnce() -> aeternusdb::Result<T>) -> aeternusdb::Result<(Duration, T)> {
    let started = Instant::now();
    let out = f()?;
    Ok((started.elapsed(), out))
}

/// Pushes `n + LIVE` items and pops `n`; returns the time of the pops.
fn fill(db: &Db, n: u64) -> aeternusdb::Result<Duration> {
    for i in 0..n + LIVE {
        db.put(key(i), [7u8; 100])?;
    }
    let (pops, ()) = timed(|| {
        for i in 1..=n {
            db.delete_range("q:", key(i))?;
        }
        Ok(())
    })?;
    Ok(pops)
}

/// The figures of one run, in order: (name with unit, value).
type Figures = Vec<(String, f64)>;

/// Times `iter()` creation, the first item and the mean `get`, checking the answers.
fn reads(db: &Db, n: u64, place: &str, figures: &mut Figures) -> aeternusdb::Result<()> {
    let (create, mut iter) = timed(|| db.iter())?;
    let (first, item) = timed(|| iter.next().transpose())?;
    let first_key = item.map(|(k, _)| k);
    assert_eq!(first_key.as_deref(), Some(key(n).as_bytes()), "first live item");
    let (gets, found) = timed(|| {
        let mut found = 0u64;
        for g in 0..GETS {
            // Spread over the popped items and the live ones.
            let i = if g % 2 == 0 { g * n / GETS } else { n + g % LIVE };
            found += u64::from(db.get(key(i))?.is_some());
        }
        Ok(found)
    })?;
    assert_eq!(found, GETS / 2, "every live item and no popped one");
    figures.push((format!("{place}: iter(), ms"), ms(create)));
    figures.push((format!("{place}: first item, ms"), ms(first)));
    figures.push((format!("{place}: get, µs"), ms(gets) * 1e3 / GETS as f64));
    Ok(())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn run(n: u64) -> aeternusdb::Result<Figures> {
    let mut figures = Figures::new();
    let dir = tempfile::tempdir()?;
    let db = Db::open(dir.path(), options())?;
    let pops = fill(&db, n)?;
    figures.push(("delete_range, µs".into(), ms(pops) * 1e3 / n as f64));
    reads(&db, n, "memtable", &mut figures)?;
    let (flush, ()) = timed(|| db.flush())?;
    figures.push(("flush, ms".into(), ms(flush)));
    reads(&db, n, "table", &mut figures)?;
    db.close()?;
    let (open, db) = timed(|| Db::open(dir.path(), options()))?;
    figures.push(("reopen from the table, ms".into(), ms(open)));
    reads(&db, n, "reopened", &mut figures)?;
    db.close()?;

    // The same writes left in the WAL: reopening replays them into the memtable.
    let dir = tempfile::tempdir()?;
    let db = Db::open(dir.path(), options())?;
    fill(&db, n)?;
    db.close()?;
    let (open, db) = timed(|| Db::open(dir.path(), options()))?;
    figures.push(("reopen replaying the WAL, ms".into(), ms(open)));
    reads(&db, n, "replayed", &mut figures)?;
    db.close()?;
    Ok(figures)
}

fn main() -> aeternusdb::Result<()> {
    let sizes: Vec<u64> = std::env::args().skip(1).filter_map(|a| a.parse().ok()).collect();
    let sizes = if sizes.is_empty() { vec![1_000, 10_000, 100_000] } else { sizes };
    let runs: Vec<Vec<Figures>> =
        (0..RUNS).map(|_| sizes.iter().map(|&n| run(n)).collect()).collect::<Result<_, _>>()?;
    println!("best of {RUNS} runs");
    print!("{:<32}", "nested tombstones");
    for n in &sizes {
        print!("{n:>12}");
    }
    println!();
    for (row, (name, _)) in runs[0][0].iter().enumerate() {
        print!("{name:<32}");
        for size in 0..sizes.len() {
            let best = runs.iter().map(|r| r[size][row].1).fold(f64::INFINITY, f64::min);
            print!("{best:>12.3}");
        }
        println!();
    }
    Ok(())
}
