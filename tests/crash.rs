//! Real-process crash test: a child process writes synced batches and is killed with
//! SIGKILL at a random moment; the parent reopens the database and checks that every
//! acknowledged batch is there and that no batch is half applied.
//!
//! The child is this test binary run again with the test `child_writer` (ignored, so
//! it runs only when asked for by name) and the environment variables below. Batch
//! `n` is a pure function of `(seed, n)`, so parent and child agree on its contents
//! without exchanging them; the child reports `ack <n>` on stdout after each
//! `write` returns.
//!
//! Cycles accumulate on one directory: each child continues from the state the
//! previous crash left, numbering batches on from the recovered prefix, so crashes
//! land during writes, memtable rotation, flushes and recovery itself.
//!
//! Run: `cargo test --test crash` (20 cycles). The long run (500 cycles):
//! `cargo test --test crash -- --ignored --exact crash_cycles_long --nocapture`.
//! Reproduce a failure with `AETERNUS_CRASH_SEED=<seed printed by the test>`.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use aeternusdb::{Db, Options, WriteBatch};
use common::Model;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const ENV_DIR: &str = "AETERNUS_CRASH_DIR";
const ENV_SEED: &str = "AETERNUS_CRASH_SEED";
const ENV_START: &str = "AETERNUS_CRASH_START";

/// Distinct keys the batches write to: few enough that batches overwrite each other.
const KEY_SPACE: u32 = 64;

fn options() -> Options {
    // 2 MiB write buffer: about one flush per cycle, so kills land before, during and
    // after flushes, while the table count stays in the hundreds over the long run
    // (tables accumulate until compaction exists).
    Options { write_buffer_size: 2 << 20, block_size: 1024, ..Options::default() }
}

fn key(i: u32) -> Vec<u8> {
    format!("k{i:03}").into_bytes()
}

/// One operation of a batch.
#[derive(Debug, Clone)]
enum Op {
    Put(Vec<u8>, Vec<u8>),
    DeleteRange(Vec<u8>, Vec<u8>),
}

/// Batch `n` of the run with `seed`: sometimes a range deletion, then 5–20 puts, all
/// with a value naming `n` (padded, so memtables fill up quickly). The puts come last,
/// so every batch changes the state and prefixes of the sequence are distinguishable.
fn batch_ops(seed: u64, n: u64) -> Vec<Op> {
    let mut rng = StdRng::seed_from_u64(seed ^ n.wrapping_mul(0x9e37_79b9_7f4a_7c15));
    let mut ops = Vec::new();
    if rng.gen_ratio(1, 5) {
        let a = rng.gen_range(0..KEY_SPACE);
        let b = rng.gen_range(a..=(a + 16).min(KEY_SPACE));
        ops.push(Op::DeleteRange(key(a), key(b)));
    }
    let value = format!("batch-{n:08}-{}", "x".repeat(rng.gen_range(50..250))).into_bytes();
    for _ in 0..rng.gen_range(5..=20) {
        ops.push(Op::Put(key(rng.gen_range(0..KEY_SPACE)), value.clone()));
    }
    ops
}

fn apply(model: &mut Model, ops: &[Op]) {
    for op in ops {
        match op {
            Op::Put(k, v) => model.put(k, v),
            Op::DeleteRange(a, b) => model.delete_range(a, b),
        }
    }
}

fn to_batch(ops: &[Op]) -> WriteBatch {
    let mut batch = WriteBatch::new();
    for op in ops {
        match op {
            Op::Put(k, v) => batch.put(k, v).expect("put into batch"),
            Op::DeleteRange(a, b) => batch.delete_range(a, b).expect("delete_range into batch"),
        };
    }
    batch
}

/// The child: writes batches `start..` with sync until killed. Does nothing unless
/// started by [`crash_cycles`] (the environment names the directory).
#[test]
#[ignore = "the child process of the crash tests; runs only when they start it"]
fn child_writer() {
    let Ok(dir) = std::env::var(ENV_DIR) else { return };
    let seed: u64 = std::env::var(ENV_SEED).unwrap().parse().unwrap();
    let start: u64 = std::env::var(ENV_START).unwrap().parse().unwrap();
    let db = Db::open(&dir, options()).unwrap();
    let mut out = std::io::stdout().lock();
    // libtest has printed `test child_writer ... ` without a newline: end that line.
    writeln!(out).unwrap();
    for n in start.. {
        db.write(to_batch(&batch_ops(seed, n))).unwrap();
        writeln!(out, "ack {n}").unwrap();
        out.flush().unwrap();
    }
}

/// What one child reported before it died.
struct ChildRun {
    /// Acknowledged batch numbers, in order.
    acks: Vec<u64>,
    stderr: String,
}

/// Runs a child writing from batch `start` and kills it after `delay`.
fn run_child(dir: &Path, seed: u64, start: u64, delay: Duration) -> ChildRun {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child_writer", "--ignored", "--nocapture", "--test-threads=1"])
        .env(ENV_DIR, dir)
        .env(ENV_SEED, seed.to_string())
        .env(ENV_START, start.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        BufReader::new(stdout)
            .lines()
            .map_while(|line| line.ok())
            .filter_map(|line| line.strip_prefix("ack ").map(|n| n.parse::<u64>().unwrap()))
            .collect::<Vec<u64>>()
    });
    let errors = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    std::thread::sleep(delay);
    child.kill().unwrap();
    let status = child.wait().unwrap();
    let acks = reader.join().unwrap();
    let stderr = errors.join().unwrap();
    assert_eq!(
        status.signal(),
        Some(9),
        "the child ended by itself ({status}) instead of being killed; stderr:\n{stderr}"
    );
    ChildRun { acks, stderr }
}

/// The database's whole contents, by scan and by point lookups (which must agree).
fn contents(db: &Db) -> Model {
    let scanned = common::collect(db.iter().unwrap());
    let mut model = Model::new();
    for (k, v) in &scanned {
        model.put(k, v);
    }
    assert_eq!(model.map.len(), scanned.len(), "the scan repeated a key");
    for i in 0..KEY_SPACE {
        let k = key(i);
        let got = db.get(&k).unwrap().map(|v| v.to_vec());
        assert_eq!(got, model.get(&k), "get and scan disagree on {}", String::from_utf8_lossy(&k));
    }
    model
}

/// Runs `cycles` write-and-kill cycles on one directory and checks each recovery.
fn crash_cycles(cycles: usize) {
    let seed = match std::env::var(ENV_SEED) {
        Ok(s) => s.parse().unwrap(),
        Err(_) => rand::random::<u64>(),
    };
    eprintln!("crash test seed: {seed} ({ENV_SEED}={seed} to reproduce)");
    let mut rng = StdRng::seed_from_u64(seed);
    let dir = tempfile::tempdir().unwrap();
    // `model` is the state after batches `0..applied`, all known to be in the database.
    let mut model = Model::new();
    let mut applied: u64 = 0;
    let started = Instant::now();
    let (mut total_acks, mut total_unacked) = (0u64, 0u64);
    for cycle in 0..cycles {
        let delay = Duration::from_millis(rng.gen_range(1..=300));
        let run = run_child(dir.path(), seed, applied, delay);
        for (i, &n) in run.acks.iter().enumerate() {
            assert_eq!(n, applied + i as u64, "cycle {cycle}: acks out of order");
        }
        let acked_through = applied + run.acks.len() as u64;

        let db = Db::open(dir.path(), options()).unwrap_or_else(|e| {
            panic!("cycle {cycle} (seed {seed}): reopen failed: {e}\nchild stderr:\n{}", run.stderr)
        });
        let found = contents(&db);
        for n in applied..acked_through {
            apply(&mut model, &batch_ops(seed, n));
        }
        // Every acknowledged batch must be there; batches written but not acknowledged
        // may be, but only whole and in order. With one writer at most one is in flight.
        let mut k = acked_through;
        let mut candidate = model.clone();
        let mut matched = false;
        for _ in 0..=2 {
            if candidate == found {
                matched = true;
                break;
            }
            apply(&mut candidate, &batch_ops(seed, k));
            k += 1;
        }
        assert!(
            matched,
            "cycle {cycle} (seed {seed}): after {acked_through} acknowledged batches the \
             database is not the state after any prefix of at least that many batches\n\
             expected (acked prefix): {:?}\nfound: {:?}",
            model.map.keys().map(|k| String::from_utf8_lossy(k)).collect::<Vec<_>>(),
            found.map.keys().map(|k| String::from_utf8_lossy(k)).collect::<Vec<_>>(),
        );
        total_acks += run.acks.len() as u64;
        total_unacked += k - acked_through;
        model = candidate;
        applied = k;
        db.close().unwrap();
    }
    eprintln!(
        "{cycles} crash cycles in {:?}: {total_acks} batches acknowledged, {total_unacked} \
         recovered without an acknowledgement",
        started.elapsed()
    );
    assert!(total_acks > 0, "no child ever acknowledged a write: the test checked nothing");
}

#[test]
fn crash_cycles_short() {
    crash_cycles(20);
}

#[test]
#[ignore = "long: 500 crash cycles, about two minutes"]
fn crash_cycles_long() {
    crash_cycles(500);
}
