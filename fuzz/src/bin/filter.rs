//! Fuzz target `filter`: see `aeternus_fuzz::filter` and docs/fuzzing.md.

aeternus_fuzz::fuzz_main!(aeternus_fuzz::filter::run);
