//! The cases of the incremental-equals-recompute property tests, shared by their two
//! drivers (the in-process harness and the whole `tidemark run`): random events cut
//! into batches, and the dataset files they are written to.

#![allow(dead_code)]

use std::io::Write;
use std::path::Path;

use proptest::prelude::*;

/// A test event: small ids, so that users, sessions and items repeat.
pub const HOUR: i64 = 3_600_000;
pub const BASE: i64 = 1_735_689_600_000; // 2025-01-01T00:00:00Z

#[derive(Clone, Debug)]
pub struct TestEvent {
    pub id: u32,
    pub user: u8,
    pub ts: i64,
    pub kind: u8,
    pub session: Option<u8>,
    /// The item (`t0`..`t4`), if any.
    pub item: Option<u8>,
    /// A value in halves (`value / 2`), if any.
    pub value: Option<u8>,
}

pub fn event_strategy() -> impl Strategy<Value = TestEvent> {
    (
        0u32..400,
        0u8..6,
        // Mostly within three days, clustered so that gaps near 30 minutes and midnights occur.
        (0i64..72, 0i64..HOUR),
        0u8..4,
        prop::option::weighted(0.15, 0u8..3),
        (
            prop::option::weighted(0.8, 0u8..5),
            prop::option::weighted(0.5, 0u8..11),
        ),
    )
        .prop_map(
            |(id, user, (hour, offset), kind, session, (item, value))| TestEvent {
                id,
                user,
                ts: BASE + hour * HOUR + offset / 20 * 20,
                kind,
                session,
                item,
                value,
            },
        )
}

/// Events in arrival order, cut into batches: arrival order is event time plus a
/// random delay below the allowed lateness, with the occasional much later straggler.
pub fn batches_strategy() -> impl Strategy<Value = Vec<Vec<TestEvent>>> {
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

pub const KINDS: [&str; 4] = ["play", "Skip ", "pause", "like"];

pub fn write_dataset(dir: &Path, batches: &[Vec<TestEvent>], paid_users: &[u8]) {
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
            let item = e.item.map_or("null".to_string(), |i| format!("\"t{i}\""));
            let value = e
                .value
                .map_or("null".to_string(), |v| format!("{}", f64::from(v) / 2.0));
            writeln!(
                file,
                r#"{{"event_id":"e{}","user_id":"u{}","ts":{},"event_type":"{}","session_id":{session},"item_id":{item},"value":{value}}}"#,
                e.id, e.user, e.ts, KINDS[e.kind as usize]
            )
            .unwrap();
        }
    }
}

/// `cases` cases, failures kept in `proptest-regressions/` (checked in).
pub fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        failure_persistence: Some(Box::new(
            proptest::test_runner::FileFailurePersistence::Direct(
                "proptest-regressions/incremental_equals_recompute.txt",
            ),
        )),
        ..ProptestConfig::default()
    }
}
