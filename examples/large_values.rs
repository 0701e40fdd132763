//! Peak memory of writing and reading large values: how many copies of a value the
//! engine holds at once.
//!
//! ```text
//! cargo run --release --example large_values
//! ```
//! First one 8 MiB value goes through a fresh database: put, get (from the memtable),
//! flush, get (from the table), reopen and get. Then 33 values of 8 MiB (264 MiB) are
//! put, read back with `get`, flushed, read again, and read once more after a reopen.
//! After each phase it prints the resident memory at the phase's start, its peak
//! during the phase (VmHWM, reset through `/proc/self/clear_refs` before each phase)
//! and at its end (VmRSS), all above the baseline taken after opening the database,
//! in MiB and the peak also as a multiple of the value bytes involved. Linux only.
//!
//! The values are incompressible, as large values usually are (images, archives).
//! Resident memory counts what the allocator keeps after a free too, so the end-of-
//! phase figure is an upper bound on what the database still holds.

use std::time::Duration;

use aeternusdb::{Db, Options};

const VALUE: usize = 8 << 20;
const VALUES: u64 = 33;

/// A field of `/proc/self/status` in bytes, e.g. `VmRSS`.
fn status_bytes(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// Resets VmHWM to the current RSS, so the next reading is the peak of one phase.
fn reset_peak() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// Fills `buf` with the pseudo-random (incompressible) value of key `i`.
fn fill_value(buf: &mut [u8], i: u64) {
    let mut x = i.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    for chunk in buf.chunks_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        chunk.copy_from_slice(&x.to_le_bytes()[..chunk.len()]);
    }
}

fn key(i: u64) -> String {
    format!("large-{i:04}")
}

struct Meter {
    baseline: u64,
    /// VmRSS when the phase started.
    start: u64,
    per_phase: bool,
}

impl Meter {
    fn start(&mut self) {
        self.start = status_bytes("VmRSS");
        self.per_phase = reset_peak();
    }

    /// Prints the phase's figures; `bytes` is what the phase wrote or read.
    fn report(&self, phase: &str, bytes: u64) {
        let mib = |b: u64| b as f64 / f64::from(1 << 20);
        let above = |b: u64| b.saturating_sub(self.baseline);
        let (peak, rss) = (above(status_bytes("VmHWM")), above(status_bytes("VmRSS")));
        println!(
            "{phase:<24} start {:>6.1} MiB  peak {:>6.1} MiB ({:>4.2}x)  end {:>6.1} MiB{}",
            mib(above(self.start)),
            mib(peak),
            peak as f64 / bytes as f64,
            mib(rss),
            if self.per_phase { "" } else { "  [peak since start]" }
        );
    }
}

fn read_all(db: &Db, values: u64, expected: &mut [u8]) -> aeternusdb::Result<()> {
    for i in 0..values {
        let got = db.get(key(i))?;
        fill_value(expected, i);
        assert!(got.as_deref() == Some(&expected[..]), "value {i} differs");
    }
    Ok(())
}

fn main() -> aeternusdb::Result<()> {
    let dir = tempfile::tempdir()?;
    let options = Options { sync_writes: false, ..Options::default() };
    // Both buffers exist (and are touched) before the baseline.
    let mut value = vec![0u8; VALUE];
    let mut expected = vec![0u8; VALUE];
    fill_value(&mut value, 0);
    fill_value(&mut expected, 0);

    let single = tempfile::tempdir()?;
    let db = Db::open(single.path(), options.clone())?;
    let mut meter = Meter { baseline: status_bytes("VmRSS"), start: 0, per_phase: false };
    let one = VALUE as u64;
    meter.start();
    db.put(key(0), &value)?;
    meter.report("1 value: put", one);
    meter.start();
    read_all(&db, 1, &mut expected)?;
    meter.report("1 value: get", one);
    meter.start();
    db.flush()?;
    meter.report("1 value: flush", one);
    meter.start();
    read_all(&db, 1, &mut expected)?;
    meter.report("1 value: get from table", one);
    db.close()?;
    drop(db);
    meter.start();
    let db = Db::open(single.path(), options.clone())?;
    read_all(&db, 1, &mut expected)?;
    meter.report("1 value: reopen, get", one);
    db.close()?;
    drop(db);

    let db = Db::open(dir.path(), options.clone())?;
    meter.baseline = status_bytes("VmRSS");
    let total = VALUE as u64 * VALUES;
    meter.start();
    for i in 0..VALUES {
        fill_value(&mut value, i);
        db.put(key(i), &value)?;
    }
    meter.report("33 values: put", total);
    meter.start();
    read_all(&db, VALUES, &mut expected)?;
    meter.report("33 values: get", total);
    meter.start();
    db.flush()?;
    while db.stats()?.compaction_pending {
        std::thread::sleep(Duration::from_millis(20));
    }
    meter.report("33 values: flush", total);
    meter.start();
    read_all(&db, VALUES, &mut expected)?;
    meter.report("33 values: get again", total);
    db.close()?;
    drop(db);
    meter.start();
    let db = Db::open(dir.path(), options)?;
    read_all(&db, VALUES, &mut expected)?;
    meter.report("33 values: reopen, get", total);
    db.close()
}
