//! Reads change streams back: every change of a table, or the table's current
//! contents (diffs summed per row). Used by `report`, the run summary and tests.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use arrow::array::Int64Array;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ProjectionMask;
use tidemark_dataflows::model::tables::{Cell, TableSpec};

use crate::sink::arrow_rows::{batch_to_changes, Change, DIFF_COLUMN};
use crate::sink::changes::changes_dir;

/// Every change recorded for `spec` under `out`, in file order.
pub fn read_changes(out: &Path, spec: &TableSpec) -> Result<Vec<Change>> {
    let mut changes = Vec::new();
    for path in change_files(out, spec)? {
        changes.extend(read_parquet(&path, spec, true)?);
    }
    Ok(changes)
}

/// The change files of `spec` under `out`, sorted by name (logical time, then
/// worker); none when the table has no change stream yet.
pub fn change_files(out: &Path, spec: &TableSpec) -> Result<Vec<PathBuf>> {
    let dir = changes_dir(out, spec.name);
    let mut files: Vec<PathBuf> = match std::fs::read_dir(&dir) {
        Ok(entries) => entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "parquet"))
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("reading {}", dir.display())),
    };
    files.sort();
    Ok(files)
}

/// The rows of one Parquet file written for `spec`; with `with_changes` it is a change
/// file and each row keeps its `time` and `diff`.
pub fn read_parquet(path: &Path, spec: &TableSpec, with_changes: bool) -> Result<Vec<Change>> {
    let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let reader = ParquetRecordBatchReaderBuilder::try_new(file)
        .with_context(|| format!("reading {}", path.display()))?
        .build()?;
    let mut rows = Vec::new();
    for batch in reader {
        let batch = batch.with_context(|| format!("reading {}", path.display()))?;
        rows.extend(
            batch_to_changes(spec, &batch, with_changes)
                .with_context(|| format!("in {}", path.display()))?,
        );
    }
    Ok(rows)
}

/// Sums changes into current contents: row -> multiplicity (zero-sum rows dropped).
/// Rows are summed in a hash map and only the surviving ones are sorted: a change
/// stream holds many more changes than rows, and ordering each change by whole-row
/// comparison was most of `report`'s time.
pub fn sum_changes(changes: impl IntoIterator<Item = Change>) -> BTreeMap<Vec<Cell>, i64> {
    let mut table: rustc_hash::FxHashMap<Vec<Cell>, i64> = Default::default();
    for (row, _time, diff) in changes {
        *table.entry(row).or_insert(0) += diff;
    }
    table.into_iter().filter(|(_, count)| *count != 0).collect()
}

/// How many rows `spec`'s table holds now: the sum of every change's `diff`, read from
/// that column alone (no row is decoded).
pub fn count_rows(out: &Path, spec: &TableSpec) -> Result<i64> {
    let mut count = 0;
    for path in change_files(out, spec)? {
        let file = File::open(&path).with_context(|| format!("opening {}", path.display()))?;
        let builder = ParquetRecordBatchReaderBuilder::try_new(file)
            .with_context(|| format!("reading {}", path.display()))?;
        let column = builder
            .parquet_schema()
            .columns()
            .iter()
            .position(|c| c.name() == DIFF_COLUMN)
            .with_context(|| format!("{} has no `{DIFF_COLUMN}` column", path.display()))?;
        let mask = ProjectionMask::leaves(builder.parquet_schema(), [column]);
        for batch in builder.with_projection(mask).build()? {
            let batch = batch.with_context(|| format!("reading {}", path.display()))?;
            let diffs = batch
                .column(0)
                .as_any()
                .downcast_ref::<Int64Array>()
                .with_context(|| format!("`{DIFF_COLUMN}` of {} is not int64", path.display()))?;
            count += diffs.iter().flatten().sum::<i64>();
        }
    }
    Ok(count)
}

/// The current contents of a table, as sorted rows (a row with multiplicity n appears n times).
pub fn read_table(out: &Path, spec: &TableSpec) -> Result<Vec<Vec<Cell>>> {
    let summed = sum_changes(read_changes(out, spec)?);
    let mut rows = Vec::new();
    for (row, count) in summed {
        anyhow::ensure!(
            count > 0,
            "table `{}` has a row with negative count {count}: {row:?}",
            spec.name
        );
        rows.extend(std::iter::repeat_n(row, count as usize));
    }
    Ok(rows)
}
