//! Fuzz target `index`: see `aeternus_fuzz::index` and docs/fuzzing.md.

aeternus_fuzz::fuzz_main!(aeternus_fuzz::index::run);
