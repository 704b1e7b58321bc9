//! Helpers shared by the end-to-end tests: run the engine and read its change streams.
//! Reading the input for the oracle and comparing table by table come from
//! [`harness`], which tests of the dataflow alone use without this module.

#![allow(dead_code)]

#[path = "../harness/mod.rs"]
pub mod harness;

#[allow(unused_imports)] // each test uses some
pub use harness::{
    assert_matches_oracle, compare, messy_data, read_batches, read_batches_for, Tables,
};

use std::path::Path;

use tidemark::runtime::cluster::ClusterArgs;
use tidemark::runtime::run::{run, RunOptions, WRITTEN_TABLES};
use tidemark::sink::reader::{read_changes, sum_changes};
use tidemark_dataflows::model::settings::Params;

/// The options of a static, quiet run over `dataset` into `out` with `workers`
/// threads, replacing any earlier output, with every sink; tests change the rest.
pub fn engine_options(
    dataset: &Path,
    mapping: Option<&Path>,
    out: &Path,
    params: Params,
    workers: usize,
) -> RunOptions {
    RunOptions {
        dataset: Some(dataset.to_path_buf()),
        mapping: mapping.map(Path::to_path_buf),
        out: out.to_path_buf(),
        params,
        cluster: ClusterArgs {
            workers,
            ..ClusterArgs::default()
        },
        progress: false,
        overwrite: true,
        delta: true,
        delta_retention: tidemark::runtime::run::DEFAULT_DELTA_RETENTION,
        // A logical time per file, so tests can look at the tables after each file;
        // tests of grouping set their own.
        live: tidemark::runtime::run::LiveOptions {
            file_batching: tidemark::runtime::schedule::FileBatching {
                max_files: 1,
                ..Default::default()
            },
            ..Default::default()
        },
        arrangement_sizes: None,
        local_out: None,
    }
}

/// Runs the engine in this process with `workers` threads.
pub fn run_engine(
    dataset: &Path,
    mapping: Option<&Path>,
    out: &Path,
    params: Params,
    workers: usize,
) {
    let options = engine_options(dataset, mapping, out, params, workers);
    run(&options).expect("tidemark run succeeds");
}

/// The engine's tables as of logical time `upto` (inclusive; `u64::MAX` = final).
pub fn engine_tables(out: &Path, upto: u64) -> Tables {
    WRITTEN_TABLES
        .iter()
        .map(|spec| {
            let changes = read_changes(out, spec).expect("change stream reads");
            let summed = sum_changes(changes.into_iter().filter(|(_, time, _)| *time <= upto));
            let mut rows = Vec::new();
            for (row, count) in summed {
                assert!(
                    count > 0,
                    "table {} holds a row with count {count}: {row:?}",
                    spec.name
                );
                rows.extend(std::iter::repeat_n(row, count as usize));
            }
            (spec.name, rows)
        })
        .collect()
}
