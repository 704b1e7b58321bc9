//! Sessions (contract "Sessions"): the source's own sessions where events carry a
//! `session_id`; otherwise derived per user from a gap of `session_gap` or more and,
//! optionally, each UTC midnight. A late event that extends, splits or merges sessions
//! makes the reduce retract the old sessions and add the new ones.

use differential_dataflow::VecCollection;
use serde::{Deserialize, Serialize};
use tidemark_records::records::Millis;
use tidemark_records::time::day_of;

use crate::model::action::Action;
use crate::model::name::Name;
use crate::model::settings::Params;
use crate::model::tables::{col, opt, Cell, ColumnType, TableRow, TableSpec};
use crate::operators::expiry::{day_end, reduce_until_closed, Watermarks};
use crate::operators::gate::Time;

/// The set of a user's events within which sessions are formed.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum SessionScope {
    /// Events carrying this source session id: exactly one session.
    Source(Name),
    /// Events of one UTC day (derived sessions with the midnight split).
    Day(i32),
    /// All of a user's events without a session id (midnight split off).
    Unsplit,
}

/// Which scope an event's session is formed in.
pub fn session_scope(event: &Action, params: &Params) -> SessionScope {
    match &event.session_id {
        Some(id) => SessionScope::Source(*id),
        None if params.midnight_split => SessionScope::Day(day_of(event.ts)),
        None => SessionScope::Unsplit,
    }
}

/// Cuts one scope's event times (sorted, with multiplicities) into sessions:
/// `(start, end, actions)`. Source scopes are one session; derived ones split where
/// the gap to the previous event is at least `gap_ms`.
pub fn cut_sessions(
    scope: &SessionScope,
    times: &[(&Millis, isize)],
    gap_ms: Millis,
) -> Vec<(Millis, Millis, i64)> {
    let mut sessions = Vec::new();
    let mut current: Option<(Millis, Millis, i64)> = None;
    for (&ts, count) in times.iter().map(|(ts, count)| (*ts, *count as i64)) {
        current = match current {
            Some((start, end, actions))
                if matches!(scope, SessionScope::Source(_)) || ts - end < gap_ms =>
            {
                Some((start, ts, actions + count))
            }
            Some(done) => {
                sessions.push(done);
                Some((ts, ts, count))
            }
            None => Some((ts, ts, count)),
        };
    }
    sessions.extend(current);
    sessions
}

/// The end of the event time a scope's sessions can depend on: a day's sessions are
/// final once the watermark passes midnight. A source session or an unsplit scope can
/// be extended by any later event, so it has no end and is kept.
fn scope_end(scope: &SessionScope) -> Option<Millis> {
    match scope {
        SessionScope::Day(day) => Some(day_end(*day)),
        SessionScope::Source(_) | SessionScope::Unsplit => None,
    }
}

/// The `sessions` table, maintained from accepted events. A day's events are retired
/// once the watermark passes its end (see [`crate::operators::expiry`]); its sessions stay.
pub fn sessions<'s>(
    events: VecCollection<'s, Time, Action>,
    watermarks: &Watermarks<'s>,
    params: Params,
) -> VecCollection<'s, Time, SessionRow> {
    let scoped = events.map(move |event| {
        let scope = session_scope(&event, &params);
        ((event.user_id, scope), event.ts)
    });
    reduce_until_closed(
        scoped,
        watermarks,
        |(_user, scope): &(Name, SessionScope)| scope_end(scope),
        "Sessions",
        move |(_user, scope), times, output| {
            for session in cut_sessions(scope, times, params.session_gap_ms) {
                output.push((session, 1isize));
            }
        },
    )
    .map(|((user_id, scope), (start, end, actions))| SessionRow {
        user_id,
        start,
        session_id: match scope {
            SessionScope::Source(id) => Some(id),
            _ => None,
        },
        end,
        actions,
    })
}

/// `sessions`: one row per session.
pub const SESSIONS: TableSpec = TableSpec {
    name: "sessions",
    columns: &[
        col("user_id", ColumnType::Str),
        col("session_start", ColumnType::Timestamp),
        opt("session_id", ColumnType::Str),
        col("session_end", ColumnType::Timestamp),
        col("duration_s", ColumnType::Float),
        col("actions", ColumnType::Int),
    ],
    key_len: 2,
};

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
    const SPEC: TableSpec = SESSIONS;
    fn cells(&self) -> Vec<Cell> {
        vec![
            Cell::Str(self.user_id.to_string()),
            Cell::Timestamp(self.start),
            self.session_id
                .map_or(Cell::Null, |s| Cell::Str(s.to_string())),
            Cell::Timestamp(self.end),
            Cell::Float((self.end - self.start) as f64 / 1000.0),
            Cell::Int(self.actions),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn times(ts: &[Millis]) -> Vec<(&Millis, isize)> {
        ts.iter().map(|t| (t, 1)).collect()
    }

    #[test]
    fn a_gap_of_at_least_the_session_gap_starts_a_new_session() {
        let ts = [0, 10, 40, 50];
        let sessions = cut_sessions(&SessionScope::Day(0), &times(&ts), 30);
        assert_eq!(sessions, vec![(0, 10, 2), (40, 50, 2)]);
        let sessions = cut_sessions(&SessionScope::Day(0), &times(&[0, 29, 58]), 30);
        assert_eq!(sessions, vec![(0, 58, 3)], "gaps below the session gap");
    }

    #[test]
    fn a_source_session_is_one_session_however_long_its_gaps() {
        let sessions = cut_sessions(
            &SessionScope::Source(Name::new("s1")),
            &times(&[0, 1_000, 9_000]),
            30,
        );
        assert_eq!(sessions, vec![(0, 9_000, 3)]);
    }

    #[test]
    fn repeated_times_count_every_action() {
        let ts = [5, 5, 7];
        let mut with_counts = times(&ts[1..]);
        with_counts[0].1 = 2;
        assert_eq!(
            cut_sessions(&SessionScope::Unsplit, &with_counts, 30),
            vec![(5, 7, 3)]
        );
    }
}
