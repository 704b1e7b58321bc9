//! A checkpoint that cannot be trusted, an input file that changed after it was
//! ingested, and a resume with another cluster shape or other settings are errors that
//! say what to do, never a silent fresh start.

mod common;
mod live;
mod oracle;

use std::path::Path;

use common::{assert_matches_oracle, engine_tables, read_batches};
use live::{output, source_dataset, tidemark_run};
use tidemark_dataflows::settings::Params;
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
    let entry = out.join("_checkpoint/wal/0000000003.wal");
    let bytes = std::fs::read(&entry).unwrap();
    std::fs::write(&entry, &bytes[..bytes.len() / 2]).unwrap();
    fails_with(
        &data,
        &out,
        &[],
        &["0000000003.wal", "truncated", "start over"],
    );
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
    fails_with(
        &data,
        &out,
        &["-w", "2"],
        &["-w 1 -n 1", "-w 2 -n 1", "--overwrite"],
    );
    fails_with(
        &data,
        &out,
        &["--session-gap-minutes", "20"],
        &["other settings", "--overwrite"],
    );
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
