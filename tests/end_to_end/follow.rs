//! `tidemark run --follow`: files that arrive while the run is live are ingested once
//! each, as the next logical times, with the same tables as a static run over the same
//! files, on two workers too; SIGTERM stops cleanly after the current time.

use crate::common;
use crate::live;

use std::process::Command;
use std::time::Duration;

use common::{engine_tables, run_engine};
use live::{
    checkpoint_state, event_files, expect_success, feed, follow_flags, live_dataset,
    source_dataset, spawn, tidemark_run, wait_until,
};
use tidemark_dataflows::model::settings::Params;
use tidemark_inputs::generator::OutputFormat;

#[test]
fn following_with_two_workers_equals_a_static_run() {
    let dir = tempfile::tempdir().unwrap();
    let source = source_dataset(dir.path(), 21, 8, OutputFormat::Parquet);
    let data = live_dataset(dir.path(), &source);
    let out = dir.path().join("out");
    let mut flags = follow_flags("2");
    flags.extend(["-w", "2"]);
    let child = spawn(&mut tidemark_run(Some(&data), &out, &flags));
    for (i, file) in event_files(&source).iter().enumerate() {
        feed(file, &data);
        std::thread::sleep(Duration::from_millis(if i % 2 == 0 { 150 } else { 0 }));
    }
    expect_success(child, Duration::from_secs(60));

    let reference = dir.path().join("reference");
    run_engine(&data, None, &reference, Params::default(), 1);
    let (logged, _) = checkpoint_state(&out);
    for time in 0..logged as u64 {
        assert_eq!(
            engine_tables(&out, time),
            engine_tables(&reference, time),
            "after logical time {time}"
        );
    }
    assert_eq!(
        engine_tables(&out, u64::MAX),
        engine_tables(&reference, u64::MAX)
    );
    assert!(!engine_tables(&out, u64::MAX)["sessions"].is_empty());
}

#[test]
fn sigterm_stops_after_the_current_time_and_a_restart_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let source = source_dataset(dir.path(), 22, 8, OutputFormat::Ndjson);
    let data = live_dataset(dir.path(), &source);
    let out = dir.path().join("out");
    let files = event_files(&source);
    let (first, rest) = files.split_at(4);

    let child = spawn(&mut tidemark_run(Some(&data), &out, &follow_flags("60")));
    for file in first {
        feed(file, &data);
    }
    let wanted = tidemark_inputs::Dataset::open(&data, None)
        .unwrap()
        .discover()
        .unwrap()
        .len();
    assert!(
        wait_until(Duration::from_secs(30), || checkpoint_state(&out).0
            == wanted),
        "the run ingests the first files"
    );
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    expect_success(child, Duration::from_secs(30));
    let (logged, completed) = checkpoint_state(&out);
    assert_eq!(logged, wanted);
    assert_eq!(
        completed,
        Some(wanted as u64 - 1),
        "a clean stop completes every logged time"
    );

    for file in rest {
        feed(file, &data);
    }
    expect_success(
        spawn(&mut tidemark_run(Some(&data), &out, &follow_flags("1"))),
        Duration::from_secs(60),
    );
    let reference = dir.path().join("reference");
    run_engine(&data, None, &reference, Params::default(), 1);
    assert_eq!(
        engine_tables(&out, u64::MAX),
        engine_tables(&reference, u64::MAX)
    );
}

/// Regression (issue 13): a following run's final rate divided its events by the whole
/// run, waits for new files included, so an idle minute made it look slow. The rate is
/// now over the working time, and the summary says how long the run waited.
#[test]
fn a_following_runs_rate_leaves_out_its_waits_for_input() {
    let dir = tempfile::tempdir().unwrap();
    let data = source_dataset(dir.path(), 12, 3, OutputFormat::Ndjson);
    let out = dir.path().join("out");
    let mut command = Command::new(live::binary());
    command
        .arg("run")
        .arg(&data)
        .arg("--out")
        .arg(&out)
        .arg("--no-delta")
        .args(follow_flags("4"));
    let result = live::output(&mut command);
    let stdout = String::from_utf8_lossy(&result.stdout).to_string();
    assert!(result.status.success(), "{stdout}");
    let line = stdout
        .lines()
        .find(|l| l.starts_with("Ran "))
        .unwrap_or_else(|| panic!("a summary line: {stdout}"));
    let number_before = |marker: &str| -> f64 {
        let head = &line[..line
            .find(marker)
            .unwrap_or_else(|| panic!("{marker} in {line}"))];
        let start = head
            .rfind(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap()
            + 1;
        head[start..].parse().unwrap()
    };
    let after_in = &line[line.find(" in ").expect("' in '") + 4..];
    let total: f64 = after_in[..after_in.find('s').unwrap()].parse().unwrap();
    let waiting = number_before("s of it waiting for input");
    // The run ends 4 s after the last file arrived: much of that was waiting, even
    // when a debug build on a loaded machine still works through the last files.
    assert!(total >= 3.9 && waiting >= 0.5 && waiting <= total, "{line}");
    let rows = number_before(" event rows read");
    let rate = number_before(" events/s");
    let working = total - waiting;
    // Both times are printed to 0.01 s, so the working time is known to within 0.01 s:
    // on a fast run that is several percent of it.
    let (fastest, slowest) = (rows / (working - 0.01).max(1e-3), rows / (working + 0.01));
    assert!(
        rate <= fastest * 1.01 + 1.0 && rate >= slowest * 0.99 - 1.0,
        "the rate is over the {working:.2} s of work: {line}"
    );
}
