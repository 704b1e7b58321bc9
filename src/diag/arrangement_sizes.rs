//! `tidemark run --arrangement-sizes FILE`: the number of updates every arrangement
//! holds after each logical time, from differential's own `differential/arrange` log,
//! written as CSV. It answers "which state grows?" the way Materialize's
//! `mz_arrangement_sizes` does, without a heap profiler.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::rc::Rc;

use anyhow::{Context, Result};
use differential_dataflow::logging::{DifferentialEvent, DifferentialEventBuilder};
use timely::logging::{TimelyEvent, TimelyEventBuilder};

/// The CSV header of the sizes file.
pub const HEADER: &str = "logical_time,worker,operator,name,records,batcher_records\n";

/// Updates held per arrangement operator, kept current from differential's log.
#[derive(Default, Debug)]
pub struct SizeLedger {
    names: BTreeMap<usize, String>,
    records: BTreeMap<usize, i64>,
    batcher: BTreeMap<usize, i64>,
}

impl SizeLedger {
    /// Applies one differential log event: new batches add, merges replace their two
    /// inputs by the merged batch, dropped batches subtract.
    pub fn apply(&mut self, event: &DifferentialEvent) {
        match event {
            DifferentialEvent::Batch(b) => {
                *self.records.entry(b.operator).or_default() += b.length as i64;
            }
            DifferentialEvent::Merge(m) => {
                if let Some(merged) = m.complete {
                    *self.records.entry(m.operator).or_default() +=
                        merged as i64 - m.length1 as i64 - m.length2 as i64;
                }
            }
            DifferentialEvent::Drop(d) => {
                *self.records.entry(d.operator).or_default() -= d.length as i64;
            }
            DifferentialEvent::Batcher(b) => {
                *self.batcher.entry(b.operator).or_default() += b.records_diff as i64;
            }
            DifferentialEvent::MergeShortfall(_) | DifferentialEvent::TraceShare(_) => {}
        }
    }

    /// Names an operator (from timely's `Operates` event), made safe for a CSV field.
    pub fn name(&mut self, operator: usize, name: &str) {
        self.names
            .insert(operator, name.replace([',', '"', '\n'], " "));
    }

    /// Updates held by one operator's arrangement.
    pub fn records(&self, operator: usize) -> i64 {
        self.records.get(&operator).copied().unwrap_or(0)
    }

    /// CSV rows for every operator holding updates (or updates in its batcher).
    pub fn csv_rows(&self, logical_time: u64, worker: usize) -> String {
        let mut rows = String::new();
        let operators: std::collections::BTreeSet<usize> = self
            .records
            .keys()
            .chain(self.batcher.keys())
            .copied()
            .collect();
        for operator in operators {
            let records = self.records(operator);
            let batcher = self.batcher.get(&operator).copied().unwrap_or(0);
            if records == 0 && batcher == 0 {
                continue;
            }
            let name = self.names.get(&operator).map_or("?", String::as_str);
            rows.push_str(&format!(
                "{logical_time},{worker},{operator},{name},{records},{batcher}\n"
            ));
        }
        rows
    }
}

/// Creates (or empties) the sizes file and writes its header; done once, before the
/// workers start appending.
pub fn create(path: &Path) -> Result<()> {
    let mut file = File::create(path)
        .with_context(|| format!("creating the arrangement sizes file {}", path.display()))?;
    file.write_all(HEADER.as_bytes())
        .with_context(|| format!("writing {}", path.display()))
}

/// One worker's recorder: a ledger fed by the worker's log, the file it appends to and
/// the newest logical time it wrote (each time is written once).
pub struct SizeRecorder {
    ledger: Rc<RefCell<SizeLedger>>,
    file: File,
    worker: usize,
    written: Option<u64>,
}

impl SizeRecorder {
    /// Registers the loggers on `worker`. Call it before building the dataflow: the
    /// arrangements look their logger up when they are built.
    pub fn register(worker: &mut timely::worker::Worker, path: &Path) -> Result<SizeRecorder> {
        let file = OpenOptions::new()
            .append(true)
            .open(path)
            .with_context(|| format!("opening {}", path.display()))?;
        let ledger: Rc<RefCell<SizeLedger>> = Rc::default();
        if let Some(mut registry) = worker.log_register() {
            let sizes = Rc::clone(&ledger);
            registry.insert::<DifferentialEventBuilder, _>(
                "differential/arrange",
                move |_time, data| {
                    if let Some(data) = data {
                        let mut sizes = sizes.borrow_mut();
                        for (_at, event) in data.iter() {
                            sizes.apply(event);
                        }
                    }
                },
            );
            let names = Rc::clone(&ledger);
            registry.insert::<TimelyEventBuilder, _>("timely", move |_time, data| {
                if let Some(data) = data {
                    let mut names = names.borrow_mut();
                    for (_at, event) in data.iter() {
                        if let TimelyEvent::Operates(op) = event {
                            names.name(op.id, &op.name);
                        }
                    }
                }
            });
        }
        Ok(SizeRecorder {
            ledger,
            file,
            worker: worker.index(),
            written: None,
        })
    }

    /// Appends the sizes once `completed` is the newest completed logical time, unless
    /// that time was already written (one write per time, so the workers' rows do not
    /// interleave mid-line).
    pub fn record(&mut self, worker: &mut timely::worker::Worker, completed: Option<u64>) {
        let Some(logical_time) = completed.filter(|t| self.written < Some(*t)) else {
            return;
        };
        self.written = Some(logical_time);
        if let Some(mut registry) = worker.log_register() {
            registry.flush();
        }
        let rows = self.ledger.borrow().csv_rows(logical_time, self.worker);
        if let Err(error) = self.file.write_all(rows.as_bytes()) {
            tracing::warn!("writing arrangement sizes: {error}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use differential_dataflow::logging::{BatchEvent, DropEvent, MergeEvent};

    #[test]
    fn ledger_adds_batches_replaces_merged_inputs_and_subtracts_drops() {
        let mut ledger = SizeLedger::default();
        ledger.name(7, "UserMonths");
        for length in [10, 6] {
            ledger.apply(&DifferentialEvent::Batch(BatchEvent {
                operator: 7,
                length,
            }));
        }
        assert_eq!(ledger.records(7), 16);
        // A merge start changes nothing; its completion replaces 10 + 6 by 12.
        let merge = |complete| {
            DifferentialEvent::Merge(MergeEvent {
                operator: 7,
                scale: 1,
                length1: 10,
                length2: 6,
                complete,
            })
        };
        ledger.apply(&merge(None));
        assert_eq!(ledger.records(7), 16);
        ledger.apply(&merge(Some(12)));
        assert_eq!(ledger.records(7), 12);
        ledger.apply(&DifferentialEvent::Drop(DropEvent {
            operator: 7,
            length: 12,
        }));
        assert_eq!(ledger.records(7), 0);
        assert_eq!(ledger.csv_rows(3, 0), "");
        ledger.apply(&DifferentialEvent::Batch(BatchEvent {
            operator: 7,
            length: 2,
        }));
        assert_eq!(ledger.csv_rows(3, 1), "3,1,7,UserMonths,2,0\n");
    }
}
