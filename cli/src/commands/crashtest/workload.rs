//! What the writers of a crash test write: batch `n` of writer `w` is a pure function
//! of `(seed, w, n)`, so the parent knows every write a child made from the batch
//! numbers it acknowledged, without the child sending any data.
//!
//! Writer `w` owns the keys `w<w>/<k>` (`k` zero-padded below the database's key
//! space) and touches no other: its batches form one sequence per partition, which
//! is what the oracle checks prefixes of. A value names the batch and operation that
//! wrote it (`<w>.<n>.<i>:` then padding), so a wrong value in a report says where it
//! came from.

use std::collections::BTreeMap;
use std::ops::Bound;

use aeternusdb::WriteBatch;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// The state of one writer's partition: key to value.
pub type Partition = BTreeMap<Vec<u8>, Vec<u8>>;

/// One operation of a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    Put(Vec<u8>, Vec<u8>),
    Delete(Vec<u8>),
    /// Deletes `[start, end)`.
    DeleteRange(Vec<u8>, Vec<u8>),
}

/// The shape of the data: fixed for one database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DataShape {
    /// Keys per writer partition.
    pub keys_per_writer: u32,
    /// Longest value padding in bytes.
    pub max_padding: usize,
}

/// Key `k` of writer `w`.
pub fn key(writer: usize, k: u32) -> Vec<u8> {
    format!("w{writer}/{k:06}").into_bytes()
}

/// The first key of writer `w`'s partition and the first key past it.
pub fn partition_bounds(writer: usize) -> (Vec<u8>, Vec<u8>) {
    // '0' is the byte after '/': every key of the partition sorts before it.
    (format!("w{writer}/").into_bytes(), format!("w{writer}0").into_bytes())
}

/// The writer whose partition holds `key`, if any.
pub fn writer_of(key: &[u8]) -> Option<usize> {
    let rest = key.strip_prefix(b"w")?;
    let slash = rest.iter().position(|&b| b == b'/')?;
    std::str::from_utf8(&rest[..slash]).ok()?.parse().ok()
}

/// Batch `n` of writer `w`: mostly a few puts, sometimes deletes, a range deletion
/// or a large batch.
pub fn batch(seed: u64, shape: DataShape, writer: usize, n: u64) -> Vec<Op> {
    let mut rng = StdRng::seed_from_u64(
        seed ^ (writer as u64).wrapping_mul(0xa076_1d64_78bd_642f)
            ^ n.wrapping_mul(0x9e37_79b9_7f4a_7c15),
    );
    let len = if rng.gen_ratio(1, 25) { rng.gen_range(50..=200) } else { rng.gen_range(1..=12) };
    let space = shape.keys_per_writer;
    (0..len)
        .map(|i| match rng.gen_range(0..100) {
            0..=79 => {
                let padding = rng.gen_range(0..=shape.max_padding);
                let mut value = format!("{writer}.{n}.{i}:").into_bytes();
                // Half the values compress (one repeated letter), half do not.
                if rng.gen_bool(0.5) {
                    let letter = b'a' + rng.gen_range(0..26u8);
                    value.resize(value.len() + padding, letter);
                } else {
                    let start = value.len();
                    value.resize(start + padding, 0);
                    rng.fill(&mut value[start..]);
                    for byte in &mut value[start..] {
                        *byte = b'a' + *byte % 26;
                    }
                }
                Op::Put(key(writer, rng.gen_range(0..space)), value)
            }
            80..=94 => Op::Delete(key(writer, rng.gen_range(0..space))),
            _ => {
                let start = rng.gen_range(0..space);
                let end = rng.gen_range(start..=(start + 32).min(space));
                Op::DeleteRange(key(writer, start), key(writer, end))
            }
        })
        .collect()
}

/// `ops` as a write batch.
pub fn to_write_batch(ops: &[Op]) -> aeternusdb::Result<WriteBatch> {
    let mut batch = WriteBatch::new();
    for op in ops {
        match op {
            Op::Put(k, v) => batch.put(k, v)?,
            Op::Delete(k) => batch.delete(k)?,
            Op::DeleteRange(a, b) => batch.delete_range(a, b)?,
        };
    }
    Ok(batch)
}

/// Applies `ops` to `state`, in order.
pub fn apply(state: &mut Partition, ops: &[Op]) {
    for op in ops {
        match op {
            Op::Put(k, v) => drop(state.insert(k.clone(), v.clone())),
            Op::Delete(k) => drop(state.remove(k)),
            Op::DeleteRange(a, b) => {
                let doomed: Vec<Vec<u8>> = state
                    .range::<[u8], _>((Bound::Included(&a[..]), Bound::Excluded(&b[..])))
                    .map(|(k, _)| k.clone())
                    .collect();
                for k in doomed {
                    state.remove(&k);
                }
            }
        }
    }
}

/// Which write a value comes from: its `<w>.<n>.<i>` prefix.
pub fn origin(value: &[u8]) -> String {
    let end = value.iter().position(|&b| b == b':').unwrap_or(value.len()).min(40);
    let origin = String::from_utf8_lossy(&value[..end]);
    match origin.split('.').collect::<Vec<_>>()[..] {
        [w, n, i] => format!("writer {w} batch {n} op {i}"),
        _ => format!("unrecognised value {origin:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHAPE: DataShape = DataShape { keys_per_writer: 100, max_padding: 50 };

    #[test]
    fn batches_are_pure_functions_of_their_numbers() {
        assert_eq!(batch(7, SHAPE, 1, 42), batch(7, SHAPE, 1, 42));
        assert_ne!(batch(7, SHAPE, 1, 42), batch(7, SHAPE, 1, 43));
        assert_ne!(batch(7, SHAPE, 1, 42), batch(7, SHAPE, 2, 42));
        assert_ne!(batch(7, SHAPE, 1, 42), batch(8, SHAPE, 1, 42));
    }

    #[test]
    fn a_writer_touches_only_its_partition() {
        let (start, end) = partition_bounds(3);
        for n in 0..200 {
            for op in batch(1, SHAPE, 3, n) {
                let keys = match &op {
                    Op::Put(k, _) | Op::Delete(k) => vec![k.clone()],
                    Op::DeleteRange(a, b) => vec![a.clone(), b.clone()],
                };
                for k in keys {
                    assert!(k >= start && k <= end, "{op:?}");
                    assert!(k == end || writer_of(&k) == Some(3), "{op:?}");
                }
            }
        }
        assert_eq!(writer_of(b"w12/000001"), Some(12));
        assert_eq!(writer_of(b"x/1"), None);
    }

    #[test]
    fn apply_follows_puts_deletes_and_ranges_in_order() {
        let mut state = Partition::new();
        apply(
            &mut state,
            &[
                Op::Put(key(0, 1), b"a".to_vec()),
                Op::Put(key(0, 2), b"b".to_vec()),
                Op::Put(key(0, 3), b"c".to_vec()),
                Op::DeleteRange(key(0, 1), key(0, 3)),
                Op::Put(key(0, 2), b"d".to_vec()),
                Op::Delete(key(0, 3)),
            ],
        );
        assert_eq!(state, Partition::from([(key(0, 2), b"d".to_vec())]));
    }

    #[test]
    fn origin_names_the_write() {
        let ops = batch(5, SHAPE, 2, 9);
        let (i, value) = ops
            .iter()
            .enumerate()
            .find_map(|(i, op)| match op {
                Op::Put(_, v) => Some((i, v.clone())),
                _ => None,
            })
            .unwrap_or_else(|| (0, b"2.9.0:".to_vec()));
        assert_eq!(origin(&value), format!("writer 2 batch 9 op {i}"));
    }
}
