//! Rendering of generated rows as Parquet, CSV or NDJSON (optionally gzipped), each
//! file written under a temporary name and renamed into place.

use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{
    ArrayRef, Float64Builder, Int64Builder, StringBuilder, TimestampMillisecondBuilder,
};
use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use arrow::record_batch::RecordBatch;
use flate2::write::GzEncoder;
use flate2::GzBuilder;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::{WriterProperties, WriterVersion};
use parquet::schema::types::ColumnPath;

use super::model::{Items, Row, Users, EVENT_TYPES, NO_DURATION, NO_ITEM, PAGES, PAGE_BASE};
use super::{Bad, OutputFormat};
use crate::records::Millis;
use crate::time::{civil_from_days, DAY_MS};

/// Rows per Arrow record batch handed to the Parquet writer.
const BATCH_ROWS: usize = 256 * 1024;

/// The event's `value`: an engagement score from 0.0 to 10.0 for `play`, `like` and
/// `playlist_add` events (a function of the event's counter, so drawing it changes no
/// other column), null for the rest.
fn value_of(row: &Row) -> Option<f64> {
    matches!(
        EVENT_TYPES[row.etype as usize],
        "play" | "like" | "playlist_add"
    )
    .then(|| {
        let mixed = row.seq.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 40;
        (mixed % 101) as f64 / 10.0
    })
}

/// Appends a value (shortest text that reads back as the same double).
fn push_value(buf: &mut Vec<u8>, value: f64) {
    buf.extend_from_slice(format!("{value}").as_bytes());
}
/// Rows per Parquet row group.
const ROW_GROUP_ROWS: usize = 1024 * 1024;

fn to_io(e: impl std::error::Error + Send + Sync + 'static) -> io::Error {
    io::Error::other(e)
}

/// Fixed writer settings so equal data gives equal bytes.
fn writer_properties(no_dictionary: &[&str]) -> io::Result<WriterProperties> {
    let mut builder = WriterProperties::builder()
        .set_writer_version(WriterVersion::PARQUET_1_0)
        .set_compression(Compression::ZSTD(ZstdLevel::try_new(1).map_err(to_io)?))
        .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
        .set_created_by("tidemark generator".to_string());
    for column in no_dictionary {
        builder = builder.set_column_dictionary_enabled(ColumnPath::from(*column), false);
    }
    Ok(builder.build())
}

fn ts_type() -> DataType {
    DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into()))
}

/// A text file being written, gzipped or not.
// The variants' size gap depends on flate2's backend, which deltalake's features change.
#[allow(clippy::large_enum_variant)]
enum TextSink {
    Plain(BufWriter<File>),
    Gz(GzEncoder<BufWriter<File>>),
}

impl TextSink {
    /// Opens `tmp`, gzipped (fast level, mtime 0, no name) when asked.
    fn create(tmp: &Path, gzip: bool) -> io::Result<TextSink> {
        let file = BufWriter::with_capacity(1 << 20, File::create(tmp)?);
        Ok(if gzip {
            TextSink::Gz(
                GzBuilder::new()
                    .mtime(0)
                    .write(file, flate2::Compression::fast()),
            )
        } else {
            TextSink::Plain(file)
        })
    }

    /// Ends the gzip stream (if any) and flushes the file.
    fn finish(self) -> io::Result<()> {
        match self {
            TextSink::Plain(mut file) => file.flush(),
            TextSink::Gz(gz) => gz.finish()?.flush(),
        }
    }
}

impl Write for TextSink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            TextSink::Plain(w) => w.write(buf),
            TextSink::Gz(w) => w.write(buf),
        }
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        match self {
            TextSink::Plain(w) => w.write_all(buf),
            TextSink::Gz(w) => w.write_all(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            TextSink::Plain(w) => w.flush(),
            TextSink::Gz(w) => w.flush(),
        }
    }
}

/// Writes `tmp` with `write`, then renames it to `path` (readers never see a partial file).
pub(super) fn write_atomically(
    tmp: &Path,
    path: &Path,
    write: impl FnOnce(&Path) -> io::Result<()>,
) -> io::Result<()> {
    write(tmp)?;
    fs::rename(tmp, path)
}

fn push_num(buf: &mut Vec<u8>, value: i64) {
    let mut tmp = [0u8; 20];
    let mut i = tmp.len();
    let mut v = value.unsigned_abs();
    loop {
        i -= 1;
        tmp[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    if value < 0 {
        buf.push(b'-');
    }
    buf.extend_from_slice(&tmp[i..]);
}

fn push_digits(buf: &mut Vec<u8>, value: u32, width: usize) {
    let mut tmp = [b'0'; 10];
    let mut v = value;
    for i in (0..width).rev() {
        tmp[i] = b'0' + (v % 10) as u8;
        v /= 10;
    }
    buf.extend_from_slice(&tmp[..width]);
}

/// `YYYY-MM-DD?HH:MM:SS.fff` of the instant `ms` (already shifted to local time).
fn push_datetime(buf: &mut Vec<u8>, ms: Millis, sep: u8) {
    let (y, m, d) = civil_from_days(ms.div_euclid(DAY_MS) as i32);
    let in_day = ms.rem_euclid(DAY_MS);
    push_digits(buf, y as u32, 4);
    buf.push(b'-');
    push_digits(buf, m, 2);
    buf.push(b'-');
    push_digits(buf, d, 2);
    buf.push(sep);
    push_digits(buf, (in_day / 3_600_000) as u32, 2);
    buf.push(b':');
    push_digits(buf, (in_day / 60_000 % 60) as u32, 2);
    buf.push(b':');
    push_digits(buf, (in_day / 1000 % 60) as u32, 2);
    buf.push(b'.');
    push_digits(buf, (in_day % 1000) as u32, 3);
}

/// UTC offsets used by the RFC 3339 form with an offset: (minutes, suffix).
const OFFSETS: [(i64, &str); 4] = [
    (120, "+02:00"),
    (-300, "-05:00"),
    (330, "+05:30"),
    (540, "+09:00"),
];

/// Texts that are not a time in any accepted form.
const BAD_TIMES: [&str; 5] = [
    "not-a-time",
    "2025-13-45 99:00:00",
    "31/12/2025 10:00",
    "yesterday",
    "",
];

/// Text of a row's time in one of the accepted forms (0: `YYYY-MM-DD HH:MM:SS.fff`,
/// 1: RFC 3339 `Z`, 2: RFC 3339 with an offset, 3: epoch milliseconds). Returns whether
/// the text is a bare number (so JSON writes it unquoted).
fn push_event_time(buf: &mut Vec<u8>, row: &Row) -> bool {
    if row.bad == Bad::UnparsableTs as u8 {
        buf.extend_from_slice(BAD_TIMES[(row.seq % BAD_TIMES.len() as u64) as usize].as_bytes());
        return false;
    }
    match row.style & 3 {
        0 => push_datetime(buf, row.ts, b' '),
        1 => {
            push_datetime(buf, row.ts, b'T');
            buf.push(b'Z');
        }
        2 => {
            let (minutes, suffix) = OFFSETS[(row.seq % OFFSETS.len() as u64) as usize];
            push_datetime(buf, row.ts + minutes * 60_000, b'T');
            buf.extend_from_slice(suffix.as_bytes());
        }
        _ => {
            push_num(buf, row.ts);
            return true;
        }
    }
    false
}

/// The event_type text of a row: canonical, a spelling variant that normalises to it
/// (`Play`, `play `, ` PLAY`), or an empty / blank text for the invalid rows.
fn push_event_type(buf: &mut Vec<u8>, row: &Row) {
    if row.bad == Bad::EmptyEventType as u8 {
        if row.seq % 2 == 1 {
            buf.extend_from_slice(b"  ");
        }
        return;
    }
    let name = EVENT_TYPES[row.etype as usize].as_bytes();
    match row.style >> 2 {
        1 => {
            buf.push(name[0].to_ascii_uppercase());
            buf.extend_from_slice(&name[1..]);
        }
        2 => {
            buf.extend_from_slice(name);
            buf.push(b' ');
        }
        3 => {
            buf.push(b' ');
            buf.extend(name.iter().map(|c| c.to_ascii_uppercase()));
        }
        _ => buf.extend_from_slice(name),
    }
}

/// Everything the event writer needs besides the rows.
pub(super) struct EventWriter<'a> {
    pub users: &'a Users,
    pub items: &'a Items,
    pub format: OutputFormat,
    pub gzip: bool,
    pub salt: u64,
}

/// Null user_id instead of an empty text, for half the empty-user rows of the formats
/// that have nulls.
fn null_user(row: &Row) -> bool {
    row.bad == Bad::EmptyUser as u8 && row.seq.is_multiple_of(2)
}

impl EventWriter<'_> {
    /// The event_id of a generation counter: `e` + 16 hex digits of a bijection of it.
    pub fn push_event_id(&self, buf: &mut Vec<u8>, seq: u64) {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let id = seq.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ self.salt;
        buf.push(b'e');
        for shift in (0..16).rev() {
            buf.push(HEX[((id >> (shift * 4)) & 15) as usize]);
        }
    }

    fn user_text(&self, row: &Row) -> &str {
        if row.bad == Bad::EmptyUser as u8 {
            ""
        } else {
            &self.users.ids[row.user as usize]
        }
    }

    fn item_text(&self, row: &Row) -> Option<&str> {
        match row.item {
            NO_ITEM => None,
            i if i >= PAGE_BASE => Some(PAGES[(i - PAGE_BASE) as usize]),
            i => Some(&self.items.ids[i as usize]),
        }
    }

    /// Writes one events file (temporary name, then rename).
    pub fn write(&self, tmp: &Path, path: &Path, rows: &[Row]) -> io::Result<()> {
        write_atomically(tmp, path, |tmp| match self.format {
            OutputFormat::Parquet => self.write_parquet(tmp, rows),
            OutputFormat::Csv | OutputFormat::Ndjson => self.write_text(tmp, rows),
        })
    }

    fn write_parquet(&self, tmp: &Path, rows: &[Row]) -> io::Result<()> {
        let schema = Arc::new(Schema::new(vec![
            Field::new("event_id", DataType::Utf8, false),
            Field::new("user_id", DataType::Utf8, true),
            Field::new("ts", ts_type(), false),
            Field::new("event_type", DataType::Utf8, true),
            Field::new("item_id", DataType::Utf8, true),
            Field::new("duration_ms", DataType::Int64, true),
            Field::new("value", DataType::Float64, true),
        ]));
        let file = BufWriter::with_capacity(1 << 20, File::create(tmp)?);
        let props = writer_properties(&["event_id"])?;
        let mut writer = ArrowWriter::try_new(file, schema.clone(), Some(props)).map_err(to_io)?;
        let mut buf = Vec::with_capacity(64);
        for chunk in rows.chunks(BATCH_ROWS) {
            let n = chunk.len();
            let mut ids = StringBuilder::with_capacity(n, n * 17);
            let mut users = StringBuilder::with_capacity(n, n * 8);
            let mut ts = TimestampMillisecondBuilder::with_capacity(n).with_timezone("UTC");
            let mut types = StringBuilder::with_capacity(n, n * 6);
            let mut items = StringBuilder::with_capacity(n, n * 8);
            let mut durations = Int64Builder::with_capacity(n);
            let mut values = Float64Builder::with_capacity(n);
            for row in chunk {
                buf.clear();
                self.push_event_id(&mut buf, row.seq);
                ids.append_value(std::str::from_utf8(&buf).expect("ascii id"));
                if null_user(row) {
                    users.append_null();
                } else {
                    users.append_value(self.user_text(row));
                }
                ts.append_value(row.ts);
                buf.clear();
                push_event_type(&mut buf, row);
                types.append_value(std::str::from_utf8(&buf).expect("ascii type"));
                items.append_option(self.item_text(row));
                durations.append_option((row.dur != NO_DURATION).then_some(row.dur));
                values.append_option(value_of(row));
            }
            let columns: Vec<ArrayRef> = vec![
                Arc::new(ids.finish()),
                Arc::new(users.finish()),
                Arc::new(ts.finish()),
                Arc::new(types.finish()),
                Arc::new(items.finish()),
                Arc::new(durations.finish()),
                Arc::new(values.finish()),
            ];
            let batch = RecordBatch::try_new(schema.clone(), columns).map_err(to_io)?;
            writer.write(&batch).map_err(to_io)?;
        }
        let mut file = writer.into_inner().map_err(to_io)?;
        file.flush()
    }

    fn write_text(&self, tmp: &Path, rows: &[Row]) -> io::Result<()> {
        let mut sink = TextSink::create(tmp, self.gzip)?;
        let mut buf = Vec::with_capacity(1 << 16);
        let csv = self.format == OutputFormat::Csv;
        if csv {
            buf.extend_from_slice(b"event_id,user_id,ts,event_type,item_id,duration_ms,value\n");
        }
        for row in rows {
            if csv {
                self.push_event_id(&mut buf, row.seq);
                buf.push(b',');
                buf.extend_from_slice(self.user_text(row).as_bytes());
                buf.push(b',');
                push_event_time(&mut buf, row);
                buf.push(b',');
                push_event_type(&mut buf, row);
                buf.push(b',');
                if let Some(item) = self.item_text(row) {
                    buf.extend_from_slice(item.as_bytes());
                }
                buf.push(b',');
                if row.dur != NO_DURATION {
                    push_num(&mut buf, row.dur);
                }
                buf.push(b',');
                if let Some(value) = value_of(row) {
                    push_value(&mut buf, value);
                }
                buf.push(b'\n');
            } else {
                buf.extend_from_slice(b"{\"event_id\":\"");
                self.push_event_id(&mut buf, row.seq);
                if null_user(row) {
                    buf.extend_from_slice(b"\",\"user_id\":null,\"ts\":");
                } else {
                    buf.extend_from_slice(b"\",\"user_id\":\"");
                    buf.extend_from_slice(self.user_text(row).as_bytes());
                    buf.extend_from_slice(b"\",\"ts\":");
                }
                let at = buf.len();
                buf.push(b'"');
                if push_event_time(&mut buf, row) {
                    buf.remove(at);
                } else {
                    buf.push(b'"');
                }
                buf.extend_from_slice(b",\"event_type\":\"");
                push_event_type(&mut buf, row);
                buf.extend_from_slice(b"\",\"item_id\":");
                match self.item_text(row) {
                    Some(item) => {
                        buf.push(b'"');
                        buf.extend_from_slice(item.as_bytes());
                        buf.push(b'"');
                    }
                    None => buf.extend_from_slice(b"null"),
                }
                buf.extend_from_slice(b",\"duration_ms\":");
                if row.dur != NO_DURATION {
                    push_num(&mut buf, row.dur);
                } else {
                    buf.extend_from_slice(b"null");
                }
                buf.extend_from_slice(b",\"value\":");
                match value_of(row) {
                    Some(value) => push_value(&mut buf, value),
                    None => buf.extend_from_slice(b"null"),
                }
                buf.extend_from_slice(b"}\n");
            }
            if buf.len() >= 1 << 16 {
                sink.write_all(&buf)?;
                buf.clear();
            }
        }
        sink.write_all(&buf)?;
        sink.finish()
    }
}

/// One column of a small table (users, subscriptions, items).
pub(super) enum Column {
    /// A text column.
    Str(&'static str, Vec<Option<String>>),
    /// A timestamp column (ms, UTC).
    Ts(&'static str, Vec<Option<Millis>>),
    /// An integer column.
    Int(&'static str, Vec<Option<i64>>),
}

impl Column {
    fn name(&self) -> &'static str {
        match self {
            Column::Str(n, _) | Column::Ts(n, _) | Column::Int(n, _) => n,
        }
    }

    fn len(&self) -> usize {
        match self {
            Column::Str(_, v) => v.len(),
            Column::Ts(_, v) | Column::Int(_, v) => v.len(),
        }
    }
}

/// Writes a small table in `format` (temporary name, then rename). Text times use the
/// `YYYY-MM-DD HH:MM:SS.fff` form; nulls are empty CSV fields and JSON nulls.
pub(super) fn write_table(
    tmp: &Path,
    path: &Path,
    format: OutputFormat,
    gzip: bool,
    columns: &[Column],
) -> io::Result<()> {
    write_atomically(tmp, path, |tmp| match format {
        OutputFormat::Parquet => write_table_parquet(tmp, columns),
        OutputFormat::Csv => write_table_csv(tmp, gzip, columns),
        OutputFormat::Ndjson => write_table_ndjson(tmp, gzip, columns),
    })
}

fn write_table_parquet(tmp: &Path, columns: &[Column]) -> io::Result<()> {
    let mut fields = Vec::new();
    let mut arrays: Vec<ArrayRef> = Vec::new();
    for column in columns {
        match column {
            Column::Str(name, values) => {
                let nullable = values.iter().any(Option::is_none);
                fields.push(Field::new(*name, DataType::Utf8, nullable));
                let mut b = StringBuilder::new();
                values.iter().for_each(|v| b.append_option(v.as_deref()));
                arrays.push(Arc::new(b.finish()));
            }
            Column::Ts(name, values) => {
                let nullable = values.iter().any(Option::is_none);
                fields.push(Field::new(*name, ts_type(), nullable));
                let mut b = TimestampMillisecondBuilder::new().with_timezone("UTC");
                values.iter().for_each(|v| b.append_option(*v));
                arrays.push(Arc::new(b.finish()));
            }
            Column::Int(name, values) => {
                fields.push(Field::new(*name, DataType::Int64, true));
                let mut b = Int64Builder::new();
                values.iter().for_each(|v| b.append_option(*v));
                arrays.push(Arc::new(b.finish()));
            }
        }
    }
    let schema = Arc::new(Schema::new(fields));
    let batch = RecordBatch::try_new(schema.clone(), arrays).map_err(to_io)?;
    let file = BufWriter::new(File::create(tmp)?);
    let mut writer =
        ArrowWriter::try_new(file, schema, Some(writer_properties(&[])?)).map_err(to_io)?;
    writer.write(&batch).map_err(to_io)?;
    let mut file = writer.into_inner().map_err(to_io)?;
    file.flush()
}

fn cell_text(column: &Column, row: usize, buf: &mut Vec<u8>) -> Option<()> {
    match column {
        Column::Str(_, v) => buf.extend_from_slice(v[row].as_ref()?.as_bytes()),
        Column::Ts(_, v) => push_datetime(buf, v[row]?, b' '),
        Column::Int(_, v) => push_num(buf, v[row]?),
    }
    Some(())
}

fn write_table_csv(tmp: &Path, gzip: bool, columns: &[Column]) -> io::Result<()> {
    let mut writer = csv::Writer::from_writer(TextSink::create(tmp, gzip)?);
    writer.write_record(columns.iter().map(Column::name))?;
    let rows = columns.first().map_or(0, Column::len);
    let mut cells: Vec<Vec<u8>> = vec![Vec::new(); columns.len()];
    for row in 0..rows {
        for (column, cell) in columns.iter().zip(&mut cells) {
            cell.clear();
            cell_text(column, row, cell);
        }
        writer.write_record(&cells)?;
    }
    let sink = writer
        .into_inner()
        .map_err(|e| io::Error::other(e.to_string()))?;
    sink.finish()
}

fn write_table_ndjson(tmp: &Path, gzip: bool, columns: &[Column]) -> io::Result<()> {
    let mut sink = TextSink::create(tmp, gzip)?;
    let rows = columns.first().map_or(0, Column::len);
    let mut line = Vec::with_capacity(256);
    let mut cell = Vec::with_capacity(64);
    for row in 0..rows {
        line.clear();
        line.push(b'{');
        for (i, column) in columns.iter().enumerate() {
            if i > 0 {
                line.push(b',');
            }
            serde_json::to_writer(&mut line, column.name()).map_err(to_io)?;
            line.push(b':');
            cell.clear();
            match (column, cell_text(column, row, &mut cell)) {
                (_, None) => line.extend_from_slice(b"null"),
                (Column::Int(..), Some(())) => line.extend_from_slice(&cell),
                (_, Some(())) => {
                    let text = std::str::from_utf8(&cell).expect("utf-8 cell");
                    serde_json::to_writer(&mut line, text).map_err(to_io)?;
                }
            }
        }
        line.extend_from_slice(b"}\n");
        sink.write_all(&line)?;
    }
    sink.finish()
}

/// The final and temporary path of a table file.
pub(super) fn paths(out_dir: &Path, tmp_dir: &Path, table: &str, name: &str) -> (PathBuf, PathBuf) {
    (
        out_dir.join(table).join(name),
        tmp_dir.join(format!("{table}-{name}")),
    )
}
