//! Each dataflow family alone on pre-parsed records, in events/s.
//!
//! One single-worker timely dataflow per family (`timely::execute_directly`), fed the
//! same pre-parsed events one file (logical time) at a time, stepping until each time
//! is complete, as `tidemark run` does. No parsing and no sinks: outputs are probed only.
//! A family that reads another family's output (windows read sessions, ...) is built
//! with that upstream family included; its own cost is the difference to the upstream
//! row. `all` is the whole [`build`] from raw rows (watermark gate and dedup included).
//!
//! `cargo bench --bench dataflows` (100,000 events; `TIDEMARK_BENCH_EVENTS` overrides).

mod common;

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use differential_dataflow::input::Input as _;
use differential_dataflow::operators::ThresholdTotal;
use differential_dataflow::VecCollection;
use tidemark_dataflows::feeds::build_with_feeds;
use tidemark_dataflows::metrics::actives::{daily_active, monthly_active};
use tidemark_dataflows::metrics::engagement_by_segment::engagement_by_segment;
use tidemark_dataflows::metrics::event_mix::{day_types, event_mix_daily, skip_rate_daily};
use tidemark_dataflows::metrics::feature_adoption::feature_adoption;
use tidemark_dataflows::metrics::kpis::kpis;
use tidemark_dataflows::metrics::retention_cohorts::{retention_cohorts, UserMonths};
use tidemark_dataflows::metrics::session_metrics_daily::session_metrics_daily;
use tidemark_dataflows::metrics::sessions::sessions;
use tidemark_dataflows::metrics::spike_alerts::spike_alerts;
use tidemark_dataflows::metrics::window_activity::window_activity;
use tidemark_dataflows::model::action::user_day_types;
use tidemark_dataflows::model::action::{Action, ActionsByUser};
use tidemark_dataflows::model::name::Name;
use tidemark_dataflows::model::plans::{plan_facts, Arrival};
use tidemark_dataflows::model::settings::Params;
use tidemark_dataflows::operators::expiry::{earliest_per_key, Watermarks};
use tidemark_dataflows::operators::gate::{deduplicate, watermark_gate, BatchMark, Time, UnitRows};
use tidemark_inputs::generator::OutputFormat;
use tidemark_inputs::records::{Subscription, UserRow};
use tidemark_inputs::time::{day_of, month_of_day};
use timely::dataflow::operators::probe::Handle;
use timely::dataflow::operators::{Input as _, Probe};

use common::Parsed;

/// What a family is built from.
struct Family<'s> {
    events: VecCollection<'s, Time, Action>,
    users: VecCollection<'s, Time, (UserRow, Arrival)>,
    subscriptions: VecCollection<'s, Time, (Subscription, Arrival)>,
    watermarks: Watermarks<'s>,
    params: Params,
    probe: Handle<Time>,
}

impl<'s> Family<'s> {
    fn probe<D: differential_dataflow::Data>(&self, out: VecCollection<'s, Time, D>) {
        out.inner.probe_with(&self.probe);
    }
    fn user_days(&self) -> VecCollection<'s, Time, (Name, i32)> {
        self.events
            .clone()
            .map(|e| (e.user_id, day_of(e.ts)))
            .distinct_total()
    }
    fn user_months(&self, user_days: VecCollection<'s, Time, (Name, i32)>) -> UserMonths<'s> {
        user_days
            .map(|(user, day)| (user, month_of_day(day)))
            .distinct_total()
            .arrange_by_key_named("UserMonths")
    }
}

type Builder = for<'s> fn(&Family<'s>);

const FAMILIES: &[(&str, Builder)] = &[
    ("sessions", |f| {
        f.probe(sessions(f.events.clone(), &f.watermarks, f.params, true))
    }),
    ("windows+sessions", |f| {
        let s = sessions(f.events.clone(), &f.watermarks, f.params, true);
        f.probe(window_activity(
            f.events.clone(),
            s,
            &f.watermarks,
            f.params.window_ms,
        ));
    }),
    ("spikes+windows+sessions", |f| {
        let s = sessions(f.events.clone(), &f.watermarks, f.params, true);
        let w = window_activity(f.events.clone(), s, &f.watermarks, f.params.window_ms);
        f.probe(spike_alerts(w, &f.watermarks, f.params));
    }),
    ("session_metrics+sessions", |f| {
        let s = sessions(f.events.clone(), &f.watermarks, f.params, true);
        f.probe(session_metrics_daily(s));
    }),
    ("actives (daily+monthly)", |f| {
        let days = f.user_days();
        let months = f.user_months(days.clone());
        let daily = daily_active(days);
        let monthly = monthly_active(months.as_collection(|u, m| (*u, *m)), daily.clone());
        f.probe(daily);
        f.probe(monthly);
    }),
    ("retention (+user months)", |f| {
        let days = f.user_days();
        let months = f.user_months(days.clone());
        let cohorts = earliest_per_key(days, true, "FirstActiveDay")
            .map(|(user, day)| (user, month_of_day(day)));
        f.probe(retention_cohorts(months, cohorts, &f.watermarks));
    }),
    ("event_mix+skip_rate", |f| {
        let dt = day_types(user_day_types(f.events.clone()));
        f.probe(event_mix_daily(dt.clone()));
        f.probe(skip_rate_daily(dt));
    }),
    ("feature_adoption (+actives, event_mix)", |f| {
        let days = f.user_days();
        let mix = event_mix_daily(day_types(user_day_types(f.events.clone())));
        let daily = daily_active(days.clone());
        let first_days = earliest_per_key(days, true, "FirstActiveDay");
        f.probe(feature_adoption(
            user_day_types(f.events.clone()),
            first_days,
            mix,
            daily,
            true,
        ));
    }),
    ("segments (+user months)", |f| {
        let months = f.user_months(f.user_days());
        f.probe(engagement_by_segment(
            ActionsByUser::exchange(f.events.clone()),
            months,
            f.users.clone(),
            f.subscriptions.clone(),
            &f.watermarks,
            f.params.forget_behind_watermark,
        ));
    }),
    ("kpis+sessions (+user days)", |f| {
        let s = sessions(f.events.clone(), &f.watermarks, f.params, true);
        f.probe(kpis(
            f.events.clone(),
            f.user_days(),
            s,
            plan_facts(f.users.clone(), f.subscriptions.clone()),
            f.params,
        ));
    }),
];

/// Runs one family over the pre-made actions; returns the time from building to done.
fn run_family(
    actions: Vec<Vec<Action>>,
    users: Vec<Vec<(UserRow, Arrival)>>,
    subscriptions: Vec<Vec<(Subscription, Arrival)>>,
    family: Builder,
) -> Duration {
    timely::execute_directly(move |worker| {
        let started = Instant::now();
        let probe = Handle::new();
        let params = Params::default();
        let (mut events_in, mut users_in, mut subs_in, mut marks_in) = worker
            .dataflow::<Time, _, _>(|scope| {
                let (events_in, events) = scope.new_collection();
                let (users_in, users) = scope.new_collection();
                let (subs_in, subscriptions) = scope.new_collection();
                let (marks_in, watermarks) = scope.new_input::<Vec<i64>>();
                family(&Family {
                    events,
                    users,
                    subscriptions,
                    watermarks,
                    params,
                    probe: probe.clone(),
                });
                (events_in, users_in, subs_in, marks_in)
            });
        // Each time's watermark, as the watermark gate would announce it.
        let mut largest_before: Option<i64> = None;
        for (time, ((events, users), subs)) in actions
            .into_iter()
            .zip(users)
            .zip(subscriptions)
            .enumerate()
        {
            if let Some(largest) = largest_before {
                marks_in.send(largest - params.allowed_lateness_ms);
            }
            for e in events {
                largest_before = Some(largest_before.map_or(e.ts, |m| m.max(e.ts)));
                events_in.insert(e);
            }
            for u in users {
                users_in.insert(u);
            }
            for s in subs {
                subs_in.insert(s);
            }
            let next = time as Time + 1;
            marks_in.advance_to(next);
            events_in.advance_to(next);
            users_in.advance_to(next);
            subs_in.advance_to(next);
            events_in.flush();
            users_in.flush();
            subs_in.flush();
            worker.step_while(|| probe.less_than(&next));
        }
        started.elapsed()
    })
}

/// Runs the whole dataflow (watermark gate, dedup, every table) over raw rows.
pub fn run_all(parsed: Parsed) -> Duration {
    timely::execute_directly(move |worker| {
        let started = Instant::now();
        let probe = Handle::new();
        let (mut rows_in, mut marks_in, mut users_in, mut subs_in, errors_in) = worker
            .dataflow::<Time, _, _>(|scope| {
                let (f, o) = build_with_feeds(&scope, Params::default(), false);
                macro_rules! probe_all {
                    ($($table:ident: $row:ty),*) => {$( o.$table.inner.probe_with(&probe); )*};
                }
                tidemark_dataflows::for_each_table!(probe_all);
                (f.rows, f.marks, f.users, f.subscriptions, f.errors)
            });
        // Nothing is fed to the read-errors input: close it, or its frontier holds every time.
        drop(errors_in);
        let Parsed {
            rows,
            max_ts,
            names,
            users,
            subscriptions,
        } = parsed;
        for (time, ((((rows, max_ts), file), users), subs)) in rows
            .into_iter()
            .zip(max_ts)
            .zip(names)
            .zip(users)
            .zip(subscriptions)
            .enumerate()
        {
            let time = time as Time;
            rows_in.send((common::unit_rows(time, rows), 1isize));
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
            let next = time + 1;
            rows_in.advance_to(next);
            marks_in.advance_to(next);
            users_in.advance_to(next);
            subs_in.advance_to(next);
            users_in.flush();
            subs_in.flush();
            worker.step_while(|| probe.less_than(&next));
        }
        started.elapsed()
    })
}

/// Runs the watermark gate and dedup alone over raw rows.
fn run_ingest(parsed: Parsed) -> Duration {
    timely::execute_directly(move |worker| {
        let started = Instant::now();
        let probe = Handle::new();
        let (mut rows_in, mut marks_in) = worker.dataflow::<Time, _, _>(|scope| {
            let (rows_in, event_rows) = scope.new_input::<Vec<(UnitRows, isize)>>();
            let (marks_in, batch_marks) = scope.new_input::<Vec<BatchMark>>();
            let (on_time, too_late, watermarks) = watermark_gate(
                event_rows,
                batch_marks,
                Params::default().allowed_lateness_ms,
            );
            deduplicate(on_time, &watermarks, false)
                .inner
                .probe_with(&probe);
            too_late.inner.probe_with(&probe);
            (rows_in, marks_in)
        });
        for (time, ((rows, max_ts), file)) in parsed
            .rows
            .into_iter()
            .zip(parsed.max_ts)
            .zip(parsed.names)
            .enumerate()
        {
            let time = time as Time;
            rows_in.send((common::unit_rows(time, rows), 1isize));
            marks_in.send(BatchMark {
                batch: time,
                file,
                max_ts,
            });
            rows_in.advance_to(time + 1);
            marks_in.advance_to(time + 1);
            worker.step_while(|| probe.less_than(&(time + 1)));
        }
        started.elapsed()
    })
}

fn dataflows(c: &mut Criterion) {
    let events = common::events(100_000, 2_000);
    let data = common::generate(&common::config(events, OutputFormat::Parquet, false, true));
    let parsed = Parsed::new(&data.files, data.read_all());
    let actions = parsed.actions();
    let n = parsed.event_count();

    let mut group = c.benchmark_group("dataflows");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5))
        .throughput(Throughput::Elements(n));
    group.bench_function("ingest (watermark gate + dedup)", |b| {
        b.iter_custom(|iters| (0..iters).map(|_| run_ingest(parsed.clone())).sum())
    });
    for (name, family) in FAMILIES {
        group.bench_function(*name, |b| {
            b.iter_custom(|iters| {
                (0..iters)
                    .map(|_| {
                        run_family(
                            actions.clone(),
                            parsed.users.clone(),
                            parsed.subscriptions.clone(),
                            *family,
                        )
                    })
                    .sum()
            })
        });
    }
    group.bench_function("all (build)", |b| {
        b.iter_custom(|iters| (0..iters).map(|_| run_all(parsed.clone())).sum())
    });
    group.finish();
}

criterion_group!(benches, dataflows);
criterion_main!(benches);
