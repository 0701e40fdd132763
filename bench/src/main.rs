//! `aeternus-bench`: the workloads of docs/workloads.md on AeternusDB and its peers, side by
//! side, each engine and workload in a process of its own, written up as
//! `docs/benchmarks/RESULTS.md` with one SVG chart per workload. See bench/README.md.

mod chart;
mod child;
mod engines;
mod report;
mod run;
mod sample;

use std::path::PathBuf;
use std::process::ExitCode;

use aeternus_workloads::{Size, Values, Workload};
use clap::{Parser, Subcommand};

use crate::engines::EngineKind;

#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the workloads on the engines, then write the report.
    Run(run::RunArgs),
    /// Rewrite RESULTS.md and the charts from the run.json and results.jsonl of a run.
    Report {
        /// Where the run wrote its results.
        #[arg(long, default_value = "docs/benchmarks")]
        out: PathBuf,
    },
    /// One workload on one engine, results on stdout as JSON lines (what `run` spawns).
    #[command(hide = true)]
    Child {
        #[arg(long, value_enum)]
        engine: EngineKind,
        #[arg(long, value_parser = run::workload_parser())]
        workload: Workload,
        #[arg(long)]
        keys: u64,
        #[arg(long, default_value = "mixed")]
        values: Values,
        #[arg(long, default_value_t = 0)]
        repeat: u32,
        /// A fresh directory for the database.
        #[arg(long)]
        dir: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run(args) => run::run(args),
        Command::Report { out } => report::write(&out),
        Command::Child { engine, workload, keys, values, repeat, dir } => {
            child::run(engine, workload, Size::with_keys(keys).with_values(values), repeat, &dir)
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("aeternus-bench: {e}");
            ExitCode::FAILURE
        }
    }
}
