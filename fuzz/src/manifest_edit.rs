//! `VersionEdit::decode`, that a decoded edit encodes and decodes back, and checking
//! and applying it to an empty state.
//!
//! Input: the payload of one manifest record.

use aeternusdb::internals::{ManifestState, VersionEdit};

pub fn run(data: &[u8]) {
    let Ok(edit) = VersionEdit::decode(data) else { return };
    let again = VersionEdit::decode(&edit.encode()).expect("an encoded edit decodes");
    assert_eq!(again, edit);
    let mut state = ManifestState::default();
    let checked = state.check(&edit).is_ok();
    let before = state.clone();
    match state.apply(&edit) {
        Ok(()) => assert!(checked, "apply accepted an edit that check refused"),
        Err(_) => assert_eq!(state, before, "a refused edit changed the state"),
    }
}
