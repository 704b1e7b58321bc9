//! Ingest for tidemark: readers for Parquet, CSV and NDJSON (gzipped or not), the
//! mapping file that turns real sources into contract tables, validation with
//! quarantine, and a deterministic generator of realistic data sets.

pub mod generator;
pub mod records;
pub mod time;
pub mod timestamp;
