//! Session spikes (contract `spike_alerts`): "a row per `window_activity` row ...
//! Baseline = the 12 window slots immediately before, empty slots counting 0, p95 by
//! linear interpolation (Spark `percentile`); windows with fewer than 12 slots since
//! the first window carry nulls and spike = false". The slot count and the percentile
//! are the settings `baseline_windows` and `baseline_percentile`.
//!
//! Each window sends its `sessions_started` into the baseline slots of the windows that
//! follow it, and the first window marks the windows still warming up; one reduce per
//! window combines its own count, its slots and the mark. A late change to one window
//! therefore touches only the windows whose baseline holds it, and a new first window
//! only the warm-up windows it moves.

use differential_dataflow::VecCollection;
use serde::{Deserialize, Serialize};
use tidemark_inputs::records::Millis;
use tidemark_inputs::time::day_of;

use crate::expiry::{drop_closed, retire_behind, Watermarks};
use crate::ingest::Time;
use crate::rows::{Baseline, SpikeRow, WindowRow};
use crate::settings::Params;

/// One input of a window's alert, combined per window start.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
enum AlertPart {
    /// The window lies within `baseline_windows` slots of the first window.
    WarmingUp,
    /// The window's own `sessions_started` (present only for existing windows).
    Own(i64),
    /// A non-zero `sessions_started` of the window this many slots before.
    Slot(i64, i64),
}

/// The start of the earliest window: the least window start of each day, then the
/// least of those, so that a change re-reads one day's windows and the list of days.
fn first_window<'s>(
    windows: VecCollection<'s, Time, WindowRow>,
) -> VecCollection<'s, Time, Millis> {
    windows
        .map(|row| (day_of(row.start), row.start))
        .reduce_named("FirstWindowOfDay", |_day, starts, output| {
            output.push((*starts[0].0, 1isize))
        })
        .map(|(_day, start)| ((), start))
        .reduce_named("FirstWindow", |_unit, starts, output| {
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

/// The `spike_alerts` table from the `window_activity` rows. A window's alert is final
/// once the watermark passes the window's end (its baseline windows come before it);
/// its inputs are then retired (see [`crate::expiry`]) and its row stays.
pub fn spike_alerts<'s>(
    windows: VecCollection<'s, Time, WindowRow>,
    watermarks: &Watermarks<'s>,
    params: Params,
) -> VecCollection<'s, Time, SpikeRow> {
    let slots = params.baseline_windows;
    let n = slots as i64;
    let window_ms = params.window_ms;
    let percentile = params.baseline_percentile;

    let warming_up = first_window(windows.clone())
        .flat_map(move |first| (0..n).map(move |i| (first + i * window_ms, AlertPart::WarmingUp)));
    let own = windows
        .clone()
        .map(|row| (row.start, AlertPart::Own(row.sessions_started)));
    let slot_counts = windows.flat_map(move |row| {
        let count = row.sessions_started;
        (1..=n)
            .filter(move |_| count != 0)
            .map(move |i| (row.start + i * window_ms, AlertPart::Slot(i, count)))
    });
    let parts = own.concat(slot_counts).concat(warming_up);
    let live = retire_behind(parts, watermarks, move |(start, _part)| {
        Some(start + window_ms)
    })
    .reduce_named("SpikeAlerts", move |&start, parts, output| {
        let mut own = None;
        let mut warming_up = false;
        let mut counts = Vec::with_capacity(slots);
        for (part, multiplicity) in parts {
            match part {
                AlertPart::WarmingUp => warming_up = true,
                AlertPart::Own(count) => own = Some(*count),
                AlertPart::Slot(_, count) => {
                    counts.extend(std::iter::repeat_n(*count, (*multiplicity).max(0) as usize))
                }
            }
        }
        if let Some(sessions_started) = own {
            let baseline = (!warming_up).then(|| baseline(counts, slots, percentile));
            output.push((
                SpikeRow {
                    start,
                    sessions_started,
                    baseline,
                },
                1isize,
            ));
        }
    })
    .map(|(_start, row)| row);
    drop_closed(live, watermarks, move |row| Some(row.start + window_ms))
}
