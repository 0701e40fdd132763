//! Fuzz target `manifest_edit`: see `aeternus_fuzz::manifest_edit` and docs/fuzzing.md.

aeternus_fuzz::fuzz_main!(aeternus_fuzz::manifest_edit::run);
