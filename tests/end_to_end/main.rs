//! Every whole-run test of `tidemark`, in one test binary.
//!
//! Each test here runs the engine with files, sinks and Delta tables (in process, or
//! as the `tidemark` binary). They share one binary because each test binary links
//! arrow, parquet and deltalake: one binary instead of twenty-three keeps a clean
//! test build to a fraction of the disk and link time (CI once ran out of disk while
//! linking them). Test names keep their file: `cargo test --test end_to_end recovery::`
//! runs the recovery tests. Tests of the dataflow alone, which need none of that,
//! are `tests/oracle_selftest.rs` and `tests/incremental_equals_recompute.rs`.

#[path = "../cases/mod.rs"]
mod cases;
#[path = "../common/mod.rs"]
mod common;
#[path = "../http/mod.rs"]
mod http;
#[path = "../live/mod.rs"]
mod live;
#[path = "../oracle/mod.rs"]
mod oracle;
#[path = "../s3/mod.rs"]
mod s3;

mod bounded_state;
mod checkpoint_errors;
mod cluster;
mod dashboard;
mod delta_python;
mod delta_tables;
mod dimensions;
mod faults;
mod follow;
mod full_disk;
mod incremental_equals_recompute_end_to_end;
mod kafka;
mod live_sources;
mod object_storage;
mod oracle_end_to_end;
mod prediction;
mod real_data_end_to_end;
mod recovery;
mod serve;
mod settings;
mod several_hosts;
mod skip_rate;
mod spike_alerts;
