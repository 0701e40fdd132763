//! `aeternus`: the command-line tool of AeternusDB.
//!
//! Every command reports failure as one `error: ...` line on stderr and a non-zero
//! exit status; see `aeternus --help`.

mod commands;
mod format;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use aeternusdb::{Db, Options};
use clap::{Parser, Subcommand};

use commands::{admin, bench, crashtest, data, inspect, io};

/// AeternusDB command-line tool: read, write, load, export and inspect a database.
#[derive(Debug, Parser)]
#[command(name = "aeternus", version)]
struct Cli {
    /// The database directory.
    #[arg(long, global = true, env = "AETERNUS_DIR", value_name = "DIR")]
    dir: Option<PathBuf>,

    /// Log what the engine does to stderr: -v recovery, flushes, compactions, stalls
    /// and errors; -vv also debug events (retries, close).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Set KEY to VALUE (creates the database if missing).
    Put(data::PutArgs),
    /// Print the value of KEY; exit status 1 if it is absent.
    Get(data::GetArgs),
    /// Delete KEY.
    Delete(data::KeyArgs),
    /// Delete every key in [START, END).
    DeleteRange(data::DeleteRangeArgs),
    /// Print key-value pairs in key order.
    Scan(data::ScanArgs),
    /// Load key-value pairs from a JSON Lines or CSV file.
    Load(io::LoadArgs),
    /// Write every key-value pair as JSON Lines or CSV (loadable with `load`).
    Export(io::ExportArgs),
    /// Print memtables, levels, amplification and stalls.
    Stats,
    /// Compact the whole database.
    Compact,
    /// Flush the memtables to SSTables.
    Flush,
    /// Check every file of the database; exit status 1 names each damaged file.
    Verify,
    /// Print the content of one file.
    #[command(subcommand)]
    Dump(inspect::DumpCommand),
    /// Run the benchmark workloads (each in a fresh database under a temporary
    /// directory, inside --dir if given) and print a results table.
    Bench(bench::BenchArgs),
    /// Kill a writing child process over and over (SIGKILL) and check every recovery:
    /// tests crash safety on the filesystem of --dir (default: the current directory).
    Crashtest(crashtest::CrashtestArgs),
    /// The child process of `crashtest`.
    #[command(hide = true)]
    CrashtestChild(crashtest::ChildArgs),
}

/// A failure reported to the user as one line.
#[derive(Debug)]
pub struct CliError {
    message: String,
}

impl CliError {
    /// A failure (exit status 1).
    pub fn new(message: impl Into<String>) -> Self {
        CliError { message: message.into() }
    }
}

impl std::fmt::Display for CliError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl From<aeternusdb::Error> for CliError {
    fn from(e: aeternusdb::Error) -> Self {
        CliError::new(e.to_string())
    }
}

impl From<std::io::Error> for CliError {
    fn from(e: std::io::Error) -> Self {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            // stdout's reader went away (`aeternus scan | head`): nothing more to do.
            std::process::exit(0);
        }
        CliError::new(e.to_string())
    }
}

/// What a command returns: `Ok(false)` means "ran, but the answer is no" (exit 1
/// without an error line, e.g. `verify` found damage it already reported).
pub type CliResult = Result<bool, CliError>;

/// The directory from `--dir` or `AETERNUS_DIR`.
pub fn require_dir(dir: Option<&Path>) -> Result<&Path, CliError> {
    dir.ok_or_else(|| CliError::new("no database directory: pass --dir DIR or set AETERNUS_DIR"))
}

/// Opens the database; only `create` commands make a new one.
pub fn open_db(dir: Option<&Path>, create: bool, sync_writes: bool) -> Result<Db, CliError> {
    let dir = require_dir(dir)?;
    let options = Options { create_if_missing: create, sync_writes, ..Options::default() };
    Db::open(dir, options).map_err(|e| match e {
        aeternusdb::Error::Corruption { .. } | aeternusdb::Error::Locked(_) => e.into(),
        _ if !create && !dir.join("CURRENT").exists() => {
            CliError::new(format!("no database in {}", dir.display()))
        }
        _ => e.into(),
    })
}

fn run(cli: Cli) -> CliResult {
    let dir = cli.dir.as_deref();
    match cli.command {
        Command::Put(args) => data::put(dir, args),
        Command::Get(args) => data::get(dir, args),
        Command::Delete(args) => data::delete(dir, args),
        Command::DeleteRange(args) => data::delete_range(dir, args),
        Command::Scan(args) => data::scan(dir, args),
        Command::Load(args) => io::load(dir, args),
        Command::Export(args) => io::export(dir, args),
        Command::Stats => admin::stats(dir),
        Command::Compact => admin::compact(dir),
        Command::Flush => admin::flush(dir),
        Command::Verify => inspect::verify(dir),
        Command::Dump(command) => inspect::dump(command),
        Command::Bench(args) => bench::bench(dir, args),
        Command::Crashtest(args) => crashtest::crashtest(dir, args),
        Command::CrashtestChild(args) => crashtest::run_child_process(args),
    }
}

/// With `-v`, a subscriber that prints the engine's `tracing` events on stderr (the
/// library installs none: see "Observability" in docs/architecture.md).
fn log_to_stderr(verbose: u8) {
    let level = match verbose {
        0 => return,
        1 => tracing_subscriber::filter::LevelFilter::INFO,
        _ => tracing_subscriber::filter::LevelFilter::DEBUG,
    };
    tracing_subscriber::fmt().with_writer(std::io::stderr).with_max_level(level).init();
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if !e.use_stderr() => {
            // --help and --version.
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            // clap's first line is already `error: ...`; the usage after it is noise.
            let rendered = e.render().to_string();
            let first = rendered.lines().next().unwrap_or("error: bad arguments");
            eprintln!("{first} (see --help)");
            return ExitCode::from(2);
        }
    };
    log_to_stderr(cli.verbose);
    match run(cli) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            let _ = std::io::stdout().flush();
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
