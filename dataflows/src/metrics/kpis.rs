//! Headline KPIs over the analysis period (contract `kpis`). Facts are first folded
//! per user into a handful of flags, then the flags are counted globally, so a change
//! touches one user's total and one small global reduce.

use differential_dataflow::VecCollection;
use serde::{Deserialize, Serialize};

use crate::metrics::sessions::SessionRow;
use crate::model::action::Action;
use crate::model::name::Name;
use crate::model::plans::{PlanFact, PlanHistory};
use crate::model::settings::Params;
use crate::model::tables::{col, Cell, ColumnType, TableRow, TableSpec};
use crate::operators::expiry::day_end;
use crate::operators::gate::Time;
use crate::operators::reduce::HashReduce;
use crate::operators::totals::{totals_by_hash, Bag, TotalOutput};
use tidemark_records::records::Millis;
use tidemark_records::time::{day_of, day_start, DAY_MS};

/// What the KPIs know of one user, held in the difference of its updates so that one
/// hash total per user keeps it (no reduce's vectors of inputs and output): how many
/// distinct days it was seen, how many of them (or of its events on the days the
/// period's bounds cut) are in the period, how many sessions start in it, and its
/// `users/` rows and plan changes with their multiplicities. Differential sums the
/// tuple field by field.
type UserKnown = (isize, isize, isize, Bag<PlanFact>);

/// Counts of days seen, of days or events in the period, and of sessions in it.
fn user_counts(seen: isize, active: isize, sessions: isize) -> UserKnown {
    (seen, active, sessions, Bag::default())
}

/// A `users/` row or a plan change.
fn user_plan(fact: PlanFact) -> UserKnown {
    (0, 0, 0, Bag::one(fact))
}

/// A user's [`UserFlags`] from what is known of it, for the period `from..to`.
struct Flags {
    from: Millis,
    to: Millis,
    engaged_sessions: isize,
}

impl TotalOutput<Name, UserKnown> for Flags {
    type Out = UserFlags;
    fn output(&mut self, _user: &Name, known: &UserKnown, out: &mut Vec<(UserFlags, isize)>) {
        let (seen, active, sessions, plans) = known;
        let active = *active > 0;
        let history = PlanHistory::from_facts(plans.iter().map(|(fact, _)| fact));
        let flags = UserFlags {
            seen: *seen > 0,
            listed: (plans.iter()).any(|(fact, _)| matches!(fact, PlanFact::Profile(..))),
            planned: !plans.is_empty(),
            active,
            has_session: *sessions > 0,
            engaged: active && *sessions >= self.engaged_sessions,
            paid: active && history.paid_during(self.from, self.to),
        };
        out.push((flags, 1));
    }
}

/// What the KPIs need to know of one user.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
struct UserFlags {
    seen: bool,
    listed: bool,
    /// Has a `users/` row or a plan change: plan data exists for the user.
    planned: bool,
    active: bool,
    has_session: bool,
    engaged: bool,
    paid: bool,
}

/// The `kpis` table.
pub fn kpis<'s>(
    events: VecCollection<'s, Time, Action>,
    user_days: VecCollection<'s, Time, (Name, i32)>,
    sessions: VecCollection<'s, Time, SessionRow>,
    plan_facts: VecCollection<'s, Time, (Name, PlanFact)>,
    params: Params,
) -> VecCollection<'s, Time, KpiRow> {
    let (from, to) = (params.period_from, params.period_to);
    let in_period = move |ts| from <= ts && ts < to;
    // A user's distinct active days say whether the user was seen, and active in the
    // period for every day wholly inside it: one fact per (user, day), not per event.
    // Only the (at most two) days the period's bounds cut need the events' times.
    let inside = move |day: i32| from <= day_start(day) && day_end(day) <= to;
    let cut = move |day: i32| !inside(day) && day_start(day) < to && from < day_end(day);
    // Per user, how many days it was seen, how many of them (or of its events on the
    // days the bounds cut) are in the period, how many sessions start in it, and its
    // plan facts: summed into one total per user, whose flags are worked out again
    // only for a user that changed.
    let day_counts = user_days
        .explode(move |(user, day)| Some((user, user_counts(1, isize::from(inside(day)), 0))));
    // A bound at a midnight (or none, the default: all data) cuts no day, and then no
    // event needs to be read here.
    let cuts_a_day =
        |bound: Millis| bound != Millis::MIN && bound != Millis::MAX && bound % DAY_MS != 0;
    let activity_counts = if cuts_a_day(from) || cuts_a_day(to) {
        let cut_day_counts = events
            .filter(move |e| cut(day_of(e.ts)) && in_period(e.ts))
            .explode(|e| Some((e.user_id, user_counts(0, 1, 0))));
        day_counts.concat(cut_day_counts)
    } else {
        day_counts
    };
    let session_counts = sessions
        .filter(move |s| in_period(s.start))
        .explode(|s| Some((s.user_id, user_counts(0, 0, 1))));
    let plan_facts = plan_facts.explode(|(user, fact)| Some((user, user_plan(fact))));
    let flags = Flags {
        from,
        to,
        engaged_sessions: params.engaged_sessions as isize,
    };
    totals_by_hash(
        activity_counts.concat(session_counts).concat(plan_facts),
        flags,
        "UserKpiFlags",
    )
    .map(|flags| ((), flags))
    .reduce_by_hash("Kpis", |_unit, flag_counts, output| {
        let count = |pred: fn(&UserFlags) -> bool| -> i64 {
            flag_counts
                .iter()
                .filter(|(f, _)| pred(f))
                .map(|(_, c)| *c as i64)
                .sum()
        };
        let seen = count(|f| f.seen);
        let listed = count(|f| f.listed);
        if seen == 0 && listed == 0 {
            return;
        }
        let total = if listed > 0 { listed } else { seen };
        let active = count(|f| f.active);
        let mut rows = vec![
            KpiRow {
                metric: "total_customers".into(),
                numerator: total,
                denominator: None,
            },
            KpiRow {
                metric: "active_customers".into(),
                numerator: active,
                denominator: None,
            },
        ];
        let mut pct = |metric: &str, numerator: i64, denominator: i64| {
            if denominator > 0 {
                rows.push(KpiRow {
                    metric: metric.into(),
                    numerator,
                    denominator: Some(denominator),
                });
            }
        };
        pct("session_adoption_rate_pct", count(|f| f.has_session), total);
        pct("engaged_users_pct", count(|f| f.engaged), active);
        // Without any plan data (no users/ or subscriptions/ rows) the paid share
        // is unknown, not 0: the row is absent.
        if count(|f| f.planned) > 0 {
            pct("paid_share_pct", count(|f| f.paid), active);
        }
        output.extend(rows.into_iter().map(|row| (row, 1isize)));
    })
    .map(|((), row)| row)
}

/// `kpis`: one row per metric.
pub const KPIS: TableSpec = TableSpec {
    name: "kpis",
    columns: &[
        col("metric", ColumnType::Str),
        col("value", ColumnType::Float),
    ],
    key_len: 1,
};

/// One KPI: a count, or a percentage kept as numerator and denominator.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct KpiRow {
    /// Metric name, e.g. `active_customers`.
    pub metric: String,
    /// The count, or the numerator of a percentage.
    pub numerator: i64,
    /// The denominator of a percentage; `None` for a plain count.
    pub denominator: Option<i64>,
}

impl KpiRow {
    /// The metric's value as the contract writes it (percentages 0..100).
    pub fn value(&self) -> f64 {
        match self.denominator {
            None => self.numerator as f64,
            Some(den) => 100.0 * self.numerator as f64 / den as f64,
        }
    }
}

impl TableRow for KpiRow {
    const SPEC: TableSpec = KPIS;
    fn cells(&self) -> Vec<Cell> {
        vec![
            Cell::Str(self.metric.as_str().into()),
            Cell::Float(self.value()),
        ]
    }
}
