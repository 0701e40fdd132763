//! Peak memory of reopening a database whose writes are all still in the WAL: writes
//! about 200 MB of values with a write buffer large enough that nothing is flushed,
//! closes (which does not flush), then reopens in a fresh process and prints that
//! process's peak resident set (`VmHWM` of `/proc/self/status`) before and after the
//! open, and how long the WAL replay took.
//!
//! ```text
//! cargo run --example replay_memory            # in a temporary directory
//! cargo run --example replay_memory -- DIR     # keeps the database in DIR, reuses it
//! ```
//! Each phase runs in its own process (the example starts itself again), so the
//! writing phase's memory does not count towards the reopen's peak.

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use aeternusdb::{Db, Options, WriteBatch};

const VALUE_LEN: usize = 1000;
const KEYS: u64 = 200_000;
const BATCH: u64 = 100;

fn options() -> Options {
    Options { write_buffer_size: 1 << 30, auto_compaction: false, ..Options::default() }
}

/// This process's peak resident set in KiB, from `/proc/self/status`.
fn peak_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn write(dir: &Path) -> aeternusdb::Result<()> {
    let db = Db::open(dir, options())?;
    let mut value = vec![0u8; VALUE_LEN];
    for start in (0..KEYS).step_by(BATCH as usize) {
        let mut batch = WriteBatch::new();
        for i in start..start + BATCH {
            // Distinct, poorly compressible values.
            for (j, b) in value.iter_mut().enumerate() {
                *b = (i.wrapping_mul(2_654_435_761).wrapping_add(j as u64 * 40_503) >> 7) as u8;
            }
            batch.put(format!("key{i:012}"), &value)?;
        }
        db.write(batch)?;
    }
    db.close()
}

fn reopen(dir: &Path) -> aeternusdb::Result<()> {
    let wal_bytes: u64 = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".wal"))
        .filter_map(|e| e.metadata().ok())
        .map(|m| m.len())
        .sum();
    let before = peak_rss_kib();
    let started = Instant::now();
    let db = Db::open(dir, options())?;
    let elapsed = started.elapsed();
    let after = peak_rss_kib();
    let found = db.get(format!("key{:012}", KEYS - 1))?.map(|v| v.len());
    println!(
        "WAL {:.1} MB: peak RSS {:.1} MB before open, {:.1} MB after (+{:.1} MB); \
         replay {:.2} s; last key {found:?}",
        wal_bytes as f64 / 1e6,
        before as f64 / 1024.0,
        after as f64 / 1024.0,
        (after - before) as f64 / 1024.0,
        elapsed.as_secs_f64()
    );
    db.close()
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("--write") => return Ok(write(Path::new(&args[2]))?),
        Some("--reopen") => return Ok(reopen(Path::new(&args[2]))?),
        _ => {}
    }
    let temp;
    let dir = match args.get(1) {
        Some(dir) => Path::new(dir).to_path_buf(),
        None => {
            temp = tempfile::tempdir()?;
            temp.path().join("db")
        }
    };
    let exe = std::env::current_exe()?;
    // A database kept from an earlier run is only reopened.
    let write_first = !dir.join("CURRENT").exists();
    for phase in ["--write", "--reopen"].into_iter().skip(usize::from(!write_first)) {
        let status = Command::new(&exe).arg(phase).arg(&dir).status()?;
        if !status.success() {
            return Err(format!("{phase} failed: {status}").into());
        }
    }
    Ok(())
}
