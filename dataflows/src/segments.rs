//! Engagement by segment (contract `engagement_by_segment`): per "month, country, plan:
//! active_users, events, total_duration_ms (null durations count 0). Country from
//! `users/`, plan in force at the event's time; a user with no `users/` row has null
//! country and plan". Country is that of the user's latest-arriving `users/` row; the
//! plan is [`PlanHistory::plan_at`] the event's time.
//!
//! A user's plan facts are copied to each month the user is active in, through the
//! shared arrangement of distinct (user, month) pairs, so that one reduce per (user,
//! month) sees the month's events with every fact that places them. A late event
//! touches one (user, month); a late `users/` row or plan change touches the user's
//! months. Each (user, month) adds (1 user, events, duration) per segment it
//! reaches, summed per segment by a `count_total` over those triples.

use std::collections::BTreeMap;

use differential_dataflow::operators::CountTotal;
use differential_dataflow::VecCollection;
use serde::{Deserialize, Serialize};
use tidemark_inputs::records::{Millis, Plan, Subscription, UserRow};

use crate::action::Action;
use crate::name::Name;
use tidemark_inputs::time::month_of;

use crate::expiry::{drop_closed, month_end, retire_behind, Watermarks};
use crate::ingest::Time;
use crate::plans::{Arrival, PlanFact, PlanHistory};
use crate::retention::UserMonths;
use crate::rows::SegmentRow;

/// What places a user's events in a segment.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
enum UserFact {
    /// A `users/` row: its arrival, country and plan.
    Profile(Arrival, Option<String>, Plan),
    /// A `subscriptions/` row: from `ts`, at this arrival, this plan.
    Change(Millis, Arrival, Plan),
}

/// One input of a (user, month) reduce.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
enum MonthInput {
    /// An accepted event at `ts` with its duration (null counts 0).
    Event(Millis, i64),
    /// One of the user's facts.
    Fact(UserFact),
}

/// The `engagement_by_segment` table from the accepted events, the `users/` and
/// `subscriptions/` rows, and an arrangement of distinct (user, month) pairs.
///
/// A plan change may move events of any month, so by default every event's time stays
/// in the state. With `forget` (setting `forget_behind_watermark`), `user_months` holds
/// the open months only and a closed month's events are retired, its rows staying as
/// they were (see [`crate::expiry`]).
pub fn engagement_by_segment<'s>(
    events: VecCollection<'s, Time, Action>,
    user_months: UserMonths<'s>,
    users: VecCollection<'s, Time, (UserRow, Arrival)>,
    subscriptions: VecCollection<'s, Time, (Subscription, Arrival)>,
    watermarks: &Watermarks<'s>,
    forget: bool,
) -> VecCollection<'s, Time, SegmentRow> {
    let closes = move |month: i32| forget.then(|| month_end(month));
    let facts = users
        .map(|(u, arrival)| {
            (
                Name::new(&u.user_id),
                UserFact::Profile(arrival, u.country, u.plan),
            )
        })
        .concat(subscriptions.map(|(s, arrival)| {
            (
                Name::new(&s.user_id),
                UserFact::Change(s.ts, arrival, s.plan),
            )
        }))
        .arrange_by_key_named("UserFacts");
    let facts_by_month = user_months.join_core(facts, |user, month, fact| {
        Some(((*user, *month), MonthInput::Fact(fact.clone())))
    });
    let month_events = events.map(|e| {
        (
            (e.user_id, month_of(e.ts)),
            MonthInput::Event(e.ts, e.duration_ms.unwrap_or(0)),
        )
    });
    let segments = retire_behind(month_events, watermarks, move |((_user, month), _)| {
        closes(*month)
    })
    .concat(facts_by_month)
    .reduce_named("UserMonthSegments", |_user_month, inputs, output| {
        let mut country: Option<(Arrival, Option<String>)> = None;
        let mut plan_facts = Vec::new();
        for (input, _count) in inputs {
            match input {
                MonthInput::Fact(UserFact::Profile(arrival, c, plan)) => {
                    if country.as_ref().is_none_or(|(a, _)| arrival > a) {
                        country = Some((*arrival, c.clone()));
                    }
                    plan_facts.push(PlanFact::Profile(*arrival, *plan));
                }
                MonthInput::Fact(UserFact::Change(ts, arrival, plan)) => {
                    plan_facts.push(PlanFact::Change(*ts, *arrival, *plan))
                }
                MonthInput::Event(..) => {}
            }
        }
        let history = PlanHistory::from_facts(&plan_facts);
        let country = country.and_then(|(_, c)| c);
        let mut segments: BTreeMap<Option<Plan>, (i64, i64)> = BTreeMap::new();
        for (input, count) in inputs {
            if let MonthInput::Event(ts, duration) = input {
                let count = *count as i64;
                let entry = segments.entry(history.plan_at(*ts)).or_default();
                entry.0 += count;
                entry.1 += duration * count;
            }
        }
        for (plan, (events, duration)) in segments {
            if events > 0 {
                output.push(((country.clone(), plan, events, duration), 1isize));
            }
        }
    })
    .explode(|((_user, month), (country, plan, events, duration))| {
        Some((
            (month, country, plan),
            (1isize, events as isize, duration as isize),
        ))
    })
    .count_total()
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
    drop_closed(segments, watermarks, move |row| closes(row.month))
}
