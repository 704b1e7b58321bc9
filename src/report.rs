//! What a person reads after a run: KPIs, the busiest windows, DAU/MAU, the retention
//! matrix and the quarantine, from the tables of an output directory.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::Result;
use tidemark_dataflows::model::tables::{self, Cell};
use tidemark_inputs::time::{month_first_day, month_of_day};

use crate::sink::reader::read_table;

fn float(cell: &Cell) -> f64 {
    match cell {
        Cell::Float(v) => *v,
        Cell::Int(v) => *v as f64,
        _ => f64::NAN,
    }
}

fn int(cell: &Cell) -> i64 {
    match cell {
        Cell::Int(v) => *v,
        _ => 0,
    }
}

/// Renders the report of the tables under `out` (80 columns wide). A path that is not
/// a tidemark output (no `changes/` and no checkpoint) is an error saying what one is.
pub fn render(out: &Path) -> Result<String> {
    render_with_rows(out, out, None)
}

/// [`render`], headed by a line accounting for every input row a run fed when its
/// readers' counts are given: read = accepted + duplicates + too late + quarantined
/// while reading + filtered out by the mapping + rows of the other tables. Accepted
/// and too-late counts come from the tables the report reads anyway. `shown` names the
/// output on the last line: `out` itself, or the `s3://` URL whose local copy `out` is.
pub fn render_with_rows(
    out: &Path,
    shown: &Path,
    rows: Option<&crate::runtime::run::RowTotals>,
) -> Result<String> {
    if !out.join("changes").is_dir()
        && !out
            .join(crate::runtime::checkpoint::CHECKPOINT_DIR)
            .is_dir()
    {
        anyhow::bail!(
            "{} is not a tidemark output directory: an output holds changes/<table>/ (the change streams), tables/<table>/ (Delta tables) and _checkpoint/, as written by `tidemark run DATASET --out {}`",
            out.display(),
            out.display()
        );
    }
    let mut text = String::new();
    let kpis = read_table(out, &tables::KPIS)?;
    let windows = read_table(out, &tables::WINDOW_ACTIVITY)?;
    let monthly = read_table(out, &tables::MONTHLY_ACTIVE)?;
    let retention = read_table(out, &tables::RETENTION_COHORTS)?;
    let quarantine = read_table(out, &tables::QUARANTINE)?;
    // Only the number of sessions is shown: summed from the diffs alone.
    let sessions = crate::sink::reader::count_rows(out, &tables::SESSIONS)?;

    let accepted: i64 = windows.iter().map(|row| int(&row[2])).sum();
    if let Some(rows) = rows {
        let too_late = quarantine
            .iter()
            .filter(|row| row[3].to_string() == "too_late")
            .count() as i64;
        let duplicates = rows.valid_events - accepted - too_late;
        let other = rows.read - rows.valid_events - rows.rejected - rows.filtered;
        writeln!(
            text,
            "Rows read: {} = {accepted} accepted + {duplicates} duplicates + {too_late} too late + {} quarantined while reading + {} filtered out by the mapping + {other} rows of users/, subscriptions/ and items/",
            rows.read, rows.rejected, rows.filtered
        )?;
    }
    writeln!(
        text,
        "Events accepted: {accepted}   quarantined: {}   sessions: {}",
        quarantine.len(),
        sessions
    )?;

    writeln!(text, "\nKPIs")?;
    for row in &kpis {
        let metric = row[0].to_string();
        // Counts print as counts, percentages with two decimals.
        if metric.ends_with("_pct") {
            writeln!(text, "  {:<28} {:>14.2}", metric, float(&row[1]))?;
        } else {
            writeln!(text, "  {:<28} {:>14.0}", metric, float(&row[1]))?;
        }
    }
    // No users/ or subscriptions/ rows: the paid share is unknown, not 0.
    if !kpis.is_empty()
        && !kpis
            .iter()
            .any(|row| row[0].to_string() == "paid_share_pct")
    {
        writeln!(
            text,
            "  {:<28} {:>14}",
            "paid_share_pct", "n/a (no plan data)"
        )?;
    }

    // The window length comes from the rows, so `--window-minutes` shows as it was.
    let window_minutes = windows
        .first()
        .and_then(|row| match (&row[0], &row[1]) {
            (Cell::Timestamp(start), Cell::Timestamp(end)) => Some((end - start) as f64 / 60_000.0),
            _ => None,
        })
        .unwrap_or(5.0);
    writeln!(
        text,
        "\nBusiest {window_minutes}-minute windows (by events)"
    )?;
    writeln!(
        text,
        "  {:<20} {:>8} {:>8} {:>9}",
        "window_start", "events", "users", "sessions"
    )?;
    let mut busiest = windows.clone();
    busiest.sort_by_key(|row| std::cmp::Reverse(int(&row[2])));
    for row in busiest.iter().take(5) {
        writeln!(
            text,
            "  {:<20} {:>8} {:>8} {:>9}",
            row[0].to_string(),
            int(&row[2]),
            int(&row[3]),
            int(&row[4])
        )?;
    }

    let coverage = Coverage::of(&read_table(out, &tables::DAILY_ACTIVE)?);
    writeln!(text, "\nMonthly actives")?;
    writeln!(
        text,
        "  {:<10} {:>8} {:>10} {:>11}  data covers",
        "month", "mau", "avg_dau", "stickiness"
    )?;
    for row in &monthly {
        let month = row[0].to_string();
        writeln!(
            text,
            "  {:<10} {:>8} {:>10.1} {:>11.3}  {}",
            &month[..7.min(month.len())],
            int(&row[1]),
            float(&row[2]),
            float(&row[3]),
            coverage.describe(&row[0])
        )?;
    }

    writeln!(
        text,
        "\nRetention (% of cohort active N months later; first 6 cohorts x 6 months)"
    )?;
    let mut cohorts: Vec<Cell> = retention.iter().map(|row| row[0].clone()).collect();
    cohorts.dedup();
    write!(text, "  {:<8} {:>6}", "cohort", "size")?;
    for month in 0..6 {
        write!(text, " {:>7}", format!("M{month}"))?;
    }
    writeln!(text)?;
    for cohort in cohorts.iter().take(6) {
        let cells: Vec<&Vec<Cell>> = retention.iter().filter(|row| &row[0] == cohort).collect();
        let label = cohort.to_string();
        write!(
            text,
            "  {:<8} {:>6}",
            &label[..7.min(label.len())],
            cells.first().map_or(0, |r| int(&r[2]))
        )?;
        for month in 0..6 {
            match cells.iter().find(|row| int(&row[1]) == month) {
                Some(row) => {
                    let partial = match &row[0] {
                        Cell::Date(day) => coverage.is_partial(month_of_day(*day) + month as i32),
                        _ => false,
                    };
                    let mark = if partial { "*" } else { "%" };
                    write!(text, " {:>6.1}{mark}", 100.0 * float(&row[4]))?
                }
                None => write!(text, " {:>7}", "-")?,
            }
        }
        writeln!(text)?;
    }
    if coverage.any_partial(retention.iter().map(|row| match &row[0] {
        Cell::Date(day) => month_of_day(*day) + int(&row[1]) as i32,
        _ => i32::MIN,
    })) {
        writeln!(
            text,
            "  * a partial month: the data does not cover all its days, so the share is not comparable with full months"
        )?;
    }

    let spikes = read_table(out, &tables::SPIKE_ALERTS)?;
    // The seasonal rule's alerts first; the contract's p95 rule only as a count, since
    // it flags about one window in ten by chance.
    let mut alerts: Vec<&Vec<Cell>> = spikes
        .iter()
        .filter(|row| row[5] == Cell::Bool(true))
        .collect();
    alerts.sort_by(|a, b| {
        let excess = |row: &Vec<Cell>| float(&row[1]) - float(&row[7]);
        excess(b).total_cmp(&excess(a))
    });
    let flagged = spikes
        .iter()
        .filter(|row| row[4] == Cell::Bool(true))
        .count();
    let judged = spikes.iter().filter(|row| row[5] != Cell::Null).count();
    writeln!(
        text,
        "\nSpike alerts ({} of {judged} windows judged alert: sessions started far above the same window on earlier days; the contract's p95 `spike` flags {flagged})",
        alerts.len()
    )?;
    writeln!(
        text,
        "  {:<20} {:>9} {:>9} {:>10}",
        "window_start", "sessions", "baseline", "threshold"
    )?;
    for row in alerts.iter().take(5) {
        writeln!(
            text,
            "  {:<20} {:>9} {:>9.1} {:>10.1}",
            row[0].to_string(),
            int(&row[1]),
            float(&row[6]),
            float(&row[7])
        )?;
    }

    let mix = read_table(out, &tables::EVENT_MIX_DAILY)?;
    let mut by_type: std::collections::BTreeMap<String, i64> = Default::default();
    for row in &mix {
        *by_type.entry(row[1].to_string()).or_default() += int(&row[2]);
    }
    let total: i64 = by_type.values().sum();
    let mut types: Vec<(String, i64)> = by_type.into_iter().collect();
    types.sort_by_key(|(_, n)| std::cmp::Reverse(*n));
    writeln!(text, "\nEvent mix (all days)")?;
    for (event_type, events) in types.iter().take(10) {
        writeln!(
            text,
            "  {:<20} {:>10} {:>7.1}%",
            event_type,
            events,
            100.0 * *events as f64 / total.max(1) as f64
        )?;
    }
    let skips = read_table(out, &tables::SKIP_RATE_DAILY)?;
    let (skipped, played) = skips
        .iter()
        .fold((0, 0), |(s, p), row| (s + int(&row[1]), p + int(&row[2])));
    if played == 0 || skipped == 0 {
        // A data set without `skip` (or `play`) events says nothing about skipping.
        let missing = if played == 0 { "play" } else { "skip" };
        writeln!(
            text,
            "  skip rate (skips / plays): n/a (no {missing} events)"
        )?;
    } else {
        writeln!(
            text,
            "  skip rate (skips / plays): {:.3} over {} days",
            skipped as f64 / played as f64,
            skips.len()
        )?;
    }

    if !quarantine.is_empty() {
        writeln!(text, "\nQuarantine by reason")?;
        let mut reasons: std::collections::BTreeMap<String, usize> = Default::default();
        for row in &quarantine {
            *reasons.entry(row[3].to_string()).or_default() += 1;
        }
        for (reason, count) in reasons {
            writeln!(text, "  {reason:<20} {count:>8}")?;
        }
    }
    dimension_summary(out, &mut text)?;
    prediction_summary(out, &mut text)?;
    writeln!(
        text,
        "\nOutputs: {} (change streams: changes/<table>/)",
        shown.display()
    )?;
    Ok(text)
}

/// Top members of each dimension (`engagement_by_dimension`): on the last day with
/// data and over that day's month, by events, with their share of the period's events
/// and the mean value (re-aggregated exactly through `value_count`).
fn dimension_summary(out: &Path, text: &mut String) -> Result<()> {
    use std::collections::BTreeMap;
    use tidemark_inputs::time::month_of_day;
    let day_of_row = |row: &Vec<Cell>| match row[0] {
        Cell::Date(day) => day,
        _ => i32::MIN,
    };
    // Only the last day's month is shown: the last day holding rows is found from each
    // day's net row count, and only that month's changes are read and summed into rows.
    let shown = crate::sink::reader::read_changes_of_days(
        out,
        &tables::ENGAGEMENT_BY_DIMENSION,
        |rows_per_day| {
            let last = rows_per_day
                .iter()
                .rev()
                .find(|(_, rows)| **rows > 0)
                .map(|(day, _)| *day)?;
            Some(month_first_day(month_of_day(last))..=last)
        },
    )?;
    let Some((days, changes)) = shown else {
        return Ok(());
    };
    let last_day = *days.end();
    let month = month_of_day(last_day);
    let mut rows: Vec<Vec<Cell>> = Vec::new();
    for (row, count) in crate::sink::reader::sum_changes(changes) {
        anyhow::ensure!(
            count > 0,
            "table `engagement_by_dimension` has a row with negative count {count}: {row:?}"
        );
        rows.extend(std::iter::repeat_n(row, count as usize));
    }
    // (label, first day, last day) of each period.
    let periods = [
        (format!("on {}", Cell::Date(last_day)), last_day, last_day),
        (
            format!(
                "in {}",
                &Cell::Date(month_first_day(month)).to_string()[..7]
            ),
            month_first_day(month),
            last_day,
        ),
    ];
    writeln!(
        text,
        "\nTop members by dimension (events, share of events, mean value)"
    )?;
    for (label, first, last) in &periods {
        // dimension -> member -> (events, value sum, values)
        let mut sums: BTreeMap<String, BTreeMap<String, (i64, f64, i64)>> = BTreeMap::new();
        for row in rows
            .iter()
            .filter(|row| (*first..=*last).contains(&day_of_row(row)))
        {
            let count = int(&row[7]);
            let entry = sums
                .entry(row[1].to_string())
                .or_default()
                .entry(row[2].to_string())
                .or_default();
            entry.0 += int(&row[4]);
            if count > 0 {
                entry.1 += float(&row[6]) * count as f64;
                entry.2 += count;
            }
        }
        for (dimension, members) in sums {
            let total: i64 = members.values().map(|m| m.0).sum();
            let mut ranked: Vec<(String, (i64, f64, i64))> = members.into_iter().collect();
            ranked.sort_by(|a, b| b.1 .0.cmp(&a.1 .0).then_with(|| a.0.cmp(&b.0)));
            let top: Vec<String> = ranked
                .iter()
                .take(5)
                .map(|(member, (events, value_sum, values))| {
                    let mean = if *values > 0 {
                        format!(", {:.2}", value_sum / *values as f64)
                    } else {
                        String::new()
                    };
                    format!(
                        "{member} {events} ({:.1}%{mean})",
                        100.0 * *events as f64 / total.max(1) as f64
                    )
                })
                .collect();
            writeln!(text, "  {label:<14} {dimension:<12} {}", top.join("; "))?;
        }
    }
    Ok(())
}

/// The `model_metrics` of the last `tidemark predict`, if it ran on this output.
fn prediction_summary(out: &Path, text: &mut String) -> Result<()> {
    use crate::predict::output::{read, MODEL_METRICS};
    let Some(models) = read(out, &MODEL_METRICS)? else {
        return Ok(());
    };
    let Some(first) = models.first() else {
        return Ok(());
    };
    writeln!(
        text,
        "\nWho comes back (tidemark predict; cutoff {}, {} training and {} test users)",
        first[9], first[6], first[7]
    )?;
    writeln!(
        text,
        "  {:<30} {:>6} {:>9} {:>9} {:>7} {:>6}",
        "model", "AUC", "accuracy", "precision", "recall", "F1"
    )?;
    for row in &models {
        let show = |cell: &Cell| match cell {
            Cell::Float(v) => format!("{v:.3}"),
            _ => "n/a".to_string(),
        };
        writeln!(
            text,
            "  {:<30} {:>6} {:>9} {:>9} {:>7} {:>6}",
            row[0].to_string(),
            show(&row[1]),
            show(&row[2]),
            show(&row[3]),
            show(&row[4]),
            show(&row[5])
        )?;
    }
    Ok(())
}

/// Which days the data covers: from the first to the last day with an active user
/// (`daily_active`). A month the span does not cover entirely is partial, and its
/// figures (MAU, stickiness, a cohort's share) are not comparable with full months'.
/// This is the documented rule of issue 13; the tables themselves carry no flag.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Coverage {
    /// First and last covered day (days since 1970-01-01), if any day has data.
    span: Option<(i32, i32)>,
}

impl Coverage {
    /// The coverage of the data behind a `daily_active` table.
    pub fn of(daily_active: &[Vec<Cell>]) -> Coverage {
        let days = daily_active.iter().filter_map(|row| match row[0] {
            Cell::Date(day) => Some(day),
            _ => None,
        });
        let span = days.fold(None, |span: Option<(i32, i32)>, day| {
            Some(span.map_or((day, day), |(a, b)| (a.min(day), b.max(day))))
        });
        Coverage { span }
    }

    /// How many days of `month` (a month index) the data covers, and how many it has.
    pub fn days(&self, month: i32) -> (i32, i32) {
        let first = month_first_day(month);
        let next = month_first_day(month + 1);
        let covered = self
            .span
            .map_or(0, |(a, b)| (b.min(next - 1) - a.max(first) + 1).max(0));
        (covered, next - first)
    }

    /// Whether the data covers only part of `month`.
    pub fn is_partial(&self, month: i32) -> bool {
        let (covered, all) = self.days(month);
        covered < all
    }

    /// Whether any of these months is partial.
    pub fn any_partial(&self, months: impl IntoIterator<Item = i32>) -> bool {
        months.into_iter().any(|month| self.is_partial(month))
    }

    /// "31/31 days" or "1/31 days (partial)" for a month cell.
    pub fn describe(&self, month: &Cell) -> String {
        let Cell::Date(day) = month else {
            return String::new();
        };
        let (covered, all) = self.days(month_of_day(*day));
        if covered < all {
            format!("{covered}/{all} days (partial)")
        } else {
            format!("{covered}/{all} days")
        }
    }
}
