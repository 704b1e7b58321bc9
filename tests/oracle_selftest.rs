//! Self-tests of the oracle: small hand-built batch sequences whose results were
//! worked out by hand from the contract text. They pin the oracle's reading of it.
//! Each example also runs through the engine (the in-process harness, one batch a
//! logical time, on one and two workers), which must give the oracle's tables after
//! every batch: so every worked example is an engine test too.

mod harness;
mod oracle;

use tidemark_dataflows::dataflow::WRITTEN_TABLES;
use tidemark_dataflows::model::settings::Params;
use tidemark_dataflows::model::tables::{self, Cell};
use tidemark_inputs::records::{Event, FileBatch, Plan, QuarantineRow, Subscription, UserRow};
use tidemark_inputs::time::days_from_civil;

// ---------------------------------------------------------------------------------
// Builders
// ---------------------------------------------------------------------------------

const MIN: i64 = 60_000;
const HOUR: i64 = 3_600_000;
const DAY: i64 = 86_400_000;

/// The first instant of a UTC date.
fn date(y: i32, m: u32, d: u32) -> i64 {
    days_from_civil(y, m, d) as i64 * DAY
}

/// 2025-07-12 12:00 UTC: far from midnight, aligned to every window length used here.
fn noon() -> i64 {
    date(2025, 7, 12) + 12 * HOUR
}

fn ev(id: &str, user: &str, ts: i64, kind: &str) -> Event {
    Event {
        event_id: id.into(),
        user_id: user.into(),
        ts,
        event_type: kind.into(),
        item_id: None,
        duration_ms: None,
        session_id: None,
        value: None,
    }
}

fn in_session(mut e: Event, sid: &str) -> Event {
    e.session_id = Some(sid.into());
    e
}

fn lasting(mut e: Event, ms: i64) -> Event {
    e.duration_ms = Some(ms);
    e
}

/// An events file: rows numbered 1, 2, ... in the given order.
fn events(file: &str, events: Vec<Event>) -> (String, FileBatch) {
    let event_rows = (1..=events.len() as u64).collect();
    let batch = FileBatch {
        events,
        event_rows,
        ..FileBatch::default()
    };
    (file.to_string(), batch)
}

fn user(id: &str, country: Option<&str>, plan: Plan) -> UserRow {
    UserRow {
        user_id: id.to_string(),
        signup_ts: None,
        country: country.map(str::to_string),
        plan,
        attributes: Vec::new(),
    }
}

fn users(file: &str, rows: Vec<UserRow>) -> (String, FileBatch) {
    let batch = FileBatch {
        users: rows,
        ..FileBatch::default()
    };
    (file.to_string(), batch)
}

fn sub(id: &str, ts: i64, plan: Plan) -> Subscription {
    Subscription {
        user_id: id.to_string(),
        ts,
        plan,
    }
}

fn subs(file: &str, rows: Vec<Subscription>) -> (String, FileBatch) {
    let batch = FileBatch {
        subscriptions: rows,
        ..FileBatch::default()
    };
    (file.to_string(), batch)
}

/// Defaults, but late events of any age are still accepted.
fn lenient() -> Params {
    Params {
        allowed_lateness_ms: i64::MAX,
        ..Params::default()
    }
}

fn s(v: &str) -> Cell {
    Cell::Str(v.into())
}
fn int(v: i64) -> Cell {
    Cell::Int(v)
}
fn fl(v: f64) -> Cell {
    Cell::Float(v)
}
fn at(ms: i64) -> Cell {
    Cell::Timestamp(ms)
}
/// The DATE cell of the UTC day holding `ms`.
fn day(ms: i64) -> Cell {
    Cell::Date(ms.div_euclid(DAY) as i32)
}
/// The DATE cell of a month (its first day).
fn month(y: i32, m: u32) -> Cell {
    Cell::Date(days_from_civil(y, m, 1))
}
const NULL: Cell = Cell::Null;

/// Asserts that a table of `out` equals `expected` (in any order), floats approximately.
fn check(out: &oracle::Tables, name: &str, mut expected: Vec<Vec<Cell>>) {
    let spec = tables::table_spec(name).expect("a written table");
    expected.sort();
    if let Err(msg) = oracle::compare_table(&spec, &expected, &out[name]) {
        panic!("{msg}\nactual: {:?}", out[name]);
    }
}

fn run(batches: &[(String, FileBatch)], params: &Params) -> oracle::Tables {
    for workers in [1, 2] {
        let engine = harness::run_in_process(batches, *params, workers, 1);
        for (time, actual) in engine.iter().enumerate() {
            let expected = oracle::compute(&batches[..=time], params);
            harness::assert_matches_oracle(
                &expected,
                actual,
                &format!("the engine after batch {time} on {workers} worker(s)"),
            );
        }
    }
    oracle::compute(batches, params)
}

// ---------------------------------------------------------------------------------
// Sessions
// ---------------------------------------------------------------------------------

#[test]
fn empty_input_yields_every_table_empty() {
    let out = oracle::compute(&[], &Params::default());
    assert_eq!(out.len(), WRITTEN_TABLES.len());
    for spec in WRITTEN_TABLES {
        assert_eq!(out[spec.name], Vec::<Vec<Cell>>::new(), "{}", spec.name);
    }
}

#[test]
fn a_gap_of_thirty_minutes_or_more_starts_a_new_session() {
    let b = noon();
    let batches = [events(
        "events/a.csv",
        vec![
            ev("1", "u", b, "play"),
            ev("2", "u", b + 10 * MIN, "play"),
            ev("3", "u", b + 40 * MIN, "play"), // gap of exactly 30 min: new session
            ev("4", "u", b + 69 * MIN, "skip"), // gap of 29 min: same session
        ],
    )];
    let out = run(&batches, &Params::default());
    check(
        &out,
        "sessions",
        vec![
            vec![s("u"), at(b), NULL, at(b + 10 * MIN), fl(600.0), int(2)],
            vec![
                s("u"),
                at(b + 40 * MIN),
                NULL,
                at(b + 69 * MIN),
                fl(1740.0),
                int(2),
            ],
        ],
    );
}

#[test]
fn midnight_splits_a_session() {
    let midnight = date(2025, 7, 13);
    let batches = [events(
        "events/a.csv",
        vec![
            ev("1", "u", midnight - 10 * MIN, "play"),
            ev("2", "u", midnight + 5 * MIN, "play"),
        ],
    )];
    let out = run(&batches, &Params::default());
    check(
        &out,
        "sessions",
        vec![
            vec![
                s("u"),
                at(midnight - 10 * MIN),
                NULL,
                at(midnight - 10 * MIN),
                fl(0.0),
                int(1),
            ],
            vec![
                s("u"),
                at(midnight + 5 * MIN),
                NULL,
                at(midnight + 5 * MIN),
                fl(0.0),
                int(1),
            ],
        ],
    );

    let no_split = Params {
        midnight_split: false,
        ..Params::default()
    };
    let out = run(&batches, &no_split);
    check(
        &out,
        "sessions",
        vec![vec![
            s("u"),
            at(midnight - 10 * MIN),
            NULL,
            at(midnight + 5 * MIN),
            fl(900.0),
            int(2),
        ]],
    );
}

#[test]
fn source_session_ids_group_a_users_events_whatever_the_gap() {
    let b = noon();
    let batches = [events(
        "events/a.csv",
        vec![
            in_session(ev("1", "u", b, "play"), "s1"),
            ev("2", "u", b + HOUR, "play"), // no id: a derived session of its own
            in_session(ev("3", "u", b + 2 * HOUR, "stop"), "s1"),
            in_session(ev("4", "v", b, "play"), "s1"), // same id, other user
        ],
    )];
    let out = run(&batches, &Params::default());
    check(
        &out,
        "sessions",
        vec![
            vec![s("u"), at(b), s("s1"), at(b + 2 * HOUR), fl(7200.0), int(2)],
            vec![s("u"), at(b + HOUR), NULL, at(b + HOUR), fl(0.0), int(1)],
            vec![s("v"), at(b), s("s1"), at(b), fl(0.0), int(1)],
        ],
    );
}

#[test]
fn a_late_event_that_bridges_two_sessions_merges_them() {
    let b = noon();
    let batches = [
        events(
            "events/1.csv",
            vec![ev("1", "u", b, "play"), ev("2", "u", b + 40 * MIN, "play")],
        ),
        // Watermark b + 40 min - 1 h: b + 20 min is late but allowed.
        events("events/2.csv", vec![ev("3", "u", b + 20 * MIN, "skip")]),
    ];
    let each = oracle::compute_each(&batches, &Params::default());
    check(
        &each[0],
        "sessions",
        vec![
            vec![s("u"), at(b), NULL, at(b), fl(0.0), int(1)],
            vec![
                s("u"),
                at(b + 40 * MIN),
                NULL,
                at(b + 40 * MIN),
                fl(0.0),
                int(1),
            ],
        ],
    );
    check(
        &each[1],
        "sessions",
        vec![vec![
            s("u"),
            at(b),
            NULL,
            at(b + 40 * MIN),
            fl(2400.0),
            int(3),
        ]],
    );
    check(
        &each[1],
        "session_metrics_daily",
        vec![vec![day(b), int(1), fl(2400.0), fl(3.0)]],
    );
}

#[test]
fn session_metrics_daily_averages_the_sessions_starting_that_day() {
    let b = noon();
    let batches = [events(
        "events/a.csv",
        vec![
            ev("1", "u", b, "play"),
            ev("2", "u", b + 10 * MIN, "play"),
            ev("3", "v", b + HOUR, "play"),
            ev("4", "w", b + DAY, "play"),
        ],
    )];
    let out = run(&batches, &Params::default());
    check(
        &out,
        "session_metrics_daily",
        vec![
            vec![day(b), int(2), fl(300.0), fl(1.5)],
            vec![day(b + DAY), int(1), fl(0.0), fl(1.0)],
        ],
    );
}

// ---------------------------------------------------------------------------------
// Lateness, duplicates, quarantine
// ---------------------------------------------------------------------------------

#[test]
fn an_event_below_the_watermark_is_quarantined_as_too_late() {
    let b = noon();
    let late = ev("3", "v", b + HOUR - 1, "play");
    let batches = [
        events("events/a.csv", vec![ev("1", "u", b + 2 * HOUR, "play")]),
        // Watermark = b + 2 h - 1 h = b + 1 h.
        events(
            "events/b.csv",
            vec![
                ev("2", "u", b + HOUR, "play"), // exactly at the watermark: accepted
                late.clone(),                   // 1 ms below: too late
                ev("4", "w", b + 3 * HOUR, "play"),
            ],
        ),
    ];
    let out = run(&batches, &Params::default());
    check(
        &out,
        "quarantine",
        vec![vec![
            s("events/b.csv"),
            int(2),
            s("ts"),
            s("too_late"),
            s(&late.raw_json()),
        ]],
    );
    check(&out, "daily_active", vec![vec![day(b), int(2)]]);
    check(
        &out,
        "event_mix_daily",
        vec![vec![day(b), s("play"), int(3), fl(1.0)]],
    );
}

#[test]
fn the_watermark_comes_from_earlier_batches_only() {
    let b = noon();
    let batches = [
        events("events/1.csv", vec![ev("1", "u", b, "play")]),
        // Watermark b - 1 h; b + 5 h in the same batch does not raise it yet.
        events(
            "events/2.csv",
            vec![ev("2", "u", b + 5 * HOUR, "play"), ev("3", "u", b, "play")],
        ),
        // Watermark b + 4 h.
        events("events/3.csv", vec![ev("4", "u", b + 3 * HOUR, "play")]),
    ];
    let each = oracle::compute_each(&batches, &Params::default());
    check(&each[1], "quarantine", vec![]);
    check(&each[1], "daily_active", vec![vec![day(b), int(1)]]);
    let q = &each[2]["quarantine"];
    assert_eq!(q.len(), 1);
    assert_eq!(
        q[0][..4],
        [s("events/3.csv"), int(1), s("ts"), s("too_late")]
    );
}

#[test]
fn duplicates_count_once_first_seen_wins() {
    let b = noon();
    let batches = [
        events("events/1.csv", vec![ev("x", "u", b, "play")]),
        events(
            "events/2.csv",
            vec![
                ev("x", "v", b + MIN, "skip"), // repeat of an earlier batch's id
                ev("y", "w", b + MIN, "like"),
                ev("y", "w", b + 2 * MIN, "pause"), // repeat within the batch
            ],
        ),
    ];
    let out = run(&batches, &Params::default());
    check(&out, "daily_active", vec![vec![day(b), int(2)]]);
    check(
        &out,
        "event_mix_daily",
        vec![
            vec![day(b), s("like"), int(1), fl(0.5)],
            vec![day(b), s("play"), int(1), fl(0.5)],
        ],
    );
    check(
        &out,
        "sessions",
        vec![
            vec![s("u"), at(b), NULL, at(b), fl(0.0), int(1)],
            vec![s("w"), at(b + MIN), NULL, at(b + MIN), fl(0.0), int(1)],
        ],
    );
    // Duplicates are not errors: nothing is quarantined.
    check(&out, "quarantine", vec![]);
}

#[test]
fn duplicates_raise_the_watermark_and_late_duplicates_are_quarantined() {
    let b = noon();
    let batches = [
        events("events/1.csv", vec![ev("x", "u", b + 2 * HOUR, "play")]),
        // A duplicate (dropped) that still raises the largest event time to b + 6 h.
        events("events/2.csv", vec![ev("x", "u", b + 6 * HOUR, "play")]),
        // Watermark b + 5 h: a too-late event is quarantined even if it is a repeat.
        events(
            "events/3.csv",
            vec![ev("y", "v", b + 4 * HOUR, "play"), ev("x", "u", b, "play")],
        ),
    ];
    let out = run(&batches, &Params::default());
    let q: Vec<_> = out["quarantine"].iter().map(|r| r[..4].to_vec()).collect();
    assert_eq!(
        q,
        vec![
            vec![s("events/3.csv"), int(1), s("ts"), s("too_late")],
            vec![s("events/3.csv"), int(2), s("ts"), s("too_late")],
        ]
    );
    check(&out, "daily_active", vec![vec![day(b), int(1)]]);
}

#[test]
fn quarantine_keeps_the_readers_rows() {
    let mut bad = events("events/b.csv", vec![ev("1", "u", noon(), "play")]);
    bad.1.quarantine = vec![QuarantineRow {
        file: "events/b.csv".into(),
        row: 2,
        field: "duration_ms".into(),
        reason: "out_of_range".into(),
        raw: "2,u,2025-07-12T12:00:00Z,play,,-5,".into(),
    }];
    let mut broken = events("events/a.parquet", vec![]);
    broken.1.quarantine = vec![QuarantineRow {
        file: "events/a.parquet".into(),
        row: 0,
        field: String::new(),
        reason: "unreadable".into(),
        raw: "truncated".into(),
    }];
    let out = run(&[broken, bad], &Params::default());
    check(
        &out,
        "quarantine",
        vec![
            vec![
                s("events/a.parquet"),
                int(0),
                s(""),
                s("unreadable"),
                s("truncated"),
            ],
            vec![
                s("events/b.csv"),
                int(2),
                s("duration_ms"),
                s("out_of_range"),
                s("2,u,2025-07-12T12:00:00Z,play,,-5,"),
            ],
        ],
    );
}

// ---------------------------------------------------------------------------------
// Windows and spikes
// ---------------------------------------------------------------------------------

#[test]
fn window_activity_counts_events_users_and_sessions_started() {
    let b = noon();
    let batches = [events(
        "events/a.csv",
        vec![
            ev("1", "u", b + MIN, "play"),
            ev("2", "v", b + 2 * MIN, "play"),
            ev("3", "u", b + 4 * MIN, "play"),
            ev("4", "v", b + 12 * MIN, "play"), // continues v's session
            in_session(ev("5", "w", b + 12 * MIN, "play"), "s"),
        ],
    )];
    let out = run(&batches, &Params::default());
    check(
        &out,
        "window_activity",
        vec![
            vec![at(b), at(b + 5 * MIN), int(3), int(2), int(2), fl(0.4)],
            vec![
                at(b + 10 * MIN),
                at(b + 15 * MIN),
                int(2),
                int(2),
                int(1),
                fl(0.2),
            ],
        ],
    );
}

/// One single-event user per session: slot i of `counts` gets that many sessions.
fn sessions_per_slot(counts: &[usize], window: i64) -> Vec<(String, FileBatch)> {
    let b = noon();
    let mut list = Vec::new();
    for (slot, &n) in counts.iter().enumerate() {
        for j in 0..n {
            let id = format!("{slot}-{j}");
            list.push(ev(&id, &id, b + slot as i64 * window, "play"));
        }
    }
    vec![events("events/a.csv", list)]
}

#[test]
fn spike_baseline_counts_empty_slots_as_zero() {
    let b = noon();
    let w = 5 * MIN;
    let params = Params {
        baseline_windows: 3,
        baseline_percentile: 0.5,
        ..Params::default()
    };
    // Slots 0..=5: sessions 2, -, 1, 4, -, 1 (slots 1 and 4 have no window row).
    let out = run(&sessions_per_slot(&[2, 0, 1, 4, 0, 1], w), &params);
    check(
        &out,
        "spike_alerts",
        vec![
            // Fewer than 3 slots since the first window: nulls, no spike.
            vec![
                at(b),
                int(2),
                NULL,
                NULL,
                Cell::Bool(false),
                NULL,
                NULL,
                NULL,
            ],
            vec![
                at(b + 2 * w),
                int(1),
                NULL,
                NULL,
                Cell::Bool(false),
                NULL,
                NULL,
                NULL,
            ],
            // Baseline [2, 0, 1]: mean 1, median 1.
            vec![
                at(b + 3 * w),
                int(4),
                fl(1.0),
                fl(1.0),
                Cell::Bool(true),
                NULL,
                NULL,
                NULL,
            ],
            // Baseline [1, 4, 0]: mean 5/3, median 1.
            vec![
                at(b + 5 * w),
                int(1),
                fl(5.0 / 3.0),
                fl(1.0),
                Cell::Bool(false),
                NULL,
                NULL,
                NULL,
            ],
        ],
    );
}

#[test]
fn spike_p95_interpolates_linearly_between_ranks() {
    let b = noon();
    let w = 5 * MIN;
    let params = Params {
        baseline_windows: 3,
        ..Params::default()
    };
    let out = run(&sessions_per_slot(&[2, 0, 1, 2, 0, 3], w), &params);
    check(
        &out,
        "spike_alerts",
        vec![
            vec![
                at(b),
                int(2),
                NULL,
                NULL,
                Cell::Bool(false),
                NULL,
                NULL,
                NULL,
            ],
            vec![
                at(b + 2 * w),
                int(1),
                NULL,
                NULL,
                Cell::Bool(false),
                NULL,
                NULL,
                NULL,
            ],
            // Baseline sorted [0, 1, 2], pos 0.95 * 2 = 1.9: 1 + 0.9 * (2 - 1) = 1.9.
            vec![
                at(b + 3 * w),
                int(2),
                fl(1.0),
                fl(1.9),
                Cell::Bool(true),
                NULL,
                NULL,
                NULL,
            ],
            // Baseline [1, 2, 0] -> same p95 1.9; 3 > 1.9.
            vec![
                at(b + 5 * w),
                int(3),
                fl(1.0),
                fl(1.9),
                Cell::Bool(true),
                NULL,
                NULL,
                NULL,
            ],
        ],
    );
}

#[test]
fn a_spike_needs_more_than_the_percentile() {
    let b = noon();
    let w = 5 * MIN;
    let params = Params {
        baseline_windows: 2,
        ..Params::default()
    };
    // Slot 2: baseline [2, 2], p95 = 2; 2 sessions is not above it.
    let out = run(&sessions_per_slot(&[2, 2, 2], w), &params);
    check(
        &out,
        "spike_alerts",
        vec![
            vec![
                at(b),
                int(2),
                NULL,
                NULL,
                Cell::Bool(false),
                NULL,
                NULL,
                NULL,
            ],
            vec![
                at(b + w),
                int(2),
                NULL,
                NULL,
                Cell::Bool(false),
                NULL,
                NULL,
                NULL,
            ],
            vec![
                at(b + 2 * w),
                int(2),
                fl(2.0),
                fl(2.0),
                Cell::Bool(false),
                NULL,
                NULL,
                NULL,
            ],
        ],
    );
}

/// The seasonal rule, worked by hand: the noon window on four days with 2, 3, 2 and
/// 20 sessions (no other window has events).
#[test]
fn alert_compares_a_window_with_the_same_window_on_earlier_days() {
    let b = noon();
    let mut list = Vec::new();
    for (d, &n) in [2usize, 3, 2, 20].iter().enumerate() {
        for j in 0..n {
            let id = format!("{d}-{j}");
            list.push(ev(&id, &id, b + d as i64 * DAY, "play"));
        }
    }
    let batches = [events("events/a.csv", list)];
    let out = run(&batches, &Params::default());
    // Days 1 and 2 have fewer than 3 earlier days: no verdict. Day 3: earlier days
    // [2, 3, 2]: median 2, absolute deviations [0, 1, 0] with median 0, so the scale
    // is max(0, sqrt(2), 1) = sqrt(2); threshold 2 + 6 * sqrt(2) = 10.485..., and 20
    // sessions (at least 5) alert. The contract's rule sees 12 empty slots before each.
    let threshold = 2.0 + 6.0 * 2f64.sqrt();
    check(
        &out,
        "spike_alerts",
        vec![
            vec![
                at(b),
                int(2),
                NULL,
                NULL,
                Cell::Bool(false),
                NULL,
                NULL,
                NULL,
            ],
            vec![
                at(b + DAY),
                int(3),
                fl(0.0),
                fl(0.0),
                Cell::Bool(true),
                NULL,
                NULL,
                NULL,
            ],
            vec![
                at(b + 2 * DAY),
                int(2),
                fl(0.0),
                fl(0.0),
                Cell::Bool(true),
                NULL,
                NULL,
                NULL,
            ],
            vec![
                at(b + 3 * DAY),
                int(20),
                fl(0.0),
                fl(0.0),
                Cell::Bool(true),
                Cell::Bool(true),
                fl(2.0),
                fl(threshold),
            ],
        ],
    );
    // A window below `alert_min_sessions` never alerts, however far above the baseline.
    let params = Params {
        alert_min_sessions: 21,
        ..Params::default()
    };
    let out = run(&batches, &params);
    let last = out["spike_alerts"]
        .iter()
        .find(|row| row[0] == at(b + 3 * DAY))
        .unwrap();
    assert_eq!(last[5], Cell::Bool(false));
}

// ---------------------------------------------------------------------------------
// Active users and retention
// ---------------------------------------------------------------------------------

#[test]
fn daily_and_monthly_active_with_stickiness() {
    let d1 = date(2025, 7, 12);
    let aug1 = date(2025, 8, 1);
    let batches = [events(
        "events/a.csv",
        vec![
            ev("1", "u", d1 + HOUR, "play"),
            ev("2", "v", d1 + 2 * HOUR, "play"),
            ev("3", "u", d1 + 3 * HOUR, "play"),
            ev("4", "u", d1 + DAY + HOUR, "play"),
            ev("5", "w", aug1 + HOUR, "play"),
        ],
    )];
    let out = run(&batches, &Params::default());
    check(
        &out,
        "daily_active",
        vec![
            vec![day(d1), int(2)],
            vec![day(d1 + DAY), int(1)],
            vec![day(aug1), int(1)],
        ],
    );
    check(
        &out,
        "monthly_active",
        vec![
            vec![month(2025, 7), int(2), fl(1.5), fl(0.75)],
            vec![month(2025, 8), int(1), fl(1.0), fl(1.0)],
        ],
    );
}

#[test]
fn retention_only_emits_non_empty_cells() {
    let jul = date(2025, 7, 10);
    let aug = date(2025, 8, 10);
    let sep = date(2025, 9, 10);
    let batches = [events(
        "events/a.csv",
        vec![
            ev("1", "u", jul, "play"),
            ev("2", "v", jul + HOUR, "play"),
            ev("3", "w", aug, "play"),
            ev("4", "u", sep, "play"),
            ev("5", "w", sep + HOUR, "play"),
        ],
    )];
    let out = run(&batches, &Params::default());
    check(
        &out,
        "retention_cohorts",
        vec![
            vec![month(2025, 7), int(0), int(2), int(2), fl(1.0)],
            // Nobody of July is active in August: no (July, 1) row.
            vec![month(2025, 7), int(2), int(2), int(1), fl(0.5)],
            vec![month(2025, 8), int(0), int(1), int(1), fl(1.0)],
            vec![month(2025, 8), int(1), int(1), int(1), fl(1.0)],
        ],
    );
}

#[test]
fn a_late_first_event_moves_a_user_to_an_earlier_cohort() {
    let jul = date(2025, 7, 10);
    let aug = date(2025, 8, 10);
    let batches = [
        events(
            "events/1.csv",
            vec![ev("1", "u", jul, "play"), ev("2", "v", aug, "play")],
        ),
        events("events/2.csv", vec![ev("3", "v", jul + HOUR, "play")]),
    ];
    let each = oracle::compute_each(&batches, &lenient());
    check(
        &each[0],
        "retention_cohorts",
        vec![
            vec![month(2025, 7), int(0), int(1), int(1), fl(1.0)],
            vec![month(2025, 8), int(0), int(1), int(1), fl(1.0)],
        ],
    );
    check(
        &each[1],
        "retention_cohorts",
        vec![
            vec![month(2025, 7), int(0), int(2), int(2), fl(1.0)],
            vec![month(2025, 7), int(1), int(2), int(1), fl(0.5)],
        ],
    );
}

// ---------------------------------------------------------------------------------
// Event mix and feature adoption
// ---------------------------------------------------------------------------------

#[test]
fn event_mix_shares_are_fractions_of_the_days_events() {
    let b = noon();
    let batches = [events(
        "events/a.csv",
        vec![
            ev("1", "u", b, "play"),
            ev("2", "u", b + MIN, "play"),
            ev("3", "v", b + 2 * MIN, "play"),
            ev("4", "v", b + 3 * MIN, "skip"),
            ev("5", "v", b + DAY, "like"),
        ],
    )];
    let out = run(&batches, &Params::default());
    check(
        &out,
        "event_mix_daily",
        vec![
            vec![day(b), s("play"), int(3), fl(0.75)],
            vec![day(b), s("skip"), int(1), fl(0.25)],
            vec![day(b + DAY), s("like"), int(1), fl(1.0)],
        ],
    );
}

#[test]
fn feature_adoption_counts_first_uses_and_may_report_zero_new_adopters() {
    let (d1, d2, d3) = (noon(), noon() + DAY, noon() + 2 * DAY);
    let batches = [events(
        "events/a.csv",
        vec![
            ev("1", "u", d1, "play"),
            ev("2", "v", d1, "skip"),
            ev("3", "u", d2, "play"),
            ev("4", "w", d2, "play"),
            ev("5", "u", d2 + MIN, "skip"),
            ev("6", "v", d3, "play"),
            ev("7", "u", d3, "skip"),
        ],
    )];
    let out = run(&batches, &Params::default());
    check(
        &out,
        "feature_adoption",
        vec![
            // Users active so far: 2 on day 1, 3 from day 2.
            vec![day(d1), s("play"), int(1), int(1), fl(50.0)],
            vec![day(d1), s("skip"), int(1), int(1), fl(50.0)],
            vec![day(d2), s("play"), int(1), int(2), fl(200.0 / 3.0)],
            vec![day(d2), s("skip"), int(1), int(2), fl(200.0 / 3.0)],
            vec![day(d3), s("play"), int(1), int(3), fl(100.0)],
            vec![day(d3), s("skip"), int(0), int(2), fl(200.0 / 3.0)],
        ],
    );
}

// ---------------------------------------------------------------------------------
// KPIs
// ---------------------------------------------------------------------------------

#[test]
fn kpis_period_excludes_events_outside_from_to() {
    let p = noon();
    let params = Params {
        period_from: p,
        period_to: p + DAY,
        engaged_sessions: 1,
        ..lenient()
    };
    let batches = [events(
        "events/a.csv",
        vec![
            ev("1", "a", p - 1, "play"), // before the period; a's session starts here
            ev("2", "a", p, "play"),     // in the period, same session
            ev("3", "b", p + DAY, "play"), // at `to`: outside
            ev("4", "c", p + DAY - 1, "play"),
        ],
    )];
    let out = run(&batches, &params);
    check(
        &out,
        "kpis",
        vec![
            vec![s("total_customers"), fl(3.0)], // no users/ rows: users seen
            vec![s("active_customers"), fl(2.0)], // a, c
            // Only c has a session starting in the period.
            vec![s("session_adoption_rate_pct"), fl(100.0 / 3.0)],
            vec![s("engaged_users_pct"), fl(50.0)],
            // No users/ or subscriptions/ rows: the paid share is unknown, no row
            // (issue 13: it showed 0.00 on Online Retail, which has no plans).
        ],
    );
}

#[test]
fn total_customers_counts_users_rows_a_later_row_replacing_an_earlier() {
    let b = noon();
    let batches = [
        users(
            "users/1.csv",
            vec![
                user("a", Some("US"), Plan::Free),
                user("b", Some("DE"), Plan::Free),
            ],
        ),
        users("users/2.csv", vec![user("a", Some("FR"), Plan::Paid)]),
    ];
    // Users but no events: only the metrics with a non-zero denominator.
    let out = run(&batches, &Params::default());
    check(
        &out,
        "kpis",
        vec![
            vec![s("total_customers"), fl(2.0)],
            vec![s("active_customers"), fl(0.0)],
            vec![s("session_adoption_rate_pct"), fl(0.0)],
        ],
    );

    let mut with_events = batches.to_vec();
    with_events.push(events(
        "events/a.csv",
        vec![ev("1", "a", b, "play"), ev("2", "c", b, "play")],
    ));
    let out = run(&with_events, &Params::default());
    check(
        &out,
        "kpis",
        vec![
            vec![s("total_customers"), fl(2.0)],
            vec![s("active_customers"), fl(2.0)],
            vec![s("session_adoption_rate_pct"), fl(100.0)], // a and c of 2 customers
            vec![s("engaged_users_pct"), fl(0.0)],
            vec![s("paid_share_pct"), fl(50.0)], // a (paid by its later row)
        ],
    );
}

#[test]
fn engaged_users_have_at_least_the_threshold_of_sessions() {
    let b = noon();
    let params = Params {
        engaged_sessions: 2,
        ..Params::default()
    };
    let batches = [events(
        "events/a.csv",
        vec![
            ev("1", "u", b, "play"),
            ev("2", "u", b + HOUR, "play"),
            ev("3", "v", b, "play"),
            ev("4", "v", b + MIN, "play"),
        ],
    )];
    let out = run(&batches, &params);
    let engaged = out["kpis"]
        .iter()
        .find(|r| r[0] == s("engaged_users_pct"))
        .expect("engaged_users_pct");
    assert!(engaged[1].approx_eq(&fl(50.0)), "{engaged:?}");
}

#[test]
fn paid_share_counts_users_paid_at_any_instant_of_the_period() {
    let p = noon();
    let params = Params {
        period_from: p,
        period_to: p + DAY,
        ..Params::default()
    };
    let batches = [
        users(
            "users/a.csv",
            vec![
                user("a", None, Plan::Paid),
                user("b", None, Plan::Free),
                user("c", None, Plan::Free),
                user("d", None, Plan::Paid),
                user("e", None, Plan::Free),
                user("f", None, Plan::Free),
            ],
        ),
        subs(
            "subscriptions/a.csv",
            vec![
                sub("b", p + HOUR, Plan::Paid), // upgrades inside the period
                sub("c", p - HOUR, Plan::Paid), // paid already at `from`
                sub("d", p - HOUR, Plan::Free), // downgraded before the period
                sub("e", p + 2 * HOUR, Plan::Paid),
                sub("e", p + 2 * HOUR, Plan::Free), // same instant, arrives later: wins
                sub("f", p + DAY, Plan::Paid),      // at `to`: outside
            ],
        ),
        events(
            "events/a.csv",
            ["a", "b", "c", "d", "e", "f"]
                .iter()
                .map(|u| ev(u, u, p + 3 * HOUR, "play"))
                .collect(),
        ),
    ];
    let out = run(&batches, &params);
    let paid = out["kpis"]
        .iter()
        .find(|r| r[0] == s("paid_share_pct"))
        .expect("paid_share_pct");
    assert!(paid[1].approx_eq(&fl(50.0)), "{paid:?}"); // a, b, c of 6
}

// ---------------------------------------------------------------------------------
// Engagement by segment
// ---------------------------------------------------------------------------------

#[test]
fn a_late_plan_change_moves_events_to_the_paid_segment() {
    let b = noon();
    let batches = [
        users("users/a.csv", vec![user("u", Some("SE"), Plan::Free)]),
        events(
            "events/a.csv",
            vec![
                lasting(ev("1", "u", b, "play"), 1000),
                ev("2", "u", b + HOUR, "play"), // null duration counts 0
                lasting(ev("3", "v", b, "play"), 500), // no users/ row
            ],
        ),
        subs(
            "subscriptions/a.csv",
            vec![sub("u", b + 30 * MIN, Plan::Paid)],
        ),
    ];
    let each = oracle::compute_each(&batches, &Params::default());
    check(
        &each[1],
        "engagement_by_segment",
        vec![
            vec![month(2025, 7), NULL, NULL, int(1), int(1), int(500)],
            vec![
                month(2025, 7),
                s("SE"),
                s("free"),
                int(1),
                int(2),
                int(1000),
            ],
        ],
    );
    check(
        &each[2],
        "engagement_by_segment",
        vec![
            vec![month(2025, 7), NULL, NULL, int(1), int(1), int(500)],
            vec![
                month(2025, 7),
                s("SE"),
                s("free"),
                int(1),
                int(1),
                int(1000),
            ],
            vec![month(2025, 7), s("SE"), s("paid"), int(1), int(1), int(0)],
        ],
    );
}

#[test]
fn segments_use_the_latest_users_row_and_subscriptions_from_their_first_row_on() {
    let b = noon();
    let batches = [
        users(
            "users/1.csv",
            vec![
                user("u", Some("SE"), Plan::Free),
                user("w", Some("DE"), Plan::Free),
            ],
        ),
        users("users/2.csv", vec![user("u", None, Plan::Paid)]), // replaces u's row
        subs(
            "subscriptions/a.csv",
            vec![sub("w", b + HOUR, Plan::Paid), sub("x", b, Plan::Paid)],
        ),
        events(
            "events/a.csv",
            vec![
                ev("1", "u", b, "play"),
                ev("2", "w", b, "play"), // before w's first subscription row
                ev("3", "w", b + 2 * HOUR, "play"), // after it
                ev("4", "x", b, "play"), // no users/ row, but a subscription
                ev("5", "x", date(2025, 8, 1), "play"),
            ],
        ),
    ];
    let out = run(&batches, &lenient());
    check(
        &out,
        "engagement_by_segment",
        vec![
            vec![month(2025, 7), NULL, s("paid"), int(2), int(2), int(0)], // u and x
            vec![month(2025, 7), s("DE"), s("free"), int(1), int(1), int(0)],
            vec![month(2025, 7), s("DE"), s("paid"), int(1), int(1), int(0)],
            vec![month(2025, 8), NULL, s("paid"), int(1), int(1), int(0)],
        ],
    );
}

// ---------------------------------------------------------------------------------
// Shape
// ---------------------------------------------------------------------------------

#[test]
fn every_cell_has_its_columns_type_and_rows_are_sorted() {
    use tables::ColumnType;
    let b = noon();
    let mut late = events(
        "events/2.csv",
        vec![ev("9", "v", b - 2 * HOUR, "play"), ev("10", "w", b, "like")],
    );
    late.1.quarantine.push(QuarantineRow {
        file: "events/2.csv".into(),
        row: 3,
        field: "user_id".into(),
        reason: "missing_value".into(),
        raw: "10,,x".into(),
    });
    let batches = [
        users("users/a.csv", vec![user("u", Some("SE"), Plan::Paid)]),
        subs("subscriptions/a.csv", vec![sub("w", b, Plan::Free)]),
        events(
            "events/1.csv",
            (0..30)
                .map(|i| {
                    let e = lasting(ev(&i.to_string(), "u", b + i * 7 * MIN, "play"), i);
                    if i % 3 == 0 {
                        in_session(e, "s")
                    } else {
                        e
                    }
                })
                .collect(),
        ),
        late,
    ];
    let out = run(&batches, &Params::default());
    for spec in WRITTEN_TABLES {
        let rows = &out[spec.name];
        assert!(!rows.is_empty(), "{} has rows", spec.name);
        assert!(
            rows.windows(2).all(|w| w[0] <= w[1]),
            "{} sorted",
            spec.name
        );
        for row in rows {
            assert_eq!(row.len(), spec.columns.len());
            for (cell, column) in row.iter().zip(spec.columns) {
                let ok = match (cell, column.ty) {
                    (Cell::Null, _) => column.nullable,
                    (Cell::Str(_), ColumnType::Str)
                    | (Cell::Int(_), ColumnType::Int)
                    | (Cell::Float(_), ColumnType::Float)
                    | (Cell::Bool(_), ColumnType::Bool)
                    | (Cell::Timestamp(_), ColumnType::Timestamp)
                    | (Cell::Date(_), ColumnType::Date) => true,
                    _ => false,
                };
                assert!(ok, "{}.{}: {cell:?}", spec.name, column.name);
            }
        }
    }
}

// ---------------------------------------------------------------------------------
// Per-user facts for prediction (user_activity_daily, user_plans)
// ---------------------------------------------------------------------------------

#[test]
fn user_activity_daily_counts_a_users_events_kinds_and_sessions_per_day() {
    let b = noon();
    let batches = [events(
        "events/a.csv",
        vec![
            ev("1", "u", b, "play"),
            ev("2", "u", b + 5 * MIN, "skip"),
            ev("3", "u", b + 6 * MIN, "like"),
            ev("4", "u", b + HOUR, "play"), // a gap of 54 minutes: a second session
            ev("4", "u", b + 2 * HOUR, "play"), // a duplicate id: not accepted
            ev("5", "v", b + DAY, "skip"),
        ],
    )];
    let out = run(&batches, &Params::default());
    check(
        &out,
        "user_activity_daily",
        vec![
            // 4 events, 2 plays, 1 skip, 2 sessions lasting 6 min and 0 s.
            vec![s("u"), day(b), int(4), int(2), int(1), int(2), fl(360.0)],
            vec![
                s("v"),
                day(b + DAY),
                int(1),
                int(0),
                int(1),
                int(1),
                fl(0.0),
            ],
        ],
    );
}

#[test]
fn user_plans_keep_the_profile_and_every_step_to_a_different_plan() {
    let b = noon();
    let batches = [
        users("users/a.csv", vec![user("u", None, Plan::Free)]),
        subs(
            "subscriptions/a.csv",
            vec![
                sub("u", b, Plan::Free),            // no step: free already
                sub("u", b + HOUR, Plan::Paid),     // a step
                sub("u", b + 2 * HOUR, Plan::Paid), // no step
                sub("w", b, Plan::Paid),            // no users/ row: the first change is a step
                sub("w", b + DAY, Plan::Free),
            ],
        ),
        // A later-arriving row at an instant already seen wins there.
        subs("subscriptions/b.csv", vec![sub("w", b + DAY, Plan::Paid)]),
    ];
    let out = run(&batches, &Params::default());
    check(
        &out,
        "user_plans",
        vec![
            vec![s("u"), NULL, s("free")],
            vec![s("u"), at(b + HOUR), s("paid")],
            vec![s("w"), at(b), s("paid")],
        ],
    );
}

// ---------------------------------------------------------------------------------
// engagement_by_dimension
// ---------------------------------------------------------------------------------

fn item(id: &str, genre: Option<&str>, artist: Option<&str>) -> tidemark_inputs::records::Item {
    tidemark_inputs::records::Item {
        item_id: id.to_string(),
        artist_id: artist.map(str::to_string),
        genre: genre.map(str::to_string),
        title: None,
        duration_ms: None,
    }
}

fn items(file: &str, rows: Vec<tidemark_inputs::records::Item>) -> (String, FileBatch) {
    let batch = FileBatch {
        items: rows,
        ..FileBatch::default()
    };
    (file.to_string(), batch)
}

fn on(mut e: Event, item: &str, value: Option<f64>) -> Event {
    e.item_id = Some(item.into());
    e.value = value.map(tidemark_inputs::records::Measure);
    e
}

fn dimension_params(names: &[&str]) -> Params {
    tidemark_dataflows::model::settings::Settings {
        dimensions: names.iter().map(|n| n.to_string()).collect(),
        ..Default::default()
    }
    .params()
    .unwrap()
}

#[test]
fn dimensions_slice_events_by_hour_genre_artist_and_country() {
    let b = date(2025, 3, 1) + 10 * HOUR;
    let batches = [
        items(
            "items/a.csv",
            vec![
                item("t1", Some("rock"), Some("ar1")),
                item("t2", None, Some("ar2")),
            ],
        ),
        users("users/a.csv", vec![user("u", Some("DE"), Plan::Free)]),
        events(
            "events/a.csv",
            vec![
                on(lasting(ev("1", "u", b, "play"), 1000), "t1", Some(4.0)),
                on(ev("2", "u", b + 5 * MIN, "play"), "t1", Some(2.0)),
                on(ev("3", "v", b + HOUR, "play"), "t2", None), // genre null
                on(ev("4", "v", b + HOUR + MIN, "skip"), "t9", Some(1.5)), // no items/ row
                ev("5", "v", b + HOUR + 2 * MIN, "like"),       // no item at all
            ],
        ),
    ];
    let params = dimension_params(&["hour_of_day", "genre", "artist", "country"]);
    let out = run(&batches, &params);
    let d = day(b);
    // (dimension, member, active users, events, total duration, mean value, values)
    let rows = [
        ("hour_of_day", s("10"), 1, 2, 1000, fl(3.0), 2),
        ("hour_of_day", s("11"), 1, 3, 0, fl(1.5), 1),
        ("genre", s("rock"), 1, 2, 1000, fl(3.0), 2),
        ("genre", NULL, 1, 3, 0, fl(1.5), 1),
        ("artist", s("ar1"), 1, 2, 1000, fl(3.0), 2),
        ("artist", s("ar2"), 1, 1, 0, NULL, 0),
        ("artist", NULL, 1, 2, 0, fl(1.5), 1),
        ("country", s("DE"), 1, 2, 1000, fl(3.0), 2),
        ("country", NULL, 1, 3, 0, fl(1.5), 1),
    ];
    let expected = rows
        .into_iter()
        .map(|(dim, member, users, events, duration, mean, values)| {
            vec![
                d.clone(),
                s(dim),
                member,
                int(users),
                int(events),
                int(duration),
                mean,
                int(values),
            ]
        })
        .collect();
    check(&out, "engagement_by_dimension", expected);
}

#[test]
fn a_late_catalogue_row_moves_its_items_events_to_the_new_member() {
    let b = date(2025, 3, 1) + 10 * HOUR;
    let first = [
        events(
            "events/a.csv",
            vec![
                on(ev("1", "u", b, "play"), "t1", Some(1.0)),
                on(ev("2", "w", b + MIN, "play"), "t2", Some(3.0)),
            ],
        ),
        items(
            "items/a.csv",
            vec![item("t1", Some("pop"), None), item("t2", Some("pop"), None)],
        ),
    ];
    let params = dimension_params(&["genre"]);
    let out = run(&first, &params);
    let d = day(b);
    let row = |member: &str, users: i64, events: i64, mean: f64, values: i64| {
        vec![
            d.clone(),
            s("genre"),
            s(member),
            int(users),
            int(events),
            int(0),
            fl(mean),
            int(values),
        ]
    };
    check(
        &out,
        "engagement_by_dimension",
        vec![row("pop", 2, 2, 2.0, 2)],
    );
    // t1 becomes jazz: its event moves; `pop` keeps only w's.
    let mut later = first.to_vec();
    later.push(items("items/b.csv", vec![item("t1", Some("jazz"), None)]));
    let out = run(&later, &params);
    check(
        &out,
        "engagement_by_dimension",
        vec![row("jazz", 1, 1, 1.0, 1), row("pop", 1, 1, 3.0, 1)],
    );
    // Without any items/ row, genre has no rows; hour_of_day always has.
    let out = run(&first[..1], &dimension_params(&["genre", "hour_of_day"]));
    assert!(out["engagement_by_dimension"]
        .iter()
        .all(|row| row[1] == s("hour_of_day")));
}

#[test]
fn a_user_attribute_slices_by_the_latest_users_row() {
    let b = date(2025, 3, 1) + 10 * HOUR;
    let with = |id: &str, platform: Option<&str>| UserRow {
        attributes: vec![("platform".to_string(), platform.map(str::to_string))],
        ..user(id, None, Plan::Free)
    };
    let batches = [
        users("users/a.csv", vec![with("u", Some("ios")), with("w", None)]),
        events(
            "events/a.csv",
            vec![
                ev("1", "u", b, "play"),
                ev("2", "w", b, "play"),
                ev("3", "x", b, "play"),
            ],
        ),
        users("users/b.csv", vec![with("u", Some("android"))]),
    ];
    let out = run(&batches, &dimension_params(&["platform"]));
    let d = day(b);
    check(
        &out,
        "engagement_by_dimension",
        vec![
            vec![
                d.clone(),
                s("platform"),
                s("android"),
                int(1),
                int(1),
                int(0),
                NULL,
                int(0),
            ],
            vec![d, s("platform"), NULL, int(2), int(2), int(0), NULL, int(0)],
        ],
    );
}
