//! A dataset directory and its mapping: finding the input files ([`Dataset::discover`]),
//! checking their columns, and reading each into a [`FileBatch`] ([`Dataset::read`]).

use std::collections::BTreeMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::InputError;
use crate::mapping::{Format, Mapping, TableMapping};
use crate::records::{FileBatch, QuarantineRow};
use crate::rows::{truncate_raw, Missing, ReadPlan};
use crate::text::Content;
use crate::{csv_file, ndjson_file, parquet_file};

/// A contract input table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Table {
    /// `events/`: one row per user action.
    Events,
    /// `users/`: one row per customer.
    Users,
    /// `subscriptions/`: plan changes over time.
    Subscriptions,
    /// `items/`: catalogue.
    Items,
}

impl Table {
    /// Every table, in the order tidemark lists them.
    pub const ALL: [Table; 4] = [
        Table::Events,
        Table::Users,
        Table::Subscriptions,
        Table::Items,
    ];

    /// The table's name (also its default directory and mapping section).
    pub fn name(self) -> &'static str {
        match self {
            Table::Events => "events",
            Table::Users => "users",
            Table::Subscriptions => "subscriptions",
            Table::Items => "items",
        }
    }

    /// The contract columns of the table, in contract order.
    pub fn fields(self) -> &'static [&'static str] {
        match self {
            Table::Events => &[
                "event_id",
                "user_id",
                "ts",
                "event_type",
                "item_id",
                "duration_ms",
                "session_id",
                "value",
            ],
            Table::Users => &["user_id", "signup_ts", "country", "plan"],
            Table::Subscriptions => &["user_id", "ts", "plan"],
            Table::Items => &["item_id", "artist_id", "genre", "title", "duration_ms"],
        }
    }

    /// Contract columns that must come from the source (mapped, or a same-named column).
    /// `event_id` is not among them: without one it is a hash of the whole row.
    pub fn required_fields(self) -> &'static [&'static str] {
        match self {
            Table::Events => &["user_id", "ts", "event_type"],
            Table::Users => &["user_id", "plan"],
            Table::Subscriptions => &["user_id", "ts", "plan"],
            Table::Items => &["item_id"],
        }
    }
}

/// One input file and the tables it feeds.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SourceFile {
    /// Where the file is.
    pub path: PathBuf,
    /// The path relative to the dataset directory, with `/` separators.
    pub rel: String,
    /// The tables whose `files` globs match it, in [`Table::ALL`] order.
    pub tables: Vec<Table>,
}

/// A dataset directory and the mapping that reads it.
#[derive(Clone, Debug, PartialEq)]
pub struct Dataset {
    /// The dataset directory; mapping globs are relative to it.
    pub root: PathBuf,
    /// How its files become contract tables.
    pub mapping: Mapping,
    /// Rule-breaking rows listed per file before the rest are only counted (see
    /// [`crate::records::BadRows`]; 0 = no cap).
    pub max_bad_rows: usize,
}

/// How one file is parsed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct FileFormat {
    pub(crate) format: Format,
    pub(crate) gzip: bool,
    pub(crate) delimiter: u8,
    pub(crate) header: bool,
}

/// The parse settings of a file read through `tm`, or `None` when its format is unknown.
pub(crate) fn file_format(rel: &str, tm: &TableMapping) -> Option<FileFormat> {
    let lower = rel.to_ascii_lowercase();
    let (stem, gzip) = match lower.strip_suffix(".gz") {
        Some(stem) => (stem, true),
        None => (lower.as_str(), false),
    };
    let ext = stem.rsplit_once('.').map(|(_, e)| e).unwrap_or("");
    let by_ext = match ext {
        "parquet" | "pq" if !gzip => Some(Format::Parquet),
        "csv" | "tsv" => Some(Format::Csv),
        "ndjson" | "jsonl" | "json" => Some(Format::Ndjson),
        _ => None,
    };
    let format = tm.format.or(by_ext)?;
    if format == Format::Parquet && gzip {
        return None;
    }
    let default_delimiter = if ext == "tsv" { b'\t' } else { b',' };
    Some(FileFormat {
        format,
        gzip,
        delimiter: tm.delimiter.unwrap_or(default_delimiter),
        header: tm.header,
    })
}

/// Why reading a file stopped early.
#[derive(Debug)]
pub(crate) enum Stop {
    /// The file (from `next_row` on; 0 = all of it) cannot be read.
    Unreadable { message: String, next_row: u64 },
    /// The mapping needs a column the file lacks.
    MissingColumn {
        column: String,
        table: Table,
        available: Vec<String>,
    },
}

impl Stop {
    /// A failure at `next_row` (the row that could not be read), 0 when no row was read yet.
    pub(crate) fn at(message: impl std::fmt::Display, rows_read: u64, next_row: u64) -> Stop {
        Stop::Unreadable {
            message: message.to_string(),
            next_row: if rows_read == 0 { 0 } else { next_row },
        }
    }

    /// A failure before any row was read.
    pub(crate) fn whole(message: impl std::fmt::Display) -> Stop {
        Stop::Unreadable {
            message: message.to_string(),
            next_row: 0,
        }
    }

    pub(crate) fn missing(m: Missing, available: &[String]) -> Stop {
        Stop::MissingColumn {
            column: m.0,
            table: m.1,
            available: available.to_vec(),
        }
    }
}

fn abbreviate(columns: &[String]) -> String {
    let mut text = columns
        .iter()
        .take(30)
        .map(String::as_str)
        .collect::<Vec<_>>()
        .join(", ");
    if columns.len() > 30 {
        text.push_str(&format!(", ... ({} columns)", columns.len()));
    }
    if columns.is_empty() {
        text.push_str("no columns");
    }
    text
}

fn ignored(rel: &str) -> bool {
    let path = Path::new(rel);
    let hidden = path.components().any(|c| match c {
        Component::Normal(name) => {
            let name = name.to_string_lossy();
            name.starts_with('.') || name.starts_with('_')
        }
        _ => false,
    });
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    hidden || name.ends_with(".tmp") || name.ends_with(".crc") || name == "tidemark.toml"
}

fn rel_of(root: &Path, path: &Path) -> String {
    let rel = path.strip_prefix(root).unwrap_or(path);
    rel.components()
        .filter(|c| !matches!(c, Component::CurDir))
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join("/")
}

impl Dataset {
    /// Opens a dataset dir; mapping from `mapping_file` if given, else `<root>/tidemark.toml`
    /// if present, else the default (contract names, `<table>/*`).
    pub fn open(root: &Path, mapping_file: Option<&Path>) -> Result<Dataset, InputError> {
        if !root.is_dir() {
            return Err(InputError::NoDataset(root.to_path_buf()));
        }
        let own = root.join("tidemark.toml");
        let mapping = match mapping_file {
            Some(file) => Mapping::load(file)?,
            None if own.is_file() => Mapping::load(&own)?,
            None => Mapping::default(),
        };
        Ok(Dataset {
            root: root.to_path_buf(),
            mapping,
            max_bad_rows: crate::records::DEFAULT_MAX_BAD_ROWS,
        })
    }

    /// All input files now present, in batch order: files that feed only non-event
    /// tables first, sorted by `rel`; then every file that feeds events, sorted by `rel`.
    /// A file matched by several tables' globs appears once with all its tables. Hidden
    /// and temporary files (`.*`, `_*`, `*.tmp`, `*.crc`) and `tidemark.toml` are ignored.
    pub fn discover(&self) -> Result<Vec<SourceFile>, InputError> {
        let root_text = self.root.to_string_lossy();
        let root_pattern = glob::Pattern::escape(&root_text);
        let options = glob::MatchOptions {
            case_sensitive: true,
            require_literal_separator: true,
            require_literal_leading_dot: false,
        };
        let mut found: BTreeMap<String, (PathBuf, Vec<Table>)> = BTreeMap::new();
        for table in Table::ALL {
            for pattern in &self.mapping.table(table).files {
                let full = if Path::new(pattern).is_absolute() {
                    pattern.clone()
                } else if root_pattern.ends_with('/') {
                    format!("{root_pattern}{pattern}")
                } else {
                    format!("{root_pattern}/{pattern}")
                };
                let listing = |message: String| InputError::Listing {
                    pattern: full.clone(),
                    message,
                };
                let paths = glob::glob_with(&full, options).map_err(|e| listing(e.to_string()))?;
                for entry in paths {
                    let path = entry.map_err(|e| listing(e.to_string()))?;
                    if !path.is_file() {
                        continue;
                    }
                    let rel = rel_of(&self.root, &path);
                    if ignored(&rel) {
                        continue;
                    }
                    let slot = found.entry(rel).or_insert_with(|| (path, Vec::new()));
                    if !slot.1.contains(&table) {
                        slot.1.push(table);
                    }
                }
            }
        }
        let mut first = Vec::new();
        let mut last = Vec::new();
        for (rel, (path, tables)) in found {
            let formats: Vec<_> = tables
                .iter()
                .map(|t| file_format(&rel, self.mapping.table(*t)))
                .collect();
            if formats.windows(2).any(|w| w[0] != w[1]) {
                return Err(InputError::ConflictingFormats {
                    file: rel,
                    tables: tables
                        .iter()
                        .map(|t| t.name())
                        .collect::<Vec<_>>()
                        .join(", "),
                });
            }
            let file = SourceFile { path, rel, tables };
            if file.tables.contains(&Table::Events) {
                last.push(file);
            } else {
                first.push(file);
            }
        }
        first.extend(last);
        Ok(first)
    }

    fn format_of(&self, file: &SourceFile) -> Result<FileFormat, InputError> {
        let table = file.tables.first().copied().unwrap_or(Table::Events);
        file_format(&file.rel, self.mapping.table(table)).ok_or(InputError::UnknownFormat {
            file: file.rel.clone(),
            table: table.name(),
        })
    }

    /// Checks that every column the mapping names exists in this file (header, schema,
    /// or the first JSON lines); the error names the file and the column.
    pub fn check_columns(&self, file: &SourceFile) -> Result<(), InputError> {
        let format = self.format_of(file)?;
        let unreadable = |message: String| InputError::Unreadable {
            file: file.rel.clone(),
            message,
        };
        let columns = catch_unwind(AssertUnwindSafe(|| match format.format {
            Format::Csv => csv_file::columns(&file.path, format),
            Format::Ndjson => ndjson_file::columns(&file.path, format),
            Format::Parquet => parquet_file::columns(&file.path),
        }))
        .unwrap_or_else(|_| Err("the reader panicked on this file".to_string()))
        .map_err(unreadable)?;
        let Some(columns) = columns else {
            return Ok(()); // nothing to check in an empty file
        };
        ReadPlan::resolve(&self.mapping, &file.tables, false, &mut |name| {
            columns.iter().position(|c| c == name)
        })
        .map(|_| ())
        .map_err(|Missing(column, table)| InputError::MissingColumn {
            file: file.rel.clone(),
            column,
            table: table.name(),
            available: abbreviate(&columns),
        })
    }

    /// Reads one file into a [`FileBatch`]. Never panics and never fails: a file that
    /// cannot be read at all becomes one quarantine row (row 0, `unreadable_file`); a
    /// mapped column missing from the file one row (row 0, `missing_column`); a failure
    /// part-way keeps the rows before it and quarantines the failure as its own row.
    pub fn read(&self, file: &SourceFile) -> FileBatch {
        self.read_content(file, Content::Path(&file.path))
    }

    /// Reads one file from `bytes`, a copy of its contents held in memory, exactly as
    /// [`Dataset::read`] reads the file itself.
    pub fn read_bytes(&self, file: &SourceFile, bytes: &bytes::Bytes) -> FileBatch {
        self.read_content(file, Content::Bytes(bytes))
    }

    fn read_content(&self, file: &SourceFile, content: Content) -> FileBatch {
        let mut batch = FileBatch::default();
        let format = match self.format_of(file) {
            Ok(f) => f,
            Err(e) => {
                batch
                    .quarantine
                    .push(whole_file(file, "", "unreadable_file", e.to_string()));
                return batch;
            }
        };
        let result = catch_unwind(AssertUnwindSafe(|| {
            let mut inner = FileBatch {
                bad_rows: crate::records::BadRows::with_limit(self.max_bad_rows),
                ..FileBatch::default()
            };
            let stop = match format.format {
                Format::Csv => csv_file::read(file, content, format, &self.mapping, &mut inner),
                Format::Ndjson => {
                    ndjson_file::read(file, content, format, &self.mapping, &mut inner)
                }
                Format::Parquet => parquet_file::read(file, content, &self.mapping, &mut inner),
            };
            (inner, stop)
        }));
        let (inner, stop) = match result {
            Ok(r) => r,
            Err(_) => (
                FileBatch::default(),
                Err(Stop::whole("the reader panicked on this file")),
            ),
        };
        batch = inner;
        batch.close_bad_rows();
        match stop {
            Ok(()) => {}
            Err(Stop::Unreadable { message, next_row }) => {
                let message = format!("{}: {message}", file.rel);
                if next_row == 0 {
                    batch = FileBatch::default();
                    batch
                        .quarantine
                        .push(whole_file(file, "", "unreadable_file", message));
                } else {
                    let mut row = whole_file(file, "", "unreadable_file", message);
                    row.row = next_row;
                    batch.quarantine.push(row);
                }
            }
            Err(Stop::MissingColumn {
                column,
                table,
                available,
            }) => {
                let message = InputError::MissingColumn {
                    file: file.rel.clone(),
                    column: column.clone(),
                    table: table.name(),
                    available: abbreviate(&available),
                }
                .to_string();
                batch = FileBatch::default();
                batch
                    .quarantine
                    .push(whole_file(file, &column, "missing_column", message));
            }
        }
        batch
    }
}

fn whole_file(file: &SourceFile, field: &str, reason: &str, raw: String) -> QuarantineRow {
    QuarantineRow {
        file: file.rel.clone(),
        row: 0,
        field: field.to_string(),
        reason: reason.to_string(),
        raw: truncate_raw(raw),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_by_extension() {
        let tm = TableMapping::default_for(Table::Events);
        let f = |rel: &str| file_format(rel, &tm).map(|f| (f.format, f.gzip, f.delimiter));
        assert_eq!(f("events/a.parquet"), Some((Format::Parquet, false, b',')));
        assert_eq!(f("events/a.CSV.gz"), Some((Format::Csv, true, b',')));
        assert_eq!(f("events/a.tsv"), Some((Format::Csv, false, b'\t')));
        assert_eq!(f("events/a.jsonl.gz"), Some((Format::Ndjson, true, b',')));
        assert_eq!(f("events/a.json"), Some((Format::Ndjson, false, b',')));
        assert_eq!(f("events/a.parquet.gz"), None);
        assert_eq!(f("events/a.txt"), None);
    }

    #[test]
    fn hidden_and_temp_files_are_ignored() {
        for rel in [
            "events/.a.csv",
            "events/_SUCCESS",
            "events/a.csv.tmp",
            "events/a.crc",
            "_tmp/a.csv",
            "tidemark.toml",
        ] {
            assert!(ignored(rel), "{rel}");
        }
        assert!(!ignored("events/a.csv"));
        assert!(!ignored("../data/a.csv"));
    }
}
