//! Typed rows of the output tables as the dataflows hold them. Measures that are
//! ratios are kept as exact integer parts (so rows stay `Ord` and consolidate) and
//! turned into doubles only when written, by [`TableRow::cells`].

use serde::{Deserialize, Serialize};
use tidemark_inputs::records::{Millis, QuarantineRow};
use tidemark_inputs::time::month_first_day;

use crate::name::Name;
use crate::tables::{self, Cell, TableRow, TableSpec};

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
            Cell::opt_str(self.session_id.as_deref()),
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
