//! The Delta Lake tables under `OUT/tables/`: read back with the deltalake crate, each
//! equals its table's summed change stream row for row, at the end and at every Delta
//! version; the log holds commits in time order, each covering one or more changed
//! logical times with a `tidemark-<table>` txn of the last of them; column types are
//! the right Delta primitive types.

use crate::common;

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::path::Path;

use arrow::array::RecordBatch;
use arrow::compute::cast;
use common::{engine_options, run_engine};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use tidemark::runtime::run::{run, RunOptions, WRITTEN_TABLES};
use tidemark::sink::arrow_rows::{batch_to_changes, schema};
use tidemark::sink::delta::{delta_dir, last_committed_version};
use tidemark::sink::reader::{read_changes, sum_changes};
use tidemark_dataflows::model::settings::Params;
use tidemark_dataflows::model::tables::{Cell, ColumnType, TableSpec};
use tidemark_inputs::generator::{generate, GeneratorConfig};
use url::Url;

fn messy(seed: u64) -> GeneratorConfig {
    GeneratorConfig {
        events: 12_000,
        users: 300,
        seed,
        days: 40,
        files: 12,
        late_share: 0.03,
        too_late_share: 0.01,
        duplicate_share: 0.02,
        invalid_share: 0.01,
        ..GeneratorConfig::default()
    }
}

/// One commit file of a Delta log, as JSON actions.
struct Commit {
    version: u64,
    actions: Vec<serde_json::Value>,
}

fn read_log(table_dir: &Path) -> Vec<Commit> {
    let log = table_dir.join("_delta_log");
    let mut commits: Vec<Commit> = std::fs::read_dir(&log)
        .unwrap_or_else(|e| panic!("{} is not readable: {e}", log.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .map(|path| {
            let version = path.file_stem().unwrap().to_str().unwrap().parse().unwrap();
            let text = std::fs::read_to_string(&path).unwrap();
            let actions = text
                .lines()
                .filter(|l| !l.trim().is_empty())
                .map(|l| serde_json::from_str(l).unwrap())
                .collect();
            Commit { version, actions }
        })
        .collect();
    commits.sort_by_key(|c| c.version);
    commits
}

/// The rows of the Delta table at `version` (latest with `None`), read independently of
/// tidemark's sink: delta-rs lists the snapshot's active files, the parquet crate reads them.
fn delta_rows(table_dir: &Path, spec: &TableSpec, version: Option<u64>) -> Vec<Vec<Cell>> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let url = Url::from_directory_path(table_dir.canonicalize().unwrap()).unwrap();
    let files: Vec<String> = runtime.block_on(async {
        let table = match version {
            Some(v) => deltalake::open_table_with_version(url, v).await,
            None => deltalake::open_table(url).await,
        }
        .expect("delta-rs opens the table");
        table
            .snapshot()
            .unwrap()
            .log_data()
            .iter()
            .map(|f| f.path().to_string())
            .collect()
    });
    let target = schema(spec, false);
    let mut rows = Vec::new();
    for path in files {
        let file = File::open(table_dir.join(&path)).unwrap();
        for batch in ParquetRecordBatchReaderBuilder::try_new(file)
            .unwrap()
            .build()
            .unwrap()
        {
            let batch = batch.unwrap();
            let columns = target
                .fields()
                .iter()
                .map(|f| {
                    cast(
                        batch.column_by_name(f.name()).expect("column present"),
                        f.data_type(),
                    )
                    .unwrap()
                })
                .collect();
            let batch = RecordBatch::try_new(target.clone(), columns).unwrap();
            rows.extend(
                batch_to_changes(spec, &batch, false)
                    .unwrap()
                    .into_iter()
                    .map(|(row, _, _)| row),
            );
        }
    }
    rows.sort();
    rows
}

fn expand(summed: BTreeMap<Vec<Cell>, i64>) -> Vec<Vec<Cell>> {
    let mut rows = Vec::new();
    for (row, count) in summed {
        assert!(count > 0, "change stream sums to count {count} for {row:?}");
        rows.extend(std::iter::repeat_n(row, count as usize));
    }
    rows
}

fn assert_rows_equal(
    spec: &TableSpec,
    expected: &[Vec<Cell>],
    actual: &[Vec<Cell>],
    context: &str,
) {
    if expected != actual {
        let (missing, extra) = common::harness::first_differences(expected, actual);
        panic!(
            "{context}: Delta table `{}` differs from its change stream ({} expected rows, {} in Delta)\n  missing: {missing:?}\n  unexpected: {extra:?}",
            spec.name,
            expected.len(),
            actual.len()
        );
    }
}

fn delta_type_name(ty: ColumnType) -> &'static str {
    match ty {
        ColumnType::Str => "string",
        ColumnType::Int => "long",
        ColumnType::Float => "double",
        ColumnType::Bool => "boolean",
        ColumnType::Timestamp => "timestamp",
        ColumnType::Date => "date",
    }
}

fn check_out(out: &Path, context: &str) {
    for spec in WRITTEN_TABLES {
        let dir = delta_dir(out, spec.name);
        let changes = read_changes(out, spec).unwrap();
        let times: BTreeSet<u64> = changes.iter().map(|(_, t, _)| *t).collect();
        if times.is_empty() {
            assert!(
                !dir.exists(),
                "{context}: `{}` never changed but has a Delta directory",
                spec.name
            );
            continue;
        }

        // The log: commits in time order, each with its txn; none empty.
        let commits = read_log(&dir);
        let app_id = format!("tidemark-{}", spec.name);
        let mut committed = Vec::new();
        for commit in &commits {
            let txns: Vec<&serde_json::Value> =
                commit.actions.iter().filter_map(|a| a.get("txn")).collect();
            assert_eq!(
                txns.len(),
                1,
                "{context}: `{}` commit {} has {} txn actions",
                spec.name,
                commit.version,
                txns.len()
            );
            assert_eq!(
                txns[0]["appId"], app_id,
                "{context}: `{}` commit {}",
                spec.name, commit.version
            );
            committed.push(txns[0]["version"].as_u64().expect("txn version"));
            let data = commit
                .actions
                .iter()
                .filter(|a| a.get("add").is_some() || a.get("remove").is_some())
                .count();
            assert!(
                data > 0,
                "{context}: `{}` commit {} is empty",
                spec.name,
                commit.version
            );
        }
        // A commit covers one or more consecutive changed times (those that were
        // waiting together): its txn is the last of them, so the txns are changed times
        // in increasing order, ending with the last one.
        assert!(
            committed.windows(2).all(|w| w[0] < w[1])
                && committed.iter().all(|t| times.contains(t))
                && committed.last() == times.last(),
            "{context}: `{}` txn versions {committed:?} vs change-stream times {times:?}",
            spec.name
        );
        assert_eq!(
            commits.iter().map(|c| c.version).collect::<Vec<_>>(),
            (0..commits.len() as u64).collect::<Vec<_>>(),
            "{context}: `{}` Delta versions",
            spec.name
        );
        assert_eq!(
            last_committed_version(&dir).unwrap(),
            times.last().copied(),
            "{context}: `{}`",
            spec.name
        );

        // The schema: the right Delta primitive types.
        let metadata = commits[0]
            .actions
            .iter()
            .find_map(|a| a.get("metaData"))
            .expect("first commit has metaData");
        let schema: serde_json::Value =
            serde_json::from_str(metadata["schemaString"].as_str().unwrap()).unwrap();
        let fields = schema["fields"].as_array().unwrap();
        assert_eq!(
            fields.len(),
            spec.columns.len(),
            "{context}: `{}` column count",
            spec.name
        );
        for (field, column) in fields.iter().zip(spec.columns) {
            assert_eq!(field["name"], column.name, "{context}: `{}`", spec.name);
            assert_eq!(
                field["type"],
                delta_type_name(column.ty),
                "{context}: `{}`.{}",
                spec.name,
                column.name
            );
            assert_eq!(
                field["nullable"], column.nullable,
                "{context}: `{}`.{}",
                spec.name, column.name
            );
        }

        // The contents at every version equal the change stream summed up to its time.
        for (version, time) in committed.iter().enumerate() {
            let expected = expand(sum_changes(
                changes.iter().filter(|(_, t, _)| t <= time).cloned(),
            ));
            let actual = delta_rows(&dir, spec, Some(version as u64));
            assert_rows_equal(
                spec,
                &expected,
                &actual,
                &format!("{context}, version {version} (time {time})"),
            );
        }
        let expected = expand(sum_changes(changes.iter().cloned()));
        assert_rows_equal(
            spec,
            &expected,
            &delta_rows(&dir, spec, None),
            &format!("{context}, latest"),
        );
        assert!(
            !expected.is_empty() || spec.name == "quarantine",
            "{context}: `{}` is empty",
            spec.name
        );
    }
}

fn check(seed: u64, workers: usize) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let out = dir.path().join("out");
    generate(&data, &messy(seed)).expect("generator writes the dataset");
    run_engine(&data, None, &out, Params::default(), workers);
    check_out(&out, &format!("seed={seed} workers={workers}"));
    // --overwrite replaces the Delta tables too (a stale log would skip every commit).
    run_engine(&data, None, &out, Params::default(), workers);
    check_out(&out, &format!("seed={seed} workers={workers}, overwritten"));
}

#[test]
fn delta_tables_equal_change_streams_on_one_worker() {
    check(21, 1);
}

#[test]
fn delta_tables_equal_change_streams_on_two_workers() {
    check(22, 2);
}

#[test]
fn no_delta_writes_no_tables() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let out = dir.path().join("out");
    generate(
        &data,
        &GeneratorConfig {
            events: 2_000,
            users: 50,
            files: 3,
            ..messy(5)
        },
    )
    .unwrap();
    let options = RunOptions {
        overwrite: false,
        delta: false,
        ..engine_options(&data, None, &out, Params::default(), 1)
    };
    run(&options).expect("run succeeds");
    assert!(out.join("changes").join("sessions").exists());
    assert!(
        !out.join("tables").exists(),
        "--no-delta wrote Delta tables"
    );
}

#[test]
fn a_failed_commit_stops_the_run_naming_the_table_and_path() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let out = dir.path().join("out");
    generate(
        &data,
        &GeneratorConfig {
            events: 2_000,
            users: 50,
            files: 3,
            ..messy(6)
        },
    )
    .unwrap();
    // A file where the tables directory should be: no Delta table can be created.
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(out.join("tables"), b"not a directory").unwrap();
    let options = RunOptions {
        overwrite: false,
        ..engine_options(&data, None, &out, Params::default(), 2)
    };
    // On two workers: the one that fails must not leave the other waiting forever.
    let (send, receive) = std::sync::mpsc::channel();
    std::thread::spawn(move || send.send(run(&options).map(|_| ())).unwrap());
    let result = receive
        .recv_timeout(std::time::Duration::from_secs(120))
        .expect("the run stops");
    let error = format!("{:#}", result.expect_err("the run must fail"));
    assert!(
        error.contains("Delta table `"),
        "message names no table: {error}"
    );
    assert!(
        error.contains(&out.join("tables").display().to_string()),
        "message names no path: {error}"
    );
}

/// Change files under `out/changes/` and Delta commits under `out/tables/`, over all tables.
fn file_and_commit_counts(out: &Path) -> (usize, usize) {
    let mut files = 0;
    let mut commits = 0;
    for spec in WRITTEN_TABLES {
        files +=
            std::fs::read_dir(out.join("changes").join(spec.name)).map_or(0, |dir| dir.count());
        commits += read_log(&delta_dir(out, spec.name)).len();
    }
    (files, commits)
}

/// Issue 12: a run taking one file per logical time and a run taking every file in one
/// time give identical final tables, quarantine included (lateness is judged per file),
/// and the second writes far fewer change files and Delta commits.
#[test]
fn one_time_for_every_file_gives_the_same_tables_with_far_fewer_files() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    generate(&data, &messy(23)).expect("generator writes the dataset");
    let run_grouped = |name: &str, max_files: usize| {
        let out = dir.path().join(name);
        let mut options = engine_options(&data, None, &out, Params::default(), 2);
        options.live.file_batching.max_files = max_files;
        run(&options).expect("tidemark run succeeds");
        check_out(&out, name);
        out
    };
    let single = run_grouped("per-file", 1);
    let grouped = run_grouped("grouped", 1000);
    let tables = |out: &Path| common::engine_tables(out, u64::MAX);
    common::assert_matches_oracle(&tables(&single), &tables(&grouped), "grouped vs per file");
    assert_eq!(
        tables(&single)["quarantine"],
        tables(&grouped)["quarantine"],
        "the same rows are quarantined, too_late included"
    );
    let (single_files, single_commits) = file_and_commit_counts(&single);
    let (grouped_files, grouped_commits) = file_and_commit_counts(&grouped);
    // A run taking a time per file groups its Delta commits too (a sink hands the times
    // that are complete while later ones are on their way to the writer together), but
    // only as far as the workers read ahead.
    assert!(
        grouped_files * 4 <= single_files && grouped_commits * 2 <= single_commits,
        "grouped: {grouped_files} change files, {grouped_commits} commits; per file: {single_files}, {single_commits}"
    );
}

/// The data files of a Delta table the log's latest version holds (adds not removed).
fn live_files(table_dir: &Path) -> BTreeSet<String> {
    let mut live = BTreeSet::new();
    for commit in read_log(table_dir) {
        for action in &commit.actions {
            if let Some(path) = action.get("add").and_then(|a| a["path"].as_str()) {
                live.insert(path.to_string());
            }
            if let Some(path) = action.get("remove").and_then(|a| a["path"].as_str()) {
                live.remove(path);
            }
        }
    }
    live
}

/// The Parquet data files on disk in a Delta table's directory.
fn files_on_disk(table_dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(table_dir)
        .map(|entries| {
            entries
                .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
                .filter(|name| name.ends_with(".parquet"))
                .collect()
        })
        .unwrap_or_default()
}

/// Issue 13 (output footprint): each commit rewrites only the buckets it touches, so the
/// files it removes pile up on disk for readers of older versions. A vacuum (every 20
/// commits of a table and when the run ends) deletes those removed longer ago than
/// `--delta-retention-minutes`. With 0, only the current version's files stay, the file
/// count goes down, and every table still equals its change stream.
#[test]
fn vacuum_keeps_only_the_current_files_and_the_same_contents() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    generate(
        &data,
        &GeneratorConfig {
            files: 100,
            ..messy(23)
        },
    )
    .expect("generator writes the dataset");
    let kept = dir.path().join("kept");
    run_engine(&data, None, &kept, Params::default(), 1);
    let vacuumed = dir.path().join("vacuumed");
    run(&RunOptions {
        delta_retention: std::time::Duration::ZERO,
        ..engine_options(&data, None, &vacuumed, Params::default(), 1)
    })
    .expect("run succeeds");

    let (mut before, mut after) = (0, 0);
    for spec in WRITTEN_TABLES {
        let (kept_dir, vacuumed_dir) =
            (delta_dir(&kept, spec.name), delta_dir(&vacuumed, spec.name));
        before += files_on_disk(&kept_dir).len();
        after += files_on_disk(&vacuumed_dir).len();
        assert_eq!(
            files_on_disk(&vacuumed_dir),
            live_files(&vacuumed_dir),
            "`{}`: only the current version's files stay",
            spec.name
        );
        let expected = expand(sum_changes(read_changes(&vacuumed, spec).unwrap()));
        assert_rows_equal(
            spec,
            &expected,
            &delta_rows(&vacuumed_dir, spec, None),
            &format!("`{}` after vacuum", spec.name),
        );
        assert_rows_equal(
            spec,
            &delta_rows(&kept_dir, spec, None),
            &delta_rows(&vacuumed_dir, spec, None),
            &format!("`{}` with and without vacuum", spec.name),
        );
    }
    assert!(
        after * 2 < before,
        "vacuum should remove most files: {before} files kept, {after} after vacuum"
    );
    // The sessions table had more than 20 commits (a commit covers up to the few times
    // the workers read ahead, at -w 1 about 3): vacuumed during the run too.
    let vacuums = read_log(&delta_dir(&vacuumed, "sessions"))
        .iter()
        .filter(|c| {
            c.actions.iter().any(|a| {
                a.get("commitInfo")
                    .and_then(|i| i["operation"].as_str())
                    .is_some_and(|op| op == "VACUUM END")
            })
        })
        .count();
    assert!(vacuums >= 2, "{vacuums} vacuums of `sessions`");
    // A resumed run still finds its place in the vacuumed log.
    run(&RunOptions {
        overwrite: false,
        delta_retention: std::time::Duration::ZERO,
        ..engine_options(&data, None, &vacuumed, Params::default(), 1)
    })
    .expect("a resumed run succeeds");
    let spec = &WRITTEN_TABLES[0];
    assert_rows_equal(
        spec,
        &expand(sum_changes(read_changes(&vacuumed, spec).unwrap())),
        &delta_rows(&delta_dir(&vacuumed, spec.name), spec, None),
        "after a resume",
    );
}

/// Issue 12: `--max-commit-times` bounds how many completed times one Delta commit
/// covers. With 1, every changed time of every table is a commit of its own (the txns
/// are exactly the times with a change file), however the times completed.
#[test]
fn max_commit_times_one_gives_a_commit_per_changed_time() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    generate(&data, &messy(29)).expect("generator writes the dataset");
    let out = dir.path().join("out");
    // A logical time per file on two workers: times complete while later ones are on
    // their way, which the default groups into shared commits.
    let mut options = engine_options(&data, None, &out, Params::default(), 2);
    options.live.max_commit_times = 1;
    run(&options).expect("tidemark run succeeds");
    check_out(&out, "a commit per time");
    let mut checked = 0;
    for spec in WRITTEN_TABLES {
        let changed: Vec<u64> = read_changes(&out, spec)
            .unwrap()
            .iter()
            .map(|(_, time, _)| *time)
            .collect::<BTreeSet<u64>>()
            .into_iter()
            .collect();
        if changed.is_empty() {
            continue;
        }
        let committed: Vec<u64> = read_log(&delta_dir(&out, spec.name))
            .iter()
            .flat_map(|commit| commit.actions.iter().filter_map(|a| a.get("txn")))
            .map(|txn| txn["version"].as_u64().expect("txn version"))
            .collect();
        assert_eq!(
            committed, changed,
            "`{}`: one commit per changed time, in order",
            spec.name
        );
        checked += changed.len();
    }
    assert!(
        checked > 20,
        "the run changed tables at many times: {checked}"
    );
}
