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
use crate::operators::state_sizes::{self, ReportOnce};
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
                let mut report = ReportOnce::default();
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
                    if report.due(events_frontier.frontier().is_empty()) {
                        state.report();
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

/// An item (or the missing item) on this worker, by an index its [`SourceState`] holds
/// while it has events or members here: a user's day lists its items by this 4-byte
/// index, not the 8-byte name. An index is given back at the end of the time whose
/// events leave its item none here (no day lists it then), for a later item to reuse.
type ItemIx = u32;

/// What a user's source holds in place of an [`ItemIx`].
const NOT_AN_ITEM: ItemIx = ItemIx::MAX;

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

/// The measures of one user's events of one day on one item, in 24 bytes at 4-byte
/// alignment (so that an entry with its [`ItemIx`] takes 28, where [`Measures`] took
/// 40): the duration in 64 bits (32-bit durations of at most 2^31 events), the value
/// sum's low 64 bits, exact with [`State::wide`] (see [`add_item`]). Items are most of
/// this operator's state: about one entry per accepted event.
#[derive(Clone, Copy, Default, PartialEq, Eq)]
struct ItemMeasures {
    events: i32,
    values: i32,
    duration: [u32; 2],
    value_sum: [u32; 2],
}

/// A 64-bit integer from two 32-bit halves (high first): the fields of
/// [`ItemMeasures`], which keep it at 4-byte alignment.
fn join_halves(halves: [u32; 2]) -> i64 {
    ((u64::from(halves[0]) << 32) | u64::from(halves[1])) as i64
}

/// The two 32-bit halves of a 64-bit integer, high first.
fn halves(value: i64) -> [u32; 2] {
    [((value as u64) >> 32) as u32, value as u32]
}

impl ItemMeasures {
    fn is_zero(&self) -> bool {
        *self == ItemMeasures::default()
    }

    /// The measures with the value sum `value_sum` (the low 64 bits kept here with
    /// their correction in [`State::wide`]).
    fn sums(&self, value_sum: i128) -> Sums {
        Sums {
            events: self.events.into(),
            duration: join_halves(self.duration),
            value_sum,
            values: self.values.into(),
            users: 0,
        }
    }
}

/// A user's (day, item) whose value sum does not fit 64 bits: what to add to its
/// entry's low 64 bits (read as a signed number) to make the exact sum.
type WideKey = (Name, i32, ItemIx);

/// One user's events of one day on this worker (counts fit 32 bits: 2^31 accepted
/// events of one user would take 32 GiB in the deduplication's id set alone): their
/// measures (what a change of the user's members moves), those of each item (what a
/// change of an item's members moves), and how many each (dimension, member) has
/// (nonzero: the user is active there). A user has a few items and members a day, so
/// short lists, searched in place, hold them in a few cache lines.
#[derive(Default)]
struct UserDay {
    measures: Measures,
    items: Vec<(ItemIx, ItemMeasures)>,
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
/// here (whether a member change must look for them) and its [`ItemIx`].
struct SourceState {
    members: Members,
    events: i64,
    item: ItemIx,
}

impl SourceState {
    fn is_empty(&self) -> bool {
        self.members.is_empty() && self.events == 0
    }
}

/// The sources on this worker by name, and the item indexes free for reuse.
#[derive(Default)]
struct Sources {
    map: FxHashMap<Source, SourceState>,
    /// Indexes of items that left before this time.
    free: Vec<ItemIx>,
    /// Indexes of items that left during this time, which some days may still list
    /// until the time's events are in.
    leaving: Vec<ItemIx>,
    /// The next index never given (indexes are reused, so there are at most as many as
    /// items with events or members here at once).
    next: ItemIx,
}

impl Sources {
    fn get(&self, source: &Source) -> Option<&SourceState> {
        self.map.get(source)
    }

    /// A source's state, made (with an item index for an item) if new.
    fn entry(&mut self, source: Source) -> &mut SourceState {
        let Sources {
            map, free, next, ..
        } = self;
        map.entry(source).or_insert_with(|| {
            let item = match source {
                Source::User(_) => NOT_AN_ITEM,
                Source::Item(_) | Source::Missing => free.pop().unwrap_or_else(|| {
                    *next += 1;
                    *next - 1
                }),
            };
            SourceState {
                members: Members::new(),
                events: 0,
                item,
            }
        })
    }

    /// Forgets a source with neither members nor events here.
    fn remove(&mut self, source: &Source) {
        if let Some(state) = self.map.remove(source) {
            if state.item != NOT_AN_ITEM {
                self.leaving.push(state.item);
            }
        }
    }

    /// The end of a time's events: the indexes of the items that left are free.
    fn end_time(&mut self) {
        self.free.append(&mut self.leaving);
    }
}

/// One worker's state: by user, by source, every (dimension, member) seen here by
/// index, and the output of the time being summed, per (day, member index). Each event
/// touches its user's day, which stays in cache while the user's events of a time are
/// taken one after the other.
#[derive(Default)]
struct State {
    users: FxHashMap<Name, UserDays>,
    sources: Sources,
    /// The exact value sums of the few (user, day, item)s whose sum does not fit an
    /// item entry's 64 bits: what to add to its low 64 bits (see [`add_item`]).
    wide: FxHashMap<WideKey, i128>,
    members: Vec<(Slot, Option<Name>)>,
    member_index: FxHashMap<(Slot, Option<Name>), MemberIx>,
    /// The member index of each hour of the day, when `hour_of_day` is in force.
    hours: Option<[MemberIx; 24]>,
    out: FxHashMap<(i32, MemberIx), Sums>,
    /// The changes of the (user, day) being added to, summed per member before they
    /// go to `out` (see [`DayChanges`]).
    day_changes: DayChanges,
    /// The day being added to (see [`State::add_events`]), whose lists keep their room.
    scratch: UserDay,
    /// Room for a time's events while [`sort_by_user`] distributes them.
    sorting: Vec<(Action, isize)>,
    /// The index and members of each of a time's events' items (see
    /// [`State::item_members`]).
    item_members: Vec<(ItemIx, Members)>,
}

impl State {
    fn new(plan: &SlicePlan) -> State {
        let mut state = State::default();
        if let Some((slot, names)) = &plan.hour {
            state.hours = Some(names.map(|name| state.member(*slot, Some(name))));
        }
        state
    }

    /// Prints the state's size (see [`state_sizes`]): users, their days, and the
    /// bytes of the days' item and member lists.
    fn report(&self) {
        let (mut days, mut items, mut active, mut bytes) = (0, 0, 0, 0);
        for user_days in self.users.values() {
            days += user_days.len();
            bytes += user_days.capacity() * std::mem::size_of::<(i32, UserDay)>();
            for (_, day) in user_days {
                items += day.items.len();
                active += day.active.len();
                bytes += day.items.capacity() * std::mem::size_of::<(ItemIx, ItemMeasures)>()
                    + day.active.capacity() * std::mem::size_of::<(MemberIx, i32)>();
            }
        }
        let entry = std::mem::size_of::<(Name, UserDays)>();
        state_sizes::report(
            &format!(
                "DimensionSlices ({days} user days, {items} item entries, {active} member \
                 entries; {} sources)",
                self.sources.map.len()
            ),
            self.users.len(),
            self.users.capacity(),
            entry,
            Some(bytes),
        );
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
        let mut moved_items: FxHashMap<ItemIx, Vec<(MemberIx, i64)>> = FxHashMap::default();
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
                        self.out.add((*day, member), &sums);
                    }
                }
                Source::Item(_) | Source::Missing => {
                    if let Some(state) = self.sources.get(&source).filter(|s| s.events != 0) {
                        moved_items
                            .entry(state.item)
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
            let wide = &self.wide;
            for (user, days) in self.users.iter_mut() {
                for (day, events) in days.iter_mut() {
                    let UserDay { items, active, .. } = events;
                    for (item, measures) in items.iter() {
                        let Some(moves) = moved_items.get(item) else {
                            continue;
                        };
                        let value_sum = i128::from(join_halves(measures.value_sum))
                            + wide.get(&(*user, *day, *item)).copied().unwrap_or(0);
                        let sums = measures.sums(value_sum);
                        for &(member, diff) in moves {
                            let slice = (*day, member);
                            add_user(
                                active,
                                &mut self.out,
                                slice,
                                i64::from(measures.events) * diff,
                            );
                            self.out.add(slice, &sums.multiply(&(diff as isize)));
                        }
                    }
                }
            }
        }
        for &(source, slot, member, diff) in changes {
            let member = self.member(slot, member);
            let state = self.sources.entry(source);
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
                        item_members.get(next),
                        &self.sources,
                        work,
                        &mut self.wide,
                        &mut self.day_changes,
                        day,
                        event,
                        *diff,
                    );
                    next += 1;
                }
                self.day_changes.drain_into(&mut self.out, day);
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
        self.sources.end_time();
    }

    /// Counts each of a time's events under its item's source and puts the item's
    /// members, event by event, in `members`. Every event looks its item up in
    /// `sources`, a map too large for the core's cache: here the lookups depend on
    /// nothing but the events, so the core overlaps their misses, where inside
    /// [`add_event`] each waited for the work before it.
    fn item_members(&mut self, events: &[(Action, isize)], members: &mut Vec<(ItemIx, Members)>) {
        members.clear();
        members.reserve(events.len());
        for (event, diff) in events {
            let source = event.item_id.map_or(Source::Missing, Source::Item);
            let state = self.sources.entry(source);
            state.events += *diff as i64;
            members.push((state.item, state.members.clone()));
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
/// `events`), whose item has `item_members` (its index and members) when some dimension
/// reads the item (its source already counted, see [`State::item_members`]), to the
/// state, and its slices' changes to the day's changes `out`.
#[allow(clippy::too_many_arguments)]
fn add_event(
    plan: &SlicePlan,
    hours: Option<&[MemberIx; 24]>,
    item_members: Option<&(ItemIx, Members)>,
    sources: &Sources,
    events: &mut UserDay,
    wide: &mut FxHashMap<WideKey, i128>,
    out: &mut DayChanges,
    day: i32,
    event: &Action,
    diff: isize,
) {
    let sums = Sums::event(event.duration_ms.into(), event.value()).multiply(&diff);
    if let Some(hours) = hours {
        let hour = (event.ts.rem_euclid(86_400_000) / 3_600_000) as usize;
        add_user(&mut events.active, out, (day, hours[hour]), diff as i64);
        out.add((day, hours[hour]), &sums);
    }
    if let Some((item, members)) = item_members {
        add_item(&mut events.items, wide, (event.user_id, day, *item), &sums);
        add_slices(members, &mut events.active, out, day, diff, &sums);
    }
    if plan.by_user {
        events.measures.plus_equals(&Measures::of(&sums));
        if let Some(state) = sources.get(&Source::User(event.user_id)) {
            add_slices(&state.members, &mut events.active, out, day, diff, &sums);
        }
    }
}

/// Adds `sums` to a user's (day, item) entry in `items`, which leaves the list when
/// its measures return to zero. The entry keeps the value sum's low 64 bits (wrapping);
/// what the exact sum adds to them, when not zero (a sum beyond 64 bits), is in `wide`
/// under `key`, and an entry with such a part stays.
fn add_item(
    items: &mut Vec<(ItemIx, ItemMeasures)>,
    wide: &mut FxHashMap<WideKey, i128>,
    key: WideKey,
    sums: &Sums,
) {
    let at = match items.iter().position(|(item, _)| *item == key.2) {
        Some(at) => at,
        None => {
            items.push((key.2, ItemMeasures::default()));
            items.len() - 1
        }
    };
    let entry = &mut items[at].1;
    entry.events += sums.events as i32;
    entry.values += sums.values as i32;
    entry.duration = halves(join_halves(entry.duration) + sums.duration);
    let low = join_halves(entry.value_sum);
    let new_low = low.wrapping_add(sums.value_sum as i64);
    entry.value_sum = halves(new_low);
    // What the wrapped low bits missed of the exact change: zero unless a sum leaves
    // (or comes back into) 64 bits.
    let missed = i128::from(low) + sums.value_sum - i128::from(new_low);
    if missed != 0 {
        let part = wide.entry(key).or_default();
        *part += missed;
        if *part == 0 {
            wide.remove(&key);
        }
    }
    if entry.is_zero() && !wide.contains_key(&key) {
        items.swap_remove(at);
    }
}

/// Adds an event (`diff` times, with `sums`) of a user whose active members of the
/// day are `active` to its slices of `day` under `members`.
fn add_slices(
    members: &[(MemberIx, i64)],
    active: &mut Vec<(MemberIx, i32)>,
    out: &mut impl SliceChanges,
    day: i32,
    diff: isize,
    sums: &Sums,
) {
    for &(member, times) in members {
        add_user(active, out, (day, member), diff as i64 * times);
        out.add((day, member), &sums.multiply(&(times as isize)));
    }
}

/// Where a slice's change of sums is added: the time's output, or the changes of the
/// (user, day) being added to.
trait SliceChanges {
    /// Adds `sums` to `slice`'s change.
    fn add(&mut self, slice: (i32, MemberIx), sums: &Sums);
}

impl SliceChanges for FxHashMap<(i32, MemberIx), Sums> {
    /// Adds to the time's output. A change that returns to zero stays until
    /// [`State::drain_out`] skips it: the output is summed, not kept.
    #[inline]
    fn add(&mut self, slice: (i32, MemberIx), sums: &Sums) {
        self.entry(slice).or_default().plus_equals(sums);
    }
}

/// The changes of one user's day, per member, in a short list searched in place
/// ([`add_to_list`]). Each event adds to several members (with the default dimensions its hour, its
/// item's genre and its artist): summed here first, a day's events reach the time's output (a map
/// too large for the core's cache) once per member of the day, not once per event
/// and member.
#[derive(Default)]
struct DayChanges(Vec<(MemberIx, Sums)>);

impl SliceChanges for DayChanges {
    /// Adds to the member's change; the day is the one being added to.
    #[inline]
    fn add(&mut self, (_day, member): (i32, MemberIx), sums: &Sums) {
        add_to_list(&mut self.0, member, sums);
    }
}

impl DayChanges {
    /// Adds the changes to `out` under `day`, emptying them (their room is kept).
    fn drain_into(&mut self, out: &mut FxHashMap<(i32, MemberIx), Sums>, day: i32) {
        for (member, sums) in self.0.drain(..) {
            out.add((day, member), &sums);
        }
    }
}

/// Adds `diff` events to one user's (day, member): a user who gains their first event
/// there (or loses their last) adds (or takes) one active user.
fn add_user(
    active: &mut Vec<(MemberIx, i32)>,
    out: &mut impl SliceChanges,
    slice: (i32, MemberIx),
    diff: i64,
) {
    let users = match add_to_list(active, slice.1, &(diff as i32)) {
        (false, true) => 1,
        (true, false) => -1,
        _ => return,
    };
    out.add(slice, &Sums::users(users));
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn the_per_user_and_per_day_entries_are_compact() {
        assert_eq!(std::mem::size_of::<(ItemIx, ItemMeasures)>(), 28);
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
    }

    /// The exact sums of each (user, day, item), recounted in a map: what an item
    /// entry and its wide part must read.
    fn read_items(
        items: &[(ItemIx, ItemMeasures)],
        wide: &FxHashMap<WideKey, i128>,
        user: Name,
        day: i32,
    ) -> BTreeMap<ItemIx, Sums> {
        items
            .iter()
            .map(|(item, measures)| {
                let low = i128::from(join_halves(measures.value_sum));
                let part = wide.get(&(user, day, *item)).copied().unwrap_or(0);
                (*item, measures.sums(low + part))
            })
            .collect()
    }

    #[test]
    fn item_entries_sum_exactly_beyond_64_bits_and_leave_when_zero() {
        let mut next = crate::test_numbers(5);
        let user = Name::new("u1");
        let huge = [i64::MAX, i64::MIN, i64::MAX - 1, 1, -1, 0, 7 << 40];
        for round in 0..200 {
            let mut items = Vec::new();
            let mut wide = FxHashMap::default();
            let mut expected: BTreeMap<ItemIx, Sums> = BTreeMap::new();
            // Events on a few items, then each taken back in another order: every
            // partial state reads as the recount, and nothing is left at the end.
            let events: Vec<(ItemIx, Sums)> = (0..1 + next(12))
                .map(|_| {
                    let value = (next(4) > 0).then(|| huge[next(huge.len() as u64) as usize]);
                    (next(3) as ItemIx, Sums::event(next(1000) as i64, value))
                })
                .collect();
            let mut order: Vec<(ItemIx, Sums)> = events.clone();
            order.extend(events.iter().rev().map(|(i, s)| (*i, s.multiply(&-1))));
            for (item, sums) in order {
                add_item(&mut items, &mut wide, (user, 3, item), &sums);
                let total = expected.entry(item).or_default();
                total.plus_equals(&sums);
                expected.retain(|_, s| !s.is_zero());
                assert_eq!(
                    read_items(&items, &wide, user, 3),
                    expected,
                    "round {round}"
                );
            }
            assert!(items.is_empty() && wide.is_empty(), "round {round}");
        }
    }

    #[test]
    fn a_days_changes_reach_the_output_as_if_added_one_by_one() {
        let mut next = crate::test_numbers(17);
        for round in 0..100 {
            let day = next(5) as i32;
            let mut direct: FxHashMap<(i32, MemberIx), Sums> = FxHashMap::default();
            let mut summed = direct.clone();
            let mut changes = DayChanges::default();
            for _ in 0..next(40) {
                let member = next(6) as MemberIx;
                let value = (next(3) > 0).then(|| next(100) as i64 - 50);
                let mut sums = Sums::event(next(1000) as i64, value);
                if next(3) == 0 {
                    sums = sums.multiply(&-1);
                }
                direct.add((day, member), &sums);
                changes.add((day, member), &sums);
            }
            changes.drain_into(&mut summed, day);
            direct.retain(|_, sums| !sums.is_zero());
            summed.retain(|_, sums| !sums.is_zero());
            assert_eq!(summed, direct, "round {round}");
            assert!(changes.0.is_empty(), "round {round}");
        }
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
