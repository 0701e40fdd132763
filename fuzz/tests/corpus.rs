//! Replays every checked-in corpus file (`fuzz/corpus/<target>/`) through its target,
//! so the seeds and everything the fuzzer kept are checked by `cargo test` too.
//! A crash the fuzzer finds belongs in the corpus once it is fixed.

use std::path::Path;

use aeternus_fuzz::{TARGETS, input_files};

#[test]
fn every_corpus_file_passes_its_target() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus");
    for (name, run) in TARGETS {
        let dir = root.join(name);
        let files = input_files(&dir);
        assert!(!files.is_empty(), "no corpus for target {name} in {}", dir.display());
        for file in files {
            let data = std::fs::read(&file).expect("read corpus file");
            let result = std::panic::catch_unwind(|| run(&data));
            assert!(result.is_ok(), "target {name} failed on {}", file.display());
        }
    }
}
