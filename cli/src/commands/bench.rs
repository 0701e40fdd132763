//! `bench`: the workloads of `aeternus-workloads` on this AeternusDB.

use std::ffi::OsStr;
use std::io::Write;
use std::path::Path;
use std::time::Instant;

use aeternus_workloads::{BenchDb, Progress, Size, Values, Workload, format_table, run};
use clap::builder::{PossibleValue, TypedValueParser};
use clap::error::ErrorKind;
use clap::{Arg, Args, Command};
use indicatif::ProgressBar;

use super::progress_bar;
use crate::{CliError, CliResult};

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// 100,000 keys instead of 1,000,000 (a smoke run).
    #[arg(long)]
    quick: bool,
    /// Run only workload NAME (repeatable); every workload by default.
    #[arg(long = "workload", value_name = "NAME", value_parser = WorkloadParser)]
    workloads: Vec<Workload>,
    /// Keys per workload, other counts scaled alike; overrides --quick (for tests).
    #[arg(long, value_name = "N", hide = true)]
    keys: Option<u64>,
    /// Values written: `mixed` (half random, half repeated: compressible) or `random`
    /// (incompressible).
    #[arg(long, value_name = "KIND", default_value = "mixed")]
    values: Values,
}

/// Parses `--workload NAME`. Unlike clap's `PossibleValuesParser`, whose error lists the
/// valid names on a line of its own (which `main` drops), the error is one line with
/// every valid name; `--help` still lists them.
#[derive(Debug, Clone, Copy)]
struct WorkloadParser;

impl TypedValueParser for WorkloadParser {
    type Value = Workload;

    fn parse_ref(
        &self,
        cmd: &Command,
        _arg: Option<&Arg>,
        value: &OsStr,
    ) -> Result<Workload, clap::Error> {
        value
            .to_string_lossy()
            .parse()
            .map_err(|e| clap::Error::raw(ErrorKind::InvalidValue, format!("{e}\n")).with_cmd(cmd))
    }

    fn possible_values(&self) -> Option<Box<dyn Iterator<Item = PossibleValue> + '_>> {
        Some(Box::new(Workload::ALL.into_iter().map(|w| PossibleValue::new(w.name()))))
    }
}

/// One indicatif bar reused by every phase; hidden when stderr is not a terminal.
struct Bar(ProgressBar);

impl Progress for Bar {
    fn start(&self, label: &str, total: u64) {
        self.0.set_length(total);
        self.0.set_position(0);
        self.0.set_message(label.to_string());
    }

    fn advance(&self, n: u64) {
        self.0.inc(n);
    }
}

pub fn bench(dir: Option<&Path>, args: BenchArgs) -> CliResult {
    let size = match (args.keys, args.quick) {
        (Some(keys), _) => Size::with_keys(keys),
        (None, true) => Size::quick(),
        (None, false) => Size::full(),
    }
    .with_values(args.values);
    let workloads = if args.workloads.is_empty() { Workload::ALL.to_vec() } else { args.workloads };
    // A directory of our own (inside --dir if given), removed at the end.
    let root = match dir {
        Some(dir) if dir.join("CURRENT").exists() => {
            return Err(CliError::new(format!(
                "{} holds a database; bench needs a directory of its own",
                dir.display()
            )));
        }
        Some(dir) => {
            std::fs::create_dir_all(dir)?;
            tempfile::Builder::new().prefix("aeternus-bench-").tempdir_in(dir)?
        }
        None => tempfile::Builder::new().prefix("aeternus-bench-").tempdir()?,
    };

    let progress = Bar(progress_bar(0, "{msg:28} {bar:40} {pos}/{len} {per_sec} eta {eta}"));
    let mut out = std::io::stdout();
    writeln!(
        out,
        "aeternus bench: {} keys of 16 B, 100 B values; {} synced puts; in {}",
        size.keys,
        size.sync_ops,
        root.path().display()
    )?;

    let mut results = Vec::new();
    let started = Instant::now();
    for workload in workloads {
        let workload_dir = root.path().join(workload.name());
        let result = run::<BenchDb>(workload, &workload_dir, size, &progress);
        // Each workload's database is removed as soon as it is done.
        let _ = std::fs::remove_dir_all(&workload_dir);
        results.extend(result.map_err(|e| CliError::new(format!("{workload}: {e}")))?);
    }
    progress.0.finish_and_clear();
    let engine = format!("aeternusdb {}", env!("CARGO_PKG_VERSION"));
    writeln!(out, "\n{}", format_table(&engine, &results))?;
    writeln!(out, "total {:.1} s", started.elapsed().as_secs_f64())?;
    out.flush()?;

    let failed: Vec<&str> =
        results.iter().filter(|r| r.verified == Some(false)).map(|r| r.name.as_str()).collect();
    if !failed.is_empty() {
        return Err(CliError::new(format!("read verification failed: {}", failed.join(", "))));
    }
    Ok(true)
}
