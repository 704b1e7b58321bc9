//! Tumbling activity windows (contract `window_activity`): events, exact distinct
//! active users and sessions started per window of `window_ms`.

use differential_dataflow::VecCollection;
use serde::{Deserialize, Serialize};
use tidemark_records::records::Millis;

use crate::metrics::sessions::SessionRow;
use crate::model::action::Action;
use crate::model::tables::{col, Cell, ColumnType, TableRow, TableSpec};
use crate::operators::combine::combine_map;
use crate::operators::expiry::{drop_closed, retire_behind, Watermarks};
use crate::operators::gate::Time;
use crate::operators::totals::HashTotals;

/// The start of the window holding `ts`.
pub fn window_start(ts: Millis, window_ms: Millis) -> Millis {
    ts.div_euclid(window_ms) * window_ms
}

/// What a window sums, held in the difference of its updates: accepted events,
/// distinct active users and sessions started.
type WindowTally = (isize, isize, isize);

/// The tally of one event, one active user, one session started.
const EVENT: WindowTally = (1, 0, 0);
const USER: WindowTally = (0, 1, 0);
const SESSION: WindowTally = (0, 0, 1);

/// The `window_activity` table: a row per window with at least one accepted event.
///
/// Every event adds to its window's events, every distinct (window, user) to its
/// active users and every session to the sessions started in its start's window; one
/// hash count per window keeps the sums, so no reduce reads a window's users again
/// when one more arrives.
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
    let closes = move |start: &Millis| Some(start + window_ms);
    // A user's events of one window are counted on each worker before they are held:
    // a session puts several events in a window.
    let user_windows = retire_behind(
        combine_map(events, "CombineWindowUsers", move |e| {
            Some((window_start(e.ts, window_ms), e.user_id))
        }),
        watermarks,
        move |(start, _user)| closes(start),
    );
    let started = retire_behind(
        sessions.map(move |s| window_start(s.start, window_ms)),
        watermarks,
        closes,
    );
    let rows = user_windows
        .clone()
        .explode(|(start, _user)| Some((start, EVENT)))
        .concat(
            user_windows
                .distinct_by_hash()
                .explode(|(start, _user)| Some((start, USER))),
        )
        .concat(started.explode(|start| Some((start, SESSION))))
        .count_by_hash()
        .filter(|(_start, (events, _, _))| *events > 0)
        .map(
            move |(start, (events, active_users, sessions_started))| WindowRow {
                start,
                length_ms: window_ms,
                events: events as i64,
                active_users: active_users as i64,
                sessions_started: sessions_started as i64,
            },
        );
    drop_closed(rows, watermarks, move |row| closes(&row.start))
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
