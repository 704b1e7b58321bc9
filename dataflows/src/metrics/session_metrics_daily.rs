//! Daily session metrics (contract `session_metrics_daily`): per "day (of session
//! start)": "sessions, avg_duration_s, avg_actions". The sums are kept as the
//! difference of one `count_total`, so a changed session costs a constant amount.

use differential_dataflow::operators::CountTotal;
use differential_dataflow::VecCollection;
use tidemark_inputs::time::day_of;

use crate::model::rows::{SessionDailyRow, SessionRow};
use crate::operators::gate::Time;

/// The `session_metrics_daily` table from the `sessions` rows.
pub fn session_metrics_daily<'s>(
    sessions: VecCollection<'s, Time, SessionRow>,
) -> VecCollection<'s, Time, SessionDailyRow> {
    sessions
        .explode(|s| {
            let totals = (1isize, (s.end - s.start) as isize, s.actions as isize);
            Some((day_of(s.start), totals))
        })
        .count_total()
        .map(|(day, (sessions, duration_ms, actions))| SessionDailyRow {
            day,
            sessions: sessions as i64,
            duration_ms: duration_ms as i64,
            actions: actions as i64,
        })
}
