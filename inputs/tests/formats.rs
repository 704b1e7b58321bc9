//! Positive tests: every format yields the same events for the same content, every
//! mapping feature works, and discover() orders files as the runtime needs.

mod common;

use std::sync::Arc;

use arrow::array::{
    ArrayRef, Date32Array, DictionaryArray, Float64Array, Int32Array, TimestampMicrosecondArray,
    TimestampMillisecondArray, TimestampNanosecondArray,
};
use arrow::datatypes::Int32Type;
use common::*;
use tidemark_inputs::records::Plan;
use tidemark_inputs::{Dataset, Table};

fn parquet_three(ts: ArrayRef) -> Vec<u8> {
    let event_type: DictionaryArray<Int32Type> =
        vec!["Play ", "skip", "LIKE"].into_iter().collect();
    parquet(vec![
        ("event_id", strings(&[Some("e1"), Some("e2"), Some("e3")])),
        ("user_id", strings(&[Some("u1"), Some("u2"), Some("u1")])),
        ("ts", ts),
        ("event_type", Arc::new(event_type)),
        ("item_id", strings(&[Some("i1"), None, Some("i2")])),
        (
            "duration_ms",
            Arc::new(Int32Array::from(vec![Some(1000), None, Some(0)])),
        ),
        ("session_id", strings(&[Some("s1"), Some(""), Some("s1")])),
    ])
}

#[test]
fn every_format_yields_the_same_events() {
    let ms = [T0, T0 + 1500, T0 + 60_000];
    let files = vec![
        ("events/a.csv", THREE_CSV.as_bytes().to_vec()),
        ("events/b.csv.gz", gz(THREE_CSV.as_bytes())),
        ("events/c.ndjson", THREE_NDJSON.as_bytes().to_vec()),
        ("events/d.jsonl.gz", gz(THREE_NDJSON.as_bytes())),
        ("events/e.json", THREE_NDJSON.as_bytes().to_vec()),
        (
            "events/f_ms.parquet",
            parquet_three(Arc::new(
                TimestampMillisecondArray::from(ms.to_vec()).with_timezone("UTC"),
            )),
        ),
        (
            "events/g_us.parquet",
            parquet_three(Arc::new(TimestampMicrosecondArray::from(
                ms.iter().map(|t| t * 1000).collect::<Vec<_>>(),
            ))),
        ),
        (
            "events/h_ns.parquet",
            parquet_three(Arc::new(
                TimestampNanosecondArray::from(
                    ms.iter().map(|t| t * 1_000_000).collect::<Vec<_>>(),
                )
                .with_timezone("+02:00"),
            )),
        ),
        ("events/i_epoch.parquet", parquet_three(ints(&ms.map(Some)))),
        (
            "events/j_text.parquet",
            parquet_three(strings(&[
                Some("2025-07-12T00:20:00Z"),
                Some("2025-07-12 00:20:01.500"),
                Some("1752279660000"),
            ])),
        ),
    ];
    let set = dataset(&files, None);
    assert_eq!(set.files().len(), files.len());
    for file in set.files() {
        set.dataset.check_columns(&file).unwrap();
        let batch = set.dataset.read(&file);
        assert!(
            batch.quarantine.is_empty(),
            "{}: {:?}",
            file.rel,
            batch.quarantine
        );
        assert_eq!(batch.events, three_events(), "{}", file.rel);
        let rows: Vec<u64> = if file.rel.contains("json") {
            vec![1, 2, 4]
        } else {
            vec![1, 2, 3]
        };
        assert_eq!(batch.event_rows, rows, "{}", file.rel);
    }
}

#[test]
fn parquet_int64_epoch_units_and_dates() {
    let secs = [T0 / 1000, T0 / 1000 + 1, T0 / 1000 + 60];
    let mapping = "[events]\nfiles = \"events/*.parquet\"\n[events.ts]\nunit = \"s\"\n";
    let set = dataset(
        &[("events/s.parquet", parquet_three(ints(&secs.map(Some))))],
        Some(mapping),
    );
    let batch = set.read("events/s.parquet");
    assert_eq!(
        batch.events.iter().map(|e| e.ts).collect::<Vec<_>>(),
        vec![T0, T0 + 1000, T0 + 60_000]
    );

    let day = 20_281; // 2025-07-12
    let set = dataset(
        &[(
            "events/d.parquet",
            parquet_three(Arc::new(Date32Array::from(vec![day, day, day + 1]))),
        )],
        None,
    );
    let batch = set.read("events/d.parquet");
    let midnight = T0 - 20 * 60_000;
    assert_eq!(
        batch.events.iter().map(|e| e.ts).collect::<Vec<_>>(),
        vec![midnight, midnight, midnight + 86_400_000]
    );
}

#[test]
fn other_tables_read_with_defaults() {
    let set = dataset(
        &[
            (
                "users/u.csv",
                b"user_id,signup_ts,country,plan\nu1,2025-01-01T00:00:00Z,DE,paid\nu2,,,FREE \n"
                    .to_vec(),
            ),
            (
                "subscriptions/s.ndjson",
                b"{\"user_id\":\"u1\",\"ts\":1752279600000,\"plan\":\"free\"}\n".to_vec(),
            ),
            (
                "items/i.csv",
                b"item_id,artist_id,genre,title,duration_ms\ni1,a1,rock,Song,180000\ni2,,,,\n"
                    .to_vec(),
            ),
        ],
        None,
    );
    let users = set.read("users/u.csv").users;
    assert_eq!(users.len(), 2);
    assert_eq!(users[0].plan, Plan::Paid);
    assert_eq!(users[0].country.as_deref(), Some("DE"));
    assert_eq!(users[0].signup_ts, Some(1_735_689_600_000));
    assert_eq!(
        (
            users[1].signup_ts,
            users[1].country.as_deref(),
            users[1].plan
        ),
        (None, None, Plan::Free)
    );
    let subs = set.read("subscriptions/s.ndjson").subscriptions;
    assert_eq!((subs[0].ts, subs[0].plan), (T0, Plan::Free));
    let items = set.read("items/i.csv").items;
    assert_eq!(items[0].duration_ms, Some(180_000));
    assert_eq!(items[0].genre.as_deref(), Some("rock"));
    assert_eq!(
        (items[1].artist_id.as_deref(), items[1].title.as_deref()),
        (None, None)
    );
}

#[test]
fn discover_orders_non_event_files_first_and_ignores_hidden_files() {
    let e = b"event_id,user_id,ts,event_type\n".to_vec();
    let mapping = "[subscriptions]\nfiles = [\"subscriptions/*\", \"events/log*\"]\n";
    let set = dataset(
        &[
            ("users/b.csv", e.clone()),
            ("items/a.csv", e.clone()),
            ("subscriptions/x.csv", e.clone()),
            ("events/2.csv", e.clone()),
            ("events/1.csv", e.clone()),
            ("events/log.csv", e.clone()),
            ("events/.hidden.csv", e.clone()),
            ("events/_SUCCESS", e.clone()),
            ("events/x.csv.tmp", e.clone()),
            ("events/.x.csv.crc", e.clone()),
            ("events/y.crc", e.clone()),
            ("events/sub/deep.csv", e.clone()),
            ("other/z.csv", e.clone()),
        ],
        Some(mapping),
    );
    let got: Vec<(String, Vec<Table>)> =
        set.files().into_iter().map(|f| (f.rel, f.tables)).collect();
    assert_eq!(
        got,
        vec![
            ("items/a.csv".into(), vec![Table::Items]),
            ("subscriptions/x.csv".into(), vec![Table::Subscriptions]),
            ("users/b.csv".into(), vec![Table::Users]),
            ("events/1.csv".into(), vec![Table::Events]),
            ("events/2.csv".into(), vec![Table::Events]),
            (
                "events/log.csv".into(),
                vec![Table::Events, Table::Subscriptions]
            ),
        ]
    );
    assert!(set.files()[0].path.is_absolute());
}

#[test]
fn mapping_file_precedence_and_paths_outside_the_dataset() {
    let data = tempfile::tempdir().unwrap();
    write(
        data.path(),
        "shared/logs/x.csv",
        b"uid,when,what\nu1,2025-07-12T00:20:00Z,play\n",
    );
    let root = data.path().join("set");
    write(&root, "tidemark.toml", b"[events]\nfiles = \"nothing/*\"\n");
    let mapping = data.path().join("m.toml");
    std::fs::write(
        &mapping,
        "[events]\nfiles = \"../shared/logs/*.csv\"\n[events.columns]\nuser_id = \"uid\"\nts = \"when\"\nevent_type = \"what\"\n",
    )
    .unwrap();
    // tidemark.toml in the dataset is used when no mapping file is given.
    assert!(Dataset::open(&root, None)
        .unwrap()
        .discover()
        .unwrap()
        .is_empty());
    let ds = Dataset::open(&root, Some(&mapping)).unwrap();
    let files = ds.discover().unwrap();
    assert_eq!(files.len(), 1);
    assert_eq!(files[0].rel, "../shared/logs/x.csv");
    let batch = ds.read(&files[0]);
    assert_eq!(batch.events.len(), 1);
    assert_eq!(batch.events[0].user_id, "u1");
    // Errors name the file and the key.
    std::fs::write(&mapping, "[events.columns]\nuser = \"uid\"\n").unwrap();
    let err = Dataset::open(&root, Some(&mapping))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("m.toml") && err.contains("`user`") && err.contains("[events.columns]"),
        "{err}"
    );
    assert!(Dataset::open(&data.path().join("absent"), None).is_err());
}

#[test]
fn column_specs_scale_hash_value_prefix_as_integer() {
    let csv = "Inv,Cust,When,Len,Code,Sess\n\
C1,17850.0,2025-07-12 00:20:00,1.2345,A,7\n\
5,17851,2025-07-12 00:20:00,2,B,7\n\
CX9,17850.0,2025-07-12 00:20:00,,C,7\n";
    let mapping = r#"
[events]
files = "src/*.csv"
[events.columns]
user_id = { column = "Cust", as = "integer" }
ts = "When"
event_type = { column = "Inv", prefix = { C = "cancel", CX = "exchange" }, else = "purchase" }
item_id = { value = "shop" }
duration_ms = { column = "Len", scale = 1000.0 }
event_id = { hash = ["Inv", "Cust"] }
session_id = { column = "Code", prefix = { A = "first" } }
"#;
    let set = dataset(&[("src/a.csv", csv.as_bytes().to_vec())], Some(mapping));
    let b = set.read("src/a.csv");
    assert!(b.quarantine.is_empty(), "{:?}", b.quarantine);
    let e = &b.events;
    assert_eq!(
        e.iter().map(|e| e.user_id.as_str()).collect::<Vec<_>>(),
        ["17850", "17851", "17850"]
    );
    assert_eq!(
        e.iter().map(|e| e.event_type.as_str()).collect::<Vec<_>>(),
        ["cancel", "purchase", "exchange"]
    );
    assert_eq!(
        e.iter().map(|e| e.duration_ms).collect::<Vec<_>>(),
        [Some(1235), Some(2000), None]
    );
    assert!(e.iter().all(|e| e.item_id.as_deref() == Some("shop")));
    // A prefix without `else` passes the source value through.
    assert_eq!(
        e.iter()
            .map(|e| e.session_id.as_deref().unwrap())
            .collect::<Vec<_>>(),
        ["first", "B", "C"]
    );
    // Hash ids: 16 hex digits, stable, different for different inputs.
    assert_eq!(e[0].event_id.len(), 16);
    assert_ne!(e[0].event_id, e[1].event_id);
    let again = dataset(&[("src/b.csv", csv.as_bytes().to_vec())], Some(mapping)).read("src/b.csv");
    assert_eq!(again.events, b.events);
}

#[test]
fn default_event_id_is_a_hash_of_the_whole_row() {
    let csv = "user_id,ts,event_type\nu1,1752279600000,play\nu1,1752279600000,play\nu1,1752279600001,play\n";
    let json = "{\"user_id\":\"u1\",\"ts\":1752279600000,\"event_type\":\"play\"}\n";
    let set = dataset(
        &[
            ("events/a.csv", csv.as_bytes().to_vec()),
            ("events/b.csv", csv.as_bytes().to_vec()),
            ("events/c.ndjson", json.repeat(2).into_bytes()),
            (
                "events/d.parquet",
                parquet(vec![
                    ("user_id", strings(&[Some("u1"), Some("u1")])),
                    ("ts", ints(&[Some(T0), Some(T0)])),
                    ("event_type", strings(&[Some("play"), Some("play")])),
                    ("n", Arc::new(Float64Array::from(vec![1.0, 2.5]))),
                ]),
            ),
        ],
        None,
    );
    let a = set.read("events/a.csv").events;
    let b = set.read("events/b.csv").events;
    assert_eq!(a, b, "a replayed file gives the same ids");
    assert_eq!(a[0].event_id, a[1].event_id, "identical rows share an id");
    assert_ne!(a[1].event_id, a[2].event_id);
    let c = set.read("events/c.ndjson").events;
    assert_eq!(c[0].event_id, c[1].event_id);
    let d = set.read("events/d.parquet").events;
    assert_ne!(
        d[0].event_id, d[1].event_id,
        "parquet hashes every column, not just the mapped ones"
    );
}

#[test]
fn ts_unit_and_format() {
    let csv = "user_id,ts,event_type,signup\nu1,1752279600,play,20250712\n";
    let set = dataset(
        &[("events/a.csv", csv.as_bytes().to_vec())],
        Some("[events.ts]\nunit = \"s\"\n"),
    );
    assert_eq!(set.read("events/a.csv").events[0].ts, T0);
    for (unit, value) in [
        ("ms", "1752279600000"),
        ("us", "1752279600000000"),
        ("ns", "1752279600000000000"),
    ] {
        let csv = format!("user_id,ts,event_type\nu1,{value},play\n");
        let set = dataset(
            &[("events/a.csv", csv.into_bytes())],
            Some(&format!("[events.ts]\nunit = \"{unit}\"\n")),
        );
        assert_eq!(set.read("events/a.csv").events[0].ts, T0, "{unit}");
    }
    let set = dataset(
        &[("events/a.csv", csv.as_bytes().to_vec())],
        Some("[events.columns]\nts = \"signup\"\n[events.ts]\nformat = \"%Y%m%d\"\n"),
    );
    assert_eq!(set.read("events/a.csv").events[0].ts, T0 - 20 * 60_000);
}

#[test]
fn value_maps_apply_before_validation() {
    let json = r#"{"userId":"1","ts":1752279600000,"page":"NextSong","level":"premium","sessionId":38,"len":null}
{"userId":"2","ts":1752279600000,"page":" NextSong ","level":"basic","sessionId":39.0,"len":""}
{"userId":"3","ts":1752279600000,"page":"Home","level":"free","sessionId":40}
"#;
    let mapping = r#"
[events]
files = "log.jsonl"
[events.columns]
user_id = "userId"
event_type = "page"
session_id = "sessionId"
duration_ms = { column = "len", scale = 1000 }
[events.values.event_type]
NextSong = "play"
[subscriptions]
files = "log.jsonl"
[subscriptions.columns]
user_id = "userId"
plan = "level"
[subscriptions.values.plan]
premium = "paid"
basic = "free"
"#;
    let set = dataset(&[("log.jsonl", json.as_bytes().to_vec())], Some(mapping));
    let b = set.read("log.jsonl");
    assert!(b.quarantine.is_empty(), "{:?}", b.quarantine);
    let types: Vec<_> = b.events.iter().map(|e| e.event_type.as_str()).collect();
    assert_eq!(types, ["play", "play", "home"]);
    let sessions: Vec<_> = b
        .events
        .iter()
        .map(|e| e.session_id.clone().unwrap())
        .collect();
    assert_eq!(sessions, ["38", "39", "40"], "JSON numbers read as text");
    assert!(b.events.iter().all(|e| e.duration_ms.is_none()));
    let plans: Vec<_> = b.subscriptions.iter().map(|s| s.plan).collect();
    assert_eq!(plans, [Plan::Paid, Plan::Free, Plan::Free]);
}

#[test]
fn filters_keep_only_passing_rows_without_quarantine() {
    let csv = "Inv,Qty,auth,user_id,ts,event_type\n\
1,5,in,u1,1752279600000,a\n\
C2,5,in,u2,1752279600000,b\n\
3,0,in,u3,1752279600000,c\n\
4,x,in,u4,1752279600000,d\n\
5,5,out,u5,1752279600000,e\n\
6,11,in,u6,1752279600000,f\n\
7,5,in,,1752279600000,g\n";
    let mapping = r#"
[events.filter]
Inv = { not_prefix = "C" }
Qty = { gt = 0, le = 10 }
auth = ["in", "Cancelled"]
"#;
    let set = dataset(&[("events/a.csv", csv.as_bytes().to_vec())], Some(mapping));
    let b = set.read("events/a.csv");
    assert_eq!(
        b.events
            .iter()
            .map(|e| e.user_id.as_str())
            .collect::<Vec<_>>(),
        ["u1"]
    );
    assert_eq!(b.event_rows, [1]);
    // Only the row that passes the filter and is bad is quarantined.
    assert_eq!(
        quarantine(&b),
        [q("events/a.csv", 7, "user_id", "missing_value")]
    );

    for (filter, kept) in [
        ("Inv = { prefix = \"C\" }", vec!["u2"]),
        ("Qty = { ge = 5, lt = 6 }", vec!["u1", "u2", "u5", "u7"]),
        ("auth = { in = [\"out\"] }", vec!["u5"]),
        ("auth = { not_in = [\"in\"] }", vec!["u5"]),
    ] {
        let set = dataset(
            &[("events/a.csv", csv.as_bytes().to_vec())],
            Some(&format!("[events.filter]\n{filter}\n")),
        );
        let b = set.read("events/a.csv");
        let mut got: Vec<&str> = b.events.iter().map(|e| e.user_id.as_str()).collect();
        got.extend(b.quarantine.iter().map(|_| "u7"));
        assert_eq!(got, kept, "{filter}");
    }
}

#[test]
fn csv_options_delimiter_header_and_format() {
    let set = dataset(
        &[
            ("events/a.tsv", b"user_id\tts\tevent_type\nu1\t1752279600000\tplay\n".to_vec()),
            ("raw/b.txt", b"u1;1752279600000;play;x\n".to_vec()),
        ],
        Some(
            "[users]\nfiles = []\n[items]\nfiles = \"raw/*.txt\"\nformat = \"csv\"\ndelimiter = \";\"\nheader = false\n\
             [items.columns]\nitem_id = \"c0\"\ntitle = \"c3\"\n",
        ),
    );
    assert_eq!(set.read("events/a.tsv").events.len(), 1);
    let items = set.read("raw/b.txt").items;
    assert_eq!(
        (items[0].item_id.as_str(), items[0].title.as_deref()),
        ("u1", Some("x"))
    );
}

#[test]
fn conflicting_formats_are_an_error() {
    let set = dataset(&[("log.csv", b"a\n1\n".to_vec())], None);
    let mut ds = set.dataset.clone();
    ds.mapping = tidemark_inputs::Mapping::parse(
        "[events]\nfiles = \"log.csv\"\n[users]\nfiles = \"log.csv\"\ndelimiter = \";\"\n",
        "m",
    )
    .unwrap();
    let err = ds.discover().unwrap_err().to_string();
    assert!(
        err.contains("log.csv") && err.contains("events, users"),
        "{err}"
    );
}
