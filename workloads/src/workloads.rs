//! The workloads of `docs/workloads.md`.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use crate::data::{KEY_LEN, Rng, VALUE_LEN, Values, key, missing_key, seeds, shuffled};
use crate::engine::{Engine, OpenOptions, Result};
use crate::process::{disk_bytes, storage_write_bytes};
use crate::report::WorkloadResult;
use crate::workload::Workload;
use crate::zipf::{Latest, ScrambledZipfian};
use crate::{Progress, Size};

/// Runs `workload` with engine `E` in `dir` (which should be fresh).
pub fn run<E: Engine>(
    workload: Workload,
    dir: &Path,
    size: Size,
    progress: &dyn Progress,
) -> Result<Vec<WorkloadResult>> {
    let ctx = Ctx { dir, size, progress };
    let name = workload.name();
    let result = match workload {
        Workload::FillSeq => fill::<E>(&ctx, name, false)?,
        Workload::FillRandom => fill::<E>(&ctx, name, true)?,
        Workload::FillSync => return fillsync::<E>(&ctx),
        Workload::Overwrite => overwrite::<E>(&ctx)?,
        Workload::ReadRandom => readrandom::<E>(&ctx)?,
        Workload::ReadMissing => readmissing::<E>(&ctx)?,
        Workload::SeekRandom => seekrandom::<E>(&ctx)?,
        Workload::ReadWhileWriting => readwhilewriting::<E>(&ctx)?,
        Workload::DeleteRange => deleterange::<E>(&ctx)?,
        Workload::Reopen => reopen::<E>(&ctx)?,
        Workload::YcsbA => ycsb_run::<E>(&ctx, b'a')?,
        Workload::YcsbB => ycsb_run::<E>(&ctx, b'b')?,
        Workload::YcsbC => ycsb_run::<E>(&ctx, b'c')?,
        Workload::YcsbD => ycsb_run::<E>(&ctx, b'd')?,
        Workload::YcsbE => ycsb_run::<E>(&ctx, b'e')?,
        Workload::YcsbF => ycsb_run::<E>(&ctx, b'f')?,
    };
    Ok(vec![result])
}

struct Ctx<'a> {
    dir: &'a Path,
    size: Size,
    progress: &'a dyn Progress,
}

const TICK: u64 = 1024;

/// User bytes of one put.
const ENTRY_BYTES: u64 = (KEY_LEN + VALUE_LEN) as u64;

impl Ctx<'_> {
    fn n(&self) -> u64 {
        self.size.keys
    }

    fn open<E: Engine>(&self) -> Result<E> {
        E::open(self.dir, &OpenOptions::default())
    }

    /// Value of key `i` at `version`, of this run's kind.
    fn value(&self, i: u64, version: u64) -> [u8; VALUE_LEN] {
        self.size.values.value(i, version)
    }

    fn tick(&self, i: u64) {
        if (i + 1).is_multiple_of(TICK) {
            self.progress.advance(TICK);
        }
    }

    /// Buffered puts of `order` with version 0 (untimed load phases and fills).
    fn load<E: Engine>(&self, db: &E, label: &str, order: &[u64]) -> Result<Duration> {
        self.progress.start(label, order.len() as u64);
        let started = Instant::now();
        for (n, &i) in order.iter().enumerate() {
            db.put(&key(i), &self.value(i, 0), false)?;
            self.tick(n as u64);
        }
        Ok(started.elapsed())
    }

    /// Opens, loads N keys in random order and settles.
    fn loaded<E: Engine>(&self, name: &str) -> Result<E> {
        let db = self.open::<E>()?;
        self.load(&db, &format!("{name}: load"), &shuffled(self.n(), seeds::LOAD_ORDER))?;
        db.settle()?;
        Ok(db)
    }
}

/// Nanoseconds from 1 ns to 60 s at 3 significant digits; slower operations count as 60 s.
fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000_000, 3).expect("valid histogram bounds")
}

fn record(h: &mut Histogram<u64>, started: Instant) {
    h.saturating_record(started.elapsed().as_nanos() as u64);
}

/// Adds write amplification (storage bytes written since `io_before` per user byte put)
/// and, if `space`, space amplification (bytes on disk per live user byte) to `r`, for a
/// fill or overwrite of the N keys: N puts, N live entries.
fn amplification(
    ctx: &Ctx,
    mut r: WorkloadResult,
    io_before: Option<u64>,
    space: bool,
) -> Result<WorkloadResult> {
    let user_bytes = (ctx.n() * ENTRY_BYTES) as f64;
    if let (Some(before), Some(after)) = (io_before, storage_write_bytes()) {
        r = r.with("write amp", after.saturating_sub(before) as f64 / user_bytes, "x");
    }
    if space {
        r = r.with("space amp", disk_bytes(ctx.dir)? as f64 / user_bytes, "x");
    }
    Ok(r)
}

fn fill<E: Engine>(ctx: &Ctx, name: &str, random: bool) -> Result<WorkloadResult> {
    let order = if random { shuffled(ctx.n(), seeds::LOAD_ORDER) } else { (0..ctx.n()).collect() };
    let io_before = storage_write_bytes();
    let db = ctx.open::<E>()?;
    let elapsed = ctx.load(&db, name, &order)?;
    db.settle()?;
    let r = WorkloadResult::new(name, ctx.n(), elapsed);
    let r = amplification(ctx, r, io_before, random)?;
    db.close()?;
    Ok(r)
}

fn fillsync<E: Engine>(ctx: &Ctx) -> Result<Vec<WorkloadResult>> {
    let ops = ctx.size.sync_ops;
    let db = ctx.open::<E>()?;
    ctx.progress.start("fillsync: 1 thread", ops);
    let mut h = histogram();
    let started = Instant::now();
    for i in 0..ops {
        let t = Instant::now();
        db.put(&key(i), &ctx.value(i, 0), true)?;
        record(&mut h, t);
        ctx.tick(i);
    }
    let one = WorkloadResult::new("fillsync 1 thread", ops, started.elapsed()).latencies(&h);

    ctx.progress.start("fillsync: 4 threads", ops);
    let started = Instant::now();
    let histograms = std::thread::scope(|s| {
        let handles: Vec<_> = (0..4u64)
            .map(|t| {
                let db = &db;
                s.spawn(move || -> Result<Histogram<u64>> {
                    let mut h = histogram();
                    for i in (t..ops).step_by(4) {
                        let started = Instant::now();
                        db.put(&key(ops + i), &ctx.value(ops + i, 0), true)?;
                        record(&mut h, started);
                        ctx.tick(i);
                    }
                    Ok(h)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("writer thread panicked")).collect::<Vec<_>>()
    });
    let elapsed = started.elapsed();
    let mut h = histogram();
    for part in histograms {
        h.add(part?).expect("same histogram bounds");
    }
    let four = WorkloadResult::new("fillsync 4 threads", ops, elapsed).latencies(&h);
    db.close()?;
    Ok(vec![one, four])
}

fn overwrite<E: Engine>(ctx: &Ctx) -> Result<WorkloadResult> {
    let db = ctx.loaded::<E>("overwrite")?;
    let order = shuffled(ctx.n(), seeds::OVERWRITE);
    let io_before = storage_write_bytes();
    ctx.progress.start("overwrite", ctx.n());
    let started = Instant::now();
    for (n, &i) in order.iter().enumerate() {
        db.put(&key(i), &ctx.value(i, 1), false)?;
        ctx.tick(n as u64);
    }
    let elapsed = started.elapsed();
    db.settle()?;
    // Spot-check the new versions (untimed).
    let mut ok = true;
    for &i in order.iter().step_by(97) {
        ok &= db.get(&key(i))?.as_deref() == Some(&ctx.value(i, 1)[..]);
    }
    let r = WorkloadResult::new("overwrite", ctx.n(), elapsed);
    let r = amplification(ctx, r, io_before, true)?.verified(ok);
    db.close()?;
    Ok(r)
}

fn readrandom<E: Engine>(ctx: &Ctx) -> Result<WorkloadResult> {
    random_gets::<E>(ctx, "readrandom", key, |i, got| got == Some(&ctx.value(i, 0)[..]))
}

fn readmissing<E: Engine>(ctx: &Ctx) -> Result<WorkloadResult> {
    random_gets::<E>(ctx, "readmissing", missing_key, |_, got| got.is_none())
}

/// N timed gets of `key_of(i)` for uniform random `i` over a loaded database; the
/// result is verified if `expected(i, value)` held for every one.
fn random_gets<E: Engine>(
    ctx: &Ctx,
    name: &str,
    key_of: fn(u64) -> [u8; KEY_LEN],
    expected: impl Fn(u64, Option<&[u8]>) -> bool,
) -> Result<WorkloadResult> {
    let db = ctx.loaded::<E>(name)?;
    let mut rng = Rng::new(seeds::READS);
    let mut h = histogram();
    let mut ok = true;
    ctx.progress.start(name, ctx.n());
    let started = Instant::now();
    for n in 0..ctx.n() {
        let i = rng.below(ctx.n());
        let t = Instant::now();
        let got = db.get(&key_of(i))?;
        record(&mut h, t);
        ok &= expected(i, got.as_deref());
        ctx.tick(n);
    }
    let r = WorkloadResult::new(name, ctx.n(), started.elapsed()).latencies(&h).verified(ok);
    db.close()?;
    Ok(r)
}

/// Checks that a scan from key `first` visits consecutive keys with version-0 values.
struct ScanCheck {
    values: Values,
    next: u64,
    ok: bool,
}

impl ScanCheck {
    fn visit(&mut self, k: &[u8], v: &[u8]) {
        self.ok &= k == key(self.next) && v == self.values.value(self.next, 0);
        self.next += 1;
    }
}

fn seekrandom<E: Engine>(ctx: &Ctx) -> Result<WorkloadResult> {
    const NEXT: u64 = 100;
    let db = ctx.loaded::<E>("seekrandom")?;
    let mut rng = Rng::new(seeds::SEEKS);
    let mut h = histogram();
    let mut ok = true;
    let seeks = ctx.size.seeks;
    ctx.progress.start("seekrandom", seeks);
    let started = Instant::now();
    for n in 0..seeks {
        let i = rng.below(ctx.n());
        let mut check = ScanCheck { values: ctx.size.values, next: i, ok: true };
        let t = Instant::now();
        let count = db.scan(&key(i), NEXT as usize, &mut |k, v| check.visit(k, v))?;
        record(&mut h, t);
        ok &= check.ok && count as u64 == NEXT.min(ctx.n() - i);
        ctx.tick(n);
    }
    let r = WorkloadResult::new("seekrandom", seeks, started.elapsed()).latencies(&h).verified(ok);
    db.close()?;
    Ok(r)
}

fn readwhilewriting<E: Engine>(ctx: &Ctx) -> Result<WorkloadResult> {
    let db = ctx.loaded::<E>("readwhilewriting")?;
    let n = ctx.n();
    let done = AtomicBool::new(false);
    ctx.progress.start("readwhilewriting: reads", n);
    let (reader, writes) = std::thread::scope(|s| {
        let writer = s.spawn(|| -> Result<u64> {
            let mut rng = Rng::new(seeds::WRITER);
            let mut writes = 0;
            while !done.load(Ordering::Relaxed) {
                let i = rng.below(n);
                db.put(&key(i), &ctx.value(i, 1), false)?;
                writes += 1;
            }
            Ok(writes)
        });
        let reader = (|| -> Result<(Duration, Histogram<u64>, bool)> {
            let mut rng = Rng::new(seeds::READS);
            let mut h = histogram();
            let mut ok = true;
            let started = Instant::now();
            for op in 0..n {
                let i = rng.below(n);
                let t = Instant::now();
                let got = db.get(&key(i))?;
                record(&mut h, t);
                // Either the loaded version or the writer's.
                ok &= got.as_deref() == Some(&ctx.value(i, 0)[..])
                    || got.as_deref() == Some(&ctx.value(i, 1)[..]);
                ctx.tick(op);
            }
            Ok((started.elapsed(), h, ok))
        })();
        done.store(true, Ordering::Relaxed);
        (reader, writer.join().expect("writer thread panicked"))
    });
    let (elapsed, h, ok) = reader?;
    let writes = writes?;
    let r = WorkloadResult::new("readwhilewriting", n, elapsed)
        .latencies(&h)
        .with("writes/s", writes as f64 / elapsed.as_secs_f64().max(1e-9), "ops/s")
        .verified(ok);
    db.close()?;
    Ok(r)
}

fn deleterange<E: Engine>(ctx: &Ctx) -> Result<WorkloadResult> {
    const WIDTH: u64 = 100;
    let db = ctx.loaded::<E>("deleterange")?;
    // Distinct, non-overlapping blocks of 100 keys.
    let blocks = ctx.n() / WIDTH;
    let deletes = ctx.size.range_deletes.min(blocks);
    let chosen = &shuffled(blocks, seeds::RANGES)[..deletes as usize];
    ctx.progress.start("deleterange", deletes);
    let mut h = histogram();
    let started = Instant::now();
    for (n, &b) in chosen.iter().enumerate() {
        let t = Instant::now();
        db.delete_range(&key(b * WIDTH), &key((b + 1) * WIDTH))?;
        record(&mut h, t);
        ctx.tick(n as u64);
    }
    let elapsed = started.elapsed();
    let mut deleted = vec![false; blocks as usize + 1];
    for &b in chosen {
        deleted[b as usize] = true;
    }
    let mut next = 0u64;
    let mut ok = true;
    let scan_started = Instant::now();
    let count = db.scan(b"", usize::MAX, &mut |k, v| {
        while deleted[(next / WIDTH) as usize] {
            next += WIDTH;
        }
        ok &= k == key(next) && v == ctx.value(next, 0);
        next += 1;
    })?;
    let scan = scan_started.elapsed();
    ok &= count as u64 == ctx.n() - deletes * WIDTH;
    let r = WorkloadResult::new("deleterange", deletes, elapsed)
        .latencies(&h)
        .with("full scan", scan.as_secs_f64(), "s")
        .verified(ok);
    db.close()?;
    Ok(r)
}

/// YCSB core workloads: N records, N operations. `workload` is the letter, `b'a'` to `b'f'`
/// (it also seeds the operation mix, so every engine sees the same one).
fn ycsb_run<E: Engine>(ctx: &Ctx, workload: u8) -> Result<WorkloadResult> {
    let name = format!("ycsb-{}", workload as char);
    let db = ctx.loaded::<E>(&name)?;
    let n = ctx.n();
    // Version of every record; inserts append.
    let mut versions: Vec<u32> = vec![0; n as usize];
    let mut rng = Rng::new(seeds::YCSB ^ workload as u64);
    // Keys chosen among the loaded and the expected inserted records, as YCSB does,
    // retrying beyond the last inserted one.
    let mut zipf = ScrambledZipfian::new(n + n / 10);
    let mut latest = Latest::new(n);
    let mut h = histogram();
    let mut ok = true;
    ctx.progress.start(&name, n);
    let started = Instant::now();
    for op in 0..n {
        let count = versions.len() as u64;
        let mut choose = |rng: &mut Rng| loop {
            let k = zipf.next(rng);
            if k < count {
                return k;
            }
        };
        let p = rng.unit();
        let t = Instant::now();
        // (read, update, insert, scan, read-modify-write) proportions per workload.
        let (read, update, insert, scan) = match workload {
            b'a' => (0.5, 0.5, 0.0, 0.0),
            b'b' => (0.95, 0.05, 0.0, 0.0),
            b'c' => (1.0, 0.0, 0.0, 0.0),
            b'd' => (0.95, 0.0, 0.05, 0.0),
            b'e' => (0.0, 0.0, 0.05, 0.95),
            _ => (0.5, 0.0, 0.0, 0.0), // f: the rest is read-modify-write
        };
        if p < read {
            let k = if workload == b'd' { latest.next(count, &mut rng) } else { choose(&mut rng) };
            let got = db.get(&key(k))?;
            ok &= got.as_deref() == Some(&ctx.value(k, versions[k as usize] as u64)[..]);
        } else if p < read + update {
            let k = choose(&mut rng);
            versions[k as usize] += 1;
            db.put(&key(k), &ctx.value(k, versions[k as usize] as u64), false)?;
        } else if p < read + update + insert {
            db.put(&key(count), &ctx.value(count, 0), false)?;
            versions.push(0);
        } else if p < read + update + insert + scan {
            let k = choose(&mut rng);
            let len = 1 + rng.below(100);
            let mut expected = k;
            let mut good = true;
            let visited = db.scan(&key(k), len as usize, &mut |kk, v| {
                good &= kk == key(expected)
                    && v == ctx.value(expected, versions[expected as usize] as u64);
                expected += 1;
            })?;
            ok &= good && visited as u64 == len.min(count - k);
        } else {
            let k = choose(&mut rng);
            let got = db.get(&key(k))?;
            ok &= got.as_deref() == Some(&ctx.value(k, versions[k as usize] as u64)[..]);
            versions[k as usize] += 1;
            db.put(&key(k), &ctx.value(k, versions[k as usize] as u64), false)?;
        }
        record(&mut h, t);
        ctx.tick(op);
    }
    let r = WorkloadResult::new(name, n, started.elapsed()).latencies(&h).verified(ok);
    db.close()?;
    Ok(r)
}

fn reopen<E: Engine>(ctx: &Ctx) -> Result<WorkloadResult> {
    let n = ctx.n();
    // Room for all N keys and then some, so nothing is flushed before the reopen.
    let options = OpenOptions { write_buffer_bytes: Some((n as usize * 300).max(64 << 20)) };
    let db = E::open(ctx.dir, &options)?;
    let order = shuffled(n, seeds::LOAD_ORDER);
    ctx.load(&db, "reopen: load", &order)?;
    db.close()?;
    ctx.progress.start("reopen", 1);
    let started = Instant::now();
    let db = E::open(ctx.dir, &options)?;
    let elapsed = started.elapsed();
    ctx.progress.advance(1);
    let mut ok = true;
    for &i in order.iter().step_by(97).chain(order.last()) {
        ok &= db.get(&key(i))?.as_deref() == Some(&ctx.value(i, 0)[..]);
    }
    // ops/s here is keys recovered per second of open.
    let r = WorkloadResult::new("reopen", n, elapsed)
        .with("open", elapsed.as_secs_f64(), "s")
        .verified(ok);
    db.close()?;
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::MemoryEngine;
    use crate::{NoProgress, format_table};

    #[test]
    fn every_workload_verifies_on_the_reference_engine() {
        every_workload_verifies_with(Values::Mixed);
    }

    #[test]
    fn every_workload_verifies_with_incompressible_values() {
        every_workload_verifies_with(Values::Random);
    }

    fn every_workload_verifies_with(values: Values) {
        let size = Size::with_keys(2_000).with_values(values);
        let mut all = Vec::new();
        for (i, workload) in Workload::ALL.into_iter().enumerate() {
            let dir =
                std::env::temp_dir().join(format!("aeternus-workloads-test-{}-{i}", values.name()));
            let results = run::<MemoryEngine>(workload, &dir, size, &NoProgress).unwrap();
            assert!(!results.is_empty());
            for r in &results {
                assert!(r.ops > 0, "{workload}");
                assert_ne!(r.verified, Some(false), "{workload}");
            }
            all.extend(results);
        }
        assert_eq!(all.len(), Workload::ALL.len() + 1); // fillsync reports two rows
        let table = format_table("memory", &all);
        assert!(table.contains("| ycsb-e"), "{table}");
        let read = all.iter().find(|r| r.name == "readrandom").unwrap();
        let [p50, p99, p999] = read.latency_us.unwrap();
        assert!(0.0 < p50 && p50 <= p99 && p99 <= p999, "{:?}", read.latency_us);
        assert!(!table.contains("FAILED"));
    }

    /// Loses every put whose key ends in 7: verification must notice.
    struct Lossy(MemoryEngine);

    impl Engine for Lossy {
        fn name(&self) -> String {
            "lossy".into()
        }
        fn open(dir: &Path, options: &OpenOptions) -> Result<Self> {
            Ok(Lossy(MemoryEngine::open(dir, options)?))
        }
        fn close(self) -> Result<()> {
            self.0.close()
        }
        fn put(&self, key: &[u8], value: &[u8], sync: bool) -> Result<()> {
            if key.last() == Some(&b'7') { Ok(()) } else { self.0.put(key, value, sync) }
        }
        fn write_batch(&self, pairs: &[(&[u8], &[u8])], sync: bool) -> Result<()> {
            self.0.write_batch(pairs, sync)
        }
        fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
            self.0.get(key)
        }
        fn delete_range(&self, start: &[u8], end: &[u8]) -> Result<()> {
            self.0.delete_range(start, end)
        }
        fn scan(
            &self,
            start: &[u8],
            n: usize,
            visit: &mut dyn FnMut(&[u8], &[u8]),
        ) -> Result<usize> {
            self.0.scan(start, n, visit)
        }
        fn settle(&self) -> Result<()> {
            Ok(())
        }
    }

    #[test]
    fn lost_writes_fail_verification() {
        let size = Size::with_keys(2_000);
        let lossy = [
            Workload::ReadRandom,
            Workload::SeekRandom,
            Workload::DeleteRange,
            Workload::YcsbC,
            Workload::YcsbE,
            Workload::Reopen,
        ];
        for (i, workload) in lossy.into_iter().enumerate() {
            let dir = std::env::temp_dir().join(format!("aeternus-workloads-lossy-{i}"));
            let results = run::<Lossy>(workload, &dir, size, &NoProgress).unwrap();
            assert_eq!(results[0].verified, Some(false), "{workload}");
        }
    }

    #[test]
    fn sizes_scale() {
        assert_eq!(Size::quick().keys, 100_000);
        assert_eq!(Size::quick().sync_ops, 2_000);
        assert_eq!(Size::full().sync_ops, 20_000);
    }
}
