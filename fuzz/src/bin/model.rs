//! Fuzz target `model`: see `aeternus_fuzz::model` and docs/fuzzing.md.

aeternus_fuzz::fuzz_main!(aeternus_fuzz::model::run);
