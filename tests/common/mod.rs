//! Helpers shared by the end-to-end tests: run the engine, read its change streams,
//! read the same input for the oracle, and compare table by table.

#![allow(dead_code)]

pub mod harness;

use std::collections::BTreeMap;
use std::path::Path;

use tidemark::runtime::cluster::ClusterArgs;
use tidemark::runtime::run::{run, RunOptions, WRITTEN_TABLES};
use tidemark::sink::reader::{read_changes, sum_changes};
use tidemark_dataflows::model::settings::Params;
use tidemark_dataflows::model::tables::{Cell, TableSpec};
use tidemark_inputs::records::FileBatch;
use tidemark_inputs::Dataset;

/// Tables by name, rows sorted.
pub type Tables = BTreeMap<&'static str, Vec<Vec<Cell>>>;

/// Every input file of a dataset, read in batch order, as the oracle's input.
pub fn read_batches(dataset: &Path, mapping: Option<&Path>) -> Vec<(String, FileBatch)> {
    read_batches_for(dataset, mapping, &Params::default())
}

/// [`read_batches`] reading also the user attributes `params` slices by, as a run does.
pub fn read_batches_for(
    dataset: &Path,
    mapping: Option<&Path>,
    params: &Params,
) -> Vec<(String, FileBatch)> {
    let mut dataset = Dataset::open(dataset, mapping).expect("dataset opens");
    dataset
        .mapping
        .read_attributes(&params.dimensions.attribute_names())
        .expect("attribute names are valid");
    let files = dataset.discover().expect("dataset lists its files");
    files
        .iter()
        .map(|file| (file.rel.clone(), dataset.read(file)))
        .collect()
}

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

/// Asserts that every written table of the engine equals the oracle's.
pub fn assert_matches_oracle(
    expected: &BTreeMap<&'static str, Vec<Vec<Cell>>>,
    actual: &Tables,
    context: &str,
) {
    for spec in WRITTEN_TABLES {
        let expected = expected
            .get(spec.name)
            .unwrap_or_else(|| panic!("the oracle computes `{}`", spec.name));
        compare(spec, expected, &actual[spec.name], context);
    }
}

/// Compares one table; the panic message lists the differing rows.
pub fn compare(spec: &TableSpec, expected: &[Vec<Cell>], actual: &[Vec<Cell>], context: &str) {
    let equal = expected.len() == actual.len()
        && expected
            .iter()
            .zip(actual)
            .all(|(a, b)| a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.approx_eq(y)));
    if !equal {
        let missing: Vec<_> = expected
            .iter()
            .filter(|r| !actual.contains(r))
            .take(5)
            .collect();
        let extra: Vec<_> = actual
            .iter()
            .filter(|r| !expected.contains(r))
            .take(5)
            .collect();
        panic!(
            "{context}: table `{}` differs ({} expected rows, {} actual)\n  missing (first 5): {missing:?}\n  unexpected (first 5): {extra:?}",
            spec.name,
            expected.len(),
            actual.len()
        );
    }
}

/// Generator settings for messy data (3% late, 1% too late, 2% duplicated and 1%
/// invalid rows; `too_late_share` as given), the shape most end-to-end tests use.
pub fn messy_data(
    events: u64,
    users: u64,
    seed: u64,
    days: u32,
    files: u32,
    format: tidemark_inputs::generator::OutputFormat,
    too_late_share: f64,
) -> tidemark_inputs::generator::GeneratorConfig {
    tidemark_inputs::generator::GeneratorConfig {
        events,
        users,
        seed,
        days,
        files,
        format,
        late_share: 0.03,
        too_late_share,
        duplicate_share: 0.02,
        invalid_share: 0.01,
        ..Default::default()
    }
}
