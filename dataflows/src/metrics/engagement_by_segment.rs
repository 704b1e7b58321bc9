//! Engagement by segment (contract `engagement_by_segment`): per "month, country, plan:
//! active_users, events, total_duration_ms (null durations count 0). Country from
//! `users/`, plan in force at the event's time; a user with no `users/` row has null
//! country and plan". Country is that of the user's latest-arriving `users/` row; the
//! plan is [`PlanHistory::plan_at`] the event's time.
//!
//! A user's plan facts are copied to each month the user is active in, through the
//! shared arrangement of distinct (user, month) pairs, so that one hash total per
//! (user, month) holds every fact that places the month's events. The events reach it
//! as per-day totals: on a day with no plan change the plan in force is one plan all
//! day, so the day's count and duration are all it needs. Only the days on which a
//! `subscriptions/` row changes the user's plan bring their events one by one (a
//! semijoin of the events, kept by (user, day), with those change days). A changed
//! (user, month) thus reads at most a month of day totals, not every event of the
//! month, when the month gains an event. A late event touches one day total; a late
//! `users/` row or plan change touches the user's months. Each (user, month) adds
//! (1 user, events, duration) per segment it reaches, summed per segment by a
//! `count_total` over those triples.

use differential_dataflow::{AsCollection, VecCollection};
use serde::{Deserialize, Serialize};
use smallvec::SmallVec;
use tidemark_records::records::{Millis, Plan, Subscription, UserRow};

use crate::model::action::{user_route, ActionsByUser};
use crate::model::name::Name;
use crate::operators::arrange::arrange_by_key;
use crate::operators::combine::combine;
use crate::operators::semijoin::semijoin_partitioned;
use crate::operators::totals::{totals_by_hash, Bag, HashTotals, TotalOutput};
use tidemark_records::time::{day_of, day_start, month_first_day, month_of_day};
use timely::dataflow::operators::vec::Map as _;

use crate::metrics::retention_cohorts::UserMonths;
use crate::model::plans::{Arrival, PlanFact, PlanHistory};
use crate::model::tables::{col, opt, Cell, ColumnType, TableRow, TableSpec};
use crate::operators::expiry::{drop_closed, month_end, retire_behind, Watermarks};
use crate::operators::gate::Time;

/// What places a user's events in a segment.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
enum UserFact {
    /// A `users/` row: its arrival, country and plan.
    Profile(Arrival, Option<String>, Plan),
    /// A `subscriptions/` row: from `ts`, at this arrival, this plan.
    Change(Millis, Arrival, Plan),
}

/// What places one user's events of one month in segments, held in the difference of
/// its updates so that one hash total per (user, month) keeps it (no reduce's vectors
/// of inputs and output, nor a count per (user, day) before it): each day's accepted
/// events and their total duration (null counts 0; used unless a plan change falls on
/// the day), the events one by one (time and duration) of the days with a plan change,
/// and the user's facts, each with its multiplicity. Differential sums the tuple field
/// by field.
type MonthKnown = (Bag<i32, (isize, isize)>, Bag<(Millis, i64)>, Bag<UserFact>);

/// `events` accepted events on `day`, lasting `duration` ms in all.
fn month_day(day: i32, events: isize, duration: isize) -> MonthKnown {
    (
        Bag::single(day, (events, duration)),
        Bag::default(),
        Bag::default(),
    )
}

/// An accepted event at `ts` lasting `duration` ms, on a day with a plan change.
fn month_event(ts: Millis, duration: i64) -> MonthKnown {
    (Bag::default(), Bag::one((ts, duration)), Bag::default())
}

/// One of the user's facts.
fn month_fact(fact: UserFact) -> MonthKnown {
    (Bag::default(), Bag::default(), Bag::one(fact))
}

/// A (user, month)'s segments: `(month, country, plan, events, duration)` for each plan
/// in force during the month over some of the user's events.
struct Segments;

impl TotalOutput<(Name, i32), MonthKnown> for Segments {
    type Out = (i32, Option<String>, Option<Plan>, i64, i64);
    fn output(
        &mut self,
        &(_user, month): &(Name, i32),
        (days, events, facts): &MonthKnown,
        output: &mut Vec<(Self::Out, isize)>,
    ) {
        // Called for every (user, month) a time touches: the few facts, change days and
        // segments of one user are kept on the stack, not in maps.
        let mut country: Option<(Arrival, &Option<String>)> = None;
        let mut plan_facts: SmallVec<[PlanFact; 4]> = SmallVec::new();
        let mut change_days: SmallVec<[i32; 4]> = SmallVec::new();
        for (fact, _count) in facts.iter() {
            match fact {
                UserFact::Profile(arrival, c, plan) => {
                    if country.is_none_or(|(a, _)| arrival > &a) {
                        country = Some((*arrival, c));
                    }
                    plan_facts.push(PlanFact::Profile(*arrival, *plan));
                }
                UserFact::Change(ts, arrival, plan) => {
                    change_days.push(day_of(*ts));
                    plan_facts.push(PlanFact::Change(*ts, *arrival, *plan))
                }
            }
        }
        let history = PlanHistory::from_facts(&plan_facts);
        let country = country.and_then(|(_, c)| c.as_ref());
        // (plan, events, duration) of each plan in force during the month.
        let mut segments: SmallVec<[(Option<Plan>, i64, i64); 4]> = SmallVec::new();
        let mut add = |plan: Option<Plan>, events: i64, duration: i64| match segments
            .iter_mut()
            .find(|segment| segment.0 == plan)
        {
            Some(segment) => {
                segment.1 += events;
                segment.2 += duration;
            }
            None => segments.push((plan, events, duration)),
        };
        // No plan change falls on the day: the plan at its start holds all day.
        for (day, (events, duration)) in days.iter() {
            if !change_days.contains(day) {
                let plan = history.plan_at(day_start(*day));
                add(plan, *events as i64, *duration as i64);
            }
        }
        for ((ts, duration), count) in events.iter() {
            let count = *count as i64;
            add(history.plan_at(*ts), count, duration * count);
        }
        segments.sort_unstable_by_key(|segment| segment.0);
        for (plan, events, duration) in segments {
            if events > 0 {
                output.push(((month, country.cloned(), plan, events, duration), 1));
            }
        }
    }
}

/// An accepted event of a known (user, day), as the semijoin keeps it for a plan change
/// that may come later: its time since the day's start (27 bits: a day has 86,400,000
/// ms) and its duration (37 bits; readers accept at most 2 hours) in one word, so that
/// an event with its multiplicity takes 16 bytes, not 24.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
struct DayEvent(u64);

impl DayEvent {
    const DURATION_BITS: u32 = 37;

    fn new(since_day_start: Millis, duration: i64) -> DayEvent {
        debug_assert!((0..86_400_000).contains(&since_day_start));
        debug_assert!((0..1 << Self::DURATION_BITS).contains(&duration));
        DayEvent(((since_day_start as u64) << Self::DURATION_BITS) | duration as u64)
    }

    fn since_day_start(self) -> Millis {
        (self.0 >> Self::DURATION_BITS) as Millis
    }

    fn duration(self) -> i64 {
        (self.0 & ((1 << Self::DURATION_BITS) - 1)) as i64
    }
}

/// The `engagement_by_segment` table from the accepted events, the `users/` and
/// `subscriptions/` rows, and an arrangement of distinct (user, month) pairs.
///
/// A plan change may move events of any month, so by default every event's time stays
/// in the state. With `forget` (setting `forget_behind_watermark`), `user_months` holds
/// the open months only and a closed month's events are retired, its rows staying as
/// they were (see [`crate::operators::expiry`]).
pub fn engagement_by_segment<'s>(
    events: ActionsByUser<'s>,
    user_months: UserMonths<'s>,
    users: VecCollection<'s, Time, (UserRow, Arrival)>,
    subscriptions: VecCollection<'s, Time, (Subscription, Arrival)>,
    watermarks: &Watermarks<'s>,
    forget: bool,
) -> VecCollection<'s, Time, SegmentRow> {
    let changes = subscriptions.map(|(s, arrival)| {
        (
            Name::new(&s.user_id),
            UserFact::Change(s.ts, arrival, s.plan),
        )
    });
    // The (user, day)s on which some plan change falls: their events go to the reduce
    // one by one. The reduce finds the same days among the user's facts.
    let change_days = changes
        .clone()
        .flat_map(|(user, fact)| match fact {
            UserFact::Change(ts, _, _) => Some((user, day_of(ts))),
            UserFact::Profile(..) => None,
        })
        .distinct_by_hash();
    let facts = arrange_by_key(
        users
            .map(|(u, arrival)| {
                (
                    Name::new(&u.user_id),
                    UserFact::Profile(arrival, u.country, u.plan),
                )
            })
            .concat(changes),
        "UserFacts",
    );
    let facts_by_month = user_months
        .join_core(facts, |user, month, fact| {
            Some(((*user, *month), fact.clone()))
        })
        .explode(|(user_month, fact)| Some((user_month, month_fact(fact))));
    // Accepted events as ((user, day), time in the day and duration), mapped where they
    // are (so still partitioned by user); with `forget`, retired once their month
    // closes (without it nothing closes, and no operator is put in their way).
    let day_events = events.collection().map(|e| {
        let day = day_of(e.ts);
        (
            (e.user_id, day),
            DayEvent::new(e.ts - day_start(day), e.duration_ms.into()),
        )
    });
    let day_events = if forget {
        retire_behind(day_events, watermarks, move |((_user, day), _)| {
            Some(month_end(month_of_day(*day)))
        })
    } else {
        day_events
    };
    // Each (user, day)'s events and duration, summed on each worker before the exchange
    // (one update per user and day, not one per event).
    let day_totals = combine(
        day_events
            .clone()
            .explode(|(user_day, event)| Some((user_day, (1isize, event.duration() as isize)))),
        "CombineUserDayTotals",
    )
    .inner
    .map(|((user, day), time, (events, duration))| {
        let month = (user, month_of_day(day));
        (month, time, month_day(day, events, duration))
    })
    .as_collection();
    // Every event stays keyed by its (user, day), in a hash map on its user's worker:
    // few days have a plan change, and a change that arrives later finds the day's
    // events there.
    let change_day_events = semijoin_partitioned(
        day_events,
        change_days,
        "EventsOnChangeDays",
        |(user, _day): &(Name, i32)| user_route(user),
    )
    .explode(|((user, day), event)| {
        let ts = day_start(day) + event.since_day_start();
        Some(((user, month_of_day(day)), month_event(ts, event.duration())))
    });
    let segments = totals_by_hash(
        day_totals.concat(change_day_events).concat(facts_by_month),
        Segments,
        "UserMonthSegments",
    )
    .explode(|(month, country, plan, events, duration)| {
        Some((
            (month, country, plan),
            (1isize, events as isize, duration as isize),
        ))
    })
    .count_by_hash()
    .map(
        |((month, country, plan), (active_users, events, duration_ms))| SegmentRow {
            month,
            country,
            plan,
            active_users: active_users as i64,
            events: events as i64,
            duration_ms: duration_ms as i64,
        },
    );
    if forget {
        drop_closed(segments, watermarks, |row| Some(month_end(row.month)))
    } else {
        segments
    }
}

/// `engagement_by_segment`: month x country x plan.
pub const ENGAGEMENT_BY_SEGMENT: TableSpec = TableSpec {
    name: "engagement_by_segment",
    columns: &[
        col("month", ColumnType::Date),
        opt("country", ColumnType::Str),
        opt("plan", ColumnType::Str),
        col("active_users", ColumnType::Int),
        col("events", ColumnType::Int),
        col("total_duration_ms", ColumnType::Int),
    ],
    key_len: 3,
};

/// Engagement of one segment (month, country, plan).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct SegmentRow {
    /// Months since 1970-01.
    pub month: i32,
    /// Country of the users' `users/` row, if any.
    pub country: Option<String>,
    /// Plan in force at the events' time, if any.
    pub plan: Option<Plan>,
    /// Distinct users with an event in the segment.
    pub active_users: i64,
    /// Accepted events in the segment.
    pub events: i64,
    /// Sum of their durations in ms (null counts 0).
    pub duration_ms: i64,
}

impl TableRow for SegmentRow {
    const SPEC: TableSpec = ENGAGEMENT_BY_SEGMENT;
    fn cells(&self) -> Vec<Cell> {
        vec![
            Cell::Date(month_first_day(self.month)),
            Cell::opt_str(self.country.as_deref()),
            Cell::opt_str(self.plan.map(Plan::as_str)),
            Cell::Int(self.active_users),
            Cell::Int(self.events),
            Cell::Int(self.duration_ms),
        ]
    }
}

#[cfg(test)]
#[test]
fn a_day_event_keeps_its_time_and_duration() {
    for (since, duration) in [
        (0, 0),
        (86_399_999, 7_200_000),
        (1, (1 << 37) - 1),
        (43_200_000, 1),
    ] {
        let event = DayEvent::new(since, duration);
        assert_eq!(
            (event.since_day_start(), event.duration()),
            (since, duration)
        );
    }
    assert_eq!(std::mem::size_of::<(DayEvent, isize)>(), 16);
}

/// A (user, month)'s total holds each day's, event's and fact's summed multiplicity
/// (against a recount in sorted maps), is the same whatever order its updates come in,
/// and taking every update back leaves nothing: the hash total keeps no entry for it.
#[cfg(test)]
#[test]
fn a_months_total_is_its_updates_in_any_order() {
    use differential_dataflow::difference::{IsZero, Multiply, Semigroup};
    let mut next = crate::test_numbers(31);
    for case in 0..300 {
        let updates: Vec<(MonthKnown, isize)> = (0..1 + next(10))
            .map(|_| {
                let known = match next(3) {
                    0 => month_day(next(4) as i32, 1 + next(3) as isize, next(9) as isize),
                    1 => month_event(next(5) as Millis, next(7) as i64),
                    _ => month_fact(UserFact::Change(
                        next(5) as Millis,
                        (next(2), 0),
                        Plan::Paid,
                    )),
                };
                (known, if next(3) == 0 { -1 } else { 1 })
            })
            .collect();
        let sum = |order: &mut dyn Iterator<Item = &(MonthKnown, isize)>| {
            let mut total = MonthKnown::default();
            for (known, diff) in order {
                total.plus_equals(&known.clone().multiply(diff));
            }
            total
        };
        // The oracle: each record's multiplicities summed in a sorted map, zeros gone.
        fn recount<T: Ord + Clone, R: Semigroup>(
            bags: impl Iterator<Item = (Bag<T, R>, isize)>,
            times: impl Fn(&R, isize) -> R,
        ) -> Vec<(T, R)> {
            let mut sums: std::collections::BTreeMap<T, R> = Default::default();
            for (bag, diff) in bags {
                for (record, r) in bag.iter() {
                    let r = times(r, diff);
                    match sums.get_mut(record) {
                        Some(sum) => sum.plus_equals(&r),
                        None => drop(sums.insert(record.clone(), r)),
                    }
                }
            }
            sums.into_iter().filter(|(_, r)| !r.is_zero()).collect()
        }
        let forwards = sum(&mut updates.iter());
        assert_eq!(forwards, sum(&mut updates.iter().rev()), "case {case}");
        let (days, events, facts) = &forwards;
        let days_of = updates.iter().map(|((d, _, _), n)| (d.clone(), *n));
        let scaled = |(e, t): &(isize, isize), n: isize| (e * n, t * n);
        assert_eq!(
            days.iter().cloned().collect::<Vec<_>>(),
            recount(days_of, scaled)
        );
        let events_of = updates.iter().map(|((_, e, _), n)| (e.clone(), *n));
        let counted = |r: &isize, n: isize| r * n;
        assert_eq!(
            events.iter().cloned().collect::<Vec<_>>(),
            recount(events_of, counted)
        );
        let facts_of = updates.iter().map(|((_, _, f), n)| (f.clone(), *n));
        assert_eq!(
            facts.iter().cloned().collect::<Vec<_>>(),
            recount(facts_of, counted)
        );
        let mut back = forwards.clone();
        for (known, diff) in &updates {
            back.plus_equals(&known.clone().multiply(&-diff));
        }
        assert!(back.is_zero(), "case {case}");
    }
}
