//! The two models of `tidemark predict` and how they are judged: a logistic regression
//! over standardised features (linfa-logistic), and the seeds' baseline, a threshold on
//! the session count chosen on the training users.

use anyhow::{bail, Result};
use linfa::prelude::*;
use linfa_logistic::{FittedLogisticRegression, LogisticRegression};
use ndarray::{Array1, Array2};

use super::facts::{Example, FEATURE_NAMES};

const FEATURES: usize = FEATURE_NAMES.len();

/// A logistic regression over standardised features.
pub struct Logistic {
    /// Training means of the features.
    pub mean: [f64; FEATURES],
    /// Training standard deviations (1 where a feature is constant).
    pub std: [f64; FEATURES],
    /// Weights of the standardised features; positive = more likely to come back.
    pub coefficients: [f64; FEATURES],
    /// The intercept.
    pub intercept: f64,
}

impl Logistic {
    /// Fits the model on labelled examples (both labels must occur).
    pub fn fit(train: &[&Example]) -> Result<Logistic> {
        let came_back = train.iter().filter(|e| e.label == Some(true)).count();
        if came_back == 0 || came_back == train.len() {
            bail!(
                "all {} training users {}: a model needs both outcomes. Choose another \
                 cutoff with --cutoff DATE (the label window must lie in the data).",
                train.len(),
                if came_back == 0 {
                    "stayed away"
                } else {
                    "came back"
                }
            );
        }
        let mut mean = [0.0; FEATURES];
        let mut std = [0.0; FEATURES];
        let n = train.len() as f64;
        for e in train {
            for (m, v) in mean.iter_mut().zip(e.features.values()) {
                *m += v / n;
            }
        }
        for e in train {
            for ((s, m), v) in std.iter_mut().zip(&mean).zip(e.features.values()) {
                *s += (v - m) * (v - m) / n;
            }
        }
        for s in &mut std {
            *s = if *s > 0.0 { s.sqrt() } else { 1.0 };
        }
        let mut model = Logistic {
            mean,
            std,
            coefficients: [0.0; FEATURES],
            intercept: 0.0,
        };
        let x = model.matrix(train);
        let y: Array1<bool> = train.iter().map(|e| e.label == Some(true)).collect();
        let fitted: FittedLogisticRegression<f64, bool> = LogisticRegression::default()
            .alpha(1.0)
            .max_iterations(300)
            .fit(&Dataset::new(x, y))?;
        // linfa models the more frequent class as the positive one; turn its weights
        // into weights for "came back".
        let sign = if fitted.labels().pos.class { 1.0 } else { -1.0 };
        for (c, w) in model.coefficients.iter_mut().zip(fitted.params()) {
            *c = sign * w;
        }
        model.intercept = sign * fitted.intercept();
        Ok(model)
    }

    fn matrix(&self, examples: &[&Example]) -> Array2<f64> {
        let mut x = Array2::zeros((examples.len(), FEATURES));
        for (i, e) in examples.iter().enumerate() {
            for (j, v) in e.features.values().into_iter().enumerate() {
                x[[i, j]] = (v - self.mean[j]) / self.std[j];
            }
        }
        x
    }

    /// The probability that the user comes back.
    pub fn score(&self, example: &Example) -> f64 {
        let z: f64 = example
            .features
            .values()
            .into_iter()
            .enumerate()
            .map(|(j, v)| self.coefficients[j] * (v - self.mean[j]) / self.std[j])
            .sum::<f64>()
            + self.intercept;
        1.0 / (1.0 + (-z).exp())
    }
}

/// The seeds' baseline: "comes back" when the user had at least `threshold` sessions.
pub struct Baseline {
    /// The session count from which the baseline says "comes back".
    pub threshold: i64,
}

impl Baseline {
    /// Chooses the threshold with the best training accuracy (the smallest such one).
    pub fn fit(train: &[&Example]) -> Baseline {
        let mut candidates: Vec<i64> = train.iter().map(|e| e.features.sessions).collect();
        candidates.push(candidates.iter().max().map_or(1, |m| m + 1));
        candidates.sort_unstable();
        candidates.dedup();
        let correct = |t: i64| {
            train
                .iter()
                .filter(|e| (e.features.sessions >= t) == (e.label == Some(true)))
                .count()
        };
        let mut best = (candidates[0], correct(candidates[0]));
        for &t in &candidates[1..] {
            let c = correct(t);
            if c > best.1 {
                best = (t, c);
            }
        }
        Baseline { threshold: best.0 }
    }

    /// Whether the baseline says the user comes back.
    pub fn predicts(&self, example: &Example) -> bool {
        example.features.sessions >= self.threshold
    }
}

/// How a model did on the test users.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Metrics {
    /// Area under the ROC curve of the scores (ties count half); none with one label.
    pub auc: Option<f64>,
    /// Share of correct predictions.
    pub accuracy: f64,
    /// Of those predicted to come back, the share that did; none if none predicted.
    pub precision: Option<f64>,
    /// Of those who came back, the share predicted; none if none came back.
    pub recall: Option<f64>,
    /// Harmonic mean of precision and recall; none if either is none or both are 0.
    pub f1: Option<f64>,
}

/// Metrics of (score, predicted, label) triples.
pub fn metrics(results: &[(f64, bool, bool)]) -> Metrics {
    let count = |p: bool, l: bool| {
        results
            .iter()
            .filter(|(_, predicted, label)| *predicted == p && *label == l)
            .count() as f64
    };
    let (tp, fp, fn_, tn) = (
        count(true, true),
        count(true, false),
        count(false, true),
        count(false, false),
    );
    let ratio = |a: f64, b: f64| (b > 0.0).then(|| a / b);
    let precision = ratio(tp, tp + fp);
    let recall = ratio(tp, tp + fn_);
    let f1 = match (precision, recall) {
        (Some(p), Some(r)) if p + r > 0.0 => Some(2.0 * p * r / (p + r)),
        _ => None,
    };
    Metrics {
        auc: auc(results),
        accuracy: (tp + tn) / results.len().max(1) as f64,
        precision,
        recall,
        f1,
    }
}

/// The ROC AUC: the probability that a random returning user scores above a random
/// non-returning one, ties counting half, computed by sorting (ties share their mean rank).
fn auc(results: &[(f64, bool, bool)]) -> Option<f64> {
    let mut sorted: Vec<(f64, bool)> = results.iter().map(|(s, _, l)| (*s, *l)).collect();
    sorted.sort_by(|a, b| a.0.total_cmp(&b.0));
    let positives = sorted.iter().filter(|(_, l)| *l).count() as f64;
    let negatives = sorted.len() as f64 - positives;
    if positives == 0.0 || negatives == 0.0 {
        return None;
    }
    let mut rank_sum = 0.0;
    let mut i = 0;
    while i < sorted.len() {
        let mut j = i;
        while j < sorted.len() && sorted[j].0 == sorted[i].0 {
            j += 1;
        }
        // Ranks i+1 ..= j share their mean.
        let mean_rank = (i + 1 + j) as f64 / 2.0;
        rank_sum += mean_rank * sorted[i..j].iter().filter(|(_, l)| *l).count() as f64;
        i = j;
    }
    Some((rank_sum - positives * (positives + 1.0) / 2.0) / (positives * negatives))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auc_counts_ordered_pairs_with_ties_as_half() {
        // Pairs (positive, negative): (0.9, 0.1) ok, (0.9, 0.5) ok, (0.5, 0.1) ok,
        // (0.5, 0.5) tie = 1/2: (3 + 0.5) / 4.
        let r = [
            (0.9, true, true),
            (0.5, true, true),
            (0.5, false, false),
            (0.1, false, false),
        ];
        let m = metrics(&r);
        assert_eq!(m.auc, Some(3.5 / 4.0));
        assert_eq!(m.accuracy, 1.0);
        assert_eq!(m.precision, Some(1.0));
        assert_eq!(metrics(&[(0.3, true, true)]).auc, None, "one label");
        assert_eq!(metrics(&[(0.3, false, true)]).precision, None);
    }
}
