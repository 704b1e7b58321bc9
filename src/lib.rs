//! The `tidemark` runtime around the dataflows of `tidemark-dataflows` and the readers
//! of `tidemark-inputs`:
//! - [`cli`]: the command line and its settings flags;
//! - [`runtime`]: a run: deciding what each logical time holds, feeding the workers,
//!   the cluster, the write-ahead log and recovery;
//! - [`sources`]: inputs besides a dataset directory: live lines, Kafka, object storage;
//! - [`sink`]: where the tables go (change streams, Delta tables, object storage) and
//!   how they are read back;
//! - [`report`], [`serve`], [`predict`]: the other commands;
//! - [`diag`]: diagnostics (operator times, arrangement sizes).

pub mod cli;
pub mod diag;
pub mod error_text;
pub mod predict;
pub mod report;
pub mod runtime;
pub mod serve;
pub mod sink;
pub mod sources;
