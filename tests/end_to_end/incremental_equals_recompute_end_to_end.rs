//! The incremental-equals-recompute property through the whole `tidemark run`
//! (readers, sinks, Delta, checkpoint): the maintained tables after every logical time
//! equal the oracle over the files seen so far, grouping files into logical times
//! changes no table, and the final tables do not depend on the cut. A few dozen cases;
//! `incremental_equals_recompute.rs` runs hundreds in process. Failing cases are kept in
//! `proptest-regressions/`.

use crate::cases;
use crate::common;
use crate::oracle;

use cases::{batches_strategy, config, write_dataset, TestEvent, BASE};
use common::{assert_matches_oracle, engine_options, engine_tables, read_batches, run_engine};
use proptest::prelude::*;
use tidemark_dataflows::model::settings::Params;

fn check_every_prefix(
    batches: &[Vec<TestEvent>],
    paid_users: &[u8],
    params: Params,
    workers: usize,
) -> Vec<common::Tables> {
    check_every_group(batches, paid_users, params, workers, 1)
}

/// Runs the engine taking up to `group` files per logical time, and checks the tables
/// after every logical time against the oracle over the files that time has seen.
fn check_every_group(
    batches: &[Vec<TestEvent>],
    paid_users: &[u8],
    params: Params,
    workers: usize,
    group: usize,
) -> Vec<common::Tables> {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let out = dir.path().join("out");
    write_dataset(&data, batches, paid_users);
    let mut options = engine_options(&data, None, &out, params, workers);
    options.live.file_batching.max_files = group;
    tidemark::runtime::run::run(&options).expect("tidemark run succeeds");
    let inputs = read_batches(&data, None);
    let mut finals = Vec::new();
    for time in 0..inputs.len().div_ceil(group) {
        let seen = ((time + 1) * group).min(inputs.len());
        let expected = oracle::compute(&inputs[..seen], &params);
        let actual = engine_tables(&out, time as u64);
        assert_matches_oracle(
            &expected,
            &actual,
            &format!(
                "after logical time {time} ({seen} of {} files, {group} a time, {workers} workers)",
                inputs.len()
            ),
        );
        finals.push(actual);
    }
    finals
}

proptest! {
    #![proptest_config(config(24))]

    #[test]
    fn maintained_tables_equal_recompute_after_every_batch(
        batches in batches_strategy(),
        paid in prop::collection::vec(0u8..4, 0..3),
        workers in 1usize..=2,
        gap_minutes in prop::sample::select(vec![30.0, 10.0]),
        midnight_split in any::<bool>(),
    ) {
        let settings = tidemark_dataflows::model::settings::Settings {
            session_gap_minutes: gap_minutes,
            midnight_split,
            ..Default::default()
        };
        check_every_prefix(&batches, &paid, settings.params().unwrap(), workers);
    }

    #[test]
    fn grouping_files_into_logical_times_changes_no_table(
        batches in batches_strategy(),
        group in 2usize..=5,
        workers in 1usize..=2,
    ) {
        // Lateness is judged per file, so every table, quarantine included, equals the
        // oracle after each logical time however the files are grouped, and the final
        // tables equal those of a time per file.
        let grouped = check_every_group(&batches, &[1], Params::default(), workers, group);
        let single = check_every_prefix(&batches, &[1], Params::default(), 1);
        assert_matches_oracle(
            single.last().unwrap(),
            grouped.last().unwrap(),
            &format!("{group} files a time against one"),
        );
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
        let too_late = cut_final["quarantine"].iter().any(|row| row[3] == tidemark_dataflows::model::tables::Cell::Str("too_late".into()));
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

/// A distinct user's event at `minutes` after BASE: each starts a session of its own.
fn lone_event(id: u32, minutes: i64) -> TestEvent {
    TestEvent {
        id,
        user: (id % 250) as u8 + 4,
        ts: BASE + minutes * 60_000,
        kind: 0,
        session: None,
        item: None,
        value: None,
    }
}

/// The `spike_alerts` row of the window starting `minutes` after BASE.
fn spike_row(
    tables: &common::Tables,
    minutes: i64,
) -> Vec<tidemark_dataflows::model::tables::Cell> {
    let start = tidemark_dataflows::model::tables::Cell::Timestamp(BASE + minutes * 60_000);
    tables["spike_alerts"]
        .iter()
        .find(|row| row[0] == start)
        .cloned()
        .unwrap_or_else(|| panic!("a spike row at minute {minutes}"))
}

#[test]
fn a_late_event_changes_the_spike_baseline_of_the_following_windows() {
    use tidemark_dataflows::model::tables::Cell;
    // Batch 0: one new session in each 5-minute window 20..=30 (the first window is 20).
    let batch0: Vec<TestEvent> = (20..=30).map(|w| lone_event(w as u32, w * 5 + 1)).collect();
    // Batch 1: a late event opens an earlier first window (18, within the hour of
    // lateness), and windows 31..=40 follow.
    let mut batch1 = vec![lone_event(100, 18 * 5 + 2)];
    batch1.extend((31..=40).map(|w| lone_event(w as u32, w * 5 + 1)));
    // Batch 2: two late sessions in window 29 raise a slot of the baselines of 30..=41.
    let batch2 = vec![lone_event(200, 29 * 5 + 3), lone_event(201, 29 * 5 + 4)];
    let batches = vec![batch0, batch1, batch2];

    for workers in [1, 2] {
        // Time 0 is the users/ file the dataset writer adds; the event batches follow.
        let tables = check_every_prefix(&batches, &[], Params::default(), workers);
        let (t0, t1, t2) = (&tables[1], &tables[2], &tables[3]);
        // Window 30 is 10 slots after the first window 20, then 12 after the new first 18.
        assert_eq!(
            spike_row(t0, 150)[2],
            Cell::Null,
            "window 30 is warming up after batch 0"
        );
        assert_eq!(
            spike_row(t1, 150)[2],
            Cell::Float(11.0 / 12.0),
            "window 30 has a baseline after batch 1"
        );
        assert_eq!(
            spike_row(t1, 145)[2],
            Cell::Null,
            "window 29 is still warming up after batch 1"
        );
        // Window 29 now started 3 sessions: the baselines of the windows after it change.
        for window in 30..=40 {
            assert_ne!(
                spike_row(t1, window * 5),
                spike_row(t2, window * 5),
                "window {window} sees the late sessions of window 29"
            );
        }
        assert_eq!(spike_row(t2, 150)[2], Cell::Float(13.0 / 12.0));
        assert_eq!(
            spike_row(t1, 140),
            spike_row(t2, 140),
            "earlier windows do not change"
        );
    }
}

#[test]
fn a_late_users_row_moves_events_to_its_segment() {
    use tidemark_dataflows::model::tables::Cell;
    // Events and users/ and subscriptions/ rows in the same files, told apart by `kind`,
    // so that a users row can arrive after the events it places.
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(data.join("log")).unwrap();
    let mapping = dir.path().join("mapping.toml");
    std::fs::write(
        &mapping,
        r#"
[events]
files = "log/*.ndjson"
[events.filter]
kind = ["event"]
[users]
files = "log/*.ndjson"
[users.filter]
kind = ["user"]
[subscriptions]
files = "log/*.ndjson"
[subscriptions.filter]
kind = ["subscription"]
"#,
    )
    .unwrap();
    let minute = 60_000;
    let event = |id: &str, user: &str, minutes: i64, duration: i64| {
        format!(
            r#"{{"kind":"event","event_id":"{id}","user_id":"{user}","ts":{},"event_type":"play","item_id":null,"duration_ms":{duration},"session_id":null,"signup_ts":null,"country":null,"plan":null}}"#,
            BASE + minutes * minute
        )
    };
    let user = |user: &str, country: &str, plan: &str| {
        format!(
            r#"{{"kind":"user","event_id":null,"user_id":"{user}","ts":null,"event_type":null,"item_id":null,"duration_ms":null,"session_id":null,"signup_ts":null,"country":"{country}","plan":"{plan}"}}"#
        )
    };
    let change = |user: &str, minutes: i64, plan: &str| {
        format!(
            r#"{{"kind":"subscription","event_id":null,"user_id":"{user}","ts":{},"event_type":null,"item_id":null,"duration_ms":null,"session_id":null,"signup_ts":null,"country":null,"plan":"{plan}"}}"#,
            BASE + minutes * minute
        )
    };
    let files = [
        // Batch 0: u1 and u2 play, neither has a users/ row yet.
        vec![
            event("a", "u1", 10, 1000),
            event("b", "u1", 20, 2000),
            event("c", "u2", 30, 500),
            user("u2", "NO", "free"),
        ],
        // Batch 1: u1's users/ row arrives late and u1 plays again.
        vec![user("u1", "SE", "paid"), event("d", "u1", 40, 4000)],
        // Batch 2: u1 moves country (a later row replaces the earlier) and a plan change
        // from minute 15 on moves u1's later events to `free`.
        vec![
            user("u1", "DK", "paid"),
            change("u1", 15, "free"),
            event("e", "u2", 50, 0),
        ],
    ];
    for (index, lines) in files.iter().enumerate() {
        std::fs::write(
            data.join(format!("log/{index:04}.ndjson")),
            lines.join("\n") + "\n",
        )
        .unwrap();
    }

    let inputs = read_batches(&data, Some(&mapping));
    assert_eq!(inputs.len(), 3);
    let params = Params::default();
    let month = Cell::Date(tidemark_inputs::time::month_first_day(
        tidemark_inputs::time::month_of(BASE),
    ));
    let segment =
        |country: Option<&str>, plan: Option<&str>, users: i64, events: i64, duration: i64| {
            vec![
                month.clone(),
                Cell::opt_str(country),
                Cell::opt_str(plan),
                Cell::Int(users),
                Cell::Int(events),
                Cell::Int(duration),
            ]
        };
    let expected_segments = [
        vec![
            segment(None, None, 1, 2, 3000),
            segment(Some("NO"), Some("free"), 1, 1, 500),
        ],
        vec![
            segment(Some("NO"), Some("free"), 1, 1, 500),
            segment(Some("SE"), Some("paid"), 1, 3, 7000),
        ],
        vec![
            segment(Some("DK"), Some("free"), 1, 2, 6000),
            segment(Some("DK"), Some("paid"), 1, 1, 1000),
            segment(Some("NO"), Some("free"), 1, 2, 500),
        ],
    ];
    for workers in [1, 2] {
        let out = dir.path().join(format!("out{workers}"));
        run_engine(&data, Some(&mapping), &out, params, workers);
        for time in 0..inputs.len() {
            let expected = oracle::compute(&inputs[..=time], &params);
            let actual = engine_tables(&out, time as u64);
            let context = format!("after batch {time} ({workers} workers)");
            assert_matches_oracle(&expected, &actual, &context);
            assert_eq!(
                actual["engagement_by_segment"], expected_segments[time],
                "{context}"
            );
        }
    }
}
