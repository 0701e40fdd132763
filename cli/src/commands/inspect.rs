//! Looking at the files themselves: `verify` and `dump sst|wal|manifest`.

use std::collections::BTreeMap;
use std::io::Write;
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use aeternusdb::fs::OsFs;
use aeternusdb::internals::{
    BatchOp, BlockCache, Corruption, Entry, FileKind, Manifest, ManifestState, ReplayError,
    ReplayOutcome, Table, ValueKind, classify, compare_internal, decode_wal_record,
    parse_segment_file_name, replay_segment, segment_file_name,
};
use aeternusdb::{Db, Error, Options, WalRecovery};
use clap::Subcommand;

use crate::format::escape;
use crate::{CliError, CliResult, require_dir};

/// Block cache for tables opened by these commands (blocks are read once).
const CACHE_BYTES: usize = 8 << 20;

#[derive(Debug, Subcommand)]
pub enum DumpCommand {
    /// Print an SSTable's properties, range tombstones and entries.
    Sst {
        /// The .sst file.
        file: PathBuf,
    },
    /// Print a WAL segment's records as operations with their seqnos (the
    /// database's manifest must be in the same directory).
    Wal {
        /// The .wal file.
        file: PathBuf,
    },
    /// Print the manifest state of a database directory: tables per level, file
    /// numbers, log number, last seqno.
    Manifest {
        /// The database directory.
        dir: PathBuf,
    },
}

pub fn dump(command: DumpCommand) -> CliResult {
    let text = match command {
        DumpCommand::Sst { file } => dump_sst(&file)?,
        DumpCommand::Wal { file } => dump_wal(&file)?,
        DumpCommand::Manifest { dir } => dump_manifest(&dir)?,
    };
    std::io::stdout().write_all(text.as_bytes())?;
    Ok(true)
}

fn open_table(path: &Path) -> Result<Arc<Table>, Error> {
    let id = path
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| match classify(n) {
            FileKind::Table(n) => Some(n),
            _ => None,
        })
        .unwrap_or(0);
    Ok(Arc::new(Table::open(&OsFs, path, id, Arc::new(BlockCache::new(CACHE_BYTES)))?))
}

/// Reads every entry of `table`, checking strictly increasing internal order.
fn for_each_entry(table: &Arc<Table>, mut f: impl FnMut(&Entry)) -> Result<u64, Error> {
    let mut previous: Option<Entry> = None;
    let mut count = 0;
    for entry in table.iter(Bound::Unbounded, Bound::Unbounded) {
        let entry = entry?;
        if let Some(p) = &previous
            && compare_internal(&p.key, p.seqno, &entry.key, entry.seqno).is_ge()
        {
            return Err(Corruption::new(0, format!("entry {} out of order", count + 1))
                .in_file(table.path()));
        }
        f(&entry);
        count += 1;
        previous = Some(entry);
    }
    if count != table.properties().entry_count {
        return Err(Corruption::new(
            0,
            format!("{count} entries, properties say {}", table.properties().entry_count),
        )
        .in_file(table.path()));
    }
    Ok(count)
}

fn dump_sst(path: &Path) -> Result<String, CliError> {
    let table = open_table(path)?;
    let p = table.properties();
    let mut out = format!("table {}\n", path.display());
    out += &format!("file size: {}\n", table.file_size());
    out += &format!("entries: {} ({} deletes)\n", p.entry_count, p.point_delete_count);
    out += &format!("range tombstones: {}\n", p.range_tombstone_count);
    out += &format!("seqnos: {}..={}\n", p.min_seqno, p.max_seqno);
    out += &format!("smallest key: {}\n", escape(&p.smallest_key));
    out += &format!("largest key: {}\n", escape(&p.largest_key));
    out += &format!("raw key bytes: {}, raw value bytes: {}\n", p.raw_key_bytes, p.raw_value_bytes);
    out += &format!("data blocks: {}, compression: {:?}\n", p.data_block_count, p.compression);
    out += &format!("created at: {} (unix seconds)\n", p.created_at_secs);
    for t in table.range_tombstones() {
        out += &format!("@{} delete-range [{}, {})\n", t.seqno, escape(&t.start), escape(&t.end));
    }
    for_each_entry(&table, |e| match e.kind {
        ValueKind::Put => {
            out += &format!("@{} put {} = {}\n", e.seqno, escape(&e.key), escape(&e.value))
        }
        ValueKind::Delete => out += &format!("@{} delete {}\n", e.seqno, escape(&e.key)),
    })?;
    Ok(out)
}

/// The segment number and directory of a WAL file path.
fn wal_location(path: &Path) -> Result<(u64, PathBuf), CliError> {
    let number =
        path.file_name().and_then(|n| n.to_str()).and_then(parse_segment_file_name).ok_or_else(
            || CliError::new(format!("{} is not named like a WAL segment", path.display())),
        )?;
    let dir = path.parent().map_or_else(|| PathBuf::from("."), Path::to_path_buf);
    let dir = if dir.as_os_str().is_empty() { PathBuf::from(".") } else { dir };
    Ok((number, dir))
}

/// Replays a segment strictly, checking that every record decodes.
fn replay(
    dir: &Path,
    number: u64,
    state: &ManifestState,
    is_last: bool,
    mut f: impl FnMut(Vec<(u64, BatchOp)>),
) -> Result<ReplayOutcome, Error> {
    replay_segment(&OsFs, dir, number, state.db_id, is_last, WalRecovery::Strict, |payload| {
        let ops = decode_wal_record(payload).map_err(|at| {
            // Located in the segment by `replay_segment`.
            ReplayError::Damaged(Corruption::new(at as u64, "undecodable batch"))
        })?;
        f(ops);
        Ok(())
    })
}

fn dump_wal(path: &Path) -> Result<String, CliError> {
    let (number, dir) = wal_location(path)?;
    let state = Manifest::load(&OsFs, &dir)?;
    let mut out = format!("segment {number} of database {}\n", state.db_id);
    let mut record = 0u64;
    let outcome = replay(&dir, number, &state, true, |ops| {
        record += 1;
        out += &format!("record {record}: {} ops\n", ops.len());
        for (seqno, op) in ops {
            out += &match op {
                BatchOp::Point { key, kind: ValueKind::Put, value } => {
                    format!("  @{seqno} put {} = {}\n", escape(&key), escape(&value))
                }
                BatchOp::Point { key, kind: ValueKind::Delete, .. } => {
                    format!("  @{seqno} delete {}\n", escape(&key))
                }
                BatchOp::RangeDelete { start, end } => {
                    format!("  @{seqno} delete-range [{}, {})\n", escape(&start), escape(&end))
                }
            };
        }
    })?;
    out += &format!("{} records, {} valid bytes\n", outcome.records, outcome.valid_len);
    if let Some(at) = outcome.torn_tail {
        out += &format!("torn tail at offset {at} (dropped)\n");
    }
    Ok(out)
}

fn dump_manifest(dir: &Path) -> Result<String, CliError> {
    let state = Manifest::load(&OsFs, dir)?;
    let path = Manifest::current_path(&OsFs, dir)?;
    let mut out = format!("manifest {}\n", path.display());
    out += &format!("database id: {}\n", state.db_id);
    out += &format!("log number: {}\n", state.log_number);
    out += &format!("last wal: {}\n", state.last_wal);
    out += &format!("next file number: {}\n", state.next_file_number);
    out += &format!("last seqno: {}\n", state.last_seqno);
    let mut levels: BTreeMap<u32, Vec<_>> = BTreeMap::new();
    for table in state.tables.values() {
        levels.entry(table.level).or_default().push(table);
    }
    out += &format!("tables: {}\n", state.tables.len());
    for (level, tables) in levels {
        out += &format!("L{level}: {} tables\n", tables.len());
        for t in tables {
            out += &format!(
                "  {:06}.sst {} bytes [{} .. {}] seqnos {}..={}\n",
                t.number,
                t.size,
                escape(&t.smallest),
                escape(&t.largest),
                t.min_seqno,
                t.max_seqno
            );
        }
    }
    Ok(out)
}

/// Opens the database (running recovery's checks), then reads every table and WAL
/// segment in full. Prints each damaged file; `Ok(false)` if there was any.
pub fn verify(dir: Option<&Path>) -> CliResult {
    let dir = require_dir(dir)?;
    let mut damaged: BTreeMap<PathBuf, String> = BTreeMap::new();
    // A corruption names its file; other errors are charged to the file being read.
    let note = |damaged: &mut BTreeMap<PathBuf, String>, e: Error, fallback: &Path| {
        let file = match &e {
            Error::Corruption { file, .. } => file.clone(),
            _ => fallback.to_path_buf(),
        };
        damaged.entry(file).or_insert_with(|| e.to_string());
    };

    if !dir.join("CURRENT").exists() {
        return Err(CliError::new(format!("no database in {}", dir.display())));
    }
    match Db::open(dir, Options { create_if_missing: false, ..Options::default() }) {
        Ok(db) => db.close()?,
        Err(e @ Error::Corruption { .. }) => note(&mut damaged, e, dir),
        // Not damage: the directory is locked, unreadable, ...
        Err(e) => return Err(e.into()),
    }

    let mut names = std::fs::read_dir(dir)?
        .map(|entry| entry.map(|e| e.file_name().to_string_lossy().into_owned()))
        .collect::<Result<Vec<_>, _>>()?;
    names.sort();
    let (mut tables, mut segments) = (Vec::new(), Vec::new());
    for name in &names {
        match classify(name) {
            FileKind::Table(_) => tables.push(dir.join(name)),
            FileKind::Wal(n) => segments.push(n),
            _ => {}
        }
    }
    let mut entries = 0;
    for path in &tables {
        match open_table(path).and_then(|t| for_each_entry(&t, |_| {})) {
            Ok(n) => entries += n,
            Err(e) => note(&mut damaged, e, path),
        }
    }
    let mut records = 0;
    match Manifest::load(&OsFs, dir) {
        Ok(state) => {
            let last = segments.iter().max().copied();
            for &n in &segments {
                match replay(dir, n, &state, Some(n) == last, |_| {}) {
                    Ok(outcome) => records += outcome.records,
                    Err(e) => note(&mut damaged, e, &dir.join(segment_file_name(n))),
                }
            }
        }
        Err(e) => note(&mut damaged, e, &dir.join("CURRENT")),
    }

    let mut out = std::io::stdout().lock();
    for (file, message) in &damaged {
        writeln!(out, "damaged: {}: {message}", file.display())?;
    }
    writeln!(
        out,
        "{} tables ({entries} entries), {} WAL segments ({records} records): {}",
        tables.len(),
        segments.len(),
        if damaged.is_empty() { "ok".to_string() } else { format!("{} damaged", damaged.len()) }
    )?;
    Ok(damaged.is_empty())
}
