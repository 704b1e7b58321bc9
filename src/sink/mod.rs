//! Sinks: where finished logical times of each output table are written.
//!
//! # Exactly once
//! Every output is written once and only once, across crashes and restarts (kill -9
//! included). The pieces, and where each lives:
//! 1. **Log before compute** ([`crate::runtime::checkpoint`]). Each input unit (a file, or a
//!    batch of live lines) is written to the write-ahead log under
//!    `OUT/_checkpoint/wal/` (a file as the bytes it is parsed from, live lines as
//!    parsed rows) and fsynced *before* it is fed to the dataflow. A unit's
//!    logical time is fixed in its entry, so a replay rebuilds exactly the same times.
//! 2. **A time is written whole, then reported.** One worker of process 0 writes each
//!    table ([`table_sink`]); it holds each logical time's capability until the table's
//!    output for that time is durable: the change file is written under a temporary
//!    name, renamed into place and listed in the manifest ([`changes`], [`manifest`]);
//!    the Delta commit has landed ([`delta`], [`writer_thread`]). So the dataflow's
//!    frontier passes a time only when every table has written it.
//! 3. **Completed marker** ([`crate::runtime::run`], [`crate::runtime::checkpoint`]). Worker 0 records the
//!    last time every sink has passed in `completed.json`, after flushing the file
//!    system, so every file of a completed time is on disk.
//! 4. **Resume.** A restarted run checks the run identity, replays the log (every unit
//!    logged before the crash, none read again from its source), and reads only units
//!    not yet logged. The change sinks skip times at or below the completed time, after
//!    checking their files against the manifest (a damaged file makes them write again
//!    from its time, byte for byte as before). Each Delta table skips times at or below
//!    its own last `txn` version (app id `tidemark-<table>`, version = logical time),
//!    which may be ahead of the completed time when the crash fell between the commit
//!    and the marker.
//! 5. **Failure stops every worker.** A sink that cannot write calls [`fail`], and every
//!    other sink of the run stops at its next [`check_failure`], so no worker waits
//!    forever and the completed time never passes a time that was not written.
//!
//! The dataflow is deterministic for a given log, so a time written again after a crash
//! holds the same rows as the first time.

pub mod arrow_rows;
pub mod changes;
pub mod delta;
pub mod manifest;
pub mod object_store;
pub mod reader;
pub mod table_sink;
pub mod writer_thread;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

/// What a sink reports for each logical time it has made durable on this worker.
#[derive(
    Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
pub struct SinkReport {
    /// The table.
    pub table: String,
    /// The logical time written.
    pub time: u64,
    /// Number of change rows written.
    pub rows: u64,
}

/// Failures of the runs of this process, by output directory.
static FAILURES: Mutex<BTreeMap<PathBuf, String>> = Mutex::new(BTreeMap::new());

/// How often a sink operator looks whether another worker's sink of its run failed.
pub const FAILURE_POLL: Duration = Duration::from_millis(50);

/// Stops the run writing under `out` because a sink failed: records `message` so the
/// other workers of this process stop too (see [`failure`]), then unwinds the worker
/// with it. The unwind skips the panic hook: the run ends with one clear error line
/// (printed by `main`), not a panic report per worker.
pub fn fail(out: &Path, message: String) -> ! {
    FAILURES
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .entry(out.to_path_buf())
        .or_insert_with(|| message.clone());
    std::panic::resume_unwind(Box::new(message));
}

/// The failure recorded for the run writing under `out`, if a sink of it failed.
pub fn failure(out: &Path) -> Option<String> {
    FAILURES
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(out)
        .cloned()
}

/// Forgets an earlier run's failure under `out` (called as a new run's sinks are built).
pub fn clear_failure(out: &Path) {
    FAILURES
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .remove(out);
}

/// Called by a sink operator each time it runs: unwinds if another sink of the run writing
/// under `out` failed (a worker that died would otherwise leave the others waiting for
/// it forever), else asks to be run again after [`FAILURE_POLL`] while `live`.
pub fn check_failure(out: &Path, activator: &timely::scheduling::Activator, live: bool) {
    // Two texts that got one integer id: stop before anything merged is written.
    if let Some(message) = tidemark_dataflows::model::name::collision() {
        fail(out, message);
    }
    if let Some(message) = failure(out) {
        std::panic::resume_unwind(Box::new(format!(
            "stopping: another worker failed: {message}"
        )));
    }
    if live {
        activator.activate_after(FAILURE_POLL);
    }
}
