//! Tumbling activity windows (contract `window_activity`): events, exact distinct
//! active users and sessions started per window of `window_ms`.

use differential_dataflow::VecCollection;
use serde::{Deserialize, Serialize};
use tidemark_records::records::Millis;

use crate::metrics::sessions::SessionRow;
use crate::model::action::Action;
use crate::model::name::Name;
use crate::model::tables::{col, Cell, ColumnType, TableRow, TableSpec};
use crate::operators::combine::combine;
use crate::operators::expiry::{reduce_until_closed, Watermarks};
use crate::operators::gate::Time;
use crate::operators::totals::HashTotals;

/// The start of the window holding `ts`.
pub fn window_start(ts: Millis, window_ms: Millis) -> Millis {
    ts.div_euclid(window_ms) * window_ms
}

/// One input to a window's row, combined per window by a single reduce.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
enum WindowPart {
    /// An event of this user in the window (multiplicity = number of events).
    Activity(Name),
    /// This many sessions started in the window.
    Started(i64),
}

/// The `window_activity` table: a row per window with at least one accepted event.
///
/// A window is final once the watermark passes its end: its events are then past, and
/// session starts only ever appear or vanish at or after an accepted event's time. Its
/// inputs are retired then (see [`crate::operators::expiry`]); its row stays.
pub fn window_activity<'s>(
    events: VecCollection<'s, Time, Action>,
    sessions: VecCollection<'s, Time, SessionRow>,
    watermarks: &Watermarks<'s>,
    window_ms: Millis,
) -> VecCollection<'s, Time, WindowRow> {
    let started = sessions
        .map(move |s| window_start(s.start, window_ms))
        .count_by_hash()
        .map(|(window, count)| (window, WindowPart::Started(count as i64)));
    // A user's events of one window are counted on each worker before they are held
    // and arranged: a session puts several events in a window.
    let parts = combine(
        events.map(move |e| {
            (
                window_start(e.ts, window_ms),
                WindowPart::Activity(e.user_id),
            )
        }),
        "CombineWindowUsers",
    )
    .concat(started);
    reduce_until_closed(
        parts,
        watermarks,
        move |start: &Millis| Some(start + window_ms),
        "WindowActivity",
        move |&start, parts, output| {
            let mut row = WindowRow {
                start,
                length_ms: window_ms,
                events: 0,
                active_users: 0,
                sessions_started: 0,
            };
            for (part, count) in parts {
                match part {
                    WindowPart::Activity(_) => {
                        row.events += *count as i64;
                        row.active_users += 1;
                    }
                    WindowPart::Started(n) => row.sessions_started = *n,
                }
            }
            if row.events > 0 {
                output.push((row, 1isize));
            }
        },
    )
    .map(|(_start, row)| row)
}

/// `window_activity`: one row per window with at least one accepted event.
pub const WINDOW_ACTIVITY: TableSpec = TableSpec {
    name: "window_activity",
    columns: &[
        col("window_start", ColumnType::Timestamp),
        col("window_end", ColumnType::Timestamp),
        col("events", ColumnType::Int),
        col("active_users", ColumnType::Int),
        col("sessions_started", ColumnType::Int),
        col("sessions_per_min", ColumnType::Float),
    ],
    key_len: 1,
};

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
    const SPEC: TableSpec = WINDOW_ACTIVITY;
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
