//! The in-process engine harness: the dataflow of `tidemark run`, fed parsed input
//! units straight from memory, with no sinks, no checkpoint and no Delta, and every
//! output table captured per logical time. Property tests run hundreds of cases
//! through it in the time a file-based run takes for a few.
//!
//! It feeds the dataflow as `run` does (`tidemark_dataflows::feeds`): unit `i` arrives
//! as arrival `i`, on worker `i % workers`, in logical time `i / group`, with its
//! [`BatchMark`].
//!
//! It also reads a dataset's files as the oracle's input and compares tables, so that
//! tests of the dataflow alone need nothing of the `tidemark` binary's crate (nor
//! deltalake, which that crate links).

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use std::path::Path;

use differential_dataflow::{ExchangeData, VecCollection};
use tidemark_dataflows::dataflow::WRITTEN_TABLES;
use tidemark_dataflows::feeds::build_with_feeds;
use tidemark_dataflows::model::settings::Params;
use tidemark_dataflows::model::tables::{Cell, TableRow, TableSpec};
use tidemark_dataflows::operators::gate::{BatchMark, Time};
use tidemark_inputs::records::FileBatch;
use tidemark_inputs::Dataset;
use timely::dataflow::operators::Inspect;

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
            let mut tables: Tables = WRITTEN_TABLES
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

/// Tables by name, rows sorted.
pub type Tables = BTreeMap<&'static str, Vec<Vec<Cell>>>;

/// Every input file of a dataset, read in batch order, as the oracle's input.
pub fn read_batches(dataset: &Path, mapping: Option<&Path>) -> Vec<(String, FileBatch)> {
    read_batches_for(dataset, mapping, &Params::default())
}

/// [`read_batches`] reading also the user attributes `params` slices by, as a run does.
pub fn read_batches_for(
    dataset: &Path,
    mapping: Option<&Path>,
    params: &Params,
) -> Vec<(String, FileBatch)> {
    let mut dataset = Dataset::open(dataset, mapping).expect("dataset opens");
    dataset
        .mapping
        .read_attributes(&params.dimensions.attribute_names())
        .expect("attribute names are valid");
    let files = dataset.discover().expect("dataset lists its files");
    files
        .iter()
        .map(|file| (file.rel.clone(), dataset.read(file)))
        .collect()
}

/// Asserts that every written table of the engine equals the oracle's.
pub fn assert_matches_oracle(
    expected: &BTreeMap<&'static str, Vec<Vec<Cell>>>,
    actual: &Tables,
    context: &str,
) {
    for spec in WRITTEN_TABLES {
        let expected = expected
            .get(spec.name)
            .unwrap_or_else(|| panic!("the oracle computes `{}`", spec.name));
        compare(spec, expected, &actual[spec.name], context);
    }
}

/// Compares one table; the panic message lists the differing rows.
pub fn compare(spec: &TableSpec, expected: &[Vec<Cell>], actual: &[Vec<Cell>], context: &str) {
    let equal = expected.len() == actual.len()
        && expected
            .iter()
            .zip(actual)
            .all(|(a, b)| a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.approx_eq(y)));
    if !equal {
        let (missing, extra) = first_differences(expected, actual);
        panic!(
            "{context}: table `{}` differs ({} expected rows, {} actual)\n  missing (first 5): {missing:?}\n  unexpected (first 5): {extra:?}",
            spec.name,
            expected.len(),
            actual.len()
        );
    }
}

/// The first five rows of `expected` missing from `actual`, and of `actual` not in
/// `expected`: what a failed table comparison prints.
pub fn first_differences<'a>(
    expected: &'a [Vec<Cell>],
    actual: &'a [Vec<Cell>],
) -> (Vec<&'a Vec<Cell>>, Vec<&'a Vec<Cell>>) {
    let not_in = |rows: &'a [Vec<Cell>], other: &'a [Vec<Cell>]| {
        rows.iter().filter(|r| !other.contains(r)).take(5).collect()
    };
    (not_in(expected, actual), not_in(actual, expected))
}

/// Generator settings for messy data (3% late, 1% too late, 2% duplicated and 1%
/// invalid rows; `too_late_share` as given), the shape most end-to-end tests use.
pub fn messy_data(
    events: u64,
    users: u64,
    seed: u64,
    days: u32,
    files: u32,
    format: tidemark_inputs::generator::OutputFormat,
    too_late_share: f64,
) -> tidemark_inputs::generator::GeneratorConfig {
    tidemark_inputs::generator::GeneratorConfig {
        events,
        users,
        seed,
        days,
        files,
        format,
        late_share: 0.03,
        too_late_share,
        duplicate_share: 0.02,
        invalid_share: 0.01,
        ..Default::default()
    }
}
