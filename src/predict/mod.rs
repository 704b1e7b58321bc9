//! `tidemark predict OUT`: who will come back (contract "Prediction"). Features and
//! labels come from the output tables `user_activity_daily` and `user_plans`, which the
//! dataflow maintains incrementally, so `predict` works on any finished or running
//! output and reads no raw file again.

pub mod facts;
pub mod model;
pub mod output;

use std::fmt::Write as _;
use std::path::Path;

use anyhow::{bail, Result};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use tidemark_dataflows::model::tables::Cell;

use facts::{
    data_end, data_start, examples, read_histories, Example, Histories, FEATURE_NAMES, WINDOW_DAYS,
};
use model::{metrics, Baseline, Logistic, Metrics};

/// Name of the logistic regression in `model_metrics`.
pub const LOGISTIC: &str = "logistic_regression";
/// Name of the seeds' baseline in `model_metrics`.
pub const BASELINE: &str = "baseline_sessions_threshold";

/// What `predict` is asked.
#[derive(Clone, Copy, Debug)]
pub struct PredictOptions {
    /// The cutoff day (a UTC midnight); none for 28 days before the data's end.
    pub cutoff: Option<i32>,
    /// Seed of the 80/20 split of the users.
    pub seed: u64,
    /// Users listed in the at-risk forecast of the print-out.
    pub top: usize,
}

/// A scored user of the print-out's forecast.
pub struct AtRisk {
    /// The user.
    pub example: Example,
    /// The probability of coming back.
    pub score: f64,
}

/// Everything `predict` found.
pub struct Prediction {
    /// The cutoff day.
    pub cutoff: i32,
    /// The day after the last day of data.
    pub end: i32,
    /// Users in the population (active in the feature window).
    pub population: usize,
    /// Of them, how many came back.
    pub came_back: usize,
    /// Training and test users.
    pub users_train: usize,
    /// Test users.
    pub users_test: usize,
    /// The fitted regression.
    pub logistic: Logistic,
    /// The fitted baseline.
    pub baseline: Baseline,
    /// Test metrics of the regression.
    pub logistic_metrics: Metrics,
    /// Test metrics of the baseline.
    pub baseline_metrics: Metrics,
    /// Users active in the last 28 days of data, most at risk first.
    pub forecast: Vec<AtRisk>,
}

/// Reads the tables of `out`, fits and judges both models, and writes
/// `OUT/predictions/`.
pub fn predict(out: &Path, options: PredictOptions) -> Result<Prediction> {
    let histories = read_histories(out)?;
    if data_end(&histories).is_none() {
        bail!(
            "{} holds no accepted event yet: there is nothing to predict from",
            out.display()
        );
    }
    let (prediction, score_rows) = fit(&histories, options)?;
    output::write(out, &output::SCORES, &score_rows)?;
    output::write(out, &output::MODEL_METRICS, &prediction.metric_rows())?;
    let coefficient_rows: Vec<Vec<Cell>> = FEATURE_NAMES
        .iter()
        .enumerate()
        .map(|(j, name)| {
            vec![
                Cell::Str((*name).into()),
                Cell::Float(prediction.logistic.coefficients[j]),
                Cell::Float(prediction.logistic.mean[j]),
                Cell::Float(prediction.logistic.std[j]),
            ]
        })
        .collect();
    output::write(out, &output::COEFFICIENTS, &coefficient_rows)?;
    Ok(prediction)
}

/// Says whether the data holds the 28 days before `cutoff` and the 28 from it, with
/// what is needed when it does not.
fn check_span(start: i32, end: i32, cutoff: i32) -> Result<()> {
    let day = |d: i32| Cell::Date(d).to_string();
    let days = end - start;
    if days < 2 * WINDOW_DAYS {
        bail!(
            "predict needs at least 56 days of data (28 days of features before the cutoff, \
             28 days to see who comes back after it); the data spans {days} days, {} to {}",
            day(start),
            day(end - 1)
        );
    }
    if cutoff - WINDOW_DAYS < start || cutoff + WINDOW_DAYS > end {
        bail!(
            "the cutoff {} needs data from {} to {} (28 days before it and 28 from it), but \
             the data spans {} to {}: choose --cutoff from {} to {}",
            day(cutoff),
            day(cutoff - WINDOW_DAYS),
            day(cutoff + WINDOW_DAYS - 1),
            day(start),
            day(end - 1),
            day(start + WINDOW_DAYS),
            day(end - WINDOW_DAYS)
        );
    }
    Ok(())
}

/// Fits and judges both models on `histories` (contract "Prediction"); returns the
/// prediction and the rows of `scores`.
pub fn fit(histories: &Histories, options: PredictOptions) -> Result<(Prediction, Vec<Vec<Cell>>)> {
    let (Some(start), Some(end)) = (data_start(histories), data_end(histories)) else {
        bail!("no accepted event yet: there is nothing to predict from");
    };
    let cutoff = options.cutoff.unwrap_or(end - WINDOW_DAYS);
    check_span(start, end, cutoff)?;
    let mut population = examples(histories, cutoff, true);
    if population.len() < 10 {
        bail!(
            "only {} users were active in the 28 days before the cutoff {}: too few to \
             train on (at least 10). Choose another cutoff with --cutoff DATE.",
            population.len(),
            Cell::Date(cutoff)
        );
    }
    // A fixed-seed random 80% of the users trains, the rest tests.
    population.shuffle(&mut rand::rngs::StdRng::seed_from_u64(options.seed));
    let users_train = (population.len() * 4).div_ceil(5);
    let (train, test) = population.split_at(users_train);
    let train: Vec<&Example> = train.iter().collect();
    let logistic = Logistic::fit(&train)?;
    let baseline = Baseline::fit(&train);

    // Every user is scored once: the rows of `scores`, the test metrics and the forecast
    // read the same score.
    let label = |e: &Example| e.label == Some(true);
    let scores: Vec<f64> = population.iter().map(|e| logistic.score(e)).collect();
    let logistic_results: Vec<(f64, bool, bool)> = test
        .iter()
        .zip(&scores[users_train..])
        .map(|(e, &score)| (score, score >= 0.5, label(e)))
        .collect();
    let baseline_results: Vec<(f64, bool, bool)> = test
        .iter()
        .map(|e| (e.features.sessions as f64, baseline.predicts(e), label(e)))
        .collect();
    let mut forecast: Vec<AtRisk> = examples(histories, end, false)
        .into_iter()
        .map(|example| AtRisk {
            score: logistic.score(&example),
            example,
        })
        .collect();
    forecast.sort_by(|a, b| {
        a.score
            .total_cmp(&b.score)
            .then_with(|| a.example.user_id.cmp(&b.example.user_id))
    });

    let mut score_rows = Vec::new();
    for (i, (e, &score)) in population.iter().zip(&scores).enumerate() {
        let split = if i < users_train { "train" } else { "test" };
        score_rows.push(score_row(e, score, split, cutoff));
    }
    for r in &forecast {
        score_rows.push(score_row(&r.example, r.score, "forecast", end));
    }
    score_rows.sort();

    let prediction = Prediction {
        cutoff,
        end,
        came_back: population.iter().filter(|e| label(e)).count(),
        population: population.len(),
        users_train,
        users_test: test.len(),
        logistic_metrics: metrics(&logistic_results),
        baseline_metrics: metrics(&baseline_results),
        logistic,
        baseline,
        forecast,
    };
    Ok((prediction, score_rows))
}

fn score_row(e: &Example, score: f64, split: &str, cutoff: i32) -> Vec<Cell> {
    vec![
        Cell::Str(e.user_id.as_str().into()),
        Cell::Float(score),
        Cell::Bool(score >= 0.5),
        e.label.map_or(Cell::Null, Cell::Bool),
        Cell::Str(split.into()),
        Cell::Date(cutoff),
    ]
}

impl Prediction {
    /// The rows of `model_metrics`.
    fn metric_rows(&self) -> Vec<Vec<Cell>> {
        [
            (LOGISTIC, &self.logistic_metrics, 0.5),
            (
                BASELINE,
                &self.baseline_metrics,
                self.baseline.threshold as f64,
            ),
        ]
        .into_iter()
        .map(|(name, m, threshold)| {
            vec![
                Cell::Str(name.into()),
                Cell::opt_float(m.auc),
                Cell::Float(m.accuracy),
                Cell::opt_float(m.precision),
                Cell::opt_float(m.recall),
                Cell::opt_float(m.f1),
                Cell::Int(self.users_train as i64),
                Cell::Int(self.users_test as i64),
                Cell::Float(threshold),
                Cell::Date(self.cutoff),
            ]
        })
        .collect()
    }

    /// The print-out: the question, both models' test metrics, the coefficients and
    /// the users most at risk.
    pub fn render(&self, out: &Path, top: usize) -> String {
        let mut s = String::new();
        let day = |d: i32| Cell::Date(d).to_string();
        let _ = writeln!(s, "Who comes back: predictions of {}", out.display());
        let _ = writeln!(
            s,
            "  features from {} to {}; label: an accepted event from {} to {}",
            day(self.cutoff - WINDOW_DAYS),
            day(self.cutoff - 1),
            day(self.cutoff),
            day(self.cutoff + WINDOW_DAYS - 1)
        );
        let _ = writeln!(
            s,
            "  {} users active before the cutoff, {} came back ({:.1}%); trained on {}, tested on {}",
            self.population,
            self.came_back,
            100.0 * self.came_back as f64 / self.population as f64,
            self.users_train,
            self.users_test
        );
        let _ = writeln!(
            s,
            "\n  model (test users)              AUC  accuracy  precision  recall     F1"
        );
        for (name, m) in [
            ("logistic regression".to_string(), &self.logistic_metrics),
            (
                format!("baseline: sessions >= {}", self.baseline.threshold),
                &self.baseline_metrics,
            ),
        ] {
            let f = |v: Option<f64>| v.map_or("   n/a".to_string(), |v| format!("{v:6.3}"));
            let _ = writeln!(
                s,
                "  {name:<28} {}    {:6.3}     {}  {}  {}",
                f(m.auc),
                m.accuracy,
                f(m.precision),
                f(m.recall),
                f(m.f1)
            );
        }
        let _ = writeln!(
            s,
            "\n  why: coefficients of the standardised features (+ = more likely to come back)"
        );
        let mut order: Vec<usize> = (0..FEATURE_NAMES.len()).collect();
        order.sort_by(|&a, &b| {
            self.logistic.coefficients[b]
                .abs()
                .total_cmp(&self.logistic.coefficients[a].abs())
        });
        for j in order {
            let _ = writeln!(
                s,
                "    {:<32} {:+.3}",
                FEATURE_NAMES[j], self.logistic.coefficients[j]
            );
        }
        let _ = writeln!(
            s,
            "\n  most at risk: {} users active from {} to {}, scored at {}",
            self.forecast.len(),
            day(self.end - WINDOW_DAYS),
            day(self.end - 1),
            day(self.end)
        );
        let _ = writeln!(
            s,
            "    user                  P(back)  sessions  active days  last active"
        );
        for r in self.forecast.iter().take(top) {
            let f = &r.example.features;
            let _ = writeln!(
                s,
                "    {:<20} {:8.3}  {:8}  {:11}  {}",
                r.example.user_id,
                r.score,
                f.sessions,
                f.active_days,
                day(self.end - f.days_since_last_active as i32)
            );
        }
        let _ = writeln!(
            s,
            "\n  written: {}/{{model_metrics,scores,coefficients}}/",
            output::predictions_dir(out).display()
        );
        s
    }
}
