//! `tidemark predict` (contract "Prediction") against an independent reading: the
//! population and labels recomputed in plain Rust from the oracle's accepted events,
//! the AUC by the rank-sum formula from the written scores, and features that see
//! nothing at or after the cutoff.

use crate::common;
use crate::oracle;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use common::{read_batches, run_engine};
use tidemark::predict::facts::{examples, histories_from_rows, ActiveDay, Histories, UserHistory};
use tidemark::predict::output::{self, MODEL_METRICS, SCORES};
use tidemark::predict::{predict, PredictOptions, LOGISTIC};
use tidemark_dataflows::model::settings::Params;
use tidemark_dataflows::model::tables::Cell;
use tidemark_inputs::generator::{generate, OutputFormat};

const DAY: i64 = 86_400_000;
const WINDOW: i64 = 28 * DAY;

fn generated(dir: &Path, too_late_share: f64) -> PathBuf {
    let data = dir.join("data");
    let config = common::messy_data(
        30_000,
        500,
        5,
        100,
        12,
        OutputFormat::Ndjson,
        too_late_share,
    );
    generate(&data, &config).expect("generator writes the dataset");
    data
}

/// The users of a window and whether each came back, read straight from accepted
/// events: (population with labels, forecast users).
fn independent_population(
    dataset: &Path,
    mapping: Option<&Path>,
    days_before_end: i64,
) -> (BTreeMap<String, bool>, BTreeSet<String>) {
    let accepted = oracle::accepted_events(&read_batches(dataset, mapping), &Params::default());
    let last = accepted
        .iter()
        .map(|e| e.ts)
        .max()
        .expect("some accepted event");
    let end = (last.div_euclid(DAY) + 1) * DAY; // the midnight after the last day
    let cutoff = end - days_before_end * DAY;
    let mut population = BTreeMap::new();
    for e in &accepted {
        if cutoff - WINDOW <= e.ts && e.ts < cutoff {
            population.insert(e.user_id.to_string(), false);
        }
    }
    for e in &accepted {
        if cutoff <= e.ts && e.ts < cutoff + WINDOW {
            if let Some(label) = population.get_mut(e.user_id.as_str()) {
                *label = true;
            }
        }
    }
    let forecast = accepted
        .iter()
        .filter(|e| end - WINDOW <= e.ts && e.ts < end)
        .map(|e| e.user_id.to_string())
        .collect();
    (population, forecast)
}

/// The ROC AUC by the rank-sum (Mann-Whitney) formula: rank all scores, tied scores
/// sharing their mean rank; AUC = (sum of positives' ranks - P(P+1)/2) / (P N).
fn rank_sum_auc(scored: &[(f64, bool)]) -> Option<f64> {
    let mut ranked: Vec<(f64, bool)> = scored.to_vec();
    ranked.sort_by(|a, b| a.0.partial_cmp(&b.0).unwrap());
    let mut ranks = vec![0.0; ranked.len()];
    let mut start = 0;
    while start < ranked.len() {
        let end = (start..ranked.len())
            .find(|&k| ranked[k].0 != ranked[start].0)
            .unwrap_or(ranked.len());
        for rank in &mut ranks[start..end] {
            *rank = (start + end + 1) as f64 / 2.0; // mean of ranks start+1 ..= end
        }
        start = end;
    }
    let p = ranked.iter().filter(|(_, l)| *l).count() as f64;
    let n = ranked.len() as f64 - p;
    let positive_ranks: f64 = ranked
        .iter()
        .zip(&ranks)
        .filter(|((_, l), _)| *l)
        .map(|(_, r)| r)
        .sum();
    (p > 0.0 && n > 0.0).then(|| (positive_ranks - p * (p + 1.0) / 2.0) / (p * n))
}

fn float(cell: &Cell) -> Option<f64> {
    match cell {
        Cell::Float(v) => Some(*v),
        Cell::Null => None,
        other => panic!("expected a double, found {other:?}"),
    }
}

/// Runs `predict` on `out` (the engine's output of `dataset`) with the cutoff
/// `days_before_end` days before the data's end (28: the default), then checks the
/// written tables against the independent reading. Returns the regression's test AUC.
fn check(dataset: &Path, mapping: Option<&Path>, out: &Path, days_before_end: i64) -> Option<f64> {
    let out = out.to_path_buf();
    let end = predict(
        &out,
        PredictOptions {
            cutoff: None,
            seed: 7,
            top: 5,
        },
    )
    .expect("predict succeeds")
    .end;
    let options = PredictOptions {
        cutoff: (days_before_end != 28).then(|| end - days_before_end as i32),
        seed: 7,
        top: 5,
    };
    let prediction = predict(&out, options).expect("predict succeeds");
    assert_eq!(prediction.cutoff, end - days_before_end as i32);
    let scores = output::read(&out, &SCORES)
        .unwrap()
        .expect("scores written");
    let metrics = output::read(&out, &MODEL_METRICS)
        .unwrap()
        .expect("model_metrics written");

    let (population, forecast) = independent_population(dataset, mapping, days_before_end);
    let mut labelled = BTreeMap::new();
    let mut forecast_users = BTreeSet::new();
    let mut test = Vec::new();
    let mut train = 0;
    for row in &scores {
        let (Cell::Str(user), Cell::Float(score), Cell::Bool(predicted), Cell::Str(split)) =
            (&row[0], &row[1], &row[2], &row[4])
        else {
            panic!("unexpected scores row {row:?}");
        };
        assert_eq!(*predicted, *score >= 0.5, "{row:?}");
        match (&**split, &row[3]) {
            ("forecast", Cell::Null) => assert!(forecast_users.insert(user.to_string())),
            (split @ ("train" | "test"), Cell::Bool(label)) => {
                assert!(
                    labelled.insert(user.to_string(), *label).is_none(),
                    "{user} twice"
                );
                if split == "test" {
                    test.push((*score, *predicted, *label));
                } else {
                    train += 1;
                }
            }
            other => panic!("unexpected split and label {other:?}"),
        }
    }
    let differing: Vec<_> = population
        .iter()
        .map(|(u, l)| (u, Some(l)))
        .chain(labelled.iter().map(|(u, l)| (u, Some(l))))
        .filter(|(u, _)| population.get(*u) != labelled.get(*u))
        .map(|(u, _)| (u, population.get(u), labelled.get(u)))
        .take(10)
        .collect();
    assert!(
        differing.is_empty(),
        "population and labels (user, expected, written): {differing:?}"
    );
    assert_eq!(forecast_users, forecast, "forecast users");
    assert_eq!(
        train,
        (population.len() * 4).div_ceil(5),
        "an 80% training split"
    );

    let logistic = metrics
        .iter()
        .find(|row| row[0] == Cell::Str(LOGISTIC.into()))
        .expect("a logistic regression row");
    assert_eq!(logistic[6], Cell::Int(train as i64));
    assert_eq!(logistic[7], Cell::Int(test.len() as i64));
    let scored: Vec<(f64, bool)> = test.iter().map(|&(s, _, l)| (s, l)).collect();
    let auc = rank_sum_auc(&scored);
    match (auc, float(&logistic[1])) {
        (Some(a), Some(b)) => assert!((a - b).abs() < 1e-9, "AUC {a} by rank sums, {b} written"),
        (a, b) => assert_eq!(a, b, "AUC undefined on both sides"),
    }
    let correct = test.iter().filter(|(_, p, l)| p == l).count() as f64;
    let written_accuracy = float(&logistic[2]).unwrap();
    assert!((correct / test.len() as f64 - written_accuracy).abs() < 1e-12);
    let true_positives = test.iter().filter(|(_, p, l)| *p && *l).count() as f64;
    let predicted = test.iter().filter(|(_, p, _)| *p).count() as f64;
    if let Some(precision) = float(&logistic[3]) {
        assert!((true_positives / predicted - precision).abs() < 1e-12);
    }
    auc
}

#[test]
fn predictions_on_generated_messy_data_match_an_independent_reading() {
    let dir = tempfile::tempdir().unwrap();
    let data = generated(dir.path(), 0.01);
    let out = dir.path().join("out");
    run_engine(&data, None, &out, Params::default(), 2);
    // The default cutoff, and one whose label window ends before the data does.
    for days_before_end in [28, 40] {
        let auc =
            check(&data, None, &out, days_before_end).expect("both labels among the test users");
        // Users who were active on more days come back more often in the generated
        // data, so a model that learned anything ranks better than chance.
        assert!(
            auc > 0.55,
            "AUC {auc} with the cutoff {days_before_end} days before the end"
        );
    }
}

#[test]
fn predictions_on_sparkify_match_an_independent_reading_or_say_the_log_is_too_short() {
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data/sparkify_log");
    if !data.exists() {
        eprintln!("skipping: {} is not present", data.display());
        return;
    }
    let mapping = Path::new(env!("CARGO_MANIFEST_DIR")).join("inputs/examples/sparkify.toml");
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    run_engine(&data, Some(&mapping), &out, Params::default(), 2);
    // The shipped sample covers November 2018 only: too short for a 28-day feature
    // window and a 28-day label window, which must be a clear error. A longer Sparkify
    // log is checked like the generated data.
    let accepted =
        oracle::accepted_events(&read_batches(&data, Some(&mapping)), &Params::default());
    let days = |ts: i64| ts.div_euclid(DAY);
    let span = days(accepted.iter().map(|e| e.ts).max().unwrap())
        - days(accepted.iter().map(|e| e.ts).min().unwrap())
        + 1;
    if span >= 56 {
        check(&data, Some(&mapping), &out, 28);
    } else {
        let options = PredictOptions {
            cutoff: None,
            seed: 7,
            top: 5,
        };
        let error = predict(&out, options).err().expect("too short").to_string();
        assert!(
            error.contains("at least 56 days") && error.contains(&format!("spans {span} days")),
            "{error}"
        );
    }
}

#[test]
fn features_see_nothing_at_or_after_the_cutoff() {
    // No too-late rows, so removing later events cannot change which earlier ones are
    // accepted (the watermark only falls).
    let dir = tempfile::tempdir().unwrap();
    let data = generated(dir.path(), 0.0);
    let full = read_batches(&data, None);
    let tables_of = |units: &[(String, tidemark_inputs::records::FileBatch)]| {
        let mut per_time = common::harness::run_in_process(units, Params::default(), 2, 3);
        let last = per_time.pop().expect("some logical time");
        assert!(
            !last["quarantine"]
                .iter()
                .any(|r| r[3] == Cell::Str("too_late".into())),
            "no too-late rows"
        );
        histories_from_rows(&last["user_activity_daily"], &last["user_plans"]).unwrap()
    };
    let histories = tables_of(&full);
    let end = tidemark::predict::facts::data_end(&histories).unwrap();
    let cutoff = end - 40;
    let cutoff_ms = i64::from(cutoff) * DAY;
    // The same input without any event at or after the cutoff (plan changes stay: the
    // plan in force before the cutoff must not see them either).
    let truncated: Vec<_> = full
        .iter()
        .map(|(file, batch)| {
            let mut batch = batch.clone();
            let keep: Vec<bool> = batch.events.iter().map(|e| e.ts < cutoff_ms).collect();
            let mut k = keep.iter();
            batch.events.retain(|_| *k.next().unwrap());
            let mut k = keep.iter();
            batch.event_rows.retain(|_| *k.next().unwrap());
            (file.clone(), batch)
        })
        .collect();
    let before = tables_of(&truncated);
    let full_examples = examples(&histories, cutoff, false);
    let truncated_examples = examples(&before, cutoff, false);
    assert!(full_examples.len() > 100, "{} users", full_examples.len());
    assert_eq!(full_examples.len(), truncated_examples.len());
    for (a, b) in full_examples.iter().zip(&truncated_examples) {
        assert_eq!(a.user_id, b.user_id);
        assert_eq!(a.features, b.features, "features of {}", a.user_id);
    }
}

/// A population built directly as per-user histories: the feature window is days
/// 28..56, the cutoff day 56, the label window 56..84. Sessions are drawn independently
/// of everything else; whether a user comes back depends on how recently the user was
/// active (`dependent`) or is a fair coin (noise).
fn synthetic(users: usize, dependent: bool, seed: u64) -> Histories {
    let mut state = seed.wrapping_mul(6_364_136_223_846_793_005) | 1;
    let mut next = move |n: u64| {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (state >> 33) % n
    };
    let mut histories = Histories::new();
    for u in 0..users {
        let mut days: Vec<i32> = (0..1 + next(8)).map(|_| 28 + next(28) as i32).collect();
        days.push(next(28) as i32); // first seen before the window
        days.sort_unstable();
        days.dedup();
        let recency = 56 - days.last().unwrap();
        let p_back = if !dependent {
            50
        } else if recency <= 3 {
            90
        } else if recency <= 10 {
            45
        } else {
            8
        };
        if next(100) < p_back {
            days.push(56 + next(28) as i32);
        }
        let mut history = UserHistory::default();
        for day in days {
            let sessions = 1 + next(4) as i64;
            history.days.push(ActiveDay {
                day,
                events: sessions * (1 + next(10) as i64),
                skips: next(3) as i64,
                sessions,
                session_s: 60.0 * (1 + next(30)) as f64,
            });
        }
        histories.insert(format!("u{u:05}"), history);
    }
    // Pin the span to days 0..84.
    let mut edges = UserHistory::default();
    for day in [0, 83] {
        edges.days.push(ActiveDay {
            day,
            events: 1,
            sessions: 1,
            ..ActiveDay::default()
        });
    }
    histories.insert("edges".into(), edges);
    histories
}

fn fit_at_56(histories: &Histories) -> tidemark::predict::Prediction {
    let options = PredictOptions {
        cutoff: Some(56),
        seed: 3,
        top: 5,
    };
    tidemark::predict::fit(histories, options).expect("fits").0
}

#[test]
fn the_model_learns_what_the_future_depends_on_and_nothing_from_noise() {
    let learned = fit_at_56(&synthetic(3_000, true, 1));
    let auc = learned.logistic_metrics.auc.unwrap();
    let baseline = learned.baseline_metrics.auc.unwrap();
    assert!(auc > 0.8, "AUC {auc} where returning depends on recency");
    assert!(
        auc > baseline + 0.1,
        "AUC {auc} against the baseline's {baseline}"
    );
    let noise = fit_at_56(&synthetic(3_000, false, 2));
    let auc = noise.logistic_metrics.auc.unwrap();
    assert!((auc - 0.5).abs() < 0.08, "AUC {auc} on a coin-flip label");
}

#[test]
fn too_little_data_or_a_cutoff_outside_it_is_a_clear_error() {
    let histories = synthetic(200, true, 4);
    let fit = |cutoff: Option<i32>, histories: &Histories| {
        let options = PredictOptions {
            cutoff,
            seed: 1,
            top: 5,
        };
        tidemark::predict::fit(histories, options)
            .err()
            .map(|e| e.to_string())
    };
    // No users before the cutoff: the feature window starts before the data.
    let early = fit(Some(20), &histories).expect("an error");
    assert!(early.contains("choose --cutoff from"), "{early}");
    // No time after it: the label window runs past the data.
    let late = fit(Some(70), &histories).expect("an error");
    assert!(late.contains("28 days before it and 28 from it"), "{late}");
    // Data shorter than 56 days.
    let mut short = Histories::new();
    for (u, day) in [(0, 0), (1, 40)] {
        let mut h = UserHistory::default();
        h.days.push(ActiveDay {
            day,
            events: 1,
            sessions: 1,
            ..ActiveDay::default()
        });
        short.insert(format!("u{u}"), h);
    }
    let message = fit(None, &short).expect("an error");
    assert!(message.contains("at least 56 days"), "{message}");
    assert!(fit(None, &Histories::new())
        .expect("an error")
        .contains("no accepted event"));
}
