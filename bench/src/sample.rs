//! One measurement: what one child process reports for one result row of one workload.
//! Samples travel from child to parent, and into `results.jsonl`, as JSON lines.

use aeternus_workloads::{Figure, WorkloadResult};
use serde::{Deserialize, Serialize};

use crate::engines::EngineKind;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Sample {
    /// Engine id, as on the command line (`rocksdb`, `aeternusdb`, ...).
    pub engine: String,
    /// The workload run, e.g. `fillsync`.
    pub workload: String,
    /// The result row, e.g. `fillsync 4 threads`; the workload name for most.
    pub row: String,
    /// Which repetition (0-based).
    pub repeat: u32,
    pub ops: u64,
    pub seconds: f64,
    /// p50, p99, p99.9 in microseconds, where measured per operation.
    pub latency_us: Option<[f64; 3]>,
    /// Write amplification, space amplification, scan seconds, ...
    pub figures: Vec<Figure>,
    /// Whether every value read back was the expected one; `None` if none was read.
    pub verified: Option<bool>,
    /// Peak resident set of the child process (VmHWM), bytes.
    pub peak_rss: Option<u64>,
}

impl Sample {
    pub fn new(
        engine: EngineKind,
        workload: &str,
        repeat: u32,
        r: &WorkloadResult,
        peak_rss: Option<u64>,
    ) -> Self {
        Sample {
            engine: engine.id().into(),
            workload: workload.into(),
            row: r.name.clone(),
            repeat,
            ops: r.ops,
            seconds: r.elapsed.as_secs_f64(),
            latency_us: r.latency_us,
            figures: r.figures.clone(),
            verified: r.verified,
            peak_rss,
        }
    }

    pub fn ops_per_sec(&self) -> f64 {
        self.ops as f64 / self.seconds.max(1e-9)
    }

    pub fn figure(&self, label: &str) -> Option<f64> {
        self.figures.iter().find(|f| f.label == label).map(|f| f.value)
    }
}
