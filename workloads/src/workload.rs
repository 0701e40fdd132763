//! The workloads of `docs/workloads.md` by name: one [`Workload`] per workload, so the
//! list of names, the parser and [`crate::run`] cannot drift apart (a new variant that
//! `run` does not handle fails to compile).
//!
//! Invariant: [`Workload::ALL`] holds every variant once, and `name` and `FromStr` are
//! inverse on it; the names are what command lines and result files carry.

use std::fmt;
use std::str::FromStr;

/// One benchmark workload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Workload {
    FillSeq,
    FillRandom,
    FillSync,
    Overwrite,
    ReadRandom,
    ReadMissing,
    SeekRandom,
    ReadWhileWriting,
    DeleteRange,
    YcsbA,
    YcsbB,
    YcsbC,
    YcsbD,
    YcsbE,
    YcsbF,
    Reopen,
}

impl Workload {
    /// Every workload, in the order they are usually run.
    pub const ALL: [Workload; 16] = [
        Workload::FillSeq,
        Workload::FillRandom,
        Workload::FillSync,
        Workload::Overwrite,
        Workload::ReadRandom,
        Workload::ReadMissing,
        Workload::SeekRandom,
        Workload::ReadWhileWriting,
        Workload::DeleteRange,
        Workload::YcsbA,
        Workload::YcsbB,
        Workload::YcsbC,
        Workload::YcsbD,
        Workload::YcsbE,
        Workload::YcsbF,
        Workload::Reopen,
    ];

    /// The name on command lines, in result tables and in result files, e.g. `ycsb-a`.
    pub fn name(self) -> &'static str {
        match self {
            Workload::FillSeq => "fillseq",
            Workload::FillRandom => "fillrandom",
            Workload::FillSync => "fillsync",
            Workload::Overwrite => "overwrite",
            Workload::ReadRandom => "readrandom",
            Workload::ReadMissing => "readmissing",
            Workload::SeekRandom => "seekrandom",
            Workload::ReadWhileWriting => "readwhilewriting",
            Workload::DeleteRange => "deleterange",
            Workload::YcsbA => "ycsb-a",
            Workload::YcsbB => "ycsb-b",
            Workload::YcsbC => "ycsb-c",
            Workload::YcsbD => "ycsb-d",
            Workload::YcsbE => "ycsb-e",
            Workload::YcsbF => "ycsb-f",
            Workload::Reopen => "reopen",
        }
    }
}

impl fmt::Display for Workload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Workload {
    type Err = UnknownWorkload;

    fn from_str(name: &str) -> Result<Self, UnknownWorkload> {
        Workload::ALL
            .into_iter()
            .find(|w| w.name() == name)
            .ok_or_else(|| UnknownWorkload(name.to_string()))
    }
}

/// A name that is no workload; its message lists the valid ones.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownWorkload(pub String);

impl fmt::Display for UnknownWorkload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = Workload::ALL.iter().map(|w| w.name()).collect();
        write!(f, "unknown workload '{}'; valid names: {}", self.0, names.join(", "))
    }
}

impl std::error::Error for UnknownWorkload {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_parses_back_to_its_workload() {
        for w in Workload::ALL {
            assert_eq!(w.name().parse::<Workload>(), Ok(w));
            assert_eq!(w.to_string(), w.name());
        }
        let mut names: Vec<&str> = Workload::ALL.iter().map(|w| w.name()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), Workload::ALL.len(), "a name is listed twice");
    }

    #[test]
    fn unknown_names_are_errors_that_list_the_valid_ones() {
        for name in ["nope", "ycsb-g", "ycsb-", "", "FillSeq"] {
            let e = name.parse::<Workload>().unwrap_err();
            assert_eq!(e, UnknownWorkload(name.to_string()));
            let message = e.to_string();
            assert!(message.contains(&format!("'{name}'")), "{message}");
            assert!(
                message.contains("fillseq, fillrandom,") && message.ends_with(", ycsb-f, reopen")
            );
        }
    }
}
