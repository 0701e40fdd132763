//! The child of a crash test: opens the database with its cycle's options and writes
//! until it is killed.
//!
//! It reports on stdout, one line per event, each written before the next step:
//! `open` once the database is open, `ack <writer> <batch> <sync|buffered>` after each
//! write returns, `maintenance` after each manual compaction or flush and `snapshot`
//! after each snapshot check. Any error or failed check ends it with exit status 3 and
//! the reason on stderr: the parent expects to kill it, so an exit is a failure.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use aeternusdb::{Db, Iter, WriteOptions};
use clap::Args;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::plan::CyclePlan;
use super::workload::{self, partition_bounds};

#[derive(Debug, Args)]
pub struct ChildArgs {
    /// The database.
    #[arg(long)]
    db: PathBuf,
    #[arg(long)]
    seed: u64,
    #[arg(long)]
    cycle: u64,
    /// The first batch number of each writer, comma-separated.
    #[arg(long, value_delimiter = ',', num_args = 1..)]
    start: Vec<u64>,
}

/// Set in the environment, the child loses writes on purpose (see [`run`]).
pub const SABOTAGE_ENV: &str = "AETERNUS_CRASHTEST_SABOTAGE";

/// Ends the child with a failure the parent reports.
fn fail(what: &str, e: impl std::fmt::Display) -> ! {
    eprintln!("{what}: {e}");
    std::process::exit(3);
}

/// One line on stdout, written through before the caller goes on.
fn report(line: std::fmt::Arguments<'_>) {
    let mut out = std::io::stdout().lock();
    if out.write_fmt(line).and_then(|()| out.write_all(b"\n")).and_then(|()| out.flush()).is_err() {
        // The parent is gone: nothing to report to.
        std::process::exit(4);
    }
}

pub fn run(args: ChildArgs) -> ! {
    let plan = CyclePlan::new(args.seed, args.cycle);
    if args.start.len() != plan.writers {
        fail(
            "bad arguments",
            format!("{} start numbers for {} writers", args.start.len(), plan.writers),
        );
    }
    let db = Db::open(&args.db, plan.options()).unwrap_or_else(|e| fail("open", e));
    report(format_args!("open"));

    // The self-test of cli/tests/cli.rs: writer 0 acknowledges every tenth batch
    // without writing it, an engine that loses writes, which the parent must catch.
    let sabotage = std::env::var_os(SABOTAGE_ENV).is_some();
    let mut threads = Vec::new();
    for (w, &start) in args.start.iter().enumerate() {
        let (db, plan) = (db.clone(), plan.clone());
        let mut rng = StdRng::seed_from_u64(args.seed ^ args.cycle.rotate_left(17) ^ w as u64);
        threads.push(std::thread::spawn(move || {
            for n in start.. {
                let ops = workload::batch(args.seed, plan.db.shape, w, n);
                let batch = workload::to_write_batch(&ops).unwrap_or_else(|e| fail("batch", e));
                let sync = rng.gen_bool(plan.sync_ratio);
                if sabotage && w == 0 && n % 10 == 9 {
                    report(format_args!("ack {w} {n} sync"));
                    continue;
                }
                if let Err(e) = db.write_with(&batch, WriteOptions { sync }) {
                    fail(&format!("writer {w} batch {n}"), e);
                }
                report(format_args!("ack {w} {n} {}", if sync { "sync" } else { "buffered" }));
            }
        }));
    }
    let mut rng = StdRng::seed_from_u64(args.seed ^ args.cycle ^ 0x5eed);
    if plan.manual_compactions {
        let (db, writers, space) = (db.clone(), plan.writers, plan.db.shape.keys_per_writer);
        let mut rng = StdRng::seed_from_u64(rng.r#gen());
        threads.push(std::thread::spawn(move || maintain(&db, writers, space, &mut rng)));
    }
    if plan.readers {
        let (db, writers) = (db.clone(), plan.writers);
        let mut rng = StdRng::seed_from_u64(rng.r#gen());
        threads.push(std::thread::spawn(move || read(&db, writers, &mut rng)));
    }
    for thread in threads {
        if thread.join().is_err() {
            fail("thread", "panicked");
        }
    }
    fail("child", "every thread ended");
}

/// Manual compactions of random ranges, whole compactions and flushes, forever.
fn maintain(db: &Db, writers: usize, space: u32, rng: &mut StdRng) {
    loop {
        let result = match rng.gen_range(0..20) {
            0..=2 => db.compact(),
            3..=7 => db.flush(),
            _ => {
                let w = rng.gen_range(0..writers);
                let a = rng.gen_range(0..space);
                let b = rng.gen_range(a..=space);
                db.compact_range(workload::key(w, a), workload::key(w, b))
            }
        };
        result.unwrap_or_else(|e| fail("manual compaction", e));
        report(format_args!("maintenance"));
        std::thread::sleep(Duration::from_millis(rng.gen_range(0..20)));
    }
}

/// Holds snapshots and iterators open while the writers write and files are flushed,
/// compacted and deleted, and checks that what they show does not change.
fn read(db: &Db, writers: usize, rng: &mut StdRng) {
    // Iterators over the live database, advanced a little now and then: each pins
    // the tables it reads.
    let mut held: Vec<(Iter, Option<Vec<u8>>)> = Vec::new();
    loop {
        let (start, end) = partition_bounds(rng.gen_range(0..writers));
        let snapshot = db.snapshot().unwrap_or_else(|e| fail("snapshot", e));
        let scan = |what: &str| -> Vec<(Vec<u8>, Vec<u8>)> {
            snapshot
                .range(start.clone()..end.clone())
                .and_then(|iter| {
                    iter.map(|entry| entry.map(|(k, v)| (k.to_vec(), v.to_vec()))).collect()
                })
                .unwrap_or_else(|e| fail(what, e))
        };
        let first = scan("snapshot scan");
        std::thread::sleep(Duration::from_millis(rng.gen_range(0..30)));
        if scan("snapshot rescan") != first {
            fail("snapshot", "a second scan of the same snapshot differs from the first");
        }
        for (key, value) in first.iter().step_by(7) {
            let got = snapshot.get(key).unwrap_or_else(|e| fail("snapshot get", e));
            if got.as_deref() != Some(&value[..]) {
                fail(
                    "snapshot get",
                    format!("{} differs from the scan", String::from_utf8_lossy(key)),
                );
            }
        }
        drop(snapshot);
        report(format_args!("snapshot"));

        if held.len() < 4 {
            held.push((db.iter().unwrap_or_else(|e| fail("iterator", e)), None));
        }
        for (iter, last) in &mut held {
            for _ in 0..rng.gen_range(0..50) {
                match iter.next() {
                    Some(Ok((key, _))) => {
                        if last.as_deref().is_some_and(|last| last >= &key[..]) {
                            fail("iterator", "keys out of order");
                        }
                        *last = Some(key.to_vec());
                    }
                    Some(Err(e)) => fail("iterator", e),
                    None => break,
                }
            }
        }
        if rng.gen_ratio(1, 4) && !held.is_empty() {
            held.swap_remove(rng.gen_range(0..held.len()));
        }
    }
}
