//! Feature adoption (contract `feature_adoption`): per (day, event_type), "a row for
//! each day on which the event type occurred: new_adopters (users using it for the
//! first time that day, may be 0), adopters_to_date, adoption_pct (= 100 *
//! adopters_to_date / users active on or before that day)".
//!
//! The cumulative counts are built in steps so that a late event touches only what it
//! must: each user's first day per type and first active day (least value per key), new
//! adopters per (type, day) and new users per day (`count_total`), then one running sum
//! per type over its days and one over the active days, joined by day.

use crate::model::action::UserDayTypes;
use crate::model::name::Name;
use crate::operators::reduce::HashReduce;
use crate::operators::totals::HashTotals;
use differential_dataflow::VecCollection;
use serde::{Deserialize, Serialize};

use crate::metrics::actives::DailyActiveRow;
use crate::metrics::event_mix::EventMixRow;
use crate::model::tables::{col, Cell, ColumnType, TableRow, TableSpec};
use crate::operators::expiry::earliest_per_key;
use crate::operators::gate::Time;

/// One input of a running sum over days: a count that starts on a day, or a day on
/// which the sum is reported. On one day, the count sorts before the report.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
enum DayPart {
    /// This many new members on the day.
    New(i64),
    /// Report the running sum on the day.
    Report,
}

/// Running sums over `(day, part)` values sorted by day: for each reported day,
/// `(day, new that day, total up to and including the day)`.
fn running_sums(parts: &[((i32, DayPart), isize)]) -> Vec<(i32, i64, i64)> {
    let mut total = 0i64;
    let mut new_today = (i32::MIN, 0i64);
    let mut reports = Vec::new();
    for ((day, part), count) in parts {
        match part {
            DayPart::New(n) => {
                let n = n * *count as i64;
                total += n;
                new_today = (
                    *day,
                    if new_today.0 == *day {
                        new_today.1 + n
                    } else {
                        n
                    },
                );
            }
            DayPart::Report => {
                let new = if new_today.0 == *day { new_today.1 } else { 0 };
                reports.push((*day, new, total));
            }
        }
    }
    reports
}

/// The `feature_adoption` table from the accepted events, each user's first active
/// day, the `event_mix_daily` rows (the days each type occurred) and the `daily_active`
/// rows (the active days). `insert_only`: see [`earliest_per_key`].
pub fn feature_adoption<'s>(
    user_day_types: UserDayTypes<'s>,
    first_days: VecCollection<'s, Time, (Name, i32)>,
    event_mix: VecCollection<'s, Time, EventMixRow>,
    daily_active: VecCollection<'s, Time, DailyActiveRow>,
    insert_only: bool,
) -> VecCollection<'s, Time, FeatureAdoptionRow> {
    // Adopters: each user's first day with each type, counted per (type, day) and summed
    // per type over the days the type occurred.
    let new_adopters = earliest_per_key(
        user_day_types.map(|(user, day, event_type)| ((user, event_type), day)),
        insert_only,
        "FirstUse",
    )
    .map(|((_user, event_type), day)| (event_type, day))
    .count_by_hash()
    .map(|((event_type, day), n)| (event_type, (day, DayPart::New(n as i64))));
    let occurred = event_mix.map(|row| (row.event_type, (row.day, DayPart::Report)));
    let adopters = new_adopters
        .concat(occurred)
        .reduce_by_hash("AdoptersToDate", |_type, parts, output| {
            for report in running_sums(parts) {
                output.push((report, 1isize));
            }
        })
        .map(|(event_type, (day, new, to_date))| (day, (event_type, new, to_date)));

    // Users active on or before each active day: first active day per user, counted per
    // day, summed over the active days.
    let new_users = first_days
        .map(|(_user, day)| day)
        .count_by_hash()
        .map(|(day, n)| ((), (day, DayPart::New(n as i64))));
    let active_days = daily_active.map(|row| ((), (row.day, DayPart::Report)));
    let users_to_date = new_users
        .concat(active_days)
        .reduce_by_hash("UsersToDate", |_unit, parts, output| {
            for (day, _new, total) in running_sums(parts) {
                output.push(((day, total), 1isize));
            }
        })
        .map(|((), (day, total))| (day, total));

    adopters.join(users_to_date).map(
        |(day, ((event_type, new_adopters, adopters_to_date), users_to_date))| FeatureAdoptionRow {
            day,
            event_type,
            new_adopters,
            adopters_to_date,
            users_to_date,
        },
    )
}

/// `feature_adoption`: per day and event type.
pub const FEATURE_ADOPTION: TableSpec = TableSpec {
    name: "feature_adoption",
    columns: &[
        col("day", ColumnType::Date),
        col("event_type", ColumnType::Str),
        col("new_adopters", ColumnType::Int),
        col("adopters_to_date", ColumnType::Int),
        col("adoption_pct", ColumnType::Float),
    ],
    key_len: 2,
};

/// Adoption of one event type as of one UTC day on which it occurred.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct FeatureAdoptionRow {
    /// Days since 1970-01-01.
    pub day: i32,
    /// The event type.
    pub event_type: Name,
    /// Users using the type for the first time that day.
    pub new_adopters: i64,
    /// Users who used the type on or before that day.
    pub adopters_to_date: i64,
    /// Users active on or before that day.
    pub users_to_date: i64,
}

impl TableRow for FeatureAdoptionRow {
    const SPEC: TableSpec = FEATURE_ADOPTION;
    fn cells(&self) -> Vec<Cell> {
        vec![
            Cell::Date(self.day),
            Cell::Str(self.event_type.text()),
            Cell::Int(self.new_adopters),
            Cell::Int(self.adopters_to_date),
            Cell::Float(100.0 * self.adopters_to_date as f64 / self.users_to_date as f64),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn running_sums_report_each_day_with_its_new_members_and_the_total() {
        let parts = [
            (1, DayPart::New(2)),
            (1, DayPart::Report),
            (3, DayPart::New(1)),
            (3, DayPart::New(4)),
            (3, DayPart::Report),
            (5, DayPart::Report),
        ];
        let with_counts: Vec<((i32, DayPart), isize)> =
            parts.iter().map(|p| (p.clone(), 1)).collect();
        assert_eq!(
            running_sums(&with_counts),
            vec![(1, 2, 2), (3, 5, 7), (5, 0, 7)]
        );
    }

    #[test]
    fn a_count_with_multiplicity_counts_that_many_times() {
        let parts = [(7, DayPart::New(3)), (7, DayPart::Report)];
        let with_counts = vec![(parts[0].clone(), 2), (parts[1].clone(), 1)];
        assert_eq!(running_sums(&with_counts), vec![(7, 6, 6)]);
    }
}
