//! `crashtest`: kills a writing child process with SIGKILL over and over, on the
//! filesystem the user points it at, and checks every recovery against an oracle.
//!
//! One cycle: the parent starts this binary again as a hidden `crashtest-child`
//! (child.rs) with the cycle's randomised options (plan.rs), lets it write batches
//! (workload.rs) and run compactions, flushes, snapshots and iterators, kills it at a
//! random moment, reopens the database itself and checks:
//! - the whole database against the expected state (oracle.rs): every acknowledged
//!   batch there, at most the one in flight per writer, whole, nothing else;
//! - a backward scan and point reads agree with the forward scan;
//! - after closing, the directory holds exactly the manifest's tables and no
//!   temporary file.
//!
//! Cycles continue on the state the last kill left, so kills also land in recovery
//! (one in ten within its first 15 ms). Every [`plan::CYCLES_PER_DB`] cycles the
//! database is compacted whole with automatic compaction on, checked once more and
//! removed, and a new one starts with a new compaction strategy and data shape. The
//! first violation stops the run with a reproducer; the database is kept.

mod child;
mod oracle;
mod plan;
mod workload;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use aeternusdb::fs::OsFs;
use aeternusdb::internals::{FileKind, Manifest, classify};
use aeternusdb::{Db, Options};
use clap::Args;

pub use child::{ChildArgs, run as run_child_process};
use oracle::Oracle;
use plan::{CYCLES_PER_DB, CyclePlan};

use super::progress_bar;
use crate::{CliError, CliResult};

#[derive(Debug, Args)]
pub struct CrashtestArgs {
    /// How long to run, e.g. `90s`, `10m`, `2h` (default 10m, or unbounded with
    /// --cycles).
    #[arg(long, value_parser = humantime::parse_duration)]
    duration: Option<Duration>,
    /// Stop after N cycles (or at --duration, whichever comes first).
    #[arg(long, value_name = "N")]
    cycles: Option<u64>,
    /// The seed of every option, write and kill time (random by default; printed).
    #[arg(long, value_name = "N")]
    seed: Option<u64>,
}

/// Totals of a run.
#[derive(Debug, Default)]
struct Totals {
    cycles: u64,
    databases: u64,
    /// Kills before the child had opened the database (in recovery or creation).
    killed_in_open: u64,
    synced: u64,
    buffered: u64,
    /// Batches in flight at a kill that the database held (whole).
    recovered_unacknowledged: u64,
    keys_checked: u64,
    maintenance: u64,
    snapshots: u64,
    /// Cycles per strategy and per compression.
    mix: BTreeMap<String, u64>,
}

pub fn crashtest(dir: Option<&Path>, args: CrashtestArgs) -> CliResult {
    let seed = args.seed.unwrap_or_else(rand::random);
    let limit = match (args.duration, args.cycles) {
        (None, None) => Some(Duration::from_secs(600)),
        (duration, _) => duration,
    };
    let parent = match dir {
        Some(dir) if dir.join("CURRENT").exists() => {
            return Err(CliError::new(format!(
                "{} holds a database; crashtest needs a directory of its own",
                dir.display()
            )));
        }
        Some(dir) => dir.to_path_buf(),
        None => std::env::current_dir()?,
    };
    std::fs::create_dir_all(&parent)?;
    let work = tempfile::Builder::new().prefix("aeternus-crashtest-").tempdir_in(&parent)?;
    let exe = std::env::current_exe()?;

    let mut out = std::io::stdout();
    writeln!(
        out,
        "aeternus crashtest: seed {seed}, {}, in {}",
        match (limit, args.cycles) {
            (Some(limit), Some(cycles)) => format!(
                "{cycles} cycles or {}, whichever comes first",
                humantime::format_duration(limit)
            ),
            (Some(limit), None) => format!("for {}", humantime::format_duration(limit)),
            (None, Some(cycles)) => format!("{cycles} cycles"),
            (None, None) => unreachable!("a limit is set above"),
        },
        work.path().display()
    )?;
    out.flush()?;

    // Ctrl-C or SIGTERM: stop after the current cycle, with the summary (the child is
    // in a process group of its own, so the terminal's SIGINT does not reach it); a
    // second one exits at once.
    let interrupted = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register_conditional_shutdown(signal, 1, interrupted.clone())?;
        signal_hook::flag::register(signal, interrupted.clone())?;
    }
    let bar = progress_bar(args.cycles.unwrap_or(0), "{elapsed_precise} {pos} cycles  {msg}");
    let started = Instant::now();
    let mut totals = Totals::default();
    let mut oracle = None;
    let mut cycle = 0;
    let violation = loop {
        let done = args.cycles.is_some_and(|n| cycle >= n)
            || limit.is_some_and(|limit| started.elapsed() >= limit)
            || interrupted.load(Ordering::Relaxed);
        let db_dir = work.path().join(format!("db-{}", cycle / CYCLES_PER_DB));
        if cycle % CYCLES_PER_DB == 0 || done {
            // The database before this one gets its final check.
            if let Some(mut previous) = oracle.take() {
                let previous_dir = work.path().join(format!("db-{}", (cycle - 1) / CYCLES_PER_DB));
                let plan = CyclePlan::new(seed, cycle - 1);
                if let Err(e) = compact_and_check(&previous_dir, &plan, &mut previous) {
                    break Some((cycle - 1, plan, e));
                }
                let line = format!(
                    "database {} ({}): {} cycles ok, compacted whole and checked ({} s)",
                    (cycle - 1) / CYCLES_PER_DB,
                    plan.mix_labels()[0],
                    (cycle - 1) % CYCLES_PER_DB + 1,
                    started.elapsed().as_secs()
                );
                // A hidden bar (stderr not a terminal) prints nothing.
                if bar.is_hidden() {
                    writeln!(out, "{line}")?;
                } else {
                    bar.println(line);
                }
                std::fs::remove_dir_all(&previous_dir)?;
            }
            if done {
                break None;
            }
            totals.databases += 1;
        }
        let plan = CyclePlan::new(seed, cycle);
        let oracle = oracle.get_or_insert_with(|| Oracle::new(seed, plan.db.shape));
        for label in plan.mix_labels() {
            *totals.mix.entry(label).or_default() += 1;
        }
        let starts = oracle.next_batches(plan.writers);
        let report = match run_child(&exe, &db_dir, seed, cycle, &starts, plan.kill_after) {
            Ok(report) => report,
            Err(e) => break Some((cycle, plan, e)),
        };
        let checked = match reopen_and_check(&db_dir, &plan, oracle, &report.acked) {
            Ok(checked) => checked,
            Err(e) => break Some((cycle, plan, format!("{e}\nchild stderr:\n{}", report.stderr))),
        };
        totals.cycles += 1;
        totals.killed_in_open += u64::from(!report.opened);
        totals.synced += report.synced;
        totals.buffered += report.buffered;
        totals.recovered_unacknowledged += checked.unacknowledged;
        totals.keys_checked += checked.keys as u64;
        totals.maintenance += report.maintenance;
        totals.snapshots += report.snapshots;
        bar.inc(1);
        bar.set_message(format!(
            "{} batches acknowledged; last: {} writers, +{} batches, {} keys ok",
            totals.synced + totals.buffered,
            plan.writers,
            report.acked.iter().sum::<u64>(),
            checked.keys
        ));
        cycle += 1;
    };
    bar.finish_and_clear();

    let elapsed = Duration::from_secs(started.elapsed().as_secs());
    match violation {
        None => {
            print_summary(&mut out, &totals, elapsed)?;
            if interrupted.load(Ordering::Relaxed) {
                writeln!(out, "interrupted: stopped after cycle {}", totals.cycles)?;
            }
            writeln!(out, "verdict: PASS, 0 violations in {} cycles", totals.cycles)?;
            Ok(true)
        }
        Some((cycle, plan, what)) => {
            let kept = work.keep();
            print_summary(&mut out, &totals, elapsed)?;
            writeln!(
                out,
                "verdict: FAIL at cycle {cycle} (its database's cycle {})",
                cycle % CYCLES_PER_DB
            )?;
            writeln!(out, "{what}")?;
            writeln!(out, "options: {plan}")?;
            writeln!(out, "the databases are kept in {}", kept.display())?;
            writeln!(
                out,
                "reproduce: aeternus crashtest --dir {} --seed {seed} --cycles {} (kill times \
                 depend on the machine's timing: a rare failure may need several runs)",
                parent.display(),
                cycle + 1
            )?;
            Ok(false)
        }
    }
}

/// What one child reported before it died.
#[derive(Debug, Default)]
struct ChildReport {
    opened: bool,
    /// Acknowledged batches per writer (consecutive from the start numbers).
    acked: Vec<u64>,
    synced: u64,
    buffered: u64,
    maintenance: u64,
    snapshots: u64,
    stderr: String,
}

/// Runs the child of `cycle` on `db` and kills it after `kill_after`.
fn run_child(
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

/// Parses the child's report lines (see child.rs).
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

/// Reopens the database as recovery leaves it and checks it whole.
fn reopen_and_check(
    dir: &Path,
    plan: &CyclePlan,
    oracle: &mut Oracle,
    acked: &[u64],
) -> Result<oracle::Checked, String> {
    let options = Options { auto_compaction: false, ..plan.options() };
    let db = Db::open(dir, options).map_err(|e| format!("reopen failed: {e}"))?;
    let checked = check_contents(&db, plan, oracle, acked)?;
    db.close().map_err(|e| format!("close failed: {e}"))?;
    check_files(dir)?;
    Ok(checked)
}

/// At the end of a database: automatic compaction on, a whole compaction, and the
/// same checks with nothing in flight.
fn compact_and_check(dir: &Path, plan: &CyclePlan, oracle: &mut Oracle) -> Result<(), String> {
    let db = Db::open(dir, plan.options()).map_err(|e| format!("final reopen failed: {e}"))?;
    db.compact().map_err(|e| format!("final compaction failed: {e}"))?;
    check_contents(&db, plan, oracle, &[])
        .map_err(|e| format!("after the final compaction: {e}"))?;
    db.close().map_err(|e| format!("close failed: {e}"))?;
    check_files(dir)
}

/// Reads the whole database forward, backward and key by key, and checks it
/// against the oracle.
fn check_contents(
    db: &Db,
    plan: &CyclePlan,
    oracle: &mut Oracle,
    acked: &[u64],
) -> Result<oracle::Checked, String> {
    let read = |e: aeternusdb::Error| format!("read failed: {e}");
    let mut found = BTreeMap::new();
    for entry in db.iter().map_err(read)? {
        let (key, value) = entry.map_err(read)?;
        found.insert(key.to_vec(), value.to_vec());
    }
    let mut backward = found.iter().rev();
    for entry in db.iter().map_err(read)?.rev() {
        let (key, value) = entry.map_err(read)?;
        if backward.next() != Some((&key.to_vec(), &value.to_vec())) {
            return Err(format!(
                "a backward scan differs from the forward scan at {}",
                String::from_utf8_lossy(&key)
            ));
        }
    }
    if backward.next().is_some() {
        return Err("a backward scan ends before the forward scan's first key".into());
    }
    let writers = oracle.writers().max(acked.len()).max(plan.writers);
    for w in 0..writers {
        for k in (0..plan.db.shape.keys_per_writer).step_by(7) {
            let key = workload::key(w, k);
            let got = db.get(&key).map_err(read)?;
            if got.as_deref() != found.get(&key).map(Vec::as_slice) {
                return Err(format!(
                    "get({}) differs from the scan",
                    String::from_utf8_lossy(&key)
                ));
            }
        }
    }
    oracle.check(acked, &found)
}

/// After a close: the directory's tables are the manifest's, and no temporary file
/// is left.
fn check_files(dir: &Path) -> Result<(), String> {
    let state = Manifest::load(&OsFs, dir).map_err(|e| format!("manifest: {e}"))?;
    let names = std::fs::read_dir(dir)
        .and_then(|entries| {
            entries.map(|e| e.map(|e| e.file_name())).collect::<Result<Vec<_>, _>>()
        })
        .map_err(|e| format!("listing {}: {e}", dir.display()))?;
    let mut tables = Vec::new();
    for name in names {
        let name = name.to_string_lossy();
        match classify(&name) {
            FileKind::Table(n) => tables.push(n),
            FileKind::Temp => return Err(format!("temporary file {name} left after close")),
            _ => {}
        }
    }
    tables.sort_unstable();
    let named: Vec<u64> = state.tables.keys().copied().collect();
    if tables != named {
        return Err(format!(
            "after close the directory holds tables {tables:?}, the manifest names {named:?}"
        ));
    }
    Ok(())
}

fn print_summary(out: &mut impl Write, totals: &Totals, elapsed: Duration) -> std::io::Result<()> {
    let batches = totals.synced + totals.buffered;
    let mix: Vec<String> = totals.mix.iter().map(|(label, n)| format!("{label} {n}")).collect();
    writeln!(
        out,
        "cycles:     {} in {} on {} databases ({} kills before the child had opened the database)",
        totals.cycles,
        humantime::format_duration(elapsed),
        totals.databases,
        totals.killed_in_open
    )?;
    writeln!(
        out,
        "batches:    {batches} acknowledged ({} synced, {} buffered), {} more in flight at a kill and recovered whole",
        totals.synced, totals.buffered, totals.recovered_unacknowledged
    )?;
    writeln!(
        out,
        "verified:   after every kill, the whole database against the expected state ({} keys in all), a backward scan, point reads, and the files against the manifest",
        totals.keys_checked
    )?;
    writeln!(
        out,
        "background: {} manual compactions and flushes, {} snapshot checks in children",
        totals.maintenance, totals.snapshots
    )?;
    writeln!(out, "mix:        cycles by strategy and compression: {}", mix.join(", "))?;
    Ok(())
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
