//! Headline KPIs over the analysis period (contract `kpis`). Facts are first folded
//! per user into a handful of flags, then the flags are counted globally, so a change
//! touches one user's reduce and one small global reduce.

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
use crate::operators::totals::HashTotals;
use tidemark_records::records::Millis;
use tidemark_records::time::{day_of, day_start, DAY_MS};

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
enum UserFact {
    /// Whether the user has an accepted event, whether one is inside the period, and
    /// how many sessions start inside it (one such fact per user at any time).
    Counts(bool, bool, isize),
    /// A users/ row or a plan change.
    Plan(PlanFact),
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
    // days the bounds cut) are in the period, and how many sessions start in it: summed
    // per user before the reduce, which then reads one value for all of them, not one
    // per day and session at every time that touches the user.
    let day_counts = user_days
        .explode(move |(user, day)| Some((user, (1isize, isize::from(inside(day)), 0isize))));
    // A bound at a midnight (or none, the default: all data) cuts no day, and then no
    // event needs to be read here.
    let cuts_a_day =
        |bound: Millis| bound != Millis::MIN && bound != Millis::MAX && bound % DAY_MS != 0;
    let activity_counts = if cuts_a_day(from) || cuts_a_day(to) {
        let cut_day_counts = events
            .filter(move |e| cut(day_of(e.ts)) && in_period(e.ts))
            .explode(|e| Some((e.user_id, (0isize, 1isize, 0isize))));
        day_counts.concat(cut_day_counts)
    } else {
        day_counts
    };
    let session_counts = sessions
        .filter(move |s| in_period(s.start))
        .explode(|s| Some((s.user_id, (0isize, 0isize, 1isize))));
    let count_facts = activity_counts.concat(session_counts).count_by_hash().map(
        |(user, (seen, active, sessions))| (user, UserFact::Counts(seen > 0, active > 0, sessions)),
    );
    let plan_facts = plan_facts.map(|(user, fact)| (user, UserFact::Plan(fact)));

    let engaged_threshold = params.engaged_sessions as isize;
    count_facts
        .concat(plan_facts)
        .reduce_by_hash("UserKpiFlags", move |_user, facts, output| {
            let mut flags = UserFlags {
                seen: false,
                listed: false,
                planned: false,
                active: false,
                has_session: false,
                engaged: false,
                paid: false,
            };
            let mut sessions = 0isize;
            for (fact, _count) in facts {
                match fact {
                    UserFact::Counts(seen, active, in_period) => {
                        flags.seen = *seen;
                        flags.active = *active;
                        sessions = *in_period;
                    }
                    UserFact::Plan(PlanFact::Profile(..)) => {
                        flags.listed = true;
                        flags.planned = true;
                    }
                    UserFact::Plan(_) => flags.planned = true,
                }
            }
            let history = PlanHistory::from_facts(facts.iter().filter_map(|(f, _)| match f {
                UserFact::Plan(p) => Some(p),
                _ => None,
            }));
            flags.has_session = sessions > 0;
            flags.engaged = flags.active && sessions >= engaged_threshold;
            flags.paid = flags.active && history.paid_during(from, to);
            output.push((flags, 1isize));
        })
        .map(|(_user, flags)| ((), flags))
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
