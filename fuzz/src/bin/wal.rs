//! Fuzz target `wal`: see `aeternus_fuzz::wal` and docs/fuzzing.md.

aeternus_fuzz::fuzz_main!(aeternus_fuzz::wal::run);
