//! The randomised settings of a crash test, drawn from the seed.
//!
//! A run is a sequence of databases of [`CYCLES_PER_DB`] cycles each (so the mix
//! covers creation and fresh and aged databases); a [`DbPlan`] is fixed for one
//! database (its data shape, which the oracle's key space depends on). The compaction
//! strategy is drawn anew every [`CYCLES_PER_STRATEGY`] cycles, so a database is
//! also reopened under the other strategy, over the tables the first one laid out;
//! a [`CyclePlan`] is drawn anew for every child. All are pure functions of `(seed,
//! number)`: parent and child compute the same plan, and a reproducer needs only
//! the seed.

use std::fmt;
use std::time::Duration;

use aeternusdb::{
    CompactionStrategyOptions, Compression, LeveledOptions, Options, SizeTieredOptions,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::workload::DataShape;

/// Cycles run on one database before the next starts.
pub const CYCLES_PER_DB: u64 = 100;

/// Cycles run under one compaction strategy before it is drawn again: four draws
/// per database, the last three each a switch of strategy half the time.
pub const CYCLES_PER_STRATEGY: u64 = 25;

// A database starts with a fresh draw ([`strategy_history`] relies on it).
const _: () = assert!(CYCLES_PER_DB.is_multiple_of(CYCLES_PER_STRATEGY));

/// The settings fixed for one database.
#[derive(Debug, Clone)]
pub struct DbPlan {
    pub shape: DataShape,
}

impl DbPlan {
    /// The plan of database `number` of the run with `seed`.
    pub fn new(seed: u64, number: u64) -> DbPlan {
        let mut rng = rng(seed, 0xdb, number);
        let shape = DataShape {
            keys_per_writer: [100, 1_000, 4_000][rng.gen_range(0..3)],
            max_padding: [16, 200, 2_000][rng.gen_range(0..3)],
        };
        DbPlan { shape }
    }
}

/// The compaction strategy of the cycles `number * CYCLES_PER_STRATEGY..` of the run
/// with `seed`: leveled or size-tiered, with random shapes.
fn compaction_plan(seed: u64, number: u64) -> CompactionStrategyOptions {
    let mut rng = rng(seed, 0x57a7, number);
    let target_file_size = 1 << rng.gen_range(14..=17);
    if rng.gen_bool(0.5) {
        CompactionStrategyOptions::Leveled(LeveledOptions {
            num_levels: rng.gen_range(3..=7),
            l0_compaction_trigger: rng.gen_range(2..=4),
            base_level_size: target_file_size * rng.gen_range(2..=8),
            level_size_multiplier: rng.gen_range(3.0..10.0),
            target_file_size,
            max_compaction_bytes: target_file_size * rng.gen_range(4..=25),
            ..LeveledOptions::default()
        })
    } else {
        CompactionStrategyOptions::SizeTiered(SizeTieredOptions {
            min_threshold: rng.gen_range(2..=4),
            max_threshold: rng.gen_range(4..=12),
            min_sstable_size: target_file_size,
            tombstone_min_age_secs: 0,
            target_file_size,
            ..SizeTieredOptions::default()
        })
    }
}

/// The strategies database `number` of the run with `seed` ran under in its first
/// `cycles` cycles, in order, one name per switch: `leveled → size-tiered`.
pub fn strategy_history(seed: u64, number: u64, cycles: u64) -> String {
    let first = number * CYCLES_PER_DB;
    let mut names: Vec<&str> = (first..first + cycles)
        .step_by(CYCLES_PER_STRATEGY as usize)
        .map(|cycle| strategy_name(&compaction_plan(seed, cycle / CYCLES_PER_STRATEGY)))
        .collect();
    names.dedup();
    names.join(" → ")
}

/// The settings of one child.
#[derive(Debug, Clone)]
pub struct CyclePlan {
    pub db: DbPlan,
    pub compaction: CompactionStrategyOptions,
    pub write_buffer_size: usize,
    pub max_frozen_memtables: usize,
    pub block_size: usize,
    pub block_cache_size: usize,
    pub compression: Compression,
    pub bloom_bits_per_key: u32,
    pub compaction_threads: usize,
    pub max_open_files: usize,
    pub max_manifest_size: u64,
    /// Writer threads, each with its own partition.
    pub writers: usize,
    /// Probability that a batch is written with `sync`.
    pub sync_ratio: f64,
    /// A thread runs `compact_range`, `compact` and `flush` at random.
    pub manual_compactions: bool,
    /// A thread holds snapshots and iterators open and checks they do not change.
    pub readers: bool,
    /// When the parent kills the child, from its start.
    pub kill_after: Duration,
}

impl CyclePlan {
    /// The plan of cycle `cycle` of the run with `seed`.
    pub fn new(seed: u64, cycle: u64) -> CyclePlan {
        let db = DbPlan::new(seed, cycle / CYCLES_PER_DB);
        let compaction = compaction_plan(seed, cycle / CYCLES_PER_STRATEGY);
        let mut rng = rng(seed, 0xc7c1e, cycle);
        let compression = match rng.gen_range(0..4) {
            0 => Compression::None,
            1 => Compression::Zstd,
            _ => Compression::Lz4,
        };
        // One kill in ten lands in the first milliseconds: in recovery, or (the
        // first cycle of a database) in its creation.
        let kill_after = if rng.gen_ratio(1, 10) {
            Duration::from_micros(rng.gen_range(0..15_000))
        } else {
            Duration::from_millis(rng.gen_range(15..=400))
        };
        CyclePlan {
            db,
            compaction,
            write_buffer_size: 1 << rng.gen_range(14..=21),
            max_frozen_memtables: rng.gen_range(1..=4),
            block_size: 1 << rng.gen_range(9..=14),
            block_cache_size: [0, 64 << 10, 8 << 20][rng.gen_range(0..3)],
            compression,
            bloom_bits_per_key: [0, 10, 10][rng.gen_range(0..3)],
            compaction_threads: rng.gen_range(1..=3),
            max_open_files: [16, 64, 512][rng.gen_range(0..3)],
            max_manifest_size: 1 << rng.gen_range(12..=22),
            writers: rng.gen_range(1..=4),
            sync_ratio: [0.0, 0.1, 0.5, 1.0][rng.gen_range(0..4)],
            manual_compactions: rng.gen_bool(0.5),
            readers: rng.gen_bool(0.5),
            kill_after,
        }
    }

    /// The engine options of the child (the parent reopens with automatic compaction
    /// off, so the directory only changes by its own flushes).
    pub fn options(&self) -> Options {
        Options {
            write_buffer_size: self.write_buffer_size,
            max_frozen_memtables: self.max_frozen_memtables,
            block_size: self.block_size,
            block_cache_size: self.block_cache_size,
            compression: self.compression,
            bloom_bits_per_key: self.bloom_bits_per_key,
            compaction: self.compaction.clone(),
            compaction_threads: self.compaction_threads,
            max_open_files: self.max_open_files,
            max_manifest_size: self.max_manifest_size,
            ..Options::default()
        }
    }

    /// The strategy and compression, for the summary's options mix.
    pub fn mix_labels(&self) -> [String; 2] {
        [self.strategy().to_string(), format!("{:?}", self.compression).to_lowercase()]
    }

    fn strategy(&self) -> &'static str {
        strategy_name(&self.compaction)
    }
}

impl fmt::Display for CyclePlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} compaction ({:?}), {} keys per writer, values up to {} B; write buffer {} KiB, \
             {} frozen memtables, {} B blocks, cache {} KiB, {:?}, bloom {} bits, {} \
             compaction threads, {} open files, manifest rewritten past {} KiB; {} writers, \
             {:.0}% of batches synced{}{}; killed after {:?}",
            self.strategy(),
            self.compaction,
            self.db.shape.keys_per_writer,
            self.db.shape.max_padding + 20,
            self.write_buffer_size >> 10,
            self.max_frozen_memtables,
            self.block_size,
            self.block_cache_size >> 10,
            self.compression,
            self.bloom_bits_per_key,
            self.compaction_threads,
            self.max_open_files,
            self.max_manifest_size >> 10,
            self.writers,
            self.sync_ratio * 100.0,
            if self.manual_compactions { ", manual compactions" } else { "" },
            if self.readers { ", snapshots and iterators held open" } else { "" },
            self.kill_after,
        )
    }
}

fn strategy_name(compaction: &CompactionStrategyOptions) -> &'static str {
    match compaction {
        CompactionStrategyOptions::Leveled(_) => "leveled",
        CompactionStrategyOptions::SizeTiered(_) => "size-tiered",
    }
}

fn rng(seed: u64, stream: u64, number: u64) -> StdRng {
    StdRng::seed_from_u64(
        seed ^ stream.wrapping_mul(0xff51_afd7_ed55_8ccd)
            ^ number.wrapping_mul(0xc4ce_b9fe_1a85_ec53),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_plan_gives_valid_options() {
        for cycle in 0..2_000 {
            let plan = CyclePlan::new(99, cycle);
            if let Err(e) = plan.options().validate() {
                panic!("cycle {cycle}: {e}: {plan}");
            }
        }
    }

    #[test]
    fn a_database_keeps_its_shape_for_all_its_cycles() {
        let first = CyclePlan::new(5, CYCLES_PER_DB);
        let last = CyclePlan::new(5, 2 * CYCLES_PER_DB - 1);
        assert_eq!(first.db.shape, last.db.shape);
    }

    #[test]
    fn databases_switch_strategy_between_cycles() {
        let switches = (1..10 * CYCLES_PER_DB)
            .filter(|cycle| cycle % CYCLES_PER_DB != 0)
            .filter(|&cycle| {
                let (before, now) = (CyclePlan::new(7, cycle - 1), CyclePlan::new(7, cycle));
                before.strategy() != now.strategy()
            })
            .count();
        // 30 draws within databases, each a switch half the time.
        assert!((5..=25).contains(&switches), "{switches} switches of strategy");
    }
}
