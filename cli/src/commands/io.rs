//! Bulk transfer: `load` and `export`, JSON Lines or CSV.

use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use aeternusdb::{Db, WriteBatch};
use clap::{Args, ValueEnum};
use indicatif::ProgressBar;

use super::progress_bar;
use crate::format::{Encoding, json_line, parse_json_line};
use crate::{CliError, CliResult, open_db};

/// Operations per write batch during `load`.
const BATCH_OPS: usize = 1000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FileFormat {
    /// One `{"key": "...", "value": "..."}` object per line.
    Jsonl,
    /// Two columns, key and value, no header.
    Csv,
}

#[derive(Debug, Args)]
pub struct LoadArgs {
    /// The file to load.
    file: PathBuf,
    /// The file's format.
    #[arg(long, value_enum, default_value = "jsonl")]
    format: FileFormat,
    /// How keys and values are written as strings in the file.
    #[arg(long, value_enum, default_value = "utf8")]
    encoding: Encoding,
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// Write here instead of to stdout.
    file: Option<PathBuf>,
    /// The output format.
    #[arg(long, value_enum, default_value = "jsonl")]
    format: FileFormat,
    /// How keys and values are written as strings (utf8 fails on binary data).
    #[arg(long, value_enum, default_value = "utf8")]
    encoding: Encoding,
}

/// Puts records into batches of [`BATCH_OPS`] and counts what was committed.
struct Loader<'a> {
    db: &'a Db,
    batch: WriteBatch,
    pending: u64,
    loaded: u64,
}

impl Loader<'_> {
    fn put(&mut self, key: &[u8], value: &[u8]) -> Result<(), aeternusdb::Error> {
        self.batch.put(key, value)?;
        self.pending += 1;
        if self.batch.len() >= BATCH_OPS {
            self.commit()?;
        }
        Ok(())
    }

    fn commit(&mut self) -> Result<(), aeternusdb::Error> {
        if !self.batch.is_empty() {
            self.db.write(&self.batch)?;
            self.batch.clear();
        }
        self.loaded += self.pending;
        self.pending = 0;
        Ok(())
    }
}

pub fn load(dir: Option<&Path>, args: LoadArgs) -> CliResult {
    let file = File::open(&args.file)
        .map_err(|e| CliError::new(format!("cannot open {}: {e}", args.file.display())))?;
    let size = file.metadata()?.len();
    // Writes reach the OS per batch and are synced once at the end.
    let db = open_db(dir, true, false)?;
    let progress = progress_bar(size, "{bar:40} {bytes}/{total_bytes} {per_sec} {msg} records");
    let mut loader = Loader { db: &db, batch: WriteBatch::new(), pending: 0, loaded: 0 };
    let result = match args.format {
        FileFormat::Jsonl => load_jsonl(file, args.encoding, &mut loader, &progress),
        FileFormat::Csv => load_csv(file, args.encoding, &mut loader, &progress),
    };
    // Whatever was read before a bad line stays.
    let committed = loader.commit().map_err(CliError::from);
    progress.finish_and_clear();
    db.sync_wal()?;
    db.close()?;
    committed?;
    let loaded = loader.loaded;
    match result {
        Ok(()) => {
            eprintln!("loaded {loaded} records");
            Ok(true)
        }
        Err((line, message)) => Err(CliError::new(format!(
            "{}: line {line}: {message}; loaded {loaded} records before it",
            args.file.display()
        ))),
    }
}

/// A load failure: the 1-based line and what was wrong.
type LineError = (u64, String);

fn load_jsonl(
    file: File,
    encoding: Encoding,
    loader: &mut Loader<'_>,
    progress: &ProgressBar,
) -> Result<(), LineError> {
    let mut reader = BufReader::new(file);
    let mut line = String::new();
    for number in 1.. {
        line.clear();
        let read = reader.read_line(&mut line).map_err(|e| (number, e.to_string()))?;
        if read == 0 {
            return Ok(());
        }
        progress.inc(read as u64);
        let text = line.trim_end_matches(['\n', '\r']);
        if text.trim().is_empty() {
            continue;
        }
        let (key, value) = parse_json_line(text, encoding).map_err(|e| (number, e))?;
        loader.put(&key, &value).map_err(|e| (number, e.to_string()))?;
        if loader.pending == 0 {
            progress.set_message(loader.loaded.to_string());
        }
    }
    Ok(())
}

fn load_csv(
    file: File,
    encoding: Encoding,
    loader: &mut Loader<'_>,
    progress: &ProgressBar,
) -> Result<(), LineError> {
    let mut reader = csv::ReaderBuilder::new().has_headers(false).flexible(true).from_reader(file);
    let mut record = csv::ByteRecord::new();
    let mut line = 1;
    loop {
        match reader.read_byte_record(&mut record) {
            Ok(false) => return Ok(()),
            Ok(true) => {}
            Err(e) => {
                let at = e.position().map_or(line, |p| p.line());
                return Err((at, e.to_string()));
            }
        }
        line = record.position().map_or(line, |p| p.line());
        progress.set_position(record.position().map_or(0, |p| p.byte()));
        if record.len() != 2 {
            return Err((line, format!("expected 2 columns (key, value), found {}", record.len())));
        }
        let field = |i: usize| -> Result<Vec<u8>, LineError> {
            let text = std::str::from_utf8(&record[i]).map_err(|_| (line, "not UTF-8".into()))?;
            encoding.decode(text).map_err(|e| (line, e))
        };
        let (key, value) = (field(0)?, field(1)?);
        loader.put(&key, &value).map_err(|e| (line, e.to_string()))?;
        if loader.pending == 0 {
            progress.set_message(loader.loaded.to_string());
        }
    }
}

pub fn export(dir: Option<&Path>, args: ExportArgs) -> CliResult {
    let db = open_db(dir, false, true)?;
    let out: Box<dyn Write> = match &args.file {
        Some(path) => Box::new(
            File::create(path)
                .map_err(|e| CliError::new(format!("cannot create {}: {e}", path.display())))?,
        ),
        None => Box::new(std::io::stdout().lock()),
    };
    let mut out = std::io::BufWriter::new(out);
    let mut count = 0u64;
    match args.format {
        FileFormat::Jsonl => {
            for item in db.iter()? {
                let (key, value) = item?;
                writeln!(out, "{}", json_line(&key, &value, args.encoding)?)?;
                count += 1;
            }
        }
        FileFormat::Csv => {
            let mut writer = csv::WriterBuilder::new().has_headers(false).from_writer(&mut out);
            for item in db.iter()? {
                let (key, value) = item?;
                let fields = [args.encoding.encode(&key)?, args.encoding.encode(&value)?];
                writer.write_record(&fields).map_err(|e| CliError::new(e.to_string()))?;
                count += 1;
            }
            writer.flush()?;
        }
    }
    out.flush()?;
    db.close()?;
    if args.file.is_some() {
        eprintln!("exported {count} records");
    }
    Ok(true)
}
