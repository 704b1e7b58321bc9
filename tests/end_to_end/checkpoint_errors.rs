//! A checkpoint that cannot be trusted, an input file that changed after it was
//! ingested, and a resume with another cluster shape or other settings are errors that
//! say what to do, never a silent fresh start.

use crate::common;
use crate::live;
use crate::oracle;

use std::path::Path;

use common::{assert_matches_oracle, engine_tables, read_batches};
use live::{output, source_dataset, tidemark_run};
use tidemark_dataflows::model::settings::Params;
use tidemark_inputs::generator::OutputFormat;

fn finished_run(dir: &Path, format: OutputFormat) -> (std::path::PathBuf, std::path::PathBuf) {
    let data = source_dataset(dir, 11, 6, format);
    let out = dir.join("out");
    let result = output(&mut tidemark_run(Some(&data), &out, &[]));
    assert!(
        result.status.success(),
        "{}",
        String::from_utf8_lossy(&result.stderr)
    );
    (data, out)
}

fn fails_with(data: &Path, out: &Path, args: &[&str], needles: &[&str]) -> String {
    let result = output(&mut tidemark_run(Some(data), out, args));
    let stderr = String::from_utf8_lossy(&result.stderr).to_string();
    assert!(
        !result.status.success(),
        "expected a failure, got success; stderr: {stderr}"
    );
    for needle in needles {
        assert!(
            stderr.contains(needle),
            "stderr should mention {needle:?}: {stderr}"
        );
    }
    stderr
}

#[test]
fn a_finished_run_resumes_without_writing_anything_again() {
    let dir = tempfile::tempdir().unwrap();
    let (data, out) = finished_run(dir.path(), OutputFormat::Parquet);
    let before = live::change_files(&out);
    let tables = engine_tables(&out, u64::MAX);
    let result = output(&mut tidemark_run(Some(&data), &out, &[]));
    assert!(
        result.status.success(),
        "{}",
        String::from_utf8_lossy(&result.stderr)
    );
    assert_eq!(live::change_files(&out), before);
    assert_eq!(engine_tables(&out, u64::MAX), tables);
}

#[test]
fn a_truncated_log_entry_is_an_error_that_says_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let (data, out) = finished_run(dir.path(), OutputFormat::Parquet);
    // The last log file (a worker's block of a time's units).
    let entry = std::fs::read_dir(out.join("_checkpoint/wal"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "wal"))
        .max()
        .unwrap();
    let name = entry.file_name().unwrap().to_string_lossy().to_string();
    let bytes = std::fs::read(&entry).unwrap();
    std::fs::write(&entry, &bytes[..bytes.len() / 2]).unwrap();
    fails_with(&data, &out, &[], &[&name, "truncated", "start over"]);
}

#[test]
fn a_corrupt_completed_time_is_an_error_that_says_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let (data, out) = finished_run(dir.path(), OutputFormat::Parquet);
    std::fs::write(out.join("_checkpoint/completed.json"), b"{\"last_compl").unwrap();
    fails_with(
        &data,
        &out,
        &[],
        &["completed.json", "corrupt", "start over"],
    );
    // --overwrite still starts from scratch.
    let result = output(&mut tidemark_run(Some(&data), &out, &["--overwrite"]));
    assert!(
        result.status.success(),
        "{}",
        String::from_utf8_lossy(&result.stderr)
    );
}

#[test]
fn another_worker_count_or_other_settings_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let (data, out) = finished_run(dir.path(), OutputFormat::Parquet);
    // The finished run used every core (no -w); 7 differs on any machine but one.
    let cores = tidemark::runtime::cluster::default_workers();
    let other = if cores == 7 { 8 } else { 7 };
    fails_with(
        &data,
        &out,
        &["-w", &other.to_string()],
        &[
            &format!("-w {cores} -n 1"),
            &format!("-w {other} -n 1"),
            "--overwrite",
        ],
    );
    // The settings that differ are named by key, in their units.
    fails_with(
        &data,
        &out,
        &["--session-gap-minutes", "20"],
        &[
            "other settings",
            "session_gap_minutes: 30 (recorded) vs 20 (this run)",
            "--overwrite",
        ],
    );
}

/// Regression (issue 13): a rerun with another mapping, another dataset or without the
/// Delta tables resumed silently with the old output's results.
#[test]
fn another_mapping_dataset_or_delta_choice_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let (data, out) = finished_run(dir.path(), OutputFormat::Parquet);
    fails_with(&data, &out, &["--no-delta"], &["--no-delta", "--overwrite"]);

    let moved = dir.path().join("other-data");
    std::fs::create_dir_all(moved.join("events")).unwrap();
    for file in std::fs::read_dir(data.join("events")).unwrap() {
        let path = file.unwrap().path();
        std::fs::copy(&path, moved.join("events").join(path.file_name().unwrap())).unwrap();
    }
    fails_with(&moved, &out, &[], &["dataset", "other-data", "--overwrite"]);

    std::fs::write(
        data.join("tidemark.toml"),
        "[events.columns]\nevent_type = { value = \"visit\" }\n",
    )
    .unwrap();
    fails_with(&data, &out, &[], &["mapping", "--overwrite"]);
    // The mapping's meaning counts, not its spelling.
    std::fs::write(data.join("tidemark.toml"), "# nothing mapped\n").unwrap();
    let result = output(&mut tidemark_run(Some(&data), &out, &[]));
    assert!(
        result.status.success(),
        "{}",
        String::from_utf8_lossy(&result.stderr)
    );
}

/// Regression (issue 13): a run that failed before logging any batch fixed its
/// settings for every later run on the same output.
#[test]
fn a_run_that_failed_before_logging_anything_binds_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let data = source_dataset(dir.path(), 12, 3, OutputFormat::Parquet);
    let out = dir.path().join("out");
    let mapping = dir.path().join("bad.toml");
    std::fs::write(&mapping, "[events.columns]\nuser_id = \"no_such_column\"\n").unwrap();
    fails_with(
        &data,
        &out,
        &[
            "--mapping",
            mapping.to_str().unwrap(),
            "--window-minutes",
            "10",
        ],
        &["no_such_column"],
    );
    let result = output(&mut tidemark_run(Some(&data), &out, &[]));
    assert!(
        result.status.success(),
        "{}",
        String::from_utf8_lossy(&result.stderr)
    );
    let expected = oracle::compute(&read_batches(&data, None), &Params::default());
    assert_matches_oracle(
        &expected,
        &engine_tables(&out, u64::MAX),
        "after a failed first run",
    );
}

/// Regression (issue 13): Ctrl-C on a batch run printed a full summary and exited 0.
#[test]
fn an_interrupted_batch_run_says_so_and_exits_130() {
    let dir = tempfile::tempdir().unwrap();
    let data = source_dataset(dir.path(), 13, 60, OutputFormat::Ndjson);
    let out = dir.path().join("out");
    let child = tidemark_run(Some(&data), &out, &["--max-batch-files", "1"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let wal = out.join("_checkpoint/wal");
    let started = std::time::Instant::now();
    while std::fs::read_dir(&wal).map_or(0, |d| d.count()) < 2 {
        assert!(started.elapsed().as_secs() < 120, "the run logs a batch");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    // SAFETY: kill(2) with a child's pid and SIGINT has no memory effects here.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGINT) };
    let result = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&result.stderr);
    assert_eq!(result.status.code(), Some(130), "{stderr}");
    assert!(
        stderr.contains("interrupted after batch") && stderr.contains("run the same command again"),
        "{stderr}"
    );
    assert!(!String::from_utf8_lossy(&result.stdout).contains("Ran "));
    // Running the same command again resumes to the oracle's tables.
    let result = output(&mut tidemark_run(
        Some(&data),
        &out,
        &["--max-batch-files", "1"],
    ));
    assert!(
        result.status.success(),
        "{}",
        String::from_utf8_lossy(&result.stderr)
    );
    let expected = oracle::compute(&read_batches(&data, None), &Params::default());
    assert_matches_oracle(&expected, &engine_tables(&out, u64::MAX), "after resuming");
}

/// Appends copies of a file's first lines with new event ids (same times, so the
/// largest event time of the file does not change).
fn grow(file: &Path) {
    let text = std::fs::read_to_string(file).unwrap();
    let mut grown = text.clone();
    for line in text.lines().take(25) {
        let Ok(mut value) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        let Some(id) = value
            .get("event_id")
            .and_then(|v| v.as_str())
            .map(|s| format!("changed-{s}"))
        else {
            continue;
        };
        value["event_id"] = serde_json::Value::String(id);
        grown.push_str(&value.to_string());
        grown.push('\n');
    }
    std::fs::write(file, grown).unwrap();
}

#[test]
fn a_changed_file_is_an_error_naming_it_unless_reingested() {
    let dir = tempfile::tempdir().unwrap();
    let (data, out) = finished_run(dir.path(), OutputFormat::Ndjson);
    let changed = data.join("events/part-00002.ndjson");
    assert!(
        changed.exists(),
        "the generator names event files part-NNNNN"
    );
    grow(&changed);
    fails_with(
        &data,
        &out,
        &[],
        &["events/part-00002.ndjson", "changed", "--reingest-changed"],
    );

    let result = output(&mut tidemark_run(
        Some(&data),
        &out,
        &["--reingest-changed"],
    ));
    assert!(
        result.status.success(),
        "{}",
        String::from_utf8_lossy(&result.stderr)
    );
    let params = Params::default();
    let expected = oracle::compute(&read_batches(&data, None), &params);
    assert_matches_oracle(
        &expected,
        &engine_tables(&out, u64::MAX),
        "after re-ingesting a changed file",
    );

    // And a resumed run replays the re-ingest from the log to the same tables.
    let before = engine_tables(&out, u64::MAX);
    let result = output(&mut tidemark_run(Some(&data), &out, &[]));
    assert!(
        result.status.success(),
        "{}",
        String::from_utf8_lossy(&result.stderr)
    );
    assert_eq!(engine_tables(&out, u64::MAX), before);
}

/// Regression (issue 14): the first file of a table, when unreadable or alone lacking
/// a mapped column, stopped the run; it is quarantined whole like any later file.
#[test]
fn a_bad_first_file_is_quarantined_not_fatal() {
    let dir = tempfile::tempdir().unwrap();
    let data = source_dataset(dir.path(), 14, 3, OutputFormat::Parquet);
    // Sorts before the generator's part-NNNNN files.
    std::fs::write(data.join("events/a-damaged.parquet"), b"PAR1 not really").unwrap();
    std::fs::write(
        data.join("events/b-no-user.ndjson"),
        "{\"event_id\":\"x\",\"ts\":1752279600000,\"event_type\":\"play\"}\n",
    )
    .unwrap();
    let out = dir.path().join("out");
    let result = output(&mut tidemark_run(Some(&data), &out, &[]));
    assert!(
        result.status.success(),
        "{}",
        String::from_utf8_lossy(&result.stderr)
    );
    let tables = engine_tables(&out, u64::MAX);
    let files: Vec<String> = tables["quarantine"]
        .iter()
        .map(|row| format!("{:?}", row[0]))
        .collect();
    assert!(
        files.iter().any(|f| f.contains("a-damaged.parquet")),
        "{files:?}"
    );
    let expected = oracle::compute(&read_batches(&data, None), &Params::default());
    assert_matches_oracle(&expected, &tables, "with a damaged first file");

    // A mapping no file matches is still an error before any row is read.
    let mapping = dir.path().join("wrong.toml");
    std::fs::write(&mapping, "[events.columns]\nuser_id = \"userId\"\n").unwrap();
    fails_with(
        &data,
        &dir.path().join("out2"),
        &["--mapping", mapping.to_str().unwrap()],
        &["userId"],
    );
}

/// Issue 12: ids are integers derived from a hash of the text; two texts with the same
/// id (forced here by keeping 6 bits of the hash) are reported, never merged.
#[test]
fn an_id_collision_is_reported_not_merged() {
    let dir = tempfile::tempdir().unwrap();
    let data = source_dataset(dir.path(), 15, 3, OutputFormat::Parquet);
    let out = dir.path().join("out");
    let result =
        output(tidemark_run(Some(&data), &out, &["--no-delta"]).env("TIDEMARK_ID_BITS", "6"));
    let stderr = String::from_utf8_lossy(&result.stderr);
    assert!(
        !result.status.success(),
        "80 users cannot fit 64 ids: {stderr}"
    );
    assert!(
        stderr.contains("same 64-bit id") && stderr.contains("refuses to merge"),
        "{stderr}"
    );
    // Nothing computed with a merged id was written.
    let rows: usize = engine_tables(&out, u64::MAX).values().map(Vec::len).sum();
    assert_eq!(rows, 0, "no change rows were written");
}

/// Regression (issue 14, item 3): a removed, truncated or stray change file, or a
/// removed table directory, resumed silently with wrong sums. A resume now checks the
/// change files of completed times against the manifest and writes the damaged times
/// again from the write-ahead log, so every table equals the oracle again.
#[test]
fn damaged_change_streams_are_repaired_from_the_log_on_resume() {
    let dir = tempfile::tempdir().unwrap();
    let data = source_dataset(dir.path(), 11, 6, OutputFormat::Parquet);
    let out = dir.path().join("out");
    // Two workers and a logical time per file, on any machine.
    let args = ["-w", "2", "--max-batch-files", "1"];
    let result = output(&mut tidemark_run(Some(&data), &out, &args));
    assert!(
        result.status.success(),
        "{}",
        String::from_utf8_lossy(&result.stderr)
    );
    let expected = oracle::compute(&read_batches(&data, None), &Params::default());
    assert_matches_oracle(&expected, &engine_tables(&out, u64::MAX), "before damage");

    let files = live::change_files(&out);
    let of = |table: &str| -> Vec<std::path::PathBuf> {
        let mut paths: Vec<_> = files
            .iter()
            .filter(|(t, _, _)| t == table)
            .map(|(t, time, worker)| {
                out.join(format!("changes/{t}/part-{time:010}-w{worker:04}.parquet"))
            })
            .collect();
        paths.sort();
        paths
    };
    let sessions = of("sessions");
    assert!(sessions.len() >= 3, "{sessions:?}");
    std::fs::remove_file(&sessions[1]).unwrap();
    let bytes = std::fs::read(&sessions[2]).unwrap();
    std::fs::write(&sessions[2], &bytes[..bytes.len() / 2]).unwrap();
    // Copies of a file under a later time and under the other worker's name (one
    // worker writes each table): their diffs would count twice.
    let windows = of("window_activity");
    let (_, first_time, writer) = files
        .iter()
        .filter(|(t, _, _)| t == "window_activity")
        .min()
        .cloned()
        .unwrap();
    let stray = windows[0].with_file_name(format!("part-9999999990-w{writer:04}.parquet"));
    std::fs::copy(&windows[0], &stray).unwrap();
    let copy =
        windows[0].with_file_name(format!("part-{first_time:010}-w{:04}.parquet", 1 - writer));
    std::fs::copy(&windows[0], &copy).unwrap();
    std::fs::remove_dir_all(out.join("changes/daily_active")).unwrap();

    let result = output(&mut tidemark_run(Some(&data), &out, &args));
    let stderr = String::from_utf8_lossy(&result.stderr);
    assert!(result.status.success(), "{stderr}");
    for table in ["sessions", "daily_active"] {
        assert!(
            stderr.contains(&format!("changes/{table}")) && stderr.contains("again"),
            "the repair of {table} is reported: {stderr}"
        );
    }
    let copy_name = copy.file_name().unwrap().to_str().unwrap();
    assert!(
        stderr.contains("removing") && stderr.contains(copy_name),
        "the copy under the other worker's name is reported: {stderr}"
    );
    assert!(
        !stray.exists() && !copy.exists(),
        "the stray copies are removed"
    );
    assert_matches_oracle(&expected, &engine_tables(&out, u64::MAX), "after repair");

    // Repaired for good: the next resume finds nothing to do.
    let result = output(&mut tidemark_run(Some(&data), &out, &args));
    let stderr = String::from_utf8_lossy(&result.stderr);
    assert!(
        result.status.success() && !stderr.contains("again"),
        "{stderr}"
    );
}
