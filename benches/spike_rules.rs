//! How well the two spike rules of `spike_alerts` find real traffic spikes: the
//! contract's `spike` (sessions started above the p95 of the 12 windows before) and the
//! seasonal `alert` (above the median of the same window on the previous days plus
//! `alert_deviations` robust deviations, with at least `alert_min_sessions` sessions).
//!
//! The generator injects a few 15-minute traffic spikes into data sets of several sizes
//! and seeds and says where (`GenerateSummary::spikes`): that is the ground truth. A
//! flagged window is a true positive when it starts within a spike or in the window
//! right after one (its sessions may start a little late); a spike is found when any of
//! its windows is flagged. Precision = true flagged windows / flagged windows; recall =
//! spikes found / spikes injected.
//!
//! ```sh
//! cargo bench --bench spike_rules              # 200k, 1M and 3M events, 3 seeds each
//! cargo bench --bench spike_rules -- --sizes 200000 --seeds 1,2
//! cargo bench --bench spike_rules -- --deviations 6 --min-sessions 5 --days 7
//! ```
//! Under `cargo test` (no `--bench` argument) it runs once on a small data set.

mod common;

use tidemark::runtime::cluster::ClusterArgs;
use tidemark::runtime::run::{run, LiveOptions, RunOptions};
use tidemark::sink::reader::read_table;
use tidemark_dataflows::model::settings::Params;
use tidemark_dataflows::model::tables::{Cell, SPIKE_ALERTS};
use tidemark_inputs::generator::{generate, GeneratorConfig, SPIKE_MINUTES};

/// Counts of one rule on one data set.
#[derive(Default, Clone, Copy)]
struct Score {
    flagged: u64,
    true_flagged: u64,
    spikes: u64,
    found: u64,
}

impl Score {
    fn add(&mut self, other: Score) {
        self.flagged += other.flagged;
        self.true_flagged += other.true_flagged;
        self.spikes += other.spikes;
        self.found += other.found;
    }

    fn line(&self, rule: &str, windows: u64) -> String {
        let precision = if self.flagged == 0 {
            "n/a (nothing flagged)".to_string()
        } else {
            format!("{:.3}", self.true_flagged as f64 / self.flagged as f64)
        };
        format!(
            "{rule:<7} flagged {:>6} of {windows} windows ({:>5.2}%), precision {precision}, recall {:.3} ({} of {} spikes)",
            self.flagged,
            100.0 * self.flagged as f64 / windows.max(1) as f64,
            self.found as f64 / self.spikes.max(1) as f64,
            self.found,
            self.spikes
        )
    }
}

/// The text after `flag` on the command line, if any.
fn arg(flag: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    let at = args.iter().position(|a| a == flag)?;
    args.get(at + 1).cloned()
}

/// A comma-separated list of numbers after `flag`.
fn list(flag: &str) -> Option<Vec<u64>> {
    Some(
        arg(flag)?
            .split(',')
            .map(|v| v.parse().expect("a number"))
            .collect(),
    )
}

fn main() {
    let bench = common::bench_mode();
    let sizes = list("--sizes").unwrap_or(if bench {
        vec![200_000, 1_000_000, 3_000_000]
    } else {
        vec![30_000]
    });
    let seeds = list("--seeds").unwrap_or(if bench { vec![1, 2, 3] } else { vec![1] });
    let mut params = Params::default();
    let value = |flag: &str| -> Option<f64> { arg(flag)?.parse().ok() };
    if let Some(k) = value("--deviations") {
        params.alert_deviations = k;
    }
    if let Some(n) = value("--min-sessions") {
        params.alert_min_sessions = n as i64;
    }
    if let Some(days) = value("--days") {
        params.alert_days = days as usize;
    }
    let window = params.window_ms;
    println!(
        "spike rules: `spike` (contract, p95 of {} windows) and `alert` (median of the same window on {} days + {} deviations, at least {} sessions)",
        params.baseline_windows, params.alert_days, params.alert_deviations, params.alert_min_sessions
    );
    for &events in &sizes {
        let (mut spike, mut alert, mut windows) = (Score::default(), Score::default(), 0u64);
        for &seed in &seeds {
            let dir = tempfile::tempdir().expect("a temporary directory");
            let data = dir.path().join("data");
            let config = GeneratorConfig {
                events,
                users: (events / 50).max(200),
                seed,
                days: 28,
                ..GeneratorConfig::default()
            };
            let summary = generate(&data, &config).expect("the generator writes");
            let out = dir.path().join("out");
            run(&RunOptions {
                dataset: Some(data),
                mapping: None,
                out: out.clone(),
                params,
                cluster: ClusterArgs {
                    workers: 2,
                    ..ClusterArgs::default()
                },
                progress: false,
                overwrite: true,
                delta: false,
                delta_retention: tidemark::runtime::run::DEFAULT_DELTA_RETENTION,
                live: LiveOptions::default(),
                arrangement_sizes: None,
                local_out: None,
            })
            .expect("tidemark runs");
            let rows = read_table(&out, &SPIKE_ALERTS).expect("spike_alerts reads");
            windows += rows.len() as u64;
            let spike_ms = SPIKE_MINUTES * 60_000;
            let in_spike = |start: i64| {
                summary
                    .spikes
                    .iter()
                    .position(|&s| start >= s && start < s + spike_ms + window)
            };
            for (column, score) in [(4, &mut spike), (5, &mut alert)] {
                let mut found = vec![false; summary.spikes.len()];
                let mut one = Score {
                    spikes: summary.spikes.len() as u64,
                    ..Score::default()
                };
                for row in &rows {
                    if row[column] != Cell::Bool(true) {
                        continue;
                    }
                    one.flagged += 1;
                    let Cell::Timestamp(start) = row[0] else {
                        continue;
                    };
                    if let Some(i) = in_spike(start) {
                        one.true_flagged += 1;
                        found[i] = true;
                    }
                }
                one.found = found.iter().filter(|f| **f).count() as u64;
                score.add(one);
            }
        }
        println!(
            "{events} events over 28 days, seeds {seeds:?}:\n  {}\n  {}",
            spike.line("spike", windows),
            alert.line("alert", windows)
        );
    }
}
