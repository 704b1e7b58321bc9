//! Both real data sets of `../shared/data`, in their own column names, run through the
//! shipped mappings and compared table by table with the independent oracle.

use crate::common;
use crate::oracle;

use std::path::{Path, PathBuf};

use common::{assert_matches_oracle, engine_tables, read_batches, run_engine};
use tidemark_dataflows::model::settings::Params;

fn shared_data(name: &str) -> Option<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/data")
        .join(name);
    if dir.exists() {
        Some(dir)
    } else {
        eprintln!("skipping: {} is not present", dir.display());
        None
    }
}

fn mapping(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("inputs/examples")
        .join(name)
}

fn check(dataset: &Path, mapping: &Path, workers: usize) -> common::Tables {
    let out = tempfile::tempdir().unwrap();
    let params = Params::default();
    run_engine(dataset, Some(mapping), out.path(), params, workers);
    let expected = oracle::compute(&read_batches(dataset, Some(mapping)), &params);
    let actual = engine_tables(out.path(), u64::MAX);
    assert_matches_oracle(&expected, &actual, &format!("{}", dataset.display()));
    actual
}

#[test]
fn online_retail_matches_oracle() {
    let Some(data) = shared_data("online_retail") else {
        return;
    };
    let tables = check(&data, &mapping("online_retail.toml"), 2);
    // Retention is the point of this data set: twelve-plus monthly cohorts.
    assert!(tables["retention_cohorts"].len() > 50);
    // Rows without a customer are quarantined with a reason naming user_id.
    assert!(tables["quarantine"]
        .iter()
        .any(|row| row[2].to_string() == "user_id"));
}

#[test]
fn sparkify_matches_oracle() {
    let Some(data) = shared_data("sparkify_log") else {
        return;
    };
    let tables = check(&data, &mapping("sparkify.toml"), 1);
    // Sessions come from the source: every session row carries its session_id.
    assert!(!tables["sessions"].is_empty());
    assert!(tables["sessions"]
        .iter()
        .all(|row| row[2] != tidemark_dataflows::model::tables::Cell::Null));
}
