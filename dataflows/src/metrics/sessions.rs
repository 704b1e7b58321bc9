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
use crate::operators::pre_reduce::pre_reduce;

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

/// A run of a scope's events: first and last event time and number of events. A
/// single event is the run `(ts, ts, 1)`.
pub type Run = (Millis, Millis, i64);

/// Cuts one scope's runs of events (sorted, with multiplicities) into sessions, as
/// runs: `(start, end, actions)`. Source scopes are one session; derived ones split
/// where the next run starts `gap_ms` or more after the latest event so far.
///
/// Cutting runs gives the sessions of their events, however the events were grouped
/// into runs, as long as the events of each run are one session on their own (gaps
/// below `gap_ms`): adding events only shortens gaps, so no run is ever split, and
/// with runs in order of start, the gap before a run that starts after every event so
/// far is exactly the gap between two consecutive events. So each worker may cut its
/// own events of one logical time into runs first ([`session_runs`]), and the
/// session reduce then holds a run where it would hold every event.
pub fn cut_sessions(
    scope: &SessionScope,
    runs: impl IntoIterator<Item = (Run, i64)>,
    gap_ms: Millis,
) -> Vec<Run> {
    let mut sessions = Vec::new();
    let mut current: Option<Run> = None;
    for ((start, end, actions), count) in runs {
        let actions = actions * count;
        current = match current {
            Some((first, last, total))
                if matches!(scope, SessionScope::Source(_)) || start - last < gap_ms =>
            {
                Some((first, last.max(end), total + actions))
            }
            Some(done) => {
                sessions.push(done);
                Some((start, end, actions))
            }
            None => Some((start, end, actions)),
        };
    }
    sessions.extend(current);
    sessions
}

/// One worker's events of one scope and logical time, cut into runs that are each
/// within one session (see [`cut_sessions`]), with multiplicity 1.
fn session_runs(
    scope: &SessionScope,
    times: &mut [(Millis, isize)],
    gap_ms: Millis,
    runs: &mut Vec<(Run, isize)>,
) {
    debug_assert!(
        times.iter().all(|(_, count)| *count > 0),
        "runs are cut from accepted events only"
    );
    times.sort_unstable();
    let events = times.iter().map(|&(ts, count)| ((ts, ts, 1), count as i64));
    runs.extend(
        cut_sessions(scope, events, gap_ms)
            .into_iter()
            .map(|run| (run, 1)),
    );
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
///
/// With `insert_only` (no accepted event is ever taken back), each worker first cuts its
/// own events of each scope and logical time into runs, and the reduce holds runs, not
/// events: about one per session instead of one per event. Otherwise every event is
/// its own run, so that a retracted event cancels exactly its own record.
pub fn sessions<'s>(
    events: VecCollection<'s, Time, Action>,
    watermarks: &Watermarks<'s>,
    params: Params,
    insert_only: bool,
) -> VecCollection<'s, Time, SessionRow> {
    let scoped = move |event: Action| {
        let scope = session_scope(&event, &params);
        ((event.user_id, scope), event.ts)
    };
    let runs = if insert_only {
        pre_reduce(
            events,
            "SessionRuns",
            scoped,
            move |(_user, scope), times, runs| {
                session_runs(scope, times, params.session_gap_ms, runs)
            },
        )
    } else {
        events.map(move |event| {
            let (key, ts) = scoped(event);
            (key, (ts, ts, 1))
        })
    };
    reduce_until_closed(
        runs,
        watermarks,
        |(_user, scope): &(Name, SessionScope)| scope_end(scope),
        "Sessions",
        move |(_user, scope), runs, output| {
            let runs = runs.iter().map(|(run, count)| (*run, *count as i64));
            for session in cut_sessions(scope, runs, params.session_gap_ms) {
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
            Cell::Str(self.user_id.text()),
            Cell::Timestamp(self.start),
            self.session_id.map_or(Cell::Null, |s| Cell::Str(s.text())),
            Cell::Timestamp(self.end),
            Cell::Float((self.end - self.start) as f64 / 1000.0),
            Cell::Int(self.actions),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn singles(ts: &[Millis]) -> Vec<Run> {
        ts.iter().map(|&t| (t, t, 1)).collect()
    }

    fn times(runs: &[Run]) -> Vec<(Run, i64)> {
        runs.iter().map(|r| (*r, 1)).collect()
    }

    #[test]
    fn a_gap_of_at_least_the_session_gap_starts_a_new_session() {
        let ts = [0, 10, 40, 50];
        let sessions = cut_sessions(&SessionScope::Day(0), times(&singles(&ts)), 30);
        assert_eq!(sessions, vec![(0, 10, 2), (40, 50, 2)]);
        let sessions = cut_sessions(&SessionScope::Day(0), times(&singles(&[0, 29, 58])), 30);
        assert_eq!(sessions, vec![(0, 58, 3)], "gaps below the session gap");
    }

    #[test]
    fn a_source_session_is_one_session_however_long_its_gaps() {
        let sessions = cut_sessions(
            &SessionScope::Source(Name::new("s1")),
            times(&singles(&[0, 1_000, 9_000])),
            30,
        );
        assert_eq!(sessions, vec![(0, 9_000, 3)]);
    }

    /// Runs cut from any grouping of the events (workers, logical times) give the
    /// sessions of the events themselves, for derived and source scopes alike.
    #[test]
    fn sessions_of_runs_are_the_sessions_of_their_events_whatever_the_grouping() {
        let mut next = crate::test_numbers(0x2545_f491_4f6c_dd1d);
        for case in 0..3000 {
            let scope = if case % 5 == 0 {
                SessionScope::Source(Name::new("s"))
            } else {
                SessionScope::Day(0)
            };
            let events: Vec<(Millis, u64)> = (0..1 + next(14))
                .map(|_| (next(240) as Millis, next(4)))
                .collect();
            let mut all: Vec<Millis> = events.iter().map(|(ts, _)| *ts).collect();
            all.sort_unstable();
            let expected = cut_sessions(&scope, times(&singles(&all)), 30);
            let mut runs = Vec::new();
            for group in 0..4 {
                let mut mine: Vec<(Millis, isize)> = events
                    .iter()
                    .filter(|(_, g)| *g == group)
                    .map(|(ts, _)| (*ts, 1))
                    .collect();
                if !mine.is_empty() {
                    session_runs(&scope, &mut mine, 30, &mut runs);
                }
            }
            runs.sort_unstable();
            let runs = runs.iter().map(|(run, n)| (*run, *n as i64));
            assert_eq!(
                cut_sessions(&scope, runs, 30),
                expected,
                "events {events:?}"
            );
        }
    }

    #[test]
    fn repeated_times_count_every_action() {
        let runs = singles(&[5, 7]);
        let mut with_counts = times(&runs);
        with_counts[0].1 = 2;
        assert_eq!(
            cut_sessions(&SessionScope::Unsplit, with_counts, 30),
            vec![(5, 7, 3)]
        );
    }
}
