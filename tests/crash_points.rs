//! Whitebox crash points: a child process runs a scripted workload and kills itself
//! with SIGKILL at one named filesystem operation, at its Nth hit, just before or just
//! after it; the parent recovers the database and checks it.
//!
//! The points are the filesystem seam's operations ([`HookedFs`]), named `<op>:<file>`:
//! `create`, `append`, `sync`, `truncate`, `preallocate`, `rename` (named for its
//! target), `remove`, `set_len` and `sync_dir`, on `wal`, `table`, `manifest`,
//! `current`, `lock` and their `.tmp` names (`table.tmp`, `current.tmp`). A manifest
//! edit is `append:manifest` then `sync:manifest`; the `CURRENT` swap is
//! `create:current.tmp`, `append:current.tmp`, `sync:current.tmp`,
//! `rename:current`, `sync_dir:dir`.
//!
//! Why points at the filesystem seam and not a cargo feature with macros in the
//! engine: after a process kill, the directory is the result of the filesystem
//! operations that had completed, so a kill just before or just after each one
//! reaches every on-disk state a kill anywhere can leave. The seam sees every such
//! operation, with no line of engine code behind a feature, and the list cannot drift
//! from the code: a new operation is a new point (the census counts them).
//!
//! The script ([`script`]): create a database, write synced and buffered batches
//! through memtable rotations and flushes, a manual compaction and a manifest
//! rewrite, close, reopen (recovery), write more, compact a range, close. The parent
//! first runs it once without a kill (the census: each point and its hit count), then
//! kills at each point. After every kill it reopens and checks that every
//! acknowledged batch is there, at most one more, whole; that after a close the
//! directory holds exactly the manifest's files; and that the database then takes a
//! write and still holds it after another reopen.
//!
//! Run: `cargo test --test crash_points` (first and last hit of every point, both
//! sides: about 80 kills, 6 s). Every hit of every point (about 1,000 kills at 20
//! points, 2 min): `cargo test --test crash_points -- --ignored --nocapture every_hit`.

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};

use aeternusdb::fs::OsFs;
use aeternusdb::{Db, Options, WriteBatch, WriteOptions};
use common::hooked_fs::{HookedFs, Phase};
use common::{Model, contents, key};

const ENV_DIR: &str = "AETERNUS_POINT_DIR";
const ENV_POINT: &str = "AETERNUS_POINT";
const KEY_SPACE: u32 = 64;
/// Batches of the script: the first part before the reopen, then the rest.
const BATCHES: (u64, u64) = (48, 72);

/// Where the kill happens relative to the operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Before,
    After,
}

/// The point to die at: `<before|after>@<point>#<hit>`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Target {
    side: Side,
    point: String,
    hit: u64,
}

impl Target {
    fn encode(&self) -> String {
        let side = if self.side == Side::Before { "before" } else { "after" };
        format!("{side}@{}#{}", self.point, self.hit)
    }

    fn decode(text: &str) -> Target {
        let (side, rest) = text.split_once('@').expect("side@point#hit");
        let (point, hit) = rest.rsplit_once('#').expect("side@point#hit");
        let side = if side == "before" { Side::Before } else { Side::After };
        Target { side, point: point.to_string(), hit: hit.parse().expect("hit number") }
    }
}

/// Each point's hits so far, and the process's death at the target.
#[derive(Debug, Default)]
struct Points {
    target: Option<Target>,
    hits: Mutex<BTreeMap<String, u64>>,
}

impl Points {
    /// The hook of [`HookedFs`]: counts the hit (before the operation) and dies at
    /// the target's side of it.
    fn hit(&self, point: &str, phase: Phase) {
        let hit = if phase == Phase::Before {
            let mut hits = self.hits.lock().unwrap();
            let count = hits.entry(point.to_string()).or_insert(0);
            *count += 1;
            *count
        } else {
            self.hits.lock().unwrap()[point]
        };
        let side = if phase == Phase::Before { Side::Before } else { Side::After };
        if self.target.as_ref().is_some_and(|t| t.point == point && t.hit == hit && t.side == side)
        {
            let _ = rustix::process::kill_process(
                rustix::process::getpid(),
                rustix::process::Signal::KILL,
            );
            unreachable!("SIGKILL returned");
        }
    }
}

/// Small memtables, aggressive leveled compaction and the smallest manifest limit:
/// the script rotates memtables, flushes, compacts and rewrites the manifest.
fn options() -> Options {
    Options { max_manifest_size: 4096, ..common::tiny_options_with(common::leveled_aggressive()) }
}

/// One operation of a batch.
enum Op {
    Put(Vec<u8>, Vec<u8>),
    DeleteRange(Vec<u8>, Vec<u8>),
}

/// Batch `n`: two to six puts naming `n`, every fifth after a range deletion.
fn batch_ops(n: u64) -> Vec<Op> {
    let k = |i: u64| key(((n * 7 + i * 13) % u64::from(KEY_SPACE)) as u32);
    let mut ops = Vec::new();
    if n % 5 == 3 {
        let start = (n * 11 % u64::from(KEY_SPACE)) as u32;
        ops.push(Op::DeleteRange(key(start), key(start + 8)));
    }
    for i in 0..(2 + n % 5) {
        ops.push(Op::Put(k(i), format!("batch-{n:04}-{i}-{}", "x".repeat(40)).into_bytes()));
    }
    ops
}

fn to_batch(n: u64) -> WriteBatch {
    let mut batch = WriteBatch::new();
    for op in batch_ops(n) {
        match op {
            Op::Put(k, v) => batch.put(&k, &v).unwrap(),
            Op::DeleteRange(a, b) => batch.delete_range(&a, &b).unwrap(),
        };
    }
    batch
}

fn apply(model: &mut Model, n: u64) {
    for op in batch_ops(n) {
        match op {
            Op::Put(k, v) => model.put(&k, &v),
            Op::DeleteRange(a, b) => model.delete_range(&a, &b),
        }
    }
}

/// The model after batches `0..n`.
fn model_after(n: u64) -> Model {
    let mut model = Model::new();
    for b in 0..n {
        apply(&mut model, b);
    }
    model
}

/// The scripted workload; `ack <n>` on stdout after each write returns.
fn script(dir: &Path, fs: &HookedFs) -> aeternusdb::Result<()> {
    let options = || Options { fs: Arc::new(fs.clone()), ..options() };
    let ack = |n: u64| println!("ack {n}");
    let db = Db::open(dir, options())?;
    for n in 0..BATCHES.0 {
        // One batch in four is buffered: a later sync or flush makes it durable.
        db.write_with(&to_batch(n), WriteOptions { sync: n % 4 != 1 })?;
        ack(n);
        if n == 20 {
            db.flush()?;
        }
        if n == 36 {
            db.compact()?;
        }
    }
    db.close()?;
    drop(db);
    let db = Db::open(dir, options())?;
    for n in BATCHES.0..BATCHES.1 {
        db.write_with(&to_batch(n), WriteOptions { sync: n % 4 != 1 })?;
        ack(n);
        if n == 60 {
            db.compact_range(key(0), key(KEY_SPACE / 2))?;
        }
    }
    db.close()
}

/// The child: runs the script, dying at the target if there is one; at the end
/// prints the census (`hits <point> <count>`).
#[test]
#[ignore = "the child process of the crash-point tests; runs only when they start it"]
fn child_script() {
    let Ok(dir) = std::env::var(ENV_DIR) else { return };
    let target = std::env::var(ENV_POINT).ok().map(|t| Target::decode(&t));
    let points = Arc::new(Points { target, ..Points::default() });
    let hook = points.clone();
    let fs = HookedFs::new(Arc::new(OsFs), move |point, phase| {
        hook.hit(point, phase);
        Ok(())
    });
    // libtest has printed `test child_script ... ` without a newline: end that line.
    println!();
    if let Err(e) = script(Path::new(&dir), &fs) {
        eprintln!("script failed: {e}");
        std::process::exit(3);
    }
    for (point, count) in points.hits.lock().unwrap().iter() {
        println!("hits {point} {count}");
    }
}

/// What a child printed and how it ended.
struct ChildRun {
    acked: u64,
    census: BTreeMap<String, u64>,
    killed: bool,
}

fn run_child(dir: &Path, target: Option<&Target>) -> ChildRun {
    let mut command = Command::new(std::env::current_exe().unwrap());
    command
        .args(["--exact", "child_script", "--ignored", "--nocapture", "--test-threads=1"])
        .env(ENV_DIR, dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    match target {
        Some(target) => command.env(ENV_POINT, target.encode()),
        None => command.env_remove(ENV_POINT),
    };
    let mut child = command.spawn().unwrap();
    let stdout = child.stdout.take().unwrap();
    let (mut acked, mut census) = (0, BTreeMap::new());
    for line in BufReader::new(stdout).lines().map_while(|l| l.ok()) {
        if let Some(n) = line.strip_prefix("ack ") {
            let n: u64 = n.parse().unwrap();
            assert_eq!(n, acked, "acks out of order");
            acked += 1;
        } else if let Some(rest) = line.strip_prefix("hits ") {
            let (point, count) = rest.rsplit_once(' ').unwrap();
            census.insert(point.to_string(), count.parse().unwrap());
        }
    }
    let output = child.wait_with_output().unwrap();
    let killed = output.status.signal() == Some(9);
    assert!(
        killed || output.status.success(),
        "{target:?}: the child failed ({}): {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    ChildRun { acked, census, killed }
}

/// Recovers after a kill at `target` and checks the database.
fn check_recovery(dir: &Path, target: &Target, acked: u64) {
    let context = target.encode();
    let db = Db::open(dir, Options { auto_compaction: false, ..options() })
        .unwrap_or_else(|e| panic!("{context}: reopen after {acked} acknowledged batches: {e}"));
    let found = contents(&db, KEY_SPACE + 8);
    let held = (acked..=(acked + 1).min(BATCHES.1)).find(|&n| model_after(n) == found);
    let Some(held) = held else {
        panic!(
            "{context}: after {acked} acknowledged batches the database is neither the state \
             after them nor after one more\nfound: {:?}",
            found
                .all()
                .iter()
                .map(|(k, v)| (String::from_utf8_lossy(k), v.len()))
                .collect::<Vec<_>>()
        );
    };
    common::wait_for_flushes(&db, &context);
    common::check_no_orphans(dir, Some(&db), &context);
    // The recovered database takes writes and keeps them.
    db.put("after-recovery", "yes").unwrap();
    db.close().unwrap();
    drop(db);
    common::check_no_orphans(dir, None, &format!("{context}, after close"));
    let db = Db::open(dir, Options { auto_compaction: false, ..options() }).unwrap();
    assert_eq!(db.get("after-recovery").unwrap().as_deref(), Some(&b"yes"[..]), "{context}");
    let mut expected = model_after(held);
    expected.put(b"after-recovery", b"yes");
    assert_eq!(contents(&db, KEY_SPACE + 8), expected, "{context}: second reopen");
    db.close().unwrap();
}

/// The census: every point the script reaches, with its hit count.
fn census() -> BTreeMap<String, u64> {
    let dir = tempfile::tempdir().unwrap();
    let run = run_child(&dir.path().join("db"), None);
    assert!(!run.killed);
    assert_eq!(run.acked, BATCHES.1, "the script did not finish");
    // The points the script must reach: if one goes missing, the list above (and the
    // kills) no longer cover what the engine does.
    for point in [
        "create:wal",
        "append:wal",
        "sync:wal",
        "create:table.tmp",
        "append:table.tmp",
        "sync:table.tmp",
        "rename:table",
        "remove:table",
        "remove:wal",
        "create:manifest",
        "append:manifest",
        "sync:manifest",
        "create:current.tmp",
        "append:current.tmp",
        "sync:current.tmp",
        "rename:current",
        "sync_dir:dir",
    ] {
        assert!(
            run.census.contains_key(point),
            "the script never reached {point}: {:?}",
            run.census
        );
    }
    eprintln!("census: {:?}", run.census);
    run.census
}

/// Kills at each of `hits(count)` of every point, on both sides of it.
fn kill_at_every_point(hits: impl Fn(u64) -> Vec<u64>) {
    let census = census();
    let (mut kills, mut not_reached) = (0, 0);
    for (point, &count) in &census {
        for hit in hits(count) {
            for side in [Side::Before, Side::After] {
                let target = Target { side, point: point.clone(), hit };
                let dir = tempfile::tempdir().unwrap();
                let db_dir = dir.path().join("db");
                let run = run_child(&db_dir, Some(&target));
                if !run.killed {
                    // Background work made fewer hits this time.
                    not_reached += 1;
                    continue;
                }
                kills += 1;
                check_recovery(&db_dir, &target, run.acked);
            }
        }
    }
    eprintln!(
        "{kills} kills at {} points checked ({not_reached} targets not reached in their run)",
        census.len()
    );
    assert!(kills > 0);
}

#[test]
fn kills_at_the_first_and_last_hit_of_every_point_lose_nothing_acknowledged() {
    kill_at_every_point(|count| if count > 1 { vec![1, count] } else { vec![1] });
}

#[test]
#[ignore = "long: every hit of every point, about two minutes"]
fn every_hit_of_every_point_loses_nothing_acknowledged() {
    kill_at_every_point(|count| (1..=count).collect());
}
