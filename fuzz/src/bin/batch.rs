//! Fuzz target `batch`: see `aeternus_fuzz::batch` and docs/fuzzing.md.

aeternus_fuzz::fuzz_main!(aeternus_fuzz::batch::run);
