//! Maintenance of an open database: `stats`, `compact`, `flush`.

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use crate::{CliResult, open_db};

pub fn stats(dir: Option<&Path>) -> CliResult {
    let db = open_db(dir, false, true)?;
    let s = db.stats()?;
    db.close()?;
    let ms = |d: Duration| format!("{:.1} ms", d.as_secs_f64() * 1000.0);
    let mut out = String::new();
    let mut line = |text: String| {
        out.push_str(&text);
        out.push('\n');
    };
    line(format!(
        "memtables: active {} bytes, {} frozen",
        s.active_memtable_bytes, s.frozen_memtables
    ));
    line(format!("block cache: {} of {} bytes", s.block_cache_bytes, s.block_cache_capacity));
    line(format!("{:<6} {:>8} {:>14}", "level", "tables", "bytes"));
    for (i, level) in s.levels.iter().enumerate() {
        line(format!("{:<6} {:>8} {:>14}", format!("L{i}"), level.tables, level.bytes));
    }
    line(format!("{:<6} {:>8} {:>14}", "total", s.sstables, s.sstable_bytes));
    line(format!("disk bytes: {}", s.disk_bytes));
    line(format!("last seqno: {}", s.last_seqno));
    line(format!("space amplification: {:.2}", s.space_amplification));
    line(format!(
        "running compactions: {}{}",
        s.running_compactions,
        if s.compaction_pending { ", more pending" } else { "" }
    ));
    // The engine keeps these counters in memory only, and this command opened the
    // database just now: the work of earlier commands shows with `-v` as they run.
    line("since this process opened the database (not kept across opens; see -v):".into());
    line(format!("  write amplification: {:.2}", s.write_amplification));
    line(format!(
        "  flushes: {} ({} bytes, {})",
        s.flushes,
        s.flush_bytes_written,
        ms(s.flush_time)
    ));
    line(format!(
        "  compactions: {} ({} trivial moves, {} bytes read, {} written, {})",
        s.compactions,
        s.trivial_moves,
        s.compaction_bytes_read,
        s.compaction_bytes_written,
        ms(s.compaction_time),
    ));
    line(format!(
        "  write stalls: {} ({}), slowdowns: {} ({})",
        s.write_stalls,
        ms(s.write_stall_time),
        s.write_slowdowns,
        ms(s.write_slowdown_time)
    ));
    std::io::stdout().write_all(out.as_bytes())?;
    Ok(true)
}

pub fn compact(dir: Option<&Path>) -> CliResult {
    let db = open_db(dir, false, true)?;
    db.compact()?;
    db.close()?;
    Ok(true)
}

pub fn flush(dir: Option<&Path>) -> CliResult {
    let db = open_db(dir, false, true)?;
    db.flush()?;
    db.close()?;
    Ok(true)
}
