//! The Delta sink's timely operator: gathers a table's updates on one worker, holds
//! them until their logical time is complete, and hands each time's consolidated
//! changes to the table's commit thread, holding the time open until the commit lands
//! (see the protocol in [`crate::sink`]).

use std::collections::BTreeMap;
use std::path::Path;
use std::rc::Rc;

use differential_dataflow::consolidation::consolidate;
use differential_dataflow::{ExchangeData, Hashable, VecCollection};
use tidemark_dataflows::model::tables::{Cell, TableRow};
use tidemark_dataflows::operators::held::{hold_updates, HeldByTime, HeldUpdates};
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::operators::Capability;
use timely::dataflow::StreamVec;

use super::layout::delta_dir;
use super::table::CommitOutcome;
use crate::sink::delta_thread::DeltaCommitThread;
use crate::sink::SinkReport;

/// Writes `rows` as the Delta table `OUT/tables/<table>/`: every worker's updates are
/// exchanged to worker 0 of the cluster, which commits each completed logical time at
/// which the table changed as one Delta version, on the table's own commit thread (see
/// [`DeltaCommitThread`]). The returned stream carries a [`SinkReport`] per committed
/// time and holds that time open until the commit is done. A failed commit stops the
/// run with a message naming the table and its path.
pub fn delta_sink<'s, R>(
    rows: VecCollection<'s, u64, R>,
    out: &Path,
    retention: std::time::Duration,
) -> StreamVec<'s, u64, SinkReport>
where
    R: TableRow + ExchangeData + Hashable,
{
    let table = R::SPEC.name;
    let dir = delta_dir(out, table);
    let out = out.to_path_buf();
    let pact = Exchange::new(|_: &(R, u64, isize)| 0u64);
    let scope = rows.inner.scope();
    crate::sink::clear_failure(&out);
    rows.inner.unary_frontier(pact, &format!("DeltaSink({table})"), move |_cap, info| {
        let mut pending: HeldUpdates<(R, isize)> = HeldByTime::default();
        // Times handed to the commit thread, with the capability to report each.
        let mut committing: BTreeMap<u64, Capability<u64>> = BTreeMap::new();
        let mut thread: Option<DeltaCommitThread> = None;
        let activator = scope.activator_for(Rc::clone(&info.address));
        let wake = scope.worker().sync_activator_for(info.address.to_vec());
        move |(input, frontier), output| {
            let live = !frontier.frontier().is_empty() || !pending.is_empty() || !committing.is_empty();
            crate::sink::check_failure(&out, &activator, live);
            input.for_each(|cap, data| hold_updates(&mut pending, &cap, data, |row, _time, diff| (row, diff)));
            while let Some((time, cap, mut updates)) = pending.pop_complete(|time| !frontier.frontier().less_equal(&time)) {
                consolidate(&mut updates);
                if updates.is_empty() {
                    continue;
                }
                let thread = match &mut thread {
                    Some(thread) => thread,
                    None => thread.insert(DeltaCommitThread::start(dir.clone(), R::SPEC, wake.clone(), retention).unwrap_or_else(|error| {
                        crate::sink::fail(&out, format!("cannot write the Delta table `{table}` at {}: {error:#}", dir.display()))
                    })),
                };
                let changes: Vec<(Vec<Cell>, i64)> =
                    updates.iter().map(|(row, diff)| (row.cells(), *diff as i64)).collect();
                thread.submit(time, changes);
                committing.insert(time, cap);
            }
            for finished in thread.as_ref().map(DeltaCommitThread::take_finished).unwrap_or_default() {
                let Some(cap) = committing.remove(&finished.time) else {
                    continue;
                };
                match finished.outcome {
                    Ok(CommitOutcome::Committed { .. }) => {
                        output.session(&cap).give(SinkReport { table: table.to_string(), time: finished.time, rows: finished.rows });
                    }
                    Ok(CommitOutcome::AlreadyCommitted | CommitOutcome::NoChange) => {}
                    Err(message) => crate::sink::fail(&out, message),
                }
            }
        }
    })
}
