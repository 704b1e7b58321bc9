//! The Delta Lake sink: every written table is also a Delta Lake table at
//! `OUT/tables/<table>/` holding the table's current contents (contract "Outputs").
//!
//! - [`layout`]: where the table lives, and its rows' buckets: by the UTC day of the
//!   first instant key column, or the 31-day block of the first date key column (one day
//!   for the tables with a row per user or member and day), else a stable hash of the
//!   first key column. New data mostly lands in the latest days, so
//!   most commits touch few buckets. Each bucket is stored as its own data file(s).
//! - [`plan`]: the pure bucket diff. A commit rewrites only the buckets whose rows
//!   changed: it `Remove`s their old files and `Add`s the new ones in one atomic commit.
//! - [`cache`]: bounded memory. The committing worker knows every bucket's data files
//!   but keeps the rows of only the most recently committed buckets; a commit that
//!   touches another bucket reads it back from its own files, so memory does not grow
//!   with the table (`sessions` grows with the events).
//! - [`log`]: the delta-rs calls: load, commit with a `txn`, vacuum, read back.
//! - [`table`]: one table's committing state, tying the above together.
//!
//! The table's writer ([`super::table_sink`]) consolidates each completed logical time
//! and its writer thread ([`super::writer_thread`]) commits it: one Delta commit covers
//! the consecutive changed times that were ready together (at most
//! `--max-commit-times`), never an empty one.
//!
//! Exactly once: each commit carries a `txn` action with app id `tidemark-<table>` and
//! version = the (last) logical time it covers, and a restarted sink skips every time at
//! or below it.
//! The whole protocol, with the change streams and the checkpoint, is stated in
//! [`crate::sink`].

mod cache;
pub mod layout;
mod log;
pub mod plan;
mod table;

pub use cache::CACHED_BUCKETS;
pub use layout::{app_id, bucket_of, delta_dir, delta_type, DATE_BUCKET_DAYS, HASH_BUCKETS};
pub use log::{last_committed_version, read_delta_table};
pub use table::{CommitOutcome, DeltaTableSink};
