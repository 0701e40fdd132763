//! The child side: one workload on one engine in this process, so that its peak memory
//! and storage writes are its own. Results go to stdout as JSON lines.

use std::io::Write;
use std::path::Path;

use aeternus_workloads::process::peak_rss_bytes;
use aeternus_workloads::{Size, Workload};

use crate::engines::EngineKind;
use crate::run::Result;
use crate::sample::Sample;

pub fn run(
    engine: EngineKind,
    workload: Workload,
    size: Size,
    repeat: u32,
    dir: &Path,
) -> Result<()> {
    let results = engine.run(workload, dir, size)?;
    let peak_rss = peak_rss_bytes();
    let mut out = std::io::stdout().lock();
    for r in &results {
        let sample = Sample::new(engine, workload.name(), repeat, r, peak_rss);
        writeln!(out, "{}", serde_json::to_string(&sample)?)?;
    }
    out.flush()?;
    Ok(())
}
