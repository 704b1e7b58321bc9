//! The seasonal spike rule (`spike_alerts.alert`, issue 13) on generated data with
//! injected traffic spikes, whose places the generator reports: it finds every spike
//! that has three days of history before it, and most of its alerts are spikes, while
//! the contract's p95 rule flags a large share of all windows. `benches/spike_rules.rs`
//! measures the same on more sizes and seeds.

use crate::common;

use common::harness::run_in_process;
use common::read_batches;
use tidemark_dataflows::model::settings::Params;
use tidemark_dataflows::model::tables::Cell;
use tidemark_inputs::generator::{generate, GeneratorConfig, SPIKE_MINUTES};

#[test]
fn alerts_find_the_injected_spikes_and_little_else() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let config = GeneratorConfig {
        events: 150_000,
        users: 3_000,
        seed: 7,
        days: 21,
        ..GeneratorConfig::default()
    };
    let summary = generate(&data, &config).unwrap();
    let params = Params::default();
    let inputs = read_batches(&data, None);
    let tables = run_in_process(&inputs, params, 2, 8);
    let rows = &tables.last().unwrap()["spike_alerts"];
    let first = rows
        .iter()
        .filter_map(|r| match r[0] {
            Cell::Timestamp(t) => Some(t),
            _ => None,
        })
        .min()
        .unwrap();
    let spike_ms = SPIKE_MINUTES * 60_000;
    let within = |start: i64| {
        summary
            .spikes
            .iter()
            .position(|&s| start >= s && start < s + spike_ms + params.window_ms)
    };
    let mut found = vec![false; summary.spikes.len()];
    let (mut alerts, mut right) = (0, 0);
    for row in rows {
        let Cell::Timestamp(start) = row[0] else {
            panic!("a window start")
        };
        if row[5] == Cell::Bool(true) {
            alerts += 1;
            if let Some(i) = within(start) {
                right += 1;
                found[i] = true;
            }
        }
    }
    let judged_spikes: Vec<usize> = (0..summary.spikes.len())
        .filter(|&i| summary.spikes[i] >= first + 3 * 86_400_000)
        .collect();
    assert!(
        !judged_spikes.is_empty(),
        "spikes after the first three days"
    );
    for i in judged_spikes {
        assert!(
            found[i],
            "the spike at {} is found; {alerts} alerts",
            summary.spikes[i]
        );
    }
    assert!(
        right * 10 >= alerts * 7,
        "at least 70% of alerts are spikes: {right} of {alerts}"
    );
    let flagged = rows.iter().filter(|r| r[4] == Cell::Bool(true)).count();
    assert!(
        flagged * 20 > rows.len(),
        "the contract's rule flags more than 5% of windows: {flagged} of {}",
        rows.len()
    );
}
