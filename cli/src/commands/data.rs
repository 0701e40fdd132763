//! Reading and writing keys: `put`, `get`, `delete`, `delete-range`, `scan`.

use std::io::Write;
use std::ops::Bound;
use std::path::Path;

use clap::Args;

use crate::format::{Encoding, PairStyle, escape, hex};
use crate::{CliError, CliResult, open_db};

#[derive(Debug, Args)]
pub struct PutArgs {
    /// The key (UTF-8).
    key: String,
    /// The value (UTF-8).
    value: String,
}

#[derive(Debug, Args)]
pub struct GetArgs {
    /// The key (UTF-8).
    key: String,
    /// Print the value as hex instead of escaped text.
    #[arg(long)]
    hex: bool,
}

#[derive(Debug, Args)]
pub struct KeyArgs {
    /// The key (UTF-8).
    key: String,
}

#[derive(Debug, Args)]
pub struct DeleteRangeArgs {
    /// First key deleted.
    start: String,
    /// First key kept (exclusive end).
    end: String,
}

#[derive(Debug, Args)]
pub struct ScanArgs {
    /// Only keys starting with PREFIX.
    #[arg(long, conflicts_with_all = ["from", "to"])]
    prefix: Option<String>,
    /// Start at this key (inclusive).
    #[arg(long)]
    from: Option<String>,
    /// Stop before this key (exclusive).
    #[arg(long)]
    to: Option<String>,
    /// Largest key first.
    #[arg(long)]
    reverse: bool,
    /// Print at most N pairs.
    #[arg(long, value_name = "N")]
    limit: Option<usize>,
    /// Print keys and values as hex.
    #[arg(long, conflicts_with = "json")]
    hex: bool,
    /// Print one JSON object per line, `{"key": .., "value": ..}`.
    #[arg(long)]
    json: bool,
    /// String encoding of --json output.
    #[arg(long, value_enum, default_value = "utf8", requires = "json")]
    encoding: Encoding,
}

pub fn put(dir: Option<&Path>, args: PutArgs) -> CliResult {
    let db = open_db(dir, true, true)?;
    db.put(&args.key, &args.value)?;
    db.close()?;
    Ok(true)
}

pub fn get(dir: Option<&Path>, args: GetArgs) -> CliResult {
    let db = open_db(dir, false, true)?;
    let value = db.get(&args.key)?;
    db.close()?;
    let value = value.ok_or_else(|| CliError::new(format!("key not found: {}", args.key)))?;
    let text = if args.hex { hex(&value) } else { escape(&value) };
    writeln!(std::io::stdout(), "{text}")?;
    Ok(true)
}

pub fn delete(dir: Option<&Path>, args: KeyArgs) -> CliResult {
    let db = open_db(dir, false, true)?;
    db.delete(&args.key)?;
    db.close()?;
    Ok(true)
}

pub fn delete_range(dir: Option<&Path>, args: DeleteRangeArgs) -> CliResult {
    let db = open_db(dir, false, true)?;
    db.delete_range(&args.start, &args.end)?;
    db.close()?;
    Ok(true)
}

pub fn scan(dir: Option<&Path>, args: ScanArgs) -> CliResult {
    let db = open_db(dir, false, true)?;
    let iter = match &args.prefix {
        Some(prefix) => db.prefix(prefix)?,
        None => {
            let bound = |b: &Option<String>, inclusive: bool| match b {
                Some(k) if inclusive => Bound::Included(k.clone().into_bytes()),
                Some(k) => Bound::Excluded(k.clone().into_bytes()),
                None => Bound::Unbounded,
            };
            db.range((bound(&args.from, true), bound(&args.to, false)))?
        }
    };
    let style = if args.json {
        PairStyle::Json(args.encoding)
    } else if args.hex {
        PairStyle::Hex
    } else {
        PairStyle::Escaped
    };
    let iter: Box<dyn Iterator<Item = _>> =
        if args.reverse { Box::new(iter.rev()) } else { Box::new(iter) };
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    for item in iter.take(args.limit.unwrap_or(usize::MAX)) {
        let (key, value) = item?;
        writeln!(out, "{}", style.line(&key, &value)?)?;
    }
    out.flush()?;
    db.close()?;
    Ok(true)
}
