//! Workers and processes: the same dataset gives identical tables, row for row, on
//! one worker, two worker threads, and two real `tidemark` processes on localhost; the
//! two processes, slicing by every kind of dimension, also equal the oracle.

use crate::common;
use crate::oracle;

use std::net::TcpListener;
use std::process::Command;

use common::{assert_matches_oracle, engine_tables, read_batches_for, run_engine};
use tidemark_dataflows::model::settings::{Params, Settings};
use tidemark_inputs::generator::{generate, GeneratorConfig};

fn dataset(dir: &std::path::Path) -> std::path::PathBuf {
    let data = dir.join("data");
    let config = GeneratorConfig {
        events: 20_000,
        users: 400,
        seed: 3,
        days: 30,
        files: 9,
        late_share: 0.02,
        too_late_share: 0.005,
        duplicate_share: 0.01,
        invalid_share: 0.005,
        ..GeneratorConfig::default()
    };
    generate(&data, &config).expect("generator writes the dataset");
    data
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn two_threads_give_the_same_tables_as_one() {
    let dir = tempfile::tempdir().unwrap();
    let data = dataset(dir.path());
    run_engine(&data, None, &dir.path().join("one"), Params::default(), 1);
    run_engine(&data, None, &dir.path().join("two"), Params::default(), 2);
    let one = engine_tables(&dir.path().join("one"), u64::MAX);
    let two = engine_tables(&dir.path().join("two"), u64::MAX);
    assert!(one["sessions"].len() > 100, "the dataset yields sessions");
    assert_eq!(one, two);
    // One worker writes each table (a file per table and logical time), and the
    // tables are dealt over both workers.
    let mut writers: std::collections::BTreeMap<String, std::collections::BTreeSet<u64>> =
        Default::default();
    for (table, _time, worker) in crate::live::change_files(&dir.path().join("two")) {
        writers.entry(table).or_default().insert(worker);
    }
    assert!(
        writers.len() > 10 && writers.values().all(|w| w.len() == 1),
        "{writers:?}"
    );
    let used: std::collections::BTreeSet<u64> = writers.values().flatten().copied().collect();
    assert_eq!(used, [0, 1].into(), "{writers:?}");
}

/// Every kind of dimension: the hour, the catalogue's, and user attributes.
const DIMENSIONS: &str = "hour_of_day,genre,artist,country,platform,age_group";

#[test]
fn two_processes_give_the_same_tables_as_one_worker_and_the_oracle() {
    let dir = tempfile::tempdir().unwrap();
    let data = dataset(dir.path());
    let params = Settings {
        dimensions: DIMENSIONS.split(',').map(String::from).collect(),
        ..Settings::default()
    }
    .params()
    .expect("valid settings");
    run_engine(&data, None, &dir.path().join("one"), params, 1);

    let hostfile = dir.path().join("hosts.txt");
    std::fs::write(
        &hostfile,
        format!("127.0.0.1:{}\n127.0.0.1:{}\n", free_port(), free_port()),
    )
    .unwrap();
    let out = dir.path().join("cluster");
    let spawn = |process: usize| {
        Command::new(env!("CARGO_BIN_EXE_tidemark"))
            .args([
                "run",
                data.to_str().unwrap(),
                "--out",
                out.to_str().unwrap(),
                "-q",
            ])
            .args([
                "-n",
                "2",
                "-p",
                &process.to_string(),
                "-w",
                "1",
                "-H",
                hostfile.to_str().unwrap(),
                "--dimensions",
                DIMENSIONS,
            ])
            .spawn()
            .expect("tidemark starts")
    };
    let mut first = spawn(0);
    let mut second = spawn(1);
    assert!(first.wait().unwrap().success(), "process 0 succeeds");
    assert!(second.wait().unwrap().success(), "process 1 succeeds");

    // Process 0's workers write every table (here it has one worker), whatever
    // process read the files.
    let files = crate::live::change_files(&out);
    assert!(
        files.len() > 1 && files.iter().all(|(_, _, worker)| *worker == 0),
        "process 0's worker wrote every change file: {files:?}"
    );
    let two = engine_tables(&out, u64::MAX);
    assert_eq!(engine_tables(&dir.path().join("one"), u64::MAX), two);
    assert_matches_oracle(
        &oracle::compute(&read_batches_for(&data, None, &params), &params),
        &two,
        "two processes, every kind of dimension",
    );
    let dimensions: std::collections::BTreeSet<_> = two["engagement_by_dimension"]
        .iter()
        .map(|row| row[1].clone())
        .collect();
    assert_eq!(
        dimensions.len(),
        6,
        "every dimension has rows: {dimensions:?}"
    );
}
