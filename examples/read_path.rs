//! The read path on a tree of a fixed shape, for A/B comparisons of read optimisations.
//!
//! ```text
//! cargo run --release --example read_path -- DIR [KEYS]
//! ```
//! The first run into an empty `DIR` loads `KEYS` keys (default 1,000,000: 16-byte keys,
//! 100-byte values half random and half repeated, as docs/workloads.md says) in a
//! shuffled order and compacts them fully; later runs reuse it. Each run then times
//! `KEYS` random gets of present keys and 100,000 seeks followed by 100 `next`, checking
//! every value, and prints one tab-separated line: gets/s, get p99 µs, seeks/s.
//!
//! The benchmark harness (`bench/`) measures the engine as users meet it, but the shape
//! of its tree after settling depends on timing (how many level-0 tables a read
//! visits), which swamps a change of a few percent. Here every binary reads the same
//! files, so two builds can alternate on one directory.

use std::time::Instant;

use aeternusdb::{Db, Options};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

fn key(i: u64) -> String {
    format!("{i:016}")
}

fn value(i: u64) -> Vec<u8> {
    let mut rng = StdRng::seed_from_u64(i);
    let mut v: Vec<u8> = (0..50).map(|_| rng.r#gen()).collect();
    v.extend(std::iter::repeat_n(b'x', 50));
    v
}

fn main() -> aeternusdb::Result<()> {
    let mut args = std::env::args().skip(1);
    let dir = args.next().expect("usage: read_path DIR [KEYS]");
    let keys: u64 = args.next().map_or(1_000_000, |n| n.parse().expect("KEYS is a number"));
    let options = Options { sync_writes: false, ..Options::default() };
    let db = Db::open(&dir, options)?;
    if db.get(key(0))?.is_none() {
        let mut order: Vec<u64> = (0..keys).collect();
        order.shuffle(&mut StdRng::seed_from_u64(1));
        for &i in &order {
            db.put(key(i), value(i))?;
        }
        db.compact()?;
    }

    let mut rng = StdRng::seed_from_u64(2);
    let mut nanos = Vec::with_capacity(keys as usize);
    let started = Instant::now();
    for _ in 0..keys {
        let i = rng.gen_range(0..keys);
        let t = Instant::now();
        let got = db.get(key(i))?;
        nanos.push(t.elapsed().as_nanos() as u64);
        assert_eq!(got.as_deref(), Some(&value(i)[..]), "key {i}");
    }
    let gets = keys as f64 / started.elapsed().as_secs_f64();
    nanos.sort_unstable();
    let p99 = nanos[nanos.len() * 99 / 100] as f64 / 1000.0;

    let seeks = 100_000;
    let started = Instant::now();
    for _ in 0..seeks {
        let first = rng.gen_range(0..keys);
        for (expected, pair) in (first..).zip(db.range(key(first)..)?.take(100)) {
            let (k, _) = pair?;
            // Parsed, not formatted: a `format!` per entry would cost about as much as
            // the engine's step to it and dilute what the example measures.
            let got = std::str::from_utf8(&k).ok().and_then(|s| s.parse::<u64>().ok());
            assert_eq!(got, Some(expected), "key {k:?}");
        }
    }
    let seeks = f64::from(seeks) / started.elapsed().as_secs_f64();
    println!("{gets:.0}\t{p99:.1}\t{seeks:.0}");
    db.close()
}
