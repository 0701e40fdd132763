//! The engine's `tracing` events (the "Observability" section of
//! `docs/architecture.md`): a flush, a compaction, a reopen's recovery, write
//! slowdowns and stalls, and background errors each report themselves with their
//! fields, and the figures agree with `stats()`.
//!
//! One subscriber is installed for the whole process (background threads must see it),
//! so the tests take turns: each holds [`Capture`] while it runs and closes its
//! databases (which joins their threads) before it reads the events.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard, Once};
use std::time::{Duration, Instant};

use aeternusdb::fs::{FaultFs, FaultKind};
use aeternusdb::{CompactionStrategyOptions, Db, Error, LeveledOptions, Options};
use common::{key, noise, value};
use tracing::field::{Field, Visit};
use tracing::{Level, span};
use tracing_subscriber::Layer;
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;

const DIR: &str = "/db";

/// One event of the engine, with the fields of the spans it happened in.
#[derive(Debug, Clone)]
struct Recorded {
    target: String,
    level: Level,
    message: String,
    /// The innermost span's name ("" outside any span).
    span: String,
    /// The event's own fields, then those of its spans (inner first; an event's own
    /// field wins over a span's of the same name).
    fields: BTreeMap<String, String>,
}

impl Recorded {
    fn field(&self, name: &str) -> &str {
        self.fields.get(name).unwrap_or_else(|| panic!("no field {name} in {self:?}"))
    }

    fn u64(&self, name: &str) -> u64 {
        let text = self.field(name);
        text.parse().unwrap_or_else(|_| panic!("field {name} = {text} is not a number"))
    }
}

/// Field values as text; strings without quotes.
#[derive(Default)]
struct Fields(BTreeMap<String, String>);

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.insert(field.name().to_string(), format!("{value:?}"));
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_string(), value.to_string());
    }
}

static EVENTS: Mutex<Vec<Recorded>> = Mutex::new(Vec::new());

/// Records every event whose target is the engine's.
struct Recorder;

impl<S: tracing::Subscriber + for<'a> LookupSpan<'a>> Layer<S> for Recorder {
    fn on_new_span(&self, attrs: &span::Attributes<'_>, id: &span::Id, ctx: Context<'_, S>) {
        let mut fields = Fields::default();
        attrs.record(&mut fields);
        if let Some(span) = ctx.span(id) {
            span.extensions_mut().insert(fields);
        }
    }

    fn on_event(&self, event: &tracing::Event<'_>, ctx: Context<'_, S>) {
        let metadata = event.metadata();
        if !metadata.target().starts_with("aeternusdb::") {
            return;
        }
        let mut fields = Fields::default();
        event.record(&mut fields);
        let mut span_name = String::new();
        for span in ctx.event_scope(event).into_iter().flatten() {
            if span_name.is_empty() {
                span_name = span.name().to_string();
            }
            if let Some(Fields(outer)) = span.extensions().get::<Fields>() {
                for (name, value) in outer {
                    fields.0.entry(name.clone()).or_insert_with(|| value.clone());
                }
            }
        }
        let message = fields.0.remove("message").unwrap_or_default();
        EVENTS.lock().unwrap_or_else(|e| e.into_inner()).push(Recorded {
            target: metadata.target().to_string(),
            level: *metadata.level(),
            message,
            span: span_name,
            fields: fields.0,
        });
    }
}

/// A test's turn at the process-wide subscriber; the log starts empty.
struct Capture {
    _turn: MutexGuard<'static, ()>,
}

impl Capture {
    fn start() -> Capture {
        static INSTALL: Once = Once::new();
        static TURN: Mutex<()> = Mutex::new(());
        INSTALL.call_once(|| {
            tracing::subscriber::set_global_default(tracing_subscriber::registry().with(Recorder))
                .expect("install the recording subscriber");
        });
        let turn = TURN.lock().unwrap_or_else(|e| e.into_inner());
        EVENTS.lock().unwrap_or_else(|e| e.into_inner()).clear();
        Capture { _turn: turn }
    }

    /// The events of `target` with `message`, in order.
    fn events(&self, target: &str, message: &str) -> Vec<Recorded> {
        let events = EVENTS.lock().unwrap_or_else(|e| e.into_inner());
        events.iter().filter(|e| e.target == target && e.message == message).cloned().collect()
    }

    /// The one event of `target` with `message`.
    fn only(&self, target: &str, message: &str) -> Recorded {
        let found = self.events(target, message);
        assert_eq!(found.len(), 1, "expected one {target} {message:?} event, got {found:#?}");
        found.into_iter().next().unwrap()
    }
}

fn options(fs: &FaultFs) -> Options {
    Options { fs: Arc::new(fs.clone()), auto_compaction: false, ..Options::default() }
}

fn leveled(fs: &FaultFs) -> Options {
    Options { compaction: common::leveled_aggressive(), ..options(fs) }
}

#[test]
fn a_flush_reports_its_memtable_its_table_and_its_duration() {
    let log = Capture::start();
    let fs = FaultFs::new();
    let db = Db::open(DIR, options(&fs)).unwrap();
    for i in 0..100 {
        db.put(key(i), value(i, 1)).unwrap();
    }
    db.flush().unwrap();
    let stats = db.stats().unwrap();
    db.close().unwrap();

    let flushed = log.only("aeternusdb::flush", "flushed");
    assert_eq!((flushed.level, flushed.span.as_str()), (Level::INFO, "flush"));
    assert_eq!(flushed.field("dir"), DIR);
    assert_eq!(flushed.u64("entries"), 100);
    assert!(flushed.u64("memtable_bytes") > 100 * 10, "{flushed:?}");
    assert_eq!(flushed.u64("table_bytes"), stats.sstable_bytes);
    let table = Path::new(DIR).join(format!("{:06}.sst", flushed.u64("table")));
    assert!(fs.file_names().contains(&table), "{table:?} is not on disk");
    flushed.u64("duration_us");
    // close() reports itself at debug level.
    let closed = log.only("aeternusdb::close", "closed: directory released");
    assert_eq!((closed.level, closed.field("wal_synced")), (Level::DEBUG, "true"));
}

/// Every compaction event agrees with `stats()`; a lone level-0 table moves down
/// without a rewrite, two overlapping ones are merged.
#[test]
fn a_compaction_reports_reason_levels_tables_and_bytes_as_stats_count_them() {
    let log = Capture::start();
    for overlapping_tables in [1, 2] {
        let fs = FaultFs::new();
        let db = Db::open(DIR, leveled(&fs)).unwrap();
        for version in 0..overlapping_tables {
            for i in 0..100 {
                db.put(key(i), noise(u64::from(i) + version, 100)).unwrap();
            }
            db.flush().unwrap();
        }
        db.compact().unwrap();
        let stats = db.stats().unwrap();
        db.close().unwrap();

        let events = log.events("aeternusdb::compaction", "compacted");
        let (moves, merges): (Vec<_>, Vec<_>) =
            events.iter().partition(|e| e.field("trivial_move") == "true");
        assert_eq!(moves.len() as u64, stats.trivial_moves, "{events:#?}");
        assert_eq!(merges.len() as u64, stats.compactions, "{events:#?}");
        let sum = |events: &[&Recorded], field: &str| -> u64 {
            events.iter().map(|e| e.u64(field)).sum()
        };
        assert_eq!(sum(&merges, "input_bytes"), stats.compaction_bytes_read);
        assert_eq!(sum(&merges, "output_bytes"), stats.compaction_bytes_written);
        for event in &events {
            assert_eq!((event.level, event.span.as_str()), (Level::INFO, "compaction"));
            assert_eq!(event.field("reason"), "Manual");
            // The last level's manual step rewrites it into itself.
            assert!(event.u64("to_level") >= event.u64("from_level"), "{event:?}");
            assert!(event.u64("input_tables") >= 1 && event.u64("output_tables") >= 1);
            event.u64("duration_us");
        }
        for event in &moves {
            assert_eq!(event.u64("input_bytes"), event.u64("output_bytes"), "{event:?}");
        }
        let first = &events[0];
        assert_eq!((first.u64("from_level"), first.u64("input_tables")), (0, overlapping_tables));
        assert_eq!(
            first.field("trivial_move"),
            if overlapping_tables == 1 { "true" } else { "false" }
        );
        EVENTS.lock().unwrap().clear();
    }
}

/// A reopen after a torn WAL append: the hard error is one error event; recovery
/// reports the torn tail it cut and what it replayed.
#[test]
fn a_reopen_reports_what_recovery_replayed_and_the_torn_tail_it_cut() {
    let log = Capture::start();
    let fs = FaultFs::new();
    let db = Db::open(DIR, options(&fs)).unwrap();
    for i in 0..10 {
        db.put(key(i), value(i, 1)).unwrap();
    }
    fs.tear_next_write(5);
    assert!(db.put("torn", "write").is_err());
    assert!(matches!(db.put("after", "it"), Err(Error::Background(_))));
    let stopped = log.only("aeternusdb::background", "writes stopped until reopen");
    assert_eq!(stopped.level, Level::ERROR);
    fs.release_locks();
    drop(db);

    let created = log.only("aeternusdb::recovery", "opened");
    assert_eq!((created.u64("segments"), created.u64("records")), (0, 0));
    EVENTS.lock().unwrap().clear();
    let db = Db::open(DIR, options(&fs)).unwrap();
    assert_eq!(db.get(key(9)).unwrap().as_deref(), Some(&value(9, 1)[..]));
    db.close().unwrap();

    let torn = log.only(
        "aeternusdb::recovery",
        "cut a torn tail (an interrupted append) off the newest WAL segment",
    );
    assert_eq!((torn.level, torn.span.as_str(), torn.field("dir")), (Level::WARN, "open", DIR));
    let opened = log.only("aeternusdb::recovery", "opened");
    assert_eq!(opened.level, Level::INFO);
    assert_eq!(torn.u64("segment"), 1);
    assert_eq!(opened.u64("segments"), 1);
    assert_eq!(opened.u64("records"), 10);
    assert!(opened.u64("bytes") > 10 * 10, "{opened:?}");
    assert!(torn.u64("offset") > opened.u64("bytes"), "the tail is past every record");
    assert_eq!((opened.u64("tables"), opened.field("torn_tail_cut")), (0, "true"));
    assert_eq!(opened.u64("last_seqno"), 10);
    opened.u64("duration_us");
}

/// A crash between appends leaves the newest WAL segment ending in the space reserved
/// ahead, zeros: recovery cuts it with a debug event, not a warning of a torn append.
#[test]
fn a_crash_between_appends_cuts_the_reserved_space_without_a_warning() {
    let log = Capture::start();
    let fs = FaultFs::new();
    let db = Db::open(DIR, options(&fs)).unwrap();
    for i in 0..10 {
        db.put(key(i), value(i, 1)).unwrap();
    }
    // The cut kills the handles: dropping the database cannot finish the segment.
    fs.power_loss();
    drop(db);
    EVENTS.lock().unwrap().clear();
    let db = Db::open(DIR, options(&fs)).unwrap();
    assert_eq!(db.get(key(9)).unwrap().as_deref(), Some(&value(9, 1)[..]));
    db.close().unwrap();
    let cut = log
        .only("aeternusdb::recovery", "cut the unused reserved space off the newest WAL segment");
    assert_eq!((cut.level, cut.u64("segment")), (Level::DEBUG, 1));
    let torn = "cut a torn tail (an interrupted append) off the newest WAL segment";
    assert!(log.events("aeternusdb::recovery", torn).is_empty());
}

/// A flush that fails for a reason other than space stops writes with one error
/// event naming the failure.
#[test]
fn a_failed_flush_is_one_error_event() {
    let log = Capture::start();
    let fs = FaultFs::new();
    let db = Db::open(DIR, options(&fs)).unwrap();
    db.put("a", "1").unwrap();
    // The flush's rename of its finished table; nothing else renames meanwhile.
    fs.fail_after(FaultKind::Rename, 0);
    assert!(matches!(db.flush(), Err(Error::Background(_))));
    assert!(matches!(db.put("b", "2"), Err(Error::Background(_))));
    db.close().unwrap();

    let stopped = log.only("aeternusdb::background", "writes stopped until reopen");
    assert_eq!(stopped.level, Level::ERROR);
    assert!(stopped.field("error").starts_with("flush failed: "), "{stopped:?}");
    assert!(log.events("aeternusdb::flush", "flushed").is_empty());
}

/// A flush that finds the disk full warns once (not once per retry), and the retry
/// that fits reports that writes resume.
#[test]
fn a_full_disk_warns_once_and_reports_when_writes_resume() {
    let log = Capture::start();
    let fs = FaultFs::new();
    let db = Db::open(DIR, options(&fs)).unwrap();
    for i in 0..100 {
        db.put(key(i), noise(u64::from(i), 200)).unwrap();
    }
    // Room for the new WAL segment and the manifest edit, not for the 20 KB table,
    // once the current segment gave back the space it reserved ahead.
    fs.set_capacity(Some(fs.used_bytes() - fs.reserved_bytes() + (2 << 10)));
    assert!(matches!(db.flush(), Err(Error::NoSpace { .. })));
    // Let the flush thread retry against the full disk a few times.
    std::thread::sleep(Duration::from_millis(200));
    fs.set_capacity(None);
    let deadline = Instant::now() + Duration::from_secs(20);
    while db.put("after", "space").is_err() {
        assert!(Instant::now() < deadline, "writes did not resume");
        std::thread::sleep(Duration::from_millis(10));
    }
    db.close().unwrap();

    let full = log
        .only("aeternusdb::background", "disk full: writes fail with NoSpace until a flush fits");
    assert_eq!((full.level, full.field("dir")), (Level::WARN, DIR));
    assert!(full.field("error").contains("writing a flush"), "{full:?}");
    assert!(
        !log.events("aeternusdb::background", "flush retry: the disk is still full").is_empty()
    );
    let resumed = log.only("aeternusdb::background", "disk space found: writes resume");
    assert_eq!(resumed.level, Level::INFO);
    assert!(log.events("aeternusdb::background", "writes stopped until reopen").is_empty());
}

/// Writes held back by level 0: each run of slowed writes is one warning when it
/// begins, and each stall one warning when it ends, as many as `stats()` counts.
#[test]
fn slowdowns_and_stalls_are_reported_per_run_not_per_write() {
    let log = Capture::start();
    let fs = FaultFs::new();
    let compaction = CompactionStrategyOptions::Leveled(LeveledOptions {
        l0_compaction_trigger: 1,
        l0_slowdown_trigger: 1,
        l0_stop_trigger: 3,
        ..LeveledOptions::default()
    });
    let options = Options { auto_compaction: true, ..common::tiny_options_with(compaction) };
    let db = Db::open(DIR, Options { fs: Arc::new(fs.clone()), ..options }).unwrap();
    for i in 0..2000 {
        db.put(key(i % 500), noise(u64::from(i), 100)).unwrap();
    }
    let stats = db.stats().unwrap();
    db.close().unwrap();

    let began = log.events("aeternusdb::write", "write slowdown began: each write sleeps");
    let ended = log.events("aeternusdb::write", "write slowdown ended");
    assert!(stats.write_slowdowns > 0, "the test wrote too little to be slowed");
    assert!(!began.is_empty() && began.len() as u64 <= stats.write_slowdowns);
    assert!(began.iter().all(|e| e.level == Level::WARN));
    // Every run but perhaps the last has ended, and the runs add up to the count.
    assert!(ended.len() == began.len() || ended.len() + 1 == began.len(), "{began:?} {ended:?}");
    let in_ended_runs: u64 = ended.iter().map(|e| e.u64("slowdowns")).sum();
    assert!(in_ended_runs <= stats.write_slowdowns);
    if ended.len() == began.len() {
        assert_eq!(in_ended_runs, stats.write_slowdowns);
    }
    let stalls = log.events("aeternusdb::write", "write stall: writes waited");
    assert_eq!(stalls.len() as u64, stats.write_stalls);
    for stall in &stalls {
        assert_eq!(stall.level, Level::WARN);
        assert!(["compaction", "flush"].contains(&stall.field("waiting_for")), "{stall:?}");
        stall.u64("duration_us");
    }
}
