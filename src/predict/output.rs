//! The Parquet tables of `tidemark predict` under `OUT/predictions/`: `model_metrics`,
//! `scores` and `coefficients`, each a directory holding one `part-00000.parquet`
//! written atomically, so a reader never sees half a file.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use parquet::arrow::ArrowWriter;
use tidemark_dataflows::model::tables::{col, opt, Cell, ColumnType, TableSpec};

use crate::runtime::checkpoint::write_atomically;
use crate::sink::arrow_rows::rows_to_batch;
use crate::sink::reader::read_parquet;

/// `model_metrics`: one row per model, measured on the test users.
pub const MODEL_METRICS: TableSpec = TableSpec {
    name: "model_metrics",
    columns: &[
        col("model", ColumnType::Str),
        opt("auc", ColumnType::Float),
        col("accuracy", ColumnType::Float),
        opt("precision", ColumnType::Float),
        opt("recall", ColumnType::Float),
        opt("f1", ColumnType::Float),
        col("users_train", ColumnType::Int),
        col("users_test", ColumnType::Int),
        col("threshold", ColumnType::Float),
        col("cutoff", ColumnType::Date),
    ],
    key_len: 1,
};

/// `scores`: every user of the population (split `train` or `test`, with the label)
/// and of the forecast (split `forecast`, null label).
pub const SCORES: TableSpec = TableSpec {
    name: "scores",
    columns: &[
        col("user_id", ColumnType::Str),
        col("score", ColumnType::Float),
        col("predicted", ColumnType::Bool),
        opt("label", ColumnType::Bool),
        col("split", ColumnType::Str),
        col("cutoff", ColumnType::Date),
    ],
    key_len: 2,
};

/// `coefficients`: the logistic regression's weight per standardised feature, with the
/// training mean and standard deviation that standardise it.
pub const COEFFICIENTS: TableSpec = TableSpec {
    name: "coefficients",
    columns: &[
        col("feature", ColumnType::Str),
        col("coefficient", ColumnType::Float),
        col("mean", ColumnType::Float),
        col("std", ColumnType::Float),
    ],
    key_len: 1,
};

/// The directory of the predictions of output `out`.
pub fn predictions_dir(out: &Path) -> PathBuf {
    out.join("predictions")
}

fn part_file(out: &Path, spec: &TableSpec) -> PathBuf {
    predictions_dir(out)
        .join(spec.name)
        .join("part-00000.parquet")
}

/// Writes one table (replacing an earlier prediction's).
pub fn write(out: &Path, spec: &TableSpec, rows: &[Vec<Cell>]) -> Result<()> {
    let path = part_file(out, spec);
    let dir = path.parent().expect("a part file has a directory");
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let batch = rows_to_batch(spec, rows)?;
    let mut bytes = Vec::new();
    let mut writer = ArrowWriter::try_new(&mut bytes, batch.schema(), None)?;
    writer.write(&batch)?;
    writer.close()?;
    write_atomically(&path, &bytes)
}

/// Reads one table back, if it was written.
pub fn read(out: &Path, spec: &TableSpec) -> Result<Option<Vec<Vec<Cell>>>> {
    let path = part_file(out, spec);
    if !path.is_file() {
        return Ok(None);
    }
    let rows = read_parquet(&path, spec, false)?;
    Ok(Some(rows.into_iter().map(|(row, _, _)| row).collect()))
}
