//! Tumbling activity windows (contract `window_activity`): events, exact distinct
//! active users and sessions started per window of `window_ms`.

use std::collections::BTreeMap;

use differential_dataflow::{AsCollection, Hashable, VecCollection};
use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};
use tidemark_records::records::Millis;
use timely::dataflow::channels::pact::{Exchange, Pipeline};
use timely::dataflow::operators::generic::Operator;

use crate::metrics::sessions::SessionRow;
use crate::model::action::Action;
use crate::model::name::Name;
use crate::model::tables::{col, Cell, ColumnType, TableRow, TableSpec};
use crate::operators::combine::combine_map;
use crate::operators::expiry::{note_watermarks, take_watermark_through, Watermarks};
use crate::operators::gate::Time;
use crate::operators::held::{hold_updates, HeldByTime, HeldUpdates};
use crate::operators::totals::add_to_total;

/// The start of the window holding `ts`.
pub fn window_start(ts: Millis, window_ms: Millis) -> Millis {
    ts.div_euclid(window_ms) * window_ms
}

/// What a window counts: a user's accepted events in it (their number is the
/// update's multiplicity), or a session started in it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
enum Fact {
    /// A user's events in the window starting then.
    Events(Millis, Name),
    /// A session started in the window starting then.
    Session(Millis),
}

impl Fact {
    /// The start of the fact's window.
    fn start(&self) -> Millis {
        match *self {
            Fact::Events(start, _) | Fact::Session(start) => start,
        }
    }
}

/// The `window_activity` table: a row per window with at least one accepted event.
///
/// Every event adds to its window's events, every distinct (window, user) to its
/// active users and every session to the sessions started in its start's window. A
/// user's events of one window are counted on each worker first (a session puts
/// several events in a window), then [`count_windows`] keeps each open window's
/// users and sums on one worker.
///
/// A window is final once the watermark passes its end: its events are then past, and
/// session starts only ever appear or vanish at or after an accepted event's time. Its
/// state is dropped then; its row stays.
pub fn window_activity<'s>(
    events: VecCollection<'s, Time, Action>,
    sessions: VecCollection<'s, Time, SessionRow>,
    watermarks: &Watermarks<'s>,
    window_ms: Millis,
) -> VecCollection<'s, Time, WindowRow> {
    let user_events = combine_map(events, "CombineWindowUsers", move |e| {
        Some(Fact::Events(window_start(e.ts, window_ms), e.user_id))
    });
    let started = sessions.map(move |s| Fact::Session(window_start(s.start, window_ms)));
    count_windows(user_events.concat(started), watermarks, window_ms)
}

/// One open window on its worker: each active user's events, and the sums.
#[derive(Default)]
struct OpenWindow {
    users: FxHashMap<Name, isize>,
    events: isize,
    sessions: isize,
}

impl OpenWindow {
    /// Events, distinct active users, sessions started.
    fn totals(&self) -> (isize, isize, isize) {
        (self.events, self.users.len() as isize, self.sessions)
    }

    fn is_empty(&self) -> bool {
        self.users.is_empty() && self.events == 0 && self.sessions == 0
    }
}

/// The rows of the windows that `facts` fill, kept up to date in one operator: the
/// facts are routed by window, each worker keeps its open windows' users (the exact
/// distinct count) and sums, and a complete logical time's changed windows each
/// retract their old row and add their new one. A row has at least one event.
///
/// At each logical time the windows that its watermark (or an earlier one) has passed
/// the end of are closed first: their state is dropped and they never change again
/// (contract "Lateness": no accepted event lies behind the watermark, so no fact can
/// reach them; one that did would be dropped with them, as the expiry pattern drops a
/// change to a closed key). Their rows stay.
fn count_windows<'s>(
    facts: VecCollection<'s, Time, Fact>,
    watermarks: &Watermarks<'s>,
    window_ms: Millis,
) -> VecCollection<'s, Time, WindowRow> {
    let by_window = Exchange::new(|(fact, _, _): &(Fact, Time, isize)| fact.start().hashed());
    let row = move |start: Millis, (events, users, sessions): (isize, isize, isize)| WindowRow {
        start,
        length_ms: window_ms,
        events: events as i64,
        active_users: users as i64,
        sessions_started: sessions as i64,
    };
    facts
        .inner
        .binary_frontier(
            watermarks.clone(),
            by_window,
            Pipeline,
            "WindowCounts",
            move |_capability, _info| {
                let mut pending: HeldUpdates<(Fact, isize)> = HeldByTime::default();
                let mut known: BTreeMap<Time, Millis> = BTreeMap::new();
                let mut open: FxHashMap<Millis, OpenWindow> = FxHashMap::default();
                // Windows that end at or before it are closed.
                let mut closed_through = Millis::MIN;
                move |(input, frontier), (marks, marks_frontier), output| {
                    input.for_each(|cap, batch| {
                        hold_updates(&mut pending, &cap, batch, |fact, _, diff| (fact, diff))
                    });
                    marks.for_each(|cap, data| note_watermarks(&mut known, &cap, data));
                    while let Some((time, cap, updates)) = pending.pop_complete(|time| {
                        !frontier.frontier().less_equal(&time)
                            && !marks_frontier.frontier().less_equal(&time)
                    }) {
                        // The watermarks up to this time close windows.
                        let passed = take_watermark_through(&mut known, time);
                        if let Some(watermark) = passed.filter(|w| *w > closed_through) {
                            closed_through = watermark;
                            open.retain(|start, _| start.saturating_add(window_ms) > watermark);
                        }
                        // Each changed window's totals before this time.
                        let mut before: FxHashMap<Millis, (isize, isize, isize)> =
                            FxHashMap::default();
                        for (fact, diff) in updates {
                            let start = fact.start();
                            if start.saturating_add(window_ms) <= closed_through {
                                continue;
                            }
                            let window = open.entry(start).or_default();
                            before.entry(start).or_insert_with(|| window.totals());
                            match fact {
                                Fact::Events(_, user) => {
                                    window.events += diff;
                                    add_to_total(&mut window.users, user, &diff);
                                }
                                Fact::Session(_) => window.sessions += diff,
                            }
                        }
                        let mut session = output.session(&cap);
                        // Every window in `before` is open: it was just added to.
                        for (start, old) in before {
                            let window = &open[&start];
                            let new = window.totals();
                            if new != old {
                                if old.0 > 0 {
                                    session.give((row(start, old), time, -1));
                                }
                                if new.0 > 0 {
                                    session.give((row(start, new), time, 1));
                                }
                            }
                            if window.is_empty() {
                                open.remove(&start);
                            }
                        }
                    }
                }
            },
        )
        .as_collection()
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
