//! The `tidemark` runtime: CLI, settings, cluster set-up, sinks and reports around the
//! dataflows of `tidemark-dataflows` and the readers of `tidemark-inputs`.

pub mod allocator;
pub mod arrangement_sizes;
pub mod arrow_rows;
pub mod changes_reader;
pub mod checkpoint;
pub mod cli;
pub mod cluster;
pub mod follow;
pub mod ingested;
pub mod kafka_source;
pub mod live_source;
pub mod object_input;
pub mod object_output;
pub mod operator_times;
pub mod predict;
pub mod progress;
pub mod report;
pub mod run;
pub mod schedule;
pub mod serve;
pub mod settings_cli;
pub mod sink;
pub mod stop;
