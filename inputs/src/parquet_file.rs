//! Parquet through arrow 59: only the mapped columns are read, each converted once
//! per record batch into a typed form that rows index into.

use std::borrow::Cow;
use std::collections::BTreeSet;
use std::fs::File;
use std::path::Path;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, BooleanArray, Float64Array, Int64Array, StringArray};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Int64Type, TimeUnit};
use arrow::util::display::{ArrayFormatter, FormatOptions};
use parquet::arrow::arrow_reader::{ArrowReaderOptions, ParquetRecordBatchReaderBuilder};
use parquet::arrow::ProjectionMask;
use parquet::file::reader::ChunkReader;

use crate::dataset::{SourceFile, Stop, Table};
use crate::mapping::Mapping;
use crate::records::FileBatch;
use crate::rows::{Got, ReadPlan, Row};
use crate::text::Content;

mod plain;
use plain::PlainEvents;

/// Rows per record batch.
const BATCH_ROWS: usize = 8192;

/// At most this many event rows are reserved ahead from a file's footer row count: a
/// footer can claim any number, and a larger file grows its vectors as rows come.
const MAX_RESERVED_ROWS: usize = 1 << 22;

/// How a timestamp column's integers become milliseconds.
#[derive(Clone, Copy)]
enum Scale {
    Mul(i64),
    Div(i64),
}

impl Scale {
    /// Milliseconds of a column value. Saturating: an overflowing value stays out of
    /// range and is quarantined as `out_of_range`, not read as null.
    fn millis(self, v: i64) -> i64 {
        match self {
            Scale::Mul(m) => v.saturating_mul(m),
            Scale::Div(d) => tidemark_records::timestamp::floor_to_millis(v, d),
        }
    }
}

/// One column of a record batch, in the form rows read it.
enum Col {
    Absent,
    Str(StringArray),
    Int(Int64Array),
    Float(Float64Array),
    Bool(BooleanArray),
    Time(Int64Array, Scale),
    Text(Vec<Option<String>>),
}

fn cast_to(array: &ArrayRef, to: &DataType) -> Option<ArrayRef> {
    cast(array, to).ok()
}

fn as_text(array: &ArrayRef) -> Col {
    let options = FormatOptions::default();
    match ArrayFormatter::try_new(array.as_ref(), &options) {
        Ok(formatter) => Col::Text(
            (0..array.len())
                .map(|i| (!array.is_null(i)).then(|| formatter.value(i).to_string()))
                .collect(),
        ),
        Err(_) => Col::Text(vec![None; array.len()]),
    }
}

impl Col {
    fn of(array: &ArrayRef) -> Col {
        let ints = |a: &ArrayRef| {
            cast_to(a, &DataType::Int64).map(|a| a.as_primitive::<Int64Type>().clone())
        };
        let converted = match array.data_type() {
            DataType::Utf8
            | DataType::LargeUtf8
            | DataType::Utf8View
            | DataType::Dictionary(_, _) => {
                cast_to(array, &DataType::Utf8).map(|a| Col::Str(a.as_string::<i32>().clone()))
            }
            DataType::Int8
            | DataType::Int16
            | DataType::Int32
            | DataType::Int64
            | DataType::UInt8
            | DataType::UInt16
            | DataType::UInt32
            | DataType::UInt64 => ints(array).map(Col::Int),
            DataType::Float16
            | DataType::Float32
            | DataType::Float64
            | DataType::Decimal128(_, _)
            | DataType::Decimal256(_, _) => cast_to(array, &DataType::Float64)
                .map(|a| Col::Float(a.as_primitive::<arrow::datatypes::Float64Type>().clone())),
            DataType::Boolean => Some(Col::Bool(array.as_boolean().clone())),
            DataType::Timestamp(unit, _) => {
                let scale = match unit {
                    TimeUnit::Second => Scale::Mul(1000),
                    TimeUnit::Millisecond => Scale::Mul(1),
                    TimeUnit::Microsecond => Scale::Div(1000),
                    TimeUnit::Nanosecond => Scale::Div(1_000_000),
                };
                ints(array).map(|a| Col::Time(a, scale))
            }
            DataType::Date32 => cast_to(array, &DataType::Int32)
                .and_then(|a| ints(&a))
                .map(|a| Col::Time(a, Scale::Mul(86_400_000))),
            DataType::Date64 => ints(array).map(|a| Col::Time(a, Scale::Mul(1))),
            _ => None,
        };
        converted.unwrap_or_else(|| as_text(array))
    }

    fn get(&self, r: usize) -> Got<'_> {
        match self {
            Col::Absent => Got::Null,
            Col::Str(a) if a.is_valid(r) => Got::Str(Cow::Borrowed(a.value(r))),
            Col::Int(a) if a.is_valid(r) => Got::Int(a.value(r)),
            Col::Float(a) if a.is_valid(r) => Got::Float(a.value(r)),
            Col::Bool(a) if a.is_valid(r) => Got::Bool(a.value(r)),
            Col::Time(a, scale) if a.is_valid(r) => Got::Time(scale.millis(a.value(r))),
            Col::Text(v) => match v.get(r) {
                Some(Some(s)) => Got::Str(Cow::Borrowed(s)),
                _ => Got::Null,
            },
            _ => Got::Null,
        }
    }
}

struct ParquetRow<'a> {
    cols: &'a [Col],
    names: &'a [String],
    row: usize,
}

impl Row for ParquetRow<'_> {
    fn get(&self, idx: usize) -> Got<'_> {
        self.cols[idx].get(self.row)
    }

    /// The row as a JSON object of the columns read, in schema order.
    fn raw(&self) -> String {
        let mut out = String::from("{");
        let mut first = true;
        for (col, name) in self.cols.iter().zip(self.names) {
            if matches!(col, Col::Absent) {
                continue;
            }
            if !first {
                out.push(',');
            }
            first = false;
            out.push_str(&serde_json::to_string(name).unwrap_or_default());
            out.push(':');
            let value = match col.get(self.row) {
                Got::Null => "null".to_string(),
                Got::Int(i) => i.to_string(),
                Got::Float(f) if f.is_finite() => format!("{f}"),
                Got::Float(_) => "null".to_string(),
                Got::Bool(b) => b.to_string(),
                g => serde_json::to_string(g.text().as_deref().unwrap_or("")).unwrap_or_default(),
            };
            out.push_str(&value);
        }
        out.push('}');
        out
    }

    fn row_hash(&self) -> u64 {
        xxhash_rust::xxh3::xxh3_64(self.raw().as_bytes())
    }
}

fn builder<T: ChunkReader + 'static>(
    input: T,
) -> Result<ParquetRecordBatchReaderBuilder<T>, String> {
    // The embedded Arrow schema (IPC bytes in the footer) is not needed — the Parquet
    // schema gives every type tidemark reads — and arrow-ipc can panic on corrupt bytes.
    let options = ArrowReaderOptions::new().with_skip_arrow_metadata(true);
    ParquetRecordBatchReaderBuilder::try_new_with_options(input, options)
        .map_err(|e| format!("invalid Parquet: {e}"))
}

fn open(path: &Path) -> Result<File, String> {
    File::open(path).map_err(|e| format!("cannot open: {e}"))
}

fn names_of<T: ChunkReader + 'static>(builder: &ParquetRecordBatchReaderBuilder<T>) -> Vec<String> {
    builder
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect()
}

/// The file's top-level column names.
pub(crate) fn columns(path: &Path) -> Result<Option<Vec<String>>, String> {
    Ok(Some(names_of(&builder(open(path)?)?)))
}

/// Reads every row of the file (from `content`) into `batch`.
pub(crate) fn read(
    file: &SourceFile,
    content: Content,
    mapping: &Mapping,
    batch: &mut FileBatch,
) -> Result<(), Stop> {
    match content {
        Content::Path(path) => {
            let input = open(path).map_err(Stop::whole)?;
            read_from(builder(input).map_err(Stop::whole)?, file, mapping, batch)
        }
        Content::Bytes(bytes) => read_from(
            builder(bytes.clone()).map_err(Stop::whole)?,
            file,
            mapping,
            batch,
        ),
    }
}

fn read_from<T: ChunkReader + 'static>(
    builder: ParquetRecordBatchReaderBuilder<T>,
    file: &SourceFile,
    mapping: &Mapping,
    batch: &mut FileBatch,
) -> Result<(), Stop> {
    let names = names_of(&builder);
    let mut used = BTreeSet::new();
    let plan = ReadPlan::resolve(mapping, &file.tables, false, &mut |name| {
        let found = names.iter().position(|c| c == name);
        if let Some(i) = found {
            used.insert(i);
        }
        found
    })
    .map_err(|m| Stop::missing(m, &names))?;
    let used: Vec<usize> = if plan.needs_row_hash {
        (0..names.len()).collect()
    } else {
        used.into_iter().collect()
    };
    // Room for every event row at once: growing by doubling copies the rows read so far
    // into fresh pages each time, a quarter of a run's page faults.
    if file.tables.contains(&Table::Events) {
        let rows = usize::try_from(builder.metadata().file_metadata().num_rows()).unwrap_or(0);
        let rows = rows.min(MAX_RESERVED_ROWS);
        batch.events.reserve(rows);
        batch.event_rows.reserve(rows);
    }
    let mask = ProjectionMask::roots(builder.parquet_schema(), used.iter().copied());
    let reader = builder
        .with_projection(mask)
        .with_batch_size(BATCH_ROWS)
        .build()
        .map_err(|e| Stop::whole(format!("invalid Parquet: {e}")))?;
    // Whether rows may take the fast path (see [`plain`]).
    let plain = plan.plain_event_columns();
    let mut rowno: u64 = 0;
    let mut cols: Vec<Col> = names.iter().map(|_| Col::Absent).collect();
    for record_batch in reader {
        let record_batch = record_batch
            .map_err(|e| Stop::at(format!("invalid Parquet: {e}"), rowno, rowno + 1))?;
        if record_batch.num_columns() != used.len() {
            return Err(Stop::at("unexpected Parquet projection", rowno, rowno + 1));
        }
        for (k, &idx) in used.iter().enumerate() {
            let array: ArrayRef = Arc::clone(record_batch.column(k));
            cols[idx] = Col::of(&array);
        }
        let fast = plain
            .as_ref()
            .and_then(|plain| PlainEvents::of(&cols, plain));
        for r in 0..record_batch.num_rows() {
            rowno += 1;
            if let Some(event) = fast.as_ref().and_then(|fast| fast.event(r)) {
                batch.rows_read += 1;
                batch.events.push(event);
                batch.event_rows.push(rowno);
                continue;
            }
            let row = ParquetRow {
                cols: &cols,
                names: &names,
                row: r,
            };
            plan.apply(&row, rowno, &file.rel, batch);
        }
    }
    Ok(())
}
