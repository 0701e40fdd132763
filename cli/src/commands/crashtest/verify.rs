//! The parent's checks of a recovered database: its contents against the oracle
//! and against themselves (forward scan, backward scan, point reads), and its files
//! against the manifest.

use std::collections::BTreeMap;
use std::path::Path;

use aeternusdb::fs::OsFs;
use aeternusdb::internals::{FileKind, Manifest, classify};
use aeternusdb::{Db, Options};

use super::oracle::{self, Oracle};
use super::plan::CyclePlan;
use super::workload;

/// Reopens the database as recovery leaves it and checks it whole.
pub fn reopen_and_check(
    dir: &Path,
    plan: &CyclePlan,
    oracle: &mut Oracle,
    acked: &[u64],
) -> Result<oracle::Checked, String> {
    let options = Options { auto_compaction: false, ..plan.options() };
    let db = Db::open(dir, options).map_err(|e| format!("reopen failed: {e}"))?;
    let checked = check_contents(&db, plan, oracle, acked)?;
    db.close().map_err(|e| format!("close failed: {e}"))?;
    check_files(dir)?;
    Ok(checked)
}

/// At the end of a database: automatic compaction on, a whole compaction, and the
/// same checks with nothing in flight.
pub fn compact_and_check(dir: &Path, plan: &CyclePlan, oracle: &mut Oracle) -> Result<(), String> {
    let db = Db::open(dir, plan.options()).map_err(|e| format!("final reopen failed: {e}"))?;
    db.compact().map_err(|e| format!("final compaction failed: {e}"))?;
    check_contents(&db, plan, oracle, &[])
        .map_err(|e| format!("after the final compaction: {e}"))?;
    db.close().map_err(|e| format!("close failed: {e}"))?;
    check_files(dir)
}

/// Reads the whole database forward, backward and key by key, and checks it
/// against the oracle.
fn check_contents(
    db: &Db,
    plan: &CyclePlan,
    oracle: &mut Oracle,
    acked: &[u64],
) -> Result<oracle::Checked, String> {
    let read = |e: aeternusdb::Error| format!("read failed: {e}");
    let mut found = BTreeMap::new();
    for entry in db.iter().map_err(read)? {
        let (key, value) = entry.map_err(read)?;
        found.insert(key.to_vec(), value.to_vec());
    }
    let mut backward = found.iter().rev();
    for entry in db.iter().map_err(read)?.rev() {
        let (key, value) = entry.map_err(read)?;
        if backward.next() != Some((&key.to_vec(), &value.to_vec())) {
            return Err(format!(
                "a backward scan differs from the forward scan at {}",
                String::from_utf8_lossy(&key)
            ));
        }
    }
    if backward.next().is_some() {
        return Err("a backward scan ends before the forward scan's first key".into());
    }
    let writers = oracle.writers().max(acked.len()).max(plan.writers);
    for w in 0..writers {
        for k in (0..plan.db.shape.keys_per_writer).step_by(7) {
            let key = workload::key(w, k);
            let got = db.get(&key).map_err(read)?;
            if got.as_deref() != found.get(&key).map(Vec::as_slice) {
                return Err(format!(
                    "get({}) differs from the scan",
                    String::from_utf8_lossy(&key)
                ));
            }
        }
    }
    oracle.check(acked, &found)
}

/// After a close: the directory's tables are the manifest's, and no temporary file
/// is left.
fn check_files(dir: &Path) -> Result<(), String> {
    let state = Manifest::load(&OsFs, dir).map_err(|e| format!("manifest: {e}"))?;
    let names = std::fs::read_dir(dir)
        .and_then(|entries| {
            entries.map(|e| e.map(|e| e.file_name())).collect::<Result<Vec<_>, _>>()
        })
        .map_err(|e| format!("listing {}: {e}", dir.display()))?;
    let mut tables = Vec::new();
    for name in names {
        let name = name.to_string_lossy();
        match classify(&name) {
            FileKind::Table(n) => tables.push(n),
            FileKind::Temp => return Err(format!("temporary file {name} left after close")),
            _ => {}
        }
    }
    tables.sort_unstable();
    let named: Vec<u64> = state.tables.keys().copied().collect();
    if tables != named {
        return Err(format!(
            "after close the directory holds tables {tables:?}, the manifest names {named:?}"
        ));
    }
    Ok(())
}
