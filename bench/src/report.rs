//! The report: `RESULTS.md` (machine, date, command and settings on top, a summary of
//! throughput ratios, then a table per workload with engines as columns and each cell's
//! ratio to RocksDB) and one SVG chart per result row, under `charts/`.
//!
//! Every figure is the median over the run's repetitions; throughput also shows the
//! spread, `[min–max]`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use crate::chart::{self, Bar};
use crate::engines::EngineKind;
use crate::run::{RUN_FILE, Result, RunInfo, SAMPLES_FILE};
use crate::sample::Sample;
use aeternus_workloads::Values;

pub const REPORT_FILE: &str = "RESULTS.md";
pub const CHART_DIR: &str = "charts";
/// Written by hand beside the report: the reasons behind the figures.
pub const ANALYSIS_FILE: &str = "analysis.md";
/// Where, beside a run, the same run with incompressible values lives (`--values random
/// --out <out>/random-values`); the report links it when it exists.
pub const RANDOM_VALUES_DIR: &str = "random-values";

/// What one engine did on one result row, over all repetitions.
struct Cell {
    ops_per_sec: Spread,
    latency_us: Option<[f64; 3]>,
    /// (label, unit, median value), in the order the workload reports them.
    figures: Vec<(String, String, f64)>,
    peak_rss_mib: Option<f64>,
    verified: Option<bool>,
    runs: usize,
}

#[derive(Debug, Clone, Copy)]
pub struct Spread {
    pub median: f64,
    pub min: f64,
    pub max: f64,
}

impl Spread {
    fn of(mut values: Vec<f64>) -> Option<Spread> {
        values.sort_by(f64::total_cmp);
        let (min, max) = (*values.first()?, *values.last()?);
        let mid = values.len() / 2;
        let median =
            if values.len() % 2 == 1 { values[mid] } else { (values[mid - 1] + values[mid]) / 2.0 };
        Some(Spread { median, min, max })
    }
}

fn median(values: Vec<f64>) -> Option<f64> {
    Spread::of(values).map(|s| s.median)
}

impl Cell {
    fn of(samples: &[&Sample]) -> Option<Cell> {
        let ops_per_sec = Spread::of(samples.iter().map(|s| s.ops_per_sec()).collect())?;
        let latency_us = (0..3)
            .map(|i| median(samples.iter().filter_map(|s| s.latency_us.map(|l| l[i])).collect()))
            .collect::<Option<Vec<f64>>>()
            .map(|l| [l[0], l[1], l[2]]);
        let mut figures = Vec::new();
        for f in &samples[0].figures {
            if let Some(m) = median(samples.iter().filter_map(|s| s.figure(&f.label)).collect()) {
                figures.push((f.label.clone(), f.unit.clone(), m));
            }
        }
        let peak_rss_mib = median(
            samples
                .iter()
                .filter_map(|s| s.peak_rss)
                .map(|b| b as f64 / (1 << 20) as f64)
                .collect(),
        );
        let verified = samples.iter().filter_map(|s| s.verified).reduce(|a, b| a && b);
        Some(Cell { ops_per_sec, latency_us, figures, peak_rss_mib, verified, runs: samples.len() })
    }

    fn figure(&self, label: &str) -> Option<f64> {
        self.figures.iter().find(|(l, _, _)| l == label).map(|(_, _, v)| *v)
    }
}

/// One result row (e.g. `fillsync 4 threads`) across the engines.
struct Row {
    name: String,
    cells: Vec<(EngineKind, Cell)>,
}

impl Row {
    fn cell(&self, engine: EngineKind) -> Option<&Cell> {
        self.cells.iter().find(|(e, _)| *e == engine).map(|(_, c)| c)
    }
}

/// Reads `run.json` and `results.jsonl` in `out` and writes the report and charts there.
pub fn write(out: &Path) -> Result<()> {
    let info: RunInfo = serde_json::from_str(
        &std::fs::read_to_string(out.join(RUN_FILE))
            .map_err(|e| format!("{}: {e}", out.join(RUN_FILE).display()))?,
    )?;
    let mut samples = Vec::new();
    for (i, line) in std::fs::read_to_string(out.join(SAMPLES_FILE))?.lines().enumerate() {
        let sample: Sample = serde_json::from_str(line)
            .map_err(|e| format!("{} line {}: {e}", SAMPLES_FILE, i + 1))?;
        samples.push(sample);
    }
    let rows = rows(&samples);
    let engines: Vec<EngineKind> = EngineKind::ALL
        .into_iter()
        .filter(|e| info.engines.iter().any(|id| id == e.id()))
        .collect();

    std::fs::create_dir_all(out.join(CHART_DIR))?;
    for row in &rows {
        let bars: Vec<Bar> = row
            .cells
            .iter()
            .map(|(e, c)| Bar { label: e.label().to_string(), spread: c.ops_per_sec })
            .collect();
        chart::bars(&out.join(CHART_DIR).join(chart_file(&row.name)), &row.name, "ops/s", &bars)?;
    }
    let links = Links {
        analysis: out.join(ANALYSIS_FILE).exists(),
        random_values: out.join(RANDOM_VALUES_DIR).join(REPORT_FILE).exists(),
    };
    std::fs::write(out.join(REPORT_FILE), markdown(&info, &engines, &rows, links))?;
    eprintln!("wrote {} and {} charts", out.join(REPORT_FILE).display(), rows.len());
    Ok(())
}

/// Rows in the order they were run, engines in `EngineKind::ALL` order.
fn rows(samples: &[Sample]) -> Vec<Row> {
    let mut order: Vec<&str> = Vec::new();
    let mut by_row: BTreeMap<(&str, EngineKind), Vec<&Sample>> = BTreeMap::new();
    for s in samples {
        let Some(engine) = EngineKind::from_id(&s.engine) else { continue };
        if !order.contains(&s.row.as_str()) {
            order.push(&s.row);
        }
        by_row.entry((&s.row, engine)).or_default().push(s);
    }
    order
        .into_iter()
        .map(|name| Row {
            name: name.to_string(),
            cells: EngineKind::ALL
                .into_iter()
                .filter_map(|e| Some((e, Cell::of(by_row.get(&(name, e))?)?)))
                .collect(),
        })
        .collect()
}

fn chart_file(row: &str) -> String {
    format!("{}.svg", row.replace(' ', "-"))
}

/// The companion files found beside a report.
#[derive(Debug, Clone, Copy, Default)]
struct Links {
    analysis: bool,
    random_values: bool,
}

fn markdown(info: &RunInfo, engines: &[EngineKind], rows: &[Row], links: Links) -> String {
    let mut md = String::new();
    let _ = writeln!(md, "# AeternusDB beside its peers\n");
    let _ = writeln!(
        md,
        "Generated by `aeternus-bench` (bench/README.md) from `{RUN_FILE}` and `{SAMPLES_FILE}` \
         in this directory; do not edit by hand.\n"
    );
    if links.analysis {
        let _ = writeln!(
            md,
            "Where AeternusDB is behind, and why (profiles): [{ANALYSIS_FILE}]({ANALYSIS_FILE}).\n"
        );
    }
    if links.random_values {
        let _ = writeln!(
            md,
            "The same run with incompressible values: \
             [{RANDOM_VALUES_DIR}/{REPORT_FILE}]({RANDOM_VALUES_DIR}/{REPORT_FILE}).\n"
        );
    }
    let _ = writeln!(md, "- **Date:** {}", info.date);
    let _ = writeln!(md, "- **Command:** `{}`", info.command);
    for (k, v) in &info.machine {
        let _ = writeln!(md, "- **{k}:** {v}");
    }
    let s = &info.size;
    let _ = writeln!(
        md,
        "- **Size:** {} keys of 16 B with 100 B values ({}); fillsync {} synced puts per thread \
         count; seekrandom {} seeks of 100 `next`; deleterange {} deletes of 100 keys",
        thousands(s.keys as f64),
        match s.values {
            Values::Mixed => "half random, half repeated",
            Values::Random => "random: incompressible",
        },
        thousands(s.sync_ops as f64),
        thousands(s.seeks as f64),
        thousands(s.range_deletes as f64),
    );
    let _ = writeln!(
        md,
        "- **Repetitions:** {} per engine and workload, each in a fresh process and directory; \
         engines take turns within a repetition. Total {:.0} min.",
        info.repeats,
        info.total_seconds / 60.0
    );
    let _ = writeln!(md, "\n**Settings.** Buffered writes unless the workload syncs.\n");
    for e in engines {
        let _ = writeln!(md, "- **{}:** {}", e.label(), e.settings());
    }
    let _ = writeln!(
        md,
        "\n**How to read the tables.** Throughput is operations / wall seconds of the timed \
         phase, the median of the repetitions with `[min–max]`. Latencies are medians of \
         per-run HDR-histogram percentiles. Each cell's `(×)` is the ratio to RocksDB's figure \
         in the same row: above 1 is faster for throughput, slower for latency and worse for \
         amplification and memory. Write amplification is `write_bytes` of `/proc/self/io` \
         (every byte the process dirtied, WAL included) over user bytes put; space \
         amplification is the bytes of every file in the database directory after settling \
         over the live user bytes; peak RSS is the child process's `VmHWM`.\n"
    );

    if !info.failures.is_empty() {
        let _ = writeln!(md, "**Failed runs.**\n");
        for (engine, workload, repeat, message) in &info.failures {
            let _ = writeln!(md, "- {engine} {workload} #{repeat}: {message}");
        }
        let _ = writeln!(md);
    }

    summary(&mut md, engines, rows);
    for row in rows {
        detail(&mut md, engines, row);
    }
    md
}

/// Throughput ratios of every row, plus AeternusDB against fjall.
fn summary(md: &mut String, engines: &[EngineKind], rows: &[Row]) {
    let _ = writeln!(md, "## Summary: throughput relative to RocksDB\n");
    let mut header = vec!["workload".to_string(), "RocksDB ops/s".to_string()];
    header.extend(engines.iter().filter(|e| **e != EngineKind::Rocksdb).map(|e| e.label().into()));
    header.push("AeternusDB ÷ fjall".into());
    table_header(md, &header);
    for row in rows {
        let rocks = row.cell(EngineKind::Rocksdb).map(|c| c.ops_per_sec.median);
        let mut cells = vec![
            format!("[{}](#{})", row.name, anchor(&row.name)),
            rocks.map_or("–".into(), thousands),
        ];
        for &e in engines.iter().filter(|e| **e != EngineKind::Rocksdb) {
            cells.push(match (row.cell(e), rocks) {
                (Some(c), Some(r)) => format!("{:.2}×", c.ops_per_sec.median / r),
                (Some(c), None) => thousands(c.ops_per_sec.median),
                (None, _) => "–".into(),
            });
        }
        cells.push(match (row.cell(EngineKind::Aeternusdb), row.cell(EngineKind::Fjall)) {
            (Some(a), Some(f)) => format!("{:.2}×", a.ops_per_sec.median / f.ops_per_sec.median),
            _ => "–".into(),
        });
        table_row(md, &cells);
    }
    let _ = writeln!(md);
}

/// One row's table: a line per measure, a column per engine.
fn detail(md: &mut String, engines: &[EngineKind], row: &Row) {
    let _ = writeln!(md, "## {}\n", row.name);
    let _ = writeln!(md, "![{}]({CHART_DIR}/{})\n", row.name, chart_file(&row.name));
    let present: Vec<EngineKind> =
        engines.iter().copied().filter(|e| row.cell(*e).is_some()).collect();
    let mut header = vec![String::new()];
    header.extend(present.iter().map(|e| e.label().to_string()));
    table_header(md, &header);
    let rocks = row.cell(EngineKind::Rocksdb);

    // One line of the table: `value(cell)` formatted by `show`, with the ratio to RocksDB.
    let line = |md: &mut String,
                name: &str,
                value: &dyn Fn(&Cell) -> Option<f64>,
                show: &dyn Fn(&Cell, f64) -> String| {
        let mut cells = vec![name.to_string()];
        let reference = rocks.and_then(value);
        for &e in &present {
            let cell = row.cell(e).expect("present engines have cells");
            cells.push(match value(cell) {
                None => "–".into(),
                Some(v) => match reference {
                    Some(r) if e != EngineKind::Rocksdb && r > 0.0 => {
                        format!("{} ({:.2}×)", show(cell, v), v / r)
                    }
                    _ => show(cell, v),
                },
            });
        }
        if cells[1..].iter().any(|c| c != "–") {
            table_row(md, &cells);
        }
    };
    line(md, "ops/s, median [min–max]", &|c| Some(c.ops_per_sec.median), &|c, v| {
        format!(
            "{} [{}–{}]",
            thousands(v),
            thousands(c.ops_per_sec.min),
            thousands(c.ops_per_sec.max)
        )
    });
    for (i, p) in ["p50 µs", "p99 µs", "p99.9 µs"].iter().enumerate() {
        line(md, p, &|c| c.latency_us.map(|l| l[i]), &|_, v| format!("{v:.1}"));
    }
    let mut labels: Vec<(String, String)> = Vec::new();
    for (_, c) in &row.cells {
        for (label, unit, _) in &c.figures {
            if !labels.iter().any(|(l, _)| l == label) {
                labels.push((label.clone(), unit.clone()));
            }
        }
    }
    for (label, unit) in &labels {
        let name = match unit.as_str() {
            "x" => label.clone(),
            unit => format!("{label} ({unit})"),
        };
        line(md, &name, &|c| c.figure(label), &|_, v| match unit.as_str() {
            "x" => format!("{v:.2}"),
            "s" => format!("{v:.3}"),
            _ => thousands(v),
        });
    }
    line(md, "peak RSS (MiB)", &|c| c.peak_rss_mib, &|_, v| format!("{v:.0}"));
    let mut cells = vec!["verified / runs".to_string()];
    for &e in &present {
        let c = row.cell(e).expect("present engines have cells");
        let verified = match c.verified {
            Some(true) => "yes",
            Some(false) => "**FAILED**",
            None => "–",
        };
        cells.push(format!("{verified} / {}", c.runs));
    }
    table_row(md, &cells);
    let _ = writeln!(md);
}

fn table_header(md: &mut String, cells: &[String]) {
    table_row(md, cells);
    let rule: Vec<String> = cells.iter().map(|_| "---".to_string()).collect();
    table_row(md, &rule);
}

fn table_row(md: &mut String, cells: &[String]) {
    let _ = writeln!(md, "| {} |", cells.join(" | "));
}

/// GitHub's heading anchor for a row name.
fn anchor(name: &str) -> String {
    name.to_lowercase().replace(' ', "-")
}

/// `1234567.8` as `1,234,568`.
pub fn thousands(v: f64) -> String {
    let digits = format!("{:.0}", v.abs());
    let mut out = String::new();
    for (i, ch) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(ch);
    }
    if v < 0.0 { format!("-{out}") } else { out }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians_and_spread() {
        let s = Spread::of(vec![3.0, 1.0, 2.0]).unwrap();
        assert_eq!((s.median, s.min, s.max), (2.0, 1.0, 3.0));
        assert_eq!(Spread::of(vec![4.0, 1.0, 2.0, 3.0]).unwrap().median, 2.5);
        assert!(Spread::of(vec![]).is_none());
    }

    #[test]
    fn numbers_read_well() {
        assert_eq!(thousands(1_234_567.8), "1,234,568");
        assert_eq!(thousands(999.0), "999");
        assert_eq!(thousands(1000.0), "1,000");
        assert_eq!(anchor("fillsync 4 threads"), "fillsync-4-threads");
    }
}
