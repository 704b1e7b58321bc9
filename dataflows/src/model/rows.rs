//! Typed rows of the output tables as the dataflows hold them. Measures that are
//! ratios are kept as exact integer parts (so rows stay `Ord` and consolidate) and
//! turned into doubles only when written, by [`TableRow::cells`].

use serde::{Deserialize, Serialize};
/// The `quarantine` table's row, as the readers make it.
pub use tidemark_inputs::records::QuarantineRow;
use tidemark_inputs::records::{Millis, Plan};
use tidemark_inputs::time::month_first_day;

use crate::model::name::Name;
use crate::model::tables::{self, Cell, TableRow, TableSpec};

/// One session of one user.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct SessionRow {
    /// The user.
    pub user_id: Name,
    /// First event time.
    pub start: Millis,
    /// The source's session id, or none for derived sessions.
    pub session_id: Option<Name>,
    /// Last event time.
    pub end: Millis,
    /// Number of events.
    pub actions: i64,
}

impl TableRow for SessionRow {
    const SPEC: TableSpec = tables::SESSIONS;
    fn cells(&self) -> Vec<Cell> {
        vec![
            Cell::Str(self.user_id.to_string()),
            Cell::Timestamp(self.start),
            Cell::opt_str(self.session_id.map(|s| s.text()).as_deref()),
            Cell::Timestamp(self.end),
            Cell::Float((self.end - self.start) as f64 / 1000.0),
            Cell::Int(self.actions),
        ]
    }
}

/// Activity of one tumbling window.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct WindowRow {
    /// Window start.
    pub start: Millis,
    /// Window length in ms.
    pub length_ms: Millis,
    /// Accepted events in the window.
    pub events: i64,
    /// Distinct users with an accepted event in the window.
    pub active_users: i64,
    /// Sessions whose start lies in the window.
    pub sessions_started: i64,
}

impl TableRow for WindowRow {
    const SPEC: TableSpec = tables::WINDOW_ACTIVITY;
    fn cells(&self) -> Vec<Cell> {
        let minutes = self.length_ms as f64 / 60_000.0;
        vec![
            Cell::Timestamp(self.start),
            Cell::Timestamp(self.start + self.length_ms),
            Cell::Int(self.events),
            Cell::Int(self.active_users),
            Cell::Int(self.sessions_started),
            Cell::Float(self.sessions_started as f64 / minutes),
        ]
    }
}

/// The baseline of a window's spike alert, kept exact: the percentile is
/// `below + fraction * (above - below)` over the sorted slot counts.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Baseline {
    /// Number of slots (empty slots count 0).
    pub slots: i64,
    /// Sum of the slots' `sessions_started`.
    pub sum: i64,
    /// The sorted slot value at the floor of the percentile's position.
    pub below: i64,
    /// The sorted slot value at the ceiling of the percentile's position.
    pub above: i64,
    /// The position's fractional part, as `f64::to_bits` (so the row stays `Ord`).
    pub fraction_bits: u64,
}

impl Baseline {
    /// Mean of the slots.
    pub fn mean(&self) -> f64 {
        self.sum as f64 / self.slots as f64
    }

    /// The percentile by linear interpolation between the closest ranks.
    pub fn percentile(&self) -> f64 {
        let fraction = f64::from_bits(self.fraction_bits);
        self.below as f64 + fraction * (self.above - self.below) as f64
    }
}

/// The verdict of the seasonal spike rule on one window (`alert` and its figures),
/// kept as bits so that the row stays `Ord`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Alert {
    /// The baseline (median of the same window on earlier days), as `f64::to_bits`.
    pub baseline_bits: u64,
    /// The count to exceed, as `f64::to_bits`.
    pub threshold_bits: u64,
    /// Whether the window alerts.
    pub alert: bool,
}

/// The spike alert of one window.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct SpikeRow {
    /// Window start.
    pub start: Millis,
    /// Sessions started in the window.
    pub sessions_started: i64,
    /// The baseline, or none while fewer slots than the baseline lie since the first window.
    pub baseline: Option<Baseline>,
    /// The seasonal rule's verdict, or none while too few earlier days lie since the
    /// first window.
    pub alert: Option<Alert>,
}

impl TableRow for SpikeRow {
    const SPEC: TableSpec = tables::SPIKE_ALERTS;
    fn cells(&self) -> Vec<Cell> {
        let percentile = self.baseline.as_ref().map(Baseline::percentile);
        vec![
            Cell::Timestamp(self.start),
            Cell::Int(self.sessions_started),
            Cell::opt_float(self.baseline.as_ref().map(Baseline::mean)),
            Cell::opt_float(percentile),
            Cell::Bool(percentile.is_some_and(|p| self.sessions_started as f64 > p)),
            self.alert
                .as_ref()
                .map_or(Cell::Null, |a| Cell::Bool(a.alert)),
            Cell::opt_float(self.alert.as_ref().map(|a| f64::from_bits(a.baseline_bits))),
            Cell::opt_float(
                self.alert
                    .as_ref()
                    .map(|a| f64::from_bits(a.threshold_bits)),
            ),
        ]
    }
}

/// Daily active users of one UTC day.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct DailyActiveRow {
    /// Days since 1970-01-01.
    pub day: i32,
    /// Distinct active users.
    pub dau: i64,
}

impl TableRow for DailyActiveRow {
    const SPEC: TableSpec = tables::DAILY_ACTIVE;
    fn cells(&self) -> Vec<Cell> {
        vec![Cell::Date(self.day), Cell::Int(self.dau)]
    }
}

/// Monthly actives of one UTC month.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct MonthlyActiveRow {
    /// Months since 1970-01.
    pub month: i32,
    /// Distinct active users in the month.
    pub mau: i64,
    /// Sum of `dau` over the month's days that have a `daily_active` row.
    pub dau_sum: i64,
    /// Number of such days.
    pub active_days: i64,
}

impl TableRow for MonthlyActiveRow {
    const SPEC: TableSpec = tables::MONTHLY_ACTIVE;
    fn cells(&self) -> Vec<Cell> {
        let avg_dau = self.dau_sum as f64 / self.active_days as f64;
        vec![
            Cell::Date(month_first_day(self.month)),
            Cell::Int(self.mau),
            Cell::Float(avg_dau),
            Cell::Float(avg_dau / self.mau as f64),
        ]
    }
}

/// One cell of the retention matrix.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct RetentionRow {
    /// Cohort month (months since 1970-01).
    pub cohort_month: i32,
    /// Months since the cohort month.
    pub months_since: i64,
    /// Users whose first accepted event is in the cohort month.
    pub cohort_size: i64,
    /// Cohort users active `months_since` months later.
    pub active_users: i64,
}

impl TableRow for RetentionRow {
    const SPEC: TableSpec = tables::RETENTION_COHORTS;
    fn cells(&self) -> Vec<Cell> {
        vec![
            Cell::Date(month_first_day(self.cohort_month)),
            Cell::Int(self.months_since),
            Cell::Int(self.cohort_size),
            Cell::Int(self.active_users),
            Cell::Float(self.active_users as f64 / self.cohort_size as f64),
        ]
    }
}

/// Sessions starting on one UTC day.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct SessionDailyRow {
    /// Days since 1970-01-01.
    pub day: i32,
    /// Sessions starting that day.
    pub sessions: i64,
    /// Sum of their durations in ms.
    pub duration_ms: i64,
    /// Sum of their actions.
    pub actions: i64,
}

impl TableRow for SessionDailyRow {
    const SPEC: TableSpec = tables::SESSION_METRICS_DAILY;
    fn cells(&self) -> Vec<Cell> {
        let n = self.sessions as f64;
        vec![
            Cell::Date(self.day),
            Cell::Int(self.sessions),
            Cell::Float(self.duration_ms as f64 / 1000.0 / n),
            Cell::Float(self.actions as f64 / n),
        ]
    }
}

/// Events of one type on one UTC day.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct EventMixRow {
    /// Days since 1970-01-01.
    pub day: i32,
    /// The event type.
    pub event_type: Name,
    /// Accepted events of the type that day.
    pub events: i64,
    /// Accepted events of any type that day.
    pub day_events: i64,
}

impl TableRow for EventMixRow {
    const SPEC: TableSpec = tables::EVENT_MIX_DAILY;
    fn cells(&self) -> Vec<Cell> {
        vec![
            Cell::Date(self.day),
            Cell::Str(self.event_type.to_string()),
            Cell::Int(self.events),
            Cell::Float(self.events as f64 / self.day_events as f64),
        ]
    }
}

/// Skips and plays of one UTC day with plays.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct SkipRateRow {
    /// Days since 1970-01-01.
    pub day: i32,
    /// Accepted `skip` events that day.
    pub skips: i64,
    /// Accepted `play` events that day (> 0).
    pub plays: i64,
}

impl TableRow for SkipRateRow {
    const SPEC: TableSpec = tables::SKIP_RATE_DAILY;
    fn cells(&self) -> Vec<Cell> {
        vec![
            Cell::Date(self.day),
            Cell::Int(self.skips),
            Cell::Int(self.plays),
            Cell::Float(self.skips as f64 / self.plays as f64),
        ]
    }
}

/// Adoption of one event type as of one UTC day on which it occurred.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct FeatureAdoptionRow {
    /// Days since 1970-01-01.
    pub day: i32,
    /// The event type.
    pub event_type: Name,
    /// Users using the type for the first time that day.
    pub new_adopters: i64,
    /// Users who used the type on or before that day.
    pub adopters_to_date: i64,
    /// Users active on or before that day.
    pub users_to_date: i64,
}

impl TableRow for FeatureAdoptionRow {
    const SPEC: TableSpec = tables::FEATURE_ADOPTION;
    fn cells(&self) -> Vec<Cell> {
        vec![
            Cell::Date(self.day),
            Cell::Str(self.event_type.to_string()),
            Cell::Int(self.new_adopters),
            Cell::Int(self.adopters_to_date),
            Cell::Float(100.0 * self.adopters_to_date as f64 / self.users_to_date as f64),
        ]
    }
}

/// Engagement of one segment (month, country, plan).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct SegmentRow {
    /// Months since 1970-01.
    pub month: i32,
    /// Country of the users' `users/` row, if any.
    pub country: Option<String>,
    /// Plan in force at the events' time, if any.
    pub plan: Option<Plan>,
    /// Distinct users with an event in the segment.
    pub active_users: i64,
    /// Accepted events in the segment.
    pub events: i64,
    /// Sum of their durations in ms (null counts 0).
    pub duration_ms: i64,
}

impl TableRow for SegmentRow {
    const SPEC: TableSpec = tables::ENGAGEMENT_BY_SEGMENT;
    fn cells(&self) -> Vec<Cell> {
        vec![
            Cell::Date(month_first_day(self.month)),
            Cell::opt_str(self.country.as_deref()),
            Cell::opt_str(self.plan.map(Plan::as_str)),
            Cell::Int(self.active_users),
            Cell::Int(self.events),
            Cell::Int(self.duration_ms),
        ]
    }
}

/// One KPI: a count, or a percentage kept as numerator and denominator.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct KpiRow {
    /// Metric name, e.g. `active_customers`.
    pub metric: String,
    /// The count, or the numerator of a percentage.
    pub numerator: i64,
    /// The denominator of a percentage; `None` for a plain count.
    pub denominator: Option<i64>,
}

impl KpiRow {
    /// The metric's value as the contract writes it (percentages 0..100).
    pub fn value(&self) -> f64 {
        match self.denominator {
            None => self.numerator as f64,
            Some(den) => 100.0 * self.numerator as f64 / den as f64,
        }
    }
}

impl TableRow for KpiRow {
    const SPEC: TableSpec = tables::KPIS;
    fn cells(&self) -> Vec<Cell> {
        vec![Cell::Str(self.metric.clone()), Cell::Float(self.value())]
    }
}

impl TableRow for QuarantineRow {
    const SPEC: TableSpec = tables::QUARANTINE;
    fn cells(&self) -> Vec<Cell> {
        vec![
            Cell::Str(self.file.clone()),
            Cell::Int(self.row as i64),
            Cell::Str(self.field.clone()),
            Cell::Str(self.reason.clone()),
            Cell::Str(self.raw.clone()),
        ]
    }
}

/// One user's accepted activity on one UTC day (`user_activity_daily`, beyond the
/// contract; read by `tidemark predict`).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct UserDailyRow {
    /// The user.
    pub user_id: Name,
    /// Days since 1970-01-01.
    pub day: i32,
    /// Accepted events that day (> 0).
    pub events: i64,
    /// Accepted `play` events that day.
    pub plays: i64,
    /// Accepted `skip` events that day.
    pub skips: i64,
    /// Sessions starting that day.
    pub sessions: i64,
    /// Total duration of those sessions, in ms.
    pub session_ms: i64,
}

impl TableRow for UserDailyRow {
    const SPEC: TableSpec = tables::USER_ACTIVITY_DAILY;
    fn cells(&self) -> Vec<Cell> {
        vec![
            Cell::Str(self.user_id.to_string()),
            Cell::Date(self.day),
            Cell::Int(self.events),
            Cell::Int(self.plays),
            Cell::Int(self.skips),
            Cell::Int(self.sessions),
            Cell::Float(self.session_ms as f64 / 1000.0),
        ]
    }
}

/// One step of a user's plan history (`user_plans`, beyond the contract; read by
/// `tidemark predict`).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct UserPlanRow {
    /// The user.
    pub user_id: Name,
    /// The instant from which `plan` is in force; none for the `users/` row's plan,
    /// in force before any plan change.
    pub valid_from: Option<Millis>,
    /// The plan.
    pub plan: Plan,
}

impl TableRow for UserPlanRow {
    const SPEC: TableSpec = tables::USER_PLANS;
    fn cells(&self) -> Vec<Cell> {
        vec![
            Cell::Str(self.user_id.to_string()),
            self.valid_from.map_or(Cell::Null, Cell::Timestamp),
            Cell::Str(self.plan.as_str().to_string()),
        ]
    }
}

/// Engagement of one member of one dimension on one UTC day.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct DimensionRow {
    /// Days since 1970-01-01.
    pub day: i32,
    /// The dimension.
    pub dimension: crate::model::settings::Dimension,
    /// The member; none for events without one.
    pub member: Option<Name>,
    /// Distinct users with an accepted event of the member that day.
    pub active_users: i64,
    /// Accepted events of the member that day.
    pub events: i64,
    /// Their total duration (null durations count 0).
    pub duration_ms: i64,
    /// Sum of their non-null values, in fixed point ([`crate::metrics::engagement_by_dimension::VALUE_SCALE`]).
    pub value_sum: i128,
    /// How many of them have a value.
    pub values: i64,
}

impl TableRow for DimensionRow {
    const SPEC: TableSpec = tables::ENGAGEMENT_BY_DIMENSION;
    fn cells(&self) -> Vec<Cell> {
        let avg = (self.values > 0).then(|| {
            self.value_sum as f64
                / crate::metrics::engagement_by_dimension::VALUE_SCALE
                / self.values as f64
        });
        vec![
            Cell::Date(self.day),
            Cell::Str(self.dimension.name()),
            Cell::opt_str(self.member.map(|m| m.text()).as_deref()),
            Cell::Int(self.active_users),
            Cell::Int(self.events),
            Cell::Int(self.duration_ms),
            Cell::opt_float(avg),
            Cell::Int(self.values),
        ]
    }
}
