//! `crashtest`: kills a writing child process with SIGKILL over and over, on the
//! filesystem the user points it at, and checks every recovery against an oracle.
//!
//! One cycle: the parent starts this binary again as a hidden `crashtest-child`
//! (child.rs) with the cycle's randomised options (plan.rs), lets it write batches
//! (workload.rs) and run compactions, flushes, snapshots and iterators, kills it at a
//! random moment, reopens the database itself and checks (verify.rs):
//! - the whole database against the expected state (oracle.rs): every acknowledged
//!   batch there, at most the one in flight per writer, whole, nothing else;
//! - a backward scan and point reads agree with the forward scan;
//! - after closing, the directory holds exactly the manifest's tables and no
//!   temporary file.
//!
//! Cycles continue on the state the last kill left, so kills also land in recovery
//! (one in ten within its first 15 ms). The compaction strategy is drawn again every
//! [`plan::CYCLES_PER_STRATEGY`] cycles, so a database is reopened under the other
//! strategy half the time. Every [`plan::CYCLES_PER_DB`] cycles the database is
//! compacted whole with automatic compaction on, checked once more and removed, and a
//! new one starts with a new data shape. The first violation stops the run with a
//! reproducer; the database is kept.

mod child;
mod oracle;
mod plan;
mod verify;
mod workload;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use clap::Args;

pub use child::{ChildArgs, run as run_child_process};
use oracle::Oracle;
use plan::{CYCLES_PER_DB, CyclePlan, strategy_history};
use verify::{compact_and_check, reopen_and_check};

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
                let (number, cycles) =
                    ((cycle - 1) / CYCLES_PER_DB, (cycle - 1) % CYCLES_PER_DB + 1);
                let line = format!(
                    "database {number} ({}): {cycles} cycles ok, compacted whole and checked ({} s)",
                    strategy_history(seed, number, cycles),
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
        let report =
            match child::start_and_kill(&exe, &db_dir, seed, cycle, &starts, plan.kill_after) {
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
