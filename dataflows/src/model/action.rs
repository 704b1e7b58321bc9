//! `Action`: an accepted event as the metric dataflows hold it, with interned names
//! and only the fields some output needs (`event_id` and `item_id` are not needed
//! once duplicates are gone).

use differential_dataflow::hashable::Hashable;
use differential_dataflow::{AsCollection, VecCollection};
use serde::{Deserialize, Serialize};
use tidemark_records::records::{Event, Millis};
use timely::dataflow::operators::Exchange;

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

/// Accepted events partitioned by user: every event of a user is on the worker that
/// [`user_route`] picks for the user. Operators keyed by user (the dimension slices,
/// the events of plan-change days) then read the events where they are, with no
/// exchange of their own, and per-worker pre-aggregations by user (sessions' runs, the
/// day facts) meet each user's events of a time on one worker, not spread over all.
/// Only [`ActionsByUser::exchange`] and operators that keep records where they are
/// (`Pipeline`) make one, so the type is the guarantee.
#[derive(Clone)]
pub struct ActionsByUser<'s>(VecCollection<'s, Time, Action>);

/// The exchange route of a user: the worker of its events in [`ActionsByUser`], and of
/// every record routed by user that must meet them.
pub fn user_route(user: &Name) -> u64 {
    user.hashed()
}

impl<'s> ActionsByUser<'s> {
    /// `events` moved to their users' workers (one exchange for every operator that
    /// reads them by user).
    pub fn exchange(events: VecCollection<'s, Time, Action>) -> ActionsByUser<'s> {
        ActionsByUser(
            events
                .inner
                .exchange(|(event, _time, _diff): &(Action, Time, isize)| {
                    user_route(&event.user_id)
                })
                .as_collection(),
        )
    }

    /// The events, as a collection.
    pub fn collection(&self) -> VecCollection<'s, Time, Action> {
        self.0.clone()
    }

    /// The events that `keep` passes through, staying where they are. `keep` must not
    /// move records between workers (a `Pipeline` operator), which keeps the partition.
    pub fn keep_partitioned(
        &self,
        keep: impl FnOnce(VecCollection<'s, Time, Action>) -> VecCollection<'s, Time, Action>,
    ) -> ActionsByUser<'s> {
        ActionsByUser(keep(self.0.clone()))
    }
}

/// One accepted user action (56 bytes, `Copy`): every copy of the accepted events
/// (each exchange, each reader of the stream, each sort) moves this many bytes a row.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Action {
    /// The user.
    pub user_id: Name,
    /// Event time.
    pub ts: Millis,
    /// Lower-cased action name.
    pub event_type: Name,
    /// Time spent; 0 when not given (every output counts a missing duration as 0). The
    /// readers reject more than two hours, so 32 bits hold it.
    pub duration_ms: u32,
    /// The source's session, if given.
    pub session_id: Option<Name>,
    /// The item acted on, if given (for the `genre` and `artist` dimensions).
    pub item_id: Option<Name>,
    /// The event's `value` in fixed point (`round(value * 2^32)`, see
    /// [`crate::metrics::engagement_by_dimension::VALUE_SCALE`]), or [`NO_VALUE`]: read
    /// it with [`Action::value`]. A value is at most 1e9 in magnitude, so its fixed
    /// point is far from `i64::MIN`, and the field takes 8 bytes, not an option's 16.
    value: i64,
}

/// What [`Action`] holds for an event without a `value`.
const NO_VALUE: i64 = i64::MIN;

impl Action {
    /// The event's `value` in fixed point (`round(value * 2^32)`), if given.
    pub fn value(&self) -> Option<i64> {
        (self.value != NO_VALUE).then_some(self.value)
    }
}

#[cfg(test)]
impl Action {
    /// An action of `user` at `ts` (its type the user's name, nothing else given).
    pub(crate) fn for_test(user: Name, ts: Millis) -> Action {
        Action {
            user_id: user,
            ts,
            event_type: user,
            duration_ms: 0,
            session_id: None,
            item_id: None,
            value: NO_VALUE,
        }
    }
}

#[cfg(test)]
#[test]
fn an_action_is_56_bytes_and_an_admitted_row_88() {
    assert_eq!(std::mem::size_of::<Action>(), 56);
    assert_eq!(std::mem::size_of::<crate::operators::gate::Admitted>(), 88);
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
            duration_ms: event.duration_ms.map_or(0, |ms| {
                // Every reader rejects a duration beyond two hours (`out_of_range`).
                u32::try_from(ms).expect("a duration the readers accepted fits 32 bits")
            }),
            session_id: event.session_id.as_deref().map(Name::new),
            item_id: event.item_id.as_deref().map(Name::new),
            value: event.value.map_or(NO_VALUE, |v| {
                (v.0 * crate::metrics::engagement_by_dimension::VALUE_SCALE).round() as i64
            }),
        }
    }
}
