//! Monthly retention cohorts (contract `retention_cohorts`): a user's cohort is the
//! month of their first accepted event; each later month they are active counts them
//! as retained in that cell.

use differential_dataflow::operators::arrange::Arranged;
use differential_dataflow::operators::arrange::TraceAgent;
use differential_dataflow::operators::CountTotal;
use differential_dataflow::trace::implementations::{ValBuilder, ValSpine};
use differential_dataflow::VecCollection;

use crate::ingest::Time;
use crate::rows::RetentionRow;

/// Distinct (user, month) pairs arranged by user: built once, read by both the
/// first-month reduce and the cohort join.
pub type UserMonths<'s> = Arranged<'s, TraceAgent<ValSpine<String, i32, Time, isize>>>;

/// The `retention_cohorts` table from the arranged distinct (user, month) pairs.
pub fn retention_cohorts<'s>(user_months: UserMonths<'s>) -> VecCollection<'s, Time, RetentionRow> {
    // Each user's cohort: their earliest active month (values arrive sorted).
    let cohort_of_user = user_months
        .clone()
        .reduce_abelian::<_, ValBuilder<String, i32, Time, isize>, ValSpine<String, i32, Time, isize>, _, _>(
            "FirstMonth",
            |_user, months, output| output.push((*months[0].0, 1isize)),
            |vec, key, updates| {
                vec.clear();
                vec.extend(updates.drain(..).map(|(v, t, r)| ((key.clone(), v), t, r)));
            },
        );
    let cohort_size = cohort_of_user
        .clone()
        .as_collection(|_user, cohort| *cohort)
        .count_total()
        .map(|(cohort, size)| (cohort, size as i64));
    user_months
        .join_core(cohort_of_user, |_user, month, cohort| {
            Some((*cohort, (*month - *cohort) as i64))
        })
        .count_total()
        .map(|((cohort, months_since), active)| (cohort, (months_since, active as i64)))
        .join(cohort_size)
        .map(
            |(cohort_month, ((months_since, active_users), cohort_size))| RetentionRow {
                cohort_month,
                months_since,
                cohort_size,
                active_users,
            },
        )
}
