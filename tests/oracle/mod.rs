//! The independent oracle: every output table of the data contract
//! (`/work/shared/CONTRACT.md`) computed as a plain, single-threaded batch over
//! all the batches seen so far, with ordinary collections.
//!
//! It shares only the contract's types with the engine (input records, time helpers,
//! `Params`, table specs and `Cell`), never its code. Clarity beats speed here: each
//! table is computed by the most direct reading of the contract that we could write.
//!
//! Where the contract leaves a choice open, the decisions are written next to the
//! code that makes them (watermark, dedup order, plan in force, KPI rows, ...).

#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};

use tidemark_dataflows::dataflow::WRITTEN_TABLES;
use tidemark_dataflows::model::settings::Params;
use tidemark_dataflows::model::tables::{self, Cell, TableSpec};
use tidemark_inputs::records::{Event, FileBatch, Item, Millis, Plan, QuarantineRow, UserRow};
use tidemark_inputs::time::{day_of, month_first_day, month_of, month_of_day};

/// Every table by name, each a sorted list of rows in `TableSpec` column order.
pub type Tables = BTreeMap<&'static str, Vec<Vec<Cell>>>;

/// Every contract table computed from the batches seen so far (batch `i` = logical
/// time `i`, in order). Every table the engine writes ([`WRITTEN_TABLES`]) is present,
/// possibly empty.
pub fn compute(batches: &[(String, FileBatch)], params: &Params) -> Tables {
    let input = Input::read(batches, params);
    let sessions = sessions(&input.accepted, params);

    let mut out = Tables::new();
    out.insert(tables::SESSIONS.name, sessions_table(&sessions));
    out.insert(
        tables::WINDOW_ACTIVITY.name,
        window_activity(&input, &sessions, params),
    );
    out.insert(
        tables::SPIKE_ALERTS.name,
        spike_alerts(&input, &sessions, params),
    );
    out.insert(tables::DAILY_ACTIVE.name, daily_active(&input));
    out.insert(tables::MONTHLY_ACTIVE.name, monthly_active(&input));
    out.insert(tables::RETENTION_COHORTS.name, retention_cohorts(&input));
    out.insert(tables::KPIS.name, kpis(&input, &sessions, params));
    out.insert(
        tables::SESSION_METRICS_DAILY.name,
        session_metrics_daily(&sessions),
    );
    out.insert(tables::EVENT_MIX_DAILY.name, event_mix_daily(&input));
    out.insert(tables::SKIP_RATE_DAILY.name, skip_rate_daily(&input));
    out.insert(tables::FEATURE_ADOPTION.name, feature_adoption(&input));
    out.insert(
        tables::ENGAGEMENT_BY_SEGMENT.name,
        engagement_by_segment(&input),
    );
    out.insert(tables::QUARANTINE.name, quarantine_table(&input));
    out.insert(
        tables::ENGAGEMENT_BY_DIMENSION.name,
        engagement_by_dimension(&input, params),
    );
    out.insert(
        tables::USER_ACTIVITY_DAILY.name,
        user_activity_daily(&input, &sessions),
    );
    out.insert(tables::USER_PLANS.name, user_plans(&input));

    for spec in WRITTEN_TABLES {
        let rows = out
            .get_mut(spec.name)
            .unwrap_or_else(|| panic!("the oracle computes `{}`", spec.name));
        for row in rows.iter() {
            assert_eq!(
                row.len(),
                spec.columns.len(),
                "oracle row width for {}",
                spec.name
            );
        }
        rows.sort();
    }
    assert_eq!(
        out.len(),
        WRITTEN_TABLES.len(),
        "the oracle computes only written tables"
    );
    out
}

/// The accepted events of the batches (valid, not too late, first seen by event_id),
/// in arrival order: what tests of features beyond the tables start from.
pub fn accepted_events(batches: &[(String, FileBatch)], params: &Params) -> Vec<Event> {
    Input::read(batches, params).accepted
}

/// `compute` after each batch: element `t` holds the tables as of logical time `t`.
pub fn compute_each(batches: &[(String, FileBatch)], params: &Params) -> Vec<Tables> {
    (0..batches.len())
        .map(|t| compute(&batches[..=t], params))
        .collect()
}

/// Compares two versions of one table (both sorted, as `compute` returns them) with
/// `Cell::approx_eq` on every cell. The error lists the first differences.
pub fn compare_table(
    spec: &TableSpec,
    expected: &[Vec<Cell>],
    actual: &[Vec<Cell>],
) -> Result<(), String> {
    let same = expected.len() == actual.len()
        && expected
            .iter()
            .zip(actual)
            .all(|(e, a)| e.len() == a.len() && e.iter().zip(a).all(|(x, y)| x.approx_eq(y)));
    if same {
        return Ok(());
    }
    let show = |row: &Vec<Cell>| {
        row.iter()
            .map(|c| format!("{c:?}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut msg = format!(
        "table {}: expected {} rows, got {} rows\n",
        spec.name,
        expected.len(),
        actual.len()
    );
    let missing: Vec<_> = expected
        .iter()
        .filter(|e| !actual.iter().any(|a| rows_approx_eq(e, a)))
        .collect();
    let extra: Vec<_> = actual
        .iter()
        .filter(|a| !expected.iter().any(|e| rows_approx_eq(e, a)))
        .collect();
    for row in missing.iter().take(10) {
        msg.push_str(&format!("  missing: [{}]\n", show(row)));
    }
    for row in extra.iter().take(10) {
        msg.push_str(&format!("  extra:   [{}]\n", show(row)));
    }
    Err(msg)
}

fn rows_approx_eq(a: &[Cell], b: &[Cell]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.approx_eq(y))
}

// ---------------------------------------------------------------------------------
// Input: lateness, dedup, users and subscriptions
// ---------------------------------------------------------------------------------

/// Where a row arrived: (batch index, position within its table in the batch).
/// "Later-arriving" means a greater `Arrival`.
type Arrival = (usize, usize);

/// One subscription row with its arrival order.
#[derive(Clone, Debug)]
struct SubRow {
    ts: Millis,
    arrival: Arrival,
    plan: Plan,
}

/// The inputs after the lateness check and dedup, ready for the metrics.
struct Input {
    /// Accepted events (valid, not too late, first seen by event_id), in arrival order.
    accepted: Vec<Event>,
    /// The reader's quarantine rows plus the `too_late` rows.
    quarantine: Vec<QuarantineRow>,
    /// Per user, the latest-arriving users/ row (a later row replaces an earlier one).
    users: BTreeMap<String, UserRow>,
    /// Per user, every subscription row with its arrival.
    subscriptions: BTreeMap<String, Vec<SubRow>>,
    /// Per item, the latest-arriving items/ row.
    items: BTreeMap<String, Item>,
}

impl Input {
    fn read(batches: &[(String, FileBatch)], params: &Params) -> Input {
        let mut accepted = Vec::new();
        let mut quarantine = Vec::new();
        let mut users = BTreeMap::new();
        let mut subscriptions: BTreeMap<String, Vec<SubRow>> = BTreeMap::new();
        let mut items = BTreeMap::new();

        let mut seen_ids = BTreeSet::new();
        // Largest `ts` of the not-too-late events of all earlier batches (duplicates
        // included); `None` until some batch had one, i.e. no watermark yet.
        let mut max_ts_before: Option<Millis> = None;

        for (t, (file, batch)) in batches.iter().enumerate() {
            assert_eq!(
                batch.events.len(),
                batch.event_rows.len(),
                "event_rows of {file}"
            );
            let watermark = max_ts_before.map(|m| m.saturating_sub(params.allowed_lateness_ms));
            let mut max_ts_here = max_ts_before;
            for (event, &row) in batch.events.iter().zip(&batch.event_rows) {
                if watermark.is_some_and(|w| event.ts < w) {
                    quarantine.push(QuarantineRow {
                        file: file.clone(),
                        row,
                        field: "ts".to_string(),
                        reason: "too_late".to_string(),
                        raw: event.raw_json(),
                    });
                    continue;
                }
                max_ts_here = Some(max_ts_here.map_or(event.ts, |m| m.max(event.ts)));
                // First seen wins: batches and positions are visited in arrival order.
                if seen_ids.insert(event.event_id.clone()) {
                    accepted.push(event.clone());
                }
            }
            max_ts_before = max_ts_here;

            quarantine.extend(batch.quarantine.iter().cloned());
            for user in &batch.users {
                users.insert(user.user_id.clone(), user.clone());
            }
            for item in &batch.items {
                items.insert(item.item_id.clone(), item.clone());
            }
            for (pos, sub) in batch.subscriptions.iter().enumerate() {
                subscriptions
                    .entry(sub.user_id.clone())
                    .or_default()
                    .push(SubRow {
                        ts: sub.ts,
                        arrival: (t, pos),
                        plan: sub.plan,
                    });
            }
        }
        Input {
            accepted,
            quarantine,
            users,
            subscriptions,
            items,
        }
    }

    /// The plan in force for `user` at instant `x`: the plan of the user's subscription
    /// row with the greatest `ts <= x` (ties: the later-arriving row); without such a
    /// row, the plan of the user's users/ row; else none.
    fn plan_at(&self, user: &str, x: Millis) -> Option<Plan> {
        let latest_sub = self
            .subscriptions
            .get(user)
            .into_iter()
            .flatten()
            .filter(|s| s.ts <= x)
            .max_by_key(|s| (s.ts, s.arrival));
        match latest_sub {
            Some(sub) => Some(sub.plan),
            None => self.users.get(user).map(|u| u.plan),
        }
    }

    /// Whether `user` is on `paid` at any instant of `[from, to)`. The plan in force
    /// only changes at subscription instants, so it suffices to look at `from` and at
    /// every subscription instant inside the period (at such an instant, `plan_at`
    /// sees the row that wins there, so a row superseded at the same `ts` by a
    /// later-arriving row does not count).
    fn paid_during(&self, user: &str, from: Millis, to: Millis) -> bool {
        if self.plan_at(user, from) == Some(Plan::Paid) {
            return true;
        }
        self.subscriptions
            .get(user)
            .into_iter()
            .flatten()
            .filter(|s| from <= s.ts && s.ts < to)
            .any(|s| self.plan_at(user, s.ts) == Some(Plan::Paid))
    }

    /// Distinct users with at least one accepted event.
    fn users_seen(&self) -> BTreeSet<&str> {
        self.accepted.iter().map(|e| e.user_id.as_str()).collect()
    }
}

// ---------------------------------------------------------------------------------
// Sessions
// ---------------------------------------------------------------------------------

/// One session of one user.
#[derive(Clone, Debug)]
struct Session {
    user_id: String,
    /// The source's session id, `None` for a derived session.
    session_id: Option<String>,
    start: Millis,
    end: Millis,
    actions: usize,
}

impl Session {
    fn duration_s(&self) -> f64 {
        (self.end - self.start) as f64 / 1000.0
    }
}

/// Sessions over all accepted events: events with a source `session_id` form one
/// session per (user, session_id); the others are split per user by gap and midnight.
fn sessions(accepted: &[Event], params: &Params) -> Vec<Session> {
    let mut given: BTreeMap<(&str, &str), Vec<Millis>> = BTreeMap::new();
    let mut derived: BTreeMap<&str, Vec<Millis>> = BTreeMap::new();
    for e in accepted {
        match &e.session_id {
            Some(sid) => given.entry((&e.user_id, sid)).or_default().push(e.ts),
            None => derived.entry(&e.user_id).or_default().push(e.ts),
        }
    }

    let mut out = Vec::new();
    for ((user, sid), times) in given {
        out.push(Session {
            user_id: user.to_string(),
            session_id: Some(sid.to_string()),
            start: *times.iter().min().unwrap(),
            end: *times.iter().max().unwrap(),
            actions: times.len(),
        });
    }
    for (user, mut times) in derived {
        times.sort();
        // Split the sorted times into runs; a new run starts at the first event, after
        // a gap >= session_gap_ms, and (if enabled) when the UTC day changes.
        let mut runs: Vec<Vec<Millis>> = Vec::new();
        for (i, &ts) in times.iter().enumerate() {
            let starts_new = if i == 0 {
                true
            } else {
                let prev = times[i - 1];
                ts - prev >= params.session_gap_ms
                    || (params.midnight_split && day_of(ts) != day_of(prev))
            };
            if starts_new {
                runs.push(Vec::new());
            }
            runs.last_mut().unwrap().push(ts);
        }
        for run in runs {
            out.push(Session {
                user_id: user.to_string(),
                session_id: None,
                start: run[0],
                end: *run.last().unwrap(),
                actions: run.len(),
            });
        }
    }
    out
}

fn sessions_table(sessions: &[Session]) -> Vec<Vec<Cell>> {
    sessions
        .iter()
        .map(|s| {
            vec![
                Cell::Str(s.user_id.clone().into()),
                Cell::Timestamp(s.start),
                Cell::opt_str(s.session_id.as_deref()),
                Cell::Timestamp(s.end),
                Cell::Float(s.duration_s()),
                Cell::Int(s.actions as i64),
            ]
        })
        .collect()
}

// ---------------------------------------------------------------------------------
// Windows and spikes
// ---------------------------------------------------------------------------------

/// One tumbling window with at least one accepted event.
struct Window {
    events: usize,
    users: BTreeSet<String>,
    sessions_started: usize,
}

/// Windows by index k (window = [k*window_ms, (k+1)*window_ms)), only those with events.
fn windows(input: &Input, sessions: &[Session], params: &Params) -> BTreeMap<i64, Window> {
    let mut windows: BTreeMap<i64, Window> = BTreeMap::new();
    for e in &input.accepted {
        let w = windows
            .entry(e.ts.div_euclid(params.window_ms))
            .or_insert(Window {
                events: 0,
                users: BTreeSet::new(),
                sessions_started: 0,
            });
        w.events += 1;
        w.users.insert(e.user_id.to_string());
    }
    for s in sessions {
        // A session starts at one of its accepted events, so its window exists.
        let w = windows
            .get_mut(&s.start.div_euclid(params.window_ms))
            .expect("a session starts at an accepted event");
        w.sessions_started += 1;
    }
    windows
}

fn window_activity(input: &Input, sessions: &[Session], params: &Params) -> Vec<Vec<Cell>> {
    let minutes = params.window_ms as f64 / 60_000.0;
    windows(input, sessions, params)
        .iter()
        .map(|(&k, w)| {
            vec![
                Cell::Timestamp(k * params.window_ms),
                Cell::Timestamp(k * params.window_ms + params.window_ms),
                Cell::Int(w.events as i64),
                Cell::Int(w.users.len() as i64),
                Cell::Int(w.sessions_started as i64),
                Cell::Float(w.sessions_started as f64 / minutes),
            ]
        })
        .collect()
}

/// Percentile `p` (0..=1) of a non-empty list by linear interpolation between the
/// closest ranks (Spark `percentile`): sorted v, pos = p*(n-1), then Spark 4.3.0's
/// arithmetic v[lo] + (pos - lo) * (v[hi] - v[lo]) (another order of the same
/// operations can round differently, and flip a spike whose count equals it).
fn percentile(values: &[f64], p: f64) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let pos = p * (v.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = pos.ceil() as usize;
    v[lo] + (pos - lo as f64) * (v[hi] - v[lo])
}

fn spike_alerts(input: &Input, sessions: &[Session], params: &Params) -> Vec<Vec<Cell>> {
    let windows = windows(input, sessions, params);
    let Some(&first) = windows.keys().next() else {
        return Vec::new();
    };
    let n = params.baseline_windows as i64;
    windows
        .iter()
        .map(|(&k, w)| {
            let (avg, p95, spike) = if k - first < n {
                (None, None, false)
            } else {
                let baseline: Vec<f64> = (k - n..k)
                    .map(|slot| windows.get(&slot).map_or(0, |b| b.sessions_started) as f64)
                    .collect();
                let avg = baseline.iter().sum::<f64>() / baseline.len() as f64;
                let p95 = percentile(&baseline, params.baseline_percentile);
                (Some(avg), Some(p95), w.sessions_started as f64 > p95)
            };
            // The seasonal rule: the same window on each earlier day with data.
            let per_day = (86_400_000 / params.window_ms).max(1);
            let earlier = ((k - first) / per_day).min(params.alert_days as i64);
            let (alert, alert_baseline, alert_threshold) = if earlier
                >= (params.alert_days as i64).min(3)
            {
                let history: Vec<f64> = (1..=earlier)
                    .map(|j| {
                        windows
                            .get(&(k - j * per_day))
                            .map_or(0, |b| b.sessions_started) as f64
                    })
                    .collect();
                let middle = |values: &[f64]| {
                    let mut v = values.to_vec();
                    v.sort_by(f64::total_cmp);
                    let n = v.len();
                    if n % 2 == 1 {
                        v[n / 2]
                    } else {
                        (v[n / 2 - 1] + v[n / 2]) / 2.0
                    }
                };
                let median = middle(&history);
                let spread: Vec<f64> = history.iter().map(|x| (x - median).abs()).collect();
                let scale = f64::max(f64::max(1.4826 * middle(&spread), median.sqrt()), 1.0);
                let threshold = median + params.alert_deviations * scale;
                let started = w.sessions_started as i64;
                (
                    Cell::Bool(started >= params.alert_min_sessions && started as f64 > threshold),
                    Cell::Float(median),
                    Cell::Float(threshold),
                )
            } else {
                (Cell::Null, Cell::Null, Cell::Null)
            };
            vec![
                Cell::Timestamp(k * params.window_ms),
                Cell::Int(w.sessions_started as i64),
                Cell::opt_float(avg),
                Cell::opt_float(p95),
                Cell::Bool(spike),
                alert,
                alert_baseline,
                alert_threshold,
            ]
        })
        .collect()
}

// ---------------------------------------------------------------------------------
// Active users and retention
// ---------------------------------------------------------------------------------

/// Distinct active users per UTC day.
fn users_by_day(input: &Input) -> BTreeMap<i32, BTreeSet<&str>> {
    let mut days: BTreeMap<i32, BTreeSet<&str>> = BTreeMap::new();
    for e in &input.accepted {
        days.entry(day_of(e.ts)).or_default().insert(&e.user_id);
    }
    days
}

/// Distinct active users per UTC month (month index, months since 1970-01).
fn users_by_month(input: &Input) -> BTreeMap<i32, BTreeSet<&str>> {
    let mut months: BTreeMap<i32, BTreeSet<&str>> = BTreeMap::new();
    for e in &input.accepted {
        months.entry(month_of(e.ts)).or_default().insert(&e.user_id);
    }
    months
}

fn daily_active(input: &Input) -> Vec<Vec<Cell>> {
    users_by_day(input)
        .iter()
        .map(|(&day, users)| vec![Cell::Date(day), Cell::Int(users.len() as i64)])
        .collect()
}

fn monthly_active(input: &Input) -> Vec<Vec<Cell>> {
    // The dau values of the days of each month that have a daily_active row.
    let mut daus: BTreeMap<i32, Vec<f64>> = BTreeMap::new();
    for (&day, users) in &users_by_day(input) {
        daus.entry(month_of_day(day))
            .or_default()
            .push(users.len() as f64);
    }
    users_by_month(input)
        .iter()
        .map(|(&month, users)| {
            let mau = users.len() as f64;
            let days = &daus[&month];
            let avg_dau = days.iter().sum::<f64>() / days.len() as f64;
            vec![
                Cell::Date(month_first_day(month)),
                Cell::Int(users.len() as i64),
                Cell::Float(avg_dau),
                Cell::Float(avg_dau / mau),
            ]
        })
        .collect()
}

fn retention_cohorts(input: &Input) -> Vec<Vec<Cell>> {
    // Months in which each user is active; the first is the user's cohort.
    let mut active_months: BTreeMap<&str, BTreeSet<i32>> = BTreeMap::new();
    for e in &input.accepted {
        active_months
            .entry(&e.user_id)
            .or_default()
            .insert(month_of(e.ts));
    }
    let mut cohort_size: BTreeMap<i32, usize> = BTreeMap::new();
    let mut active: BTreeMap<(i32, i32), usize> = BTreeMap::new();
    for months in active_months.values() {
        let cohort = *months.first().unwrap();
        *cohort_size.entry(cohort).or_default() += 1;
        for &m in months {
            *active.entry((cohort, m - cohort)).or_default() += 1;
        }
    }
    active
        .iter()
        .map(|(&(cohort, since), &users)| {
            let size = cohort_size[&cohort];
            vec![
                Cell::Date(month_first_day(cohort)),
                Cell::Int(since as i64),
                Cell::Int(size as i64),
                Cell::Int(users as i64),
                Cell::Float(users as f64 / size as f64),
            ]
        })
        .collect()
}

// ---------------------------------------------------------------------------------
// KPIs
// ---------------------------------------------------------------------------------

fn kpis(input: &Input, sessions: &[Session], params: &Params) -> Vec<Vec<Cell>> {
    if input.accepted.is_empty() && input.users.is_empty() {
        return Vec::new();
    }
    let (from, to) = (params.period_from, params.period_to);
    let in_period = |ts: Millis| from <= ts && ts < to;

    let total_customers = if input.users.is_empty() {
        input.users_seen().len()
    } else {
        input.users.len()
    };
    let active: BTreeSet<&str> = input
        .accepted
        .iter()
        .filter(|e| in_period(e.ts))
        .map(|e| e.user_id.as_str())
        .collect();
    let mut sessions_in_period: BTreeMap<&str, u64> = BTreeMap::new();
    for s in sessions.iter().filter(|s| in_period(s.start)) {
        *sessions_in_period.entry(&s.user_id).or_default() += 1;
    }
    let engaged = active
        .iter()
        .filter(|u| sessions_in_period.get(*u).copied().unwrap_or(0) >= params.engaged_sessions)
        .count();
    let paid = active
        .iter()
        .filter(|u| input.paid_during(u, from, to))
        .count();

    let pct = |part: usize, whole: usize| 100.0 * part as f64 / whole as f64;
    let mut metrics: Vec<(&str, f64)> = vec![
        ("total_customers", total_customers as f64),
        ("active_customers", active.len() as f64),
    ];
    if total_customers > 0 {
        metrics.push((
            "session_adoption_rate_pct",
            pct(sessions_in_period.len(), total_customers),
        ));
    }
    if !active.is_empty() {
        metrics.push(("engaged_users_pct", pct(engaged, active.len())));
        // No plan data at all: the paid share is unknown, and has no row.
        if !input.users.is_empty() || !input.subscriptions.is_empty() {
            metrics.push(("paid_share_pct", pct(paid, active.len())));
        }
    }
    metrics
        .into_iter()
        .map(|(name, value)| vec![Cell::Str(name.to_string().into()), Cell::Float(value)])
        .collect()
}

// ---------------------------------------------------------------------------------
// Daily session metrics, event mix, feature adoption
// ---------------------------------------------------------------------------------

fn session_metrics_daily(sessions: &[Session]) -> Vec<Vec<Cell>> {
    let mut days: BTreeMap<i32, Vec<&Session>> = BTreeMap::new();
    for s in sessions {
        days.entry(day_of(s.start)).or_default().push(s);
    }
    days.iter()
        .map(|(&day, list)| {
            let n = list.len() as f64;
            let duration: f64 = list.iter().map(|s| s.duration_s()).sum();
            let actions: f64 = list.iter().map(|s| s.actions as f64).sum();
            vec![
                Cell::Date(day),
                Cell::Int(list.len() as i64),
                Cell::Float(duration / n),
                Cell::Float(actions / n),
            ]
        })
        .collect()
}

/// `skip_rate_daily`: accepted skips and plays per UTC day, for days with plays.
fn skip_rate_daily(input: &Input) -> Vec<Vec<Cell>> {
    let mut days: BTreeMap<i32, (i64, i64)> = BTreeMap::new();
    for e in &input.accepted {
        let counts = days.entry(day_of(e.ts)).or_default();
        match e.event_type.as_str() {
            "skip" => counts.0 += 1,
            "play" => counts.1 += 1,
            _ => {}
        }
    }
    days.into_iter()
        .filter(|(_, (_, plays))| *plays > 0)
        .map(|(day, (skips, plays))| {
            vec![
                Cell::Date(day),
                Cell::Int(skips),
                Cell::Int(plays),
                Cell::Float(skips as f64 / plays as f64),
            ]
        })
        .collect()
}

fn event_mix_daily(input: &Input) -> Vec<Vec<Cell>> {
    let mut per_type: BTreeMap<(i32, &str), usize> = BTreeMap::new();
    let mut per_day: BTreeMap<i32, usize> = BTreeMap::new();
    for e in &input.accepted {
        *per_type.entry((day_of(e.ts), &e.event_type)).or_default() += 1;
        *per_day.entry(day_of(e.ts)).or_default() += 1;
    }
    per_type
        .iter()
        .map(|(&(day, kind), &events)| {
            vec![
                Cell::Date(day),
                Cell::Str(kind.to_string().into()),
                Cell::Int(events as i64),
                Cell::Float(events as f64 / per_day[&day] as f64),
            ]
        })
        .collect()
}

fn feature_adoption(input: &Input) -> Vec<Vec<Cell>> {
    // First day each user used each event type, and first day each user was active.
    let mut first_use: BTreeMap<(&str, &str), i32> = BTreeMap::new();
    let mut first_active: BTreeMap<&str, i32> = BTreeMap::new();
    let mut occurred: BTreeSet<(i32, &str)> = BTreeSet::new();
    for e in &input.accepted {
        let day = day_of(e.ts);
        let f = first_use.entry((&e.event_type, &e.user_id)).or_insert(day);
        *f = (*f).min(day);
        let a = first_active.entry(&e.user_id).or_insert(day);
        *a = (*a).min(day);
        occurred.insert((day, &e.event_type));
    }
    occurred
        .iter()
        .map(|&(day, kind)| {
            let firsts = first_use
                .iter()
                .filter(|((k, _), _)| *k == kind)
                .map(|(_, &d)| d);
            let new_adopters = firsts.clone().filter(|&d| d == day).count();
            let adopters_to_date = firsts.filter(|&d| d <= day).count();
            let active_to_date = first_active.values().filter(|&&d| d <= day).count();
            vec![
                Cell::Date(day),
                Cell::Str(kind.to_string().into()),
                Cell::Int(new_adopters as i64),
                Cell::Int(adopters_to_date as i64),
                Cell::Float(100.0 * adopters_to_date as f64 / active_to_date as f64),
            ]
        })
        .collect()
}

// ---------------------------------------------------------------------------------
// Engagement by segment
// ---------------------------------------------------------------------------------

fn engagement_by_segment(input: &Input) -> Vec<Vec<Cell>> {
    struct Segment<'a> {
        users: BTreeSet<&'a str>,
        events: usize,
        duration_ms: i64,
    }
    let mut segments: BTreeMap<(i32, Option<String>, Option<&str>), Segment> = BTreeMap::new();
    for e in &input.accepted {
        let country = input
            .users
            .get(e.user_id.as_str())
            .and_then(|u| u.country.clone());
        let plan = input.plan_at(&e.user_id, e.ts).map(Plan::as_str);
        let seg = segments
            .entry((month_of(e.ts), country, plan))
            .or_insert(Segment {
                users: BTreeSet::new(),
                events: 0,
                duration_ms: 0,
            });
        seg.users.insert(&e.user_id);
        seg.events += 1;
        seg.duration_ms += e.duration_ms.unwrap_or(0);
    }
    segments
        .iter()
        .map(|((month, country, plan), seg)| {
            vec![
                Cell::Date(month_first_day(*month)),
                Cell::opt_str(country.as_deref()),
                Cell::opt_str(*plan),
                Cell::Int(seg.users.len() as i64),
                Cell::Int(seg.events as i64),
                Cell::Int(seg.duration_ms),
            ]
        })
        .collect()
}

// ---------------------------------------------------------------------------------
// Quarantine
// ---------------------------------------------------------------------------------

fn quarantine_table(input: &Input) -> Vec<Vec<Cell>> {
    input
        .quarantine
        .iter()
        .map(|q| {
            vec![
                Cell::Str(q.file.clone().into()),
                Cell::Int(q.row as i64),
                Cell::Str(q.field.clone().into()),
                Cell::Str(q.reason.clone().into()),
                Cell::Str(q.raw.clone().into()),
            ]
        })
        .collect()
}

// ---------------------------------------------------------------------------------
// Per-user facts for prediction (beyond the contract; README "Prediction")
// ---------------------------------------------------------------------------------

/// `user_activity_daily`: per user and UTC day with accepted events, the events, the
/// `play` and `skip` events, the sessions starting that day and their total duration.
fn user_activity_daily(input: &Input, sessions: &[Session]) -> Vec<Vec<Cell>> {
    // (events, plays, skips, sessions, session ms) per (user, day).
    let mut days: BTreeMap<(&str, i32), [i64; 5]> = BTreeMap::new();
    for e in &input.accepted {
        let row = days.entry((e.user_id.as_str(), day_of(e.ts))).or_default();
        row[0] += 1;
        row[1] += i64::from(e.event_type == "play");
        row[2] += i64::from(e.event_type == "skip");
    }
    for s in sessions {
        let row = days
            .get_mut(&(s.user_id.as_str(), day_of(s.start)))
            .expect("a session starts at an accepted event");
        row[3] += 1;
        row[4] += s.end - s.start;
    }
    days.into_iter()
        .map(|((user, day), [events, plays, skips, sessions, ms])| {
            vec![
                Cell::Str(user.to_string().into()),
                Cell::Date(day),
                Cell::Int(events),
                Cell::Int(plays),
                Cell::Int(skips),
                Cell::Int(sessions),
                Cell::Float(ms as f64 / 1000.0),
            ]
        })
        .collect()
}

/// `user_plans`: per user, the latest `users/` row's plan (null `valid_from`), then
/// each subscription instant at which [`Input::plan_at`] differs from the plan in
/// force just before it.
fn user_plans(input: &Input) -> Vec<Vec<Cell>> {
    let users: BTreeSet<&str> = input
        .users
        .keys()
        .chain(input.subscriptions.keys())
        .map(String::as_str)
        .collect();
    let mut rows = Vec::new();
    for user in users {
        let mut in_force = input.users.get(user).map(|u| u.plan);
        if let Some(plan) = in_force {
            rows.push(vec![
                Cell::Str(user.to_string().into()),
                Cell::Null,
                Cell::Str(plan.as_str().to_string().into()),
            ]);
        }
        let instants: BTreeSet<Millis> = input
            .subscriptions
            .get(user)
            .into_iter()
            .flatten()
            .map(|s| s.ts)
            .collect();
        for ts in instants {
            let plan = input.plan_at(user, ts);
            if plan != in_force {
                let plan = plan.expect("a subscription row is in force at its instant");
                rows.push(vec![
                    Cell::Str(user.to_string().into()),
                    Cell::Timestamp(ts),
                    Cell::Str(plan.as_str().to_string().into()),
                ]);
                in_force = Some(plan);
            }
        }
    }
    rows
}

// ---------------------------------------------------------------------------------
// Dimensions
// ---------------------------------------------------------------------------------

/// `engagement_by_dimension`: for each dimension in the settings, each accepted event
/// counts under its member: its UTC hour (`00`..`23`); the `genre` or `artist_id` of
/// the latest items/ row of its item; the `country` of its user's latest users/ row;
/// null when there is no such row or value. A dimension whose source table has no row
/// produces no rows. Per (day, dimension, member): distinct users, events, the sum of
/// durations (null = 0), the mean of the non-null values and their number.
fn engagement_by_dimension(input: &Input, params: &Params) -> Vec<Vec<Cell>> {
    use tidemark_dataflows::model::settings::Dimension;
    struct Group<'a> {
        users: BTreeSet<&'a str>,
        events: i64,
        duration: i64,
        values: Vec<f64>,
    }
    let mut groups: BTreeMap<(i32, String, Option<String>), Group> = BTreeMap::new();
    for dimension in params.dimensions.iter() {
        let sourced = match dimension {
            Dimension::HourOfDay => true,
            Dimension::Genre | Dimension::Artist => !input.items.is_empty(),
            Dimension::Country | Dimension::Attribute(_) => !input.users.is_empty(),
        };
        if !sourced {
            continue;
        }
        for e in &input.accepted {
            let item = || {
                e.item_id
                    .as_ref()
                    .and_then(|id| input.items.get(id.as_str()))
            };
            let member = match dimension {
                Dimension::HourOfDay => {
                    Some(format!("{:02}", e.ts.rem_euclid(86_400_000) / 3_600_000))
                }
                Dimension::Genre => item().and_then(|i| i.genre.clone()),
                Dimension::Artist => item().and_then(|i| i.artist_id.clone()),
                Dimension::Country => input
                    .users
                    .get(e.user_id.as_str())
                    .and_then(|u| u.country.clone()),
                Dimension::Attribute(name) => input.users.get(e.user_id.as_str()).and_then(|u| {
                    u.attributes
                        .iter()
                        .find(|(attribute, _)| *attribute == *name.text())
                        .and_then(|(_, value)| value.clone())
                }),
            };
            let group = groups
                .entry((day_of(e.ts), dimension.name(), member))
                .or_insert_with(|| Group {
                    users: BTreeSet::new(),
                    events: 0,
                    duration: 0,
                    values: Vec::new(),
                });
            group.users.insert(&e.user_id);
            group.events += 1;
            group.duration += e.duration_ms.unwrap_or(0);
            group.values.extend(e.value.map(|v| v.0));
        }
    }
    groups
        .into_iter()
        .map(|((day, dimension, member), g)| {
            let avg = (!g.values.is_empty())
                .then(|| g.values.iter().sum::<f64>() / g.values.len() as f64);
            vec![
                Cell::Date(day),
                Cell::Str(dimension.to_string().into()),
                Cell::opt_str(member.as_deref()),
                Cell::Int(g.users.len() as i64),
                Cell::Int(g.events),
                Cell::Int(g.duration),
                Cell::opt_float(avg),
                Cell::Int(g.values.len() as i64),
            ]
        })
        .collect()
}
