//! Conversion between output rows ([`Cell`]s in a [`TableSpec`]'s column order) and
//! Arrow record batches, in both directions. Sinks write with it, readers read with it.

use std::sync::Arc;

use anyhow::{bail, Context, Result};
use arrow::array::{
    Array, ArrayRef, BooleanArray, BooleanBuilder, Date32Array, Date32Builder, Float64Array,
    Float64Builder, Int64Array, Int64Builder, RecordBatch, StringArray, StringBuilder,
    TimestampMicrosecondArray, TimestampMicrosecondBuilder,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use tidemark_dataflows::model::tables::{Cell, ColumnType, TableSpec};

/// Name of the logical-time column of a change stream.
pub const TIME_COLUMN: &str = "time";
/// Name of the +1/-1 column of a change stream.
pub const DIFF_COLUMN: &str = "diff";

/// The Arrow type of a contract column type.
pub fn arrow_type(ty: ColumnType) -> DataType {
    match ty {
        ColumnType::Str => DataType::Utf8,
        ColumnType::Int => DataType::Int64,
        ColumnType::Float => DataType::Float64,
        ColumnType::Bool => DataType::Boolean,
        // Microseconds, as Spark and Delta write instants (contract "Outputs").
        ColumnType::Timestamp => DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
        ColumnType::Date => DataType::Date32,
    }
}

/// The schema of a table, optionally followed by the change-stream columns `time`, `diff`.
pub fn schema(spec: &TableSpec, with_changes: bool) -> SchemaRef {
    let mut fields: Vec<Field> = spec
        .columns
        .iter()
        .map(|c| Field::new(c.name, arrow_type(c.ty), c.nullable))
        .collect();
    if with_changes {
        fields.push(Field::new(TIME_COLUMN, DataType::Int64, false));
        fields.push(Field::new(DIFF_COLUMN, DataType::Int64, false));
    }
    Arc::new(Schema::new(fields))
}

/// One change of a table: the row, the logical time it happened at, and +1/-1 (or a multiple).
pub type Change = (Vec<Cell>, u64, i64);

/// Builds a change-stream record batch from the changes of logical time `time` (rows
/// must match `spec`).
pub fn changes_to_batch(
    spec: &TableSpec,
    time: u64,
    changes: &[(Vec<Cell>, i64)],
) -> Result<RecordBatch> {
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(spec.columns.len() + 2);
    for (index, column) in spec.columns.iter().enumerate() {
        let cells = changes.iter().map(|(row, _)| &row[index]);
        columns.push(build_column(column.ty, column.name, cells)?);
    }
    let time = i64::try_from(time).context("logical time beyond int64")?;
    let times = Int64Array::from_value(time, changes.len());
    let mut diffs = Int64Builder::with_capacity(changes.len());
    for (_, diff) in changes {
        diffs.append_value(*diff);
    }
    columns.push(Arc::new(times));
    columns.push(Arc::new(diffs.finish()));
    Ok(RecordBatch::try_new(schema(spec, true), columns)?)
}

/// Builds a table-contents record batch (no `time`/`diff`) from rows.
pub fn rows_to_batch(spec: &TableSpec, rows: &[Vec<Cell>]) -> Result<RecordBatch> {
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(spec.columns.len());
    for (index, column) in spec.columns.iter().enumerate() {
        columns.push(build_column(
            column.ty,
            column.name,
            rows.iter().map(|row| &row[index]),
        )?);
    }
    Ok(RecordBatch::try_new(schema(spec, false), columns)?)
}

fn build_column<'a>(
    ty: ColumnType,
    name: &str,
    cells: impl ExactSizeIterator<Item = &'a Cell>,
) -> Result<ArrayRef> {
    let n = cells.len();
    // `$value` turns the cell's value into what the builder appends: the value itself
    // for numbers, a borrowed `&str` for texts (no copy of the string first).
    macro_rules! fill {
        ($builder:expr, $variant:path) => {
            fill!($builder, $variant, v => *v)
        };
        ($builder:expr, $variant:path, $v:ident => $value:expr) => {{
            let mut builder = $builder;
            for cell in cells {
                match cell {
                    $variant($v) => builder.append_value($value),
                    Cell::Null => builder.append_null(),
                    other => bail!("column `{name}`: expected {:?}, found {other:?}", ty),
                }
            }
            Arc::new(builder.finish()) as ArrayRef
        }};
    }
    Ok(match ty {
        ColumnType::Str => fill!(
            StringBuilder::with_capacity(n, n * 16),
            Cell::Str,
            v => &**v
        ),
        ColumnType::Int => fill!(Int64Builder::with_capacity(n), Cell::Int),
        ColumnType::Float => fill!(Float64Builder::with_capacity(n), Cell::Float),
        ColumnType::Bool => fill!(BooleanBuilder::with_capacity(n), Cell::Bool),
        ColumnType::Date => fill!(Date32Builder::with_capacity(n), Cell::Date),
        ColumnType::Timestamp => {
            // Cells hold milliseconds; the column holds microseconds.
            let mut builder = TimestampMicrosecondBuilder::with_capacity(n).with_timezone("UTC");
            for cell in cells {
                match cell {
                    Cell::Timestamp(ms) => builder.append_value(ms.saturating_mul(1000)),
                    Cell::Null => builder.append_null(),
                    other => bail!("column `{name}`: expected {:?}, found {other:?}", ty),
                }
            }
            Arc::new(builder.finish()) as ArrayRef
        }
    })
}

/// Reads the rows of a record batch written with [`schema`] back into cells; with
/// `with_changes`, also the `time` and `diff` of each row.
pub fn batch_to_changes(
    spec: &TableSpec,
    batch: &RecordBatch,
    with_changes: bool,
) -> Result<Vec<Change>> {
    let n = batch.num_rows();
    let mut rows: Vec<Vec<Cell>> = (0..n)
        .map(|_| Vec::with_capacity(spec.columns.len()))
        .collect();
    for column in spec.columns {
        let array = batch
            .column_by_name(column.name)
            .with_context(|| format!("table `{}` has no column `{}`", spec.name, column.name))?;
        for (i, row) in rows.iter_mut().enumerate() {
            row.push(
                read_cell(column.ty, array.as_ref(), i)
                    .with_context(|| format!("column `{}`", column.name))?,
            );
        }
    }
    let (times, diffs) = if with_changes {
        let time = batch
            .column_by_name(TIME_COLUMN)
            .context("change stream has no `time` column")?;
        let diff = batch
            .column_by_name(DIFF_COLUMN)
            .context("change stream has no `diff` column")?;
        let time = time
            .as_any()
            .downcast_ref::<Int64Array>()
            .context("`time` is not int64")?
            .clone();
        let diff = diff
            .as_any()
            .downcast_ref::<Int64Array>()
            .context("`diff` is not i64")?
            .clone();
        (Some(time), Some(diff))
    } else {
        (None, None)
    };
    Ok(rows
        .into_iter()
        .enumerate()
        .map(|(i, row)| {
            (
                row,
                times.as_ref().map_or(0, |t| t.value(i).max(0) as u64),
                diffs.as_ref().map_or(1, |d| d.value(i)),
            )
        })
        .collect())
}

fn read_cell(ty: ColumnType, array: &dyn Array, i: usize) -> Result<Cell> {
    if array.is_null(i) {
        return Ok(Cell::Null);
    }
    fn typed<T: 'static>(array: &dyn Array) -> Result<&T> {
        array
            .as_any()
            .downcast_ref::<T>()
            .with_context(|| format!("unexpected type {:?}", array.data_type()))
    }
    Ok(match ty {
        ColumnType::Str => Cell::Str(typed::<StringArray>(array)?.value(i).into()),
        ColumnType::Int => Cell::Int(typed::<Int64Array>(array)?.value(i)),
        ColumnType::Float => Cell::Float(typed::<Float64Array>(array)?.value(i)),
        ColumnType::Bool => Cell::Bool(typed::<BooleanArray>(array)?.value(i)),
        ColumnType::Date => Cell::Date(typed::<Date32Array>(array)?.value(i)),
        ColumnType::Timestamp => Cell::Timestamp(
            typed::<TimestampMicrosecondArray>(array)?
                .value(i)
                .div_euclid(1000),
        ),
    })
}
