//! The expected state of a crash test and the check of a recovered database against
//! it (the idea of RocksDB's `ExpectedState`).
//!
//! Per writer partition the oracle knows the state after every batch the database is
//! known to hold, and the number of the next batch. A child acknowledges batches in
//! order, one writer at a time per partition, so after a kill each partition must be
//! exactly one of two states:
//! - the known state plus every batch the child acknowledged: an acknowledged write
//!   survives a process kill whether it was synced or not, since the engine hands
//!   every WAL record to the OS before it acknowledges (a power loss may lose a
//!   suffix of the unsynced ones; that is checked by the `FaultFs` tests, a process
//!   kill cannot cut power);
//! - that plus the one batch that was in flight (written, not yet acknowledged),
//!   whole.
//!
//! Anything else is a violation: a lost acknowledged write, a batch half applied, a
//! hole before a later write, or a key nobody wrote.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::workload::{self, DataShape, Op, Partition};

/// What the oracle knows of one writer's partition.
#[derive(Debug, Clone, Default)]
struct Expected {
    state: Partition,
    /// The number of the next batch of this writer.
    next: u64,
}

/// The expected state of every partition of one database.
#[derive(Debug)]
pub struct Oracle {
    seed: u64,
    shape: DataShape,
    writers: Vec<Expected>,
}

/// What one check found.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Checked {
    /// Keys in the database.
    pub keys: usize,
    /// Batches found that had not been acknowledged (one may be in flight per writer).
    pub unacknowledged: u64,
}

impl Oracle {
    /// An empty database written with `seed` and `shape`.
    pub fn new(seed: u64, shape: DataShape) -> Oracle {
        Oracle { seed, shape, writers: Vec::new() }
    }

    /// The number of the next batch of each of the first `writers` writers: where a
    /// child continues.
    pub fn next_batches(&self, writers: usize) -> Vec<u64> {
        (0..writers).map(|w| self.writers.get(w).map_or(0, |e| e.next)).collect()
    }

    /// Writers whose partitions the oracle knows.
    pub fn writers(&self) -> usize {
        self.writers.len()
    }

    /// Checks `found` (the whole database) after a child acknowledged `acked[w]`
    /// batches of writer `w`, numbered from [`next_batches`](Self::next_batches).
    /// On success the oracle moves to the state found.
    pub fn check(
        &mut self,
        acked: &[u64],
        found: &BTreeMap<Vec<u8>, Vec<u8>>,
    ) -> Result<Checked, String> {
        let mut by_writer: BTreeMap<usize, Partition> = BTreeMap::new();
        for (key, value) in found {
            match workload::writer_of(key) {
                Some(w) => drop(by_writer.entry(w).or_default().insert(key.clone(), value.clone())),
                None => {
                    return Err(format!(
                        "key {} was never written (value: {})",
                        String::from_utf8_lossy(key),
                        workload::origin(value)
                    ));
                }
            }
        }
        let writers =
            self.writers.len().max(acked.len()).max(by_writer.keys().max().map_or(0, |w| w + 1));
        self.writers.resize_with(writers, Expected::default);

        let mut checked = Checked { keys: found.len(), unacknowledged: 0 };
        let mut moved = Vec::with_capacity(writers);
        for (w, expected) in self.writers.iter().enumerate() {
            let found = by_writer.remove(&w).unwrap_or_default();
            // Only a writer of this child can have had a batch in flight.
            let ran = w < acked.len();
            let acked = acked.get(w).copied().unwrap_or(0);
            let mut state = expected.state.clone();
            for n in expected.next..expected.next + acked {
                workload::apply(&mut state, &workload::batch(self.seed, self.shape, w, n));
            }
            let in_flight = expected.next + acked;
            if found == state {
                moved.push(Expected { state, next: in_flight });
                continue;
            }
            if ran {
                let ops = workload::batch(self.seed, self.shape, w, in_flight);
                let mut after = state.clone();
                workload::apply(&mut after, &ops);
                if found == after {
                    checked.unacknowledged += 1;
                    moved.push(Expected { state: after, next: in_flight + 1 });
                    continue;
                }
                return Err(explain(w, expected.next, acked, &state, &found, Some((&after, &ops))));
            }
            return Err(explain(w, expected.next, acked, &state, &found, None));
        }
        for (w, expected) in moved.into_iter().enumerate() {
            self.writers[w] = expected;
        }
        Ok(checked)
    }
}

/// Describes how `found` differs from what writer `w`'s partition should hold.
fn explain(
    w: usize,
    from: u64,
    acked: u64,
    expected: &Partition,
    found: &Partition,
    in_flight: Option<(&Partition, &[Op])>,
) -> String {
    let mut text = format!(
        "writer {w}: batches {from}..{} were acknowledged (all must survive a kill)",
        from + acked
    );
    match in_flight {
        Some((_, ops)) => {
            let _ = write!(text, " and batch {} ({} ops) was in flight", from + acked, ops.len());
        }
        None => text.push_str(" and none was in flight"),
    }
    text.push_str(", but the partition is neither state:");
    let mut differences = vec![("acknowledged state", expected)];
    if let Some((after, _)) = in_flight {
        differences.push(("state with the batch in flight", after));
    }
    for (label, state) in differences {
        let diffs = differences_between(state, found);
        let _ = write!(text, "\n  against the {label}, {} keys differ:", diffs.len());
        for line in diffs.iter().take(5) {
            let _ = write!(text, "\n    {line}");
        }
    }
    text
}

fn differences_between(expected: &Partition, found: &Partition) -> Vec<String> {
    let describe = |v: Option<&Vec<u8>>| v.map_or("absent".to_string(), |v| workload::origin(v));
    let mut keys: Vec<&Vec<u8>> = expected.keys().chain(found.keys()).collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .filter(|k| expected.get(*k) != found.get(*k))
        .map(|k| {
            format!(
                "{}: expected {}, found {}",
                String::from_utf8_lossy(k),
                describe(expected.get(k)),
                describe(found.get(k))
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEED: u64 = 11;
    const SHAPE: DataShape = DataShape { keys_per_writer: 50, max_padding: 8 };

    /// The database after writer `w`'s batches `0..n`, as a map.
    fn after(w: usize, n: u64, into: &mut BTreeMap<Vec<u8>, Vec<u8>>) {
        let mut state = Partition::new();
        for b in 0..n {
            workload::apply(&mut state, &workload::batch(SEED, SHAPE, w, b));
        }
        into.extend(state);
    }

    #[test]
    fn acknowledged_batches_plus_at_most_the_one_in_flight_pass() {
        let mut oracle = Oracle::new(SEED, SHAPE);
        let mut found = BTreeMap::new();
        after(0, 5, &mut found);
        after(1, 3, &mut found);
        assert_eq!(oracle.check(&[5, 3], &found).map(|c| c.unacknowledged), Ok(0));
        assert_eq!(oracle.next_batches(3), [5, 3, 0]);

        // Writer 0's batch 7 was in flight and made it; writer 1 did not write.
        let mut found = BTreeMap::new();
        after(0, 8, &mut found);
        after(1, 3, &mut found);
        assert_eq!(oracle.check(&[2], &found).map(|c| c.unacknowledged), Ok(1));
        assert_eq!(oracle.next_batches(2), [8, 3]);
    }

    #[test]
    fn a_lost_acknowledged_batch_is_a_violation() {
        let mut oracle = Oracle::new(SEED, SHAPE);
        let mut found = BTreeMap::new();
        after(0, 4, &mut found);
        let err = oracle.check(&[6], &found).unwrap_err();
        assert!(err.contains("writer 0: batches 0..6 were acknowledged"), "{err}");
        // The oracle did not move.
        assert_eq!(oracle.next_batches(1), [0]);
    }

    #[test]
    fn two_batches_beyond_the_acknowledged_are_a_violation() {
        let mut oracle = Oracle::new(SEED, SHAPE);
        let mut found = BTreeMap::new();
        after(0, 6, &mut found);
        assert!(oracle.check(&[4], &found).is_err());
    }

    #[test]
    fn half_a_batch_is_a_violation() {
        // A seed whose first batch is not all there after its first operation.
        let (seed, ops) = (0..)
            .map(|seed| (seed, workload::batch(seed, SHAPE, 0, 0)))
            .find(|(_, ops)| {
                let (mut half, mut whole) = (Partition::new(), Partition::new());
                workload::apply(&mut half, &ops[..1]);
                workload::apply(&mut whole, ops);
                !half.is_empty() && half != whole
            })
            .unwrap();
        let mut half = Partition::new();
        workload::apply(&mut half, &ops[..1]);
        let err = Oracle::new(seed, SHAPE).check(&[0], &half).unwrap_err();
        assert!(err.contains("batch 0"), "{err}");
    }

    #[test]
    fn a_key_outside_every_partition_is_a_violation() {
        let mut oracle = Oracle::new(SEED, SHAPE);
        let found = BTreeMap::from([(b"stray".to_vec(), b"x".to_vec())]);
        assert!(oracle.check(&[], &found).unwrap_err().contains("never written"));
    }

    #[test]
    fn a_partition_of_a_writer_not_in_this_child_must_not_change() {
        let mut oracle = Oracle::new(SEED, SHAPE);
        let mut found = BTreeMap::new();
        after(0, 2, &mut found);
        after(1, 2, &mut found);
        oracle.check(&[2, 2], &found).unwrap();
        // This child had one writer; writer 1's partition gained a batch.
        let mut found = BTreeMap::new();
        after(0, 2, &mut found);
        after(1, 3, &mut found);
        assert!(oracle.check(&[0], &found).unwrap_err().contains("writer 1"));
    }
}
