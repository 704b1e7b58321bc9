//! Reads change streams back: every change of a table, or the table's current
//! contents (diffs summed per row). Used by `report`, the run summary and tests.

use std::collections::BTreeMap;
use std::fs::File;
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use arrow::array::{BooleanArray, Date32Array, Int64Array};
use arrow::compute::filter_record_batch;
use arrow::record_batch::RecordBatch;
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

/// The changes of a table whose first column is a date (`day`): first the net row count
/// of every day, read from the `day` and `diff` columns alone; then, for the days
/// `wanted` picks from those counts, the range with their changes, the other days' rows
/// filtered out before they are decoded into cells; `None` when `wanted` picks none.
/// `report` shows one month of `engagement_by_dimension`, the largest change stream,
/// this way.
pub fn read_changes_of_days(
    out: &Path,
    spec: &TableSpec,
    wanted: impl FnOnce(&BTreeMap<i32, i64>) -> Option<RangeInclusive<i32>>,
) -> Result<Option<(RangeInclusive<i32>, Vec<Change>)>> {
    let day_column = spec.columns.first().map(|c| c.name).unwrap_or_default();
    let files = change_files(out, spec)?;
    let mut rows_per_day: BTreeMap<i32, i64> = BTreeMap::new();
    for path in &files {
        for batch in batches(path, Some(&[day_column, DIFF_COLUMN]))? {
            let batch = batch?;
            let days = column::<Date32Array>(&batch, day_column, path)?;
            let diffs = column::<Int64Array>(&batch, DIFF_COLUMN, path)?;
            for (day, diff) in days.iter().zip(diffs.iter()) {
                if let (Some(day), Some(diff)) = (day, diff) {
                    *rows_per_day.entry(day).or_default() += diff;
                }
            }
        }
    }
    let Some(range) = wanted(&rows_per_day) else {
        return Ok(None);
    };
    let mut changes = Vec::new();
    for path in &files {
        for batch in batches(path, None)? {
            let batch = batch?;
            let keep: BooleanArray = column::<Date32Array>(&batch, day_column, path)?
                .iter()
                .map(|day| Some(day.is_some_and(|day| range.contains(&day))))
                .collect();
            let batch = filter_record_batch(&batch, &keep)?;
            changes.extend(
                batch_to_changes(spec, &batch, true)
                    .with_context(|| format!("in {}", path.display()))?,
            );
        }
    }
    Ok(Some((range, changes)))
}

/// The record batches of the Parquet file at `path`, of the named columns only when
/// `columns` names them (a missing one is an error naming the file).
fn batches<'p>(
    path: &'p Path,
    columns: Option<&[&str]>,
) -> Result<impl Iterator<Item = Result<RecordBatch>> + use<'p>> {
    let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut builder = ParquetRecordBatchReaderBuilder::try_new(file)
        .with_context(|| format!("reading {}", path.display()))?;
    if let Some(columns) = columns {
        let leaves = columns
            .iter()
            .map(|name| {
                builder
                    .parquet_schema()
                    .columns()
                    .iter()
                    .position(|c| c.name() == *name)
                    .with_context(|| format!("{} has no `{name}` column", path.display()))
            })
            .collect::<Result<Vec<_>>>()?;
        let mask = ProjectionMask::leaves(builder.parquet_schema(), leaves);
        builder = builder.with_projection(mask);
    }
    Ok(builder
        .build()?
        .map(move |batch| batch.with_context(|| format!("reading {}", path.display()))))
}

/// The column `name` of `batch` (read from `path`) as an array of type `A`.
fn column<'a, A: 'static>(batch: &'a RecordBatch, name: &str, path: &Path) -> Result<&'a A> {
    batch
        .column_by_name(name)
        .and_then(|c| c.as_any().downcast_ref::<A>())
        .with_context(|| {
            format!(
                "`{name}` of {} is not {}",
                path.display(),
                std::any::type_name::<A>()
            )
        })
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
    let mut rows = Vec::new();
    for batch in batches(path, None)? {
        rows.extend(
            batch_to_changes(spec, &batch?, with_changes)
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
        for batch in batches(&path, Some(&[DIFF_COLUMN]))? {
            let batch = batch?;
            count += column::<Int64Array>(&batch, DIFF_COLUMN, &path)?
                .iter()
                .flatten()
                .sum::<i64>();
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sink::changes::write_change_file;
    use tidemark_dataflows::metrics::engagement_by_dimension::ENGAGEMENT_BY_DIMENSION;

    /// A change of one `engagement_by_dimension` row: day, member, events.
    fn change(day: i32, member: &str, events: i64, diff: i64) -> (Vec<Cell>, i64) {
        let row = vec![
            Cell::Date(day),
            Cell::Str("genre".into()),
            Cell::Str(member.into()),
            Cell::Int(1),
            Cell::Int(events),
            Cell::Int(0),
            Cell::Null,
            Cell::Int(0),
        ];
        (row, diff)
    }

    /// Reading only some days gives exactly those days' rows of the whole table, and the
    /// days are chosen from every day's net row count (a day whose rows were all taken
    /// back counts none).
    #[test]
    fn the_changes_of_some_days_are_those_days_of_the_whole_table() {
        let out = tempfile::tempdir().unwrap();
        let spec = ENGAGEMENT_BY_DIMENSION;
        let first = vec![
            change(100, "pop", 3, 1),
            change(101, "pop", 4, 1),
            change(130, "rock", 2, 1),
            change(131, "rock", 5, 1),
        ];
        let second = vec![
            change(101, "pop", 4, -1),
            change(101, "pop", 6, 1),
            change(131, "rock", 5, -1),
            change(129, "jazz", 1, 1),
        ];
        write_change_file(out.path(), spec, 0, 1, &first).unwrap();
        write_change_file(out.path(), spec, 0, 2, &second).unwrap();

        let mut counts = BTreeMap::new();
        let (range, some) = read_changes_of_days(out.path(), &spec, |rows_per_day| {
            counts = rows_per_day.clone();
            let last = rows_per_day.iter().rev().find(|(_, n)| **n > 0)?.0;
            Some(101..=*last)
        })
        .unwrap()
        .expect("a range is picked");
        assert_eq!(range, 101..=130);
        let expected_counts: BTreeMap<i32, i64> =
            [(100, 1), (101, 1), (129, 1), (130, 1), (131, 0)].into();
        assert_eq!(counts, expected_counts);
        let whole = read_table(out.path(), &spec).unwrap();
        let wanted: Vec<Vec<Cell>> = whole
            .into_iter()
            .filter(|row| matches!(row[0], Cell::Date(day) if (101..=130).contains(&day)))
            .collect();
        let summed: Vec<Vec<Cell>> = sum_changes(some).into_keys().collect();
        assert_eq!(summed, wanted);
        assert_eq!(summed.len(), 3, "{summed:?}");
        // No day chosen: nothing read.
        assert!(read_changes_of_days(out.path(), &spec, |_| None)
            .unwrap()
            .is_none());
    }
}
