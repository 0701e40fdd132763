//! The parent side: runs every (workload, repetition, engine) in a child process of its
//! own, appends what each reports to `results.jsonl`, and writes the report at the end.
//!
//! Engines take turns within each repetition, so slow drifts of a shared machine
//! spread over all of them rather than landing on one.

use std::io::{BufRead, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use aeternus_workloads::{Size, Values, Workload};
use clap::Args;
use clap::builder::{PossibleValuesParser, TypedValueParser};
use serde::{Deserialize, Serialize};

use crate::engines::EngineKind;
use crate::report;
use crate::sample::Sample;

pub use aeternus_workloads::Result;

#[derive(Debug, Args)]
pub struct RunArgs {
    /// 100,000 keys instead of 1,000,000 (a smoke run).
    #[arg(long)]
    quick: bool,
    /// Keys per workload, other counts scaled alike; overrides --quick.
    #[arg(long, value_name = "N")]
    keys: Option<u64>,
    /// Values written: `mixed` (half random, half repeated: compressible) or `random`
    /// (incompressible).
    #[arg(long, value_name = "KIND", default_value = "mixed")]
    values: Values,
    /// Run only these engines (repeatable); all by default.
    #[arg(long = "engine", value_enum)]
    engines: Vec<EngineKind>,
    /// Run only workload NAME (repeatable); every workload by default.
    #[arg(long = "workload", value_name = "NAME", value_parser = workload_parser())]
    workloads: Vec<Workload>,
    /// Runs of each workload on each engine; the report gives medians and spread.
    #[arg(long, default_value_t = 3)]
    repeat: u32,
    /// Where the databases go (a fresh subdirectory per run, removed after it).
    #[arg(long, default_value_os_t = std::env::temp_dir())]
    dir: PathBuf,
    /// Where run.json, results.jsonl, RESULTS.md and the charts go.
    #[arg(long, default_value = "docs/benchmarks")]
    out: PathBuf,
    /// A child that runs longer is killed and reported as timed out.
    #[arg(long, value_name = "SECONDS", default_value_t = 1800)]
    timeout: u64,
}

/// What a run was: the report's header. Saved as `run.json`.
#[derive(Debug, Serialize, Deserialize)]
pub struct RunInfo {
    pub command: String,
    pub date: String,
    pub machine: Vec<(String, String)>,
    pub size: Size,
    pub repeats: u32,
    pub engines: Vec<String>,
    pub workloads: Vec<String>,
    /// Runs that failed or timed out: (engine, workload, repetition, message).
    pub failures: Vec<(String, String, u32, String)>,
    pub total_seconds: f64,
}

/// Parses `--workload NAME`; clap lists the valid names in `--help` and in its error.
pub fn workload_parser() -> impl TypedValueParser<Value = Workload> {
    PossibleValuesParser::new(Workload::ALL.map(Workload::name))
        .try_map(|name| name.parse::<Workload>())
}

pub const RUN_FILE: &str = "run.json";
pub const SAMPLES_FILE: &str = "results.jsonl";

pub fn run(args: RunArgs) -> Result<()> {
    let size = match (args.keys, args.quick) {
        (Some(keys), _) => Size::with_keys(keys),
        (None, true) => Size::quick(),
        (None, false) => Size::full(),
    }
    .with_values(args.values);
    let engines = if args.engines.is_empty() { EngineKind::ALL.to_vec() } else { args.engines };
    let workloads = if args.workloads.is_empty() { Workload::ALL.to_vec() } else { args.workloads };
    if args.repeat == 0 {
        return Err("--repeat must be at least 1".into());
    }
    std::fs::create_dir_all(&args.out)?;
    std::fs::create_dir_all(&args.dir)?;
    let mut info = RunInfo {
        // As a reader would type it, not with this binary's path.
        command: std::iter::once("cargo run --release -p aeternus-bench --".to_string())
            .chain(std::env::args().skip(1))
            .collect::<Vec<_>>()
            .join(" "),
        date: shell("date", &["-u", "+%Y-%m-%d %H:%M UTC"]),
        machine: machine(&args.dir),
        size,
        repeats: args.repeat,
        engines: engines.iter().map(|e| e.id().to_string()).collect(),
        workloads: workloads.iter().map(|w| w.name().to_string()).collect(),
        failures: Vec::new(),
        total_seconds: 0.0,
    };
    let mut samples = std::fs::File::create(args.out.join(SAMPLES_FILE))?;
    let started = Instant::now();
    for &workload in &workloads {
        for repeat in 0..args.repeat {
            for &engine in engines.iter().filter(|e| e.runs(workload)) {
                let dir = args.dir.join(format!(
                    "aeternus-bench-{}-{}-{workload}-{repeat}",
                    std::process::id(),
                    engine.id()
                ));
                let outcome = child(engine, workload, repeat, size, &dir, args.timeout);
                let _ = std::fs::remove_dir_all(&dir);
                match outcome {
                    Ok(lines) => {
                        for line in &lines {
                            writeln!(samples, "{}", serde_json::to_string(line)?)?;
                            eprintln!(
                                "{:<20} {:<17} #{repeat} {:>12.0} ops/s{}",
                                line.row,
                                engine.id(),
                                line.ops_per_sec(),
                                if line.verified == Some(false) { "  VERIFY FAILED" } else { "" }
                            );
                        }
                        samples.flush()?;
                    }
                    Err(message) => {
                        eprintln!("{workload:<20} {:<17} #{repeat} FAILED: {message}", engine.id());
                        info.failures.push((
                            engine.id().into(),
                            workload.to_string(),
                            repeat,
                            message,
                        ));
                    }
                }
            }
        }
    }
    info.total_seconds = started.elapsed().as_secs_f64();
    std::fs::write(args.out.join(RUN_FILE), serde_json::to_string_pretty(&info)?)?;
    report::write(&args.out)
}

/// Runs one child and returns its samples, or why it failed.
fn child(
    engine: EngineKind,
    workload: Workload,
    repeat: u32,
    size: Size,
    dir: &Path,
    timeout: u64,
) -> std::result::Result<Vec<Sample>, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let mut child = Command::new(exe)
        .args(["child", "--engine", engine.id(), "--workload", workload.name()])
        .args(["--keys", &size.keys.to_string(), "--values", size.values.name()])
        .args(["--repeat", &repeat.to_string()])
        .arg("--dir")
        .arg(dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| e.to_string())?;
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
            break status;
        }
        if started.elapsed() > Duration::from_secs(timeout) {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("timed out after {timeout} s"));
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut stderr = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_string(&mut stderr);
    }
    if !status.success() {
        let last = stderr.lines().last().unwrap_or("no message").to_string();
        return Err(format!("{status}: {last}"));
    }
    let stdout = child.stdout.take().ok_or("no stdout")?;
    std::io::BufReader::new(stdout)
        .lines()
        .map(|line| {
            let line = line.map_err(|e| e.to_string())?;
            serde_json::from_str(&line).map_err(|e| format!("bad child output {line:?}: {e}"))
        })
        .collect()
}

/// The facts about the machine the report's header gives.
fn machine(dir: &Path) -> Vec<(String, String)> {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name").map(|v| v.trim_start_matches([' ', '\t', ':'])))
        .unwrap_or("unknown")
        .to_string();
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let memory = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .map_or("unknown".into(), |kib| format!("{:.1} GiB", kib as f64 / (1 << 20) as f64));
    let filesystem = shell("df", &["--output=fstype", &dir.to_string_lossy()])
        .lines()
        .last()
        .unwrap_or("unknown")
        .trim()
        .to_string();
    vec![
        ("CPU".into(), format!("{cpu}, {cores} cores available")),
        ("Memory".into(), memory),
        ("OS".into(), shell("uname", &["-sr"])),
        ("Storage".into(), format!("{} ({filesystem})", dir.display())),
        ("rustc".into(), shell("rustc", &["--version"])),
        ("Commit".into(), commit()),
    ]
}

/// The commit the run measured, `-dirty` if the tree had changes.
fn commit() -> String {
    let head = shell("git", &["rev-parse", "--short", "HEAD"]);
    let dirty = !shell("git", &["status", "--porcelain", "--untracked-files=no"]).is_empty();
    if dirty && head != "unknown" { format!("{head}-dirty") } else { head }
}

/// The trimmed stdout of a command, or `unknown`.
fn shell(program: &str, args: &[&str]) -> String {
    Command::new(program)
        .args(args)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "unknown".into())
}
