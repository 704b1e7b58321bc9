//! The in-process engine harness: the dataflow of `tidemark run`, fed parsed input
//! units straight from memory, with no sinks, no checkpoint and no Delta, and every
//! output table captured per logical time. Property tests run hundreds of cases
//! through it in the time a file-based run takes for a few.
//!
//! It feeds the dataflow as `run` does (`tidemark_dataflows::feeds`): unit `i` arrives
//! as arrival `i`, on worker `i % workers`, in logical time `i / group`, with its
//! [`BatchMark`].

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use differential_dataflow::{ExchangeData, VecCollection};
use tidemark_dataflows::feeds::build_with_feeds;
use tidemark_dataflows::model::settings::Params;
use tidemark_dataflows::model::tables::{Cell, TableRow};
use tidemark_dataflows::operators::gate::{BatchMark, Time};
use tidemark_inputs::records::FileBatch;
use timely::dataflow::operators::Inspect;

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
        let mut feeds = worker.dataflow::<Time, _, _>(|scope| {
            let (feeds, o) = build_with_feeds(&scope, params, false);
            macro_rules! capture_all {
                ($($table:ident: $row:ty),*) => {$( capture(o.$table, &into); )*};
            }
            tidemark_dataflows::for_each_table!(capture_all);
            feeds
        });
        for (arrival, (file, batch)) in shared.iter().enumerate() {
            let time = (arrival / group) as Time;
            if arrival > 0 && arrival % group == 0 {
                feeds.advance(time - 1);
            }
            if arrival % peers != index {
                continue;
            }
            feeds.marks.send(BatchMark {
                batch: arrival as u64,
                file: file.clone(),
                max_ts: batch.events.iter().map(|e| e.ts).max(),
            });
            feeds.feed(batch.clone(), arrival as u64, 1);
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
            let mut tables: Tables = tidemark::runtime::run::WRITTEN_TABLES
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
