//! Sessions (contract "Sessions"): the source's own sessions where events carry a
//! `session_id`; otherwise derived per user from a gap of `session_gap` or more and,
//! optionally, each UTC midnight. A late event that extends, splits or merges sessions
//! makes the reduce retract the old sessions and add the new ones.

use differential_dataflow::VecCollection;
use serde::{Deserialize, Serialize};
use tidemark_inputs::records::{Event, Millis};
use tidemark_inputs::time::day_of;

use crate::ingest::Time;
use crate::rows::SessionRow;
use crate::settings::Params;

/// The set of a user's events within which sessions are formed.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum SessionScope {
    /// Events carrying this source session id: exactly one session.
    Source(String),
    /// Events of one UTC day (derived sessions with the midnight split).
    Day(i32),
    /// All of a user's events without a session id (midnight split off).
    Unsplit,
}

/// Which scope an event's session is formed in.
pub fn session_scope(event: &Event, params: &Params) -> SessionScope {
    match &event.session_id {
        Some(id) => SessionScope::Source(id.clone()),
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

/// The `sessions` table, maintained from accepted events.
pub fn sessions<'s>(
    events: VecCollection<'s, Time, Event>,
    params: Params,
) -> VecCollection<'s, Time, SessionRow> {
    events
        .map(move |event| {
            let scope = session_scope(&event, &params);
            ((event.user_id, scope), event.ts)
        })
        .reduce_named("Sessions", move |(_user, scope), times, output| {
            for session in cut_sessions(scope, times, params.session_gap_ms) {
                output.push((session, 1isize));
            }
        })
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
