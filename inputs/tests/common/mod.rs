//! Helpers shared by the integration tests: temporary datasets and file builders.
#![allow(dead_code)]

use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use arrow::array::{ArrayRef, Int64Array, RecordBatch, StringArray};
use parquet::arrow::ArrowWriter;
use tempfile::TempDir;
use tidemark_inputs::records::{Event, FileBatch};
use tidemark_inputs::{Dataset, SourceFile};

/// A dataset in a temporary directory.
pub struct TestSet {
    pub dir: TempDir,
    pub dataset: Dataset,
}

/// Writes `files` (relative path, bytes) under a new temporary directory, plus
/// `tidemark.toml` when `mapping` is given, and opens it.
pub fn dataset(files: &[(&str, Vec<u8>)], mapping: Option<&str>) -> TestSet {
    let dir = tempfile::tempdir().unwrap();
    for (rel, bytes) in files {
        write(dir.path(), rel, bytes);
    }
    if let Some(m) = mapping {
        write(dir.path(), "tidemark.toml", m.as_bytes());
    }
    let dataset = Dataset::open(dir.path(), None).unwrap();
    TestSet { dir, dataset }
}

pub fn write(root: &Path, rel: &str, bytes: &[u8]) {
    let path = root.join(rel);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, bytes).unwrap();
}

impl TestSet {
    pub fn files(&self) -> Vec<SourceFile> {
        self.dataset.discover().unwrap()
    }

    pub fn file(&self, rel: &str) -> SourceFile {
        self.files()
            .into_iter()
            .find(|f| f.rel == rel)
            .unwrap_or_else(|| panic!("{rel} not discovered"))
    }

    pub fn read(&self, rel: &str) -> FileBatch {
        let batch = self.dataset.read(&self.file(rel));
        assert_eq!(batch.events.len(), batch.event_rows.len());
        batch
    }
}

/// (file, row, field, reason) of every quarantine row.
pub fn quarantine(batch: &FileBatch) -> Vec<(String, u64, String, String)> {
    batch
        .quarantine
        .iter()
        .map(|q| (q.file.clone(), q.row, q.field.clone(), q.reason.clone()))
        .collect()
}

pub fn q(file: &str, row: u64, field: &str, reason: &str) -> (String, u64, String, String) {
    (file.to_string(), row, field.to_string(), reason.to_string())
}

pub fn gz(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

pub fn parquet(columns: Vec<(&str, ArrayRef)>) -> Vec<u8> {
    let batch = RecordBatch::try_from_iter(columns).unwrap();
    let mut buf = Vec::new();
    let mut w = ArrowWriter::try_new(&mut buf, batch.schema(), None).unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
    buf
}

pub fn strings(v: &[Option<&str>]) -> ArrayRef {
    Arc::new(StringArray::from(v.to_vec()))
}

pub fn ints(v: &[Option<i64>]) -> ArrayRef {
    Arc::new(Int64Array::from(v.to_vec()))
}

#[allow(clippy::too_many_arguments)]
pub fn ev(
    id: &str,
    user: &str,
    ts: i64,
    ty: &str,
    item: Option<&str>,
    dur: Option<i64>,
    sess: Option<&str>,
) -> Event {
    Event {
        event_id: id.into(),
        user_id: user.into(),
        ts,
        event_type: ty.into(),
        item_id: item.map(Into::into),
        duration_ms: dur,
        session_id: sess.map(Into::into),
        value: None,
    }
}

/// 2025-07-12T00:20:00Z.
pub const T0: i64 = 1_752_279_600_000;

/// The three events every format test writes in its own way.
pub fn three_events() -> Vec<Event> {
    vec![
        ev("e1", "u1", T0, "play", Some("i1"), Some(1000), Some("s1")),
        ev("e2", "u2", T0 + 1500, "skip", None, None, None),
        ev(
            "e3",
            "u1",
            T0 + 60_000,
            "like",
            Some("i2"),
            Some(0),
            Some("s1"),
        ),
    ]
}

pub const THREE_CSV: &str = "event_id,user_id,ts,event_type,item_id,duration_ms,session_id\n\
e1,u1,2025-07-12T00:20:00Z,Play ,i1,1000,s1\n\
e2,u2,2025-07-12 00:20:01.500,skip,,,\n\
e3,u1,1752279660000,LIKE,i2,0,s1\n";

pub const THREE_NDJSON: &str = r#"{"event_id":"e1","user_id":"u1","ts":"2025-07-12T02:20:00+02:00","event_type":"Play ","item_id":"i1","duration_ms":1000,"session_id":"s1"}
{"event_id":"e2","user_id":"u2","ts":"2025-07-12 00:20:01.5","event_type":"skip","item_id":null,"duration_ms":null}

{"event_id":"e3","user_id":"u1","ts":1752279660000,"event_type":"LIKE","item_id":"i2","duration_ms":"0","session_id":"s1","extra":{"a":[1,2]}}
"#;
