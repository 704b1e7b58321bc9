//! Ingest for tidemark: readers for Parquet, CSV and NDJSON (gzipped or not), the
//! mapping file that turns real sources into contract tables, validation with
//! quarantine, and a deterministic generator of realistic data sets.

mod csv_file;
pub mod dataset;
pub mod error;
pub mod generator;
pub mod mapping;
mod ndjson_file;
mod parquet_file;
mod rows;
mod text;
pub mod wal_entry;

pub use tidemark_records::{records, time, timestamp};

pub use dataset::{Dataset, SourceFile, Table};
pub use error::InputError;
pub use mapping::Mapping;
pub use ndjson_file::NdjsonLines;
