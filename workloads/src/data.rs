//! Deterministic data: keys, values, orders and the random numbers behind them.
//!
//! Everything here is self-contained (no `rand`), so every engine and every version of
//! this crate sees exactly the same keys in the same order.

/// Bytes in a key.
pub const KEY_LEN: usize = 16;
/// Bytes in a value.
pub const VALUE_LEN: usize = 100;

/// SplitMix64: a small, fast, well-mixed generator with a fixed seed per use.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        mix(self.0)
    }

    /// Uniform in `[0, n)` (`n > 0`), by multiply-shift.
    pub fn below(&mut self, n: u64) -> u64 {
        ((self.next_u64() as u128 * n as u128) >> 64) as u64
    }

    /// Uniform in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Fisher–Yates shuffle.
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.below(i as u64 + 1) as usize;
            items.swap(i, j);
        }
    }
}

/// The SplitMix64 finalizer.
pub fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Key `i`: 16 decimal digits, so key order is numeric order (`i < 10^16`).
///
/// Written digit by digit rather than with `format!`: workloads build a key for every
/// operation they time and every entry a scan checks, and `format!` was a quarter of
/// a profiled seekrandom scan, time that diluted every engine's own.
pub fn key(i: u64) -> [u8; KEY_LEN] {
    assert!(i < 10u64.pow(KEY_LEN as u32), "key {i} has more than {KEY_LEN} digits");
    let mut k = [b'0'; KEY_LEN];
    let mut rest = i;
    for digit in k.iter_mut().rev() {
        *digit = b'0' + (rest % 10) as u8;
        rest /= 10;
    }
    k
}

/// A key that is never written but sorts among the written ones: the first 15 digits
/// of `key(i)` followed by `x`.
pub fn missing_key(i: u64) -> [u8; KEY_LEN] {
    let mut k = key(i);
    k[KEY_LEN - 1] = b'x';
    k
}

/// What the values of a run look like.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "lowercase"))]
pub enum Values {
    /// 50 pseudo-random bytes then 50 repeated ones: compression halves them.
    #[default]
    Mixed,
    /// 100 pseudo-random bytes: incompressible.
    Random,
}

impl Values {
    /// The name on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Values::Mixed => "mixed",
            Values::Random => "random",
        }
    }

    /// Value of key `i` at `version`.
    pub fn value(self, i: u64, version: u64) -> [u8; VALUE_LEN] {
        let mut v = [b'x'; VALUE_LEN];
        let random = match self {
            Values::Mixed => VALUE_LEN / 2,
            Values::Random => VALUE_LEN,
        };
        let mut rng = Rng::new(mix(i) ^ version.wrapping_mul(0xA24B_AED4_963E_E407));
        for chunk in v[..random].chunks_mut(8) {
            let bytes = rng.next_u64().to_le_bytes();
            chunk.copy_from_slice(&bytes[..chunk.len()]);
        }
        v
    }
}

impl std::str::FromStr for Values {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "mixed" => Ok(Values::Mixed),
            "random" => Ok(Values::Random),
            _ => Err(format!("unknown value kind {s:?}: expected mixed or random")),
        }
    }
}

/// `0..n` in a fixed random order.
pub fn shuffled(n: u64, seed: u64) -> Vec<u64> {
    let mut order: Vec<u64> = (0..n).collect();
    Rng::new(seed).shuffle(&mut order);
    order
}

/// Fixed seeds, one per use, so workloads do not share streams by accident.
pub mod seeds {
    pub const LOAD_ORDER: u64 = 42;
    pub const READS: u64 = 7;
    pub const OVERWRITE: u64 = 9;
    pub const WRITER: u64 = 11;
    pub const SEEKS: u64 = 13;
    pub const RANGES: u64 = 17;
    pub const YCSB: u64 = 19;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_values_are_fixed() {
        assert_eq!(&key(42), b"0000000000000042");
        assert_eq!(&key(9_999_999_999_999_999), b"9999999999999999");
        assert_eq!(&key(0), b"0000000000000000");
        for i in [7, 123_456, 999_999, 10_000_000, 1 << 40] {
            assert_eq!(&key(i)[..], format!("{i:016}").as_bytes());
        }
        assert_eq!(&missing_key(42), b"000000000000004x");
        assert!(key(49) < missing_key(42) && missing_key(42) < key(50));
        let value = |i, version| Values::Mixed.value(i, version);
        assert_eq!(value(3, 1), value(3, 1));
        assert_ne!(value(3, 1), value(3, 2));
        assert_ne!(value(3, 1), value(4, 1));
        assert!(value(3, 1)[50..].iter().all(|&b| b == b'x'));
        // Random values share the mixed ones' first half and are random throughout.
        let random = Values::Random.value(3, 1);
        assert_eq!(random[..48], value(3, 1)[..48]);
        assert!(random[50..].iter().filter(|&&b| b == b'x').count() < 5);
        // Pinned: a change here changes every benchmark's data.
        assert_eq!(Rng::new(1).next_u64(), 0x910A_2DEC_8902_5CC1);
    }

    #[test]
    fn shuffles_are_deterministic_permutations() {
        let a = shuffled(1000, 5);
        assert_eq!(a, shuffled(1000, 5));
        assert_ne!(a, shuffled(1000, 6));
        let mut sorted = a.clone();
        sorted.sort();
        assert_eq!(sorted, (0..1000).collect::<Vec<_>>());
    }

    #[test]
    fn below_is_roughly_uniform() {
        let mut rng = Rng::new(3);
        let mut counts = [0u32; 10];
        for _ in 0..100_000 {
            counts[rng.below(10) as usize] += 1;
        }
        assert!(counts.iter().all(|&c| (9_000..11_000).contains(&c)), "{counts:?}");
    }
}
