//! Fuzz target `block`: see `aeternus_fuzz::block` and docs/fuzzing.md.

aeternus_fuzz::fuzz_main!(aeternus_fuzz::block::run);
