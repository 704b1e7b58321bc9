//! The heart of tidemark: whatever the batching and arrival order (within the allowed
//! lateness), the maintained tables after every batch equal a from-scratch batch
//! computation (the oracle) over the files seen so far, and the final tables do not
//! depend on the cut.

mod common;
mod oracle;

use std::io::Write;
use std::path::Path;

use common::{assert_matches_oracle, engine_tables, read_batches, run_engine};
use proptest::prelude::*;
use tidemark_dataflows::settings::Params;

const HOUR: i64 = 3_600_000;
const BASE: i64 = 1_735_689_600_000; // 2025-01-01T00:00:00Z

#[derive(Clone, Debug)]
struct TestEvent {
    id: u32,
    user: u8,
    ts: i64,
    kind: u8,
    session: Option<u8>,
}

fn event_strategy() -> impl Strategy<Value = TestEvent> {
    (
        0u32..400,
        0u8..6,
        // Mostly within three days, clustered so that gaps near 30 minutes and midnights occur.
        (0i64..72, 0i64..HOUR),
        0u8..4,
        prop::option::weighted(0.15, 0u8..3),
    )
        .prop_map(|(id, user, (hour, offset), kind, session)| TestEvent {
            id,
            user,
            ts: BASE + hour * HOUR + offset / 20 * 20,
            kind,
            session,
        })
}

/// Events in arrival order, cut into batches: arrival order is event time plus a
/// random delay below the allowed lateness, with the occasional much later straggler.
fn batches_strategy() -> impl Strategy<Value = Vec<Vec<TestEvent>>> {
    (
        prop::collection::vec(
            (event_strategy(), 0i64..HOUR, prop::bool::weighted(0.05)),
            1..70,
        ),
        prop::collection::vec(0usize..70, 0..6),
    )
        .prop_map(|(mut events, cuts)| {
            events.sort_by_key(|(e, delay, straggler)| {
                e.ts + delay + if *straggler { 30 * HOUR } else { 0 }
            });
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c % events.len()).collect();
            cuts.sort();
            cuts.dedup();
            let mut batches = Vec::new();
            let mut start = 0;
            for cut in cuts.into_iter().chain([events.len()]) {
                if cut > start {
                    batches.push(
                        events[start..cut]
                            .iter()
                            .map(|(e, _, _)| e.clone())
                            .collect(),
                    );
                    start = cut;
                }
            }
            batches
        })
}

const KINDS: [&str; 4] = ["play", "Skip ", "pause", "like"];

fn write_dataset(dir: &Path, batches: &[Vec<TestEvent>], paid_users: &[u8]) {
    std::fs::create_dir_all(dir.join("events")).unwrap();
    std::fs::create_dir_all(dir.join("users")).unwrap();
    let mut users = std::fs::File::create(dir.join("users/users.csv")).unwrap();
    writeln!(users, "user_id,signup_ts,country,plan").unwrap();
    for user in 0..4u8 {
        let plan = if paid_users.contains(&user) {
            "paid"
        } else {
            "free"
        };
        writeln!(users, "u{user},,SE,{plan}").unwrap();
    }
    for (index, batch) in batches.iter().enumerate() {
        let mut file =
            std::fs::File::create(dir.join(format!("events/part-{index:04}.ndjson"))).unwrap();
        for e in batch {
            let session = e
                .session
                .map_or("null".to_string(), |s| format!("\"s{s}\""));
            writeln!(
                file,
                r#"{{"event_id":"e{}","user_id":"u{}","ts":{},"event_type":"{}","session_id":{session}}}"#,
                e.id, e.user, e.ts, KINDS[e.kind as usize]
            )
            .unwrap();
        }
    }
}

fn check_every_prefix(
    batches: &[Vec<TestEvent>],
    paid_users: &[u8],
    params: Params,
    workers: usize,
) -> Vec<common::Tables> {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let out = dir.path().join("out");
    write_dataset(&data, batches, paid_users);
    run_engine(&data, None, &out, params, workers);
    let inputs = read_batches(&data, None);
    let mut finals = Vec::new();
    for time in 0..inputs.len() {
        let expected = oracle::compute(&inputs[..=time], &params);
        let actual = engine_tables(&out, time as u64);
        assert_matches_oracle(
            &expected,
            &actual,
            &format!("after batch {time} of {} ({workers} workers)", inputs.len()),
        );
        finals.push(actual);
    }
    finals
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn maintained_tables_equal_recompute_after_every_batch(
        batches in batches_strategy(),
        paid in prop::collection::vec(0u8..4, 0..3),
        workers in 1usize..=2,
        gap_minutes in prop::sample::select(vec![30.0, 10.0]),
        midnight_split in any::<bool>(),
    ) {
        let settings = tidemark_dataflows::settings::Settings {
            session_gap_minutes: gap_minutes,
            midnight_split,
            ..Default::default()
        };
        check_every_prefix(&batches, &paid, settings.params().unwrap(), workers);
    }

    #[test]
    fn final_tables_do_not_depend_on_the_cut(
        batches in batches_strategy(),
        workers in 1usize..=2,
    ) {
        // The same events, all in one batch, must give the same final tables
        // (unless the cut made some of them too late, which the oracle accounts for).
        let all: Vec<TestEvent> = batches.iter().flatten().cloned().collect();
        let cut = check_every_prefix(&batches, &[1], Params::default(), workers);
        let whole = check_every_prefix(&[all], &[1], Params::default(), 1);
        let cut_final = cut.last().unwrap();
        let whole_final = whole.last().unwrap();
        let too_late = cut_final["quarantine"].iter().any(|row| row[3] == tidemark_dataflows::tables::Cell::Str("too_late".into()));
        if !too_late {
            for (name, rows) in whole_final {
                prop_assert_eq!(rows.len(), cut_final[name].len(), "table {}", name);
                if *name != "quarantine" {
                    prop_assert!(rows.iter().zip(&cut_final[name]).all(|(a, b)| a.iter().zip(b).all(|(x, y)| x.approx_eq(y))), "table {}", name);
                }
            }
        }
    }
}
