//! The table sink: one worker writes each output table, both ways (contract
//! "Outputs"): for each logical time at which the table changed, one Parquet change
//! file under `OUT/changes/<table>/`, holding the table's columns plus `time` and
//! `diff`, and (unless `--no-delta`) Delta commits to `OUT/tables/<table>/`, each
//! covering one or more consecutive times.
//!
//! Every worker's updates of a table are exchanged to the table's writer, a worker of
//! process 0 (tables are dealt round-robin over process 0's workers, so the writing is
//! spread while a cluster's Delta tables stay on one host). The writer holds the
//! updates of each time until the time is complete, consolidates them, turns each row
//! into cells once, and hands them to the table's writer thread
//! ([`super::writer_thread`]), which writes the change file and commits to Delta off the
//! worker. The time's capability is held until both are durable (see the protocol in
//! [`crate::sink`]).
//!
//! A Delta commit costs milliseconds of CPU in delta-rs, whatever its size, so a
//! completed time waits while a later time the workers already fed is on its way (at
//! most `--max-commit-times` times, by default [`DEFAULT_MAX_GROUP`], and no longer
//! than they hold [`COMMIT_ROWS`] changed rows), and the times go to the writer thread
//! together, as one commit. A live run's lone time has nothing on
//! its way and goes at once. The workers feed only a few times past the last completed
//! one, so a sink never waits for a time that is not fed.

use crate::error_text::one_line;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use differential_dataflow::consolidation::consolidate;
use differential_dataflow::{ExchangeData, Hashable, VecCollection};
use tidemark_dataflows::model::tables::TableRow;
use tidemark_dataflows::operators::held::{hold_updates, HeldByTime, HeldUpdates};
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::operators::Capability;
use timely::dataflow::StreamVec;

use super::changes::checked_resume_point;
use super::writer_thread::{Job, TableWriterThread};
use super::SinkReport;

/// The most completed times one Delta commit covers unless `--max-commit-times`
/// says otherwise.
pub const DEFAULT_MAX_GROUP: usize = 8;

/// Completed times stop waiting for later ones once they hold this many changed rows:
/// a commit's fixed cost (milliseconds in delta-rs) is then small next to encoding its
/// rows, and writing them while the workers compute later times shortens the end of a
/// backfill, when the workers are done and only the writers work. Not fewer: a day
/// whose events span two consecutive times is rewritten by each commit that changes
/// it, so one commit per time of a large table rewrote half its rows again (10M events
/// in 60 times: 1.5x the rows of `sessions` and `user_activity_daily` written, 1.65x
/// of `engagement_by_dimension`). At 16,384 rows every time of those tables committed
/// on its own; at 65,536 a few times share a commit, which took 2-5% off 1M/240 and
/// 10M/60 backfills (README "Performance").
pub const COMMIT_ROWS: usize = 65_536;

/// A completed time not yet handed to the writer thread: its capability, consolidated
/// updates, and whether its change file is written.
type Ready<R> = (u64, Capability<u64>, Vec<(R, isize)>, bool);

/// Where and how a table sink writes.
#[derive(Clone)]
pub struct TableSinkConfig {
    /// The output directory.
    pub out: PathBuf,
    /// The worker that writes the table.
    pub writer: usize,
    /// One past the last logical time this process fed (0: none yet). A completed time
    /// waits while a later fed time is still on its way (at most `max_group` times),
    /// so that they reach the writer together and make one Delta commit; a live run's
    /// lone time goes at once.
    pub fed: Arc<AtomicU64>,
    /// The Delta tables' vacuum retention, or `None` with `--no-delta`.
    pub delta: Option<Duration>,
    /// The most completed times one Delta commit covers (0 counts as 1).
    pub max_group: usize,
    /// The change files of times up to it are not written: an earlier run wrote them.
    pub resume_after: Option<u64>,
}

/// Writes `rows` on worker `config.writer`: a change file per changed logical time after
/// `resume_after`, and a Delta commit unless `delta` is `None`. The returned stream
/// carries a [`SinkReport`] per written time and holds the time open until it is
/// durable, so a probe downstream sees a time complete only once the table is written.
/// A failed write stops the run with a message naming the table and the path.
pub fn table_sink<'s, R>(
    rows: VecCollection<'s, u64, R>,
    config: TableSinkConfig,
) -> StreamVec<'s, u64, SinkReport>
where
    R: TableRow + ExchangeData + Hashable,
{
    let TableSinkConfig {
        out,
        writer,
        fed,
        delta,
        max_group,
        resume_after,
    } = config;
    let table = R::SPEC.name;
    let scope = rows.inner.scope();
    super::clear_failure(&out);
    // Only the writer has files to check; it repairs damaged ones from the replay.
    let resume_after = if timely::dataflow::Scope::index(&scope) == writer {
        checked_resume_point(&out, table, writer, resume_after)
    } else {
        resume_after
    };
    let pact = Exchange::new(move |_: &(R, u64, isize)| writer as u64);
    rows.inner
        .unary_frontier(pact, &format!("TableSink({table})"), move |_cap, info| {
            let mut pending: HeldUpdates<(R, isize)> = HeldByTime::default();
            // Times handed to the writer thread, with the capability to report each.
            let mut writing: BTreeMap<u64, Capability<u64>> = BTreeMap::new();
            let mut thread: Option<TableWriterThread> = None;
            // Completed times not yet handed to the writer thread.
            let mut ready: Vec<Ready<R>> = Vec::new();
            let activator = scope.activator_for(Rc::clone(&info.address));
            let wake = scope.worker().sync_activator_for(info.address.to_vec());
            move |(input, frontier), output| {
                let live = !frontier.frontier().is_empty()
                    || !pending.is_empty()
                    || !writing.is_empty()
                    || !ready.is_empty();
                super::check_failure(&out, &activator, live);
                input.for_each(|cap, data| {
                    hold_updates(&mut pending, &cap, data, |row, _time, diff| (row, diff))
                });
                while let Some((time, cap, mut updates)) =
                    pending.pop_complete(|time| !frontier.frontier().less_equal(&time))
                {
                    consolidate(&mut updates);
                    let change_file = resume_after.is_none_or(|done| time > done);
                    if updates.is_empty() || (!change_file && delta.is_none()) {
                        continue;
                    }
                    ready.push((time, cap, updates, change_file));
                }
                // Completed times wait while a later fed time is on its way (only with
                // Delta: change files are one a time anyway).
                let last_fed = fed.load(Ordering::Relaxed).checked_sub(1);
                let more_coming = delta.is_some()
                    && last_fed.is_some_and(|last| frontier.frontier().less_equal(&last));
                let ready_rows = ready.iter().map(|(_, _, updates, _)| updates.len()).sum();
                if hand_over(ready.len(), ready_rows, more_coming, max_group) {
                    let thread = match &mut thread {
                        Some(thread) => thread,
                        None => thread.insert(
                            TableWriterThread::start(
                                out.clone(),
                                R::SPEC,
                                writer,
                                delta,
                                max_group,
                                wake.clone(),
                            )
                            .unwrap_or_else(|error| {
                                super::fail(
                                    &out,
                                    format!(
                                        "cannot start the writer of table `{table}`: {}",
                                        one_line(&error)
                                    ),
                                )
                            }),
                        ),
                    };
                    let mut jobs = Vec::with_capacity(ready.len());
                    for (time, cap, updates, change_file) in ready.drain(..) {
                        let changes = updates
                            .iter()
                            .map(|(row, diff)| (row.cells(), *diff as i64))
                            .collect();
                        jobs.push(Job {
                            time,
                            changes,
                            change_file,
                        });
                        writing.insert(time, cap);
                    }
                    thread.submit(jobs);
                }
                for finished in thread
                    .as_ref()
                    .map(TableWriterThread::take_finished)
                    .unwrap_or_default()
                {
                    let Some(cap) = writing.remove(&finished.time) else {
                        continue;
                    };
                    match finished.outcome {
                        Ok(_) => output.session(&cap).give(SinkReport {
                            table: table.to_string(),
                            time: finished.time,
                            rows: finished.rows,
                        }),
                        Err(message) => super::fail(&out, message),
                    }
                }
            }
        })
}

/// Whether the completed times waiting (`times` of them, `rows` changed rows in all) go
/// to the writer thread now: when no later fed time is on its way (`more_coming`), or
/// when they are enough for one commit (`max_group` times, or [`COMMIT_ROWS`] rows).
pub fn hand_over(times: usize, rows: usize, more_coming: bool, max_group: usize) -> bool {
    times > 0 && (!more_coming || times >= max_group || rows >= COMMIT_ROWS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn completed_times_wait_for_later_ones_only_while_they_are_small() {
        // Nothing waiting: nothing to hand over.
        assert!(!hand_over(0, 0, false, 8));
        // Nothing more coming (a live run's lone time, a backfill's end): at once.
        assert!(hand_over(1, 1, false, 8));
        // A later time on its way: small times wait, up to `max_group` of them.
        assert!(!hand_over(1, COMMIT_ROWS - 1, true, 8));
        assert!(!hand_over(7, 10, true, 8));
        assert!(hand_over(8, 10, true, 8));
        // Enough rows for one commit: no more waiting.
        assert!(hand_over(1, COMMIT_ROWS, true, 8));
    }
}
