//! Daily session metrics (contract `session_metrics_daily`): per "day (of session
//! start)": "sessions, avg_duration_s, avg_actions". The sums are kept as the
//! difference of one `count_total`, so a changed session costs a constant amount.

use differential_dataflow::VecCollection;
use tidemark_records::time::day_of;

use crate::metrics::sessions::SessionRow;
use crate::model::tables::{col, Cell, ColumnType, TableRow, TableSpec};
use crate::operators::gate::Time;
use crate::operators::totals::HashTotals;
use serde::{Deserialize, Serialize};

/// The `session_metrics_daily` table from the `sessions` rows.
pub fn session_metrics_daily<'s>(
    sessions: VecCollection<'s, Time, SessionRow>,
) -> VecCollection<'s, Time, SessionDailyRow> {
    sessions
        .explode(|s| {
            let totals = (1isize, (s.end - s.start) as isize, s.actions as isize);
            Some((day_of(s.start), totals))
        })
        .count_by_hash()
        .map(|(day, (sessions, duration_ms, actions))| SessionDailyRow {
            day,
            sessions: sessions as i64,
            duration_ms: duration_ms as i64,
            actions: actions as i64,
        })
}

/// `session_metrics_daily`: per day of session start.
pub const SESSION_METRICS_DAILY: TableSpec = TableSpec {
    name: "session_metrics_daily",
    columns: &[
        col("day", ColumnType::Date),
        col("sessions", ColumnType::Int),
        col("avg_duration_s", ColumnType::Float),
        col("avg_actions", ColumnType::Float),
    ],
    key_len: 1,
};

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
    const SPEC: TableSpec = SESSION_METRICS_DAILY;
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
