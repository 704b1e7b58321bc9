//! Late-data correction cost: after a backfill of a data set D, how long one late batch
//! of 1, 100 and 10,000 events takes to correct every output table, and how many
//! output changes it makes, against recomputing D + that batch from scratch.
//!
//! Both sides run the whole dataflow (`tidemark_dataflows::dataflow::build`, every
//! table) on one worker over **pre-parsed** rows, with each table's changes
//! consolidated and counted per logical time instead of written to Parquet (so file
//! parsing and writing are out of both sides). The late events belong to users active
//! at the end of D, with `ts` up to 50 minutes below D's largest event time: inside
//! the allowed lateness of one hour, so none is `too_late`. The late batches are fed
//! one after the other (logical times N+1, N+2, ...) after the one backfill.
//!
//! Between the backfill and the first late batch comes one empty file (logical time
//! N), timed and printed on its own as `settle`: a watermark takes effect at the time
//! after the file that moved it, so the first time after the backfill retires the
//! state of the days that the backfill's last file closed. That work belongs to the
//! backfill (the next file pays it, late or not), not to a late event's correction.
//!
//! ```sh
//! cargo bench --bench late_correction -- --data DIR [--sizes 1,100,10000] [--no-recompute]
//! cargo bench --bench late_correction -- --events 1000000
//! ```
//! Prints a table and one `late,SIZE,...` CSV line per size. With `--operators` it
//! also prints where the time of the backfill and of each late batch went, per timely
//! operator (from timely's own schedule log: the time between each operator's schedule
//! start and stop). Under `cargo test` (no `--bench` argument) it runs on a tiny
//! generated data set.

mod common;

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::rc::Rc;
use std::time::{Duration, Instant};

use differential_dataflow::{ExchangeData, Hashable, VecCollection};
use tidemark_dataflows::feeds::build_with_feeds;
use tidemark_dataflows::model::settings::Params;
use tidemark_dataflows::operators::gate::{BatchMark, RawEvent, Time};
use tidemark_inputs::generator::OutputFormat;
use tidemark_inputs::records::Event;
use timely::dataflow::operators::probe::Handle;
use timely::dataflow::operators::{Inspect, Probe};

use common::Parsed;

/// Output changes per table per logical time.
type Counts = Rc<RefCell<BTreeMap<(Time, &'static str), u64>>>;

fn count<'s, D: ExchangeData + Hashable>(
    table: &'static str,
    rows: VecCollection<'s, Time, D>,
    counts: &Counts,
    probe: &Handle<Time>,
) {
    let counts = Rc::clone(counts);
    rows.consolidate()
        .inner
        .inspect(move |(_, time, _)| *counts.borrow_mut().entry((*time, table)).or_default() += 1)
        .probe_with(probe);
}

/// One finished step: its wall time and its output changes per table.
struct Step {
    elapsed: Duration,
    changes: BTreeMap<&'static str, u64>,
}

impl Step {
    fn total(&self) -> u64 {
        self.changes.values().sum()
    }
}

/// Feeds `base` (one logical time per entry), then each of `extra` as its own time;
/// returns the time of the whole base (dataflow construction included) and of each
/// extra batch.
fn run(base: Parsed, extra: Vec<Vec<RawEvent>>, operators: bool) -> (Duration, Vec<Step>) {
    timely::execute_directly(move |worker| {
        let profile = operators.then(|| OperatorProfile::register(worker));
        let started = Instant::now();
        let probe = Handle::new();
        let counts: Counts = Rc::default();
        let (mut rows_in, mut marks_in, mut users_in, mut subs_in, errors_in) = worker
            .dataflow::<Time, _, _>(|scope| {
                let (f, o) = build_with_feeds(&scope, Params::default(), false);
                let p = &probe;
                macro_rules! count_all {
                    ($($table:ident: $row:ty),*) => {$( count(stringify!($table), o.$table, &counts, p); )*};
                }
                tidemark_dataflows::for_each_table!(count_all);
                (f.rows, f.marks, f.users, f.subscriptions, f.errors)
            });
        // Nothing is fed to the read-errors input: close it, or its frontier holds every time.
        drop(errors_in);

        let mut time: Time = 0;
        let Parsed {
            rows,
            max_ts,
            names,
            users,
            subscriptions,
        } = base;
        for ((((batch, max_ts), file), users), subs) in rows
            .into_iter()
            .zip(max_ts)
            .zip(names)
            .zip(users)
            .zip(subscriptions)
        {
            rows_in.send((common::unit_rows(time, batch), 1isize));
            marks_in.send(BatchMark {
                batch: time,
                file,
                max_ts,
            });
            for u in users {
                users_in.insert(u);
            }
            for s in subs {
                subs_in.insert(s);
            }
            time += 1;
            rows_in.advance_to(time);
            marks_in.advance_to(time);
            users_in.advance_to(time);
            subs_in.advance_to(time);
            users_in.flush();
            subs_in.flush();
            worker.step_while(|| probe.less_than(&time));
        }
        let backfill = started.elapsed();
        if let Some(profile) = &profile {
            if let Some(mut registry) = worker.log_register() {
                registry.flush();
            }
            profile.print(backfill);
        }

        let mut steps = Vec::new();
        for batch in extra {
            if let Some(profile) = &profile {
                profile.borrow_mut().total.clear();
            }
            let started = Instant::now();
            let batch_time = time;
            let max_ts = batch.iter().map(|r| r.event.ts).max();
            rows_in.send((common::unit_rows(batch_time, batch), 1isize));
            marks_in.send(BatchMark {
                batch: batch_time,
                file: format!("events/late-{batch_time}.parquet"),
                max_ts,
            });
            time += 1;
            rows_in.advance_to(time);
            marks_in.advance_to(time);
            users_in.advance_to(time);
            subs_in.advance_to(time);
            users_in.flush();
            subs_in.flush();
            worker.step_while(|| probe.less_than(&time));
            let elapsed = started.elapsed();
            if let Some(profile) = &profile {
                if let Some(mut registry) = worker.log_register() {
                    registry.flush();
                }
                eprintln!("late batch at time {batch_time}:");
                profile.print(elapsed);
            }
            let changes = counts
                .borrow()
                .range((batch_time, "")..(batch_time + 1, ""))
                .map(|((_, table), n)| (*table, *n))
                .collect();
            steps.push(Step { elapsed, changes });
        }
        (backfill, steps)
    })
}

/// Time spent inside each operator's `schedule`, from timely's log.
#[derive(Default)]
struct OperatorProfile {
    names: BTreeMap<usize, String>,
    started: BTreeMap<usize, Duration>,
    total: BTreeMap<usize, Duration>,
}

impl OperatorProfile {
    fn register(worker: &mut timely::worker::Worker) -> Rc<RefCell<OperatorProfile>> {
        use timely::logging::{StartStop, TimelyEvent, TimelyEventBuilder};
        let profile: Rc<RefCell<OperatorProfile>> = Rc::default();
        let sink = Rc::clone(&profile);
        if let Some(mut registry) = worker.log_register() {
            registry.insert::<TimelyEventBuilder, _>("timely", move |_time, data| {
                let Some(data) = data else { return };
                let mut p = sink.borrow_mut();
                for (at, event) in data.iter() {
                    match event {
                        TimelyEvent::Operates(op) => {
                            p.names.insert(op.id, op.name.clone());
                        }
                        TimelyEvent::Schedule(s) => match s.start_stop {
                            StartStop::Start => {
                                p.started.insert(s.id, *at);
                            }
                            StartStop::Stop => {
                                if let Some(from) = p.started.remove(&s.id) {
                                    *p.total.entry(s.id).or_default() += at.saturating_sub(from);
                                }
                            }
                        },
                        _ => {}
                    }
                }
            });
        }
        profile
    }
}

trait PrintProfile {
    fn print(&self, wall: Duration);
}

impl PrintProfile for Rc<RefCell<OperatorProfile>> {
    fn print(&self, wall: Duration) {
        let p = self.borrow();
        // The dataflow itself is an operator (a subgraph) holding all others: leave it out.
        let mut rows: Vec<(usize, Duration)> = p
            .total
            .iter()
            .filter(|(id, _)| p.names.get(id).is_some_and(|n| n != "Dataflow"))
            .map(|(id, d)| (*id, *d))
            .collect();
        rows.sort_by_key(|r| std::cmp::Reverse(r.1));
        let inside: Duration = rows.iter().map(|r| r.1).sum();
        eprintln!(
            "operators: {:.3} ms of the step's {:.3} ms were spent inside operators; top 30:",
            inside.as_secs_f64() * 1e3,
            wall.as_secs_f64() * 1e3
        );
        for (id, d) in rows.iter().take(30) {
            let name = p.names.get(id).map_or("?", String::as_str);
            println!(
                "operator,{id},{:.3},{:.1},{}",
                d.as_secs_f64(),
                100.0 * d.as_secs_f64() / wall.as_secs_f64(),
                name.replace(',', ";")
            );
            eprintln!(
                "  {:>4} {:>10.3} ms {:>5.1}%  {name}",
                id,
                d.as_secs_f64() * 1e3,
                100.0 * d.as_secs_f64() / wall.as_secs_f64()
            );
        }
    }
}

/// `size` late events of users active in D's last file, up to 50 minutes below D's
/// largest event time.
fn late_batch(base: &Parsed, size: usize, salt: u64) -> Vec<RawEvent> {
    let max_ts = base.max_ts.iter().flatten().copied().max().unwrap_or(0);
    let recent: Vec<&Event> = base
        .rows
        .iter()
        .rev()
        .flat_map(|rows| rows.iter().map(|r| &r.event))
        .take(50_000)
        .collect();
    let types = ["play", "skip", "like", "pause", "page_view"];
    let mut state = salt.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    (0..size)
        .map(|i| {
            let user = &recent[next() as usize % recent.len()].user_id;
            let back = (next() % (50 * 60_000)) as i64 + 1;
            RawEvent {
                batch: 0,
                row: i as u64 + 1,
                event: Event {
                    event_id: format!("late-{salt}-{i}").into(),
                    user_id: user.clone(),
                    ts: max_ts - back,
                    event_type: types[i % types.len()].into(),
                    item_id: Some(format!("t{}", next() % 1000).into()),
                    duration_ms: Some(30_000),
                    session_id: None,
                    value: None,
                },
            }
        })
        .collect()
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let value = |flag: &str| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let bench = common::bench_mode();
    let sizes: Vec<usize> = value("--sizes")
        .map(|s| {
            s.split(',')
                .map(|n| n.trim().parse().expect("--sizes: numbers"))
                .collect()
        })
        .unwrap_or_else(|| {
            if bench {
                vec![1, 100, 10_000]
            } else {
                vec![1, 10]
            }
        });
    let recompute = !args.iter().any(|a| a == "--no-recompute");
    let operators = args.iter().any(|a| a == "--operators");

    let read_started = Instant::now();
    let (parsed, label, _keep) = match value("--data") {
        Some(dir) => {
            let dir = PathBuf::from(dir);
            let (dataset, files) = common::open_existing(&dir);
            let batches = files.iter().map(|f| dataset.read(f)).collect();
            (
                Parsed::new(&files, batches),
                dir.display().to_string(),
                None,
            )
        }
        None => {
            let events = value("--events")
                .map(|n| n.parse().expect("--events: a number"))
                .unwrap_or(if bench { 1_000_000 } else { 5_000 });
            let data =
                common::generate(&common::config(events, OutputFormat::Parquet, false, false));
            let parsed = Parsed::new(&data.files, data.read_all());
            (parsed, format!("generated, {events} events"), Some(data))
        }
    };
    let n_events = parsed.event_count();
    let n_files = parsed.rows.len();
    eprintln!(
        "late_correction: D = {label}: {n_events} event rows in {n_files} files (read in {:.1}s)",
        read_started.elapsed().as_secs_f64()
    );

    let lates: Vec<Vec<RawEvent>> = sizes
        .iter()
        .enumerate()
        .map(|(i, &size)| late_batch(&parsed, size, i as u64 + 1))
        .collect();
    // The empty file that settles the backfill (see the module docs), then the late
    // batches.
    let fed = std::iter::once(Vec::new())
        .chain(lates.iter().cloned())
        .collect();
    let (backfill, mut steps) = run(parsed.clone(), fed, operators);
    let settle = steps.remove(0);
    eprintln!(
        "backfill of D (dataflow only, pre-parsed, 1 worker): {:.2}s = {:.0} events/s",
        backfill.as_secs_f64(),
        n_events as f64 / backfill.as_secs_f64()
    );
    eprintln!(
        "settle (an empty file after the backfill: the retirement its last watermark \
         scheduled): {:.3} ms",
        settle.elapsed.as_secs_f64() * 1e3
    );

    println!(
        "{:>10} {:>14} {:>14} {:>16} {:>10}",
        "late_rows", "correct_ms", "out_changes", "recompute_ms", "ratio"
    );
    let mut lines = Vec::new();
    for ((size, step), late) in sizes.iter().zip(&steps).zip(lates) {
        let recompute_ms = recompute.then(|| {
            let mut all = parsed.clone();
            all.max_ts.push(late.iter().map(|r| r.event.ts).max());
            all.names.push("events/late.parquet".into());
            all.users.push(Vec::new());
            all.subscriptions.push(Vec::new());
            all.rows.push(late);
            run(all, Vec::new(), false).0.as_secs_f64() * 1e3
        });
        let correct_ms = step.elapsed.as_secs_f64() * 1e3;
        let ratio = recompute_ms.map(|r| r / correct_ms);
        println!(
            "{:>10} {:>14.3} {:>14} {:>16} {:>10}",
            size,
            correct_ms,
            step.total(),
            recompute_ms.map_or("-".into(), |r| format!("{r:.1}")),
            ratio.map_or("-".into(), |r| format!("{r:.0}x")),
        );
        let per_table: Vec<String> = step
            .changes
            .iter()
            .map(|(t, n)| format!("{t}={n}"))
            .collect();
        eprintln!(
            "  changes of the {size}-event batch: {}",
            per_table.join(" ")
        );
        lines.push(format!(
            "late,{size},{correct_ms:.3},{},{},{},{n_events},{:.3}",
            step.total(),
            recompute_ms.map_or(String::new(), |r| format!("{r:.1}")),
            ratio.map_or(String::new(), |r| format!("{r:.1}")),
            backfill.as_secs_f64() * 1e3
        ));
    }
    println!(
        "csv: kind,late_rows,correct_ms,out_changes,recompute_ms,ratio,base_events,backfill_ms"
    );
    for line in lines {
        println!("{line}");
    }
}
