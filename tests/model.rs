//! Model test: random sequences of every public operation, checked against a
//! `BTreeMap` after every step.
//!
//! Keys come from a space of 40 (every string of 0 to 3 bytes over `00`, `a`, `ff`),
//! so the empty key, 0xff bytes, shared prefixes and overwrites are all common. The
//! 4 KiB write buffer makes memtables freeze and flush all the time; explicit flushes
//! and close-and-reopen are operations of their own. Snapshots are kept with a copy
//! of the model and checked again at every later step.
//!
//! Every case runs under one compaction strategy (leveled or size-tiered), tuned so
//! that background compactions run all the time; `compact()` and `compact_range()` are
//! operations too, so snapshots and open iterators live across compactions.

mod common;

use std::ops::Bound;

use aeternusdb::{CompactionStrategyOptions, Db, Error, Iter, Options, Snapshot, WriteBatch};
use proptest::prelude::*;

use common::{Model, collect, leveled_aggressive, tiered_aggressive, tiny_options_with};

type Pairs = Vec<(Vec<u8>, Vec<u8>)>;

/// How to walk an iterator.
#[derive(Debug, Clone)]
enum Direction {
    Forward,
    /// Forward with the borrowing `next_ref`.
    Borrowed,
    Reverse,
    /// `true` steps forward, `false` calls `next_back`, cycling through the pattern;
    /// forward steps alternate between `next` and `next_ref`.
    Interleaved(Vec<bool>),
}

#[derive(Debug, Clone)]
enum BatchOp {
    Put(Vec<u8>, Vec<u8>),
    Delete(Vec<u8>),
    DeleteRange(Vec<u8>, Vec<u8>),
}

#[derive(Debug, Clone)]
enum Op {
    Put(Vec<u8>, Vec<u8>),
    Delete(Vec<u8>),
    /// Any order: `start > end` must be `InvalidArgument`, `start == end` a no-op.
    DeleteRange(Vec<u8>, Vec<u8>),
    Write(Vec<BatchOp>),
    Get(Vec<u8>),
    Range(Bound<Vec<u8>>, Bound<Vec<u8>>, Direction),
    Prefix(Vec<u8>, Direction),
    Iter(Direction),
    /// Opens an iterator, takes `taken` items, then puts, deletes a range and flushes
    /// (if asked) before draining it: it must still read the state it was opened at.
    IterAcrossWrites {
        direction: Direction,
        taken: usize,
        puts: Vec<(Vec<u8>, Vec<u8>)>,
        flush: bool,
    },
    Snapshot,
    /// Reads snapshot `index % live` over a range.
    ReadSnapshot(usize, Bound<Vec<u8>>, Bound<Vec<u8>>, Direction),
    DropSnapshot(usize),
    Flush,
    /// `compact()`: everything, on the caller's thread.
    Compact,
    /// `compact_range(start, end)` in any order: `start > end` must be
    /// `InvalidArgument`.
    CompactRange(Vec<u8>, Vec<u8>),
    Reopen,
}

const ALPHABET: [u8; 3] = [0x00, b'a', 0xff];

/// Every key of the space, in order.
fn all_keys() -> Vec<Vec<u8>> {
    let mut keys = vec![Vec::new()];
    let mut last = vec![Vec::new()];
    for _ in 0..3 {
        last = last
            .iter()
            .flat_map(|k: &Vec<u8>| {
                ALPHABET.iter().map(move |&b| {
                    let mut k = k.clone();
                    k.push(b);
                    k
                })
            })
            .collect();
        keys.extend(last.iter().cloned());
    }
    keys.sort();
    keys
}

fn key() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(prop::sample::select(&ALPHABET[..]), 0..=3)
}

fn value() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        8 => prop::collection::vec(any::<u8>(), 0..40),
        3 => prop::collection::vec(any::<u8>(), 100..600),
        // Larger than a block and than the whole write buffer.
        1 => prop::collection::vec(any::<u8>(), 3000..6000),
    ]
}

fn bound() -> impl Strategy<Value = Bound<Vec<u8>>> {
    prop_oneof![
        1 => Just(Bound::Unbounded),
        2 => key().prop_map(Bound::Included),
        2 => key().prop_map(Bound::Excluded),
    ]
}

fn direction() -> impl Strategy<Value = Direction> {
    prop_oneof![
        Just(Direction::Forward),
        Just(Direction::Borrowed),
        Just(Direction::Reverse),
        prop::collection::vec(any::<bool>(), 1..6).prop_map(Direction::Interleaved),
    ]
}

fn batch_op() -> impl Strategy<Value = BatchOp> {
    prop_oneof![
        3 => (key(), value()).prop_map(|(k, v)| BatchOp::Put(k, v)),
        1 => key().prop_map(BatchOp::Delete),
        1 => (key(), key()).prop_map(|(s, e)| BatchOp::DeleteRange(s, e)),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        12 => (key(), value()).prop_map(|(k, v)| Op::Put(k, v)),
        4 => key().prop_map(Op::Delete),
        3 => (key(), key()).prop_map(|(s, e)| Op::DeleteRange(s, e)),
        4 => prop::collection::vec(batch_op(), 0..8).prop_map(Op::Write),
        2 => key().prop_map(Op::Get),
        3 => (bound(), bound(), direction()).prop_map(|(l, u, d)| Op::Range(l, u, d)),
        2 => (key(), direction()).prop_map(|(p, d)| Op::Prefix(p, d)),
        1 => direction().prop_map(Op::Iter),
        2 => (direction(), 0..6usize, prop::collection::vec((key(), value()), 0..6), any::<bool>())
            .prop_map(|(direction, taken, puts, flush)| Op::IterAcrossWrites {
                direction,
                taken,
                puts,
                flush,
            }),
        2 => Just(Op::Snapshot),
        2 => (any::<usize>(), bound(), bound(), direction())
            .prop_map(|(i, l, u, d)| Op::ReadSnapshot(i, l, u, d)),
        1 => any::<usize>().prop_map(Op::DropSnapshot),
        1 => Just(Op::Flush),
        1 => Just(Op::Compact),
        2 => (key(), key()).prop_map(|(s, e)| Op::CompactRange(s, e)),
        1 => Just(Op::Reopen),
    ]
}

fn model_options(compaction: CompactionStrategyOptions) -> Options {
    // Durability is not under test here; `close` syncs before every reopen.
    Options { sync_writes: false, ..tiny_options_with(compaction) }
}

/// Walks `iter` as `direction` says and returns the pairs in key order, checking
/// that the iterator stays ended once it has ended.
fn walk(mut iter: Iter, direction: &Direction) -> Pairs {
    let pairs = match direction {
        Direction::Forward => collect(&mut iter),
        Direction::Borrowed => {
            let mut pairs = Vec::new();
            while let Some((k, v)) = iter.next_ref().expect("iterator item") {
                pairs.push((k.to_vec(), v.to_vec()));
            }
            pairs
        }
        Direction::Reverse => {
            let mut pairs = collect((&mut iter).rev());
            pairs.reverse();
            pairs
        }
        Direction::Interleaved(pattern) => {
            let (mut front, mut back) = (Vec::new(), Vec::new());
            let mut forward_steps = 0;
            for &forward in pattern.iter().cycle() {
                forward_steps += usize::from(forward);
                let item = if !forward {
                    iter.next_back().map(|item| item.map(|(k, v)| (k.to_vec(), v.to_vec())))
                } else if forward_steps % 2 == 0 {
                    iter.next().map(|item| item.map(|(k, v)| (k.to_vec(), v.to_vec())))
                } else {
                    iter.next_ref()
                        .map(|pair| pair.map(|(k, v)| (k.to_vec(), v.to_vec())))
                        .transpose()
                };
                let Some(item) = item else { break };
                if forward { &mut front } else { &mut back }.push(item.expect("iterator item"));
            }
            front.extend(back.into_iter().rev());
            front
        }
    };
    assert!(iter.next().is_none(), "next after the end yields more");
    assert!(iter.next_back().is_none(), "next_back after the end yields more");
    assert!(iter.next_ref().expect("ended").is_none(), "next_ref after the end yields more");
    pairs
}

struct Harness {
    dir: tempfile::TempDir,
    db: Db,
    model: Model,
    /// Live snapshots, each with the model as it was when taken.
    snapshots: Vec<(Snapshot, Model)>,
    keys: Vec<Vec<u8>>,
    options: Options,
    /// Compactions and trivial moves counted by handles closed so far.
    compactions: u64,
}

impl Harness {
    fn new(compaction: CompactionStrategyOptions) -> Harness {
        let dir = tempfile::tempdir().expect("tempdir");
        let options = model_options(compaction);
        let db = Db::open(dir.path(), options.clone()).expect("open");
        Harness {
            dir,
            db,
            model: Model::new(),
            snapshots: Vec::new(),
            keys: all_keys(),
            options,
            compactions: 0,
        }
    }

    /// Compactions and trivial moves so far, over every handle.
    fn compactions(&self) -> u64 {
        let stats = self.db.stats().expect("stats");
        self.compactions + stats.compactions + stats.trivial_moves
    }

    fn apply(&mut self, op: &Op) {
        match op {
            Op::Put(k, v) => {
                self.db.put(k, v).expect("put");
                self.model.put(k, v);
            }
            Op::Delete(k) => {
                self.db.delete(k).expect("delete");
                self.model.delete(k);
            }
            Op::DeleteRange(s, e) => {
                let result = self.db.delete_range(s, e);
                if s > e {
                    assert!(matches!(result, Err(Error::InvalidArgument(_))), "{result:?}");
                } else {
                    result.expect("delete_range");
                    self.model.delete_range(s, e);
                }
            }
            Op::Write(ops) => {
                let mut batch = WriteBatch::new();
                let mut expected = self.model.clone();
                for op in ops {
                    match op {
                        BatchOp::Put(k, v) => {
                            batch.put(k, v).expect("batch put");
                            expected.put(k, v);
                        }
                        BatchOp::Delete(k) => {
                            batch.delete(k).expect("batch delete");
                            expected.delete(k);
                        }
                        BatchOp::DeleteRange(s, e) => {
                            let before = batch.clone();
                            let result = batch.delete_range(s, e).map(|_| ());
                            if s > e {
                                assert!(
                                    matches!(result, Err(Error::InvalidArgument(_))),
                                    "{result:?}"
                                );
                                assert_eq!(
                                    batch, before,
                                    "a rejected delete_range changed the batch"
                                );
                            } else {
                                result.expect("batch delete_range");
                                expected.delete_range(s, e);
                            }
                        }
                    }
                }
                self.db.write(&batch).expect("write");
                self.model = expected;
            }
            Op::Get(k) => {
                let got = self.db.get(k).expect("get").map(|v| v.to_vec());
                assert_eq!(got, self.model.get(k), "get {k:?}");
            }
            Op::Range(lower, upper, direction) => {
                let range = (lower.clone(), upper.clone());
                let got = walk(self.db.range(range.clone()).expect("range"), direction);
                assert_eq!(got, self.model.range(range), "range {lower:?}..{upper:?}");
            }
            Op::Prefix(p, direction) => {
                let got = walk(self.db.prefix(p).expect("prefix"), direction);
                assert_eq!(got, self.model.prefix(p), "prefix {p:?}");
            }
            Op::Iter(direction) => {
                let got = walk(self.db.iter().expect("iter"), direction);
                assert_eq!(got, self.model.all(), "iter");
            }
            Op::IterAcrossWrites { direction, taken, puts, flush } => {
                let expected = self.model.all();
                let mut iter = self.db.iter().expect("iter");
                let reverse = matches!(direction, Direction::Reverse);
                let first: Pairs = if reverse {
                    collect((&mut iter).rev().take(*taken))
                } else {
                    collect((&mut iter).take(*taken))
                };
                for (k, v) in puts {
                    self.db.put(k, v).expect("put");
                    self.model.put(k, v);
                }
                self.db.delete_range([0x00], [0xff]).expect("delete_range");
                self.model.delete_range(&[0x00], &[0xff]);
                if *flush {
                    self.db.flush().expect("flush");
                }
                let rest = walk(iter, direction);
                let got: Pairs = if reverse {
                    rest.into_iter().chain(first.into_iter().rev()).collect()
                } else {
                    first.into_iter().chain(rest).collect()
                };
                assert_eq!(got, expected, "iterator opened before writes and a flush");
            }
            Op::Snapshot => {
                let snapshot = self.db.snapshot().expect("snapshot");
                self.snapshots.push((snapshot, self.model.clone()));
            }
            Op::ReadSnapshot(i, lower, upper, direction) => {
                if self.snapshots.is_empty() {
                    return;
                }
                let (snapshot, model) = &self.snapshots[i % self.snapshots.len()];
                let range = (lower.clone(), upper.clone());
                let got = walk(snapshot.range(range.clone()).expect("snapshot range"), direction);
                assert_eq!(got, model.range(range), "snapshot range {lower:?}..{upper:?}");
            }
            Op::DropSnapshot(i) => {
                if !self.snapshots.is_empty() {
                    let i = i % self.snapshots.len();
                    self.snapshots.remove(i);
                }
            }
            Op::Flush => self.db.flush().expect("flush"),
            Op::Compact => self.db.compact().expect("compact"),
            Op::CompactRange(s, e) => {
                let result = self.db.compact_range(s, e);
                if s > e {
                    assert!(matches!(result, Err(Error::InvalidArgument(_))), "{result:?}");
                } else {
                    result.expect("compact_range");
                }
            }
            Op::Reopen => {
                self.snapshots.clear();
                self.compactions = self.compactions();
                self.db.close().expect("close");
                self.db = Db::open(self.dir.path(), self.options.clone()).expect("reopen");
            }
        }
    }

    /// The whole database and every live snapshot agree with their models.
    fn check(&self) {
        for k in &self.keys {
            let got = self.db.get(k).expect("get").map(|v| v.to_vec());
            assert_eq!(got, self.model.get(k), "get {k:?}");
        }
        assert_eq!(collect(self.db.iter().expect("iter")), self.model.all(), "iter");
        let mut backward = collect(self.db.iter().expect("iter").rev());
        backward.reverse();
        assert_eq!(backward, self.model.all(), "iter().rev()");
        for (snapshot, model) in &self.snapshots {
            for k in &self.keys {
                let got = snapshot.get(k).expect("snapshot get").map(|v| v.to_vec());
                assert_eq!(got, model.get(k), "snapshot {} get {k:?}", snapshot.seqno());
            }
            let got = collect(snapshot.iter().expect("snapshot iter"));
            assert_eq!(got, model.all(), "snapshot {} iter", snapshot.seqno());
        }
    }
}

/// Runs `ops` under `compaction`, checking everything after every step, and returns
/// how many compactions (rewrites and trivial moves) ran.
fn run(compaction: CompactionStrategyOptions, ops: &[Op]) -> u64 {
    let mut harness = Harness::new(compaction);
    for op in ops {
        harness.apply(op);
        harness.check();
    }
    // Whatever the ops left, a final full compaction with the snapshots still held
    // must keep the latest state and every snapshot's view; dropping the snapshots
    // and compacting again must keep the latest state.
    harness.apply(&Op::Compact);
    harness.check();
    harness.snapshots.clear();
    harness.apply(&Op::Compact);
    harness.check();
    let compactions = harness.compactions();
    harness.db.close().expect("close");
    compactions
}

// The default run splits its cases between the strategies (about 60 s in debug in
// all); the long run gives each many more.
proptest! {
    #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn engine_matches_btreemap_leveled(ops in prop::collection::vec(op(), 50..200)) {
        run(leveled_aggressive(), &ops);
    }

    #[test]
    fn engine_matches_btreemap_size_tiered(ops in prop::collection::vec(op(), 50..200)) {
        run(tiered_aggressive(), &ops);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1000, failure_persistence: None, ..ProptestConfig::default() })]

    /// The same with many more cases: `cargo test --test model -- --ignored`.
    #[test]
    #[ignore]
    fn engine_matches_btreemap_long_leveled(ops in prop::collection::vec(op(), 50..400)) {
        run(leveled_aggressive(), &ops);
    }

    /// See `engine_matches_btreemap_long_leveled`.
    #[test]
    #[ignore]
    fn engine_matches_btreemap_long_size_tiered(ops in prop::collection::vec(op(), 50..400)) {
        run(tiered_aggressive(), &ops);
    }
}

/// The model runs above are only worth something if compactions really happen in
/// them: a fixed sequence of puts (no manual compaction) under each aggressive
/// strategy must trigger background compactions, which then must leave the data
/// intact.
#[test]
fn aggressive_strategies_compact_in_the_background() {
    for (name, compaction) in
        [("leveled", leveled_aggressive()), ("size-tiered", tiered_aggressive())]
    {
        let mut harness = Harness::new(compaction);
        let keys = all_keys();
        for i in 0..600usize {
            let value = vec![i as u8; 100 + i % 200];
            harness.apply(&Op::Put(keys[i * 7 % keys.len()].clone(), value));
            if i % 150 == 0 {
                harness.apply(&Op::Snapshot);
            }
        }
        harness.apply(&Op::Flush);
        // Background work is asynchronous: give it a moment to pick up the last flush.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while harness.compactions() < 5 && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        let compactions = harness.compactions();
        assert!(compactions >= 5, "{name}: only {compactions} compactions ran");
        harness.check();
        harness.db.close().expect("close");
    }
}

#[test]
fn key_space_is_forty_sorted_distinct_keys() {
    let keys = all_keys();
    assert_eq!(keys.len(), 40);
    assert!(keys.windows(2).all(|w| w[0] < w[1]));
    assert_eq!(keys[0], b"");
}

/// Regression: WAL segment numbers share one counter with tables and manifests, so
/// `[log_number, last_wal]` has gaps; open required every number in it to be a WAL
/// segment and failed with "WAL segment named by the manifest is missing".
#[test]
fn unflushed_writes_survive_reopens_despite_gaps_in_wal_numbers() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path(), model_options(leveled_aggressive())).unwrap();
    db.put("a", "1").unwrap();
    db.close().unwrap();
    for round in 0..3 {
        let db = Db::open(dir.path(), model_options(leveled_aggressive())).unwrap();
        assert_eq!(db.get("a").unwrap().as_deref(), Some(&b"1"[..]), "round {round}");
        db.put(format!("b{round}"), "2").unwrap();
        db.close().unwrap();
    }
    let db = Db::open(dir.path(), model_options(leveled_aggressive())).unwrap();
    let keys: Vec<_> = collect(db.iter().unwrap()).into_iter().map(|(k, _)| k).collect();
    assert_eq!(keys, [&b"a"[..], b"b0", b"b1", b"b2"]);
}
