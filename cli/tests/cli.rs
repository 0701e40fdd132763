//! The `aeternus` binary, driven as a user would: outputs, exit statuses, files.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn aeternus(dir: Option<&Path>, args: &[&str]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_aeternus"));
    command.env_remove("AETERNUS_DIR");
    if let Some(dir) = dir {
        command.arg("--dir").arg(dir);
    }
    command.args(args).output().expect("run aeternus")
}

/// Runs a command that must succeed; its stdout.
fn ok(dir: &Path, args: &[&str]) -> String {
    let out = aeternus(Some(dir), args);
    assert!(out.status.success(), "{args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

/// Runs a command that must fail with exactly one `error:` line; that line.
fn fails(dir: Option<&Path>, args: &[&str]) -> String {
    let out = aeternus(dir, args);
    assert!(!out.status.success(), "{args:?} succeeded");
    let stderr = String::from_utf8(out.stderr).unwrap();
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{stderr}");
    assert!(lines[0].starts_with("error: "), "{stderr}");
    lines[0].to_string()
}

fn db_dir(tmp: &tempfile::TempDir) -> PathBuf {
    tmp.path().join("db")
}

#[test]
fn put_get_delete_and_scan_print_escaped_keys_and_values() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = &db_dir(&tmp);
    ok(dir, &["put", "a", "1"]);
    ok(dir, &["put", "b\\x", "tab\there\né"]);
    ok(dir, &["put", "c", "3"]);
    ok(dir, &["put", "d", "4"]);
    assert_eq!(ok(dir, &["get", "a"]), "1\n");
    assert_eq!(ok(dir, &["get", "b\\x"]), "tab\\there\\n\\xc3\\xa9\n");
    assert_eq!(ok(dir, &["get", "--hex", "a"]), "31\n");

    assert_eq!(ok(dir, &["scan"]), "a\t1\nb\\\\x\ttab\\there\\n\\xc3\\xa9\nc\t3\nd\t4\n");
    assert_eq!(ok(dir, &["scan", "--hex", "--limit", "1"]), "61\t31\n");
    assert_eq!(ok(dir, &["scan", "--reverse", "--limit", "2"]), "d\t4\nc\t3\n");
    assert_eq!(ok(dir, &["scan", "--prefix", "c"]), "c\t3\n");
    assert_eq!(ok(dir, &["scan", "--from", "c", "--to", "d"]), "c\t3\n");
    assert_eq!(
        ok(dir, &["scan", "--json", "--from", "b"]).lines().next().unwrap(),
        r#"{"key":"b\\x","value":"tab\there\né"}"#
    );
    assert_eq!(
        ok(dir, &["scan", "--json", "--encoding", "hex", "--limit", "1"]),
        "{\"key\":\"61\",\"value\":\"31\"}\n"
    );

    ok(dir, &["delete", "a"]);
    assert!(fails(Some(dir), &["get", "a"]).contains("not found"));
    ok(dir, &["delete-range", "b", "d"]);
    assert_eq!(ok(dir, &["scan"]), "d\t4\n");

    // The directory also comes from AETERNUS_DIR.
    let out = Command::new(env!("CARGO_BIN_EXE_aeternus"))
        .env("AETERNUS_DIR", dir)
        .args(["get", "d"])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8(out.stdout).unwrap(), "4\n");
}

/// Loads `input`, exports with the same options, and expects the same bytes back.
fn round_trip(input: &str, options: &[&str]) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = &db_dir(&tmp);
    let file = tmp.path().join("in");
    std::fs::write(&file, input).unwrap();
    let mut load = vec!["load", file.to_str().unwrap()];
    load.extend(options);
    ok(dir, &load);
    let out = tmp.path().join("out");
    let mut export = vec!["export", out.to_str().unwrap()];
    export.extend(options);
    ok(dir, &export);
    assert_eq!(std::fs::read_to_string(&out).unwrap(), input);
    // Without a file, export writes to stdout.
    let mut export = vec!["export"];
    export.extend(options);
    assert_eq!(ok(dir, &export), input);
}

#[test]
fn load_export_round_trips() {
    let utf8: String = (0..2500)
        .map(|i| format!("{{\"key\":\"k{i:05} \\\"é\\\"\",\"value\":\"v,{i}\\n\"}}\n"))
        .collect();
    round_trip(&utf8, &[]);
    round_trip(&utf8, &["--encoding", "utf8", "--format", "jsonl"]);

    // Binary keys and values: 0x00.. and 0xff.. are not UTF-8.
    let base64 = "{\"key\":\"AP8=\",\"value\":\"/wA=\"}\n{\"key\":\"AQ==\",\"value\":\"\"}\n";
    round_trip(base64, &["--encoding", "base64"]);
    round_trip("00ff,ff00\n01,\n", &["--encoding", "hex", "--format", "csv"]);

    let csv = "a,1\n\"b,c\",\"x \"\"y\"\"\"\nd,\"multi\nline\"\n";
    round_trip(csv, &["--format", "csv"]);
}

#[test]
fn export_refuses_binary_as_utf8() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = &db_dir(&tmp);
    let file = tmp.path().join("in.jsonl");
    std::fs::write(&file, "{\"key\":\"/w==\",\"value\":\"\"}\n").unwrap();
    ok(dir, &["load", file.to_str().unwrap(), "--encoding", "base64"]);
    assert!(fails(Some(dir), &["export"]).contains("--encoding base64"));
}

#[test]
fn a_malformed_line_stops_the_load_and_keeps_earlier_records() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = &db_dir(&tmp);
    let file = tmp.path().join("in.jsonl");
    let mut input: String =
        (0..1500).map(|i| format!("{{\"key\":\"k{i:05}\",\"value\":\"v\"}}\n")).collect();
    input += "{\"key\": 7, \"value\": \"v\"}\n{\"key\":\"z\",\"value\":\"v\"}\n";
    std::fs::write(&file, input).unwrap();
    let error = fails(Some(dir), &["load", file.to_str().unwrap()]);
    assert!(error.contains("line 1501"), "{error}");
    assert!(error.contains("loaded 1500 records"), "{error}");
    assert_eq!(ok(dir, &["scan"]).lines().count(), 1500);

    let csv = tmp.path().join("in.csv");
    std::fs::write(&csv, "x,1\ny,2,3\n").unwrap();
    let error = fails(Some(dir), &["load", csv.to_str().unwrap(), "--format", "csv"]);
    assert!(error.contains("line 2") && error.contains("loaded 1 records"), "{error}");
    assert_eq!(ok(dir, &["get", "x"]), "1\n");

    let bad_base64 = tmp.path().join("bad.jsonl");
    std::fs::write(&bad_base64, "{\"key\":\"!!\",\"value\":\"\"}\n").unwrap();
    let error = fails(Some(dir), &["load", bad_base64.to_str().unwrap(), "--encoding", "base64"]);
    assert!(error.contains("line 1") && error.contains("base64"), "{error}");
}

#[test]
fn stats_show_levels_and_label_the_counters_per_process() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = &db_dir(&tmp);
    ok(dir, &["put", "a", "1"]);
    ok(dir, &["flush"]);
    let stats = ok(dir, &["stats"]);
    assert!(stats.contains("level") && stats.contains("L0"), "{stats}");
    assert!(stats.contains("last seqno: 1"), "{stats}");
    assert!(stats.contains("write amplification") && stats.contains("write stalls"), "{stats}");
    // The counters are this process's own: labelled so, not passed off as totals.
    let (_, activity) = stats.split_once("since this process opened the database").unwrap();
    assert!(activity.contains("flushes: 0") && activity.contains("write stalls"), "{stats}");
    ok(dir, &["compact"]);
    assert_eq!(ok(dir, &["get", "a"]), "1\n");
}

/// `-v` prints the engine's events on stderr (info: recovery, flush, compaction),
/// `-vv` its debug events too; without it stderr stays empty.
#[test]
fn verbose_prints_flushes_and_compactions_on_stderr() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = &db_dir(&tmp);
    let stderr = |args: &[&str]| {
        let out = aeternus(Some(dir), args);
        assert!(out.status.success(), "{args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stderr).unwrap()
    };
    ok(dir, &["put", "a", "1"]);
    let log = stderr(&["-v", "flush"]);
    let flushed = log.lines().find(|l| l.contains("aeternusdb::flush") && l.contains("flushed"));
    let flushed = flushed.unwrap_or_else(|| panic!("no flush line in {log}"));
    assert!(flushed.contains("INFO") && flushed.contains("table_bytes="), "{flushed}");
    assert!(log.contains("aeternusdb::recovery") && !log.contains("DEBUG"), "{log}");

    ok(dir, &["put", "b", "2"]);
    let log = stderr(&["compact", "-vv"]);
    assert!(log.lines().any(|l| l.contains("aeternusdb::compaction") && l.contains("compacted")));
    assert!(log.contains("DEBUG") && log.contains("aeternusdb::close"), "{log}");

    assert_eq!(stderr(&["flush"]), "");
}

/// A database with a few SSTables and a WAL segment holding `late`.
fn populated(dir: &Path, tmp: &Path) {
    let file = tmp.join("in.jsonl");
    let input: String =
        (0..3000).map(|i| format!("{{\"key\":\"key{i:05}\",\"value\":\"value{i}\"}}\n")).collect();
    std::fs::write(&file, input).unwrap();
    ok(dir, &["load", file.to_str().unwrap()]);
    ok(dir, &["flush"]);
    ok(dir, &["put", "late", "v"]);
    ok(dir, &["put", "later", "v"]);
}

fn files_with(dir: &Path, ext: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == ext))
        .collect();
    files.sort();
    files
}

#[test]
fn verify_passes_a_good_database_and_names_a_damaged_table() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = &db_dir(&tmp);
    populated(dir, tmp.path());
    let report = ok(dir, &["verify"]);
    assert!(report.contains("ok"), "{report}");

    let table = files_with(dir, "sst").pop().expect("an sst");
    let mut bytes = std::fs::read(&table).unwrap();
    let at = bytes.len() / 3;
    bytes[at] ^= 0x40;
    std::fs::write(&table, bytes).unwrap();
    let out = aeternus(Some(dir), &["verify"]);
    assert_eq!(out.status.code(), Some(1));
    let report = String::from_utf8(out.stdout).unwrap();
    let name = table.file_name().unwrap().to_str().unwrap();
    assert!(report.lines().any(|l| l.starts_with("damaged:") && l.contains(name)), "{report}");

    // A damaged WAL record is named too, once.
    let segment = files_with(dir, "wal").remove(0);
    let mut bytes = std::fs::read(&segment).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x01;
    std::fs::write(&segment, bytes).unwrap();
    let out = aeternus(Some(dir), &["verify"]);
    assert_eq!(out.status.code(), Some(1));
    let report = String::from_utf8(out.stdout).unwrap();
    let name = segment.file_name().unwrap().to_str().unwrap();
    assert_eq!(report.lines().filter(|l| l.contains(name)).count(), 1, "{report}");
}

#[test]
fn dumps_print_tables_records_and_the_manifest() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = &db_dir(&tmp);
    populated(dir, tmp.path());

    let table = files_with(dir, "sst").pop().expect("an sst");
    let sst = ok(dir, &["dump", "sst", table.to_str().unwrap()]);
    assert!(sst.contains("entries: "), "{sst}");
    assert!(sst.contains(" put key00042 = value42\n"), "{sst}");

    let wal = files_with(dir, "wal")
        .into_iter()
        .map(|w| ok(dir, &["dump", "wal", w.to_str().unwrap()]))
        .collect::<String>();
    assert!(wal.contains("@3001 put late = v"), "{wal}");

    let manifest = ok(dir, &["dump", "manifest", dir.to_str().unwrap()]);
    assert!(manifest.contains("last seqno: "), "{manifest}");
    assert!(manifest.contains("L0: "), "{manifest}");
    assert!(manifest.contains(table.file_name().unwrap().to_str().unwrap()));
}

#[test]
fn bad_arguments_fail_with_one_error_line() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = &db_dir(&tmp);
    fails(Some(dir), &["frobnicate"]);
    fails(Some(dir), &["scan", "--limit", "many"]);
    fails(Some(dir), &["put", "only-a-key"]);
    fails(Some(dir), &["scan", "--prefix", "a", "--from", "b"]);
    assert!(fails(None, &["get", "a"]).contains("AETERNUS_DIR"));
    assert!(fails(Some(dir), &["get", "a"]).contains("no database"));
    assert!(fails(Some(dir), &["load", "/nonexistent/file"]).contains("/nonexistent/file"));
    fails(Some(dir), &["dump", "sst", "/nonexistent/000001.sst"]);
    fails(Some(dir), &["dump", "wal", "notawal.txt"]);
    ok(dir, &["put", "b", "1"]);
    assert!(fails(Some(dir), &["delete-range", "b", "a"]).contains("invalid argument"));
    // --help works on every command.
    for command in ["put", "get", "scan", "load", "export", "verify", "stats"] {
        assert!(ok(dir, &[command, "--help"]).contains("Usage"));
    }
    assert!(ok(dir, &["dump", "wal", "--help"]).contains("Usage"));
}

#[test]
fn bench_runs_selected_workloads_and_cleans_up() {
    let tmp = tempfile::tempdir().unwrap();
    let args = [
        "bench",
        "--quick",
        "--keys",
        "2000",
        "--workload",
        "fillrandom",
        "--workload",
        "readrandom",
    ];
    let out = ok(tmp.path(), &args);
    assert!(out.contains("2000 keys"), "{out}");
    let rows: Vec<&str> = out.lines().filter(|l| l.starts_with("| ")).collect();
    assert_eq!(rows.len(), 4, "{out}"); // header, rule, two workloads
    assert!(rows[2].starts_with("| fillrandom ") && rows[2].contains("write amp"), "{out}");
    assert!(rows[3].starts_with("| readrandom ") && rows[3].contains(" yes "), "{out}");
    assert!(!out.contains("FAILED"), "{out}");
    // The databases lived in a directory of their own inside --dir, now removed.
    assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 0);
}

#[test]
fn bench_refuses_bad_workloads_and_database_directories() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = &db_dir(&tmp);
    // One line that names the bad value and every valid one.
    let error = fails(None, &["bench", "--workload", "nope"]);
    assert!(error.contains("'nope'") && error.contains("fillseq, ") && error.contains("ycsb-f"));
    ok(dir, &["put", "a", "1"]);
    let error = fails(Some(dir), &["bench", "--keys", "1000", "--workload", "fillseq"]);
    assert!(error.contains("holds a database"), "{error}");
    assert_eq!(ok(dir, &["get", "a"]), "1\n");
}

/// A few kill cycles of `crashtest` (the long runs are in docs/reliability.md): it
/// passes, reports what it checked, and removes its databases.
#[test]
fn crashtest_kills_a_writer_and_verifies_every_recovery() {
    let tmp = tempfile::tempdir().unwrap();
    let out = ok(tmp.path(), &["crashtest", "--cycles", "12", "--seed", "7"]);
    assert!(out.starts_with("aeternus crashtest: seed 7, 12 cycles, in "), "{out}");
    assert!(out.contains("verdict: PASS, 0 violations in 12 cycles"), "{out}");
    let acknowledged = out
        .lines()
        .find_map(|l| l.strip_prefix("batches:")?.split_whitespace().next()?.parse::<u64>().ok())
        .unwrap_or_else(|| panic!("no batch count: {out}"));
    assert!(acknowledged > 0, "the children acknowledged nothing: {out}");
    assert!(out.contains("database 0 ("), "{out}");
    assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 0, "databases left behind");
}

#[test]
fn crashtest_refuses_a_database_directory_and_bad_durations() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = &db_dir(&tmp);
    ok(dir, &["put", "a", "1"]);
    let error = fails(Some(dir), &["crashtest", "--cycles", "1"]);
    assert!(error.contains("holds a database"), "{error}");
    let error = fails(Some(tmp.path()), &["crashtest", "--duration", "ten minutes"]);
    assert!(error.contains("--duration"), "{error}");
    assert_eq!(ok(dir, &["get", "a"]), "1\n");
}

/// Ctrl-C (SIGINT) ends a crashtest after its current cycle, with the summary and a
/// verdict; the child, in a process group of its own, is still killed by the parent.
#[test]
fn crashtest_stops_on_sigint_with_its_summary() {
    let tmp = tempfile::tempdir().unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_aeternus"))
        .env_remove("AETERNUS_DIR")
        .arg("--dir")
        .arg(tmp.path())
        .args(["crashtest", "--duration", "10m", "--seed", "3"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_secs(3));
    let killed = Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
    assert!(killed.success());
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(out.status.success(), "{stdout}");
    assert!(stdout.contains("interrupted: stopped after cycle "), "{stdout}");
    assert!(stdout.contains("verdict: PASS"), "{stdout}");
    assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 0, "databases left behind");
}

/// The crashtest's self-test: a child that acknowledges writes it never made (as an
/// engine losing writes would) fails the run with the lost batch named, a reproducer,
/// exit status 1 and the databases kept for inspection.
#[test]
fn crashtest_catches_a_child_that_loses_acknowledged_writes() {
    let tmp = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_aeternus"))
        .env_remove("AETERNUS_DIR")
        .env("AETERNUS_CRASHTEST_SABOTAGE", "1")
        .arg("--dir")
        .arg(tmp.path())
        .args(["crashtest", "--cycles", "20", "--seed", "5"])
        .output()
        .unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("verdict: FAIL at cycle "), "{stdout}");
    assert!(stdout.contains("writer 0: batches "), "{stdout}");
    assert!(stdout.contains("reproduce: aeternus crashtest --dir "), "{stdout}");
    assert!(stdout.contains("--seed 5 --cycles "), "{stdout}");
    assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 1, "the databases are kept");
}
