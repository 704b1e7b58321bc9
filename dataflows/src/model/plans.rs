//! The plan in force for a user at an instant (contract `users/`, `subscriptions/`):
//! the latest subscription row at or before the instant, else the user's `users/`
//! plan (the latest-arriving row), else none.

use differential_dataflow::VecCollection;
use serde::{Deserialize, Serialize};
use tidemark_records::records::{Millis, Plan, Subscription, UserRow};

use crate::model::name::Name;
use crate::operators::gate::Time;

/// Arrival order of an input row: (batch, row). Later arrivals replace earlier ones.
pub type Arrival = (u64, u64);

/// A user's plan history, as gathered per user from `users/` and `subscriptions/`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PlanHistory {
    /// The plan of the latest-arriving `users/` row, if any.
    pub profile_plan: Option<Plan>,
    /// Plan changes `(ts, plan)`, sorted by time, one per instant (the latest arrival wins).
    pub changes: Vec<(Millis, Plan)>,
}

/// One input to a [`PlanHistory`].
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum PlanFact {
    /// A `users/` row's plan.
    Profile(Arrival, Plan),
    /// A `subscriptions/` row.
    Change(Millis, Arrival, Plan),
}

/// Every user's plan facts: a `users/` row's plan and each `subscriptions/` row, by
/// user. Shared by the KPIs and the `user_plans` table.
pub fn plan_facts<'s>(
    users: VecCollection<'s, Time, (UserRow, Arrival)>,
    subscriptions: VecCollection<'s, Time, (Subscription, Arrival)>,
) -> VecCollection<'s, Time, (Name, PlanFact)> {
    users
        .map(|(u, arrival)| (Name::new(&u.user_id), PlanFact::Profile(arrival, u.plan)))
        .concat(subscriptions.map(|(s, arrival)| {
            (
                Name::new(&s.user_id),
                PlanFact::Change(s.ts, arrival, s.plan),
            )
        }))
}

impl PlanHistory {
    /// Builds the history from a user's facts (in any order).
    pub fn from_facts<'a>(facts: impl IntoIterator<Item = &'a PlanFact>) -> PlanHistory {
        let mut profile: Option<(Arrival, Plan)> = None;
        let mut changes: Vec<(Millis, Arrival, Plan)> = Vec::new();
        for fact in facts {
            match *fact {
                PlanFact::Profile(arrival, plan) => {
                    if profile.is_none_or(|(a, _)| arrival > a) {
                        profile = Some((arrival, plan));
                    }
                }
                PlanFact::Change(ts, arrival, plan) => changes.push((ts, arrival, plan)),
            }
        }
        changes.sort();
        // Keep the latest arrival at each instant.
        let mut dedup: Vec<(Millis, Plan)> = Vec::with_capacity(changes.len());
        for (ts, _arrival, plan) in changes {
            match dedup.last_mut() {
                Some(last) if last.0 == ts => last.1 = plan,
                _ => dedup.push((ts, plan)),
            }
        }
        PlanHistory {
            profile_plan: profile.map(|(_, p)| p),
            changes: dedup,
        }
    }

    /// The plan in force at `ts`.
    pub fn plan_at(&self, ts: Millis) -> Option<Plan> {
        let after = self.changes.partition_point(|(t, _)| *t <= ts);
        match after {
            0 => self.profile_plan,
            n => Some(self.changes[n - 1].1),
        }
    }

    /// The history with no redundant step: the profile plan (`None` for "from the
    /// start"), then each instant at which the plan in force becomes a different plan.
    /// [`PlanHistory::plan_at`] is the same at every instant for the steps as for `self`.
    pub fn effective_changes(&self) -> Vec<(Option<Millis>, Plan)> {
        let mut steps: Vec<(Option<Millis>, Plan)> = self
            .profile_plan
            .map(|plan| (None, plan))
            .into_iter()
            .collect();
        let mut in_force = self.profile_plan;
        for &(ts, plan) in &self.changes {
            if in_force != Some(plan) {
                steps.push((Some(ts), plan));
                in_force = Some(plan);
            }
        }
        steps
    }

    /// Whether the plan in force is `paid` at any instant of `[from, to)`.
    pub fn paid_during(&self, from: Millis, to: Millis) -> bool {
        self.plan_at(from) == Some(Plan::Paid)
            || self
                .changes
                .iter()
                .any(|&(ts, plan)| from <= ts && ts < to && plan == Plan::Paid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_latest_change_at_or_before_an_instant_wins_else_the_profile() {
        let facts = [
            PlanFact::Profile((0, 0), Plan::Free),
            PlanFact::Change(100, (1, 0), Plan::Paid),
            PlanFact::Change(200, (1, 1), Plan::Free),
        ];
        let history = PlanHistory::from_facts(&facts);
        assert_eq!(history.plan_at(99), Some(Plan::Free), "before any change");
        assert_eq!(history.plan_at(100), Some(Plan::Paid), "at a change");
        assert_eq!(history.plan_at(199), Some(Plan::Paid));
        assert_eq!(history.plan_at(200), Some(Plan::Free));
        assert!(history.paid_during(0, 101));
        assert!(!history.paid_during(200, 300));
        assert!(history.paid_during(150, 160), "paid in force at the start");
    }

    #[test]
    fn effective_changes_drop_steps_to_the_plan_already_in_force() {
        let facts = [
            PlanFact::Profile((0, 0), Plan::Free),
            PlanFact::Change(50, (1, 0), Plan::Free),
            PlanFact::Change(100, (1, 1), Plan::Paid),
            PlanFact::Change(150, (1, 2), Plan::Paid),
            PlanFact::Change(200, (1, 3), Plan::Free),
        ];
        let history = PlanHistory::from_facts(&facts);
        let steps = history.effective_changes();
        assert_eq!(
            steps,
            vec![
                (None, Plan::Free),
                (Some(100), Plan::Paid),
                (Some(200), Plan::Free)
            ]
        );
        let rebuilt = PlanHistory {
            profile_plan: Some(Plan::Free),
            changes: steps
                .iter()
                .filter_map(|&(ts, p)| ts.map(|t| (t, p)))
                .collect(),
        };
        for ts in [0, 49, 50, 99, 100, 149, 150, 199, 200, 300] {
            assert_eq!(rebuilt.plan_at(ts), history.plan_at(ts), "at {ts}");
        }
    }

    #[test]
    fn the_latest_arrival_wins_for_profiles_and_for_changes_at_one_instant() {
        let facts = [
            PlanFact::Profile((3, 0), Plan::Paid),
            PlanFact::Profile((1, 0), Plan::Free),
            PlanFact::Change(50, (2, 0), Plan::Free),
            PlanFact::Change(50, (4, 0), Plan::Paid),
        ];
        let history = PlanHistory::from_facts(&facts);
        assert_eq!(history.profile_plan, Some(Plan::Paid));
        assert_eq!(history.changes, vec![(50, Plan::Paid)]);
        assert_eq!(
            PlanHistory::from_facts(&[]).plan_at(0),
            None,
            "no facts, no plan"
        );
    }
}
