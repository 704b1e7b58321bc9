//! Session spikes (contract `spike_alerts`): "a row per `window_activity` row ...
//! Baseline = the 12 window slots immediately before, empty slots counting 0, p95 by
//! linear interpolation (Spark `percentile`); windows with fewer than 12 slots since
//! the first window carry nulls and spike = false". The slot count and the percentile
//! are the settings `baseline_windows` and `baseline_percentile`.
//!
//! Beyond the contract, the seasonal rule (`alert`, `alert_baseline`,
//! `alert_threshold`): a window alerts when it started at least `alert_min_sessions`
//! sessions and more than `median + alert_deviations * scale` of the same window on each
//! of the previous `alert_days` days (see [`alert_verdict`]). It knows the time of day,
//! and a quiet hour's 2 sessions against a baseline of 0 do not alert.
//!
//! Each window sends its `sessions_started` into the baseline slots of the windows that
//! follow it, and into the same window of the next `alert_days` days, and the first window marks the windows still warming up; one reduce per
//! window combines its own count, its slots and the mark. A late change to one window
//! therefore touches only the windows whose baseline holds it, and a new first window
//! only the warm-up windows it moves.

use differential_dataflow::VecCollection;
use serde::{Deserialize, Serialize};
use tidemark_records::records::Millis;
use tidemark_records::time::day_of;

use crate::metrics::window_activity::WindowRow;
use crate::model::settings::Params;
use crate::model::tables::{col, opt, Cell, ColumnType, TableRow, TableSpec};
use crate::operators::arrange::ByKeyRuns;
use crate::operators::expiry::{reduce_until_closed, Watermarks};
use crate::operators::gate::Time;

/// One input of a window's alert, combined per window start.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
enum AlertPart {
    /// The window lies within `baseline_windows` slots of the first window.
    WarmingUp,
    /// The window's own `sessions_started` (present only for existing windows).
    Own(i64),
    /// A non-zero `sessions_started` of the window this many slots before.
    Slot(i64, i64),
    /// A non-zero `sessions_started` of the same window this many days before.
    Day(i64, i64),
    /// The window lies within `alert_days` days of the first window: only this many
    /// earlier days have data.
    History(i64),
}

/// The start of the earliest window: the least window start of each day, then the
/// least of those, so that a change re-reads one day's windows and the list of days.
fn first_window<'s>(
    windows: VecCollection<'s, Time, WindowRow>,
) -> VecCollection<'s, Time, Millis> {
    windows
        .map(|row| (day_of(row.start), row.start))
        .reduce_runs("FirstWindowOfDay", |_day, starts, output| {
            output.push((*starts[0].0, 1isize))
        })
        .map(|(_day, start)| ((), start))
        .reduce_runs("FirstWindow", |_unit, starts, output| {
            output.push((*starts[0].0, 1isize))
        })
        .map(|((), start)| start)
}

/// The baseline statistics of one window from its non-zero slot counts.
pub fn baseline(mut counts: Vec<i64>, slots: usize, percentile: f64) -> Baseline {
    counts.resize(slots, 0);
    counts.sort_unstable();
    let position = percentile * (slots - 1) as f64;
    let below = position.floor() as usize;
    let above = position.ceil() as usize;
    Baseline {
        slots: slots as i64,
        sum: counts.iter().sum(),
        below: counts[below],
        above: counts[above],
        fraction_bits: (position - below as f64).to_bits(),
    }
}

/// The fewest earlier days the seasonal rule needs before it judges a window.
pub fn alert_min_days(params: &Params) -> usize {
    params.alert_days.min(3)
}

/// Windows in a day (at least 1): "the same window a day before" lies this many
/// windows back.
pub fn windows_per_day(params: &Params) -> i64 {
    (tidemark_records::time::DAY_MS / params.window_ms).max(1)
}

/// The seasonal rule on one window: `samples` are its `sessions_started` on each earlier
/// day that has data (empty windows count 0). The baseline is their median; the scale is
/// the largest of 1.4826 times their median absolute deviation, the square root of the
/// baseline (Poisson noise) and 1. The window alerts when it started at least
/// `alert_min_sessions` sessions and more than `baseline + alert_deviations * scale`.
pub fn alert_verdict(sessions_started: i64, samples: &mut [i64], params: &Params) -> Alert {
    fn median(sorted: &[f64]) -> f64 {
        let n = sorted.len();
        if n % 2 == 1 {
            sorted[n / 2]
        } else {
            (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
        }
    }
    samples.sort_unstable();
    let values: Vec<f64> = samples.iter().map(|&v| v as f64).collect();
    let baseline = median(&values);
    let mut deviations: Vec<f64> = values.iter().map(|v| (v - baseline).abs()).collect();
    deviations.sort_by(f64::total_cmp);
    let scale = (1.4826 * median(&deviations)).max(baseline.sqrt()).max(1.0);
    let threshold = baseline + params.alert_deviations * scale;
    Alert {
        baseline_bits: baseline.to_bits(),
        threshold_bits: threshold.to_bits(),
        alert: sessions_started >= params.alert_min_sessions && sessions_started as f64 > threshold,
    }
}

/// The `spike_alerts` table from the `window_activity` rows. A window's alert is final
/// once the watermark passes the window's end (its baseline windows come before it);
/// its inputs are then retired (see [`crate::operators::expiry`]) and its row stays.
pub fn spike_alerts<'s>(
    windows: VecCollection<'s, Time, WindowRow>,
    watermarks: &Watermarks<'s>,
    params: Params,
) -> VecCollection<'s, Time, SpikeRow> {
    let slots = params.baseline_windows;
    let n = slots as i64;
    let window_ms = params.window_ms;
    let percentile = params.baseline_percentile;

    let days = params.alert_days as i64;
    let per_day = windows_per_day(&params);
    let first = first_window(windows.clone());
    let history = first.clone().flat_map(move |first| {
        (0..days * per_day).map(move |i| (first + i * window_ms, AlertPart::History(i / per_day)))
    });
    let warming_up = first
        .flat_map(move |first| (0..n).map(move |i| (first + i * window_ms, AlertPart::WarmingUp)));
    let day_counts = windows.clone().flat_map(move |row| {
        let count = row.sessions_started;
        (1..=days).filter(move |_| count != 0).map(move |j| {
            (
                row.start + j * per_day * window_ms,
                AlertPart::Day(j, count),
            )
        })
    });
    let own = windows
        .clone()
        .map(|row| (row.start, AlertPart::Own(row.sessions_started)));
    let slot_counts = windows.flat_map(move |row| {
        let count = row.sessions_started;
        (1..=n)
            .filter(move |_| count != 0)
            .map(move |i| (row.start + i * window_ms, AlertPart::Slot(i, count)))
    });
    let parts = own
        .concat(slot_counts)
        .concat(warming_up)
        .concat(day_counts)
        .concat(history);
    reduce_until_closed(
        parts,
        watermarks,
        move |start: &Millis| Some(start + window_ms),
        "SpikeAlerts",
        move |&start, parts, output| {
            let mut own = None;
            let mut warming_up = false;
            let mut counts = Vec::with_capacity(slots);
            let mut earlier_days = days;
            let mut day_samples = Vec::new();
            for (part, multiplicity) in parts {
                let repeat = (*multiplicity).max(0) as usize;
                match part {
                    AlertPart::WarmingUp => warming_up = true,
                    AlertPart::Own(count) => own = Some(*count),
                    AlertPart::Slot(_, count) => counts.extend(std::iter::repeat_n(*count, repeat)),
                    AlertPart::Day(j, count) => {
                        day_samples.extend(std::iter::repeat_n((*j, *count), repeat))
                    }
                    AlertPart::History(depth) => earlier_days = earlier_days.min(*depth),
                }
            }
            if let Some(sessions_started) = own {
                let baseline = (!warming_up).then(|| baseline(counts, slots, percentile));
                let alert = (earlier_days >= alert_min_days(&params) as i64).then(|| {
                    // Days with data and no sessions count 0; days before the first window
                    // do not count.
                    let mut samples = vec![0i64; earlier_days as usize];
                    for (j, count) in day_samples {
                        if j <= earlier_days {
                            samples[(j - 1) as usize] = count;
                        }
                    }
                    alert_verdict(sessions_started, &mut samples, &params)
                });
                output.push((
                    SpikeRow {
                        start,
                        sessions_started,
                        baseline,
                        alert,
                    },
                    1isize,
                ));
            }
        },
    )
    .map(|(_start, row)| row)
}

/// The baseline of a window's spike alert, kept exact: the percentile is
/// `below + fraction * (above - below)` over the sorted slot counts.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Baseline {
    /// Number of slots (empty slots count 0).
    pub slots: i64,
    /// Sum of the slots' `sessions_started`.
    pub sum: i64,
    /// The sorted slot value at the floor of the percentile's position.
    pub below: i64,
    /// The sorted slot value at the ceiling of the percentile's position.
    pub above: i64,
    /// The position's fractional part, as `f64::to_bits` (so the row stays `Ord`).
    pub fraction_bits: u64,
}

impl Baseline {
    /// Mean of the slots.
    pub fn mean(&self) -> f64 {
        self.sum as f64 / self.slots as f64
    }

    /// The percentile by linear interpolation between the closest ranks.
    pub fn percentile(&self) -> f64 {
        let fraction = f64::from_bits(self.fraction_bits);
        self.below as f64 + fraction * (self.above - self.below) as f64
    }
}

/// The verdict of the seasonal spike rule on one window (`alert` and its figures),
/// kept as bits so that the row stays `Ord`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Alert {
    /// The baseline (median of the same window on earlier days), as `f64::to_bits`.
    pub baseline_bits: u64,
    /// The count to exceed, as `f64::to_bits`.
    pub threshold_bits: u64,
    /// Whether the window alerts.
    pub alert: bool,
}

/// `spike_alerts`: one row per `window_activity` row.
pub const SPIKE_ALERTS: TableSpec = TableSpec {
    name: "spike_alerts",
    columns: &[
        col("window_start", ColumnType::Timestamp),
        col("sessions_started", ColumnType::Int),
        opt("recent_avg", ColumnType::Float),
        opt("recent_p95", ColumnType::Float),
        col("spike", ColumnType::Bool),
        opt("alert", ColumnType::Bool),
        opt("alert_baseline", ColumnType::Float),
        opt("alert_threshold", ColumnType::Float),
    ],
    key_len: 1,
};

/// The spike alert of one window.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct SpikeRow {
    /// Window start.
    pub start: Millis,
    /// Sessions started in the window.
    pub sessions_started: i64,
    /// The baseline, or none while fewer slots than the baseline lie since the first window.
    pub baseline: Option<Baseline>,
    /// The seasonal rule's verdict, or none while too few earlier days lie since the
    /// first window.
    pub alert: Option<Alert>,
}

impl TableRow for SpikeRow {
    const SPEC: TableSpec = SPIKE_ALERTS;
    fn cells(&self) -> Vec<Cell> {
        let percentile = self.baseline.as_ref().map(Baseline::percentile);
        vec![
            Cell::Timestamp(self.start),
            Cell::Int(self.sessions_started),
            Cell::opt_float(self.baseline.as_ref().map(Baseline::mean)),
            Cell::opt_float(percentile),
            Cell::Bool(percentile.is_some_and(|p| self.sessions_started as f64 > p)),
            self.alert
                .as_ref()
                .map_or(Cell::Null, |a| Cell::Bool(a.alert)),
            Cell::opt_float(self.alert.as_ref().map(|a| f64::from_bits(a.baseline_bits))),
            Cell::opt_float(
                self.alert
                    .as_ref()
                    .map(|a| f64::from_bits(a.threshold_bits)),
            ),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_baseline_counts_missing_slots_as_zero_and_interpolates() {
        // Slots [0, 1, 2] (one empty): p95 at position 1.9 = 1 + 0.9 * (2 - 1).
        let b = baseline(vec![2, 1], 3, 0.95);
        assert_eq!((b.slots, b.sum), (3, 3));
        assert!((b.percentile() - 1.9).abs() < 1e-12);
        assert!((b.mean() - 1.0).abs() < 1e-12);
    }

    #[test]
    fn an_alert_needs_the_minimum_and_more_than_the_threshold() {
        let params = Params::default();
        // Median 2, deviations [0, 1, 0] -> MAD 0; scale max(0, sqrt 2, 1) = sqrt 2.
        let verdict = alert_verdict(20, &mut [3, 2, 2], &params);
        let threshold = f64::from_bits(verdict.threshold_bits);
        assert!((threshold - (2.0 + params.alert_deviations * 2f64.sqrt())).abs() < 1e-12);
        assert_eq!(f64::from_bits(verdict.baseline_bits), 2.0);
        assert!(verdict.alert);
        assert!(!alert_verdict(threshold.floor() as i64, &mut [3, 2, 2], &params).alert);
        // Far above a baseline of 0, but below the minimum number of sessions.
        assert!(!alert_verdict(params.alert_min_sessions - 1, &mut [0, 0, 0], &params).alert);
    }

    #[test]
    fn the_median_of_an_even_number_of_days_is_the_mean_of_the_middle_two() {
        let verdict = alert_verdict(0, &mut [1, 4, 2, 9], &Params::default());
        assert_eq!(f64::from_bits(verdict.baseline_bits), 3.0);
    }
}
