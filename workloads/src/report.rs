//! Results and the results table.

use std::time::Duration;

use hdrhistogram::Histogram;

/// What one workload (or one phase, for `fillsync`'s two thread counts) measured.
#[derive(Debug, Clone)]
pub struct WorkloadResult {
    /// Workload name, with a qualifier where one workload reports several rows.
    pub name: String,
    /// Operations in the timed phase.
    pub ops: u64,
    /// Wall time of the timed phase.
    pub elapsed: Duration,
    /// Latency percentiles in microseconds (p50, p99, p99.9), where measured per op.
    pub latency_us: Option<[f64; 3]>,
    /// Other figures, e.g. write amplification.
    pub figures: Vec<Figure>,
    /// Whether every value read was the expected one; `None` if nothing was read back.
    pub verified: Option<bool>,
}

impl WorkloadResult {
    pub fn new(name: impl Into<String>, ops: u64, elapsed: Duration) -> Self {
        WorkloadResult {
            name: name.into(),
            ops,
            elapsed,
            latency_us: None,
            figures: Vec::new(),
            verified: None,
        }
    }

    pub fn ops_per_sec(&self) -> f64 {
        self.ops as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    pub(crate) fn latencies(mut self, h: &Histogram<u64>) -> Self {
        if !h.is_empty() {
            let us = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
            self.latency_us = Some([us(0.5), us(0.99), us(0.999)]);
        }
        self
    }

    pub(crate) fn with(mut self, label: &str, value: f64, unit: &str) -> Self {
        self.figures.push(Figure { label: label.into(), value, unit: unit.into() });
        self
    }

    pub(crate) fn verified(mut self, ok: bool) -> Self {
        self.verified = Some(ok);
        self
    }
}

/// A figure beside the throughput, e.g. `write amp 1.52x`.
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Figure {
    pub label: String,
    pub value: f64,
    /// `x` for ratios, `s` for seconds, `ops/s`, `B`.
    pub unit: String,
}

impl std::fmt::Display for Figure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.unit.as_str() {
            "x" => write!(f, "{} {:.2}x", self.label, self.value),
            "s" => write!(f, "{} {:.3} s", self.label, self.value),
            unit => write!(f, "{} {:.0} {unit}", self.label, self.value),
        }
    }
}

/// A Markdown table of results, one row per result.
pub fn format_table(engine: &str, results: &[WorkloadResult]) -> String {
    let mut rows = vec![[
        "workload".to_string(),
        "ops".into(),
        "seconds".into(),
        "ops/s".into(),
        "p50 µs".into(),
        "p99 µs".into(),
        "p99.9 µs".into(),
        "verified".into(),
        "notes".into(),
    ]];
    for r in results {
        let lat = |i: usize| r.latency_us.map_or("-".to_string(), |l| format!("{:.1}", l[i]));
        rows.push([
            r.name.clone(),
            r.ops.to_string(),
            format!("{:.3}", r.elapsed.as_secs_f64()),
            format!("{:.0}", r.ops_per_sec()),
            lat(0),
            lat(1),
            lat(2),
            match r.verified {
                Some(true) => "yes".into(),
                Some(false) => "FAILED".into(),
                None => "-".into(),
            },
            r.figures.iter().map(Figure::to_string).collect::<Vec<_>>().join(", "),
        ]);
    }
    let widths: Vec<usize> =
        (0..9).map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0)).collect();
    let mut out = format!("engine: {engine}\n\n");
    for (i, row) in rows.iter().enumerate() {
        let cells: Vec<String> = row
            .iter()
            .enumerate()
            .map(|(c, cell)| {
                let pad = widths[c] - cell.chars().count();
                // Text left, numbers right.
                if c == 0 || c >= 7 {
                    format!("{cell}{}", " ".repeat(pad))
                } else {
                    format!("{}{cell}", " ".repeat(pad))
                }
            })
            .collect();
        out.push_str(&format!("| {} |\n", cells.join(" | ")));
        if i == 0 {
            let rule: Vec<String> = widths.iter().map(|&w| "-".repeat(w)).collect();
            out.push_str(&format!("| {} |\n", rule.join(" | ")));
        }
    }
    out
}
