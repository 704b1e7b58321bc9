//! `skip_rate_daily` (beyond the contract; the oracle computes it too): skips per
//! play per day, a row only for days with plays, checked against plain loops.

use crate::common;
use crate::oracle;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;

use common::{engine_tables, read_batches, run_engine};
use tidemark_dataflows::model::settings::Params;
use tidemark_dataflows::model::tables::Cell;
use tidemark_inputs::generator::{generate, GeneratorConfig, OutputFormat};
use tidemark_inputs::time::day_of;

const MINUTE: i64 = 60_000;
const BASE: i64 = 1_735_689_600_000; // 2025-01-01T00:00:00Z

/// The expected table from (day, skips, plays), keeping days with plays.
fn expected_rows(counts: &BTreeMap<i32, (i64, i64)>) -> Vec<Vec<Cell>> {
    counts
        .iter()
        .filter(|(_, &(_, plays))| plays > 0)
        .map(|(&day, &(skips, plays))| {
            vec![
                Cell::Date(day),
                Cell::Int(skips),
                Cell::Int(plays),
                Cell::Float(skips as f64 / plays as f64),
            ]
        })
        .collect()
}

#[test]
fn skip_rate_counts_accepted_skips_and_plays_per_day() {
    // (event_id, user, minutes after BASE, event_type) per batch; ids repeat across and
    // within batches (duplicates count once) and types need trimming and lower-casing.
    let batches: Vec<Vec<(&str, &str, i64, &str)>> = vec![
        vec![
            ("a", "u1", 10, "play"),
            ("b", "u1", 11, "Skip "),
            ("c", "u2", 12, "PLAY"),
            ("d", "u2", 13, "pause"),
            ("b", "u2", 14, "skip"),          // duplicate of b
            ("e", "u3", 24 * 60 + 5, "skip"), // second day: skips only (until batch 1), so no row
            ("f", "u3", 24 * 60 + 6, "like"),
        ],
        vec![
            ("g", "u1", 2 * 24 * 60 + 1, "play"),
            ("h", "u1", 2 * 24 * 60 + 2, "skip"),
            ("i", "u2", 2 * 24 * 60 + 3, "skip"),
            ("a", "u9", 2 * 24 * 60 + 4, "skip"), // duplicate of a
            ("j", "u4", 2 * 24 * 60 - 30, "play"), // late, still allowed: day 1
        ],
        vec![("k", "u3", 2 * 24 * 60 - 20, "Play")], // late, allowed: the second day gains a play
    ];

    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(data.join("events")).unwrap();
    for (index, batch) in batches.iter().enumerate() {
        let mut file =
            std::fs::File::create(data.join(format!("events/part-{index:04}.ndjson"))).unwrap();
        for (id, user, minutes, kind) in batch {
            let ts = BASE + minutes * MINUTE;
            writeln!(
                file,
                r#"{{"event_id":"{id}","user_id":"{user}","ts":{ts},"event_type":"{kind}"}}"#
            )
            .unwrap();
        }
    }
    let out = dir.path().join("out");
    run_engine(&data, None, &out, Params::default(), 2);

    // The plain reading: first-seen event ids, types trimmed and lower-cased, counted per day.
    let mut seen = BTreeSet::new();
    let mut counts: BTreeMap<i32, (i64, i64)> = BTreeMap::new();
    for (time, batch) in batches.iter().enumerate() {
        for (id, _user, minutes, kind) in batch {
            if !seen.insert(*id) {
                continue;
            }
            let entry = counts.entry(day_of(BASE + minutes * MINUTE)).or_default();
            match kind.trim().to_lowercase().as_str() {
                "skip" => entry.0 += 1,
                "play" => entry.1 += 1,
                _ => {}
            }
        }
        let actual = &engine_tables(&out, time as u64)["skip_rate_daily"];
        common::compare(
            &tidemark_dataflows::model::tables::SKIP_RATE_DAILY,
            &expected_rows(&counts),
            actual,
            &format!("after batch {time}"),
        );
    }
    let day = |d: i64| day_of(BASE) + d as i32;
    assert_eq!(
        counts,
        BTreeMap::from([(day(0), (1, 2)), (day(1), (1, 2)), (day(2), (2, 1))]),
        "the hand-written data covers what it means to"
    );
}

#[test]
fn skip_rate_matches_the_oracles_event_counts_on_messy_data() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let config = GeneratorConfig {
        events: 8_000,
        users: 200,
        seed: 21,
        days: 20,
        files: 8,
        format: OutputFormat::Ndjson,
        late_share: 0.03,
        too_late_share: 0.01,
        duplicate_share: 0.02,
        invalid_share: 0.01,
        ..GeneratorConfig::default()
    };
    generate(&data, &config).expect("generator writes the dataset");
    let out = dir.path().join("out");
    run_engine(&data, None, &out, Params::default(), 2);

    // Skips and plays per day from the oracle's accepted-event counts per (day, type).
    let tables = oracle::compute(&read_batches(&data, None), &Params::default());
    let mut counts: BTreeMap<i32, (i64, i64)> = BTreeMap::new();
    for row in &tables["event_mix_daily"] {
        let (Cell::Date(day), Cell::Str(kind), Cell::Int(events)) = (&row[0], &row[1], &row[2])
        else {
            panic!("unexpected event_mix_daily row {row:?}");
        };
        let entry = counts.entry(*day).or_default();
        match &**kind {
            "skip" => entry.0 += events,
            "play" => entry.1 += events,
            _ => {}
        }
    }
    let expected = expected_rows(&counts);
    assert!(
        expected.len() > 10,
        "the generated data has plays on most days"
    );
    let actual = &engine_tables(&out, u64::MAX)["skip_rate_daily"];
    common::compare(
        &tidemark_dataflows::model::tables::SKIP_RATE_DAILY,
        &expected,
        actual,
        "generated data",
    );
}
