//! The engine against the independent oracle on generated messy data (late, too late,
//! duplicate and invalid rows), in every input format, on one and two workers.

use crate::common;
use crate::oracle;

use common::{assert_matches_oracle, engine_tables, read_batches, run_engine};
use tidemark_dataflows::model::settings::Params;
use tidemark_inputs::generator::{generate, GeneratorConfig, OutputFormat};

fn messy(format: OutputFormat, gzip: bool, seed: u64) -> GeneratorConfig {
    GeneratorConfig {
        events: 12_000,
        users: 300,
        seed,
        days: 40,
        files: 12,
        format,
        gzip,
        late_share: 0.03,
        too_late_share: 0.01,
        duplicate_share: 0.02,
        invalid_share: 0.01,
        ..GeneratorConfig::default()
    }
}

fn check(config: GeneratorConfig, workers: usize) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let out = dir.path().join("out");
    generate(&data, &config).expect("generator writes the dataset");
    let params = Params::default();
    run_engine(&data, None, &out, params, workers);
    let expected = oracle::compute(&read_batches(&data, None), &params);
    let context = format!(
        "{:?} gzip={} seed={} workers={workers}",
        config.format, config.gzip, config.seed
    );
    assert_matches_oracle(&expected, &engine_tables(&out, u64::MAX), &context);
}

#[test]
fn parquet_messy_data_matches_oracle_on_one_worker() {
    check(messy(OutputFormat::Parquet, false, 7), 1);
}

#[test]
fn parquet_messy_data_matches_oracle_on_two_workers() {
    check(messy(OutputFormat::Parquet, false, 8), 2);
}

#[test]
fn gzipped_csv_messy_data_matches_oracle() {
    check(messy(OutputFormat::Csv, true, 9), 2);
}

#[test]
fn ndjson_messy_data_matches_oracle() {
    check(messy(OutputFormat::Ndjson, false, 10), 1);
}
