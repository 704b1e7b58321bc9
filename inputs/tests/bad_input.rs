//! The contract's "Bad input" rules: every broken row or file is quarantined with its
//! file, row, field and reason, and every good row of the same file is still read.

mod common;

use std::sync::Arc;

use arrow::array::TimestampMillisecondArray;
use common::*;
use proptest::prelude::*;
use tidemark_inputs::records::FileBatch;
use tidemark_inputs::InputError;

const HEADER: &str = "event_id,user_id,ts,event_type,item_id,duration_ms,session_id\n";

/// A CSV events file: good row, `bad` (as row 2), good row.
fn csv_with(bad: &str) -> Vec<u8> {
    format!("{HEADER}g1,u1,1752279600000,play,i1,10,s1\n{bad}\ng3,u3,1752279600000,skip,,,\n")
        .into_bytes()
}

/// Reads `events/x.csv` holding a bad row 2 between two good rows.
fn read_bad_row(bad: &str) -> FileBatch {
    let set = dataset(&[("events/x.csv", csv_with(bad))], None);
    let batch = set.read("events/x.csv");
    let ids: Vec<_> = batch.events.iter().map(|e| e.event_id.as_str()).collect();
    assert_eq!(ids, ["g1", "g3"], "good rows around `{bad}`");
    assert_eq!(batch.event_rows, [1, 3]);
    batch
}

fn assert_one(batch: &FileBatch, field: &str, reason: &str) {
    assert_eq!(quarantine(batch), [q("events/x.csv", 2, field, reason)]);
}

#[test]
fn empty_user_id_is_missing_value() {
    let b = read_bad_row("b2,,1752279600000,play,,,");
    assert_one(&b, "user_id", "missing_value");
    assert_eq!(b.quarantine[0].raw, "b2,,1752279600000,play,,,");
    assert_one(
        &read_bad_row("b2,   ,1752279600000,play,,,"),
        "user_id",
        "missing_value",
    );
}

#[test]
fn empty_event_type_is_missing_value() {
    assert_one(
        &read_bad_row("b2,u2,1752279600000,  ,,,"),
        "event_type",
        "missing_value",
    );
}

#[test]
fn empty_event_id_and_ts_are_missing_values() {
    assert_one(
        &read_bad_row(",u2,1752279600000,play,,,"),
        "event_id",
        "missing_value",
    );
    assert_one(&read_bad_row("b2,u2,,play,,,"), "ts", "missing_value");
}

#[test]
fn bad_timestamp() {
    for ts in [
        "yesterday",
        "2025-13-01 00:00:00",
        "2025-07-12T25:00:00Z",
        "12.5",
    ] {
        assert_one(
            &read_bad_row(&format!("b2,u2,{ts},play,,,")),
            "ts",
            "bad_timestamp",
        );
    }
}

/// Regression (issue 14): an absurd time wrapped the derived day and month instead of
/// being rejected. Every time outside 1970-01-01 .. 2200-01-01 is `out_of_range`, in
/// every form and format.
#[test]
fn timestamps_outside_1970_to_2199_are_out_of_range() {
    for ts in [
        "9223372036854775807",
        "-9223372036854775808",
        "-1",
        "7258118400000", // 2200-01-01T00:00:00Z
        "2200-01-01T00:00:00Z",
        "1969-12-31 23:59:59",
    ] {
        assert_one(
            &read_bad_row(&format!("b2,u2,{ts},play,,,")),
            "ts",
            "out_of_range",
        );
    }
    // The bounds: the first and the last accepted millisecond.
    for ok in ["0", "7258118399999", "2199-12-31T23:59:59.999Z"] {
        let set = dataset(
            &[("events/x.csv", csv_with(&format!("b2,u2,{ok},play,,,")))],
            None,
        );
        let b = set.read("events/x.csv");
        assert!(b.quarantine.is_empty() && b.events.len() == 3, "{ok}");
    }
    // Seconds that overflow when scaled, NDJSON, and Parquet TIMESTAMP columns.
    let set = dataset(
        &[
            (
                "events/a.ndjson",
                br#"{"event_id":"a","user_id":"u","ts":9223372036854775807,"event_type":"play"}"#
                    .to_vec(),
            ),
            (
                "events/b.parquet",
                parquet(vec![
                    ("event_id", strings(&[Some("b1"), Some("b2")])),
                    ("user_id", strings(&[Some("u"), Some("u")])),
                    (
                        "ts",
                        Arc::new(
                            TimestampMillisecondArray::from(vec![i64::MAX, 1_752_279_600_000])
                                .with_timezone("UTC"),
                        ),
                    ),
                    ("event_type", strings(&[Some("play"), Some("play")])),
                ]),
            ),
        ],
        None,
    );
    assert_eq!(
        quarantine(&set.read("events/a.ndjson")),
        [q("events/a.ndjson", 1, "ts", "out_of_range")]
    );
    let b = set.read("events/b.parquet");
    assert_eq!(
        quarantine(&b),
        [q("events/b.parquet", 1, "ts", "out_of_range")]
    );
    assert_eq!(b.events.len(), 1);
}

#[test]
fn durations_out_of_range_or_not_integers() {
    assert_one(
        &read_bad_row("b2,u2,1752279600000,play,,-1,"),
        "duration_ms",
        "out_of_range",
    );
    assert_one(
        &read_bad_row("b2,u2,1752279600000,play,,7200001,"),
        "duration_ms",
        "out_of_range",
    );
    assert_one(
        &read_bad_row("b2,u2,1752279600000,play,,12x,"),
        "duration_ms",
        "bad_integer",
    );
    assert_one(
        &read_bad_row("b2,u2,1752279600000,play,,1.5,"),
        "duration_ms",
        "bad_integer",
    );
    // The bounds themselves are valid.
    for ok in ["0", "7200000", "300.0"] {
        let set = dataset(
            &[(
                "events/x.csv",
                csv_with(&format!("b2,u2,1752279600000,play,,{ok},")),
            )],
            None,
        );
        let b = set.read("events/x.csv");
        assert!(b.quarantine.is_empty() && b.events.len() == 3, "{ok}");
    }
}

#[test]
fn scaled_and_as_integer_values_that_are_not_numbers() {
    let csv = "u,ts,t,len\n17850.0,1752279600000,play,1.5\n17850.5,1752279600000,play,2\nx,1752279600000,play,2\n7,1752279600000,play,long\n8,1752279600000,play,7200.001\n";
    let mapping = "[events.columns]\nuser_id = { column = \"u\", as = \"integer\" }\nevent_type = \"t\"\nduration_ms = { column = \"len\", scale = 1000 }\n";
    let set = dataset(&[("events/x.csv", csv.as_bytes().to_vec())], Some(mapping));
    let b = set.read("events/x.csv");
    assert_eq!(
        quarantine(&b),
        [
            q("events/x.csv", 2, "user_id", "bad_integer"),
            q("events/x.csv", 3, "user_id", "bad_integer"),
            q("events/x.csv", 4, "duration_ms", "bad_integer"),
            q("events/x.csv", 5, "duration_ms", "out_of_range"),
        ]
    );
    assert_eq!(b.event_rows, [1]);
    assert_eq!(
        (b.events[0].user_id.as_str(), b.events[0].duration_ms),
        ("17850", Some(1500))
    );
}

#[test]
fn bad_plan() {
    let csv = "user_id,plan,country\nu1,paid,DE\nu2,gold,FR\nu3, Free ,\nu4,,\n";
    let set = dataset(&[("users/x.csv", csv.as_bytes().to_vec())], None);
    let b = set.read("users/x.csv");
    assert_eq!(
        quarantine(&b),
        [
            q("users/x.csv", 2, "plan", "bad_plan"),
            q("users/x.csv", 4, "plan", "missing_value")
        ]
    );
    assert_eq!(
        b.users
            .iter()
            .map(|u| u.user_id.as_str())
            .collect::<Vec<_>>(),
        ["u1", "u3"]
    );
    assert_eq!(b.quarantine[0].raw, "u2,gold,FR");
    let subs = "user_id,ts,plan\nu1,1752279600000,trial\nu1,1752279600000,paid\n";
    let set = dataset(&[("subscriptions/s.csv", subs.as_bytes().to_vec())], None);
    let b = set.read("subscriptions/s.csv");
    assert_eq!(
        quarantine(&b),
        [q("subscriptions/s.csv", 1, "plan", "bad_plan")]
    );
    assert_eq!(b.subscriptions.len(), 1);
}

#[test]
fn wrong_field_count_and_invalid_utf8_are_bad_rows() {
    let b = read_bad_row("b2,u2,1752279600000,play,,,,extra");
    assert_one(&b, "", "bad_row");
    assert_eq!(b.quarantine[0].raw, "b2,u2,1752279600000,play,,,,extra");
    assert_one(&read_bad_row("b2,u2"), "", "bad_row");
    let mut bytes = csv_with("b2,u\u{e9}2,1752279600000,play,,,");
    let at = bytes.windows(2).position(|w| w == [0xc3, 0xa9]).unwrap();
    bytes[at] = 0xff; // invalid UTF-8
    let set = dataset(&[("events/x.csv", bytes)], None);
    let b = set.read("events/x.csv");
    assert_one(&b, "", "bad_row");
    assert_eq!(b.events.len(), 2);
}

#[test]
fn bad_json_lines() {
    let ndjson = "{\"event_id\":\"g1\",\"user_id\":\"u1\",\"ts\":1752279600000,\"event_type\":\"play\"}\n\
{\"event_id\":\"b2\",\"user_id\":\n\
[1,2,3]\n\
\"text\"\n\
{\"event_id\":\"b5\"} trailing\n\
{\"event_id\":\"g6\",\"user_id\":\"u6\",\"ts\":1752279600000,\"event_type\":\"skip\",\"duration_ms\":-5}\n\
{\"event_id\":\"g7\",\"user_id\":\"u7\",\"ts\":1752279600000,\"event_type\":\"skip\"}\n";
    let set = dataset(&[("events/x.ndjson", ndjson.as_bytes().to_vec())], None);
    let b = set.read("events/x.ndjson");
    let f = "events/x.ndjson";
    assert_eq!(
        quarantine(&b),
        [
            q(f, 2, "", "bad_json"),
            q(f, 3, "", "bad_json"),
            q(f, 4, "", "bad_json"),
            q(f, 5, "", "bad_json"),
            q(f, 6, "duration_ms", "out_of_range"),
        ]
    );
    assert_eq!(b.quarantine[1].raw, "[1,2,3]");
    assert_eq!(b.event_rows, [1, 7]);
}

#[test]
fn raw_is_truncated_to_1000_chars() {
    let long = "x".repeat(5000);
    let b = read_bad_row(&format!("b2,,1752279600000,{long},,,"));
    assert_eq!(b.quarantine[0].raw.chars().count(), 1000);
}

#[test]
fn missing_mapped_column_quarantines_the_whole_file() {
    let mapping = "[events.columns]\nuser_id = \"uid\"\n";
    let json = "{\"event_id\":\"a\",\"user_id\":\"u\",\"ts\":1,\"event_type\":\"x\"}\n";
    let pq = parquet(vec![
        ("event_id", strings(&[Some("a")])),
        ("user_id", strings(&[Some("u")])),
        ("ts", ints(&[Some(1)])),
        ("event_type", strings(&[Some("x")])),
    ]);
    let set = dataset(
        &[
            ("events/a.csv", csv_with("b2,u2,1,play,,,")),
            ("events/b.ndjson", json.as_bytes().to_vec()),
            ("events/c.parquet", pq),
        ],
        Some(mapping),
    );
    for rel in ["events/a.csv", "events/b.ndjson", "events/c.parquet"] {
        let file = set.file(rel);
        let err = set.dataset.check_columns(&file).unwrap_err();
        assert!(matches!(err, InputError::MissingColumn { .. }), "{err}");
        let text = err.to_string();
        assert!(text.contains(rel) && text.contains("`uid`"), "{text}");
        let b = set.dataset.read(&file);
        assert_eq!(
            quarantine(&b),
            [q(rel, 0, "uid", "missing_column")],
            "{rel}"
        );
        assert!(b.events.is_empty());
        assert!(b.quarantine[0].raw.contains("uid"));
    }
    // A required contract column with no mapping and no same-named column.
    let set = dataset(
        &[("events/a.csv", b"event_id,user_id,ts\na,u,1\n".to_vec())],
        None,
    );
    let b = set.read("events/a.csv");
    assert_eq!(
        quarantine(&b),
        [q("events/a.csv", 0, "event_type", "missing_column")]
    );
    // A filter column counts as named.
    let set = dataset(
        &[("events/a.csv", csv_with("b2,u2,1,play,,,"))],
        Some("[events.filter]\nauth = [\"x\"]\n"),
    );
    assert_eq!(
        quarantine(&set.read("events/a.csv")),
        [q("events/a.csv", 0, "auth", "missing_column")]
    );
}

fn three_events_parquet() -> Vec<u8> {
    parquet(vec![
        ("event_id", strings(&[Some("e1"), Some("e2"), Some("e3")])),
        ("user_id", strings(&[Some("u1"), Some("u2"), Some("u1")])),
        (
            "ts",
            Arc::new(TimestampMillisecondArray::from(vec![T0, T0, T0])),
        ),
        (
            "event_type",
            strings(&[Some("play"), Some("skip"), Some("like")]),
        ),
    ])
}

#[test]
fn truncated_parquet_is_one_unreadable_row_and_other_files_still_read() {
    let good = three_events_parquet();
    let truncated = good[..good.len() / 2].to_vec();
    let set = dataset(
        &[("events/a.parquet", good), ("events/b.parquet", truncated)],
        None,
    );
    let b = set.read("events/b.parquet");
    assert_eq!(
        quarantine(&b),
        [q("events/b.parquet", 0, "", "unreadable_file")]
    );
    assert!(
        b.quarantine[0].raw.contains("events/b.parquet"),
        "{}",
        b.quarantine[0].raw
    );
    assert!(b.events.is_empty());
    assert!(set
        .dataset
        .check_columns(&set.file("events/b.parquet"))
        .is_err());
    assert_eq!(set.read("events/a.parquet").events.len(), 3);
}

#[test]
fn invalid_gzip_is_one_unreadable_row() {
    for rel in ["events/x.csv.gz", "events/x.ndjson.gz"] {
        let set = dataset(
            &[(rel, b"this is not gzip at all, just text\n".to_vec())],
            None,
        );
        let b = set.read(rel);
        assert_eq!(quarantine(&b), [q(rel, 0, "", "unreadable_file")]);
        assert!(
            b.quarantine[0].raw.contains("gzip"),
            "{}",
            b.quarantine[0].raw
        );
    }
}

#[test]
fn gzip_truncated_midway_keeps_the_rows_before() {
    let mut text = HEADER.to_string();
    let mut json = String::new();
    let n = 20_000u64;
    for i in 1..=n {
        // Varied content so the compressed stream is long.
        let user = format!("u{:x}", i.wrapping_mul(2_654_435_761) % 1_000_003);
        text.push_str(&format!(
            "e{i},{user},{},play,i{},{},\n",
            T0 + i as i64,
            i * 7919 % 10007,
            i % 1000
        ));
        json.push_str(&format!(
            "{{\"event_id\":\"e{i}\",\"user_id\":\"{user}\",\"ts\":{},\"event_type\":\"play\"}}\n",
            T0 + i as i64
        ));
    }
    for (rel, content) in [("events/x.csv.gz", text), ("events/x.ndjson.gz", json)] {
        let full = gz(content.as_bytes());
        let set = dataset(&[(rel, full[..full.len() / 2].to_vec())], None);
        let b = set.read(rel);
        let read = b.events.len() as u64;
        assert!(read > 1000 && read < n, "{rel}: {read}");
        assert_eq!(b.event_rows, (1..=read).collect::<Vec<_>>());
        assert_eq!(b.events.last().unwrap().event_id, format!("e{read}"));
        assert_eq!(
            quarantine(&b),
            [q(rel, read + 1, "", "unreadable_file")],
            "{rel}"
        );
    }
}

#[test]
fn binary_junk_in_a_text_file_is_one_unreadable_row() {
    let mut junk: Vec<u8> = (0..4096u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    junk[10] = 0;
    for rel in ["events/x.csv", "events/x.ndjson"] {
        let set = dataset(
            &[
                (rel, junk.clone()),
                ("events/ok.csv", csv_with("b2,u2,1,play,,,")),
            ],
            None,
        );
        let b = set.read(rel);
        assert_eq!(quarantine(&b), [q(rel, 0, "", "unreadable_file")]);
        assert!(b.events.is_empty());
        assert!(set.dataset.check_columns(&set.file(rel)).is_err());
        assert_eq!(set.read("events/ok.csv").events.len(), 3);
    }
    // A Parquet file under a .csv name is binary too.
    let rel = "events/p.csv";
    let set = dataset(&[(rel, three_events_parquet())], None);
    assert_eq!(
        quarantine(&set.read(rel)),
        [q(rel, 0, "", "unreadable_file")]
    );
}

#[test]
fn unknown_format_and_unreadable_paths() {
    let set = dataset(&[("events/readme.md", b"# notes\n".to_vec())], None);
    let file = set.file("events/readme.md");
    assert_eq!(
        quarantine(&set.dataset.read(&file)),
        [q("events/readme.md", 0, "", "unreadable_file")]
    );
    assert!(matches!(
        set.dataset.check_columns(&file),
        Err(InputError::UnknownFormat { .. })
    ));
    let mut gone = file.clone();
    gone.rel = "events/gone.csv".into();
    gone.path = set.dir.path().join("events/gone.csv");
    assert_eq!(
        quarantine(&set.dataset.read(&gone)),
        [q("events/gone.csv", 0, "", "unreadable_file")]
    );
}

#[test]
fn empty_files_have_no_rows_and_no_quarantine() {
    let set = dataset(
        &[
            ("events/a.csv", vec![]),
            ("events/b.ndjson", b"\n\n".to_vec()),
        ],
        None,
    );
    for rel in ["events/a.csv", "events/b.ndjson"] {
        assert_eq!(set.read(rel), FileBatch::default(), "{rel}");
    }
}

/// Reads `bytes` as a file named `rel` and checks that nothing panicked inside.
fn read_never_panics(rel: &str, bytes: &[u8]) {
    let set = dataset(&[(rel, bytes.to_vec())], None);
    let file = set.file(rel);
    let _ = set.dataset.check_columns(&file);
    let b = set.dataset.read(&file);
    assert_eq!(b.events.len(), b.event_rows.len());
    for q in &b.quarantine {
        // A decoder crate may panic on corrupt bytes (parquet 59 does in bit_util); the
        // guarantee is that tidemark catches it and quarantines the file as unreadable.
        if q.raw.contains("panicked") {
            assert_eq!(q.reason, "unreadable_file", "{rel}: {}", q.raw);
        }
        assert_eq!(q.file, rel);
        assert!(q.raw.chars().count() <= 1000);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        for rel in ["events/x.csv", "events/x.ndjson", "events/x.parquet", "events/x.csv.gz", "events/x.jsonl.gz"] {
            read_never_panics(rel, &bytes);
        }
        read_never_panics("events/y.csv.gz", &gz(&bytes));
        read_never_panics("events/y.ndjson.gz", &gz(&bytes));
    }

    #[test]
    fn text_like_bytes_never_panic(text in "[a-z0-9,\"{}:\\[\\] \n\t.-]{0,400}") {
        let csv = format!("{HEADER}{text}");
        read_never_panics("events/x.csv", csv.as_bytes());
        read_never_panics("events/x.ndjson", text.as_bytes());
    }

    #[test]
    fn corrupted_parquet_never_panics(
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        cut in any::<prop::sample::Index>(),
    ) {
        let mut bytes = three_events_parquet();
        for (at, value) in edits {
            let i = at.index(bytes.len());
            bytes[i] = value;
        }
        read_never_panics("events/x.parquet", &bytes);
        let len = bytes.len();
        bytes.truncate(cut.index(len));
        read_never_panics("events/y.parquet", &bytes);
    }
}

/// Regression (issue 14, item 5): a small gzip of junk decompressed into millions of
/// `bad_row` quarantine rows and a 4 GB peak. Past `--max-bad-rows` rows a file's
/// further bad rows are counted in one `too_many_bad_rows` row; every good row, also
/// after the cap, is still read, and the counts add up to every row of the file.
#[test]
fn bad_rows_past_the_cap_are_counted_in_one_row_and_good_rows_still_read() {
    use flate2::write::GzEncoder;
    use std::io::Write;
    let mut text = String::from(HEADER);
    let mut good = Vec::new();
    for row in 1..=60u64 {
        if row % 4 == 0 {
            text.push_str(&format!("g{row},u1,1752279600000,play,,,\n"));
            good.push(row);
        } else {
            text.push_str(&format!("junk line {row} without enough fields\n"));
        }
    }
    let mut gz = GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(text.as_bytes()).unwrap();
    let mut set = dataset(&[("events/junk.csv.gz", gz.finish().unwrap())], None);
    set.dataset.max_bad_rows = 10;
    let batch = set.read("events/junk.csv.gz");
    assert_eq!(
        batch.event_rows, good,
        "every good row is read, also past the cap"
    );
    let rows = quarantine(&batch);
    let listed: Vec<_> = rows.iter().filter(|r| r.3 == "bad_row").collect();
    assert_eq!(listed.len(), 10);
    let summary: Vec<_> = batch
        .quarantine
        .iter()
        .filter(|r| r.reason == "too_many_bad_rows")
        .collect();
    assert_eq!(summary.len(), 1, "{rows:?}");
    let bad = 60 - good.len();
    let beyond = bad - 10;
    assert!(
        summary[0].raw.starts_with(&format!("{beyond} more rows")),
        "{}",
        summary[0].raw
    );
    // The first row past the cap: the 11th bad row.
    let eleventh = (1..=60u64).filter(|r| r % 4 != 0).nth(10).unwrap();
    assert_eq!(summary[0].row, eleventh);

    // 0 lists every row.
    set.dataset.max_bad_rows = 0;
    let all = set.read("events/junk.csv.gz");
    assert_eq!(all.quarantine.len(), bad);
}
