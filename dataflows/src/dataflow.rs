//! The whole tidemark dataflow in one readable definition: parsed rows in, every
//! output table out as a differential collection.

use differential_dataflow::operators::ThresholdTotal;
use differential_dataflow::VecCollection;
use tidemark_inputs::records::{QuarantineRow, Subscription, UserRow};
use tidemark_inputs::time::{day_of, month_of_day};
use timely::dataflow::StreamVec;

use crate::actives::{daily_active, monthly_active};
use crate::adoption::feature_adoption;
use crate::event_mix::{day_types, event_mix_daily, skip_rate_daily};
use crate::ingest::{
    deduplicate, deduplicate_with_retractions, watermark_gate, BatchMark, RawEvent, Time,
};
use crate::kpis::kpis;
use crate::plans::Arrival;
use crate::retention::retention_cohorts;
use crate::rows::{
    DailyActiveRow, EventMixRow, FeatureAdoptionRow, KpiRow, MonthlyActiveRow, RetentionRow,
    SegmentRow, SessionDailyRow, SessionRow, SkipRateRow, SpikeRow, WindowRow,
};
use crate::segments::engagement_by_segment;
use crate::session_metrics::session_metrics_daily;
use crate::sessions::sessions;
use crate::settings::Params;
use crate::spikes::spike_alerts;
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
    /// Whether `event_rows` may carry retractions (`--reingest-changed`); selects the
    /// retraction-safe deduplication instead of the streaming one.
    pub retractions: bool,
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
    /// `spike_alerts`.
    pub spike_alerts: VecCollection<'s, Time, SpikeRow>,
    /// `session_metrics_daily`.
    pub session_metrics_daily: VecCollection<'s, Time, SessionDailyRow>,
    /// `event_mix_daily`.
    pub event_mix_daily: VecCollection<'s, Time, EventMixRow>,
    /// `skip_rate_daily` (beyond the contract).
    pub skip_rate_daily: VecCollection<'s, Time, SkipRateRow>,
    /// `feature_adoption`.
    pub feature_adoption: VecCollection<'s, Time, FeatureAdoptionRow>,
    /// `engagement_by_segment`.
    pub engagement_by_segment: VecCollection<'s, Time, SegmentRow>,
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
    let events = if inputs.retractions {
        deduplicate_with_retractions(on_time)
    } else {
        deduplicate(on_time)
    };

    let sessions = sessions(events.clone(), params);
    let window_activity = window_activity(events.clone(), sessions.clone(), params.window_ms);
    let spike_alerts = spike_alerts(window_activity.clone(), params);
    let session_metrics_daily = session_metrics_daily(sessions.clone());

    // Distinct (user, day) and (user, month) pairs; the latter arranged once by user and
    // read by monthly actives, cohorts and segments.
    let user_days = events
        .clone()
        .map(|e| (e.user_id, day_of(e.ts)))
        .distinct_total();
    let user_months = user_days
        .clone()
        .map(|(user, day)| (user, month_of_day(day)))
        .distinct_total()
        .arrange_by_key_named("UserMonths");
    let daily_active = daily_active(user_days.clone());
    let monthly_active = monthly_active(
        user_months
            .clone()
            .as_collection(|user, month| (user.clone(), *month)),
        daily_active.clone(),
    );
    let retention_cohorts = retention_cohorts(user_months.clone());

    // Accepted events by (day, type), arranged once for the event mix and the skip rate.
    let day_types = day_types(events.clone());
    let event_mix_daily = event_mix_daily(day_types.clone());
    let skip_rate_daily = skip_rate_daily(day_types);
    let feature_adoption = feature_adoption(
        events.clone(),
        user_days,
        event_mix_daily.clone(),
        daily_active.clone(),
    );

    let engagement_by_segment = engagement_by_segment(
        events.clone(),
        user_months,
        inputs.users.clone(),
        inputs.subscriptions.clone(),
    );
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
        spike_alerts,
        session_metrics_daily,
        event_mix_daily,
        skip_rate_daily,
        feature_adoption,
        engagement_by_segment,
        quarantine,
    }
}
