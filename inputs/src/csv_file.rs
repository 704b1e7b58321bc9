//! Delimited text (CSV, TSV; plain or gzip) through the `csv` crate, by column index.

use std::path::Path;

use csv::{ByteRecord, StringRecord};
use xxhash_rust::xxh3::Xxh3Default;

use crate::dataset::{FileFormat, SourceFile, Stop};
use crate::mapping::Mapping;
use crate::records::{FileBatch, QuarantineRow};
use crate::rows::{truncate_raw, Got, ReadPlan, Row};
use crate::text::{self, Content};

struct Opened {
    reader: csv::Reader<Box<dyn std::io::BufRead>>,
    names: Vec<String>,
    /// The first data record when the file has no header row.
    first: Option<ByteRecord>,
}

/// Opens the file and reads its column names; `Ok(None)` for an empty file.
fn open(content: Content, format: FileFormat) -> Result<Option<Opened>, String> {
    let input = text::open(content, format.gzip)?;
    let mut reader = csv::ReaderBuilder::new()
        .delimiter(format.delimiter)
        .has_headers(false)
        .flexible(true)
        .from_reader(input);
    let mut record = ByteRecord::new();
    match reader.read_byte_record(&mut record) {
        Ok(false) => return Ok(None),
        Ok(true) => {}
        Err(e) => return Err(format!("cannot read the first row: {e}")),
    }
    if format.header {
        let mut names = Vec::with_capacity(record.len());
        for (i, field) in record.iter().enumerate() {
            let field = if i == 0 {
                text::strip_bom(field)
            } else {
                field
            };
            let name = std::str::from_utf8(field)
                .map_err(|_| "the header row is not valid UTF-8".to_string())?;
            names.push(name.to_string());
        }
        Ok(Some(Opened {
            reader,
            names,
            first: None,
        }))
    } else {
        let names = (0..record.len()).map(|i| format!("c{i}")).collect();
        Ok(Some(Opened {
            reader,
            names,
            first: Some(record),
        }))
    }
}

/// The file's column names (`c0, c1, ...` without a header); `None` for an empty file.
pub(crate) fn columns(path: &Path, format: FileFormat) -> Result<Option<Vec<String>>, String> {
    Ok(open(Content::Path(path), format)?.map(|o| o.names))
}

struct CsvRow<'a> {
    record: &'a StringRecord,
    delimiter: u8,
}

impl Row for CsvRow<'_> {
    fn get(&self, idx: usize) -> Got<'_> {
        match self.record.get(idx) {
            Some(s) => Got::Str(std::borrow::Cow::Borrowed(s)),
            None => Got::Null,
        }
    }

    fn raw(&self) -> String {
        let mut out = String::new();
        for (i, f) in self.record.iter().enumerate() {
            if i > 0 {
                out.push(self.delimiter as char);
            }
            out.push_str(f);
        }
        out
    }

    fn row_hash(&self) -> u64 {
        let mut h = Xxh3Default::new();
        for (i, f) in self.record.iter().enumerate() {
            if i > 0 {
                h.update(&[self.delimiter]);
            }
            h.update(f.as_bytes());
        }
        h.digest()
    }
}

fn lossy_raw(record: &ByteRecord, delimiter: u8) -> String {
    let mut bytes = Vec::with_capacity(record.as_slice().len() + record.len());
    for (i, f) in record.iter().enumerate() {
        if i > 0 {
            bytes.push(delimiter);
        }
        bytes.extend_from_slice(f);
    }
    truncate_raw(String::from_utf8_lossy(&bytes).into_owned())
}

/// Reads every record of the file into `batch`.
pub(crate) fn read(
    file: &SourceFile,
    content: Content,
    format: FileFormat,
    mapping: &Mapping,
    batch: &mut FileBatch,
) -> Result<(), Stop> {
    let Some(Opened {
        mut reader,
        names,
        first,
    }) = open(content, format).map_err(Stop::whole)?
    else {
        return Ok(());
    };
    let plan = ReadPlan::resolve(mapping, &file.tables, false, &mut |name| {
        names.iter().position(|c| c == name)
    })
    .map_err(|m| Stop::missing(m, &names))?;
    let expected = names.len();
    let mut rowno: u64 = 0;
    let process = |record: ByteRecord, rowno: u64, batch: &mut FileBatch| -> ByteRecord {
        let bad_row = |record: &ByteRecord, batch: &mut FileBatch| {
            batch.rows_read += 1;
            batch.reject(QuarantineRow {
                file: file.rel.clone(),
                row: rowno,
                field: String::new(),
                reason: "bad_row".to_string(),
                raw: lossy_raw(record, format.delimiter),
            })
        };
        if record.len() != expected {
            bad_row(&record, batch);
            return record;
        }
        match StringRecord::from_byte_record(record) {
            Ok(record) => {
                let row = CsvRow {
                    record: &record,
                    delimiter: format.delimiter,
                };
                plan.apply(&row, rowno, &file.rel, batch);
                record.into_byte_record()
            }
            Err(e) => {
                let record = e.into_byte_record();
                bad_row(&record, batch);
                record
            }
        }
    };
    let mut record = ByteRecord::new();
    if let Some(first) = first {
        rowno += 1;
        record = process(first, rowno, batch);
    }
    loop {
        match reader.read_byte_record(&mut record) {
            Ok(true) => {
                rowno += 1;
                record = process(std::mem::take(&mut record), rowno, batch);
            }
            Ok(false) => return Ok(()),
            Err(e) => return Err(Stop::at(format!("read error: {e}"), rowno, rowno + 1)),
        }
    }
}
