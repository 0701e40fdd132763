//! YCSB's key choosers, implemented here after YCSB's `ZipfianGenerator`,
//! `ScrambledZipfianGenerator` and `SkewedLatestGenerator` (Gray et al., "Quickly
//! generating billion-record synthetic databases", SIGMOD 1994).

use crate::data::Rng;

/// YCSB's default skew.
pub const THETA: f64 = 0.99;

/// Zipfian over `[0, items)`; item 0 is the most popular. The item count may grow
/// (`next_with`), as YCSB's does for the "latest" distribution.
#[derive(Debug, Clone)]
pub struct Zipfian {
    items: u64,
    theta: f64,
    alpha: f64,
    zeta2: f64,
    zetan: f64,
    eta: f64,
}

fn zeta_from(start: u64, end: u64, theta: f64, initial: f64) -> f64 {
    (start..end).fold(initial, |sum, i| sum + 1.0 / ((i + 1) as f64).powf(theta))
}

impl Zipfian {
    pub fn new(items: u64, theta: f64) -> Self {
        Self::with_zeta(items, theta, zeta_from(0, items, theta, 0.0))
    }

    fn with_zeta(items: u64, theta: f64, zetan: f64) -> Self {
        assert!(items > 0, "zipfian over no items");
        let zeta2 = zeta_from(0, 2, theta, 0.0);
        let mut z = Zipfian { items, theta, alpha: 1.0 / (1.0 - theta), zeta2, zetan, eta: 0.0 };
        z.eta = z.eta_for(items);
        z
    }

    fn eta_for(&self, items: u64) -> f64 {
        (1.0 - (2.0 / items as f64).powf(1.0 - self.theta)) / (1.0 - self.zeta2 / self.zetan)
    }

    pub fn next(&mut self, rng: &mut Rng) -> u64 {
        self.next_with(self.items, rng)
    }

    /// A sample over `[0, items)`; `items` may only grow.
    pub fn next_with(&mut self, items: u64, rng: &mut Rng) -> u64 {
        if items > self.items {
            self.zetan = zeta_from(self.items, items, self.theta, self.zetan);
            self.items = items;
            self.eta = self.eta_for(items);
        }
        let u = rng.unit();
        let uz = u * self.zetan;
        if uz < 1.0 {
            return 0;
        }
        if uz < 1.0 + 0.5f64.powf(self.theta) {
            return 1.min(self.items - 1);
        }
        let v = (self.items as f64 * (self.eta * u - self.eta + 1.0).powf(self.alpha)) as u64;
        v.min(self.items - 1)
    }
}

/// YCSB's FNV-1a over the 8 bytes of `v`, made non-negative as Java's `Math.abs`.
pub fn fnv64(v: u64) -> u64 {
    let mut hash: u64 = 0xCBF2_9CE4_8422_2325;
    let mut v = v;
    for _ in 0..8 {
        hash ^= v & 0xff;
        hash = hash.wrapping_mul(0x0000_0100_0000_01B3);
        v >>= 8;
    }
    (hash as i64).wrapping_abs() as u64
}

/// Zipfian popularity spread over the key space by hashing, as YCSB's
/// `ScrambledZipfianGenerator`: popular items are not clustered at the low keys.
#[derive(Debug, Clone)]
pub struct ScrambledZipfian {
    items: u64,
    inner: Zipfian,
}

impl ScrambledZipfian {
    /// YCSB's constants: a zipfian over 10^10 items with its precomputed zeta.
    const ITEM_COUNT: u64 = 10_000_000_000;
    const ZETAN: f64 = 26.469_028_201_783_02;

    pub fn new(items: u64) -> Self {
        assert!(items > 0, "zipfian over no items");
        ScrambledZipfian { items, inner: Zipfian::with_zeta(Self::ITEM_COUNT, THETA, Self::ZETAN) }
    }

    pub fn next(&mut self, rng: &mut Rng) -> u64 {
        fnv64(self.inner.next(rng)) % self.items
    }
}

/// YCSB's "latest": the most recently inserted items are the most popular.
#[derive(Debug, Clone)]
pub struct Latest {
    inner: Zipfian,
}

impl Latest {
    pub fn new(items: u64) -> Self {
        Latest { inner: Zipfian::new(items, THETA) }
    }

    /// A sample among `[0, items)` favouring `items - 1`.
    pub fn next(&mut self, items: u64, rng: &mut Rng) -> u64 {
        items - 1 - self.inner.next_with(items, rng)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn histogram(n: u64, samples: u64, mut f: impl FnMut(&mut Rng) -> u64) -> Vec<u64> {
        let mut rng = Rng::new(99);
        let mut counts = vec![0u64; n as usize];
        for _ in 0..samples {
            counts[f(&mut rng) as usize] += 1;
        }
        counts
    }

    #[test]
    fn zipfian_follows_the_power_law() {
        let n = 1000;
        let samples = 200_000;
        let mut z = Zipfian::new(n, THETA);
        let counts = histogram(n, samples, |rng| z.next(rng));
        let zeta = zeta_from(0, n, THETA, 0.0);
        // P(rank r) = 1 / (r^theta * zeta). Gray's method is exact for the first two
        // ranks and an approximation beyond (YCSB's too), hence the looser bound.
        for (rank, tolerance) in [(1u64, 0.05), (2, 0.05), (3, 0.25), (10, 0.3)] {
            let expected = samples as f64 / ((rank as f64).powf(THETA) * zeta);
            let got = counts[(rank - 1) as usize] as f64;
            assert!((got / expected - 1.0).abs() < tolerance, "rank {rank}: {got} vs {expected}");
        }
        // Monotone on average: the first decile is far more popular than the last.
        let first: u64 = counts[..100].iter().sum();
        let last: u64 = counts[900..].iter().sum();
        assert!(first > 10 * last, "{first} vs {last}");
    }

    #[test]
    fn scrambled_zipfian_is_skewed_but_spread() {
        let n = 10_000;
        let mut z = ScrambledZipfian::new(n);
        let counts = histogram(n, 200_000, |rng| z.next(rng));
        let mut sorted = counts.clone();
        sorted.sort_unstable_by(|a, b| b.cmp(a));
        // The hottest item draws several percent of all requests (YCSB: ~1/zeta(10^10)).
        assert!(sorted[0] > 200_000 / 40, "hottest {}", sorted[0]);
        // ...and the hottest items are not the lowest keys.
        let hottest = counts.iter().position(|&c| c == sorted[0]).unwrap();
        assert!(hottest > 10, "hottest key {hottest}");
        // The top 1% of keys draw far more than 1% of requests (about 20% here, as
        // YCSB's popularity is spread over 10^10 items before hashing).
        let top: u64 = sorted[..100].iter().sum();
        assert!(top > 200_000 / 7, "top 1% drew {top}");
    }

    #[test]
    fn generators_are_deterministic() {
        let draw = || {
            let mut rng = Rng::new(5);
            let mut z = ScrambledZipfian::new(1_000_000);
            (0..100).map(|_| z.next(&mut rng)).collect::<Vec<_>>()
        };
        assert_eq!(draw(), draw());
    }

    #[test]
    fn latest_favours_new_items_and_grows() {
        let mut latest = Latest::new(1000);
        let mut rng = Rng::new(1);
        let mut recent = 0;
        for i in 0..10_000u64 {
            let items = 1000 + i / 10;
            let v = latest.next(items, &mut rng);
            assert!(v < items);
            if v >= items - 10 {
                recent += 1;
            }
        }
        assert!(recent > 3_000, "{recent}");
    }
}
