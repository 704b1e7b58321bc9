//! Newline-delimited JSON (plain or gzip). Each line is parsed straight into the few
//! slots the mapping needs, without building a map per row.

use std::borrow::Cow;
use std::fmt;
use std::io::BufRead;
use std::path::Path;

use serde::de::{DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;

use crate::dataset::{FileFormat, SourceFile, Stop};
use crate::mapping::Mapping;
use crate::records::{FileBatch, QuarantineRow};
use crate::rows::{truncate_raw, Got, ReadPlan, Row};
use crate::text::{self, Content};

/// Lines sampled by [`columns`].
const SAMPLE_LINES: usize = 1000;

/// One JSON value of a slot.
#[derive(Debug, Clone, Default)]
enum JVal {
    #[default]
    Null,
    Str(String),
    Int(i64),
    Float(f64),
    Bool(bool),
    /// A nested object or array, as JSON text.
    Other(String),
}

impl<'de> Deserialize<'de> for JVal {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<JVal, D::Error> {
        d.deserialize_any(JValVisitor)
    }
}

struct JValVisitor;

impl<'de> Visitor<'de> for JValVisitor {
    type Value = JVal;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_unit<E>(self) -> Result<JVal, E> {
        Ok(JVal::Null)
    }
    fn visit_none<E>(self) -> Result<JVal, E> {
        Ok(JVal::Null)
    }
    fn visit_bool<E>(self, v: bool) -> Result<JVal, E> {
        Ok(JVal::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<JVal, E> {
        Ok(JVal::Int(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<JVal, E> {
        Ok(i64::try_from(v)
            .map(JVal::Int)
            .unwrap_or(JVal::Float(v as f64)))
    }
    fn visit_f64<E>(self, v: f64) -> Result<JVal, E> {
        Ok(JVal::Float(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<JVal, E> {
        Ok(JVal::Str(v.to_string()))
    }
    fn visit_string<E>(self, v: String) -> Result<JVal, E> {
        Ok(JVal::Str(v))
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<JVal, A::Error> {
        let v = serde_json::Value::deserialize(serde::de::value::MapAccessDeserializer::new(map))?;
        Ok(JVal::Other(v.to_string()))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<JVal, A::Error> {
        let v = serde_json::Value::deserialize(serde::de::value::SeqAccessDeserializer::new(seq))?;
        Ok(JVal::Other(v.to_string()))
    }
}

/// Fills the slots of the wanted keys from one JSON object.
struct ObjectSeed<'a> {
    keys: &'a [String],
    slots: &'a mut [JVal],
    seen: &'a mut [bool],
}

impl<'de> DeserializeSeed<'de> for ObjectSeed<'_> {
    type Value = ();
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for ObjectSeed<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(slot) = map.next_key_seed(KeySeed(self.keys))? {
            match slot {
                Some(i) => {
                    self.slots[i] = map.next_value()?;
                    self.seen[i] = true;
                }
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(())
    }
}

/// Finds a key among the wanted ones without allocating.
struct KeySeed<'a>(&'a [String]);

impl<'de> DeserializeSeed<'de> for KeySeed<'_> {
    type Value = Option<usize>;
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Option<usize>, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeySeed<'_> {
    type Value = Option<usize>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a key")
    }
    fn visit_str<E>(self, v: &str) -> Result<Option<usize>, E> {
        Ok(self.0.iter().position(|k| k == v))
    }
}

/// Parses one line into `slots`; an error when it is not exactly one JSON object.
fn parse_line(
    line: &str,
    keys: &[String],
    slots: &mut [JVal],
    seen: &mut [bool],
) -> serde_json::Result<()> {
    let mut de = serde_json::Deserializer::from_str(line);
    ObjectSeed { keys, slots, seen }.deserialize(&mut de)?;
    de.end()
}

struct JsonRow<'a> {
    slots: &'a [JVal],
    line: &'a str,
}

impl Row for JsonRow<'_> {
    fn get(&self, idx: usize) -> Got<'_> {
        match &self.slots[idx] {
            JVal::Null => Got::Null,
            JVal::Str(s) | JVal::Other(s) => Got::Str(Cow::Borrowed(s)),
            JVal::Int(i) => Got::Int(*i),
            JVal::Float(f) => Got::Float(*f),
            JVal::Bool(b) => Got::Bool(*b),
        }
    }
    fn raw(&self) -> String {
        self.line.to_string()
    }
    fn row_hash(&self) -> u64 {
        xxhash_rust::xxh3::xxh3_64(self.line.as_bytes())
    }
}

/// The next line without its line end and trailing blanks; `Ok(None)` at the end.
fn next_line<'b>(
    input: &mut dyn BufRead,
    buf: &'b mut Vec<u8>,
    first: bool,
) -> std::io::Result<Option<&'b [u8]>> {
    buf.clear();
    if input.read_until(b'\n', buf)? == 0 {
        return Ok(None);
    }
    let mut line: &[u8] = buf;
    if first {
        line = text::strip_bom(line);
    }
    while let [rest @ .., last] = line {
        if last.is_ascii_whitespace() {
            line = rest;
        } else {
            break;
        }
    }
    Ok(Some(line))
}

/// The keys of the first objects of the file; `None` when it has no object lines.
pub(crate) fn columns(path: &Path, format: FileFormat) -> Result<Option<Vec<String>>, String> {
    let mut input = text::open(Content::Path(path), format.gzip)?;
    let mut buf = Vec::new();
    let mut keys: Vec<String> = Vec::new();
    let mut objects = 0;
    let mut lineno = 0;
    while objects < SAMPLE_LINES {
        let line = match next_line(&mut *input, &mut buf, lineno == 0) {
            Ok(Some(line)) => line,
            Ok(None) => break,
            Err(e) if objects == 0 => return Err(format!("read error: {e}")),
            Err(_) => break,
        };
        lineno += 1;
        if let Ok(serde_json::Value::Object(map)) = serde_json::from_slice(line) {
            objects += 1;
            for k in map.keys() {
                if !keys.contains(k) {
                    keys.push(k.clone());
                }
            }
        }
    }
    Ok((objects > 0).then_some(keys))
}

/// Reads every line of the file into `batch`.
pub(crate) fn read(
    file: &SourceFile,
    content: Content,
    format: FileFormat,
    mapping: &Mapping,
    batch: &mut FileBatch,
) -> Result<(), Stop> {
    let mut input = text::open(content, format.gzip).map_err(Stop::whole)?;
    let mut keys: Vec<String> = Vec::new();
    let plan = ReadPlan::resolve(mapping, &file.tables, true, &mut |name| {
        Some(keys.iter().position(|k| k == name).unwrap_or_else(|| {
            keys.push(name.to_string());
            keys.len() - 1
        }))
    })
    .map_err(|m| Stop::missing(m, &[]))?;
    let mut slots = vec![JVal::Null; keys.len()];
    let mut seen = vec![false; keys.len()];
    let mut buf = Vec::new();
    let mut lineno: u64 = 0;
    let mut objects = 0u64;
    loop {
        let line = match next_line(&mut *input, &mut buf, lineno == 0) {
            Ok(Some(line)) => line,
            Ok(None) => break,
            Err(e) => return Err(Stop::at(format!("read error: {e}"), lineno, lineno + 1)),
        };
        lineno += 1;
        if line.is_empty() {
            continue;
        }
        let bad_json = |raw: String, batch: &mut FileBatch| {
            batch.rows_read += 1;
            batch.reject(QuarantineRow {
                file: file.rel.clone(),
                row: lineno,
                field: String::new(),
                reason: "bad_json".to_string(),
                raw: truncate_raw(raw),
            })
        };
        let Ok(text) = std::str::from_utf8(line) else {
            bad_json(String::from_utf8_lossy(line).into_owned(), batch);
            continue;
        };
        slots.iter_mut().for_each(|s| *s = JVal::Null);
        if parse_line(text, &keys, &mut slots, &mut seen).is_err() {
            bad_json(text.to_string(), batch);
            continue;
        }
        objects += 1;
        plan.apply(
            &JsonRow {
                slots: &slots,
                line: text,
            },
            lineno,
            &file.rel,
            batch,
        );
    }
    if objects > 0 {
        if let Some((name, _, table)) = plan.required.iter().find(|(_, idx, _)| !seen[*idx]) {
            let mut present: Vec<String> = keys
                .iter()
                .zip(&seen)
                .filter(|(_, s)| **s)
                .map(|(k, _)| k.clone())
                .collect();
            present.sort();
            return Err(Stop::MissingColumn {
                column: name.clone(),
                table: *table,
                available: present,
            });
        }
    }
    Ok(())
}

/// Parses NDJSON event lines one at a time, for live sources (standard input, a TCP
/// socket) that have no file. Each line is validated like a row of an `events/`
/// NDJSON file; a bad line becomes a quarantine row naming the source and line number.
pub struct NdjsonLines {
    keys: Vec<String>,
    plan: ReadPlan,
    slots: Vec<JVal>,
    seen: Vec<bool>,
}

impl NdjsonLines {
    /// A parser of `events` lines under `mapping` (use `Mapping::default()` for lines
    /// in contract column names).
    pub fn new(mapping: &Mapping) -> NdjsonLines {
        let mut keys: Vec<String> = Vec::new();
        let plan = ReadPlan::resolve(
            mapping,
            &[crate::dataset::Table::Events],
            true,
            &mut |name| {
                Some(keys.iter().position(|k| k == name).unwrap_or_else(|| {
                    keys.push(name.to_string());
                    keys.len() - 1
                }))
            },
        )
        .expect("an open plan finds every column");
        let slots = vec![JVal::Null; keys.len()];
        let seen = vec![false; keys.len()];
        NdjsonLines {
            keys,
            plan,
            slots,
            seen,
        }
    }

    /// Adds line number `lineno` of `source` to `batch`: an event, or a quarantine row
    /// (`bad_json`, or the first rule the row breaks). Blank lines are skipped.
    pub fn push(&mut self, line: &[u8], lineno: u64, source: &str, batch: &mut FileBatch) {
        let bad_json = |raw: String, batch: &mut FileBatch| {
            batch.rows_read += 1;
            batch.reject(QuarantineRow {
                file: source.to_string(),
                row: lineno,
                field: String::new(),
                reason: "bad_json".to_string(),
                raw: truncate_raw(raw),
            })
        };
        let Ok(text) = std::str::from_utf8(line) else {
            bad_json(String::from_utf8_lossy(line).into_owned(), batch);
            return;
        };
        let text = text.trim_start_matches('\u{feff}').trim_end();
        if text.is_empty() {
            return;
        }
        self.slots.iter_mut().for_each(|s| *s = JVal::Null);
        if parse_line(text, &self.keys, &mut self.slots, &mut self.seen).is_err() {
            bad_json(text.to_string(), batch);
            return;
        }
        self.plan.apply(
            &JsonRow {
                slots: &self.slots,
                line: text,
            },
            lineno,
            source,
            batch,
        );
    }
}

#[cfg(test)]
mod line_tests {
    use super::*;

    #[test]
    fn lines_become_events_or_quarantine_rows() {
        let mut lines = NdjsonLines::new(&Mapping::default());
        let mut batch = FileBatch::default();
        lines.push(
            br#"{"event_id":"e1","user_id":"u1","ts":"2025-01-01T00:00:00Z","event_type":"Play "}"#,
            1,
            "stdin",
            &mut batch,
        );
        lines.push(b"not json", 2, "stdin", &mut batch);
        lines.push(b"", 3, "stdin", &mut batch);
        lines.push(
            br#"{"event_id":"e2","ts":"2025-01-01T00:00:00Z","event_type":"play"}"#,
            4,
            "stdin",
            &mut batch,
        );
        assert_eq!(batch.events.len(), 1);
        assert_eq!(batch.events[0].event_type, "play");
        assert_eq!(batch.event_rows, vec![1]);
        let reasons: Vec<_> = batch
            .quarantine
            .iter()
            .map(|q| (q.file.as_str(), q.row, q.reason.as_str()))
            .collect();
        assert_eq!(reasons[0], ("stdin", 2, "bad_json"));
        assert_eq!(reasons[1].1, 4);
    }
}
