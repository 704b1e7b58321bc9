//! The slices of `engagement_by_dimension`: accepted events joined with their sources'
//! members, with the distinct active users of each (day, dimension, member), in one
//! operator per worker.
//!
//! Members are few and change rarely (once per source, and with a late catalogue or
//! user row), so every worker gets all of them (a broadcast, as Spark and Flink join a
//! small dimension table). The events stay with their user's worker, so the distinct
//! users of a (day, dimension, member) are counted there, with no exchange. Each worker
//! keeps, per user, the measures of each (item, day) and each day, and how many events
//! each (day, dimension, member) has, so that a member change moves them from the old
//! member to the new one; and per item only its members and how many events it has
//! here. (An item's measures per day, kept per item, cost two cache misses per event
//! on 80,000 items; a member change of an item that has events here is rare, and
//! finds them in a pass over the users, which it makes anyway.)
//!
//! At each complete logical time the member changes are applied against the events
//! seen before it, then the time's events against the members after it: that is the
//! delta of the join, `L·ΔR + ΔL·(R + ΔR)`. The output is each (day, dimension,
//! member)'s change of [`Sums`] on this worker, which the table's sum adds up.

use std::hash::Hash;

use differential_dataflow::difference::{IsZero, Multiply, Semigroup};
use differential_dataflow::hashable::Hashable;
use differential_dataflow::{AsCollection, VecCollection};
use rustc_hash::FxHashMap;
use smallvec::SmallVec;
use tidemark_records::time::day_of;
use timely::dataflow::channels::pact::{Exchange, Pipeline};
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::operators::vec::Broadcast;

use super::{Slot, Source, Sums};
use crate::model::action::Action;
use crate::model::name::Name;
use crate::operators::gate::Time;
use crate::operators::held::{hold_updates, pop_complete_pair, HeldByTime, HeldUpdates};
use crate::operators::totals::add_to_total;

/// A (day, dimension, member): the key of a table row.
pub(super) type Slice = (i32, Slot, Option<Name>);

/// Which members an event has: through its item, through its user, and its hour.
#[derive(Clone)]
pub(super) struct SlicePlan {
    /// Some dimension reads the item (`genre`, `artist`).
    pub by_item: bool,
    /// Some dimension reads the user (`country`, a user attribute).
    pub by_user: bool,
    /// The slot of `hour_of_day` if it is in force, with the 24 hours' names.
    pub hour: Option<(Slot, [Name; 24])>,
}

/// Each (day, dimension, member)'s change of sums, per logical time and worker: the
/// events of `events`, each under the members that `members` gives its sources (see
/// the module docs).
pub(super) fn slices<'s>(
    events: VecCollection<'s, Time, Action>,
    members: VecCollection<'s, Time, (Source, (Slot, Option<Name>))>,
    plan: SlicePlan,
) -> VecCollection<'s, Time, Slice, Sums> {
    let by_user = Exchange::new(|(event, _, _): &(Action, Time, isize)| event.user_id.hashed());
    events
        .inner
        .binary_frontier(
            members.inner.broadcast(),
            by_user,
            Pipeline,
            "DimensionSlices",
            move |_capability, _info| {
                let mut held_events: HeldUpdates<(Action, isize)> = HeldByTime::default();
                let mut held_members: HeldUpdates<(Source, Slot, Option<Name>, isize)> =
                    HeldByTime::default();
                let mut state = State::default();
                move |(events_in, events_frontier), (members_in, members_frontier), output| {
                    events_in.for_each(|cap, batch| {
                        hold_updates(&mut held_events, &cap, batch, |event, _, diff| {
                            (event, diff)
                        })
                    });
                    members_in.for_each(|cap, batch| {
                        hold_updates(
                            &mut held_members,
                            &cap,
                            batch,
                            |(source, (slot, member)), _, diff| (source, slot, member, diff),
                        )
                    });
                    let complete = |time: Time| {
                        !events_frontier.frontier().less_equal(&time)
                            && !members_frontier.frontier().less_equal(&time)
                    };
                    while let Some((time, cap, mut events, changes)) =
                        pop_complete_pair(&mut held_events, &mut held_members, complete)
                    {
                        state.move_members(changes.as_deref().unwrap_or_default());
                        state.add_events(&plan, events.as_deref_mut().unwrap_or_default());
                        output.session(&cap).give_iterator(
                            state
                                .out
                                .drain()
                                .filter(|(_, sums)| !sums.is_zero())
                                .map(|(slice, sums)| (slice, time, sums)),
                        );
                        if let Some(events) = events {
                            let held = events.len();
                            held_events.recycle(events, held);
                        }
                    }
                }
            },
        )
        .as_collection()
}

/// A 64-bit id (of a [`Name`], 0 for none) at 4-byte alignment, so that the keys that
/// hold one pack with 32-bit fields.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
struct Id {
    low: u32,
    high: u32,
}

impl Id {
    fn of(name: Option<Name>) -> Id {
        let id = name.map_or(0, Name::id);
        Id {
            low: id as u32,
            high: (id >> 32) as u32,
        }
    }
}

/// A user's (item, day): 12 bytes.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
struct ItemDay {
    item: Id,
    day: i32,
}

/// A user's [`Slice`]: 16 bytes at 4-byte alignment, 20 with its count.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
struct UserSlice {
    member: Id,
    day: i32,
    slot: Slot,
}

impl UserSlice {
    fn of(&(day, slot, member): &Slice) -> UserSlice {
        UserSlice {
            member: Id::of(member),
            day,
            slot,
        }
    }
}

/// One day's measures of a source: [`Sums`] without its users, the value sum in two
/// words, so that a (day, measures) entry is 48 bytes, not 64.
#[derive(Clone, Copy, Default, PartialEq, Eq)]
struct Measures {
    events: i64,
    duration: i64,
    values: i64,
    value_sum: [i64; 2],
}

impl Measures {
    fn value_sum(&self) -> i128 {
        (i128::from(self.value_sum[0]) << 64) | i128::from(self.value_sum[1] as u64)
    }

    fn sums(&self) -> Sums {
        Sums {
            events: self.events,
            duration: self.duration,
            value_sum: (i128::from(self.value_sum[0]) << 64) | i128::from(self.value_sum[1] as u64),
            values: self.values,
            users: 0,
        }
    }

    fn of(sums: &Sums) -> Measures {
        Measures {
            events: sums.events,
            duration: sums.duration,
            values: sums.values,
            value_sum: [(sums.value_sum >> 64) as i64, sums.value_sum as i64],
        }
    }
}

impl IsZero for Measures {
    fn is_zero(&self) -> bool {
        *self == Measures::default()
    }
}

impl Semigroup for Measures {
    fn plus_equals(&mut self, rhs: &Measures) {
        self.events += rhs.events;
        self.duration += rhs.duration;
        self.values += rhs.values;
        let value_sum = self.value_sum() + rhs.value_sum();
        self.value_sum = [(value_sum >> 64) as i64, value_sum as i64];
    }
}

/// One user's events on this worker (counts fit 32 bits: 2^31 accepted events of one
/// user would take 32 GiB in the deduplication's id set alone): the measures of each
/// (item, day) (what a change of the item's members moves) and of each day (for
/// dimensions of the user), and how many events each of the user's (day, dimension,
/// member) has (nonzero: the user is active there).
#[derive(Default)]
struct UserEvents {
    items: FxHashMap<ItemDay, Measures>,
    days: FxHashMap<i32, Measures>,
    active: FxHashMap<UserSlice, i32>,
}

impl UserEvents {
    fn is_empty(&self) -> bool {
        self.items.is_empty() && self.days.is_empty() && self.active.is_empty()
    }
}

/// A source's members with their multiplicities: an item has two (`genre`, `artist`),
/// held in place, so that the event that looks its item up finds them in the same
/// cache line, not behind a pointer.
type Members = SmallVec<[(Slot, Option<Name>, i64); 2]>;

/// One source on this worker: its members (from the broadcast), and for an item how
/// many of its events are here (whether a member change must look for them).
#[derive(Default)]
struct SourceState {
    members: Members,
    events: i64,
}

impl SourceState {
    fn is_empty(&self) -> bool {
        self.members.is_empty() && self.events == 0
    }
}

/// One worker's state, by user and by source, and the output being summed. Each
/// event touches its user's maps, which stay in cache while the user's events of a
/// time are taken one after the other.
#[derive(Default)]
struct State {
    users: FxHashMap<Name, UserEvents>,
    sources: FxHashMap<Source, SourceState>,
    out: FxHashMap<Slice, Sums>,
}

impl State {
    /// A logical time's member changes `(source, slot, member, diff)`: the events so
    /// far of each changed source move by `diff`, then the members change.
    fn move_members(&mut self, changes: &[(Source, Slot, Option<Name>, isize)]) {
        let mut moved_items: FxHashMap<Id, Vec<(Slot, Option<Name>, i64)>> = FxHashMap::default();
        for &(source, slot, member, diff) in changes {
            match source {
                Source::User(user) => {
                    // A user's events are all in one place: they move at once.
                    let Some(events) = self.users.get_mut(&user) else {
                        continue;
                    };
                    for (&day, measures) in &events.days {
                        let slice = (day, slot, member);
                        let count = measures.events * diff as i64;
                        add_user(&mut events.active, &mut self.out, slice, count);
                        let sums = measures.sums().multiply(&diff);
                        add_to_total(&mut self.out, slice, &sums);
                    }
                }
                Source::Item(_) | Source::Missing => {
                    if self.sources.get(&source).is_some_and(|s| s.events != 0) {
                        let item = Id::of(match source {
                            Source::Item(item) => Some(item),
                            _ => None,
                        });
                        moved_items
                            .entry(item)
                            .or_default()
                            .push((slot, member, diff as i64));
                    }
                }
            }
        }
        // Only an item with events here before this time needs every user's events: a
        // late catalogue row, or the first `items/` row of all. An item used for the
        // first time has none.
        if !moved_items.is_empty() {
            for events in self.users.values_mut() {
                for (key, measures) in &events.items {
                    for &(slot, member, diff) in moved_items.get(&key.item).into_iter().flatten() {
                        let slice = (key.day, slot, member);
                        add_user(
                            &mut events.active,
                            &mut self.out,
                            slice,
                            measures.events * diff,
                        );
                        let sums = measures.sums().multiply(&(diff as isize));
                        add_to_total(&mut self.out, slice, &sums);
                    }
                }
            }
        }
        for &(source, slot, member, diff) in changes {
            let state = self.sources.entry(source).or_default();
            let members = &mut state.members;
            match members.iter().position(|m| (m.0, m.1) == (slot, member)) {
                Some(at) => {
                    members[at].2 += diff as i64;
                    if members[at].2 == 0 {
                        members.swap_remove(at);
                    }
                }
                None => members.push((slot, member, diff as i64)),
            }
            if state.is_empty() {
                self.sources.remove(&source);
            }
        }
    }

    /// A logical time's accepted events (`diff` +1, or -1 when retired or taken back),
    /// one user after another.
    fn add_events(&mut self, plan: &SlicePlan, events: &mut [(Action, isize)]) {
        events.sort_unstable_by_key(|(event, _)| event.user_id);
        for run in events.chunk_by(|a, b| a.0.user_id == b.0.user_id) {
            let user = run[0].0.user_id;
            let events = self.users.entry(user).or_default();
            for (event, diff) in run {
                add_event(plan, &mut self.sources, events, &mut self.out, event, *diff);
            }
            if events.is_empty() {
                self.users.remove(&user);
            }
        }
    }
}

/// Adds one event of a user (whose `events` these are) to the state, and its slices
/// to `out`.
fn add_event(
    plan: &SlicePlan,
    sources: &mut FxHashMap<Source, SourceState>,
    events: &mut UserEvents,
    out: &mut FxHashMap<Slice, Sums>,
    event: &Action,
    diff: isize,
) {
    let day = day_of(event.ts);
    let sums = Sums::event(event.duration_ms, event.value).multiply(&diff);
    if let Some((slot, hours)) = &plan.hour {
        let hour = (event.ts.rem_euclid(86_400_000) / 3_600_000) as usize;
        let slice = (day, *slot, Some(hours[hour]));
        add_user(&mut events.active, out, slice, diff as i64);
        add_to_total(out, slice, &sums);
    }
    if plan.by_item {
        let item = ItemDay {
            item: Id::of(event.item_id),
            day,
        };
        add_to_total(&mut events.items, item, &Measures::of(&sums));
        let source = event.item_id.map_or(Source::Missing, Source::Item);
        let state = sources.entry(source).or_default();
        state.events += diff as i64;
        add_slices(&state.members, &mut events.active, out, day, diff, &sums);
        if state.is_empty() {
            sources.remove(&source);
        }
    }
    if plan.by_user {
        add_to_total(&mut events.days, day, &Measures::of(&sums));
        if let Some(state) = sources.get(&Source::User(event.user_id)) {
            add_slices(&state.members, &mut events.active, out, day, diff, &sums);
        }
    }
}

/// Adds an event (`diff` times, with `sums`) of a user whose active slices are
/// `active` to its slices of `day` under `members`.
fn add_slices(
    members: &[(Slot, Option<Name>, i64)],
    active: &mut FxHashMap<UserSlice, i32>,
    out: &mut FxHashMap<Slice, Sums>,
    day: i32,
    diff: isize,
    sums: &Sums,
) {
    for &(slot, member, times) in members {
        let slice = (day, slot, member);
        add_user(active, out, slice, diff as i64 * times);
        add_to_total(out, slice, &sums.multiply(&(times as isize)));
    }
}

/// Adds `diff` events to one user's (day, dimension, member): a user who gains their
/// first event there (or loses their last) adds (or takes) one active user.
fn add_user(
    active: &mut FxHashMap<UserSlice, i32>,
    out: &mut FxHashMap<Slice, Sums>,
    slice: Slice,
    diff: i64,
) {
    let users = match add_to_total(active, UserSlice::of(&slice), &(diff as i32)) {
        (false, true) => 1,
        (true, false) => -1,
        _ => return,
    };
    add_to_total(out, slice, &Sums::users(users));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_per_user_and_per_day_entries_are_compact() {
        assert_eq!(std::mem::size_of::<(ItemDay, Measures)>(), 56);
        assert_eq!(std::mem::size_of::<(UserSlice, i32)>(), 20);
        assert_eq!(std::mem::size_of::<(i32, Measures)>(), 48);
    }

    #[test]
    fn measures_keep_every_bit_of_a_value_sum() {
        for value_sum in [0, 1, -1, i128::MAX, i128::MIN, -(3 << 70) + 5, 1 << 64] {
            let sums = Sums {
                events: 2,
                duration: -3,
                value_sum,
                values: 1,
                users: 0,
            };
            assert_eq!(Measures::of(&sums).sums(), sums);
        }
    }
}
