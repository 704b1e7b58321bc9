//! The fault test (issue 14): a finished output is damaged in every way we know of,
//! one way per copy, and run again with the same command. Each damage must end in one
//! of two ways: a clear error that names the damaged file and says what to do, or an
//! exact repair, after which the change streams and the Delta tables equal those of
//! the undamaged output (and so the oracle). A resume that succeeds with other tables
//! fails the test.

use crate::common;
use crate::live;
use crate::oracle;

use std::path::{Path, PathBuf};

use common::{assert_matches_oracle, engine_tables, read_batches};
use live::{output, source_dataset, tidemark_run};
use tidemark::runtime::run::WRITTEN_TABLES;
use tidemark::sink::delta::{delta_dir, read_delta_table};
use tidemark_dataflows::model::settings::Params;
use tidemark_inputs::generator::OutputFormat;

/// What a damaged output must come to on the next run.
enum Expect {
    /// An error whose text holds every needle.
    Error(&'static [&'static str]),
    /// Success, with every table equal to the undamaged output's.
    Repair,
}

/// One way of damaging an output.
struct Damage {
    name: &'static str,
    apply: fn(&Path),
    expect: Expect,
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// The files of `dir` whose name ends with `suffix`, sorted.
fn files(dir: &Path, suffix: &str) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(suffix))
        .collect();
    found.sort();
    found
}

fn flip_middle_byte(path: &Path) {
    let mut bytes = std::fs::read(path).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x41;
    std::fs::write(path, bytes).unwrap();
}

fn wal(out: &Path) -> PathBuf {
    out.join("_checkpoint/wal")
}

/// The data files a Delta table's last commit added (files of the current version).
fn delta_data_files(table: &Path) -> Vec<PathBuf> {
    let log = table.join("_delta_log");
    let last = files(&log, ".json").pop().expect("a Delta log");
    let text = std::fs::read_to_string(last).unwrap();
    let added: Vec<PathBuf> = text
        .lines()
        .filter_map(|line| {
            let action: serde_json::Value = serde_json::from_str(line).ok()?;
            Some(table.join(action.get("add")?.get("path")?.as_str()?))
        })
        .collect();
    assert!(
        !added.is_empty(),
        "the last commit of {} adds a file",
        table.display()
    );
    added
}

const DAMAGES: &[Damage] = &[
    Damage {
        name: "a byte flipped in a log entry",
        apply: |out| flip_middle_byte(&wal(out).join("0000000002.wal")),
        expect: Expect::Error(&["0000000002.wal", "checksum", "start over"]),
    },
    Damage {
        name: "a log entry removed",
        apply: |out| std::fs::remove_file(wal(out).join("0000000002.wal")).unwrap(),
        expect: Expect::Error(&["completed.json", "write-ahead log holds only", "start over"]),
    },
    Damage {
        name: "a stray file in the log",
        apply: |out| std::fs::write(wal(out).join("notes.txt"), b"hello").unwrap(),
        expect: Expect::Error(&["notes.txt", "start over"]),
    },
    Damage {
        name: "run.json corrupt",
        apply: |out| std::fs::write(out.join("_checkpoint/run.json"), b"{\"work").unwrap(),
        expect: Expect::Error(&["run.json", "corrupt", "start over"]),
    },
    Damage {
        name: "run.json removed while the log remains",
        apply: |out| std::fs::remove_file(out.join("_checkpoint/run.json")).unwrap(),
        expect: Expect::Error(&["no checkpoint", "--overwrite"]),
    },
    Damage {
        name: "completed.json corrupt",
        apply: |out| std::fs::write(out.join("_checkpoint/completed.json"), b"[").unwrap(),
        expect: Expect::Error(&["completed.json", "corrupt", "start over"]),
    },
    Damage {
        name: "completed.json removed (every time is written again)",
        apply: |out| std::fs::remove_file(out.join("_checkpoint/completed.json")).unwrap(),
        expect: Expect::Repair,
    },
    Damage {
        name: "a change-stream manifest garbled",
        apply: |out| {
            let manifest = out.join("_checkpoint/changes/sessions/w0000.manifest");
            std::fs::write(manifest, b"\x00\x01 not a manifest\n").unwrap()
        },
        expect: Expect::Repair,
    },
    Damage {
        name: "a change-stream manifest removed",
        apply: |out| {
            std::fs::remove_dir_all(out.join("_checkpoint/changes/window_activity")).unwrap()
        },
        expect: Expect::Repair,
    },
    Damage {
        name: "a change file truncated",
        apply: |out| {
            let file = files(&out.join("changes/kpis"), ".parquet")[0].clone();
            let bytes = std::fs::read(&file).unwrap();
            std::fs::write(&file, &bytes[..bytes.len() / 3]).unwrap();
        },
        expect: Expect::Repair,
    },
    Damage {
        name: "a change table removed",
        apply: |out| std::fs::remove_dir_all(out.join("changes/monthly_active")).unwrap(),
        expect: Expect::Repair,
    },
    Damage {
        name: "a Delta table removed (rebuilt from the log)",
        apply: |out| std::fs::remove_dir_all(delta_dir(out, "daily_active")).unwrap(),
        expect: Expect::Repair,
    },
    Damage {
        name: "a Delta data file removed",
        apply: |out| {
            let file = delta_data_files(&delta_dir(out, "sessions"))[0].clone();
            std::fs::remove_file(file).unwrap();
        },
        expect: Expect::Error(&["sessions", "delete", "rebuil"]),
    },
    Damage {
        name: "a Delta data file truncated",
        apply: |out| {
            let file = delta_data_files(&delta_dir(out, "event_mix_daily"))[0].clone();
            let bytes = std::fs::read(&file).unwrap();
            std::fs::write(&file, &bytes[..bytes.len() / 2]).unwrap();
        },
        expect: Expect::Error(&["event_mix_daily", "delete", "rebuil"]),
    },
    Damage {
        name: "the last Delta commit removed",
        apply: |out| {
            let log = delta_dir(out, "kpis").join("_delta_log");
            let last = files(&log, ".json").pop().unwrap();
            std::fs::remove_file(last).unwrap();
        },
        expect: Expect::Repair,
    },
    Damage {
        name: "a Delta commit garbled",
        apply: |out| {
            let log = delta_dir(out, "retention_cohorts").join("_delta_log");
            let last = files(&log, ".json").pop().unwrap();
            std::fs::write(last, b"{\"add\": {\"path\": ").unwrap();
        },
        expect: Expect::Error(&["retention_cohorts", "delete", "rebuil"]),
    },
];

/// The change streams and Delta tables of an output.
type Contents = Vec<(
    &'static str,
    Vec<Vec<tidemark_dataflows::model::tables::Cell>>,
)>;

fn delta_contents(out: &Path) -> Contents {
    WRITTEN_TABLES
        .iter()
        .map(|spec| {
            let rows = read_delta_table(&delta_dir(out, spec.name), spec)
                .unwrap_or_else(|e| panic!("the Delta table `{}` reads: {e:#}", spec.name));
            (spec.name, rows)
        })
        .collect()
}

#[test]
fn every_damaged_output_is_a_clear_error_or_an_exact_repair() {
    let dir = tempfile::tempdir().unwrap();
    let data = source_dataset(dir.path(), 21, 6, OutputFormat::Parquet);
    let reference = dir.path().join("reference");
    // Two workers and a logical time per file, on any machine.
    let args = ["-w", "2", "--max-batch-files", "1"];
    let result = output(&mut tidemark_run(Some(&data), &reference, &args));
    assert!(
        result.status.success(),
        "{}",
        String::from_utf8_lossy(&result.stderr)
    );
    let expected_changes = engine_tables(&reference, u64::MAX);
    let expected_delta = delta_contents(&reference);
    let oracle = oracle::compute(&read_batches(&data, None), &Params::default());
    assert_matches_oracle(&oracle, &expected_changes, "undamaged");

    let mut failures = Vec::new();
    for (i, damage) in DAMAGES.iter().enumerate() {
        let out = dir.path().join(format!("damaged-{i}"));
        copy_dir(&reference, &out);
        (damage.apply)(&out);
        let result = output(&mut tidemark_run(Some(&data), &out, &args));
        let stderr = String::from_utf8_lossy(&result.stderr).to_string();
        match (&damage.expect, result.status.success()) {
            (Expect::Error(needles), false) => {
                let missing: Vec<_> = needles.iter().filter(|n| !stderr.contains(*n)).collect();
                if !missing.is_empty() {
                    failures.push(format!(
                        "{}: the error does not mention {missing:?}: {stderr}",
                        damage.name
                    ));
                }
                if stderr.contains("panicked") {
                    failures.push(format!("{}: a panic: {stderr}", damage.name));
                }
            }
            (Expect::Error(_), true) => failures.push(format!(
                "{}: the run succeeded, an error was expected",
                damage.name
            )),
            (Expect::Repair, false) => {
                failures.push(format!("{}: the run failed: {stderr}", damage.name))
            }
            (Expect::Repair, true) => {
                if engine_tables(&out, u64::MAX) != expected_changes {
                    failures.push(format!("{}: the change streams differ", damage.name));
                }
                if delta_contents(&out) != expected_delta {
                    failures.push(format!("{}: the Delta tables differ", damage.name));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// Following the advice of a damaged Delta table's error (delete the table) rebuilds
/// it exactly from the write-ahead log.
#[test]
fn a_damaged_delta_table_deleted_as_advised_is_rebuilt_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let data = source_dataset(dir.path(), 22, 5, OutputFormat::Ndjson);
    let out = dir.path().join("out");
    let args = ["--max-batch-files", "1"];
    let result = output(&mut tidemark_run(Some(&data), &out, &args));
    assert!(result.status.success());
    let before = delta_contents(&out);
    let table = delta_dir(&out, "sessions");
    std::fs::remove_file(&delta_data_files(&table)[0]).unwrap();
    let result = output(&mut tidemark_run(Some(&data), &out, &args));
    assert!(!result.status.success());
    std::fs::remove_dir_all(&table).unwrap();
    let result = output(&mut tidemark_run(Some(&data), &out, &args));
    assert!(
        result.status.success(),
        "{}",
        String::from_utf8_lossy(&result.stderr)
    );
    assert_eq!(delta_contents(&out), before);
}
