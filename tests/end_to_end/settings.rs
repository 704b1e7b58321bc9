//! Settings: every key changes what it should (checked against the oracle run with the
//! same settings, and against the default so the key is seen to matter), and bad
//! settings are errors that name the key.

use crate::common;
use crate::oracle;

use std::path::Path;
use std::process::Command;

use common::{assert_matches_oracle, engine_tables, read_batches, run_engine, Tables};
use tidemark_dataflows::model::settings::Settings;
use tidemark_inputs::generator::{generate, GeneratorConfig};

fn dataset(dir: &Path) -> std::path::PathBuf {
    let data = dir.join("data");
    let config = GeneratorConfig {
        events: 15_000,
        users: 150,
        seed: 21,
        days: 45,
        files: 10,
        late_share: 0.03,
        too_late_share: 0.01,
        ..GeneratorConfig::default()
    };
    generate(&data, &config).expect("generator writes the dataset");
    data
}

/// Runs engine and oracle with `settings`; returns the engine's tables.
fn run_with(data: &Path, out: &Path, settings: &Settings) -> Tables {
    let params = settings.params().expect("valid settings");
    run_engine(data, None, out, params, 1);
    let actual = engine_tables(out, u64::MAX);
    let expected = oracle::compute(&read_batches(data, None), &params);
    assert_matches_oracle(&expected, &actual, &format!("settings {settings:?}"));
    actual
}

#[test]
fn every_setting_changes_what_it_should() {
    let dir = tempfile::tempdir().unwrap();
    let data = dataset(dir.path());
    let defaults = run_with(&data, &dir.path().join("default"), &Settings::default());

    let cases: Vec<(&str, Settings, &[&str])> = vec![
        (
            "session_gap_minutes",
            Settings {
                session_gap_minutes: 3.0,
                ..Default::default()
            },
            &["sessions", "session_metrics_daily"],
        ),
        (
            "midnight_split",
            Settings {
                midnight_split: false,
                ..Default::default()
            },
            &["sessions"],
        ),
        (
            "window_minutes",
            Settings {
                window_minutes: 15.0,
                ..Default::default()
            },
            &["window_activity", "spike_alerts"],
        ),
        (
            "baseline_windows",
            Settings {
                baseline_windows: 3,
                ..Default::default()
            },
            &["spike_alerts"],
        ),
        (
            "baseline_percentile",
            Settings {
                baseline_percentile: 0.5,
                ..Default::default()
            },
            &["spike_alerts"],
        ),
        (
            "alert_days",
            Settings {
                alert_days: 3,
                ..Default::default()
            },
            &["spike_alerts"],
        ),
        (
            "alert_deviations",
            Settings {
                alert_deviations: 0.5,
                alert_min_sessions: 1,
                ..Default::default()
            },
            &["spike_alerts"],
        ),
        (
            "alert_min_sessions",
            Settings {
                // With no deviations needed, only the minimum holds windows back.
                alert_min_sessions: 1,
                alert_deviations: 0.0,
                ..Default::default()
            },
            &["spike_alerts"],
        ),
        (
            "engaged_sessions",
            Settings {
                engaged_sessions: 5,
                ..Default::default()
            },
            &["kpis"],
        ),
        (
            "from",
            Settings {
                from: Some("2025-01-20".into()),
                ..Default::default()
            },
            &["kpis"],
        ),
        (
            "to",
            Settings {
                to: Some("2025-01-20T12:00:00Z".into()),
                ..Default::default()
            },
            &["kpis"],
        ),
        (
            "allowed_lateness_minutes",
            Settings {
                allowed_lateness_minutes: 0.0,
                ..Default::default()
            },
            &["quarantine", "sessions"],
        ),
    ];
    for (key, settings, changed) in cases {
        let tables = run_with(&data, &dir.path().join(key), &settings);
        if key == "alert_deviations" {
            // The seasonal rule's alerting branch is exercised, not only its nulls.
            let alerts = tables["spike_alerts"]
                .iter()
                .filter(|row| row[5] == tidemark_dataflows::model::tables::Cell::Bool(true))
                .count();
            assert!(alerts > 0, "a low threshold makes some windows alert");
        }
        for table in changed {
            assert_ne!(
                tables[table], defaults[table],
                "setting `{key}` changes table `{table}`"
            );
        }
    }
}

fn tidemark(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_tidemark"))
        .args(args)
        .output()
        .expect("tidemark runs")
}

#[test]
fn print_settings_shows_file_values_overridden_by_flags() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("settings.toml");
    std::fs::write(&file, "session_gap_minutes = 20\nwindow_minutes = 10\n").unwrap();
    let output = tidemark(&[
        "run",
        "--settings",
        file.to_str().unwrap(),
        "--window-minutes",
        "15",
        "--print-settings",
    ]);
    assert!(output.status.success());
    let text = String::from_utf8_lossy(&output.stdout);
    let printed: Settings = toml::from_str(&text).expect("printed settings parse back");
    assert_eq!(printed.session_gap_minutes, 20.0, "from the file");
    assert_eq!(printed.window_minutes, 15.0, "the flag wins");
    assert_eq!(printed.allowed_lateness_minutes, 60.0, "the default");
}

#[test]
fn bad_settings_are_errors_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let cases: &[(&str, &str)] = &[
        ("session_gap_minuts = 20\n", "session_gap_minuts"),
        ("window_minutes = -5\n", "window_minutes"),
        ("baseline_percentile = 1.5\n", "baseline_percentile"),
        ("baseline_windows = 0\n", "baseline_windows"),
        ("from = \"last tuesday\"\n", "from"),
        ("midnight_split = \"sometimes\"\n", "midnight_split"),
        (
            "allowed_lateness_minutes = -1\n",
            "allowed_lateness_minutes",
        ),
    ];
    for (index, (text, key)) in cases.iter().enumerate() {
        let file = dir.path().join(format!("bad{index}.toml"));
        std::fs::write(&file, text).unwrap();
        let output = tidemark(&[
            "run",
            "--settings",
            file.to_str().unwrap(),
            "--print-settings",
        ]);
        assert!(!output.status.success(), "{text:?} is refused");
        let error = String::from_utf8_lossy(&output.stderr);
        assert!(
            error.contains(key),
            "the error for {text:?} names `{key}`: {error}"
        );
    }
    let output = tidemark(&["run", "--window-minutes", "0", "--print-settings"]);
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("window_minutes"));
    // Regression (issue 13): negative lateness was accepted as a fraction, and a
    // negative number on the command line got clap's tip about `--` instead.
    for value in ["-0.5", "-5"] {
        let output = tidemark(&[
            "run",
            "--allowed-lateness-minutes",
            value,
            "--print-settings",
        ]);
        let error = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{value} is refused");
        assert!(
            error.contains("allowed_lateness_minutes") && error.contains("0 or more"),
            "{value}: {error}"
        );
    }
}

/// Regression (issue 13): `-h` was the hostfile flag, not help.
#[test]
fn dash_h_is_help_everywhere() {
    for args in [
        &["-h"][..],
        &["run", "-h"],
        &["generate", "-h"],
        &["report", "-h"],
    ] {
        let output = tidemark(args);
        let text = String::from_utf8_lossy(&output.stdout);
        assert!(output.status.success(), "{args:?}");
        assert!(text.contains("Usage"), "{args:?}: {text}");
    }
    let run_help = String::from_utf8_lossy(&tidemark(&["run", "--help"]).stdout).to_string();
    assert!(run_help.contains("-H, --hostfile"), "{run_help}");
}

/// Regression (issue 13): `report` on a path that is not an output printed an empty
/// report and exited 0.
#[test]
fn report_on_a_non_output_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    for path in [dir.path().join("missing"), dir.path().to_path_buf()] {
        let output = tidemark(&["report", path.to_str().unwrap()]);
        assert!(!output.status.success());
        let error = String::from_utf8_lossy(&output.stderr);
        assert!(error.contains("not a tidemark output"), "{error}");
    }
}

/// Regression (issue 13): counts printed as decimals, and the window title said
/// "5-minute" whatever `--window-minutes` was.
#[test]
fn the_report_prints_counts_as_counts_and_the_real_window_length() {
    let dir = tempfile::tempdir().unwrap();
    let data = dataset(dir.path());
    let out = dir.path().join("out");
    let run = tidemark(&[
        "run",
        data.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--window-minutes",
        "10",
        "--no-delta",
    ]);
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    // Not a terminal: progress comes as lines, and the run says it is done.
    assert!(String::from_utf8_lossy(&run.stderr).contains("done:"));
    let report = tidemark(&["report", out.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&report.stdout);
    assert!(text.contains("Busiest 10-minute windows"), "{text}");
    for metric in ["total_customers", "active_customers"] {
        let line = text
            .lines()
            .find(|l| l.trim_start().starts_with(metric))
            .unwrap();
        assert!(!line.contains('.'), "{line}");
    }
}

/// Issue 13: `run DATASET --stdin --follow` was accepted and the run ended with the
/// standard input, never following. Such flags that cannot work together are refused.
#[test]
fn follow_with_stdin_or_listen_is_refused() {
    for live in [&["--stdin"][..], &["--listen", "127.0.0.1:0"][..]] {
        let mut args = vec!["run", "data", "--out", "out", "--follow"];
        args.extend_from_slice(live);
        let output = tidemark(&args);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{args:?} was accepted");
        assert!(
            stderr.contains("--follow") && stderr.contains(live[0]),
            "{stderr}"
        );
    }
}

/// Issue 13: the summary counted only valid rows as "read", and duplicates and rows
/// filtered out by the mapping were reported nowhere. It now accounts for every row:
/// read = accepted + duplicates + too late + quarantined while reading + filtered +
/// rows of the other tables, each part checked against an independent count (the
/// files' lines as text, the oracle's tables, the readers' quarantine).
#[test]
fn the_summary_accounts_for_every_row_read() {
    use tidemark_inputs::generator::OutputFormat;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let config = GeneratorConfig {
        events: 4_000,
        users: 60,
        seed: 5,
        days: 20,
        files: 4,
        format: OutputFormat::Csv,
        late_share: 0.03,
        too_late_share: 0.02,
        duplicate_share: 0.02,
        invalid_share: 0.01,
        ..GeneratorConfig::default()
    };
    generate(&data, &config).unwrap();
    // A filter the mapping applies: `page_view` events are left out.
    std::fs::write(
        data.join("tidemark.toml"),
        "[events.filter]\nevent_type = { not_in = [\"page_view\"] }\n",
    )
    .unwrap();
    let mut lines = 0i64;
    for table in ["events", "users", "subscriptions", "items"] {
        for file in std::fs::read_dir(data.join(table)).unwrap() {
            let text = std::fs::read_to_string(file.unwrap().path()).unwrap();
            lines += text.lines().filter(|l| !l.trim().is_empty()).count() as i64 - 1;
        }
    }
    let out = dir.path().join("out");
    let output = tidemark(&[
        "run",
        data.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--no-delta",
    ]);
    let stdout = String::from_utf8_lossy(&output.stdout).to_string();
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let line = stdout
        .lines()
        .find(|l| l.starts_with("Rows read: "))
        .unwrap_or_else(|| panic!("no accounting line: {stdout}"));
    let numbers: Vec<i64> = line
        .split(|c: char| !c.is_ascii_digit())
        .filter(|t| !t.is_empty())
        .map(|t| t.parse().unwrap())
        .collect();
    let [read, accepted, duplicates, too_late, rejected, filtered, other] = numbers[..] else {
        panic!("seven numbers in {line:?}");
    };
    assert_eq!(read, lines, "{line}");
    assert_eq!(
        read,
        accepted + duplicates + too_late + rejected + filtered + other
    );

    let batches = read_batches(&data, None);
    let params = tidemark_dataflows::model::settings::Params::default();
    let expected = oracle::compute(&batches, &params);
    let events: i64 = expected["window_activity"]
        .iter()
        .map(|row| match row[2] {
            tidemark_dataflows::model::tables::Cell::Int(n) => n,
            ref other => panic!("events cell {other:?}"),
        })
        .sum();
    let late = expected["quarantine"]
        .iter()
        .filter(|row| row[3] == tidemark_dataflows::model::tables::Cell::Str("too_late".into()))
        .count() as i64;
    let read_rejects: i64 = batches.iter().map(|(_, b)| b.quarantine.len() as i64).sum();
    let valid: i64 = batches.iter().map(|(_, b)| b.events.len() as i64).sum();
    let others: i64 = batches
        .iter()
        .map(|(_, b)| (b.users.len() + b.subscriptions.len() + b.items.len()) as i64)
        .sum();
    assert_eq!(accepted, events, "{line}");
    assert_eq!(too_late, late, "{line}");
    assert_eq!(rejected, read_rejects, "{line}");
    assert_eq!(duplicates, valid - events - late, "{line}");
    assert_eq!(other, others, "{line}");
    assert!(filtered > 0, "the mapping's filter left rows out: {line}");
    assert!(duplicates > 0 && too_late > 0 && rejected > 0, "{line}");
    // The summary counts sessions from the change stream's diffs alone: the oracle's.
    let summary = stdout
        .lines()
        .find(|l| l.starts_with("Events accepted: "))
        .unwrap_or_else(|| panic!("no summary line: {stdout}"));
    assert!(
        summary.ends_with(&format!("sessions: {}", expected["sessions"].len())),
        "{summary}"
    );
}

/// Regression (issue 13): the demo ended with one day of March, shown like a full
/// month (MAU 453, stickiness 0.508), and cohorts' shares of that month looked real.
/// The report now marks a month the data does not cover entirely, by the rule it
/// documents: covered days run from the first to the last day with an active user.
/// The expected marks come from the oracle's `daily_active` and `monthly_active`.
#[test]
fn the_report_marks_partial_months() {
    let dir = tempfile::tempdir().unwrap();
    let data = dataset(dir.path());
    let out = dir.path().join("out");
    let run = tidemark(&[
        "run",
        data.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--no-delta",
        "-q",
    ]);
    assert!(run.status.success());
    let oracle = oracle::compute(
        &read_batches(&data, None),
        &tidemark_dataflows::model::settings::Params::default(),
    );
    let date = |cell: &tidemark_dataflows::model::tables::Cell| match cell {
        tidemark_dataflows::model::tables::Cell::Date(day) => *day,
        other => panic!("a date: {other:?}"),
    };
    let days: Vec<i32> = oracle["daily_active"].iter().map(|r| date(&r[0])).collect();
    let (first, last) = (*days.iter().min().unwrap(), *days.iter().max().unwrap());
    let report = tidemark(&["report", out.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&report.stdout).to_string();
    let mut partial_seen = 0;
    for row in &oracle["monthly_active"] {
        let month_start = date(&row[0]);
        let (y, m, _) = tidemark_inputs::time::civil_from_days(month_start);
        let next = if m == 12 {
            tidemark_inputs::time::days_from_civil(y + 1, 1, 1)
        } else {
            tidemark_inputs::time::days_from_civil(y, m + 1, 1)
        };
        let partial = first > month_start || last < next - 1;
        let label = format!("{y}-{m:02}");
        let line = text
            .lines()
            .find(|l| l.trim_start().starts_with(&label) && l.contains("days"))
            .unwrap_or_else(|| panic!("a monthly line for {label}: {text}"));
        assert_eq!(line.contains("(partial)"), partial, "{line}");
        partial_seen += partial as usize;
    }
    assert!(partial_seen > 0, "the data set ends mid-month: {text}");
    assert!(text.contains("* a partial month"), "{text}");
}

/// Times with digits below the millisecond (here RFC 3339 with microseconds and
/// nanoseconds) are floored to the millisecond, as the sessions show, and the run
/// says how many it floored instead of doing it silently.
#[test]
fn times_below_the_millisecond_are_floored_and_the_run_says_how_many() {
    let dir = tempfile::tempdir().unwrap();
    let events = dir.path().join("data/events");
    std::fs::create_dir_all(&events).unwrap();
    std::fs::write(
        events.join("part-0.csv"),
        "event_id,user_id,ts,event_type,item_id,duration_ms,session_id,value\n\
         e1,u1,2025-07-12T00:20:00.123456Z,play,,1000,,\n\
         e2,u1,2025-07-12T00:25:00.500Z,play,,1000,,\n\
         e3,u1,2025-07-12T00:27:00.999999999Z,play,,1000,,\n",
    )
    .unwrap();
    let out = dir.path().join("out");
    let output = Command::new(env!("CARGO_BIN_EXE_tidemark"))
        .arg("run")
        .arg(dir.path().join("data"))
        .arg("--out")
        .arg(&out)
        .arg("-q")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(
        stderr.contains("2 of the times read had digits below the millisecond"),
        "{stderr}"
    );
    let start = 1_752_279_600_123; // 2025-07-12T00:20:00.123Z
    let end = 1_752_280_020_999; // 2025-07-12T00:27:00.999Z
    let tables = engine_tables(&out, u64::MAX);
    let sessions = &tables["sessions"];
    assert_eq!(sessions.len(), 1, "{sessions:?}");
    use tidemark_dataflows::model::tables::Cell;
    assert!(
        sessions[0].contains(&Cell::Timestamp(start))
            && sessions[0].contains(&Cell::Timestamp(end)),
        "{sessions:?}"
    );
}
