//! Fuzz target `properties`: see `aeternus_fuzz::properties` and docs/fuzzing.md.

aeternus_fuzz::fuzz_main!(aeternus_fuzz::properties::run);
