//! Writes one table's change files and Delta commits on a thread of its own, in
//! logical-time order.
//!
//! A change file costs a Parquet encoding and a rename; a Delta commit costs
//! milliseconds of file writes, log listing and snapshot updates. Done inline, every
//! table's writes would stop the worker in turn. On its own thread, the worker goes on
//! computing later times while earlier ones are written, and the tables of one logical
//! time are written side by side. Exactly-once is unchanged: the sink operator holds
//! each time's capability until its writes are done, so a time is reported complete
//! (and checkpointed) only after every table has written it.
//!
//! Each time gets its own change file, written before the Delta commit. The times the
//! sink hands over together ([`crate::sink::table_sink`]), and those queued while a
//! commit runs, are committed together, as one Delta version whose `txn`
//! is the last of them (contract "Outputs"): a thread that falls behind (a big table,
//! many small times) catches up instead of lagging further. Only times already waiting
//! are grouped, so a live run's lone time still commits at once; the queue is bounded
//! by how far the workers may run ahead of the slowest sink, and a commit covers at
//! most `--max-commit-times` times.

use crate::error_text::one_line;
use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::mpsc::{channel, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{Context, Result};
use tidemark_dataflows::model::tables::{Cell, TableSpec};
use timely::scheduling::SyncActivator;

use super::changes::write_change_file;
use super::delta::{delta_dir, CommitOutcome, DeltaTableSink};

/// One logical time's consolidated changes, as the sink hands them to the thread.
pub struct Job {
    /// The logical time.
    pub time: u64,
    /// The changed rows as cells, with their diffs.
    pub changes: Vec<(Vec<Cell>, i64)>,
    /// Whether its change file is written (not for a time an earlier run wrote).
    pub change_file: bool,
}

/// The result of one time's writes, as the writing thread reports it.
#[derive(Debug)]
pub struct Finished {
    /// The logical time.
    pub time: u64,
    /// Number of change rows.
    pub rows: u64,
    /// What the Delta commit did (`None` with `--no-delta`), or why a write failed (a
    /// message naming the table and path).
    pub outcome: std::result::Result<Option<CommitOutcome>, String>,
}

/// A table's writing thread: jobs go in with [`submit`](Self::submit), results come
/// back through [`take_finished`](Self::take_finished) in the order submitted.
pub struct TableWriterThread {
    jobs: Option<Sender<Vec<Job>>>,
    finished: Arc<Mutex<Vec<Finished>>>,
    thread: Option<JoinHandle<()>>,
}

impl TableWriterThread {
    /// Starts the thread that writes the table of `spec` under `out` as worker
    /// `writer`: each submitted time's change file, then, unless `delta` is `None`, its
    /// Delta commit (opening or creating the table on first use). It wakes the sink
    /// operator through `wake` after each group of at most `max_group` times (the times
    /// queued while the last write ran, one Delta commit). Every [`VACUUM_EVERY`]
    /// commits, and once when the run ends, it deletes the Delta data files removed more
    /// than the `delta` retention ago (see [`DeltaTableSink::vacuum`]). The thread stops
    /// at the first failure.
    pub fn start(
        out: PathBuf,
        spec: TableSpec,
        writer: usize,
        delta: Option<Duration>,
        max_group: usize,
        wake: SyncActivator,
    ) -> Result<Self> {
        // A group of none would never drain the queue.
        let max_group = max_group.max(1);
        let (jobs, incoming) = channel::<Vec<Job>>();
        let finished: Arc<Mutex<Vec<Finished>>> = Arc::default();
        let results = Arc::clone(&finished);
        let thread = std::thread::Builder::new()
            .name(format!("write-{}", spec.name))
            .spawn(move || {
                let dir = delta_dir(&out, spec.name);
                let mut sink: Option<DeltaTableSink> = None;
                let mut since_vacuum = 0;
                let mut queued: VecDeque<Job> = VecDeque::new();
                loop {
                    if queued.is_empty() {
                        match incoming.recv() {
                            Ok(jobs) => queued.extend(jobs),
                            Err(_) => break,
                        }
                    }
                    // The jobs queued while the last write ran go into one commit, at
                    // most `max_group` of them.
                    queued.extend(incoming.try_iter().flatten());
                    let take = queued.len().min(max_group);
                    let group: Vec<Job> = queued.drain(..take).collect();
                    if group.is_empty() {
                        continue;
                    }
                    let outcomes = match write_change_files(&out, spec, writer, &group) {
                        Err(message) => all_finished(&group, Err(message)),
                        Ok(()) if delta.is_some() => commit_group(&mut sink, &dir, spec, group),
                        Ok(()) => all_finished(&group, Ok(None)),
                    };
                    let failed = outcomes.iter().any(|f| f.outcome.is_err());
                    if outcomes
                        .iter()
                        .any(|f| matches!(f.outcome, Ok(Some(CommitOutcome::Committed { .. }))))
                    {
                        since_vacuum += 1;
                        if since_vacuum >= VACUUM_EVERY {
                            since_vacuum = 0;
                            vacuum(&mut sink, spec, delta);
                        }
                    }
                    results
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .extend(outcomes);
                    // The operator may be gone (shutting down): nothing to wake then.
                    let _ = wake.activate();
                    if failed {
                        return;
                    }
                }
                if since_vacuum > 0 {
                    vacuum(&mut sink, spec, delta);
                }
            })
            .with_context(|| format!("starting the writer thread of `{}`", spec.name))?;
        Ok(TableWriterThread {
            jobs: Some(jobs),
            finished,
            thread: Some(thread),
        })
    }

    /// Queues the changes of consecutive logical times: they go into one Delta commit
    /// (with any others queued).
    pub fn submit(&self, jobs: Vec<Job>) {
        if let Some(sender) = &self.jobs {
            // A send fails only once the thread stopped on a failure it has reported.
            let _ = sender.send(jobs);
        }
    }

    /// The writes finished since the last call, in time order.
    pub fn take_finished(&self) -> Vec<Finished> {
        std::mem::take(&mut *self.finished.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

impl Drop for TableWriterThread {
    /// Lets the queued writes finish and waits for the thread.
    fn drop(&mut self) {
        self.jobs = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Writes the change file of each job that needs one, in time order; the first error
/// ends the group.
fn write_change_files(
    out: &std::path::Path,
    spec: TableSpec,
    writer: usize,
    group: &[Job],
) -> std::result::Result<(), String> {
    group
        .iter()
        .filter(|job| job.change_file)
        .try_for_each(|job| write_change_file(out, spec, writer, job.time, &job.changes))
}

/// The same outcome for every job of `group`.
fn all_finished(
    group: &[Job],
    outcome: std::result::Result<Option<CommitOutcome>, String>,
) -> Vec<Finished> {
    group
        .iter()
        .map(|job| Finished {
            time: job.time,
            rows: job.changes.len() as u64,
            outcome: outcome.clone(),
        })
        .collect()
}

/// Commits of a table between two vacuums (besides the one at the end of a run).
pub const VACUUM_EVERY: usize = 20;

/// Vacuums the table; a failure is only a warning, since the table itself is intact.
fn vacuum(sink: &mut Option<DeltaTableSink>, spec: TableSpec, retention: Option<Duration>) {
    if let (Some(sink), Some(retention)) = (sink, retention) {
        match sink.vacuum(retention) {
            Ok(deleted) => tracing::debug!("vacuum of `{}` deleted {deleted} files", spec.name),
            Err(error) => tracing::warn!(
                "vacuum of the Delta table `{}`: {}",
                spec.name,
                one_line(&error)
            ),
        }
    }
}

/// Opens the table on first use and commits a group of jobs (consecutive times, in
/// order) as one Delta version whose `txn` version is the group's last time (contract
/// "Outputs": a commit covers one or more consecutive completed times). Times the table
/// already holds (a replay after a crash) are skipped one by one, never merged into
/// the new commit. Every job gets its own [`Finished`], with the group's outcome; an
/// error names table and path.
fn commit_group(
    sink: &mut Option<DeltaTableSink>,
    dir: &std::path::Path,
    spec: TableSpec,
    group: Vec<Job>,
) -> Vec<Finished> {
    // Each job's time and number of rows; its changes are moved into the commit.
    let covered: Vec<(u64, u64)> = group
        .iter()
        .map(|job| (job.time, job.changes.len() as u64))
        .collect();
    let report = |covered: &[(u64, u64)], outcome: std::result::Result<CommitOutcome, String>| {
        covered
            .iter()
            .map(|&(time, rows)| Finished {
                time,
                rows,
                outcome: outcome.clone().map(Some),
            })
            .collect::<Vec<_>>()
    };
    let sink = match open(sink, dir, spec) {
        Ok(sink) => sink,
        Err(message) => return report(&covered, Err(message)),
    };
    // Jobs come in time order: those the table already holds come first.
    let done = covered
        .iter()
        .take_while(|(time, _)| sink.last_time().is_some_and(|last| *time <= last))
        .count();
    let mut reports = report(&covered[..done], Ok(CommitOutcome::AlreadyCommitted));
    let new = &covered[done..];
    let (Some(&(first, _)), Some(&(time, _))) = (new.first(), new.last()) else {
        return reports;
    };
    let changes = group
        .into_iter()
        .skip(done)
        .flat_map(|job| job.changes)
        .collect();
    let outcome = sink.commit(time, changes).map_err(|error| {
        let times = if first < time {
            format!("times {first}..={time}")
        } else {
            format!("time {time}")
        };
        format!(
            "cannot commit {times} to the Delta table `{}` at {}: {}",
            spec.name,
            dir.display(),
            one_line(&error)
        )
    });
    reports.extend(report(new, outcome));
    reports
}

/// The table's committing state, opened on first use; the error says what to do.
fn open<'a>(
    sink: &'a mut Option<DeltaTableSink>,
    dir: &std::path::Path,
    spec: TableSpec,
) -> std::result::Result<&'a mut DeltaTableSink, String> {
    match sink {
        Some(sink) => Ok(sink),
        None => Ok(sink.insert(DeltaTableSink::open(dir, spec).map_err(|error| {
            format!(
                "cannot open the Delta table `{}` at {}: {}. If the table is damaged, delete {} and run the same command again: it is rebuilt exactly from the write-ahead log (or pass --overwrite to start over)",
                spec.name,
                dir.display(),
                one_line(&error),
                dir.display()
            )
        })?)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tidemark_dataflows::model::tables::DAILY_ACTIVE;

    fn job(time: u64, changes: &[(i32, i64, i64)]) -> Job {
        Job {
            time,
            changes: changes
                .iter()
                .map(|&(day, dau, diff)| (vec![Cell::Date(day), Cell::Int(dau)], diff))
                .collect(),
            change_file: true,
        }
    }

    fn outcomes(finished: &[Finished]) -> Vec<(u64, CommitOutcome)> {
        finished
            .iter()
            .map(|f| {
                let outcome = f.outcome.clone().expect("commits");
                (f.time, outcome.expect("a Delta commit"))
            })
            .collect()
    }

    /// Jobs queued together become one Delta version with the last time's txn; a job
    /// of a time already committed (a replay) is skipped, not merged into it.
    #[test]
    fn waiting_jobs_commit_as_one_version_and_replayed_times_are_skipped() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("daily_active");
        let mut sink = None;
        let first = commit_group(&mut sink, &dir, DAILY_ACTIVE, vec![job(0, &[(1, 10, 1)])]);
        let committed = |version| CommitOutcome::Committed {
            version,
            buckets: 1,
        };
        assert_eq!(outcomes(&first), vec![(0, committed(0))]);
        let group = vec![
            job(0, &[(1, 10, 1)]),
            job(1, &[(1, 10, -1), (1, 11, 1)]),
            job(3, &[(2, 5, 1)]),
        ];
        let second = commit_group(&mut sink, &dir, DAILY_ACTIVE, group);
        assert_eq!(
            outcomes(&second),
            vec![
                (0, CommitOutcome::AlreadyCommitted),
                (1, committed(1)),
                (3, committed(1)),
            ]
        );
        assert_eq!(
            second.iter().map(|f| f.rows).collect::<Vec<_>>(),
            vec![1, 2, 1]
        );
        let sink = sink.expect("opened");
        assert_eq!(sink.last_time(), Some(3));
        let day = |d: i32, n: i64| vec![Cell::Date(d), Cell::Int(n)];
        assert_eq!(sink.rows().unwrap(), vec![day(1, 11), day(2, 5)]);
        assert_eq!(
            crate::sink::delta::last_committed_version(&dir).unwrap(),
            Some(3)
        );
    }
}
