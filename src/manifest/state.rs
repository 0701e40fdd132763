//! [`ManifestState`]: what the manifest log adds up to once every edit is applied.
//!
//! # Invariants
//! 1. Table numbers are unique across all levels.
//! 2. Every table has `smallest <= largest` and `min_seqno <= max_seqno`.
//! 3. The database id, once set (non-nil), never changes.
//! 4. [`ManifestState::apply`] is all or nothing: an edit that would break an
//!    invariant is refused and the state is left as it was.

use std::collections::{BTreeMap, BTreeSet};

use super::edit::{TableMeta, VersionEdit};
use crate::error::Corruption;
use crate::key::SeqNo;

/// The database's durable metadata: counters and the set of live tables.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ManifestState {
    /// The database's identity (nil until the first edit sets it).
    pub db_id: uuid::Uuid,
    /// The oldest WAL segment still needed for recovery.
    pub log_number: u64,
    /// The newest WAL segment created.
    pub last_wal: u64,
    /// The next unused file number.
    pub next_file_number: u64,
    /// The highest seqno in any table.
    pub last_seqno: SeqNo,
    /// Live tables by file number.
    pub tables: BTreeMap<u64, TableMeta>,
}

impl ManifestState {
    /// An empty state for database `db_id`.
    pub fn new(db_id: uuid::Uuid) -> Self {
        ManifestState { db_id, ..ManifestState::default() }
    }

    /// Checks that `edit` can be applied, without changing anything.
    ///
    /// The error's offset is 0: the caller knows where the edit was read from.
    pub fn check(&self, edit: &VersionEdit) -> Result<(), Corruption> {
        let bad = |message: String| Err(Corruption::new(0, message));
        if let Some(id) = edit.db_id
            && !self.db_id.is_nil()
            && id != self.db_id
        {
            return bad(format!("edit changes the database id from {} to {id}", self.db_id));
        }
        let mut removed = BTreeSet::new();
        for &(level, number) in &edit.removed {
            match self.tables.get(&number) {
                Some(t) if t.level == level => {}
                Some(t) => {
                    return bad(format!(
                        "edit removes table {number} from level {level}, but it is in level {}",
                        t.level
                    ));
                }
                None => return bad(format!("edit removes unknown table {number}")),
            }
            if !removed.insert(number) {
                return bad(format!("edit removes table {number} twice"));
            }
        }
        let mut added = BTreeSet::new();
        for t in &edit.added {
            let live = self.tables.contains_key(&t.number) && !removed.contains(&t.number);
            if live || !added.insert(t.number) {
                return bad(format!("edit adds table {} which already exists", t.number));
            }
            if t.smallest > t.largest || t.min_seqno > t.max_seqno {
                return bad(format!(
                    "edit adds table {} with an inverted key or seqno range",
                    t.number
                ));
            }
        }
        Ok(())
    }

    /// Applies `edit`: removals first, then additions, then the counters. On error
    /// nothing changed (see [`ManifestState::check`]).
    pub fn apply(&mut self, edit: &VersionEdit) -> Result<(), Corruption> {
        self.check(edit)?;
        for (_, number) in &edit.removed {
            self.tables.remove(number);
        }
        for t in &edit.added {
            self.tables.insert(t.number, t.clone());
        }
        if let Some(id) = edit.db_id {
            self.db_id = id;
        }
        if let Some(n) = edit.log_number {
            self.log_number = n;
        }
        if let Some(n) = edit.last_wal {
            self.last_wal = n;
        }
        if let Some(n) = edit.next_file_number {
            self.next_file_number = n;
        }
        if let Some(s) = edit.last_seqno {
            self.last_seqno = s;
        }
        Ok(())
    }

    /// The whole state as one edit: applied to an empty state it rebuilds this one.
    pub fn snapshot_edit(&self) -> VersionEdit {
        VersionEdit {
            db_id: Some(self.db_id),
            log_number: Some(self.log_number),
            last_wal: Some(self.last_wal),
            next_file_number: Some(self.next_file_number),
            last_seqno: Some(self.last_seqno),
            added: self.tables.values().cloned().collect(),
            removed: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::edit::tests::table;
    use super::*;

    fn state() -> ManifestState {
        let mut s = ManifestState::new(uuid::Uuid::new_v4());
        let edit = VersionEdit {
            added: vec![table(1, 0), table(2, 0), table(3, 1)],
            next_file_number: Some(4),
            ..Default::default()
        };
        s.apply(&edit).unwrap();
        s
    }

    #[test]
    fn snapshot_rebuilds_the_state() {
        let mut s = state();
        s.apply(&VersionEdit { removed: vec![(0, 2)], last_seqno: Some(77), ..Default::default() })
            .unwrap();
        let mut rebuilt = ManifestState::default();
        rebuilt.apply(&s.snapshot_edit()).unwrap();
        assert_eq!(rebuilt, s);
    }

    #[test]
    fn a_table_can_move_levels_in_one_edit() {
        let mut s = state();
        let edit =
            VersionEdit { removed: vec![(0, 1)], added: vec![table(1, 2)], ..Default::default() };
        s.apply(&edit).unwrap();
        assert_eq!(s.tables[&1].level, 2);
    }

    #[test]
    fn bad_edits_are_refused_and_change_nothing() {
        let bad = [
            VersionEdit { removed: vec![(0, 9)], ..Default::default() },
            VersionEdit { removed: vec![(1, 1)], ..Default::default() },
            VersionEdit { removed: vec![(0, 1), (0, 1)], ..Default::default() },
            VersionEdit { added: vec![table(2, 3)], ..Default::default() },
            VersionEdit { added: vec![table(5, 0), table(5, 1)], ..Default::default() },
            VersionEdit {
                added: vec![TableMeta { min_seqno: 9, max_seqno: 1, ..table(6, 0) }],
                ..Default::default()
            },
            VersionEdit {
                added: vec![TableMeta { smallest: "z".into(), largest: "a".into(), ..table(6, 0) }],
                ..Default::default()
            },
            VersionEdit { db_id: Some(uuid::Uuid::new_v4()), ..Default::default() },
            // A valid part before the bad part must not be applied either.
            VersionEdit { removed: vec![(0, 1), (0, 9)], last_wal: Some(5), ..Default::default() },
        ];
        for edit in bad {
            let mut s = state();
            let before = s.clone();
            assert!(s.apply(&edit).is_err(), "{edit:?}");
            assert_eq!(s, before);
        }
    }
}
