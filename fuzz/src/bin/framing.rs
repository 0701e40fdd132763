//! Fuzz target `framing`: see `aeternus_fuzz::framing` and docs/fuzzing.md.

aeternus_fuzz::fuzz_main!(aeternus_fuzz::framing::run);
