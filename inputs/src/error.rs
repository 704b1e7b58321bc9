//! Errors of the ingest layer that stop a run before rows are read: a bad mapping
//! file, a missing dataset directory, a file that lacks a mapped column. Problems
//! with single rows or single files never become errors: they go to quarantine.

use std::path::PathBuf;

/// Something the user must fix before tidemark can read the dataset.
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    /// The dataset directory is missing or is not a directory.
    #[error(
        "dataset directory {0} does not exist or is not a directory; pass the directory that \
         holds events/ (and optionally users/, subscriptions/, items/) or the data a mapping file points at"
    )]
    NoDataset(PathBuf),
    /// The mapping file could not be read from disk.
    #[error("mapping file {path}: cannot read it ({source}); check the path given to --mapping")]
    MappingUnreadable {
        /// The mapping file.
        path: PathBuf,
        /// Why reading failed.
        source: std::io::Error,
    },
    /// The mapping file is not valid TOML or breaks a rule of the Mapping section.
    #[error("mapping file {path}: {message}; see the Mapping section of CONTRACT.md")]
    Mapping {
        /// The mapping file (or `<default>` / `<string>`).
        path: String,
        /// What is wrong and where.
        message: String,
    },
    /// Listing the files of a table failed.
    #[error("cannot list input files for pattern `{pattern}`: {message}; check the dataset directory's permissions")]
    Listing {
        /// The glob being expanded.
        pattern: String,
        /// What went wrong.
        message: String,
    },
    /// Several tables read the same file with different parse settings.
    #[error(
        "file {file} is read by several tables ({tables}) with different format, delimiter or header \
         settings; give those tables the same settings in the mapping, or make their `files` globs disjoint"
    )]
    ConflictingFormats {
        /// The file, relative to the dataset directory.
        file: String,
        /// The tables that read it.
        tables: String,
    },
    /// The file's format cannot be told from its name.
    #[error(
        "file {file}: unknown format (expected .parquet, .csv, .tsv, .ndjson, .jsonl or .json, optionally \
         .gz); set `format = \"csv\" | \"ndjson\" | \"parquet\"` in [{table}] of the mapping"
    )]
    UnknownFormat {
        /// The file, relative to the dataset directory.
        file: String,
        /// The first table that reads it.
        table: &'static str,
    },
    /// The file cannot be opened or parsed far enough to see its columns.
    #[error("file {file}: cannot read it ({message}); replace or remove the file")]
    Unreadable {
        /// The file, relative to the dataset directory.
        file: String,
        /// Why.
        message: String,
    },
    /// A column the mapping names (or a required contract column) is not in the file.
    #[error(
        "file {file}: column `{column}` needed for [{table}] is missing (the file has: {available}); \
         fix [{table}.columns] or [{table}.filter] in the mapping, or the file"
    )]
    MissingColumn {
        /// The file, relative to the dataset directory.
        file: String,
        /// The missing source column.
        column: String,
        /// The table that needs it.
        table: &'static str,
        /// The columns the file does have (abbreviated).
        available: String,
    },
}
