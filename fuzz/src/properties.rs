//! `Properties::decode`, and that decoded properties encode and decode back.
//!
//! Input: the bytes of a properties block (decompressed).

use aeternusdb::internals::Properties;

pub fn run(data: &[u8]) {
    if let Ok(p) = Properties::decode(data, 0) {
        let again = Properties::decode(&p.encode(), 0).expect("encoded properties decode");
        assert_eq!(again, p);
        assert!(p.min_seqno <= p.max_seqno && p.point_delete_count <= p.entry_count);
    }
}
