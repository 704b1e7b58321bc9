//! The dashboard page in headless Chromium (Debian's `chromium`, driven by
//! `web/browser_test.mjs` with playwright-core from `web/node_modules`): it loads, its
//! KPI cards show the oracle's values, its charts render, and a late file dropped into
//! a followed run corrects a value on the page without a reload. Screenshots go to
//! `artifacts/`. Skipped (with a line saying why) where Chromium or Node.js is missing,
//! unless `TIDEMARK_REQUIRE_BROWSER` is set, as CI sets it.

use crate::common;
use crate::http;
use crate::live;
use crate::oracle;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{read_batches, run_engine};
use live::{event_files, feed, follow_flags, live_dataset, source_dataset, tidemark_run};
use serde_json::Value;
use tidemark::serve::Server;
use tidemark_dataflows::model::settings::Params;
use tidemark_dataflows::model::tables::Cell;
use tidemark_inputs::generator::{generate, OutputFormat};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Chromium's path, or `None` (and why) when the browser test cannot run here.
fn browser() -> Option<PathBuf> {
    let chromium = std::env::var_os("CHROMIUM")
        .map_or_else(|| PathBuf::from("/usr/bin/chromium"), PathBuf::from);
    let missing = if !chromium.exists() {
        Some(format!(
            "{} is missing (apt-get install chromium)",
            chromium.display()
        ))
    } else if !repo().join("web/node_modules/playwright-core").exists() {
        Some("web/node_modules/playwright-core is missing (npm ci in web/)".to_string())
    } else if Command::new("node").arg("--version").output().is_err() {
        Some("node is missing (apt-get install nodejs)".to_string())
    } else {
        None
    };
    match missing {
        None => Some(chromium),
        Some(why) if std::env::var_os("TIDEMARK_REQUIRE_BROWSER").is_some() => {
            panic!("the browser test is required here, but {why}")
        }
        Some(why) => {
            eprintln!("skipping the browser test: {why}");
            None
        }
    }
}

/// Where screenshots are kept for people to look at (CI keeps the folder).
fn artifact(name: &str) -> PathBuf {
    let dir = repo().join("artifacts");
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

/// `node web/browser_test.mjs URL SHOT [flags]`, stdout piped.
fn browser_test(chromium: &Path, url: &str, shot: &Path, flags: &[&str]) -> std::process::Child {
    Command::new("node")
        .arg(repo().join("web/browser_test.mjs"))
        .arg(url)
        .arg(shot)
        .args(flags)
        .env("CHROMIUM", chromium)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("node starts")
}

/// The KPI values a page dump shows, by metric.
fn shown_kpis(dump: &Value) -> Vec<(String, f64)> {
    let mut kpis: Vec<(String, f64)> = dump["kpis"]
        .as_object()
        .expect("the dump has kpis")
        .iter()
        .map(|(metric, value)| {
            let value = value
                .as_f64()
                .unwrap_or_else(|| panic!("KPI {metric} shows a number: {dump}"));
            (metric.clone(), value)
        })
        .collect();
    kpis.sort_by(|a, b| a.0.cmp(&b.0));
    kpis
}

/// KPI rows (metric, value) as `(metric, value)` pairs.
fn kpi_pairs(rows: &[Vec<Cell>]) -> Vec<(String, f64)> {
    let mut pairs: Vec<(String, f64)> = rows
        .iter()
        .map(|row| match (&row[0], &row[1]) {
            (Cell::Str(metric), Cell::Float(value)) => (metric.to_string(), *value),
            other => panic!("a kpis row is (metric, value): {other:?}"),
        })
        .collect();
    pairs.sort_by(|a, b| a.0.cmp(&b.0));
    pairs
}

fn assert_kpis(shown: &[(String, f64)], expected: &[(String, f64)], context: &str) {
    assert_eq!(
        shown.len(),
        expected.len(),
        "{context}: {shown:?} vs {expected:?}"
    );
    for ((m1, v1), (m2, v2)) in shown.iter().zip(expected) {
        assert_eq!(m1, m2, "{context}");
        assert!(
            (v1 - v2).abs() <= 1e-9 * v2.abs().max(1.0),
            "{context}: {m1} shows {v1}, expected {v2}"
        );
    }
}

#[test]
fn the_page_shows_the_oracle_kpis_and_renders_its_charts() {
    let Some(chromium) = browser() else { return };
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let out = dir.path().join("out");
    generate(
        &data,
        &common::messy_data(20_000, 300, 51, 45, 6, OutputFormat::Parquet, 0.01),
    )
    .unwrap();
    let params = Params::default();
    run_engine(&data, None, &out, params, 2);
    let expected = oracle::compute(&read_batches(&data, None), &params);
    let server = Server::start(&out, "127.0.0.1:0".parse().unwrap()).unwrap();
    let completed = live::checkpoint_state(&out).1.unwrap();
    // The server has loaded the whole output before the page opens.
    assert!(live::wait_until(Duration::from_secs(60), || {
        http::get(server.addr(), "/api/status").json()["time"].as_u64() == Some(completed)
    }));

    let shot = artifact("dashboard.png");
    let child = browser_test(&chromium, &format!("http://{}/", server.addr()), &shot, &[]);
    let output = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "browser_test failed: {stdout}");
    let dump: Value = serde_json::from_str(stdout.lines().next().expect("a dump line")).unwrap();
    assert_eq!(
        dump["errors"],
        Value::Array(vec![]),
        "the page logs no error"
    );
    assert_kpis(
        &shown_kpis(&dump),
        &kpi_pairs(&expected["kpis"]),
        "KPI cards",
    );
    assert!(
        dump["charts"].as_u64().unwrap() >= 6,
        "charts render: {dump}"
    );
    let cohorts = expected["retention_cohorts"].len() as u64;
    assert_eq!(
        dump["heatmap_cells"].as_u64(),
        Some(cohorts),
        "a heat-map cell per cohort row"
    );
    assert!(
        dump["status"]
            .as_str()
            .unwrap()
            .contains(&completed.to_string()),
        "{dump}"
    );
    assert!(
        std::fs::metadata(&shot).unwrap().len() > 10_000,
        "a screenshot"
    );
}

#[test]
fn a_late_file_corrects_the_page_without_a_reload() {
    let Some(chromium) = browser() else { return };
    let dir = tempfile::tempdir().unwrap();
    let source = source_dataset(dir.path(), 52, 6, OutputFormat::Parquet);
    let data = live_dataset(dir.path(), &source);
    let out = dir.path().join("out");
    let files = event_files(&source);
    for file in &files[..3] {
        feed(file, &data);
    }
    let mut flags = follow_flags("30");
    flags.extend(["--serve", "127.0.0.1:0"]);
    let (mut run, addr) = live::spawn_serving(&mut tidemark_run(Some(&data), &out, &flags));
    let url = format!("http://{addr}/");
    let settle = |count: usize| live::settle(&out, count);
    let non_event_files = tidemark_inputs::Dataset::open(&data, None)
        .unwrap()
        .discover()
        .unwrap()
        .len()
        - 3;
    settle(non_event_files + 3);

    let shot = artifact("dashboard-live.png");
    let mut page = browser_test(&chromium, &url, &shot, &["--wait-correction"]);
    let mut lines = BufReader::new(page.stdout.take().unwrap()).lines();
    let first: Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
    assert_eq!(first["errors"], Value::Array(vec![]));
    assert_eq!(lines.next().unwrap().unwrap(), "READY");

    // The next file carries late events and new activity: values already on the
    // page change.
    feed(&files[3], &data);
    let time = settle(non_event_files + 4);
    let corrected: Value =
        serde_json::from_str(&lines.next().expect("a correction dump").unwrap()).unwrap();
    let notes = corrected["corrections"].as_array().unwrap();
    assert!(!notes.is_empty(), "the page lists corrections: {corrected}");
    assert!(
        notes.iter().all(|n| n.as_str().unwrap().contains('→')),
        "{corrected}"
    );
    // The page now shows the KPIs of the new time, from the change stream, unreloaded.
    let kpis = tidemark::sink::reader::read_changes(&out, &tidemark_dataflows::model::tables::KPIS)
        .unwrap();
    let now: Vec<Vec<Cell>> =
        tidemark::sink::reader::sum_changes(kpis.into_iter().filter(|(_, t, _)| *t <= time))
            .into_keys()
            .collect();
    assert_kpis(
        &shown_kpis(&corrected),
        &kpi_pairs(&now),
        "KPI cards after the late file",
    );
    assert!(page.wait().unwrap().success());
    std::process::Command::new("kill")
        .args(["-TERM", &run.id().to_string()])
        .status()
        .unwrap();
    assert!(live::wait(&mut run, Duration::from_secs(30)).success());
}
