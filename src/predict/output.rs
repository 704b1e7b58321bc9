//! The Parquet tables of `tidemark predict` under `OUT/predictions/`: `model_metrics`,
//! `scores` and `coefficients`, each a directory holding one `part-00000.parquet`
//! written atomically, so a reader never sees half a file.

use std::fs::File;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ArrowWriter;
use tidemark_dataflows::tables::{Cell, Column, ColumnType, TableSpec};

use crate::arrow_rows::{batch_to_changes, rows_to_batch};
use crate::checkpoint::write_atomically;

const fn col(name: &'static str, ty: ColumnType, nullable: bool) -> Column {
    Column { name, ty, nullable }
}

/// `model_metrics`: one row per model, measured on the test users.
pub const MODEL_METRICS: TableSpec = TableSpec {
    name: "model_metrics",
    columns: &[
        col("model", ColumnType::Str, false),
        col("auc", ColumnType::Float, true),
        col("accuracy", ColumnType::Float, false),
        col("precision", ColumnType::Float, true),
        col("recall", ColumnType::Float, true),
        col("f1", ColumnType::Float, true),
        col("users_train", ColumnType::Int, false),
        col("users_test", ColumnType::Int, false),
        col("threshold", ColumnType::Float, false),
        col("cutoff", ColumnType::Date, false),
    ],
    key_len: 1,
};

/// `scores`: every user of the population (split `train` or `test`, with the label)
/// and of the forecast (split `forecast`, null label).
pub const SCORES: TableSpec = TableSpec {
    name: "scores",
    columns: &[
        col("user_id", ColumnType::Str, false),
        col("score", ColumnType::Float, false),
        col("predicted", ColumnType::Bool, false),
        col("label", ColumnType::Bool, true),
        col("split", ColumnType::Str, false),
        col("cutoff", ColumnType::Date, false),
    ],
    key_len: 2,
};

/// `coefficients`: the logistic regression's weight per standardised feature, with the
/// training mean and standard deviation that standardise it.
pub const COEFFICIENTS: TableSpec = TableSpec {
    name: "coefficients",
    columns: &[
        col("feature", ColumnType::Str, false),
        col("coefficient", ColumnType::Float, false),
        col("mean", ColumnType::Float, false),
        col("std", ColumnType::Float, false),
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
    let file = match File::open(&path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("opening {}", path.display())),
    };
    let reader = ParquetRecordBatchReaderBuilder::try_new(file)
        .with_context(|| format!("reading {}", path.display()))?
        .build()?;
    let mut rows = Vec::new();
    for batch in reader {
        let batch = batch.with_context(|| format!("reading {}", path.display()))?;
        rows.extend(
            batch_to_changes(spec, &batch, false)
                .with_context(|| format!("in {}", path.display()))?
                .into_iter()
                .map(|(row, _, _)| row),
        );
    }
    Ok(Some(rows))
}
