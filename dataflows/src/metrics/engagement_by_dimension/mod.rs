//! Engagement by dimension (contract `engagement_by_dimension`: per "day, dimension,
//! member: active_users, events, total_duration_ms (null durations count 0),
//! avg_value (mean of non-null `value`; null when none)", see "Dimensions").
//!
//! Every accepted event has one member per dimension: its UTC hour for `hour_of_day`,
//! the `genre` or `artist_id` of the latest `items/` row of its item for `genre` and
//! `artist`, the user's latest `users/` row's `country` for `country`. An hour's member
//! never changes, so those events go straight to their member. Other members are not
//! copied into the events: each event is keyed by the *source* of its member (its item,
//! its user), and one hash total per (dimension, source) resolves the member. A late
//! `items/` or `users/` row then changes one source's member, and the join moves that
//! source's aggregates from the old member to the new one.
//!
//! Dimensions of one kind of source share its state: `genre` and `artist` both read
//! the item, `country` and every user attribute the user. The members of the sources
//! some event uses are broadcast to every worker, and [`slices`] joins each worker's
//! events with them where the events are, counting the distinct active users there
//! too. Measures are kept in the update's difference (values in fixed point,
//! [`VALUE_SCALE`], so sums are exact and rows consolidate), and one hash sum per
//! (day, dimension, member) adds up the measures and the active users of every worker
//! (no join of two totals).

use differential_dataflow::difference::{IsZero, Multiply, Semigroup};
use differential_dataflow::VecCollection;
use serde::{Deserialize, Serialize};
use tidemark_records::records::{Item, UserRow};
use tidemark_records::time::day_of;

use crate::model::action::{Action, ActionsByUser};
use crate::model::name::Name;
use crate::model::plans::Arrival;
use crate::model::settings::{Dimension, Dimensions};
use crate::model::tables::{col, opt, Cell, ColumnType, TableRow, TableSpec};
use crate::operators::combine::combine_map;
use crate::operators::expiry::{day_end, drop_closed, retire_behind, Watermarks};
use crate::operators::gate::Time;
use crate::operators::totals::{totals_by_hash, Bag, HashTotals, TotalOutput};

mod slices;
use slices::{slices, SlicePlan};

/// Fixed-point scale of event values: a value `v` is held as `round(v * 2^32)`, so a
/// mean is exact to about 1e-10 and sums are integers.
pub const VALUE_SCALE: f64 = 4_294_967_296.0;

/// Where an event's member of one dimension comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
enum Source {
    /// The event's item.
    Item(Name),
    /// The event's user.
    User(Name),
    /// No source (an event without an item): the null member.
    Missing,
}

/// The kind of source a dimension's members come from; dimensions of one kind share
/// its state.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Hour,
    Item,
    User,
}

fn kind(dimension: Dimension) -> Kind {
    match dimension {
        Dimension::HourOfDay => Kind::Hour,
        Dimension::Genre | Dimension::Artist => Kind::Item,
        Dimension::Country | Dimension::Attribute(_) => Kind::User,
    }
}

impl Source {
    fn kind(self) -> Kind {
        match self {
            Source::Item(_) | Source::Missing => Kind::Item,
            Source::User(_) => Kind::User,
        }
    }
}

/// What `DimensionMembers` keeps one source's facts under: an item (or the missing
/// item) once for both of its dimensions, a user once for each user dimension. An
/// item's catalogue row gives its genre and its artist together, so one key and one
/// fact hold both (the whole catalogue stays in this state, used or not: an event may
/// name any item later; a key per dimension and item held it twice).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
enum FactKey {
    /// An item's `genre` and `artist`.
    Item(Source),
    /// A user's member of one user dimension.
    User(Dimension, Source),
}

/// The members one fact gives: an item's genre and artist, in that order, or a user's
/// member of its [`FactKey::User`] dimension (first; the second is `None`).
type FactMembers = [Option<Name>; 2];

/// What resolves one [`FactKey`]'s members, held in the difference of its updates so
/// that one hash total per key keeps it (a few words; a reduce kept vectors of its
/// inputs and of its output, 180 bytes a source at 10M events): how many accepted
/// events use the source (nonzero: some does), and its facts, the catalogue or user
/// rows that give it members (their arrival and members, null allowed), with their
/// multiplicities. Differential sums the pair field by field.
type MemberFacts = (isize, Bag<(Arrival, FactMembers)>);

/// One accepted event's use of a source.
fn source_used() -> MemberFacts {
    (1, Bag::default())
}

/// One row that gives a source `members`, arrived at `arrival`.
fn member_fact(arrival: Arrival, members: FactMembers) -> MemberFacts {
    (0, Bag::one((arrival, members)))
}

/// The member of every (dimension, source) some accepted event uses, for the
/// `dimensions` in force: that of its latest fact (the null member when it has none,
/// or for [`Source::Missing`]).
struct LatestMember(Dimensions);

impl TotalOutput<FactKey, MemberFacts> for LatestMember {
    type Out = ((Dimension, Source), Option<Name>);
    fn output(
        &mut self,
        key: &FactKey,
        (used, facts): &MemberFacts,
        out: &mut Vec<(Self::Out, isize)>,
    ) {
        if *used == 0 {
            return;
        }
        let latest = || facts.iter().map(|(fact, _)| *fact).max();
        match *key {
            FactKey::Item(source) => {
                let members = match source {
                    Source::Missing => None,
                    Source::Item(_) | Source::User(_) => latest().map(|(_, members)| members),
                };
                for (at, dimension) in [Dimension::Genre, Dimension::Artist]
                    .into_iter()
                    .enumerate()
                {
                    if self.0.contains(dimension) {
                        let member = members.and_then(|members| members[at]);
                        out.push((((dimension, source), member), 1));
                    }
                }
            }
            FactKey::User(dimension, source) => {
                let member = latest().and_then(|(_, members)| members[0]);
                out.push((((dimension, source), member), 1));
            }
        }
    }
}

/// A dimension's place among the `dimensions` in force: the slices' keys carry it
/// instead of the [`Dimension`] (1 byte, not 16), so a (day, slot, member) is 16 bytes.
type Slot = u8;

fn slot(dimensions: Dimensions, dimension: Dimension) -> Slot {
    dimensions
        .iter()
        .position(|d| d == dimension)
        .expect("a member's dimension is in force") as Slot
}

fn dimension_at(dimensions: Dimensions, slot: Slot) -> Dimension {
    dimensions
        .iter()
        .nth(slot as usize)
        .expect("a slot names a dimension in force")
}

/// What a (day, dimension, member) sums, held in the differences of its updates:
/// events, their duration (ms), value sum (fixed point) and how many had a value, and
/// active users. 48 bytes; only the value sum needs 128 bits.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
struct Sums {
    events: i64,
    duration: i64,
    value_sum: i128,
    values: i64,
    users: i64,
}

impl Sums {
    /// The measures of one event.
    fn event(duration: i64, value: Option<i64>) -> Sums {
        Sums {
            events: 1,
            duration,
            value_sum: value.map_or(0, i128::from),
            values: i64::from(value.is_some()),
            users: 0,
        }
    }

    /// `users` active users.
    fn users(users: i64) -> Sums {
        Sums {
            users,
            ..Sums::default()
        }
    }
}

impl IsZero for Sums {
    fn is_zero(&self) -> bool {
        *self == Sums::default()
    }
}

impl Semigroup for Sums {
    fn plus_equals(&mut self, rhs: &Self) {
        self.events += rhs.events;
        self.duration += rhs.duration;
        self.value_sum += rhs.value_sum;
        self.values += rhs.values;
        self.users += rhs.users;
    }
}

/// A multiplicity times the sums (a member change moves a source's sums by it; a
/// retracted event by -1).
impl Multiply<isize> for Sums {
    type Output = Sums;
    fn multiply(self, rhs: &isize) -> Sums {
        let k = *rhs as i64;
        Sums {
            events: self.events * k,
            duration: self.duration * k,
            value_sum: self.value_sum * i128::from(k),
            values: self.values * k,
            users: self.users * k,
        }
    }
}

/// The `engagement_by_dimension` table for the `dimensions` in force. With `forget`, a
/// day's rows stop changing once the watermark passes its end (a late catalogue or user
/// row then moves only the open days' events), and the state of closed days is dropped.
pub fn engagement_by_dimension<'s>(
    events: ActionsByUser<'s>,
    users: VecCollection<'s, Time, (UserRow, Arrival)>,
    items: VecCollection<'s, Time, (Item, Arrival)>,
    dimensions: Dimensions,
    watermarks: &Watermarks<'s>,
    forget: bool,
) -> VecCollection<'s, Time, DimensionRow> {
    // With `forget` (setting `forget_behind_watermark`), a closed day's events are
    // retired, so every per-day state below empties, and its rows stay as they were.
    let events = if forget {
        events.keep_partitioned(|events| {
            retire_behind(events, watermarks, |e: &Action| Some(day_end(day_of(e.ts))))
        })
    } else {
        events
    };
    // Each event once per kind of source its dimensions need (its item, its user):
    // dimensions of one kind share the state. An hour's member never changes, so
    // `hour_of_day` needs no source and no member join.
    let wants = |k: Kind| dimensions.iter().any(|d| kind(d) == k);
    let plan = SlicePlan {
        by_item: wants(Kind::Item),
        by_user: wants(Kind::User),
        hour: wants(Kind::Hour).then(|| {
            let names = std::array::from_fn(|hour| Name::new(&format!("{hour:02}")));
            (slot(dimensions, Dimension::HourOfDay), names)
        }),
    };
    let (by_item, by_user) = (plan.by_item, plan.by_user);
    // The sources the events use, counted on each worker before the exchange.
    let sources = combine_map(events.collection(), "CombineDimensionSources", move |e| {
        let item = e.item_id.map_or(Source::Missing, Source::Item);
        [(by_item, item), (by_user, Source::User(e.user_id))]
            .into_iter()
            .filter(|(wanted, _)| *wanted)
            .map(|(_, source)| source)
    });

    // The member of every source some event uses.
    let facts = items
        .clone()
        .flat_map(move |(item, arrival)| {
            let key = FactKey::Item(Source::Item(Name::new(&item.item_id)));
            let genre = item.genre.as_deref().map(Name::new);
            let artist = item.artist_id.as_deref().map(Name::new);
            by_item.then(|| (key, member_fact(arrival, [genre, artist])))
        })
        .concat(users.clone().flat_map(move |(user, arrival)| {
            let id = Source::User(Name::new(&user.user_id));
            let members: Vec<_> = dimensions
                .iter()
                .filter_map(|dimension| {
                    let member = match dimension {
                        Dimension::Country => user.country.as_deref(),
                        Dimension::Attribute(name) => user
                            .attributes
                            .iter()
                            .find(|(attribute, _)| **attribute == *name.text())
                            .and_then(|(_, value)| value.as_deref()),
                        _ => return None,
                    };
                    let fact = member_fact(arrival, [member.map(Name::new), None]);
                    Some((FactKey::User(dimension, id), fact))
                })
                .collect();
            members
        }));
    // Every dimension that reads a source, for each source some event uses. The
    // sources are made distinct first: a source's `Used` input then changes once, when
    // it first appears, not with every batch that changes its measures (the member
    // reduce would otherwise revisit every busy item and user at every logical time).
    let used = sources
        .threshold_by_hash(|_source, events| isize::from(*events > 0))
        .flat_map(move |source| {
            let item = (source.kind() == Kind::Item).then_some(FactKey::Item(source));
            let user = dimensions
                .iter()
                .filter(move |d| source.kind() == Kind::User && kind(*d) == Kind::User)
                .map(move |d| FactKey::User(d, source));
            item.into_iter().chain(user).map(|key| (key, source_used()))
        });
    // A dimension whose source table has no row yet (no `items/` row for `genre` and
    // `artist`, no `users/` row for `country` and the user attributes) produces no rows:
    // its members wait for the first row. Members change rarely (once per source, and
    // with a late catalogue or user row), so the gate sits here, not on the table's rows.
    let sourced = items
        .map(|_| ())
        .distinct_by_hash()
        .flat_map(|()| [Dimension::Genre, Dimension::Artist])
        .concat(
            users
                .map(|_| ())
                .distinct_by_hash()
                .flat_map(move |()| dimensions.iter().filter(|d| kind(*d) == Kind::User)),
        )
        .map(|dimension| (dimension, ()));
    let members = totals_by_hash(
        used.concat(facts)
            .explode(|(key, facts)| Some((key, facts))),
        LatestMember(dimensions),
        "DimensionMembers",
    )
    .map(|((dimension, source), member)| (dimension, (source, member)))
    .join_map(sourced, move |&dimension, &(source, member), &()| {
        (source, (slot(dimensions, dimension), member))
    });
    // Each worker's slices of its users' events, summed per (day, dimension, member).
    let table =
        slices(events, members, plan)
            .count_by_hash()
            .map(move |((day, slot, member), sums)| DimensionRow {
                day,
                dimension: dimension_at(dimensions, slot),
                member,
                active_users: sums.users,
                events: sums.events,
                duration_ms: sums.duration,
                value_sum: sums.value_sum,
                values: sums.values,
            });
    if forget {
        drop_closed(table, watermarks, |row| Some(day_end(row.day)))
    } else {
        table
    }
}

/// `engagement_by_dimension`: day x dimension x member (contract "Dimensions"), with
/// `value_count` (how many events had a value) beyond the contract, so that means
/// re-aggregate exactly over several days.
pub const ENGAGEMENT_BY_DIMENSION: TableSpec = TableSpec {
    name: "engagement_by_dimension",
    columns: &[
        col("day", ColumnType::Date),
        col("dimension", ColumnType::Str),
        opt("member", ColumnType::Str),
        col("active_users", ColumnType::Int),
        col("events", ColumnType::Int),
        col("total_duration_ms", ColumnType::Int),
        opt("avg_value", ColumnType::Float),
        col("value_count", ColumnType::Int),
    ],
    key_len: 3,
};

/// Engagement of one member of one dimension on one UTC day.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct DimensionRow {
    /// Days since 1970-01-01.
    pub day: i32,
    /// The dimension.
    pub dimension: crate::model::settings::Dimension,
    /// The member; none for events without one.
    pub member: Option<Name>,
    /// Distinct users with an accepted event of the member that day.
    pub active_users: i64,
    /// Accepted events of the member that day.
    pub events: i64,
    /// Their total duration (null durations count 0).
    pub duration_ms: i64,
    /// Sum of their non-null values, in fixed point ([`crate::metrics::engagement_by_dimension::VALUE_SCALE`]).
    pub value_sum: i128,
    /// How many of them have a value.
    pub values: i64,
}

impl TableRow for DimensionRow {
    const SPEC: TableSpec = ENGAGEMENT_BY_DIMENSION;
    fn cells(&self) -> Vec<Cell> {
        let avg = (self.values > 0).then(|| {
            self.value_sum as f64
                / crate::metrics::engagement_by_dimension::VALUE_SCALE
                / self.values as f64
        });
        vec![
            Cell::Date(self.day),
            Cell::Str(self.dimension.name().into()),
            self.member.map_or(Cell::Null, |m| Cell::Str(m.text())),
            Cell::Int(self.active_users),
            Cell::Int(self.events),
            Cell::Int(self.duration_ms),
            Cell::opt_float(avg),
            Cell::Int(self.values),
        ]
    }
}

#[cfg(test)]
#[test]
fn a_slice_is_16_bytes_and_sums_48() {
    assert_eq!(std::mem::size_of::<slices::Slice>(), 16);
    assert_eq!(std::mem::size_of::<Sums>(), 48);
}

/// A source's members are those of its latest fact while some event uses it, whatever
/// order its facts and uses come and go in: the sum of its updates, as the hash total
/// keeps it, against the facts and uses kept one by one.
#[cfg(test)]
#[test]
fn a_sources_member_is_its_latest_facts_while_used() {
    let mut next = crate::test_numbers(23);
    let item = Source::Item(Name::new("t1"));
    let user = Source::User(Name::new("u1"));
    let names = [None, Some(Name::new("pop")), Some(Name::new("rock"))];
    let dimensions =
        Dimensions::of(&[Dimension::Genre, Dimension::Artist, Dimension::Country]).unwrap();
    for case in 0..1000 {
        let key = if case % 2 == 0 {
            FactKey::Item(item)
        } else {
            FactKey::User(Dimension::Country, user)
        };
        let mut total = MemberFacts::default();
        let (mut used, mut facts) = (0isize, Vec::new());
        for _ in 0..1 + next(8) {
            let diff = if next(4) == 0 { -1 } else { 1 } * (1 + next(2) as isize);
            if next(2) == 0 {
                total.plus_equals(&source_used().multiply(&diff));
                used += diff;
            } else {
                let members = [names[next(3) as usize], names[next(3) as usize]];
                let fact = ((next(3), next(2)), members);
                total.plus_equals(&member_fact(fact.0, fact.1).multiply(&diff));
                facts.extend(
                    std::iter::repeat_n(fact, diff.unsigned_abs()).map(|f| (f, diff.signum())),
                );
            }
        }
        let mut counted: std::collections::BTreeMap<_, isize> = Default::default();
        for (fact, sign) in facts {
            *counted.entry(fact).or_default() += sign;
        }
        counted.retain(|_, n| *n != 0);
        // The latest row's members, by arrival (one row per arrival in the data;
        // here ties go to the larger members, as the hash total's maximum does).
        let latest = counted.keys().max().map(|(_, members)| *members);
        let expected: Vec<_> = match key {
            FactKey::Item(source) => [Dimension::Genre, Dimension::Artist]
                .into_iter()
                .enumerate()
                .map(|(at, d)| ((d, source), latest.and_then(|m| m[at])))
                .collect(),
            FactKey::User(d, source) => vec![((d, source), latest.and_then(|m| m[0]))],
        };
        let expected = if used != 0 { expected } else { Vec::new() };
        let mut out = Vec::new();
        LatestMember(dimensions).output(&key, &total, &mut out);
        let ours: Vec<_> = out.into_iter().map(|(row, _)| row).collect();
        assert_eq!(ours, expected, "case {case}");
        assert_eq!(
            total.is_zero(),
            used == 0 && counted.is_empty(),
            "case {case}"
        );
    }
}
