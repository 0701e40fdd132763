//! Fuzz target `manifest`: see `aeternus_fuzz::manifest` and docs/fuzzing.md.

aeternus_fuzz::fuzz_main!(aeternus_fuzz::manifest::run);
