//! Tests of the data generator. Files are read back with the parquet, csv and
//! serde_json crates directly, and classified by the contract's rules (validity,
//! watermark, duplicates, lateness) independently of the generator's own bookkeeping.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use arrow::array::{Array, AsArray};
use arrow::datatypes::{DataType, Int64Type, TimeUnit, TimestampMillisecondType};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use tidemark_inputs::generator::{generate, GenerateSummary, GeneratorConfig, OutputFormat};

const HOUR: i64 = 3_600_000;
const EVENT_COLUMNS: [&str; 7] = [
    "event_id",
    "user_id",
    "ts",
    "event_type",
    "item_id",
    "duration_ms",
    "value",
];

/// One event row as read from a file; `ts` is `None` when missing or unparsable.
#[derive(Clone, Debug, PartialEq)]
struct Ev {
    id: String,
    user: Option<String>,
    ts: Option<i64>,
    etype: Option<String>,
    item: Option<String>,
    dur: Option<i64>,
}

/// The contract's accepted text forms of a time.
fn parse_ts(text: &str) -> Option<i64> {
    let text = text.trim();
    if let Ok(ms) = text.parse::<i64>() {
        return Some(ms);
    }
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(text) {
        return Some(t.timestamp_millis());
    }
    chrono::NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S%.f")
        .ok()
        .map(|t| t.and_utc().timestamp_millis())
}

fn open_text(path: &Path) -> Box<dyn Read> {
    let file = File::open(path).unwrap();
    if path.extension().is_some_and(|e| e == "gz") {
        Box::new(flate2::read::GzDecoder::new(file))
    } else {
        Box::new(file)
    }
}

fn read_parquet_columns(path: &Path) -> (Vec<String>, Vec<arrow::record_batch::RecordBatch>) {
    let builder = ParquetRecordBatchReaderBuilder::try_new(File::open(path).unwrap()).unwrap();
    let names = builder
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    let batches = builder.build().unwrap().map(Result::unwrap).collect();
    (names, batches)
}

fn read_events(path: &Path) -> Vec<Ev> {
    let name = path.to_string_lossy();
    let mut out = Vec::new();
    if name.ends_with(".parquet") {
        let (names, batches) = read_parquet_columns(path);
        assert_eq!(names, EVENT_COLUMNS);
        for batch in batches {
            let schema = batch.schema();
            assert_eq!(
                schema.field(2).data_type(),
                &DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into()))
            );
            assert_eq!(schema.field(5).data_type(), &DataType::Int64);
            let ids = batch.column(0).as_string::<i32>();
            let users = batch.column(1).as_string::<i32>();
            let ts = batch.column(2).as_primitive::<TimestampMillisecondType>();
            let types = batch.column(3).as_string::<i32>();
            let items = batch.column(4).as_string::<i32>();
            let durs = batch.column(5).as_primitive::<Int64Type>();
            let opt_str = |a: &arrow::array::StringArray, i: usize| {
                a.is_valid(i).then(|| a.value(i).to_string())
            };
            for i in 0..batch.num_rows() {
                out.push(Ev {
                    id: ids.value(i).to_string(),
                    user: opt_str(users, i),
                    ts: ts.is_valid(i).then(|| ts.value(i)),
                    etype: opt_str(types, i),
                    item: opt_str(items, i),
                    dur: durs.is_valid(i).then(|| durs.value(i)),
                });
            }
        }
    } else if name.contains(".csv") {
        let mut reader = csv::Reader::from_reader(open_text(path));
        assert_eq!(
            reader.headers().unwrap().iter().collect::<Vec<_>>(),
            EVENT_COLUMNS
        );
        for record in reader.records() {
            let r = record.unwrap();
            let opt = |i: usize| Some(r[i].to_string()).filter(|s| !s.is_empty());
            out.push(Ev {
                id: r[0].to_string(),
                user: opt(1),
                ts: parse_ts(&r[2]),
                etype: opt(3),
                item: opt(4),
                dur: opt(5).map(|d| d.parse().unwrap()),
            });
        }
    } else {
        for line in BufReader::new(open_text(path)).lines() {
            let v: serde_json::Value = serde_json::from_str(&line.unwrap()).unwrap();
            let obj = v.as_object().unwrap();
            let keys: HashSet<&str> = obj.keys().map(String::as_str).collect();
            assert_eq!(keys, EVENT_COLUMNS.into_iter().collect());
            let s = |k: &str| v[k].as_str().map(str::to_string);
            out.push(Ev {
                id: s("event_id").unwrap(),
                user: s("user_id"),
                ts: match &v["ts"] {
                    serde_json::Value::Number(n) => n.as_i64(),
                    serde_json::Value::String(t) => parse_ts(t),
                    _ => None,
                },
                etype: s("event_type"),
                item: s("item_id"),
                dur: v["duration_ms"].as_i64(),
            });
        }
    }
    out
}

/// Contract rules a row breaks.
fn broken_rules(ev: &Ev) -> usize {
    [
        ev.user.as_deref().is_none_or(|u| u.trim().is_empty()),
        ev.ts.is_none(),
        ev.etype.as_deref().is_none_or(|t| t.trim().is_empty()),
        ev.dur.is_some_and(|d| !(0..=7_200_000).contains(&d)),
    ]
    .iter()
    .filter(|&&b| b)
    .count()
}

/// Counts by the contract, checking along the way that every classified row is what
/// its class promises.
#[derive(Debug, Default, PartialEq)]
struct Counts {
    written: u64,
    valid: u64,
    late: u64,
    too_late: u64,
    duplicates: u64,
    invalid: u64,
}

fn classify(files: &[Vec<Ev>]) -> (Counts, Vec<Ev>) {
    let mut counts = Counts::default();
    let mut accepted = Vec::new();
    let mut seen: HashMap<String, (usize, Ev)> = HashMap::new();
    let mut max_before: Option<i64> = None;
    for (f, rows) in files.iter().enumerate() {
        let watermark = max_before.map(|m| m - HOUR);
        let mut file_max = None;
        for ev in rows {
            counts.written += 1;
            let broken = broken_rules(ev);
            assert!(broken <= 1, "a row breaks more than one rule: {ev:?}");
            if broken == 1 {
                counts.invalid += 1;
                continue;
            }
            let ts = ev.ts.unwrap();
            if watermark.is_some_and(|w| ts < w) {
                counts.too_late += 1;
                continue;
            }
            if let Some((file, original)) = seen.get(&ev.id) {
                assert!(*file < f, "a duplicate in the same file as its original");
                assert_eq!(original, ev, "a duplicate differs from its original");
                counts.duplicates += 1;
                continue;
            }
            seen.insert(ev.id.clone(), (f, ev.clone()));
            if max_before.is_some_and(|m| ts < m) {
                assert!(ts >= watermark.unwrap());
                counts.late += 1;
            }
            counts.valid += 1;
            file_max = file_max.max(Some(ts));
            accepted.push(ev.clone());
        }
        max_before = max_before.max(file_max);
    }
    (counts, accepted)
}

fn summary_counts(s: &GenerateSummary) -> Counts {
    Counts {
        written: s.events_written,
        valid: s.valid_events,
        late: s.late,
        too_late: s.too_late,
        duplicates: s.duplicates,
        invalid: s.invalid,
    }
}

fn small(format: OutputFormat, gzip: bool) -> GeneratorConfig {
    GeneratorConfig {
        events: 30_000,
        users: 1_500,
        seed: 7,
        days: 14,
        files: 0,
        format,
        gzip,
        late_share: 0.02,
        too_late_share: 0.01,
        duplicate_share: 0.01,
        invalid_share: 0.01,
        ..GeneratorConfig::default()
    }
}

fn all_bytes(dir: &Path, files: &[PathBuf]) -> BTreeMap<PathBuf, Vec<u8>> {
    files
        .iter()
        .map(|f| {
            (
                f.strip_prefix(dir).unwrap().to_path_buf(),
                std::fs::read(f).unwrap(),
            )
        })
        .collect()
}

#[test]
fn same_seed_gives_same_bytes_and_another_seed_other_bytes() {
    for (format, gzip) in [
        (OutputFormat::Parquet, false),
        (OutputFormat::Csv, true),
        (OutputFormat::Ndjson, false),
    ] {
        let cfg = GeneratorConfig {
            events: 8_000,
            users: 400,
            files: 4,
            days: 7,
            ..small(format, gzip)
        };
        let runs: Vec<_> = [cfg.seed, cfg.seed, cfg.seed + 1]
            .iter()
            .map(|&seed| {
                let dir = tempfile::tempdir().unwrap();
                let summary = generate(
                    dir.path(),
                    &GeneratorConfig {
                        seed,
                        ..cfg.clone()
                    },
                )
                .unwrap();
                assert_eq!(summary.files.len(), 4 + 3);
                let bytes = all_bytes(dir.path(), &summary.files);
                // Nothing but the tables: the temporary directory is gone.
                let entries: Vec<_> = std::fs::read_dir(dir.path())
                    .unwrap()
                    .map(|e| e.unwrap().file_name())
                    .collect();
                assert_eq!(entries.len(), 4, "{entries:?}");
                (summary, bytes)
            })
            .collect();
        assert_eq!(runs[0].0, runs[1].0.clone().with_paths_of(&runs[0].0));
        assert_eq!(
            runs[0].1, runs[1].1,
            "{format:?}: same seed, different bytes"
        );
        assert_eq!(
            runs[0].1.keys().collect::<Vec<_>>(),
            runs[2].1.keys().collect::<Vec<_>>()
        );
        for (name, bytes) in &runs[0].1 {
            assert_ne!(
                bytes, &runs[2].1[name],
                "{format:?}: {name:?} equal under another seed"
            );
        }
    }
}

trait WithPaths {
    fn with_paths_of(self, other: &GenerateSummary) -> Self;
}

impl WithPaths for GenerateSummary {
    fn with_paths_of(mut self, other: &GenerateSummary) -> Self {
        self.files = other.files.clone();
        self.event_files = other.event_files.clone();
        self
    }
}

fn check_summary_matches_files(format: OutputFormat, gzip: bool) {
    let dir = tempfile::tempdir().unwrap();
    let cfg = small(format, gzip);
    let summary = generate(dir.path(), &cfg).unwrap();
    let ext = cfg.extension();
    assert_eq!(summary.event_files.len(), 56);
    for (k, path) in summary.event_files.iter().enumerate() {
        assert_eq!(
            path,
            &dir.path().join("events").join(format!("part-{k:05}.{ext}"))
        );
    }
    let files: Vec<Vec<Ev>> = summary.event_files.iter().map(|p| read_events(p)).collect();
    let (counts, accepted) = classify(&files);
    assert_eq!(counts, summary_counts(&summary), "{format:?} gzip={gzip}");
    // The dirt is there in about the asked shares, and nothing is lost.
    assert_eq!(summary.events_written, cfg.events);
    let share = |n: u64| n as f64 / cfg.events as f64;
    assert!(
        (share(summary.late) - cfg.late_share).abs() < 0.004,
        "{summary:?}"
    );
    assert!(
        (share(summary.too_late) - cfg.too_late_share).abs() < 0.004,
        "{summary:?}"
    );
    assert!(
        (share(summary.duplicates) - cfg.duplicate_share).abs() < 0.002,
        "{summary:?}"
    );
    assert!(
        (share(summary.invalid) - cfg.invalid_share).abs() < 0.002,
        "{summary:?}"
    );
    // Invalid rows of each kind (the unparsable time only in text).
    let bad: Vec<&Ev> = files
        .iter()
        .flatten()
        .filter(|e| broken_rules(e) == 1)
        .collect();
    let kinds = [
        bad.iter()
            .any(|e| e.user.as_deref().is_none_or(str::is_empty)),
        bad.iter().any(|e| e.ts.is_none()),
        bad.iter().any(|e| e.dur.is_some_and(|d| d < 0)),
        bad.iter().any(|e| e.dur.is_some_and(|d| d > 7_200_000)),
        bad.iter()
            .any(|e| e.etype.as_deref().is_none_or(|t| t.trim().is_empty())),
    ];
    assert_eq!(
        kinds,
        [true, format != OutputFormat::Parquet, true, true, true]
    );
    // Accepted event types are the contract's names after lower-casing and trimming.
    let types: HashSet<String> = accepted
        .iter()
        .map(|e| e.etype.as_deref().unwrap().trim().to_lowercase())
        .collect();
    let expected: HashSet<String> = [
        "play",
        "skip",
        "pause",
        "like",
        "search",
        "playlist_add",
        "page_view",
        "stop",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    assert_eq!(types, expected);

    // Side tables: exactly the contract's columns and the summary's row counts.
    let users = read_table(&dir.path().join("users").join(format!("users.{ext}")));
    assert_eq!(
        users.0,
        [
            "user_id",
            "signup_ts",
            "country",
            "plan",
            "platform",
            "age_group"
        ]
    );
    assert_eq!(users.1.len() as u64, summary.users);
    let subs = read_table(
        &dir.path()
            .join("subscriptions")
            .join(format!("subscriptions.{ext}")),
    );
    assert_eq!(subs.0, ["user_id", "ts", "plan"]);
    assert_eq!(subs.1.len() as u64, summary.subscriptions);
    assert!(summary.subscriptions as f64 > 0.05 * cfg.users as f64);
    let items = read_table(&dir.path().join("items").join(format!("items.{ext}")));
    assert_eq!(
        items.0,
        ["item_id", "artist_id", "genre", "title", "duration_ms"]
    );
    assert_eq!(items.1.len() as u64, summary.items);
    assert_eq!(summary.items, 3_000);
    for row in &users.1 {
        assert!(
            matches!(row[3].as_deref(), Some("free" | "paid")),
            "{row:?}"
        );
        assert!(
            matches!(row[4].as_deref(), None | Some("ios" | "android" | "web")),
            "{row:?}"
        );
    }
    for row in &subs.1 {
        assert!(
            matches!(row.last().unwrap().as_deref(), Some("free" | "paid")),
            "{row:?}"
        );
    }
    // Every accepted event is by a known user, after that user's sign-up.
    let signup: HashMap<&str, i64> = users
        .1
        .iter()
        .map(|r| {
            (
                r[0].as_deref().unwrap(),
                parse_ts(r[1].as_deref().unwrap()).unwrap(),
            )
        })
        .collect();
    for e in &accepted {
        let user = e.user.as_deref().unwrap();
        assert!(e.ts.unwrap() >= signup[user], "event before sign-up: {e:?}");
    }
}

/// A side table as (column names, rows of optional texts).
fn read_table(path: &Path) -> (Vec<String>, Vec<Vec<Option<String>>>) {
    let name = path.to_string_lossy();
    if name.ends_with(".parquet") {
        let (names, batches) = read_parquet_columns(path);
        let mut rows = Vec::new();
        for batch in batches {
            for i in 0..batch.num_rows() {
                rows.push(
                    batch
                        .columns()
                        .iter()
                        .map(|c| {
                            c.is_valid(i).then(|| match c.data_type() {
                                DataType::Utf8 => c.as_string::<i32>().value(i).to_string(),
                                DataType::Int64 => {
                                    c.as_primitive::<Int64Type>().value(i).to_string()
                                }
                                DataType::Timestamp(TimeUnit::Millisecond, Some(tz))
                                    if tz.as_ref() == "UTC" =>
                                {
                                    c.as_primitive::<TimestampMillisecondType>()
                                        .value(i)
                                        .to_string()
                                }
                                other => panic!("unexpected type {other}"),
                            })
                        })
                        .collect(),
                );
            }
        }
        (names, rows)
    } else if name.contains(".csv") {
        let mut reader = csv::Reader::from_reader(open_text(path));
        let names = reader
            .headers()
            .unwrap()
            .iter()
            .map(str::to_string)
            .collect();
        let rows = reader
            .records()
            .map(|r| {
                r.unwrap()
                    .iter()
                    .map(|s| Some(s.to_string()).filter(|s| !s.is_empty()))
                    .collect()
            })
            .collect();
        (names, rows)
    } else {
        let mut names: Option<Vec<String>> = None;
        let mut rows = Vec::new();
        for line in BufReader::new(open_text(path)).lines() {
            let v: serde_json::Value = serde_json::from_str(&line.unwrap()).unwrap();
            let keys: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
            let names = names.get_or_insert(keys.clone());
            rows.push(
                names
                    .iter()
                    .map(|k| match &v[k] {
                        serde_json::Value::Null => None,
                        serde_json::Value::String(s) => Some(s.clone()),
                        other => Some(other.to_string()),
                    })
                    .collect(),
            );
        }
        // serde_json sorts keys; report the names in the contract's order when they match.
        let mut names = names.unwrap_or_default();
        for order in [
            &[
                "user_id",
                "signup_ts",
                "country",
                "plan",
                "platform",
                "age_group",
            ][..],
            &["user_id", "ts", "plan"],
            &["item_id", "artist_id", "genre", "title", "duration_ms"],
        ] {
            let mut sorted: Vec<&str> = order.to_vec();
            sorted.sort_unstable();
            if names.iter().map(String::as_str).eq(sorted.iter().copied()) {
                let index: Vec<usize> = order
                    .iter()
                    .map(|o| sorted.iter().position(|s| s == o).unwrap())
                    .collect();
                rows = rows
                    .into_iter()
                    .map(|r: Vec<Option<String>>| index.iter().map(|&i| r[i].clone()).collect())
                    .collect();
                names = order.iter().map(|s| s.to_string()).collect();
            }
        }
        (names, rows)
    }
}

#[test]
fn parquet_summary_matches_files() {
    check_summary_matches_files(OutputFormat::Parquet, false);
}

#[test]
fn csv_gz_summary_matches_files() {
    check_summary_matches_files(OutputFormat::Csv, true);
}

#[test]
fn ndjson_summary_matches_files() {
    check_summary_matches_files(OutputFormat::Ndjson, false);
}

#[test]
fn csv_times_mix_the_accepted_forms() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = GeneratorConfig {
        events: 5_000,
        users: 300,
        files: 2,
        days: 5,
        ..small(OutputFormat::Csv, false)
    };
    let summary = generate(dir.path(), &cfg).unwrap();
    let mut forms = [0usize; 4];
    for path in &summary.event_files {
        let mut reader = csv::Reader::from_reader(File::open(path).unwrap());
        for r in reader.records() {
            let ts = r.unwrap()[2].to_string();
            let form = if ts.parse::<i64>().is_ok() {
                0
            } else if ts.ends_with('Z') {
                1
            } else if ts.len() == 29 && ts.as_bytes()[10] == b'T' {
                2
            } else if ts.len() == 23 && ts.as_bytes()[10] == b' ' {
                3
            } else {
                continue;
            };
            forms[form] += 1;
        }
    }
    assert!(forms.iter().all(|&n| n > 50), "{forms:?}");
    assert!(forms[3] > 3 * (forms[0] + forms[1] + forms[2]), "{forms:?}");
}

/// Sessions derived the contract's way (30-minute gap, midnight split) per user.
fn sessions(accepted: &[Ev]) -> (HashMap<String, u64>, Vec<i64>, u64) {
    let mut by_user: HashMap<String, Vec<i64>> = HashMap::new();
    for e in accepted {
        by_user
            .entry(e.user.clone().unwrap())
            .or_default()
            .push(e.ts.unwrap());
    }
    let mut per_user = HashMap::new();
    let mut starts = Vec::new();
    let mut total = 0;
    for (user, mut ts) in by_user {
        ts.sort_unstable();
        let mut n = 0;
        for (i, &t) in ts.iter().enumerate() {
            if i == 0
                || t - ts[i - 1] >= 30 * 60_000
                || t.div_euclid(86_400_000) != ts[i - 1].div_euclid(86_400_000)
            {
                n += 1;
                starts.push(t);
            }
        }
        total += n;
        per_user.insert(user, n);
    }
    (per_user, starts, total)
}

#[test]
fn realistic_shape() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = GeneratorConfig {
        events: 200_000,
        users: 4_000,
        days: 30,
        files: 0,
        too_late_share: 0.0,
        ..GeneratorConfig::default()
    };
    let summary = generate(dir.path(), &cfg).unwrap();
    let files: Vec<Vec<Ev>> = summary.event_files.iter().map(|p| read_events(p)).collect();
    let (counts, accepted) = classify(&files);
    assert_eq!(counts, summary_counts(&summary));

    // Heavy tail: the top 1% of active users have a large share of events, most have few.
    let mut per_user: HashMap<&str, u64> = HashMap::new();
    for e in &accepted {
        *per_user.entry(e.user.as_deref().unwrap()).or_default() += 1;
    }
    let mut counts: Vec<u64> = per_user.values().copied().collect();
    counts.sort_unstable_by(|a, b| b.cmp(a));
    let top = counts.len().div_ceil(100);
    let top_share = counts[..top].iter().sum::<u64>() as f64 / accepted.len() as f64;
    assert!(top_share > 0.12, "top 1% share {top_share}");
    assert!(counts.len() as u64 > cfg.users / 3 && (counts.len() as u64) < cfg.users);

    // Sessions: several events each; a few users above the engaged threshold (80),
    // the median user has a handful.
    let (per_user_sessions, starts, total) = sessions(&accepted);
    let mean_actions = accepted.len() as f64 / total as f64;
    assert!(
        (5.0..11.0).contains(&mean_actions),
        "mean actions {mean_actions}"
    );
    let mut s: Vec<u64> = per_user_sessions.values().copied().collect();
    s.sort_unstable();
    let engaged = s.iter().filter(|&&n| n >= 80).count();
    assert!(
        engaged >= 3,
        "only {engaged} users with 80+ sessions; max {:?}",
        s.last()
    );
    assert!(s[s.len() / 2] <= 10, "median sessions {}", s[s.len() / 2]);
    assert!((summary.sessions as f64 - total as f64).abs() < 0.1 * total as f64);

    // Diurnal cycle: events by hour of day vary by at least 2x; evenings beat 4 am.
    let mut hourly = [0u64; 24];
    for e in &accepted {
        hourly[(e.ts.unwrap().rem_euclid(86_400_000) / HOUR) as usize] += 1;
    }
    let (max, min) = (*hourly.iter().max().unwrap(), *hourly.iter().min().unwrap());
    assert!(max as f64 >= 2.0 * min as f64, "{hourly:?}");
    assert!(hourly[20] > 2 * hourly[4], "{hourly:?}");

    // Event mix: play is the most common action, skip next.
    let mut mix: HashMap<String, u64> = HashMap::new();
    for e in &accepted {
        *mix.entry(e.etype.as_deref().unwrap().trim().to_lowercase())
            .or_default() += 1;
    }
    let play = mix["play"] as f64 / accepted.len() as f64;
    assert!((0.45..0.65).contains(&play), "play share {play}");
    assert!(mix["skip"] > mix["pause"] && mix["skip"] < mix["play"]);
    // Plays have a duration, other actions none.
    for e in &accepted {
        let is_play = e
            .etype
            .as_deref()
            .unwrap()
            .trim()
            .eq_ignore_ascii_case("play");
        assert_eq!(e.dur.is_some(), is_play, "{e:?}");
    }

    // Spikes: a few 5-minute windows start over 4x the sessions of the 12 before them.
    let mut per_window: BTreeMap<i64, u64> = BTreeMap::new();
    for t in starts {
        *per_window.entry(t.div_euclid(300_000)).or_default() += 1;
    }
    let first = *per_window.keys().next().unwrap();
    let spikes = per_window
        .iter()
        .filter(|(&w, &n)| {
            w >= first + 12 && {
                let before: u64 = (w - 12..w)
                    .map(|p| per_window.get(&p).copied().unwrap_or(0))
                    .sum();
                n as f64 > 4.0 * (before as f64 / 12.0) && n >= 20
            }
        })
        .count();
    assert!(spikes >= 4, "{spikes} spike windows");
}

#[test]
fn default_config_is_sensible() {
    let cfg = GeneratorConfig::default();
    assert_eq!(cfg.effective_days(), 60);
    assert_eq!(cfg.effective_files(), 240);
    let big = GeneratorConfig {
        events: 20_000_000,
        ..cfg.clone()
    };
    assert_eq!(big.effective_files(), 400);
    assert_eq!(
        GeneratorConfig {
            events: 100,
            days: 1,
            ..cfg.clone()
        }
        .effective_files(),
        10
    );
    assert_eq!(cfg.extension(), "parquet");
    assert_eq!(
        GeneratorConfig {
            format: OutputFormat::Ndjson,
            gzip: true,
            ..cfg
        }
        .extension(),
        "ndjson.gz"
    );
}

#[test]
fn refuses_bad_configs_and_non_empty_targets() {
    let dir = tempfile::tempdir().unwrap();
    let bad = GeneratorConfig {
        late_share: 0.9,
        ..small(OutputFormat::Csv, false)
    };
    assert!(generate(dir.path(), &bad).is_err());
    let bad = GeneratorConfig {
        start_day: "2025-13-01".into(),
        ..small(OutputFormat::Csv, false)
    };
    assert!(generate(dir.path(), &bad).is_err());
    let cfg = GeneratorConfig {
        events: 1_000,
        users: 50,
        files: 2,
        days: 2,
        ..small(OutputFormat::Csv, false)
    };
    generate(dir.path(), &cfg).unwrap();
    assert!(
        generate(dir.path(), &cfg).is_err(),
        "a second run over the same directory"
    );
}

/// Sign-up times of a generated users table, read back from its CSV file.
fn signups(cfg: &GeneratorConfig) -> Vec<i64> {
    let dir = tempfile::tempdir().unwrap();
    generate(dir.path(), cfg).unwrap();
    let users = read_table(&dir.path().join("users").join("users.csv"));
    users
        .1
        .iter()
        .map(|r| parse_ts(r[1].as_deref().unwrap()).unwrap())
        .collect()
}

#[test]
fn new_user_share_sets_who_signs_up_during_the_span() {
    let start = chrono::NaiveDate::from_ymd_opt(2025, 1, 1)
        .unwrap()
        .and_hms_opt(0, 0, 0)
        .unwrap()
        .and_utc()
        .timestamp_millis();
    let with_share = |share: f64| GeneratorConfig {
        new_user_share: share,
        ..small(OutputFormat::Csv, false)
    };
    let before = signups(&with_share(0.0));
    assert!(!before.is_empty() && before.iter().all(|&t| t < start));
    let during = signups(&with_share(1.0));
    assert!(!during.is_empty() && during.iter().all(|&t| t >= start));
    let mixed = signups(&with_share(0.5));
    let new = mixed.iter().filter(|&&t| t >= start).count() as f64 / mixed.len() as f64;
    assert!((0.4..0.6).contains(&new), "share of new customers {new}");
    let dir = tempfile::tempdir().unwrap();
    assert!(generate(dir.path(), &with_share(1.5)).is_err());
}

#[test]
fn tiny_and_empty_data_sets() {
    for events in [0u64, 1, 17] {
        let dir = tempfile::tempdir().unwrap();
        let cfg = GeneratorConfig {
            events,
            users: 5,
            files: 3,
            days: 1,
            ..small(OutputFormat::Ndjson, false)
        };
        let summary = generate(dir.path(), &cfg).unwrap();
        assert_eq!(summary.event_files.len(), 3);
        let files: Vec<Vec<Ev>> = summary.event_files.iter().map(|p| read_events(p)).collect();
        let (counts, _) = classify(&files);
        assert_eq!(counts, summary_counts(&summary));
        assert!(summary.events_written <= events);
    }
}

/// The speed check: `TIDEMARK_GEN_EVENTS=10000000 cargo test --release -p tidemark-inputs
/// --test generator -- --ignored --nocapture` (format from `TIDEMARK_GEN_FORMAT`,
/// gzip when `TIDEMARK_GEN_GZIP` is set).
#[test]
#[ignore]
fn generation_speed() {
    let events = std::env::var("TIDEMARK_GEN_EVENTS").map_or(1_000_000, |v| v.parse().unwrap());
    let format = match std::env::var("TIDEMARK_GEN_FORMAT").as_deref() {
        Ok("csv") => OutputFormat::Csv,
        Ok("ndjson") => OutputFormat::Ndjson,
        _ => OutputFormat::Parquet,
    };
    let gzip = std::env::var("TIDEMARK_GEN_GZIP").is_ok();
    let users = (events / 100).max(1_000);
    let tmp = tempfile::tempdir().unwrap();
    // TIDEMARK_GEN_OUT keeps the data set (in a fresh directory) for a look.
    let out = std::env::var("TIDEMARK_GEN_OUT").map_or(tmp.path().to_path_buf(), PathBuf::from);
    let cfg = GeneratorConfig {
        events,
        users,
        format,
        gzip,
        ..GeneratorConfig::default()
    };
    let started = std::time::Instant::now();
    let summary = generate(&out, &cfg).unwrap();
    let elapsed = started.elapsed();
    let bytes: u64 = summary
        .files
        .iter()
        .map(|f| std::fs::metadata(f).unwrap().len())
        .sum();
    eprintln!(
        "generated {} events ({} users, {} files, {:.1} MB, {format:?} gzip={gzip}) in {:.2} s",
        summary.events_written,
        users,
        summary.event_files.len(),
        bytes as f64 / 1e6,
        elapsed.as_secs_f64()
    );
}
