//! `decode_wal_record` (a commit group: base seqno, count, operations), and that the
//! operations it decodes encode into a group that decodes to the same operations.
//!
//! Input: one WAL record payload.

use aeternusdb::WriteBatch;
use aeternusdb::internals::{BatchOp, ValueKind, decode_wal_record, encode_wal_record};

pub fn run(data: &[u8]) {
    let Ok(ops) = decode_wal_record(data) else { return };
    for pair in ops.windows(2) {
        assert_eq!(pair[0].0.checked_add(1), Some(pair[1].0), "seqnos are consecutive");
    }
    let Some(&(base, _)) = ops.first() else { return };
    let mut batch = WriteBatch::new();
    for (_, op) in &ops {
        let added = match op {
            BatchOp::Point { key, kind: ValueKind::Put, value } => batch.put(key, value).is_ok(),
            BatchOp::Point { key, .. } => batch.delete(key).is_ok(),
            BatchOp::RangeDelete { start, end } => {
                start < end && batch.delete_range(start, end).is_ok()
            }
        };
        if !added {
            return; // valid framing, but not something `WriteBatch` accepts
        }
    }
    let encoded = encode_wal_record(&[batch], base);
    assert_eq!(decode_wal_record(&encoded), Ok(ops), "re-encoded group");
}
