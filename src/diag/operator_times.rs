//! `TIDEMARK_OPERATOR_TIMES=1`: how long every dataflow operator ran on each worker,
//! from timely's own schedule log, printed to stderr when the worker ends. It answers
//! "which operator costs the time?" exactly, the way Materialize's
//! `mz_scheduling_elapsed` does, where a sampling profile of generic code is hard to
//! attribute. A diagnostic for profiling, not a user setting.

use std::cell::RefCell;
use std::collections::HashMap;
use std::fmt::Write;
use std::rc::Rc;
use std::time::{Duration, Instant};

use timely::logging::{StartStop, TimelyEvent, TimelyEventBuilder};

/// The environment variable that turns the operator times on.
pub const ENV: &str = "TIDEMARK_OPERATOR_TIMES";

/// Time spent per operator, kept current from the schedule log.
#[derive(Default, Debug)]
pub struct OperatorLedger {
    names: HashMap<usize, (Vec<usize>, String)>,
    started: HashMap<usize, Duration>,
    elapsed: HashMap<usize, Duration>,
    calls: HashMap<usize, u64>,
}

impl OperatorLedger {
    /// Applies one timely log event stamped `at`.
    pub fn apply(&mut self, at: Duration, event: &TimelyEvent) {
        match event {
            TimelyEvent::Operates(op) => {
                self.names.insert(op.id, (op.addr.clone(), op.name.clone()));
            }
            TimelyEvent::Schedule(s) => match s.start_stop {
                StartStop::Start => {
                    self.started.insert(s.id, at);
                }
                StartStop::Stop => {
                    if let Some(start) = self.started.remove(&s.id) {
                        *self.elapsed.entry(s.id).or_default() += at.saturating_sub(start);
                        *self.calls.entry(s.id).or_default() += 1;
                    }
                }
            },
            _ => {}
        }
    }

    /// A table of the operators that ran longest, leaves only (an operator that is a
    /// scope holding others counts its children's time too), with the share of `wall`.
    pub fn report(&self, worker: usize, wall: Duration, top: usize) -> String {
        let is_scope = |addr: &Vec<usize>| {
            self.names
                .values()
                .any(|(other, _)| other.len() > addr.len() && other.starts_with(addr))
        };
        let mut rows: Vec<(Duration, u64, String)> = self
            .elapsed
            .iter()
            .filter_map(|(id, elapsed)| {
                let (addr, name) = self.names.get(id)?;
                (!is_scope(addr)).then(|| {
                    let calls = self.calls.get(id).copied().unwrap_or(0);
                    (*elapsed, calls, format!("{name} {addr:?}"))
                })
            })
            .collect();
        rows.sort_by_key(|row| std::cmp::Reverse(row.0));
        let in_operators: Duration = rows.iter().map(|r| r.0).sum();
        let mut text = format!(
            "worker {worker}: {:.2} s wall, {:.2} s in operators\n",
            wall.as_secs_f64(),
            in_operators.as_secs_f64()
        );
        for (elapsed, calls, name) in rows.iter().take(top) {
            let share = 100.0 * elapsed.as_secs_f64() / wall.as_secs_f64().max(1e-9);
            let _ = writeln!(
                text,
                "  {:8.3} s {share:5.1}% {calls:7} calls  {name}",
                elapsed.as_secs_f64()
            );
        }
        text
    }
}

/// One worker's operator clock.
pub struct OperatorTimes {
    ledger: Rc<RefCell<OperatorLedger>>,
    began: Instant,
}

impl OperatorTimes {
    /// Registers the logger on `worker` when [`ENV`] is set; call it before building the
    /// dataflows so that their `Operates` events are seen.
    pub fn register(worker: &mut timely::worker::Worker) -> Option<OperatorTimes> {
        std::env::var_os(ENV)?;
        let ledger: Rc<RefCell<OperatorLedger>> = Rc::default();
        let mut registry = worker.log_register()?;
        let sink = Rc::clone(&ledger);
        registry.insert::<TimelyEventBuilder, _>("timely", move |_time, data| {
            if let Some(data) = data {
                let mut ledger = sink.borrow_mut();
                for (at, event) in data.iter() {
                    ledger.apply(*at, event);
                }
            }
        });
        Some(OperatorTimes {
            ledger,
            began: Instant::now(),
        })
    }

    /// Prints the report to stderr.
    pub fn print(self, worker: &mut timely::worker::Worker) {
        if let Some(mut registry) = worker.log_register() {
            registry.flush();
        }
        let report = self
            .ledger
            .borrow()
            .report(worker.index(), self.began.elapsed(), 40);
        eprint!("{report}");
    }
}
