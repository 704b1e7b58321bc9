//! What `tidemark predict` knows of each user, read from the output tables
//! `user_activity_daily` and `user_plans`, and the features and labels it derives for
//! a cutoff (contract "Prediction").

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{bail, Context, Result};
use tidemark_dataflows::model::plans::PlanHistory;
use tidemark_dataflows::model::tables::{self, Cell, TableSpec};
use tidemark_inputs::records::Plan;
use tidemark_inputs::time::day_start;

use crate::sink::changes::changes_dir;
use crate::sink::reader::read_table;

/// Days in the feature window and in the label window.
pub const WINDOW_DAYS: i32 = 28;

/// One row of `user_activity_daily`.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct ActiveDay {
    /// Days since 1970-01-01.
    pub day: i32,
    /// Accepted events.
    pub events: i64,
    /// Accepted `skip` events.
    pub skips: i64,
    /// Sessions starting that day.
    pub sessions: i64,
    /// Their total duration in seconds.
    pub session_s: f64,
}

/// A user's activity days (sorted) and plan history.
#[derive(Clone, Debug, Default)]
pub struct UserHistory {
    /// Every day with accepted events, in day order.
    pub days: Vec<ActiveDay>,
    /// The plan in force at any instant.
    pub plans: PlanHistory,
}

/// Every user's history, by user id.
pub type Histories = BTreeMap<String, UserHistory>;

/// The names of the features, in the order of [`Features::values`].
pub const FEATURE_NAMES: [&str; 8] = [
    "sessions (log)",
    "active days",
    "events (log)",
    "mean session duration (log s)",
    "skip share",
    "paid at cutoff",
    "days since first seen",
    "days since last active",
];

/// One user's features at a cutoff, from the accepted events of the 28 days before it
/// (and, for "days since first seen", the first accepted event before the cutoff).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Features {
    /// Sessions starting in the window.
    pub sessions: i64,
    /// Days with accepted events in the window.
    pub active_days: i64,
    /// Accepted events in the window.
    pub events: i64,
    /// Mean duration of those sessions in seconds (0 without sessions).
    pub mean_session_s: f64,
    /// Skips / events in the window.
    pub skip_share: f64,
    /// On `paid` at the last instant before the cutoff.
    pub paid: bool,
    /// Days from the user's first active day to the cutoff.
    pub days_since_first_seen: i64,
    /// Days from the user's last active day in the window to the cutoff (1 = the day before).
    pub days_since_last_active: i64,
}

impl Features {
    /// The model's inputs, in [`FEATURE_NAMES`] order (heavy-tailed counts as log(1 + x)).
    pub fn values(&self) -> [f64; 8] {
        [
            (self.sessions as f64).ln_1p(),
            self.active_days as f64,
            (self.events as f64).ln_1p(),
            self.mean_session_s.ln_1p(),
            self.skip_share,
            f64::from(u8::from(self.paid)),
            self.days_since_first_seen as f64,
            self.days_since_last_active as f64,
        ]
    }
}

/// A user scored at a cutoff: features and, when the label window lies in the data,
/// whether the user came back.
#[derive(Clone, Debug)]
pub struct Example {
    /// The user.
    pub user_id: String,
    /// Features at the cutoff.
    pub features: Features,
    /// An accepted event in `[cutoff, cutoff + 28 days)`; none for the forecast.
    pub label: Option<bool>,
}

/// Reads both tables of `out` into per-user histories.
pub fn read_histories(out: &Path) -> Result<Histories> {
    for spec in [&tables::USER_ACTIVITY_DAILY, &tables::USER_PLANS] {
        if !changes_dir(out, spec.name).is_dir() {
            bail!(
                "{} has no change stream for `{}`: it is not an output of `tidemark run`, or \
                 an older tidemark wrote it. Run `tidemark run DATASET --out {} --overwrite` \
                 first.",
                out.display(),
                spec.name,
                out.display()
            );
        }
    }
    histories_from_rows(
        &read(out, &tables::USER_ACTIVITY_DAILY)?,
        &read(out, &tables::USER_PLANS)?,
    )
}

/// Per-user histories from the rows of `user_activity_daily` and `user_plans` (in
/// their specs' column order), however they were obtained.
pub fn histories_from_rows(daily: &[Vec<Cell>], plans: &[Vec<Cell>]) -> Result<Histories> {
    let mut histories = Histories::new();
    for row in daily {
        let day = ActiveDay {
            day: date(&row[1])?,
            events: int(&row[2])?,
            skips: int(&row[4])?,
            sessions: int(&row[5])?,
            session_s: float(&row[6])?,
        };
        histories.entry(text(&row[0])?).or_default().days.push(day);
    }
    for row in plans {
        let plan = Plan::parse(&text(&row[2])?).context("user_plans: a plan not free or paid")?;
        let plans = &mut histories.entry(text(&row[0])?).or_default().plans;
        match &row[1] {
            Cell::Timestamp(ts) => plans.changes.push((*ts, plan)),
            _ => plans.profile_plan = Some(plan),
        }
    }
    for history in histories.values_mut() {
        history.days.sort_by_key(|d| d.day);
        history.plans.changes.sort();
    }
    Ok(histories)
}

fn read(out: &Path, spec: &TableSpec) -> Result<Vec<Vec<Cell>>> {
    read_table(out, spec).with_context(|| format!("reading `{}` of {}", spec.name, out.display()))
}

fn text(cell: &Cell) -> Result<String> {
    match cell {
        Cell::Str(s) => Ok(s.to_string()),
        other => bail!("expected text, found {other:?}"),
    }
}

fn int(cell: &Cell) -> Result<i64> {
    match cell {
        Cell::Int(v) => Ok(*v),
        other => bail!("expected an integer, found {other:?}"),
    }
}

fn float(cell: &Cell) -> Result<f64> {
    match cell {
        Cell::Float(v) => Ok(*v),
        other => bail!("expected a number, found {other:?}"),
    }
}

fn date(cell: &Cell) -> Result<i32> {
    match cell {
        Cell::Date(d) => Ok(*d),
        other => bail!("expected a date, found {other:?}"),
    }
}

/// The day after the latest active day of any user: where the data ends.
pub fn data_end(histories: &Histories) -> Option<i32> {
    histories
        .values()
        .filter_map(|h| h.days.last())
        .map(|d| d.day + 1)
        .max()
}

/// The first day with an accepted event of any user.
pub fn data_start(histories: &Histories) -> Option<i32> {
    histories
        .values()
        .filter_map(|h| h.days.first())
        .map(|d| d.day)
        .min()
}

/// A user's features at `cutoff` (a day), if the user was active in the 28 days before.
pub fn features_at(history: &UserHistory, cutoff: i32) -> Option<Features> {
    let window: Vec<&ActiveDay> = history
        .days
        .iter()
        .filter(|d| cutoff - WINDOW_DAYS <= d.day && d.day < cutoff)
        .collect();
    let last = window.last()?;
    let first_seen = history.days.first()?.day;
    let sessions: i64 = window.iter().map(|d| d.sessions).sum();
    let events: i64 = window.iter().map(|d| d.events).sum();
    let skips: i64 = window.iter().map(|d| d.skips).sum();
    let session_s: f64 = window.iter().map(|d| d.session_s).sum();
    Some(Features {
        sessions,
        active_days: window.len() as i64,
        events,
        mean_session_s: if sessions > 0 {
            session_s / sessions as f64
        } else {
            0.0
        },
        skip_share: skips as f64 / events as f64,
        paid: history.plans.plan_at(day_start(cutoff) - 1) == Some(Plan::Paid),
        days_since_first_seen: i64::from(cutoff - first_seen),
        days_since_last_active: i64::from(cutoff - last.day),
    })
}

/// Whether the user has an accepted event in `[cutoff, cutoff + 28 days)`.
pub fn came_back(history: &UserHistory, cutoff: i32) -> bool {
    history
        .days
        .iter()
        .any(|d| cutoff <= d.day && d.day < cutoff + WINDOW_DAYS)
}

/// Every user active in the 28 days before `cutoff`, with features and, if `labelled`,
/// the label; in user order.
pub fn examples(histories: &Histories, cutoff: i32, labelled: bool) -> Vec<Example> {
    histories
        .iter()
        .filter_map(|(user, history)| {
            features_at(history, cutoff).map(|features| Example {
                user_id: user.clone(),
                features,
                label: labelled.then(|| came_back(history, cutoff)),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(day: i32, events: i64, skips: i64, sessions: i64, session_s: f64) -> ActiveDay {
        ActiveDay {
            day,
            events,
            skips,
            sessions,
            session_s,
        }
    }

    #[test]
    fn features_come_from_the_window_before_the_cutoff_only() {
        let history = UserHistory {
            days: vec![
                day(10, 5, 0, 1, 100.0), // before the window: only "first seen"
                day(80, 4, 1, 2, 60.0),
                day(99, 6, 3, 1, 30.0),
                day(100, 50, 50, 9, 999.0), // the cutoff day: label window
            ],
            plans: PlanHistory {
                profile_plan: Some(Plan::Free),
                changes: vec![
                    (day_start(100) - 1, Plan::Paid),
                    (day_start(100), Plan::Free),
                ],
            },
        };
        let f = features_at(&history, 100).unwrap();
        assert_eq!(f.sessions, 3);
        assert_eq!(f.active_days, 2);
        assert_eq!(f.events, 10);
        assert!((f.mean_session_s - 30.0).abs() < 1e-9);
        assert!((f.skip_share - 0.4).abs() < 1e-9);
        assert!(f.paid, "paid at the last instant before the cutoff");
        assert_eq!(f.days_since_first_seen, 90);
        assert_eq!(f.days_since_last_active, 1);
        assert!(came_back(&history, 100));
        assert!(!came_back(&history, 101 + WINDOW_DAYS));
        assert_eq!(features_at(&history, 72), None, "no activity in [44, 72)");
        assert_eq!(data_end(&[("u".to_string(), history)].into()), Some(101));
    }
}
