//! Monthly retention cohorts (contract `retention_cohorts`): a user's cohort is the
//! month of their first accepted event; each later month they are active counts them
//! as retained in that cell.

use differential_dataflow::operators::arrange::Arranged;
use differential_dataflow::operators::arrange::TraceAgent;
use differential_dataflow::trace::implementations::ValSpine;
use differential_dataflow::VecCollection;

use crate::model::name::Name;
use crate::model::tables::{col, Cell, ColumnType, TableRow, TableSpec};
use crate::operators::arrange::arrange_by_key;
use crate::operators::expiry::{drop_closed, month_end, Watermarks};
use crate::operators::gate::Time;
use crate::operators::totals::HashTotals;
use serde::{Deserialize, Serialize};
use tidemark_records::time::month_first_day;

/// Distinct (user, month) pairs arranged by user: built once, read by the cohort join
/// and the monthly actives.
pub type UserMonths<'s> = Arranged<'s, TraceAgent<ValSpine<Name, i32, Time, isize>>>;

/// The `retention_cohorts` table from the arranged distinct (user, month) pairs (whose
/// closed months may be retired) and each user's cohort, their first active month.
///
/// A cell (cohort, months since) is final once the watermark passes the end of its
/// month: no accepted event can reach that month, and a user whose cohort moves earlier
/// had no activity before. Its row then stays as the month's pairs are retired.
pub fn retention_cohorts<'s>(
    user_months: UserMonths<'s>,
    cohorts: VecCollection<'s, Time, (Name, i32)>,
    watermarks: &Watermarks<'s>,
) -> VecCollection<'s, Time, RetentionRow> {
    let cohort_size = cohorts
        .clone()
        .map(|(_user, cohort)| cohort)
        .count_by_hash()
        .map(|(cohort, size)| (cohort, size as i64));
    let cohort_of_user = arrange_by_key(cohorts, "CohortOfUser");
    let cells = user_months
        .join_core(cohort_of_user, |_user, month, cohort| {
            Some((*cohort, (*month - *cohort) as i64))
        })
        .count_by_hash()
        .map(|((cohort, months_since), active)| (cohort, (months_since, active as i64)))
        .join(cohort_size)
        .map(
            |(cohort_month, ((months_since, active_users), cohort_size))| RetentionRow {
                cohort_month,
                months_since,
                cohort_size,
                active_users,
            },
        );
    drop_closed(cells, watermarks, |row| {
        Some(month_end(row.cohort_month + row.months_since as i32))
    })
}

/// `retention_cohorts`: cohort month x months since first activity.
pub const RETENTION_COHORTS: TableSpec = TableSpec {
    name: "retention_cohorts",
    columns: &[
        col("cohort_month", ColumnType::Date),
        col("months_since", ColumnType::Int),
        col("cohort_size", ColumnType::Int),
        col("active_users", ColumnType::Int),
        col("retention", ColumnType::Float),
    ],
    key_len: 2,
};

/// One cell of the retention matrix.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct RetentionRow {
    /// Cohort month (months since 1970-01).
    pub cohort_month: i32,
    /// Months since the cohort month.
    pub months_since: i64,
    /// Users whose first accepted event is in the cohort month.
    pub cohort_size: i64,
    /// Cohort users active `months_since` months later.
    pub active_users: i64,
}

impl TableRow for RetentionRow {
    const SPEC: TableSpec = RETENTION_COHORTS;
    fn cells(&self) -> Vec<Cell> {
        vec![
            Cell::Date(month_first_day(self.cohort_month)),
            Cell::Int(self.months_since),
            Cell::Int(self.cohort_size),
            Cell::Int(self.active_users),
            Cell::Float(self.active_users as f64 / self.cohort_size as f64),
        ]
    }
}
