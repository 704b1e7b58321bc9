//! `engagement_by_dimension` (contract "Dimensions") end to end: built-in dimensions and
//! user attributes on generated messy data and on Sparkify through its mapping, against
//! the independent oracle, and the error for a dimension whose column does not exist.

use crate::common;
use crate::oracle;

use std::path::{Path, PathBuf};

use common::{assert_matches_oracle, engine_options, engine_tables, read_batches_for};
use tidemark_dataflows::model::settings::{Params, Settings};
use tidemark_dataflows::model::tables::Cell;
use tidemark_inputs::generator::{generate, OutputFormat};

fn params(dimensions: &[&str]) -> Params {
    Settings {
        dimensions: dimensions.iter().map(|d| d.to_string()).collect(),
        ..Settings::default()
    }
    .params()
    .expect("valid settings")
}

/// Runs the engine and checks every table, this one included, against the oracle.
fn check(dataset: &Path, mapping: Option<&Path>, params: Params, workers: usize) -> common::Tables {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let options = engine_options(dataset, mapping, &out, params, workers);
    tidemark::runtime::run::run(&options).expect("tidemark run succeeds");
    let expected = oracle::compute(&read_batches_for(dataset, mapping, &params), &params);
    let actual = engine_tables(&out, u64::MAX);
    assert_matches_oracle(&expected, &actual, &format!("{}", dataset.display()));
    actual
}

/// The members a dimension has in the final table.
fn members(tables: &common::Tables, dimension: &str) -> Vec<Cell> {
    let mut members: Vec<Cell> = tables["engagement_by_dimension"]
        .iter()
        .filter(|row| row[1] == Cell::Str(dimension.into()))
        .map(|row| row[2].clone())
        .collect();
    members.sort();
    members.dedup();
    members
}

fn generated(dir: &Path, format: OutputFormat) -> PathBuf {
    let data = dir.join("data");
    let config = common::messy_data(12_000, 300, 17, 20, 10, format, 0.01);
    generate(&data, &config).expect("generator writes the dataset");
    data
}

#[test]
fn generated_messy_data_sliced_by_every_kind_of_dimension_matches_the_oracle() {
    let all = [
        "hour_of_day",
        "genre",
        "artist",
        "country",
        "platform",
        "age_group",
    ];
    for (format, workers) in [(OutputFormat::Parquet, 2), (OutputFormat::Csv, 1)] {
        let dir = tempfile::tempdir().unwrap();
        let data = generated(dir.path(), format);
        let tables = check(&data, None, params(&all), workers);
        assert_eq!(members(&tables, "hour_of_day").len(), 24);
        assert!(members(&tables, "genre").len() > 5);
        let platforms = members(&tables, "platform");
        assert!(platforms.contains(&Cell::Str("ios".into())));
        assert!(platforms.contains(&Cell::Null), "users without a platform");
        // Every dimension's members add up to all accepted events of the day.
        let events_per_day = |dimension: &str| -> std::collections::BTreeMap<Cell, i64> {
            let mut sums = std::collections::BTreeMap::new();
            for row in tables["engagement_by_dimension"]
                .iter()
                .filter(|r| r[1] == Cell::Str(dimension.into()))
            {
                let Cell::Int(events) = row[4] else {
                    panic!("events is a count")
                };
                *sums.entry(row[0].clone()).or_default() += events;
            }
            sums
        };
        for dimension in &all[1..] {
            assert_eq!(
                events_per_day(dimension),
                events_per_day("hour_of_day"),
                "{dimension}"
            );
        }
    }
}

#[test]
fn sparkify_sliced_by_artist_and_its_user_attributes_matches_the_oracle() {
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data/sparkify_log");
    if !data.exists() {
        eprintln!("skipping: {} is not present", data.display());
        return;
    }
    let mapping = Path::new(env!("CARGO_MANIFEST_DIR")).join("inputs/examples/sparkify.toml");
    let dims = ["hour_of_day", "artist", "gender", "location", "user_agent"];
    let tables = check(&data, Some(&mapping), params(&dims), 2);
    assert!(members(&tables, "artist").len() > 100);
    assert!(members(&tables, "gender").contains(&Cell::Str("F".into())));
}

#[test]
fn a_dimension_without_its_users_column_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let data = generated(dir.path(), OutputFormat::Ndjson);
    let out = dir.path().join("out");
    let options = engine_options(&data, None, &out, params(&["hour_of_day", "device"]), 1);
    let error = format!(
        "{:#}",
        tidemark::runtime::run::run(&options).expect_err("no device column")
    );
    assert!(error.contains("device"), "{error}");
    assert!(error.contains("users/"), "names the file: {error}");
    let bad = Settings {
        dimensions: vec!["Device Type".into()],
        ..Settings::default()
    };
    assert!(bad.params().unwrap_err().contains("Device Type"));
}
