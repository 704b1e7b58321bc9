//! Runs one Delta table's commits on a thread of its own, in logical-time order.
//!
//! A Delta commit costs milliseconds of file writes, log listing and snapshot updates.
//! Done inline, every table's commit would stop the worker in turn. On its own thread,
//! the worker goes on computing later times while earlier ones commit, and the tables
//! of one logical time commit side by side. Exactly-once is unchanged: the sink operator
//! holds each time's capability until its commit is done, so a time is reported
//! complete (and checkpointed) only after every table has committed it.

use std::path::PathBuf;
use std::sync::mpsc::{channel, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{Context, Result};
use tidemark_dataflows::model::tables::{Cell, TableSpec};
use timely::scheduling::SyncActivator;

use super::delta::{CommitOutcome, DeltaTableSink};

/// One logical time's consolidated changes, to commit.
struct Job {
    time: u64,
    changes: Vec<(Vec<Cell>, i64)>,
}

/// The result of one commit, as the committing thread reports it.
#[derive(Debug)]
pub struct Finished {
    /// The logical time.
    pub time: u64,
    /// Number of change rows in the commit.
    pub rows: u64,
    /// What the commit did, or why it failed (a message naming the table and path).
    pub outcome: std::result::Result<CommitOutcome, String>,
}

/// A table's committing thread: jobs go in with [`submit`](Self::submit), results come
/// back through [`take_finished`](Self::take_finished) in the order submitted.
pub struct DeltaCommitThread {
    jobs: Option<Sender<Job>>,
    finished: Arc<Mutex<Vec<Finished>>>,
    thread: Option<JoinHandle<()>>,
}

impl DeltaCommitThread {
    /// Starts the thread that opens (or creates) the Delta table of `spec` at `dir` and
    /// commits each submitted time; it wakes the sink operator through `wake` after each.
    /// Every [`VACUUM_EVERY`] commits, and once when the run ends, it deletes the data
    /// files removed more than `retention` ago (see [`DeltaTableSink::vacuum`]).
    /// The thread stops at the first failure.
    pub fn start(
        dir: PathBuf,
        spec: TableSpec,
        wake: SyncActivator,
        retention: Duration,
    ) -> Result<Self> {
        let (jobs, incoming) = channel::<Job>();
        let finished: Arc<Mutex<Vec<Finished>>> = Arc::default();
        let results = Arc::clone(&finished);
        let thread = std::thread::Builder::new()
            .name(format!("delta-{}", spec.name))
            .spawn(move || {
                let mut sink: Option<DeltaTableSink> = None;
                let mut since_vacuum = 0;
                for job in incoming {
                    let (time, rows) = (job.time, job.changes.len() as u64);
                    let outcome = commit(&mut sink, &dir, spec, job);
                    let failed = outcome.is_err();
                    if matches!(outcome, Ok(CommitOutcome::Committed { .. })) {
                        since_vacuum += 1;
                        if since_vacuum >= VACUUM_EVERY {
                            since_vacuum = 0;
                            vacuum(&mut sink, spec, retention);
                        }
                    }
                    results
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push(Finished {
                            time,
                            rows,
                            outcome,
                        });
                    // The operator may be gone (shutting down): nothing to wake then.
                    let _ = wake.activate();
                    if failed {
                        return;
                    }
                }
                if since_vacuum > 0 {
                    vacuum(&mut sink, spec, retention);
                }
            })
            .with_context(|| format!("starting the Delta commit thread of `{}`", spec.name))?;
        Ok(DeltaCommitThread {
            jobs: Some(jobs),
            finished,
            thread: Some(thread),
        })
    }

    /// Queues the changes of logical time `time` for commit.
    pub fn submit(&self, time: u64, changes: Vec<(Vec<Cell>, i64)>) {
        if let Some(jobs) = &self.jobs {
            // A send fails only once the thread stopped on a failure it has reported.
            let _ = jobs.send(Job { time, changes });
        }
    }

    /// The commits finished since the last call, in time order.
    pub fn take_finished(&self) -> Vec<Finished> {
        std::mem::take(&mut *self.finished.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

impl Drop for DeltaCommitThread {
    /// Lets the queued commits finish and waits for the thread.
    fn drop(&mut self) {
        self.jobs = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Commits of a table between two vacuums (besides the one at the end of a run).
pub const VACUUM_EVERY: usize = 50;

/// Vacuums the table; a failure is only a warning, since the table itself is intact.
fn vacuum(sink: &mut Option<DeltaTableSink>, spec: TableSpec, retention: Duration) {
    if let Some(sink) = sink {
        match sink.vacuum(retention) {
            Ok(deleted) => tracing::debug!("vacuum of `{}` deleted {deleted} files", spec.name),
            Err(error) => tracing::warn!("vacuum of the Delta table `{}`: {error:#}", spec.name),
        }
    }
}

/// Opens the table on first use and commits one job; the error names table and path.
fn commit(
    sink: &mut Option<DeltaTableSink>,
    dir: &std::path::Path,
    spec: TableSpec,
    job: Job,
) -> std::result::Result<CommitOutcome, String> {
    let sink = match sink {
        Some(sink) => sink,
        None => sink.insert(DeltaTableSink::open(dir, spec).map_err(|error| {
            format!(
                "cannot open the Delta table `{}` at {}: {error:#}. If the table is damaged, delete {} and run the same command again: it is rebuilt exactly from the write-ahead log (or pass --overwrite to start over)",
                spec.name,
                dir.display(),
                dir.display()
            )
        })?),
    };
    let time = job.time;
    sink.commit(time, job.changes).map_err(|error| {
        format!(
            "cannot commit time {time} to the Delta table `{}` at {}: {error:#}",
            spec.name,
            dir.display()
        )
    })
}
