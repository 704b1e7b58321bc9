//! `tidemark serve` and `run --serve`: every `/api/tables/<table>` equals the summed
//! change stream and the oracle; filters, unknown tables and bad requests get clear
//! errors; `/api/changes` delivers the change of a file added to a followed run.

use crate::common;
use crate::http;
use crate::live;
use crate::oracle;

use std::time::Duration;

use chrono::NaiveDate;
use common::{compare, engine_tables, read_batches, run_engine};
use http::{cells, served, wait_for_time};
use live::{event_files, feed, follow_flags, live_dataset, source_dataset, tidemark_run};
use tidemark::runtime::run::WRITTEN_TABLES;
use tidemark::serve::Server;
use tidemark_dataflows::model::settings::Params;
use tidemark_dataflows::model::tables::{table_spec, Cell};
use tidemark_inputs::generator::{generate, OutputFormat};

/// Waits until a following run has completed every file of `data`; returns the last
/// completed time.
fn settle(data: &std::path::Path, out: &std::path::Path) -> u64 {
    let files = tidemark_inputs::Dataset::open(data, None)
        .unwrap()
        .discover()
        .unwrap()
        .len();
    live::settle(out, files)
}

fn last_time(out: &std::path::Path) -> u64 {
    live::checkpoint_state(out)
        .1
        .expect("the run completed a time")
}

#[test]
fn every_table_equals_the_change_stream_and_the_oracle() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let out = dir.path().join("out");
    generate(
        &data,
        &common::messy_data(6_000, 150, 31, 30, 6, OutputFormat::Parquet, 0.01),
    )
    .unwrap();
    let params = Params::default();
    run_engine(&data, None, &out, params, 2);
    let server = Server::start(&out, "127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = server.addr();
    wait_for_time(addr, last_time(&out));

    let engine = engine_tables(&out, u64::MAX);
    let expected = oracle::compute(&read_batches(&data, None), &params);
    for spec in WRITTEN_TABLES {
        let rows = served(addr, spec, "");
        compare(spec, &engine[spec.name], &rows, "served vs change stream");
        if let Some(expected) = expected.get(spec.name) {
            compare(spec, expected, &rows, "served vs oracle");
        }
    }

    // The table list names every table with its row count and the completed time.
    let list = http::get(addr, "/api/tables").json();
    for spec in WRITTEN_TABLES {
        let entry = list
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["name"] == spec.name)
            .unwrap_or_else(|| panic!("/api/tables lists {}", spec.name));
        assert_eq!(entry["rows"].as_u64(), Some(engine[spec.name].len() as u64));
        assert_eq!(entry["time"].as_u64(), Some(last_time(&out)));
    }

    // Status: accepted events are the oracle's window events; the watermark is the
    // largest event time less the allowed lateness.
    let status = http::get(addr, "/api/status").json();
    let window_events: i64 = expected["window_activity"]
        .iter()
        .map(|row| match row[2] {
            Cell::Int(n) => n,
            _ => panic!("events is an integer"),
        })
        .sum();
    assert_eq!(status["events"].as_i64(), Some(window_events));
    assert!(status["watermark"].is_string(), "{status}");

    // Filters: a day range and a country, against the same rows filtered here.
    let daily = table_spec("daily_active").unwrap();
    let all = served(addr, &daily, "");
    let (from, to) = match (&all[1][0], &all[all.len() - 2][0]) {
        (Cell::Date(a), Cell::Date(b)) => (*a, *b),
        _ => panic!("day is a date"),
    };
    let text = |days: i32| {
        (NaiveDate::from_ymd_opt(1970, 1, 1).unwrap() + chrono::Duration::days(days.into()))
            .format("%Y-%m-%d")
            .to_string()
    };
    let filtered = served(
        addr,
        &daily,
        &format!("?from={}&to={}", text(from), text(to)),
    );
    let wanted: Vec<_> = all
        .iter()
        .filter(|r| matches!(r[0], Cell::Date(d) if d >= from && d < to))
        .cloned()
        .collect();
    assert_eq!(filtered, wanted);
    assert!(!wanted.is_empty() && wanted.len() < all.len());

    let segments = table_spec("engagement_by_segment").unwrap();
    let all = served(addr, &segments, "");
    let country = all
        .iter()
        .find_map(|r| match &r[1] {
            Cell::Str(c) => Some(c.clone()),
            _ => None,
        })
        .expect("some segment has a country");
    let by_country = served(addr, &segments, &format!("?country={country}"));
    let wanted: Vec<_> = all
        .iter()
        .filter(|r| r[1] == Cell::Str(country.clone()))
        .cloned()
        .collect();
    assert_eq!(by_country, wanted);
}

#[test]
fn bad_requests_get_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("not-yet");
    let server = Server::start(&out, "127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = server.addr();

    // No output yet: empty tables and a status that says what to do.
    let status = http::get(addr, "/api/status").json();
    assert!(status["time"].is_null());
    assert!(
        status["message"].as_str().unwrap().contains("tidemark run"),
        "{status}"
    );
    let list = http::get(addr, "/api/tables").json();
    assert!(list.as_array().unwrap().iter().all(|t| t["rows"] == 0));

    let unknown = http::get(addr, "/api/tables/sesions");
    assert_eq!(unknown.status, 404);
    let body = unknown.json();
    assert!(body["error"].as_str().unwrap().contains("sesions"));
    let known: Vec<&str> = body["tables"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    for spec in WRITTEN_TABLES {
        assert!(known.contains(&spec.name), "the 404 names {}", spec.name);
    }

    for (query, says) in [
        (
            "/api/tables/window_activity?country=US",
            "no column `country`",
        ),
        ("/api/tables/daily_active?from=yesterday", "not a date"),
        ("/api/tables/daily_active?dau=many", "an integer"),
        ("/api/tables/kpis?from=2025-01-01", "no date or time column"),
    ] {
        let response = http::get(addr, query);
        assert_eq!(response.status, 400, "{query}");
        let error = response.json()["error"].as_str().unwrap().to_string();
        assert!(error.contains(says), "{query}: {error}");
    }

    // A client that disconnects mid-stream harms nothing.
    for _ in 0..3 {
        drop(http::Events::open(addr, "/api/changes"));
    }
    assert_eq!(http::get(addr, "/api/status").status, 200);

    // The page and its chart library are served from the binary.
    let page = http::get(addr, "/");
    assert_eq!(page.status, 200);
    assert!(page
        .header("content-type")
        .unwrap()
        .starts_with("text/html"));
    assert!(page.body.contains("tidemark"));
    let uplot = http::get(addr, "/uplot.js");
    assert_eq!(uplot.status, 200);
    assert!(uplot.body.contains("uPlot"));
    assert_eq!(http::get(addr, "/nothing.js").status, 404);
}

#[test]
fn changes_stream_delivers_a_followed_file_and_run_serve_serves() {
    let dir = tempfile::tempdir().unwrap();
    let source = source_dataset(dir.path(), 41, 4, OutputFormat::Parquet);
    let data = live_dataset(dir.path(), &source);
    let out = dir.path().join("out");
    let files = event_files(&source);
    feed(&files[0], &data);
    let mut flags = follow_flags("3");
    flags.extend(["--serve", "127.0.0.1:0"]);
    let (mut child, addr) = live::spawn_serving(&mut tidemark_run(Some(&data), &out, &flags));
    let settled = settle(&data, &out);
    wait_for_time(addr, settled);
    let mut events = http::Events::open(addr, "/api/changes");
    feed(&files[1], &data);
    let message = loop {
        let (name, payload) = events
            .next(Duration::from_secs(60))
            .expect("a change event after a new file");
        assert_eq!(name, "change");
        let message: serde_json::Value = serde_json::from_str(&payload).unwrap();
        assert!(message["time"].as_u64().unwrap() > settled);
        if message["tables"].get("window_activity").is_some() {
            break message;
        }
    };
    let time = message["time"].as_u64().unwrap();
    let spec = table_spec("window_activity").unwrap();
    let changes = message["tables"]["window_activity"]
        .as_array()
        .expect("the new file changes window_activity");
    // The message's window_activity changes are exactly the change stream's of time 1.
    let mut sent: Vec<(Vec<Cell>, i64)> = changes
        .iter()
        .map(|row| (cells(&spec, row), row["diff"].as_i64().unwrap()))
        .collect();
    sent.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let mut written: Vec<(Vec<Cell>, i64)> = tidemark::sink::reader::read_changes(&out, &spec)
        .unwrap()
        .into_iter()
        .filter(|(_, t, _)| *t == time)
        .map(|(row, _, diff)| (row, diff))
        .collect();
    written.sort_by(|a, b| a.partial_cmp(b).unwrap());
    assert_eq!(sent.len(), written.len());
    for ((a, da), (b, db)) in sent.iter().zip(&written) {
        assert_eq!(da, db);
        assert!(
            a.iter().zip(b).all(|(x, y)| x.approx_eq(y)),
            "{a:?} vs {b:?}"
        );
    }

    // After the last file, the served tables equal the change streams.
    for file in &files[2..] {
        feed(file, &data);
    }
    let last = settle(&data, &out);
    wait_for_time(addr, last);
    let engine = engine_tables(&out, u64::MAX);
    for spec in WRITTEN_TABLES {
        compare(
            spec,
            &engine[spec.name],
            &served(addr, spec, ""),
            "run --serve",
        );
    }
    // The run has ended by now (idle); the server goes on until a signal.
    std::thread::sleep(Duration::from_secs(4));
    assert!(
        child.try_wait().unwrap().is_none(),
        "run --serve keeps serving"
    );
    assert_eq!(http::get(addr, "/api/status").status, 200);
    std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let status = live::wait(&mut child, Duration::from_secs(30));
    assert!(status.success(), "{status:?}");
}
