//! The child of a crash test, both sides: the child process, which opens the database
//! with its cycle's options and writes until it is killed, and the parent's start,
//! kill and reading of its reports ([`start_and_kill`]).
//!
//! It reports on stdout, one line per event, each written before the next step:
//! `open` once the database is open, `ack <writer> <batch> <sync|buffered>` after each
//! write returns, `maintenance` after each manual compaction or flush and `snapshot`
//! after each snapshot check. Any error or failed check ends it with exit status 3 and
//! the reason on stderr: the parent expects to kill it, so an exit is a failure.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
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

/// What one child reported before it died.
#[derive(Debug, Default)]
pub struct ChildReport {
    pub opened: bool,
    /// Acknowledged batches per writer (consecutive from the start numbers).
    pub acked: Vec<u64>,
    pub synced: u64,
    pub buffered: u64,
    pub maintenance: u64,
    pub snapshots: u64,
    pub stderr: String,
}

/// Runs the child of `cycle` on `db` and kills it after `kill_after`.
pub fn start_and_kill(
    exe: &Path,
    db: &Path,
    seed: u64,
    cycle: u64,
    starts: &[u64],
    kill_after: Duration,
) -> Result<ChildReport, String> {
    let starts_arg = starts.iter().map(u64::to_string).collect::<Vec<_>>().join(",");
    let mut child = Command::new(exe)
        .arg("crashtest-child")
        .arg("--db")
        .arg(db)
        .args(["--seed", &seed.to_string(), "--cycle", &cycle.to_string()])
        .args(["--start", &starts_arg])
        .stdin(Stdio::null())
        .process_group(0)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("could not start the child: {e}"))?;
    let (Some(stdout), Some(mut stderr)) = (child.stdout.take(), child.stderr.take()) else {
        return Err("the child has no stdout or stderr".into());
    };
    let starts = starts.to_vec();
    let reader = std::thread::spawn(move || read_reports(BufReader::new(stdout), &starts));
    let errors = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    std::thread::sleep(kill_after);
    let killed = child.kill();
    let status = child.wait().map_err(|e| format!("could not wait for the child: {e}"))?;
    let stderr = errors.join().unwrap_or_default();
    let mut report = reader.join().map_err(|_| "the report reader panicked".to_string())??;
    report.stderr = stderr;
    if killed.is_err() || status.signal() != Some(9) {
        return Err(format!(
            "the child ended by itself ({status}) instead of being killed:\n{}",
            report.stderr
        ));
    }
    Ok(report)
}

/// Parses the child's report lines (see the module documentation).
fn read_reports(lines: impl BufRead, starts: &[u64]) -> Result<ChildReport, String> {
    let mut report = ChildReport { acked: vec![0; starts.len()], ..ChildReport::default() };
    for line in lines.lines() {
        let Ok(line) = line else { break };
        let words: Vec<&str> = line.split(' ').collect();
        match words[..] {
            ["open"] => report.opened = true,
            ["maintenance"] => report.maintenance += 1,
            ["snapshot"] => report.snapshots += 1,
            ["ack", w, n, kind] => {
                let (Ok(w), Ok(n)) = (w.parse::<usize>(), n.parse::<u64>()) else {
                    return Err(format!("bad report line from the child: {line:?}"));
                };
                let expected = starts.get(w).map(|start| start + report.acked[w]);
                if expected != Some(n) {
                    return Err(format!(
                        "writer {w} acknowledged batch {n}, expected {expected:?}: acks out of order"
                    ));
                }
                report.acked[w] += 1;
                if kind == "sync" { report.synced += 1 } else { report.buffered += 1 }
            }
            _ => return Err(format!("bad report line from the child: {line:?}")),
        }
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_must_acknowledge_in_order() {
        let lines = "open\nack 0 5 sync\nack 1 2 buffered\nack 0 6 buffered\nmaintenance\n";
        let report = read_reports(lines.as_bytes(), &[5, 2]).unwrap();
        assert!(report.opened);
        assert_eq!(report.acked, [2, 1]);
        assert_eq!((report.synced, report.buffered, report.maintenance), (1, 2, 1));

        let skipped = read_reports("ack 0 5 sync\nack 0 7 sync\n".as_bytes(), &[5]);
        assert!(skipped.unwrap_err().contains("out of order"));
        let unknown = read_reports("ack 3 0 sync\n".as_bytes(), &[5]);
        assert!(unknown.is_err());
    }
}
