//! The table sink: one worker writes each output table, both ways (contract
//! "Outputs"): for each logical time at which the table changed, one Parquet change
//! file under `OUT/changes/<table>/`, holding the table's columns plus `time` and
//! `diff`, and (unless `--no-delta`) one Delta commit to `OUT/tables/<table>/`.
//!
//! Every worker's updates of a table are exchanged to the table's writer, a worker of
//! process 0 (tables are dealt round-robin over process 0's workers, so the writing is
//! spread while a cluster's Delta tables stay on one host). The writer holds the
//! updates of each time until the time is complete, consolidates them, turns each row
//! into cells once, and hands them to the table's writer thread
//! ([`super::writer_thread`]), which writes the change file and commits to Delta off the
//! worker. The time's capability is held until both are durable (see the protocol in
//! [`crate::sink`]).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::rc::Rc;
use std::time::Duration;

use differential_dataflow::consolidation::consolidate;
use differential_dataflow::{ExchangeData, Hashable, VecCollection};
use tidemark_dataflows::model::tables::{Cell, TableRow};
use tidemark_dataflows::operators::held::{hold_updates, HeldByTime, HeldUpdates};
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::operators::Capability;
use timely::dataflow::StreamVec;

use super::changes::checked_resume_point;
use super::writer_thread::TableWriterThread;
use super::SinkReport;

/// Writes `rows` on worker `writer`: a change file per changed logical time after
/// `resume_after` (an earlier run wrote the times up to it), and a Delta commit with
/// vacuum retention `delta` unless it is `None`. The returned stream carries a
/// [`SinkReport`] per written time and holds the time open until it is durable, so a
/// probe downstream sees a time complete only once the table is written. A failed write
/// stops the run with a message naming the table and the path.
pub fn table_sink<'s, R>(
    rows: VecCollection<'s, u64, R>,
    out: PathBuf,
    writer: usize,
    delta: Option<Duration>,
    resume_after: Option<u64>,
) -> StreamVec<'s, u64, SinkReport>
where
    R: TableRow + ExchangeData + Hashable,
{
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
            let activator = scope.activator_for(Rc::clone(&info.address));
            let wake = scope.worker().sync_activator_for(info.address.to_vec());
            move |(input, frontier), output| {
                let live =
                    !frontier.frontier().is_empty() || !pending.is_empty() || !writing.is_empty();
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
                    let thread = match &mut thread {
                        Some(thread) => thread,
                        None => thread.insert(
                            TableWriterThread::start(
                                out.clone(),
                                R::SPEC,
                                writer,
                                delta,
                                wake.clone(),
                            )
                            .unwrap_or_else(|error| {
                                super::fail(
                                    &out,
                                    format!(
                                        "cannot start the writer of table `{table}`: {error:#}"
                                    ),
                                )
                            }),
                        ),
                    };
                    let changes: Vec<(Vec<Cell>, i64)> = updates
                        .iter()
                        .map(|(row, diff)| (row.cells(), *diff as i64))
                        .collect();
                    thread.submit(time, changes, change_file);
                    writing.insert(time, cap);
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
