//! Live sources besides files. `tidemark run --stdin`: NDJSON event lines piped in are
//! cut into logical times by count, give the oracle's tables over the same batches,
//! and a bad line is quarantined with file `stdin` and its line number, never fatal.
//! The end of the input ends the run; a second run on the same output resumes the
//! line numbering. `--listen`: lines from a TCP peer, quarantined as `tcp:<peer>`.

use crate::common;
use crate::live;
use crate::oracle;

use std::io::Write;
use std::process::Stdio;
use std::time::Duration;

use common::{assert_matches_oracle, engine_tables};
use live::{event_files, source_dataset, tidemark_run, wait};
use tidemark_dataflows::model::settings::Params;
use tidemark_dataflows::model::tables::Cell;
use tidemark_inputs::generator::OutputFormat;
use tidemark_inputs::records::FileBatch;
use tidemark_inputs::{Mapping, NdjsonLines};

const BATCH: usize = 400;

/// The batches `--stdin --batch-events BATCH` cuts `lines` into, numbered from `first`.
fn batches(lines: &[String], first: u64) -> Vec<(String, FileBatch)> {
    let mut parser = NdjsonLines::new(&Mapping::default());
    lines
        .chunks(BATCH)
        .enumerate()
        .map(|(chunk, lines)| {
            let mut batch = FileBatch::default();
            for (i, line) in lines.iter().enumerate() {
                parser.push(
                    line.as_bytes(),
                    first + (chunk * BATCH + i) as u64,
                    "stdin",
                    &mut batch,
                );
            }
            ("stdin".to_string(), batch)
        })
        .collect()
}

fn pipe(out: &std::path::Path, lines: &[String]) {
    let mut child = tidemark_run(
        None,
        out,
        &[
            "--stdin",
            "--batch-events",
            &BATCH.to_string(),
            "--batch-ms",
            "600000",
        ],
    )
    .stdin(Stdio::piped())
    .stdout(Stdio::null())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    for line in lines {
        writeln!(stdin, "{line}").unwrap();
    }
    drop(stdin);
    let status = wait(&mut child, Duration::from_secs(60));
    let output = child.wait_with_output().unwrap();
    assert!(
        status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn piped_lines_match_the_oracle_and_a_bad_line_is_quarantined() {
    let dir = tempfile::tempdir().unwrap();
    let source = source_dataset(dir.path(), 31, 3, OutputFormat::Ndjson);
    let mut lines = live::event_lines(&source);
    lines.insert(123, "{\"event_id\": \"broken".to_string());
    lines.insert(200, String::new());
    let (head, tail) = lines.split_at(1500);
    let out = dir.path().join("out");

    pipe(&out, head);
    let params = Params::default();
    let mut expected_batches = batches(head, 1);
    assert_matches_oracle(
        &oracle::compute(&expected_batches, &params),
        &engine_tables(&out, u64::MAX),
        "after the first pipe",
    );
    let quarantine = &engine_tables(&out, u64::MAX)["quarantine"];
    let bad = [
        Cell::Str("stdin".into()),
        Cell::Int(124),
        Cell::Str("".into()),
        Cell::Str("bad_json".into()),
    ];
    assert!(
        quarantine.iter().any(|row| row[..4] == bad),
        "the bad line 124 is quarantined as stdin: {quarantine:?}"
    );

    // A second pipe into the same output resumes: state replayed, numbering continued.
    pipe(&out, tail);
    expected_batches.extend(batches(tail, head.len() as u64 + 1));
    assert_matches_oracle(
        &oracle::compute(&expected_batches, &params),
        &engine_tables(&out, u64::MAX),
        "after the second pipe",
    );
}

#[test]
fn lines_sent_over_tcp_are_ingested_and_a_bad_line_is_quarantined() {
    let dir = tempfile::tempdir().unwrap();
    let source = source_dataset(dir.path(), 32, 2, OutputFormat::Ndjson);
    let lines = std::fs::read_to_string(&event_files(&source)[0]).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let address = format!("127.0.0.1:{port}");
    let out = dir.path().join("out");
    let mut child = tidemark_run(
        None,
        &out,
        &[
            "--listen",
            &address,
            "--batch-ms",
            "100",
            "--max-idle-secs",
            "1.5",
        ],
    )
    .stdout(Stdio::null())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    let mut stream = (0..200)
        .find_map(|_| {
            std::thread::sleep(Duration::from_millis(25));
            std::net::TcpStream::connect(&address).ok()
        })
        .expect("tidemark listens");
    let peer = format!("tcp:{}", stream.local_addr().unwrap());
    stream.write_all(lines.as_bytes()).unwrap();
    stream.write_all(b"not json at all\n").unwrap();
    drop(stream);
    let status = wait(&mut child, Duration::from_secs(60));
    let output = child.wait_with_output().unwrap();
    assert!(
        status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );

    let tables = engine_tables(&out, u64::MAX);
    assert!(!tables["sessions"].is_empty(), "the events made sessions");
    let bad_row = lines.lines().count() as i64 + 1;
    let bad = [
        Cell::Str(peer.into()),
        Cell::Int(bad_row),
        Cell::Str("".into()),
        Cell::Str("bad_json".into()),
    ];
    assert!(
        tables["quarantine"].iter().any(|row| row[..4] == bad),
        "the bad line is quarantined as {:?}: {:?}",
        bad,
        tables["quarantine"]
    );
}
