//! Fuzz targets for AeternusDB: one per on-disk decoder, plus a model test of the whole
//! database on the fault-injecting filesystem. See `docs/fuzzing.md`.
//!
//! Each target is a module with `pub fn run(data: &[u8])` and a binary in `src/bin/`
//! named after it. Built by `cargo afl build` (which passes `--cfg fuzzing`) a binary is
//! an AFL++ persistent-mode target; built by plain cargo it replays the files or
//! directories named on its command line, so a crash AFL found reproduces with a
//! backtrace. `tests/corpus.rs` replays every checked-in corpus file through `run`.
//!
//! # The invariant
//! A decoder given arbitrary bytes returns a value or an error. A panic, an abort, an
//! allocation above [`MAX_ALLOCATION`] or a hang is a bug. Where a decoder has an
//! encoder, what it decodes must encode and decode back to the same value; the model
//! target checks the database against a `BTreeMap`.
//!
//! # Checksums
//! Blocks, log records and footers carry CRC32C checksums that a mutation almost
//! always breaks, so a fuzzer would only ever test the checksum check. Targets whose
//! format has them read a first flags byte: with bit 0 set, the target rewrites every
//! checksum it can find (see [`fix_log_checksums`]) before decoding, so the mutated
//! contents reach the parsers behind the checksums.

use std::alloc::{GlobalAlloc, Layout, System};

pub mod batch;
pub mod block;
pub mod filter;
pub mod footer;
pub mod framing;
pub mod index;
pub mod manifest;
pub mod manifest_edit;
pub mod model;
pub mod properties;
pub mod table;
pub mod wal;

/// A target's entry point: runs one input, panicking on a bug.
pub type Run = fn(&[u8]);

/// Every target, by name: the name of its binary and of its corpus directory.
pub const TARGETS: &[(&str, Run)] = &[
    ("batch", batch::run),
    ("block", block::run),
    ("filter", filter::run),
    ("footer", footer::run),
    ("framing", framing::run),
    ("index", index::run),
    ("manifest", manifest::run),
    ("manifest_edit", manifest_edit::run),
    ("model", model::run),
    ("properties", properties::run),
    ("table", table::run),
    ("wal", wal::run),
];

/// The largest single allocation a target may make. The decoders' own limits are
/// below it (a block declares at most 512 MiB decompressed), and fuzz inputs are at
/// most a few MiB, so anything larger means a length was trusted that should not be.
pub const MAX_ALLOCATION: usize = 640 << 20;

/// The system allocator, aborting on an allocation above [`MAX_ALLOCATION`], which
/// the fuzzer then reports as a crash.
struct CappedAllocator;

impl CappedAllocator {
    fn check(size: usize) {
        if size > MAX_ALLOCATION {
            use std::io::Write;
            let _ = std::io::stderr().write_all(b"aeternus-fuzz: allocation above the cap\n");
            std::process::abort();
        }
    }
}

// SAFETY: every call is forwarded unchanged to `System`, which upholds the contract;
// the check before it only reads the requested size.
unsafe impl GlobalAlloc for CappedAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        Self::check(layout.size());
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        Self::check(layout.size());
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        Self::check(new_size);
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: CappedAllocator = CappedAllocator;

/// The `main` of a target's binary: AFL++'s persistent loop under `cargo afl build`,
/// else a replay of the files and directories named as arguments.
#[macro_export]
macro_rules! fuzz_main {
    ($run:path) => {
        #[cfg(fuzzing)]
        fn main() {
            afl::fuzz!(|data: &[u8]| {
                $run(data);
            });
        }

        #[cfg(not(fuzzing))]
        fn main() {
            $crate::replay_args($run);
        }
    };
}

/// Runs `run` on every file named on the command line (a directory: on each file in
/// it), printing each name first so a panic shows which input caused it.
pub fn replay_args(run: Run) {
    let paths: Vec<std::path::PathBuf> = std::env::args_os().skip(1).map(Into::into).collect();
    if paths.is_empty() {
        eprintln!("usage: <target> FILE|DIR... (replays inputs; `cargo afl build` to fuzz)");
        std::process::exit(2);
    }
    for path in paths {
        for file in input_files(&path) {
            eprintln!("{}", file.display());
            let data = std::fs::read(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
            run(&data);
        }
    }
}

/// `path` itself if it is a file, else the files in it, sorted.
pub fn input_files(path: &std::path::Path) -> Vec<std::path::PathBuf> {
    if !path.is_dir() {
        return vec![path.to_path_buf()];
    }
    let mut files: Vec<_> = std::fs::read_dir(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

/// Splits the flags byte off `data` (0 for empty input).
pub fn split_flags(data: &[u8]) -> (u8, &[u8]) {
    match data.split_first() {
        Some((&flags, rest)) => (flags, rest),
        None => (0, data),
    }
}

/// Rewrites, in place, the checksums of the log records (`crate::log_record` framing)
/// that start at `start`: each record's header checksum, and the payload checksum of
/// each record whose payload fits. Stops at the first record that does not fit.
pub fn fix_log_checksums(buf: &mut [u8], start: usize) {
    const HEADER: usize = 13;
    let mut pos = start;
    while let Some(header) = buf.get(pos..pos + HEADER) {
        let len = u32::from_le_bytes([header[4], header[5], header[6], header[7]]) as usize;
        let crc = crc32c::crc32c(&header[4..9]);
        buf[pos..pos + 4].copy_from_slice(&crc.to_le_bytes());
        let Some(end) = pos.checked_add(HEADER).and_then(|p| p.checked_add(len)) else { break };
        let Some(payload) = buf.get(pos + HEADER..end) else { break };
        let crc = crc32c::crc32c(payload);
        buf[pos + 9..pos + 13].copy_from_slice(&crc.to_le_bytes());
        pos = end;
    }
}

/// Rewrites the checksum of the framed block (`sstable::framing`) at `offset..end`
/// of `buf`, if it lies inside `buf` and is long enough to have one.
pub fn fix_block_checksum(buf: &mut [u8], offset: u64, size: u32) {
    let (Ok(offset), Ok(size)) = (usize::try_from(offset), usize::try_from(size)) else {
        return;
    };
    let Some(end) = offset.checked_add(size) else { return };
    if size < 5 || end > buf.len() {
        return;
    }
    let crc = crc32c::crc32c(&buf[offset..end - 4]);
    buf[end - 4..end].copy_from_slice(&crc.to_le_bytes());
}

/// A fresh in-memory filesystem holding `data` as the synced file `path` (its
/// directory created and synced).
pub fn fs_with_file(path: &std::path::Path, data: &[u8]) -> aeternusdb::fs::FaultFs {
    use aeternusdb::fs::FileSystem;
    let fs = aeternusdb::fs::FaultFs::new();
    let dir = path.parent().unwrap_or(std::path::Path::new("/"));
    fs.create_dir_all(dir).expect("create_dir_all on a FaultFs");
    let mut file = fs.create(path).expect("create on a FaultFs");
    file.append(data).expect("append on a FaultFs");
    file.sync().expect("sync on a FaultFs");
    fs.sync_dir(dir).expect("sync_dir on a FaultFs");
    fs
}
