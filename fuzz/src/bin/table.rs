//! Fuzz target `table`: see `aeternus_fuzz::table` and docs/fuzzing.md.

aeternus_fuzz::fuzz_main!(aeternus_fuzz::table::run);
