//! The whole database against a `BTreeMap`, on the fault-injecting in-memory
//! filesystem: the input is a program of writes, reads, flushes, compactions,
//! injected I/O failures, crashes, power losses and reopens (after redb's
//! `fuzz_redb` and sled's `fuzz_model`).
//!
//! # What is checked
//! - Reads (point lookups and scans, forward, backward and bounded) return exactly
//!   the acknowledged writes, or an error; never other data. After a write, flush or
//!   compaction failed, the failed write is not visible either.
//! - After a clean close and reopen, every acknowledged write is there.
//! - After a process crash (locks released, appended bytes kept) or a power loss
//!   (unsynced bytes dropped, and the unsynced directory operations but for a prefix
//!   the program chooses, as a journaling filesystem may commit them early) and a
//!   reopen, the database holds the state after some
//!   prefix of the writes issued (the failed one included or not), and that prefix
//!   holds every write made durable by a synced write, `sync_wal`, `flush` or a clean
//!   close. A write puts values naming its index, so different prefixes differ.
//! - Without an injected fault, nothing fails; a reopen after a fault during recovery
//!   (the fault cleared) succeeds and loses nothing durable either.
//!
//! # Input
//! Byte 0 picks the options (write buffer 4–64 KiB, compression, automatic
//! compaction); each operation is then an opcode byte and up to three argument bytes
//! (see `Harness::step`). Faults: `FaultFs::fail_after` of any kind, a torn append
//! (`tear_next_write`) and a full disk (`set_capacity`), cleared at the next reopen.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::Arc;

use aeternusdb::fs::{FaultFs, FaultKind};
use aeternusdb::{Compression, Db, Error, Options, WriteBatch, WriteOptions};
use bytes::Bytes;

const DIR: &str = "/db";
/// Keys `k00`..`k15`: few enough that writes collide and scans see deletes.
const KEY_SPACE: u8 = 16;
/// Most operations run from one input (bounds the work of a long input).
const MAX_OPS: usize = 400;

type State = BTreeMap<Bytes, Bytes>;

#[derive(Debug, Clone)]
enum Op {
    Put(Bytes, Bytes),
    Delete(Bytes),
    DeleteRange(Bytes, Bytes),
}

fn apply(state: &mut State, ops: &[Op]) {
    for op in ops {
        match op {
            Op::Put(k, v) => {
                state.insert(k.clone(), v.clone());
            }
            Op::Delete(k) => {
                state.remove(k);
            }
            Op::DeleteRange(a, b) => state.retain(|k, _| !(a <= k && k < b)),
        }
    }
}

fn key(i: u8) -> Bytes {
    Bytes::from(format!("k{:02}", i % KEY_SPACE))
}

/// `key(i)` for `i <= KEY_SPACE`, without wrapping: the exclusive end of a range.
fn end_key(i: u8) -> Bytes {
    Bytes::from(format!("k{i:02}"))
}

/// Reads the bytes of the program, zero once they run out.
struct Program<'a> {
    data: &'a [u8],
}

impl Program<'_> {
    fn byte(&mut self) -> u8 {
        match self.data.split_first() {
            Some((&b, rest)) => {
                self.data = rest;
                b
            }
            None => 0,
        }
    }
}

/// The writes issued since the database was created, and what is known of them.
#[derive(Default)]
struct History {
    /// Every write issued, in order; the last may have failed.
    writes: Vec<Vec<Op>>,
    /// Writes acknowledged (or recovered by a reopen): the first `acked` are visible.
    acked: usize,
    /// Writes made durable: the first `durable` survive a power loss.
    durable: usize,
    /// A write, flush or compaction failed: no write is issued until a reopen.
    failed: bool,
}

impl History {
    fn state(&self, k: usize) -> State {
        let mut state = State::new();
        for ops in &self.writes[..k] {
            apply(&mut state, ops);
        }
        state
    }

    /// The smallest `k` in `from..=writes.len()` whose state is `found`.
    fn matching_prefix(&self, found: &State, from: usize) -> Option<usize> {
        let mut state = self.state(from);
        for k in from..=self.writes.len() {
            if k > from {
                apply(&mut state, &self.writes[k - 1]);
            }
            if state == *found {
                return Some(k);
            }
        }
        None
    }
}

struct Harness {
    fs: FaultFs,
    options: Options,
    db: Option<Db>,
    history: History,
    /// A fault is armed (or fired): errors are allowed.
    faulty: bool,
}

pub fn run(data: &[u8]) {
    let mut program = Program { data };
    let setup = program.byte();
    let fs = FaultFs::new();
    let options = Options {
        fs: Arc::new(fs.clone()),
        write_buffer_size: 4096 << ((setup & 3) + ((setup >> 2) & 1)),
        block_size: 256,
        block_cache_size: 16 << 10,
        max_manifest_size: 4096,
        compression: [Compression::Lz4, Compression::None, Compression::Zstd, Compression::Lz4]
            [usize::from((setup >> 3) & 3)],
        bloom_bits_per_key: if setup & 0x20 == 0 { 10 } else { 0 },
        auto_compaction: setup & 0x40 != 0,
        ..Options::default()
    };
    let db = Db::open(DIR, options.clone()).expect("a new database opens");
    let mut h = Harness { fs, options, db: Some(db), history: History::default(), faulty: false };
    for _ in 0..MAX_OPS {
        if program.data.is_empty() {
            break;
        }
        h.step(&mut program);
    }
    h.reopen(Restart::Clean, false);
}

#[derive(Debug, Clone, Copy)]
enum Restart {
    Clean,
    Crash,
    /// A power loss that keeps the first `n % (pending + 1)` of the `pending`
    /// directory operations no directory sync covered.
    PowerLoss(u8),
}

impl Harness {
    fn db(&self) -> &Db {
        self.db.as_ref().expect("the harness keeps a database open between steps")
    }

    fn step(&mut self, p: &mut Program<'_>) {
        let opcode = p.byte();
        match opcode % 16 {
            0..=4 => {
                let (k, len) = (p.byte(), p.byte());
                let i = self.history.writes.len();
                let value = format!("w{i}-{}", "v".repeat(usize::from(len) * 8));
                self.write(vec![Op::Put(key(k), Bytes::from(value))], opcode % 16 < 3);
            }
            5 => self.write(vec![Op::Delete(key(p.byte()))], opcode & 0x10 != 0),
            6 => {
                let (a, b) = (p.byte() % KEY_SPACE, p.byte() % KEY_SPACE);
                let (a, b) = (a.min(b), a.max(b).saturating_add(1));
                let i = self.history.writes.len();
                let marker = Op::Put(key(p.byte()), Bytes::from(format!("w{i}-after-range")));
                self.write(vec![Op::DeleteRange(key(a), end_key(b)), marker], opcode & 0x10 != 0);
            }
            7 => {
                let i = self.history.writes.len();
                let n = 2 + p.byte() % 4;
                let mut ops: Vec<Op> = (0..n)
                    .map(|j| {
                        let b = p.byte();
                        if b & 0x80 == 0 {
                            Op::Put(key(b), Bytes::from(format!("w{i}-{j}")))
                        } else {
                            Op::Delete(key(b))
                        }
                    })
                    .collect();
                ops.push(Op::Put(key(p.byte()), Bytes::from(format!("w{i}-batch"))));
                self.write(ops, opcode & 0x10 != 0);
            }
            8 => self.check_get(key(p.byte())),
            9 => self.check_scan(p.byte(), p.byte()),
            10 => self.background(|db| db.flush(), true),
            11 => self.background(|db| db.compact(), false),
            12 => {
                let result = self.db().sync_wal();
                self.expect_ok(&result, "sync_wal");
                if result.is_ok() {
                    self.history.durable = self.history.acked;
                }
            }
            13 => {
                let (how, n) = (p.byte(), p.byte());
                match how >> 6 {
                    0 | 1 => {
                        let kind = FaultKind::ALL[usize::from(how) % FaultKind::ALL.len()];
                        self.fs.fail_after(kind, usize::from(n % 64));
                    }
                    2 => self.fs.tear_next_write(usize::from(n)),
                    _ => self.fs.set_capacity(Some(self.fs.used_bytes() + u64::from(n) * 64)),
                }
                self.faulty = true;
            }
            14 => {
                let how = p.byte();
                let restart = match how % 3 {
                    0 => Restart::Clean,
                    1 => Restart::Crash,
                    _ => Restart::PowerLoss(how / 3),
                };
                self.reopen(restart, opcode & 0x10 != 0);
            }
            _ => self.check_all(),
        }
    }

    /// An error is allowed only once a fault was injected.
    fn expect_ok<T>(&self, result: &aeternusdb::Result<T>, what: &str) {
        if let Err(e) = result {
            assert!(self.faulty, "{what} failed without an injected fault: {e}");
            assert!(
                !matches!(e, Error::Corruption { .. }),
                "{what}: an I/O fault reported as corruption: {e}"
            );
        }
    }

    fn write(&mut self, ops: Vec<Op>, sync: bool) {
        if self.history.failed {
            return;
        }
        let mut batch = WriteBatch::new();
        for op in &ops {
            match op {
                Op::Put(k, v) => batch.put(k, v),
                Op::Delete(k) => batch.delete(k),
                Op::DeleteRange(a, b) => batch.delete_range(a, b),
            }
            .expect("small operations fit a batch");
        }
        let result = self.db().write_with(&batch, WriteOptions { sync });
        self.expect_ok(&result, "write");
        self.history.writes.push(ops);
        match result {
            Ok(()) => {
                self.history.acked = self.history.writes.len();
                if sync {
                    self.history.durable = self.history.acked;
                }
            }
            Err(_) => self.history.failed = true,
        }
    }

    /// A flush or compaction; a flush that succeeds makes every write durable.
    fn background(&mut self, f: impl Fn(&Db) -> aeternusdb::Result<()>, flush: bool) {
        if self.history.failed {
            return;
        }
        let result = f(self.db());
        self.expect_ok(&result, if flush { "flush" } else { "compact" });
        match result {
            Ok(()) => self.history.durable = self.history.acked,
            Err(_) => self.history.failed = true,
        }
    }

    fn visible(&self) -> State {
        self.history.state(self.history.acked)
    }

    fn check_get(&self, k: Bytes) {
        let result = self.db().get(&k);
        self.expect_ok(&result, "get");
        if let Ok(got) = result {
            assert_eq!(got, self.visible().get(&k).cloned(), "get {k:?}");
        }
    }

    /// A scan of `[key(a), key(b))` (unbounded where the byte's top bit is set),
    /// forward or backward by `a`'s bit 6.
    fn check_scan(&self, a: u8, b: u8) {
        let bound = |x: u8, included: bool| match (x & 0x80 != 0, included) {
            (true, _) => Bound::Unbounded,
            (false, true) => Bound::Included(key(x)),
            (false, false) => Bound::Excluded(key(x)),
        };
        let (lower, upper) = (bound(a, true), bound(b, false));
        if let (Bound::Included(l), Bound::Excluded(u)) = (&lower, &upper)
            && l > u
        {
            return;
        }
        let want: Vec<(Bytes, Bytes)> = self
            .visible()
            .range((lower.clone(), upper.clone()))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let result = self.db().range((lower, upper));
        self.expect_ok(&result, "range");
        let Ok(it) = result else { return };
        let got: aeternusdb::Result<Vec<(Bytes, Bytes)>> =
            if a & 0x40 == 0 { it.collect() } else { it.rev().collect() };
        self.expect_ok(&got, "range scan");
        if let Ok(mut got) = got {
            if a & 0x40 != 0 {
                got.reverse();
            }
            assert_eq!(got, want, "scan {a:#x}..{b:#x}");
        }
    }

    /// Every key, and a full scan.
    fn check_all(&self) {
        for i in 0..KEY_SPACE {
            self.check_get(key(i));
        }
        self.check_scan(0x80, 0x80);
        self.check_scan(0xc0, 0x80);
    }

    /// Closes (cleanly or not) and reopens, then checks what survived. With
    /// `fault_recovery`, a fault armed before is left armed during the first reopen.
    fn reopen(&mut self, restart: Restart, fault_recovery: bool) {
        let db = self.db.take().expect("open");
        let closed = match restart {
            Restart::Clean => db.close().is_ok(),
            Restart::Crash => {
                self.fs.release_locks();
                false
            }
            Restart::PowerLoss(dir_ops) => {
                let n = usize::from(dir_ops);
                self.fs.power_loss_keeping_dir_ops(|pending| n % (pending + 1), |_, _| 0);
                false
            }
        };
        drop(db);
        if closed {
            self.history.durable = self.history.acked;
        }
        if !fault_recovery {
            self.fs.clear_faults();
            self.fs.set_capacity(None);
        }
        let db = match Db::open(DIR, self.options.clone()) {
            Ok(db) => db,
            Err(e) => {
                assert!(self.faulty && fault_recovery, "reopen after {restart:?} failed: {e}");
                // A failed recovery must leave the durable writes for the next one.
                self.fs.power_loss();
                self.fs.clear_faults();
                self.fs.set_capacity(None);
                Db::open(DIR, self.options.clone())
                    .unwrap_or_else(|e| panic!("reopen after a failed recovery: {e}"))
            }
        };
        self.fs.clear_faults();
        self.fs.set_capacity(None);
        // A fault left armed for recovery may have fired in background work that the
        // open started (a flush of the replayed WAL) after it returned: errors stay
        // allowed until the next reopen.
        self.faulty &= fault_recovery;
        let found = contents(&db);
        // A clean close keeps every acknowledged write; otherwise the power loss (or the
        // crash, which keeps appended bytes) keeps at least the durable ones.
        let from = match restart {
            Restart::Clean | Restart::Crash => self.history.acked,
            Restart::PowerLoss(_) => self.history.durable,
        };
        let from = if fault_recovery { self.history.durable } else { from };
        let Some(k) = self.history.matching_prefix(&found, from) else {
            panic!(
                "after {restart:?} the database is not the state after any prefix of at least \
                 {from} of the {} writes (durable {}, acked {}): {found:?}",
                self.history.writes.len(),
                self.history.durable,
                self.history.acked
            )
        };
        self.history.writes.truncate(k);
        self.history.acked = k;
        self.history.durable = match restart {
            // What survived a power loss was durable, and stays so.
            Restart::PowerLoss(_) => k,
            Restart::Clean | Restart::Crash => self.history.durable.min(k),
        };
        self.history.failed = false;
        self.db = Some(db);
    }
}

/// Every key and value in the database, read with faults cleared.
fn contents(db: &Db) -> State {
    db.iter()
        .and_then(|it| it.collect::<aeternusdb::Result<Vec<_>>>())
        .expect("a scan right after reopen, without faults, succeeds")
        .into_iter()
        .collect()
}
