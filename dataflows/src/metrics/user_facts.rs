//! Per-user facts for prediction (beyond the contract, README "Prediction"):
//! `user_activity_daily`, one row per user and UTC day with accepted events, and
//! `user_plans`, each user's plan history as tidemark resolves it. `tidemark predict`
//! builds its features and labels from these two tables alone, so they are maintained
//! incrementally like every other table and no raw file is read again.

use differential_dataflow::VecCollection;
use serde::{Deserialize, Serialize};
use tidemark_records::time::day_of;

use crate::metrics::event_mix::{PLAY, SKIP};
use crate::metrics::sessions::SessionRow;
use crate::model::action::UserDayTypes;
use crate::model::name::Name;
use crate::model::plans::{PlanFact, PlanHistory};
use crate::model::tables::{col, opt, Cell, ColumnType, TableRow, TableSpec};
use crate::operators::gate::Time;
use crate::operators::totals::{totals_by_hash, Bag, HashTotals, TotalOutput};
use tidemark_records::records::{Millis, Plan};

/// What a (user, day) sums, held in the difference of its updates: events, plays,
/// skips, and (sessions started, their total duration in ms).
type DayTally = (isize, isize, isize, (isize, isize));

/// The `user_activity_daily` table: per user and day of accepted events, the events,
/// plays, skips, sessions started and their total duration. Every event and session
/// adds its [`DayTally`] to its (user, day), and one hash count per (user, day) keeps
/// the sums (no reduce reads the day's records again when one arrives).
pub fn user_activity_daily<'s>(
    user_day_types: UserDayTypes<'s>,
    sessions: VecCollection<'s, Time, SessionRow>,
) -> VecCollection<'s, Time, UserDailyRow> {
    let (play, skip) = (Name::new(PLAY), Name::new(SKIP));
    // A (user, day, type)'s multiplicity is its number of events: the tally is
    // multiplied by it.
    let event_tallies = user_day_types.explode(move |(user, day, event_type)| {
        let tally: DayTally = (
            1,
            isize::from(event_type == play),
            isize::from(event_type == skip),
            (0, 0),
        );
        Some(((user, day), tally))
    });
    let session_tallies = sessions.explode(|s| {
        let tally: DayTally = (0, 0, 0, (1, (s.end - s.start) as isize));
        Some(((s.user_id, day_of(s.start)), tally))
    });
    event_tallies
        .concat(session_tallies)
        .count_by_hash()
        // A (user, day) is a row while it has accepted events.
        .filter(|(_user_day, (events, ..))| *events > 0)
        .map(
            |((user_id, day), (events, plays, skips, (sessions, session_ms)))| UserDailyRow {
                user_id,
                day,
                events: events as i64,
                plays: plays as i64,
                skips: skips as i64,
                sessions: sessions as i64,
                session_ms: session_ms as i64,
            },
        )
}

/// The `user_plans` table: per user, the plan of the latest-arriving `users/` row
/// (`valid_from` null) and every instant at which the plan in force changes to a
/// different plan. Together they give [`PlanHistory::plan_at`] at any instant.
pub fn user_plans<'s>(
    plan_facts: VecCollection<'s, Time, (Name, PlanFact)>,
) -> VecCollection<'s, Time, UserPlanRow> {
    // Each user's facts in one hash total, its rows worked out from them.
    let facts = plan_facts.explode(|(user, fact)| Some((user, Bag::one(fact))));
    totals_by_hash(facts, PlanRows, "UserPlans")
}

/// A user's `user_plans` rows from its plan facts.
struct PlanRows;

impl TotalOutput<Name, Bag<PlanFact>> for PlanRows {
    type Out = UserPlanRow;
    fn output(&mut self, user: &Name, facts: &Bag<PlanFact>, out: &mut Vec<(UserPlanRow, isize)>) {
        let history = PlanHistory::from_facts(facts.iter().map(|(fact, _)| fact));
        for (valid_from, plan) in history.effective_changes() {
            let row = UserPlanRow {
                user_id: *user,
                valid_from,
                plan,
            };
            out.push((row, 1));
        }
    }
}

/// `user_activity_daily` (beyond the contract): one row per user and UTC day with
/// accepted events; `tidemark predict` reads its features and labels from it. See
pub const USER_ACTIVITY_DAILY: TableSpec = TableSpec {
    name: "user_activity_daily",
    columns: &[
        col("user_id", ColumnType::Str),
        col("day", ColumnType::Date),
        col("events", ColumnType::Int),
        col("plays", ColumnType::Int),
        col("skips", ColumnType::Int),
        col("sessions", ColumnType::Int),
        col("session_duration_s", ColumnType::Float),
    ],
    key_len: 2,
};

/// `user_plans` (beyond the contract): each user's plan history, the `users/` row's
/// plan with a null `valid_from`, then every instant the plan in force changes;
/// `tidemark predict` reads "paid at the cutoff" from it.
pub const USER_PLANS: TableSpec = TableSpec {
    name: "user_plans",
    columns: &[
        col("user_id", ColumnType::Str),
        opt("valid_from", ColumnType::Timestamp),
        col("plan", ColumnType::Str),
    ],
    key_len: 2,
};

/// One user's accepted activity on one UTC day (`user_activity_daily`, beyond the
/// contract; read by `tidemark predict`).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct UserDailyRow {
    /// The user.
    pub user_id: Name,
    /// Days since 1970-01-01.
    pub day: i32,
    /// Accepted events that day (> 0).
    pub events: i64,
    /// Accepted `play` events that day.
    pub plays: i64,
    /// Accepted `skip` events that day.
    pub skips: i64,
    /// Sessions starting that day.
    pub sessions: i64,
    /// Total duration of those sessions, in ms.
    pub session_ms: i64,
}

impl TableRow for UserDailyRow {
    const SPEC: TableSpec = USER_ACTIVITY_DAILY;
    fn cells(&self) -> Vec<Cell> {
        vec![
            Cell::Str(self.user_id.text()),
            Cell::Date(self.day),
            Cell::Int(self.events),
            Cell::Int(self.plays),
            Cell::Int(self.skips),
            Cell::Int(self.sessions),
            Cell::Float(self.session_ms as f64 / 1000.0),
        ]
    }
}

/// One step of a user's plan history (`user_plans`, beyond the contract; read by
/// `tidemark predict`).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct UserPlanRow {
    /// The user.
    pub user_id: Name,
    /// The instant from which `plan` is in force; none for the `users/` row's plan,
    /// in force before any plan change.
    pub valid_from: Option<Millis>,
    /// The plan.
    pub plan: Plan,
}

impl TableRow for UserPlanRow {
    const SPEC: TableSpec = USER_PLANS;
    fn cells(&self) -> Vec<Cell> {
        vec![
            Cell::Str(self.user_id.text()),
            self.valid_from.map_or(Cell::Null, Cell::Timestamp),
            Cell::Str(self.plan.as_str().into()),
        ]
    }
}
