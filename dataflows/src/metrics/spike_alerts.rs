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
//! The windows are grouped by day (a run of `windows per day` windows; the UTC day
//! when a day holds a whole number of windows), and one reduce per day computes the
//! rows of its windows. Each window sends its `sessions_started` to its own day and to
//! the days whose windows look back at it (the next `alert_days` days, and the next day
//! when the baseline slots cross midnight), and the first window to the days whose
//! windows are still warming up or have fewer earlier days. A late change to one
//! window therefore recomputes those few days, each from about a day's windows per day
//! it looks back, while a backfill arranges a window's count a few times, not once per
//! slot and day that reads it.

use differential_dataflow::VecCollection;
use serde::{Deserialize, Serialize};
use tidemark_records::records::Millis;
use tidemark_records::time::day_of;

use crate::metrics::window_activity::WindowRow;
use crate::model::settings::Params;
use crate::model::tables::{col, opt, Cell, ColumnType, TableRow, TableSpec};
use crate::operators::expiry::{reduce_until_closed, Watermarks};
use crate::operators::gate::Time;
use crate::operators::reduce::HashReduce;

/// One input of a day's alerts, combined per day.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
enum DayPart {
    /// A window of the day, or of an earlier day that its windows look back at: its
    /// start and `sessions_started`.
    Window(Millis, i64),
    /// The start of the first window, for the days within reach of it (warming up, or
    /// with fewer earlier days).
    First(Millis),
}

/// The start of the earliest window: the least window start of each day, then the
/// least of those, so that a change re-reads one day's windows and the list of days.
fn first_window<'s>(
    windows: VecCollection<'s, Time, WindowRow>,
) -> VecCollection<'s, Time, Millis> {
    windows
        .map(|row| (day_of(row.start), row.start))
        .reduce_by_hash("FirstWindowOfDay", |_day, starts, output| {
            output.push((starts[0].0, 1isize))
        })
        .map(|(_day, start)| ((), start))
        .reduce_by_hash("FirstWindow", |_unit, starts, output| {
            output.push((starts[0].0, 1isize))
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
    // A day of windows, and the day a window start falls in.
    let span = per_day * window_ms;
    let day_of_window = move |start: Millis| start.div_euclid(span);
    let first = first_window(windows.clone());
    // The first window reaches the days of the windows within `n` slots (warming up)
    // or `days` days of it (fewer earlier days); later windows have neither.
    let reach_of_first = first.flat_map(move |first| {
        let last = day_of_window(first + (n - 1) * window_ms)
            .max(day_of_window(first + (days * per_day - 1) * window_ms));
        (day_of_window(first)..=last).map(move |day| (day, DayPart::First(first)))
    });
    // A window reaches its own day and, if it started any session, the days whose
    // baseline slots or earlier days hold it.
    let reach_of_windows = windows.flat_map(move |row| {
        let (start, count) = (row.start, row.sessions_started);
        let own = day_of_window(start);
        let last = if count == 0 {
            own
        } else {
            (own + days).max(day_of_window(start + n * window_ms))
        };
        (own..=last).map(move |day| (day, DayPart::Window(start, count)))
    });
    reduce_until_closed(
        reach_of_windows.concat(reach_of_first),
        watermarks,
        move |day: &i64| Some((day + 1) * span),
        "SpikeAlerts",
        move |&day, parts, output| {
            // The windows by start (parts come sorted), and the first window if this
            // day is within its reach.
            let mut counts: Vec<(Millis, i64)> = Vec::with_capacity(parts.len());
            let mut first = None;
            for (part, multiplicity) in parts {
                match part {
                    DayPart::Window(start, count) if *multiplicity > 0 => {
                        counts.push((*start, *count))
                    }
                    DayPart::Window(..) => {}
                    DayPart::First(start) => first = Some(*start),
                }
            }
            let count_at = |start: Millis| {
                counts
                    .binary_search_by_key(&start, |(s, _)| *s)
                    .map_or(0, |at| counts[at].1)
            };
            for &(start, sessions_started) in &counts {
                if day_of_window(start) != day {
                    continue;
                }
                // Slots since the first window (every window is at or after it).
                let since_first = first.map(|first| (start - first) / window_ms);
                let baseline = since_first.is_none_or(|i| i >= n).then(|| {
                    let counts = (1..=n)
                        .map(|i| count_at(start - i * window_ms))
                        .filter(|count| *count != 0)
                        .collect();
                    baseline(counts, slots, percentile)
                });
                // Earlier days with data: days before the first window do not count.
                let earlier_days = since_first.map_or(days, |i| days.min(i / per_day));
                let alert = (earlier_days >= alert_min_days(&params) as i64).then(|| {
                    // Days with data and no sessions count 0.
                    let mut samples: Vec<i64> = (1..=earlier_days)
                        .map(|j| count_at(start - j * span))
                        .collect();
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
    .map(|(_day, row)| row)
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

    /// The percentile by linear interpolation between the closest ranks, in the
    /// arithmetic of Spark's `percentile` (4.3.0's `PercentileBase.getPercentile`:
    /// `lower + (position - floor) * (upper - lower)`): where the count equals the
    /// exact percentile, another rounding flips `spike` (DuckDB's `quantile_cont` gives
    /// 159.99999999999997 where Spark and this give 160).
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
    fn the_percentile_rounds_as_sparks() {
        // 12 slots, p95 at position 11 * 0.95 = 10.45 between the sorted counts at
        // ranks 10 and 11. PySpark 4.3.0, `SELECT percentile(n, 0.95)` over these
        // values, returns exactly 160.0 and 131.0; the same interpolation written
        // `(11 - pos) * lower + (pos - 10) * upper` gives 130.99999999999997 for the
        // second, and DuckDB's `quantile_cont` 159.99999999999997 for the first: a
        // window starting 160 or 131 sessions would be called a spike there.
        let counts = vec![126, 99, 107, 132, 143, 132, 122, 139, 135, 151, 117, 171];
        assert_eq!(baseline(counts, 12, 0.95).percentile(), 160.0);
        let counts = vec![10, 20, 30, 40, 50, 60, 70, 80, 90, 100, 122, 142];
        assert_eq!(baseline(counts, 12, 0.95).percentile(), 131.0);
        // A whole position, or equal ranks, give the count itself.
        assert_eq!(baseline(vec![5, 9], 3, 0.5).percentile(), 5.0);
        assert_eq!(baseline(vec![7, 7, 7], 3, 0.95).percentile(), 7.0);
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
