//! The in-process engine harness: the dataflow of `tidemark run`, fed parsed input
//! units straight from memory, with no sinks, no checkpoint and no Delta, and every
//! output table captured per logical time. Property tests run hundreds of cases
//! through it in the time a file-based run takes for a few.
//!
//! It feeds the dataflow as `run` does (`src/run.rs`, `Feeds::feed`): unit `i` arrives
//! as arrival `i`, on worker `i % workers`, in logical time `i / group`; each unit's
//! event rows go in with its [`BatchMark`], its `users/` and `subscriptions/` rows with
//! their arrival, its quarantine rows as read errors.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use differential_dataflow::input::Input as _;
use differential_dataflow::{ExchangeData, VecCollection};
use tidemark_dataflows::dataflow::{build, Inputs};
use tidemark_dataflows::ingest::{BatchMark, RawEvent, Time};
use tidemark_dataflows::settings::Params;
use tidemark_dataflows::tables::{Cell, TableRow};
use tidemark_inputs::records::{FileBatch, QuarantineRow};
use timely::dataflow::operators::{Input as _, Inspect};

use super::Tables;

/// Every update of every table: (table, row, time, diff).
type Captured = Arc<Mutex<Vec<(&'static str, Vec<Cell>, Time, isize)>>>;

fn capture<'s, R: TableRow + ExchangeData>(rows: VecCollection<'s, Time, R>, into: &Captured) {
    let into = Arc::clone(into);
    rows.inner.inspect(move |(row, time, diff)| {
        into.lock()
            .unwrap()
            .push((R::SPEC.name, row.cells(), *time, *diff))
    });
}

/// Runs the dataflow over `units` (in arrival order) on `workers` threads, `group` units
/// a logical time, and returns every table after each logical time.
pub fn run_in_process(
    units: &[(String, FileBatch)],
    params: Params,
    workers: usize,
    group: usize,
) -> Vec<Tables> {
    let group = group.max(1);
    let times = units.len().div_ceil(group);
    let captured: Captured = Arc::default();
    let shared = Arc::new(units.to_vec());
    let into = Arc::clone(&captured);
    timely::execute(timely::Config::process(workers), move |worker| {
        let (index, peers) = (worker.index(), worker.peers());
        let (mut rows_in, mut marks_in, mut users_in, mut subs_in, mut errors_in) = worker
            .dataflow::<Time, _, _>(|scope| {
                let (rows_in, event_rows) = scope.new_input::<Vec<(RawEvent, isize)>>();
                let (marks_in, batch_marks) = scope.new_input::<Vec<BatchMark>>();
                let (users_in, users) = scope.new_collection();
                let (subs_in, subscriptions) = scope.new_collection();
                let (errors_in, read_errors) = scope.new_collection::<QuarantineRow, isize>();
                let o = build(
                    Inputs {
                        event_rows,
                        batch_marks,
                        users,
                        subscriptions,
                        read_errors,
                        retractions: false,
                    },
                    params,
                );
                macro_rules! capture_all {
                    ($($table:ident),*) => {$( capture(o.$table, &into); )*};
                }
                tidemark_dataflows::for_each_table!(capture_all);
                (rows_in, marks_in, users_in, subs_in, errors_in)
            });
        for (arrival, (file, batch)) in shared.iter().enumerate() {
            let time = (arrival / group) as Time;
            rows_in.advance_to(time);
            marks_in.advance_to(time);
            users_in.advance_to(time);
            subs_in.advance_to(time);
            errors_in.advance_to(time);
            if arrival % peers != index {
                continue;
            }
            let arrival = arrival as u64;
            let batch = batch.clone();
            marks_in.send(BatchMark {
                batch: arrival,
                file: file.clone(),
                max_ts: batch.events.iter().map(|e| e.ts).max(),
            });
            for (event, row) in batch.events.into_iter().zip(batch.event_rows) {
                rows_in.send((
                    RawEvent {
                        batch: arrival,
                        row,
                        event,
                    },
                    1,
                ));
            }
            for (position, user) in batch.users.into_iter().enumerate() {
                users_in.insert((user, (arrival, position as u64)));
            }
            for (position, change) in batch.subscriptions.into_iter().enumerate() {
                subs_in.insert((change, (arrival, position as u64)));
            }
            for row in batch.quarantine {
                errors_in.insert(row);
            }
        }
        // Dropping the inputs closes every time; the worker runs the dataflow to the end.
    })
    .expect("the in-process dataflow runs");

    let updates = std::mem::take(&mut *captured.lock().unwrap());
    (0..times as Time)
        .map(|upto| {
            let mut summed: BTreeMap<(&'static str, Vec<Cell>), i64> = BTreeMap::new();
            for (table, row, time, diff) in &updates {
                if *time <= upto {
                    *summed.entry((table, row.clone())).or_default() += *diff as i64;
                }
            }
            let mut tables: Tables = tidemark::run::WRITTEN_TABLES
                .iter()
                .map(|spec| (spec.name, Vec::new()))
                .collect();
            for ((table, row), count) in summed {
                assert!(
                    count >= 0,
                    "table {table} holds a row with count {count}: {row:?}"
                );
                let rows = tables.get_mut(table).expect("a written table");
                rows.extend(std::iter::repeat_n(row, count as usize));
            }
            tables
        })
        .collect()
}
