//! Fuzz target `footer`: see `aeternus_fuzz::footer` and docs/fuzzing.md.

aeternus_fuzz::fuzz_main!(aeternus_fuzz::footer::run);
