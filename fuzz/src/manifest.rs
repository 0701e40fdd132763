//! A whole manifest file through `Manifest::load` (header, record framing, every
//! edit decoded and applied), and that a loaded state, written into a new manifest,
//! loads back the same.
//!
//! Input: flags byte (bit 0 fixes the header's and the records' checksums), then the
//! manifest file, which `CURRENT` names.

use std::path::Path;
use std::sync::Arc;

use aeternusdb::fs::FileSystem;
use aeternusdb::internals::{CURRENT, Manifest, manifest_file_name};

/// Where a manifest's header ends (`manifest::MANIFEST_HEADER_LEN`).
const HEADER_LEN: usize = 16;

pub fn run(data: &[u8]) {
    let (flags, file) = crate::split_flags(data);
    let mut file = file.to_vec();
    if flags & 1 == 1 && file.len() >= HEADER_LEN {
        let crc = crc32c::crc32c(&file[..12]);
        file[12..16].copy_from_slice(&crc.to_le_bytes());
        crate::fix_log_checksums(&mut file, HEADER_LEN);
    }
    let dir = Path::new("/db");
    let fs = crate::fs_with_file(&dir.join(manifest_file_name(1)), &file);
    let mut current = fs.create(&dir.join(CURRENT)).expect("create CURRENT");
    current.append(format!("{}\n", manifest_file_name(1)).as_bytes()).expect("write CURRENT");
    current.sync().expect("sync CURRENT");
    drop(current);
    let Ok(state) = Manifest::load(&fs, dir) else { return };
    assert!(!state.db_id.is_nil(), "a loaded manifest names its database");
    // A state that loads can be written out as a snapshot and loads back the same.
    let number = state.next_file_number.max(2);
    let fs: Arc<dyn FileSystem> = Arc::new(fs);
    let created = Manifest::create(Arc::clone(&fs), dir, number, state.clone(), u64::MAX);
    if created.is_ok() {
        let again = Manifest::load(fs.as_ref(), dir).expect("a manifest just created loads");
        assert_eq!(again.tables, state.tables);
        assert_eq!((again.db_id, again.last_seqno), (state.db_id, state.last_seqno));
    }
}
