//! The slices of `engagement_by_dimension`: accepted events joined with their sources'
//! members, with the distinct active users of each (day, dimension, member), in one
//! operator per worker.
//!
//! Members are few and change rarely (once per source, and with a late catalogue or
//! user row), so every worker gets all of them (a broadcast, as Spark and Flink join a
//! small dimension table). The events come partitioned by user ([`ActionsByUser`]) and
//! stay there, so the distinct users of a (day, dimension, member) are counted there,
//! with no exchange. Each worker
//! keeps, per user and day, the measures of the user's events, those of each of the
//! user's items, and how many events each (dimension, member) has, in short lists (a
//! user has a few items and members a day, so an event finds its entries in the cache
//! lines its user's earlier events brought in); and per source only its members and
//! how many events it has here. A member change of an item that has events here is
//! rare (a late catalogue row), and finds them in a pass over the users. The (dimension,
//! member)s are numbered on each worker, so a user's counts take 8 bytes each.
//!
//! At each complete logical time the member changes are applied against the events
//! seen before it, then the time's events against the members after it: that is the
//! delta of the join, `L·ΔR + ΔL·(R + ΔR)`. The output is each (day, dimension,
//! member)'s change of [`Sums`] on this worker, which the table's sum adds up.

use differential_dataflow::difference::{IsZero, Multiply, Semigroup};
use differential_dataflow::{AsCollection, VecCollection};
use rustc_hash::FxHashMap;
use smallvec::SmallVec;
use tidemark_records::time::day_of;
use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::operators::vec::Broadcast;

use super::{Slot, Source, Sums};
use crate::model::action::{Action, ActionsByUser};
use crate::model::name::Name;
use crate::operators::gate::Time;
use crate::operators::held::{
    flatten, hold_chunks, hold_updates, pop_complete_pair, HeldByTime, HeldChunks, HeldUpdates,
};
use crate::operators::totals::add_to_list;

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
    events: ActionsByUser<'s>,
    members: VecCollection<'s, Time, (Source, (Slot, Option<Name>))>,
    plan: SlicePlan,
) -> VecCollection<'s, Time, Slice, Sums> {
    // The events are where their users are: no exchange.
    events
        .collection()
        .inner
        .binary_frontier(
            members.inner.broadcast(),
            Pipeline,
            Pipeline,
            "DimensionSlices",
            move |_capability, _info| {
                let mut held_events: HeldChunks<Action> = HeldByTime::default();
                let mut held_members: HeldUpdates<(Source, Slot, Option<Name>, isize)> =
                    HeldByTime::default();
                let mut state = State::new(&plan);
                move |(events_in, events_frontier), (members_in, members_frontier), output| {
                    events_in.for_each(|cap, batch| hold_chunks(&mut held_events, &cap, batch));
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
                    while let Some((time, cap, events, changes)) =
                        pop_complete_pair(&mut held_events, &mut held_members, complete)
                    {
                        state.move_members(changes.as_deref().unwrap_or_default());
                        let mut events = flatten(events.unwrap_or_default(), |e, diff| (e, diff));
                        state.add_events(&plan, &mut events);
                        output.session(&cap).give_iterator(
                            state.drain_out().map(|(slice, sums)| (slice, time, sums)),
                        );
                    }
                }
            },
        )
        .as_collection()
}

/// A member of a dimension on this worker, by its place in [`State::members`]: the
/// per-user counts and the sums of a time hold this 4-byte index, not the 16-byte
/// (dimension, member).
type MemberIx = u32;

/// A 64-bit id (of a [`Name`], 0 for none) at 4-byte alignment, so that the entries
/// that hold one pack with 32-bit fields.
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

/// The measures of some of one user's events of one day: [`Sums`] without its users,
/// the counts in 32 bits (see [`UserDay`]) and the value sum in two words, in 32 bytes.
#[derive(Clone, Copy, Default, PartialEq, Eq)]
struct Measures {
    events: i32,
    values: i32,
    duration: i64,
    value_sum: [i64; 2],
}

impl Measures {
    fn value_sum(&self) -> i128 {
        (i128::from(self.value_sum[0]) << 64) | i128::from(self.value_sum[1] as u64)
    }

    fn sums(&self) -> Sums {
        Sums {
            events: self.events.into(),
            duration: self.duration,
            value_sum: self.value_sum(),
            values: self.values.into(),
            users: 0,
        }
    }

    fn of(sums: &Sums) -> Measures {
        Measures {
            events: sums.events as i32,
            values: sums.values as i32,
            duration: sums.duration,
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
        self.values += rhs.values;
        self.duration += rhs.duration;
        let value_sum = self.value_sum() + rhs.value_sum();
        self.value_sum = [(value_sum >> 64) as i64, value_sum as i64];
    }
}

/// One user's events of one day on this worker (counts fit 32 bits: 2^31 accepted
/// events of one user would take 32 GiB in the deduplication's id set alone): their
/// measures (what a change of the user's members moves), those of each item (what a
/// change of an item's members moves), and how many each (dimension, member) has
/// (nonzero: the user is active there). A user has a few items and members a day, so
/// short lists, searched in place, hold them in a few cache lines.
#[derive(Default)]
struct UserDay {
    measures: Measures,
    items: Vec<(Id, Measures)>,
    active: Vec<(MemberIx, i32)>,
}

impl UserDay {
    fn is_empty(&self) -> bool {
        self.items.is_empty() && self.active.is_empty() && self.measures.is_zero()
    }
}

/// One user's days on this worker, sorted by day (events arrive mostly in time order,
/// so the day sought is most often the last).
type UserDays = Vec<(i32, UserDay)>;

/// The place of `day` in a user's days, inserted if new.
fn day_at(days: &mut UserDays, day: i32) -> usize {
    let at = match days.last() {
        Some(&(last, _)) if last == day => return days.len() - 1,
        Some(&(last, _)) if last < day => days.len(),
        _ => match days.binary_search_by_key(&day, |(d, _)| *d) {
            Ok(at) => return at,
            Err(at) => at,
        },
    };
    days.insert(at, (day, UserDay::default()));
    at
}

/// A source's members (indexes, with their multiplicities) as the broadcast gives
/// them: an item has two (`genre`, `artist`), held in place, so that the event that
/// looks its item up finds them in the same cache line, not behind a pointer.
type Members = SmallVec<[(MemberIx, i64); 2]>;

/// One source on this worker: its members, and for an item how many of its events are
/// here (whether a member change must look for them).
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

/// One worker's state: by user, by source, every (dimension, member) seen here by
/// index, and the output of the time being summed, per (day, member index). Each event
/// touches its user's day, which stays in cache while the user's events of a time are
/// taken one after the other.
#[derive(Default)]
struct State {
    users: FxHashMap<Name, UserDays>,
    sources: FxHashMap<Source, SourceState>,
    members: Vec<(Slot, Option<Name>)>,
    member_index: FxHashMap<(Slot, Option<Name>), MemberIx>,
    /// The member index of each hour of the day, when `hour_of_day` is in force.
    hours: Option<[MemberIx; 24]>,
    out: FxHashMap<(i32, MemberIx), Sums>,
    /// The day being added to (see [`State::add_events`]), whose lists keep their room.
    scratch: UserDay,
    /// Room for a time's events while [`sort_by_user`] distributes them.
    sorting: Vec<(Action, isize)>,
    /// The members of each of a time's events' items (see [`State::item_members`]).
    item_members: Vec<Members>,
}

impl State {
    fn new(plan: &SlicePlan) -> State {
        let mut state = State::default();
        if let Some((slot, names)) = &plan.hour {
            state.hours = Some(names.map(|name| state.member(*slot, Some(name))));
        }
        state
    }

    /// The index of a (dimension, member), given one if new.
    fn member(&mut self, slot: Slot, member: Option<Name>) -> MemberIx {
        let members = &mut self.members;
        *self.member_index.entry((slot, member)).or_insert_with(|| {
            members.push((slot, member));
            (members.len() - 1) as MemberIx
        })
    }

    /// The time's output: each (day, dimension, member)'s change of sums, emptying it.
    fn drain_out(&mut self) -> impl Iterator<Item = (Slice, Sums)> + '_ {
        let members = &self.members;
        self.out
            .drain()
            .filter(|(_, sums)| !sums.is_zero())
            .map(|((day, member), sums)| {
                let (slot, member) = members[member as usize];
                ((day, slot, member), sums)
            })
    }

    /// A logical time's member changes `(source, slot, member, diff)`: the events so
    /// far of each changed source move by `diff`, then the members change.
    fn move_members(&mut self, changes: &[(Source, Slot, Option<Name>, isize)]) {
        let mut moved_items: FxHashMap<Id, Vec<(MemberIx, i64)>> = FxHashMap::default();
        for &(source, slot, member, diff) in changes {
            let member = self.member(slot, member);
            match source {
                Source::User(user) => {
                    // A user's events are all in one place: they move at once.
                    let Some(days) = self.users.get_mut(&user) else {
                        continue;
                    };
                    for (day, events) in days {
                        let count = i64::from(events.measures.events) * diff as i64;
                        add_user(&mut events.active, &mut self.out, (*day, member), count);
                        let sums = events.measures.sums().multiply(&diff);
                        add_out(&mut self.out, (*day, member), &sums);
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
                            .push((member, diff as i64));
                    }
                }
            }
        }
        // Only an item with events here before this time needs every user's events: a
        // late catalogue row, or the first `items/` row of all. An item used for the
        // first time has none.
        if !moved_items.is_empty() {
            for days in self.users.values_mut() {
                for (day, events) in days.iter_mut() {
                    let UserDay { items, active, .. } = events;
                    for (item, measures) in items.iter() {
                        for &(member, diff) in moved_items.get(item).into_iter().flatten() {
                            let slice = (*day, member);
                            add_user(
                                active,
                                &mut self.out,
                                slice,
                                i64::from(measures.events) * diff,
                            );
                            let sums = measures.sums().multiply(&(diff as isize));
                            add_out(&mut self.out, slice, &sums);
                        }
                    }
                }
            }
        }
        for &(source, slot, member, diff) in changes {
            let member = self.member(slot, member);
            let state = self.sources.entry(source).or_default();
            let members = &mut state.members;
            match members.iter().position(|m| m.0 == member) {
                Some(at) => {
                    members[at].1 += diff as i64;
                    if members[at].1 == 0 {
                        members.swap_remove(at);
                    }
                }
                None => members.push((member, diff as i64)),
            }
            if state.is_empty() {
                self.sources.remove(&source);
            }
        }
    }

    /// A logical time's accepted events (`diff` +1, or -1 when retired or taken back),
    /// one user after another, in time order.
    fn add_events(&mut self, plan: &SlicePlan, events: &mut [(Action, isize)]) {
        sort_by_user(events, &mut self.sorting);
        let mut item_members = std::mem::take(&mut self.item_members);
        if plan.by_item {
            self.item_members(events, &mut item_members);
        }
        let mut next = 0;
        for run in events.chunk_by(|a, b| a.0.user_id == b.0.user_id) {
            let user = run[0].0.user_id;
            let days = self.users.entry(user).or_default();
            // Room for the run's new days at once: one allocation, not a doubling
            // vector shrunk again after every time.
            let new_days = run
                .chunk_by(|a, b| day_of(a.0.ts) == day_of(b.0.ts))
                .filter(|day_run| {
                    let day = day_of(day_run[0].0.ts);
                    days.binary_search_by_key(&day, |(d, _)| *d).is_err()
                })
                .count();
            days.reserve_exact(new_days);
            for day_run in run.chunk_by(|a, b| day_of(a.0.ts) == day_of(b.0.ts)) {
                let day = day_of(day_run[0].0.ts);
                let at = day_at(days, day);
                // The day's lists are worked on in the scratch day, whose room is
                // kept from run to run, and stored back in exactly the room they need.
                let held = &mut days[at].1;
                let work = &mut self.scratch;
                work.measures = held.measures;
                work.items.clear();
                work.items.extend_from_slice(&held.items);
                work.active.clear();
                work.active.extend_from_slice(&held.active);
                for (event, diff) in day_run {
                    add_event(
                        plan,
                        self.hours.as_ref(),
                        item_members.get(next).map(|m| &m[..]),
                        &self.sources,
                        work,
                        &mut self.out,
                        day,
                        event,
                        *diff,
                    );
                    next += 1;
                }
                held.measures = work.measures;
                store_exactly(&mut held.items, &work.items);
                store_exactly(&mut held.active, &work.active);
                if held.is_empty() {
                    days.remove(at);
                }
            }
            if days.is_empty() {
                self.users.remove(&user);
            } else if days.capacity() > days.len() + days.len() / 4 {
                // Days taken back (a retraction): give their room back.
                days.shrink_to_fit();
            }
        }
        self.item_members = item_members;
    }

    /// Counts each of a time's events under its item's source and puts the item's
    /// members, event by event, in `members`. Every event looks its item up in
    /// `sources`, a map too large for the core's cache: here the lookups depend on
    /// nothing but the events, so the core overlaps their misses, where inside
    /// [`add_event`] each waited for the work before it.
    fn item_members(&mut self, events: &[(Action, isize)], members: &mut Vec<Members>) {
        members.clear();
        members.reserve(events.len());
        for (event, diff) in events {
            let source = event.item_id.map_or(Source::Missing, Source::Item);
            let state = self.sources.entry(source).or_default();
            state.events += *diff as i64;
            members.push(state.members.clone());
            if state.is_empty() {
                self.sources.remove(&source);
            }
        }
        if members.capacity() > 2 * events.len().max(1024) {
            members.shrink_to(events.len());
        }
    }
}

/// How many leading bits of a user's id pick the bucket of [`sort_by_user`].
const SORT_BUCKET_BITS: u32 = 10;

/// Sorts a time's events by (user, time), as `sort_unstable_by_key` would, in two
/// steps: a counting sort into buckets by the leading bits of the user's id (ids are
/// hashes, so the buckets are even), then a sort of each bucket, which fits in cache.
/// A whole-time sort moved every 64-byte event through about 17 levels of partitions,
/// a tenth of this operator's time. `room` keeps its allocation from time to time.
fn sort_by_user(events: &mut [(Action, isize)], room: &mut Vec<(Action, isize)>) {
    let key = |(event, _): &(Action, isize)| (event.user_id, event.ts);
    let bucket = |(event, _): &(Action, isize)| {
        (event.user_id.id() >> (u64::BITS - SORT_BUCKET_BITS)) as usize
    };
    if events.len() < 4 << SORT_BUCKET_BITS {
        events.sort_unstable_by_key(key);
        return;
    }
    // Where each bucket starts.
    let mut starts = vec![0usize; (1 << SORT_BUCKET_BITS) + 1];
    for event in events.iter() {
        starts[bucket(event) + 1] += 1;
    }
    for b in 1..starts.len() {
        starts[b] += starts[b - 1];
    }
    room.clear();
    room.extend_from_slice(events);
    let mut next = starts.clone();
    for event in room.iter() {
        let b = bucket(event);
        events[next[b]] = *event;
        next[b] += 1;
    }
    for range in starts.windows(2) {
        events[range[0]..range[1]].sort_unstable_by_key(key);
    }
    if room.capacity() > 2 * events.len() {
        *room = Vec::new();
    } else {
        room.clear();
    }
}

/// Replaces the contents of `list` with `contents`, in the room it has if that is
/// enough and at most a quarter more, else in a new allocation of exactly the room
/// needed: a list changed by a time costs at most one allocation, and keeps little
/// spare room.
fn store_exactly<T: Copy>(list: &mut Vec<T>, contents: &[T]) {
    let room = list.capacity();
    if contents.len() <= room && room <= contents.len() + contents.len() / 4 {
        list.clear();
        list.extend_from_slice(contents);
    } else {
        *list = contents.to_vec();
    }
}

/// Adds one event (`diff` times) of a user on `day` (whose events of the day are
/// `events`), whose item has `item_members` when some dimension reads the item (its
/// source already counted, see [`State::item_members`]), to the state, and its slices
/// to `out`.
#[allow(clippy::too_many_arguments)]
fn add_event(
    plan: &SlicePlan,
    hours: Option<&[MemberIx; 24]>,
    item_members: Option<&[(MemberIx, i64)]>,
    sources: &FxHashMap<Source, SourceState>,
    events: &mut UserDay,
    out: &mut FxHashMap<(i32, MemberIx), Sums>,
    day: i32,
    event: &Action,
    diff: isize,
) {
    let sums = Sums::event(event.duration_ms.into(), event.value()).multiply(&diff);
    if let Some(hours) = hours {
        let hour = (event.ts.rem_euclid(86_400_000) / 3_600_000) as usize;
        add_user(&mut events.active, out, (day, hours[hour]), diff as i64);
        add_out(out, (day, hours[hour]), &sums);
    }
    if let Some(members) = item_members {
        add_to_list(
            &mut events.items,
            Id::of(event.item_id),
            &Measures::of(&sums),
        );
        add_slices(members, &mut events.active, out, day, diff, &sums);
    }
    if plan.by_user {
        events.measures.plus_equals(&Measures::of(&sums));
        if let Some(state) = sources.get(&Source::User(event.user_id)) {
            add_slices(&state.members, &mut events.active, out, day, diff, &sums);
        }
    }
}

/// Adds an event (`diff` times, with `sums`) of a user whose active members of the
/// day are `active` to its slices of `day` under `members`.
fn add_slices(
    members: &[(MemberIx, i64)],
    active: &mut Vec<(MemberIx, i32)>,
    out: &mut FxHashMap<(i32, MemberIx), Sums>,
    day: i32,
    diff: isize,
    sums: &Sums,
) {
    for &(member, times) in members {
        add_user(active, out, (day, member), diff as i64 * times);
        add_out(out, (day, member), &sums.multiply(&(times as isize)));
    }
}

/// Adds `sums` to a slice's change in the time's output. A change that returns to
/// zero stays until [`State::drain_out`] skips it: the output is summed, not kept.
#[inline]
fn add_out(out: &mut FxHashMap<(i32, MemberIx), Sums>, slice: (i32, MemberIx), sums: &Sums) {
    out.entry(slice).or_default().plus_equals(sums);
}

/// Adds `diff` events to one user's (day, member): a user who gains their first event
/// there (or loses their last) adds (or takes) one active user.
fn add_user(
    active: &mut Vec<(MemberIx, i32)>,
    out: &mut FxHashMap<(i32, MemberIx), Sums>,
    slice: (i32, MemberIx),
    diff: i64,
) {
    let users = match add_to_list(active, slice.1, &(diff as i32)) {
        (false, true) => 1,
        (true, false) => -1,
        _ => return,
    };
    add_out(out, slice, &Sums::users(users));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_per_user_and_per_day_entries_are_compact() {
        assert_eq!(std::mem::size_of::<(Id, Measures)>(), 40);
        assert_eq!(std::mem::size_of::<(MemberIx, i32)>(), 8);
        assert_eq!(std::mem::size_of::<(i32, UserDay)>(), 88);
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
            let mut measures = Measures::default();
            measures.plus_equals(&Measures::of(&sums));
            assert_eq!(measures.sums(), sums);
        }
        // A day's item entry leaves its list when its events cancel out.
        let sums = Sums::event(1_500, Some(-7 << 32));
        let mut items = Vec::new();
        add_to_list(&mut items, Id::of(None), &Measures::of(&sums.multiply(&2)));
        assert_eq!(items[0].1.sums(), sums.multiply(&2));
        add_to_list(&mut items, Id::of(None), &Measures::of(&sums.multiply(&-2)));
        assert!(items.is_empty());
    }

    #[test]
    fn sorting_by_user_equals_a_plain_sort() {
        let mut next = crate::test_numbers(11);
        let mut room = Vec::new();
        for size in [0, 3, 5000, 20_000] {
            let mut events: Vec<(Action, isize)> = (0..size)
                .map(|_| {
                    let user = Name::new(&format!("u{}", next(3000)));
                    (Action::for_test(user, next(1_000_000) as i64), 1)
                })
                .collect();
            let mut expected = events.clone();
            expected.sort_by_key(|(e, _)| (e.user_id, e.ts));
            sort_by_user(&mut events, &mut room);
            let keys = |v: &[(Action, isize)]| -> Vec<(Name, i64)> {
                v.iter().map(|(e, _)| (e.user_id, e.ts)).collect()
            };
            assert_eq!(keys(&events), keys(&expected), "{size} events");
            let mut sorted = events.clone();
            sorted.sort();
            expected.sort();
            assert_eq!(sorted, expected, "the same events");
        }
    }

    #[test]
    fn a_users_days_stay_sorted() {
        let mut days = UserDays::new();
        for day in [5, 3, 5, 8, 4] {
            let at = day_at(&mut days, day);
            assert_eq!(days[at].0, day);
        }
        assert_eq!(
            days.iter().map(|(d, _)| *d).collect::<Vec<_>>(),
            [3, 4, 5, 8]
        );
    }
}
