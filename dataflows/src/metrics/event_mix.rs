//! The mix of event types per day (contract `event_mix_daily`: "day, event_type |
//! events, share", share = events / all accepted events that day, 0..1) and the daily
//! skip rate (`skip_rate_daily`, beyond the contract: skips / plays per day, a row for
//! each day with plays).
//!
//! Both read one arrangement of accepted events' (day, event_type): the arrangement's
//! multiplicities already are the per-type counts, so each per-day reduce reads only
//! the day's distinct types.

use crate::model::action::UserDayTypes;
use crate::model::name::Name;
use crate::operators::arrange::arrange_by_key;
use crate::operators::combine::combine;
use differential_dataflow::operators::arrange::{Arranged, TraceAgent};
use differential_dataflow::trace::implementations::{ValBuilder, ValSpine};
use differential_dataflow::VecCollection;

use crate::model::tables::{col, Cell, ColumnType, TableRow, TableSpec};
use crate::operators::gate::Time;
use serde::{Deserialize, Serialize};

/// Accepted events as (day, event_type), arranged by day; a type's multiplicity is its
/// number of events that day.
pub type DayTypes<'s> = Arranged<'s, TraceAgent<ValSpine<i32, Name, Time, isize>>>;

/// Arranges accepted events by day with their type (built once, read by both tables).
pub fn day_types<'s>(user_day_types: UserDayTypes<'s>) -> DayTypes<'s> {
    let day_types = combine(
        user_day_types.map(|(_user, day, event_type)| (day, event_type)),
        "CombineDayTypes",
    );
    arrange_by_key(day_types, "DayTypes")
}

/// Reduces `day_types` per day with `logic`, giving one output collection of rows.
fn per_day<'s, R, L>(day_types: DayTypes<'s>, name: &str, logic: L) -> VecCollection<'s, Time, R>
where
    R: differential_dataflow::ExchangeData + std::hash::Hash,
    L: FnMut(&i32, &[(&Name, isize)], &mut Vec<(R, isize)>) + 'static,
{
    day_types
        .reduce_abelian::<_, ValBuilder<i32, R, Time, isize>, ValSpine<i32, R, Time, isize>, _, _>(
            name,
            logic,
            |vec, key, updates| {
                vec.clear();
                vec.extend(updates.drain(..).map(|(v, t, r)| ((*key, v), t, r)));
            },
        )
        .as_collection(|_day, row: &R| row.clone())
}

/// The `event_mix_daily` table.
pub fn event_mix_daily<'s>(day_types: DayTypes<'s>) -> VecCollection<'s, Time, EventMixRow> {
    per_day(day_types, "EventMixDaily", |&day, types, output| {
        let day_events: isize = types.iter().map(|(_, count)| *count).sum();
        for (event_type, count) in types {
            let row = EventMixRow {
                day,
                event_type: *(*event_type),
                events: *count as i64,
                day_events: day_events as i64,
            };
            output.push((row, 1isize));
        }
    })
}

/// The event type counted as a skip.
pub const SKIP: &str = "skip";
/// The event type counted as a play.
pub const PLAY: &str = "play";

/// The `skip_rate_daily` table: skips and plays per day, for days with plays.
pub fn skip_rate_daily<'s>(day_types: DayTypes<'s>) -> VecCollection<'s, Time, SkipRateRow> {
    let (skip, play) = (Name::new(SKIP), Name::new(PLAY));
    per_day(day_types, "SkipRateDaily", move |&day, types, output| {
        let count = |kind: Name| {
            types
                .iter()
                .find(|(t, _)| **t == kind)
                .map_or(0, |(_, c)| *c as i64)
        };
        let plays = count(play);
        if plays > 0 {
            output.push((
                SkipRateRow {
                    day,
                    skips: count(skip),
                    plays,
                },
                1isize,
            ));
        }
    })
}

/// `event_mix_daily`: events per type per day and their share.
pub const EVENT_MIX_DAILY: TableSpec = TableSpec {
    name: "event_mix_daily",
    columns: &[
        col("day", ColumnType::Date),
        col("event_type", ColumnType::Str),
        col("events", ColumnType::Int),
        col("share", ColumnType::Float),
    ],
    key_len: 2,
};

/// `skip_rate_daily` (beyond the contract): skips per play per day, a row for each day
/// with plays. Beyond the contract's tables.
pub const SKIP_RATE_DAILY: TableSpec = TableSpec {
    name: "skip_rate_daily",
    columns: &[
        col("day", ColumnType::Date),
        col("skips", ColumnType::Int),
        col("plays", ColumnType::Int),
        col("skip_rate", ColumnType::Float),
    ],
    key_len: 1,
};

/// Events of one type on one UTC day.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct EventMixRow {
    /// Days since 1970-01-01.
    pub day: i32,
    /// The event type.
    pub event_type: Name,
    /// Accepted events of the type that day.
    pub events: i64,
    /// Accepted events of any type that day.
    pub day_events: i64,
}

impl TableRow for EventMixRow {
    const SPEC: TableSpec = EVENT_MIX_DAILY;
    fn cells(&self) -> Vec<Cell> {
        vec![
            Cell::Date(self.day),
            Cell::Str(self.event_type.text()),
            Cell::Int(self.events),
            Cell::Float(self.events as f64 / self.day_events as f64),
        ]
    }
}

/// Skips and plays of one UTC day with plays.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct SkipRateRow {
    /// Days since 1970-01-01.
    pub day: i32,
    /// Accepted `skip` events that day.
    pub skips: i64,
    /// Accepted `play` events that day (> 0).
    pub plays: i64,
}

impl TableRow for SkipRateRow {
    const SPEC: TableSpec = SKIP_RATE_DAILY;
    fn cells(&self) -> Vec<Cell> {
        vec![
            Cell::Date(self.day),
            Cell::Int(self.skips),
            Cell::Int(self.plays),
            Cell::Float(self.skips as f64 / self.plays as f64),
        ]
    }
}
