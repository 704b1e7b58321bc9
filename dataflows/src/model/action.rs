//! `Action`: an accepted event as the metric dataflows hold it, with interned names
//! and only the fields some output needs (`event_id` and `item_id` are not needed
//! once duplicates are gone).

use differential_dataflow::VecCollection;
use serde::{Deserialize, Serialize};
use tidemark_records::records::{Event, Millis};

use crate::model::name::Name;
use crate::operators::combine::combine_map;
use crate::operators::gate::Time;
use tidemark_records::time::day_of;

/// Accepted events as (user, UTC day, event type), each with the number of such events
/// as its multiplicity, counted on each worker: the day facts that the distinct user
/// days, the event mix, first use and the users' daily activity read, made once from
/// the events instead of once per metric (a few updates per user and day, not one per
/// event).
pub type UserDayTypes<'s> = VecCollection<'s, Time, (Name, i32, Name)>;

/// The [`UserDayTypes`] of the accepted events.
pub fn user_day_types<'s>(events: VecCollection<'s, Time, Action>) -> UserDayTypes<'s> {
    combine_map(events, "CombineUserDayTypes", |e| {
        Some((e.user_id, day_of(e.ts), e.event_type))
    })
}

/// One accepted user action (64 bytes, `Copy`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Action {
    /// The user.
    pub user_id: Name,
    /// Event time.
    pub ts: Millis,
    /// Lower-cased action name.
    pub event_type: Name,
    /// Time spent; 0 when not given (every output counts a missing duration as 0).
    pub duration_ms: i64,
    /// The source's session, if given.
    pub session_id: Option<Name>,
    /// The item acted on, if given (for the `genre` and `artist` dimensions).
    pub item_id: Option<Name>,
    /// The event's `value` in fixed point (`round(value * 2^32)`, see
    /// [`crate::metrics::engagement_by_dimension::VALUE_SCALE`]), if given.
    pub value: Option<i64>,
}

#[cfg(test)]
#[test]
fn an_action_is_64_bytes_and_an_admitted_row_96() {
    assert_eq!(std::mem::size_of::<Action>(), 64);
    assert_eq!(std::mem::size_of::<crate::operators::gate::Admitted>(), 96);
}

/// Turns events into actions, their texts into integer [`Name`]s.
#[derive(Default)]
pub struct ActionMaker;

impl ActionMaker {
    /// The action of an accepted event.
    pub fn make(&mut self, event: &Event) -> Action {
        Action {
            user_id: Name::new(&event.user_id),
            ts: event.ts,
            event_type: Name::new(&event.event_type),
            duration_ms: event.duration_ms.unwrap_or(0),
            session_id: event.session_id.as_deref().map(Name::new),
            item_id: event.item_id.as_deref().map(Name::new),
            value: event.value.map(|v| {
                (v.0 * crate::metrics::engagement_by_dimension::VALUE_SCALE).round() as i64
            }),
        }
    }
}
