//! The whole tidemark dataflow in one readable definition: parsed rows in, every
//! output table out as a differential collection.

use differential_dataflow::VecCollection;
use tidemark_records::records::{Item, QuarantineRow, Subscription, UserRow};
use tidemark_records::time::month_of_day;
use timely::dataflow::operators::vec::Filter;
use timely::dataflow::StreamVec;

use crate::metrics::actives::{daily_active, monthly_active};
use crate::metrics::engagement_by_dimension::engagement_by_dimension;
use crate::metrics::engagement_by_segment::engagement_by_segment;
use crate::metrics::event_mix::{day_types, event_mix_daily, skip_rate_daily};
use crate::metrics::feature_adoption::feature_adoption;
use crate::metrics::kpis::kpis;
use crate::metrics::retention_cohorts::retention_cohorts;
use crate::metrics::session_metrics_daily::session_metrics_daily;
use crate::metrics::sessions::sessions;
use crate::metrics::spike_alerts::spike_alerts;
use crate::metrics::user_facts::{user_activity_daily, user_plans};
use crate::metrics::window_activity::window_activity;
use crate::model::action::{user_day_types, ActionsByUser};
use crate::model::name::Name;
use crate::model::plans::{plan_facts, Arrival};
use crate::model::settings::Params;
use crate::model::tables::{TableRow, TableSpec};
use crate::operators::arrange::arrange_by_key;
use crate::operators::combine::combine;
use crate::operators::expiry::{
    day_end, distinct_until_closed, drop_closed, earliest_per_key, month_end, retire_behind,
};
use crate::operators::gate::{
    deduplicate, deduplicate_with_retractions, watermark_gate, BatchMark, Time, UnitRows,
};
use crate::operators::totals::HashTotals;

/// What the runtime feeds in, per worker.
pub struct Inputs<'s> {
    /// Valid event rows as read (before lateness and duplicate checks), a unit's rows
    /// per record, at their batch's time, with +1; -1 retracts the rows of an earlier
    /// batch (a re-ingested file).
    pub event_rows: StreamVec<'s, Time, (UnitRows, isize)>,
    /// One [`BatchMark`] per batch, from the worker that read it.
    pub batch_marks: StreamVec<'s, Time, BatchMark>,
    /// Valid `users/` rows with their arrival.
    pub users: VecCollection<'s, Time, (UserRow, Arrival)>,
    /// Valid `subscriptions/` rows with their arrival.
    pub subscriptions: VecCollection<'s, Time, (Subscription, Arrival)>,
    /// Valid `items/` rows with their arrival.
    pub items: VecCollection<'s, Time, (Item, Arrival)>,
    /// Rows and files rejected while reading.
    pub read_errors: VecCollection<'s, Time, QuarantineRow>,
    /// Whether `event_rows` may carry retractions (`--reingest-changed`); selects the
    /// retraction-safe deduplication instead of the streaming one.
    pub retractions: bool,
}

/// The one list of output tables: calls the macro `$callback` with every table as
/// `name: RowType`, in the order the tables are written. [`Outputs`] (one field per
/// table, named after it), [`WRITTEN_TABLES`], the runtime's sinks, the test harness
/// and the benches all expand from it, so that a new table is added to this list, its
/// row type and its metric module, and [`build`] computes it:
///
/// ```ignore
/// macro_rules! sinks { ($($table:ident: $row:ty),*) => {$( attach(outputs.$table); )*} }
/// tidemark_dataflows::for_each_table!(sinks);
/// ```
#[macro_export]
macro_rules! for_each_table {
    ($callback:ident) => {
        $callback! {
            sessions: $crate::metrics::sessions::SessionRow,
            window_activity: $crate::metrics::window_activity::WindowRow,
            daily_active: $crate::metrics::actives::DailyActiveRow,
            monthly_active: $crate::metrics::actives::MonthlyActiveRow,
            retention_cohorts: $crate::metrics::retention_cohorts::RetentionRow,
            kpis: $crate::metrics::kpis::KpiRow,
            spike_alerts: $crate::metrics::spike_alerts::SpikeRow,
            session_metrics_daily: $crate::metrics::session_metrics_daily::SessionDailyRow,
            event_mix_daily: $crate::metrics::event_mix::EventMixRow,
            skip_rate_daily: $crate::metrics::event_mix::SkipRateRow,
            feature_adoption: $crate::metrics::feature_adoption::FeatureAdoptionRow,
            engagement_by_segment: $crate::metrics::engagement_by_segment::SegmentRow,
            engagement_by_dimension: $crate::metrics::engagement_by_dimension::DimensionRow,
            user_activity_daily: $crate::metrics::user_facts::UserDailyRow,
            user_plans: $crate::metrics::user_facts::UserPlanRow,
            quarantine: $crate::model::rows::QuarantineRow
        }
    };
}

macro_rules! outputs {
    ($($table:ident: $row:ty),*) => {
        /// Every output table, as a collection of typed rows: one field per table of
        /// [`for_each_table!`], named after the table.
        pub struct Outputs<'s> {
            $(
                #[doc = concat!("`", stringify!($table), "`.")]
                pub $table: VecCollection<'s, Time, $row>,
            )*
        }

        /// The tables a run writes, in the order of [`for_each_table!`].
        pub const WRITTEN_TABLES: &[TableSpec] = &[$(<$row as TableRow>::SPEC),*];
    };
}
for_each_table!(outputs);

/// Builds the dataflow: watermark gate, dedup, then every metric family. State behind
/// the watermark is retired as it closes (see [`crate::operators::expiry`]).
pub fn build<'s>(inputs: Inputs<'s>, params: Params) -> Outputs<'s> {
    let (on_time, too_late, watermarks) = watermark_gate(
        inputs.event_rows,
        inputs.batch_marks,
        params.allowed_lateness_ms,
    );
    // A re-ingested file may take back rows behind the watermark: then nothing is retired
    // and first values are kept by reduces that can take retractions.
    let insert_only = !inputs.retractions;
    let watermarks = watermarks.filter(move |_| insert_only);
    let events = if inputs.retractions {
        deduplicate_with_retractions(on_time)
    } else {
        deduplicate(on_time, &watermarks, params.forget_behind_watermark)
    };
    // Accepted events move once to their users' workers: every metric reads them there
    // (those keyed by user with no exchange of their own).
    let by_user = ActionsByUser::exchange(events);
    let events = by_user.collection();

    let sessions = sessions(events.clone(), &watermarks, params, insert_only);
    let window_activity = window_activity(
        events.clone(),
        sessions.clone(),
        &watermarks,
        params.window_ms,
    );
    let spike_alerts = spike_alerts(window_activity.clone(), &watermarks, params);
    let session_metrics_daily = session_metrics_daily(sessions.clone());

    // Accepted events as (user, day, type) counts, made once for the day facts.
    let user_day_types = user_day_types(events.clone());
    // Distinct (user, day) pairs, and each user's first active day (cohorts, adoption).
    let user_days = distinct_until_closed(
        combine(
            user_day_types.clone().map(|(user, day, _type)| (user, day)),
            "CombineUserDays",
        ),
        &watermarks,
        |(_user, day)| Some(day_end(*day)),
    );
    let first_days = earliest_per_key(user_days.clone(), insert_only, "FirstActiveDay");
    // Distinct (user, month) pairs of months still open, arranged once by user for the
    // cohorts; `all_user_months` keeps closed months too.
    let month_end_of = |(_user, month): &(Name, i32)| Some(month_end(*month));
    let open_user_months = arrange_by_key(
        retire_behind(
            user_days
                .clone()
                .map(|(user, day)| (user, month_of_day(day))),
            &watermarks,
            month_end_of,
        )
        .distinct_by_hash(),
        "UserMonths",
    );
    let all_user_months = drop_closed(
        open_user_months
            .clone()
            .as_collection(|user, month| (*user, *month)),
        &watermarks,
        month_end_of,
    );
    let daily_active = daily_active(user_days.clone());
    let monthly_active = monthly_active(all_user_months.clone(), daily_active.clone());
    let retention_cohorts = retention_cohorts(
        open_user_months.clone(),
        first_days
            .clone()
            .map(|(user, day)| (user, month_of_day(day))),
        &watermarks,
    );

    // Accepted events by (day, type), arranged once for the event mix and the skip rate.
    let day_types = day_types(user_day_types.clone());
    let event_mix_daily = event_mix_daily(day_types.clone());
    let skip_rate_daily = skip_rate_daily(day_types);
    let feature_adoption = feature_adoption(
        user_day_types.clone(),
        first_days,
        event_mix_daily.clone(),
        daily_active.clone(),
        insert_only,
    );

    // Segments keep every month's facts unless closed months may be forgotten.
    let segment_months = if params.forget_behind_watermark {
        open_user_months
    } else {
        arrange_by_key(all_user_months.clone(), "AllUserMonths")
    };
    let engagement_by_segment = engagement_by_segment(
        by_user.clone(),
        segment_months,
        inputs.users.clone(),
        inputs.subscriptions.clone(),
        &watermarks,
        params.forget_behind_watermark,
    );
    let engagement_by_dimension = engagement_by_dimension(
        by_user,
        inputs.users.clone(),
        inputs.items,
        params.dimensions,
        &watermarks,
        params.forget_behind_watermark,
    );
    let plan_facts = plan_facts(inputs.users, inputs.subscriptions);
    let user_activity_daily = user_activity_daily(user_day_types, sessions.clone());
    let user_plans = user_plans(plan_facts.clone());
    let kpis = kpis(events, user_days, sessions.clone(), plan_facts, params);
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
        engagement_by_dimension,
        user_activity_daily,
        user_plans,
        quarantine,
    }
}
