//! The whole tidemark dataflow in one readable definition: parsed rows in, every
//! output table out as a differential collection.

use differential_dataflow::operators::ThresholdTotal;
use differential_dataflow::VecCollection;
use tidemark_inputs::records::{QuarantineRow, Subscription, UserRow};
use tidemark_inputs::time::{day_of, month_of_day};
use timely::dataflow::StreamVec;

use crate::actives::{daily_active, monthly_active};
use crate::ingest::{deduplicate, watermark_gate, BatchMark, RawEvent, Time};
use crate::kpis::kpis;
use crate::plans::Arrival;
use crate::retention::retention_cohorts;
use crate::rows::{DailyActiveRow, KpiRow, MonthlyActiveRow, RetentionRow, SessionRow, WindowRow};
use crate::sessions::sessions;
use crate::settings::Params;
use crate::windows::window_activity;

/// What the runtime feeds in, per worker.
pub struct Inputs<'s> {
    /// Valid event rows as read (before lateness and duplicate checks), at their batch's
    /// time, with +1; -1 retracts a row of an earlier batch (a re-ingested file).
    pub event_rows: StreamVec<'s, Time, (RawEvent, isize)>,
    /// One [`BatchMark`] per batch, from the worker that read it.
    pub batch_marks: StreamVec<'s, Time, BatchMark>,
    /// Valid `users/` rows with their arrival.
    pub users: VecCollection<'s, Time, (UserRow, Arrival)>,
    /// Valid `subscriptions/` rows with their arrival.
    pub subscriptions: VecCollection<'s, Time, (Subscription, Arrival)>,
    /// Rows and files rejected while reading.
    pub read_errors: VecCollection<'s, Time, QuarantineRow>,
}

/// Every output table, as a collection of typed rows.
pub struct Outputs<'s> {
    /// `sessions`.
    pub sessions: VecCollection<'s, Time, SessionRow>,
    /// `window_activity`.
    pub window_activity: VecCollection<'s, Time, WindowRow>,
    /// `daily_active`.
    pub daily_active: VecCollection<'s, Time, DailyActiveRow>,
    /// `monthly_active`.
    pub monthly_active: VecCollection<'s, Time, MonthlyActiveRow>,
    /// `retention_cohorts`.
    pub retention_cohorts: VecCollection<'s, Time, RetentionRow>,
    /// `kpis`.
    pub kpis: VecCollection<'s, Time, KpiRow>,
    /// `quarantine`.
    pub quarantine: VecCollection<'s, Time, QuarantineRow>,
}

/// Builds the dataflow: watermark gate, dedup, then every metric family.
pub fn build<'s>(inputs: Inputs<'s>, params: Params) -> Outputs<'s> {
    let (on_time, too_late) = watermark_gate(
        inputs.event_rows,
        inputs.batch_marks,
        params.allowed_lateness_ms,
    );
    let events = deduplicate(on_time);

    let sessions = sessions(events.clone(), params);
    let window_activity = window_activity(events.clone(), sessions.clone(), params.window_ms);

    let user_days = events
        .clone()
        .map(|e| (e.user_id, day_of(e.ts)))
        .distinct_total();
    let user_months = user_days
        .clone()
        .map(|(user, day)| (user, month_of_day(day)))
        .distinct_total()
        .arrange_by_key_named("UserMonths");
    let daily_active = daily_active(user_days);
    let monthly_active = monthly_active(
        user_months
            .clone()
            .as_collection(|user, month| (user.clone(), *month)),
        daily_active.clone(),
    );
    let retention_cohorts = retention_cohorts(user_months);

    let kpis = kpis(
        events,
        sessions.clone(),
        inputs.users,
        inputs.subscriptions,
        params,
    );
    let quarantine = inputs.read_errors.concat(too_late);

    Outputs {
        sessions,
        window_activity,
        daily_active,
        monthly_active,
        retention_cohorts,
        kpis,
        quarantine,
    }
}
