//! From source rows to contract rows: the mapping resolved to column indices once
//! per file ([`ReadPlan`]), and per-row extraction, filtering and validation that
//! fills a [`FileBatch`] or quarantines the row.

use std::borrow::Cow;
use std::collections::HashMap;

use xxhash_rust::xxh3::Xxh3Default;

use crate::dataset::Table;
use crate::mapping::{ColumnSpec, FilterTest, Mapping};
use crate::records::{
    Event, FileBatch, Id, Item, Measure, Millis, Plan, QuarantineRow, Subscription, UserRow,
    MAX_VALUE,
};
use crate::timestamp::{parse_event_time, parse_with_format, EpochUnit};

/// The longest `raw` text kept in a quarantine row, in characters.
pub(crate) const RAW_LIMIT: usize = 1000;

/// Largest valid `duration_ms` of an event (2 hours).
pub(crate) const MAX_DURATION_MS: i64 = 7_200_000;

/// One source value, borrowed from the row where possible.
#[derive(Debug)]
pub(crate) enum Got<'a> {
    Null,
    Str(Cow<'a, str>),
    Int(i64),
    Float(f64),
    Bool(bool),
    /// A native timestamp or date (Parquet), already in epoch milliseconds.
    Time(Millis),
}

fn float_text(f: f64) -> String {
    format!("{f}")
}

impl<'a> Got<'a> {
    /// The value as text; `None` for null.
    pub(crate) fn text(self) -> Option<Cow<'a, str>> {
        match self {
            Got::Null => None,
            Got::Str(s) => Some(s),
            Got::Int(i) => Some(Cow::Owned(i.to_string())),
            Got::Float(f) => Some(Cow::Owned(float_text(f))),
            Got::Bool(b) => Some(Cow::Borrowed(if b { "true" } else { "false" })),
            Got::Time(t) => Some(Cow::Owned(
                chrono::DateTime::from_timestamp_millis(t)
                    .map(|d| d.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
                    .unwrap_or_else(|| t.to_string()),
            )),
        }
    }

    fn number(&self) -> Option<f64> {
        match self {
            Got::Int(i) => Some(*i as f64),
            Got::Float(f) => Some(*f),
            Got::Str(s) => s.trim().parse::<f64>().ok(),
            _ => None,
        }
    }

    /// Whether the value is null or blank text: a field without a value.
    pub(crate) fn is_null(&self) -> bool {
        match self {
            Got::Null => true,
            Got::Str(s) => is_blank(s),
            _ => false,
        }
    }
}

/// Whether `text` is empty or only whitespace (what `str::trim` removes). Most texts
/// start with a visible ASCII character, which settles it without decoding the rest.
pub(crate) fn is_blank(text: &str) -> bool {
    match text.as_bytes().first() {
        None => true,
        Some(&b) if b.is_ascii() => (b as char).is_whitespace() && text.trim().is_empty(),
        Some(_) => text.trim().is_empty(),
    }
}

/// `text` without leading and trailing whitespace, as `str::trim` gives it, without
/// decoding anything when both ends are visible ASCII characters (the common case).
fn trimmed(text: &str) -> &str {
    let bytes = text.as_bytes();
    match (bytes.first(), bytes.last()) {
        (Some(&first), Some(&last)) if first.is_ascii_graphic() && last.is_ascii_graphic() => text,
        _ => text.trim(),
    }
}

/// A source row as the readers hand it over.
pub(crate) trait Row {
    /// The value of resolved column `idx`.
    fn get(&self, idx: usize) -> Got<'_>;
    /// The whole row as text (`raw` of a quarantine row), untruncated.
    fn raw(&self) -> String;
    /// Stable hash of the whole row's canonical text (the default `event_id`).
    fn row_hash(&self) -> u64;
}

/// Hex text of a 64-bit hash.
pub(crate) fn hex(h: u64) -> String {
    format!("{h:016x}")
}

/// An `event_type` as events hold it: trimmed and lower-cased (lower-case ASCII, the
/// usual case, kept as it is); empty when blank (`missing_value`).
pub(crate) fn event_type_of(text: &str) -> Id {
    let t = trimmed(text);
    if t.bytes().any(|b| b.is_ascii_uppercase() || !b.is_ascii()) {
        Id::from(t.to_lowercase())
    } else {
        Id::from(t)
    }
}

/// A `value` as events hold it, if valid: finite and at most [`MAX_VALUE`] in
/// magnitude (else `out_of_range`), with -0.0 and 0.0 one value.
pub(crate) fn measure_of(v: f64) -> Option<Measure> {
    (v.is_finite() && v.abs() <= MAX_VALUE).then_some(Measure(if v == 0.0 { 0.0 } else { v }))
}

/// Truncates raw text to [`RAW_LIMIT`] characters.
pub(crate) fn truncate_raw(mut s: String) -> String {
    if let Some((cut, _)) = s.char_indices().nth(RAW_LIMIT) {
        s.truncate(cut);
    }
    s
}

/// An integer from a value: integers, integral floats ("17850.0"), integer text.
fn integer_of(g: &Got) -> Option<i64> {
    match g {
        Got::Int(i) => Some(*i),
        Got::Float(f) => float_to_int(*f),
        Got::Str(s) => {
            let s = s.trim();
            s.parse::<i64>()
                .ok()
                .or_else(|| s.parse::<f64>().ok().and_then(float_to_int))
        }
        _ => None,
    }
}

fn float_to_int(f: f64) -> Option<i64> {
    (f.is_finite() && f.fract() == 0.0 && f.abs() < 9.0e18).then_some(f as i64)
}

/// Where a contract field comes from, with column indices resolved.
#[derive(Debug)]
pub(crate) enum Src {
    Null,
    Col(usize),
    Scaled(usize, f64),
    AsInt(usize),
    Prefix(usize, Vec<(String, String)>, Option<String>),
    Hash(Vec<usize>),
    Const(String),
    RowHash,
    /// A column that rows may lack (NDJSON `event_id`): the row hash when null.
    ColOrRowHash(usize),
}

/// One contract field of a table: its source and value map.
#[derive(Debug)]
pub(crate) struct FieldPlan {
    src: Src,
    values: Option<HashMap<String, String>>,
}

/// One table fed by the file, resolved against the file's columns.
#[derive(Debug)]
pub(crate) struct TablePlan {
    pub(crate) table: Table,
    /// In the order of [`Table::fields`].
    fields: Vec<FieldPlan>,
    /// `users/` attributes by name (see [`Mapping::user_attributes`]).
    attributes: Vec<(String, FieldPlan)>,
    filters: Vec<(usize, Vec<FilterTest>)>,
    unit: EpochUnit,
    ts_format: Option<String>,
}

/// The mapping of every table a file feeds, resolved to the file's columns.
#[derive(Debug)]
pub(crate) struct ReadPlan {
    pub(crate) tables: Vec<TablePlan>,
    /// Columns the mapping needs to exist: (name, resolved index, table).
    pub(crate) required: Vec<(String, usize, Table)>,
    /// Whether some field is the hash of the whole row.
    pub(crate) needs_row_hash: bool,
}

/// A column the file lacks: (column, table).
#[derive(Debug)]
pub(crate) struct Missing(pub(crate) String, pub(crate) Table);

impl ReadPlan {
    /// Resolves `mapping` for `tables`. `find` maps a source column name to an index,
    /// or `None` when the file lacks it. Named columns, and default columns of
    /// required fields, must exist. `open` says that rows may lack columns the file
    /// has (NDJSON): an unmapped `event_id` is then the row hash where a row has none.
    pub(crate) fn resolve(
        mapping: &Mapping,
        tables: &[Table],
        open: bool,
        find: &mut dyn FnMut(&str) -> Option<usize>,
    ) -> Result<ReadPlan, Missing> {
        let mut plan = ReadPlan {
            tables: Vec::new(),
            required: Vec::new(),
            needs_row_hash: false,
        };
        for &table in tables {
            let tm = mapping.table(table);
            let need = |name: &str,
                        plan: &mut ReadPlan,
                        find: &mut dyn FnMut(&str) -> Option<usize>|
             -> Result<usize, Missing> {
                let idx = find(name).ok_or_else(|| Missing(name.to_string(), table))?;
                plan.required.push((name.to_string(), idx, table));
                Ok(idx)
            };
            let mut fields = Vec::new();
            for &field in table.fields() {
                let src = match tm.columns.get(field) {
                    Some(spec) => spec_src(spec, &mut |c| need(c, &mut plan, find))?,
                    None if table.required_fields().contains(&field) => {
                        Src::Col(need(field, &mut plan, find)?)
                    }
                    None if open && table == Table::Events && field == "event_id" => {
                        plan.needs_row_hash = true;
                        match find(field) {
                            Some(idx) => Src::ColOrRowHash(idx),
                            None => Src::RowHash,
                        }
                    }
                    None => match find(field) {
                        Some(idx) => Src::Col(idx),
                        None if table == Table::Events && field == "event_id" => {
                            plan.needs_row_hash = true;
                            Src::RowHash
                        }
                        None => Src::Null,
                    },
                };
                fields.push(FieldPlan {
                    src,
                    values: tm.values.get(field).cloned(),
                });
            }
            // Every other [users.columns] key is a user attribute.
            let mut attributes = Vec::new();
            if table == Table::Users {
                for (name, spec) in &tm.columns {
                    if !table.fields().contains(&name.as_str()) {
                        let src = spec_src(spec, &mut |c| need(c, &mut plan, find))?;
                        let values = tm.values.get(name).cloned();
                        attributes.push((name.clone(), FieldPlan { src, values }));
                    }
                }
            }
            let mut filters = Vec::new();
            for f in &tm.filters {
                filters.push((need(&f.column, &mut plan, find)?, f.tests.clone()));
            }
            plan.tables.push(TablePlan {
                table,
                fields,
                attributes,
                filters,
                unit: tm.ts_unit,
                ts_format: tm.ts_format.clone(),
            });
        }
        Ok(plan)
    }

    /// The column of each `events/` field, in the order of [`Table::fields`] (`None`:
    /// the field is null), when the file feeds `events/` only and every field is read
    /// from a column as it is: no filter, value map, constant, hash or scaling. Such a
    /// file's events can be built straight from typed columns (the Parquet reader's
    /// fast path); any other mapping goes through [`ReadPlan::apply`].
    pub(crate) fn plain_event_columns(&self) -> Option<[Option<usize>; 8]> {
        let [tp] = self.tables.as_slice() else {
            return None;
        };
        if tp.table != Table::Events || !tp.filters.is_empty() || tp.fields.len() != 8 {
            return None;
        }
        let mut columns = [None; 8];
        for (column, field) in columns.iter_mut().zip(&tp.fields) {
            if field.values.is_some() {
                return None;
            }
            *column = match field.src {
                Src::Col(c) => Some(c),
                Src::Null => None,
                _ => return None,
            };
        }
        Some(columns)
    }

    /// Maps one source row into `batch`: a contract row per table whose filter it
    /// passes, or (at most) one quarantine row for the first failing field.
    pub(crate) fn apply<R: Row>(&self, row: &R, rowno: u64, file: &str, batch: &mut FileBatch) {
        let mut quarantined = false;
        let mut passed = false;
        batch.rows_read += 1;
        for tp in &self.tables {
            if !tp.passes(row) {
                continue;
            }
            passed = true;
            let result = match tp.table {
                Table::Events => tp.event(row).map(|e| {
                    batch.events.push(e);
                    batch.event_rows.push(rowno);
                }),
                Table::Users => tp.user(row).map(|u| batch.users.push(u)),
                Table::Subscriptions => tp.subscription(row).map(|s| batch.subscriptions.push(s)),
                Table::Items => tp.item(row).map(|i| batch.items.push(i)),
            };
            if let Err((field, reason)) = result {
                if !quarantined {
                    quarantined = true;
                    batch.reject(QuarantineRow {
                        file: file.to_string(),
                        row: rowno,
                        field: field.to_string(),
                        reason: reason.to_string(),
                        raw: truncate_raw(row.raw()),
                    });
                }
            }
        }
        if !passed {
            batch.rows_filtered += 1;
        }
    }
}

/// Where a field named in the mapping comes from, its columns resolved by `need`.
fn spec_src(
    spec: &ColumnSpec,
    need: &mut dyn FnMut(&str) -> Result<usize, Missing>,
) -> Result<Src, Missing> {
    Ok(match spec {
        ColumnSpec::Column(c) => Src::Col(need(c)?),
        ColumnSpec::Scaled { column, scale } => Src::Scaled(need(column)?, *scale),
        ColumnSpec::AsInteger { column } => Src::AsInt(need(column)?),
        ColumnSpec::Prefix {
            column,
            prefixes,
            otherwise,
        } => Src::Prefix(need(column)?, prefixes.clone(), otherwise.clone()),
        ColumnSpec::Hash(cols) => {
            Src::Hash(cols.iter().map(|c| need(c)).collect::<Result<_, _>>()?)
        }
        ColumnSpec::Value(v) => Src::Const(v.clone()),
    })
}

type Fail = (&'static str, &'static str);

fn fail<T>(field: &'static str, reason: &'static str) -> Result<T, Fail> {
    Err((field, reason))
}

impl TablePlan {
    fn passes<R: Row>(&self, row: &R) -> bool {
        self.filters.iter().all(|(idx, tests)| {
            let value = row.get(*idx);
            tests.iter().all(|t| test(t, &value))
        })
    }

    /// The value of field number `i` after its column spec and value map.
    fn value<'a, R: Row>(&'a self, i: usize, row: &'a R) -> Result<Got<'a>, Fail> {
        self.value_of(self.table.fields()[i], &self.fields[i], row)
    }

    /// The value of `field`, read as `plan` says.
    fn value_of<'a, R: Row>(
        &'a self,
        field: &'static str,
        plan: &'a FieldPlan,
        row: &'a R,
    ) -> Result<Got<'a>, Fail> {
        let got = match &plan.src {
            Src::Null => Got::Null,
            Src::Col(c) => row.get(*c),
            Src::Const(v) => Got::Str(Cow::Borrowed(v)),
            Src::RowHash => Got::Str(Cow::Owned(hex(row.row_hash()))),
            Src::ColOrRowHash(c) => match row.get(*c) {
                Got::Null => Got::Str(Cow::Owned(hex(row.row_hash()))),
                g => g,
            },
            Src::Hash(cols) => {
                let mut h = Xxh3Default::new();
                for (k, c) in cols.iter().enumerate() {
                    if k > 0 {
                        h.update(b"\x1f");
                    }
                    if let Some(t) = row.get(*c).text() {
                        h.update(t.as_bytes());
                    }
                }
                Got::Str(Cow::Owned(hex(h.digest())))
            }
            Src::AsInt(c) => {
                let g = row.get(*c);
                if g.is_null() {
                    Got::Null
                } else {
                    Got::Int(integer_of(&g).ok_or((field, "bad_integer"))?)
                }
            }
            Src::Scaled(c, scale) => {
                let g = row.get(*c);
                if g.is_null() {
                    Got::Null
                } else {
                    if field == "value" {
                        // A measure stays a double: scaled, not rounded.
                        let v = g.number().ok_or((field, "bad_number"))? * scale;
                        return Ok(Got::Float(v));
                    }
                    let v = g.number().ok_or((field, "bad_integer"))? * scale;
                    let r = v.round();
                    if !r.is_finite() || r.abs() >= 9.0e18 {
                        return fail(field, "bad_integer");
                    }
                    Got::Int(r as i64)
                }
            }
            Src::Prefix(c, rules, otherwise) => match row.get(*c).text() {
                None => Got::Null,
                Some(t) => match rules.iter().find(|(p, _)| t.starts_with(p.as_str())) {
                    Some((_, v)) => Got::Str(Cow::Borrowed(v)),
                    None => match otherwise {
                        Some(v) => Got::Str(Cow::Borrowed(v)),
                        None => Got::Str(t),
                    },
                },
            },
        };
        let Some(map) = &plan.values else {
            return Ok(got);
        };
        let Some(text) = got.text() else {
            return Ok(Got::Null);
        };
        if let Some(v) = map.get(text.as_ref()).or_else(|| map.get(text.trim())) {
            return Ok(Got::Str(Cow::Borrowed(v)));
        }
        Ok(Got::Str(text))
    }

    /// A text field as a `String`, or as an [`Id`] (held in place when short: no
    /// allocation), whichever the row type holds.
    fn opt_text<R: Row, T: for<'a> From<Cow<'a, str>>>(
        &self,
        i: usize,
        row: &R,
    ) -> Result<Option<T>, Fail> {
        let g = self.value(i, row)?;
        if g.is_null() {
            return Ok(None);
        }
        Ok(g.text().map(T::from))
    }

    fn req_text<R: Row, T: for<'a> From<Cow<'a, str>>>(
        &self,
        i: usize,
        row: &R,
    ) -> Result<T, Fail> {
        self.opt_text(i, row)?
            .ok_or((self.table.fields()[i], "missing_value"))
    }

    /// A time field, checked against the accepted range (`out_of_range` outside it).
    fn opt_time<R: Row>(&self, i: usize, row: &R) -> Result<Option<Millis>, Fail> {
        match self.opt_time_unchecked(i, row)? {
            Some(ts) if !crate::time::in_range(ts) => Err((self.table.fields()[i], "out_of_range")),
            ts => Ok(ts),
        }
    }

    fn opt_time_unchecked<R: Row>(&self, i: usize, row: &R) -> Result<Option<Millis>, Fail> {
        let field = self.table.fields()[i];
        let g = self.value(i, row)?;
        if g.is_null() {
            return Ok(None);
        }
        let bad = (field, "bad_timestamp");
        match g {
            Got::Time(t) => Ok(Some(t)),
            Got::Int(v) => self.unit.to_millis(v).map(Some).ok_or(bad),
            Got::Float(f) => float_to_int(f)
                .and_then(|v| self.unit.to_millis(v))
                .map(Some)
                .ok_or(bad),
            Got::Str(s) => {
                let parsed = match &self.ts_format {
                    Some(format) => parse_with_format(&s, format),
                    None => parse_event_time(&s, self.unit).or_else(|| {
                        s.trim()
                            .parse::<f64>()
                            .ok()
                            .and_then(float_to_int)
                            .and_then(|v| self.unit.to_millis(v))
                    }),
                };
                parsed.map(Some).ok_or(bad)
            }
            Got::Bool(_) | Got::Null => Err(bad),
        }
    }

    fn req_time<R: Row>(&self, i: usize, row: &R) -> Result<Millis, Fail> {
        self.opt_time(i, row)?
            .ok_or((self.table.fields()[i], "missing_value"))
    }

    fn opt_int<R: Row>(&self, i: usize, row: &R) -> Result<Option<i64>, Fail> {
        let g = self.value(i, row)?;
        if g.is_null() {
            return Ok(None);
        }
        integer_of(&g)
            .map(Some)
            .ok_or((self.table.fields()[i], "bad_integer"))
    }

    /// A finite double of at most [`MAX_VALUE`] in magnitude (`bad_number` when not a
    /// number, `out_of_range` when not finite or too large).
    fn opt_measure<R: Row>(&self, i: usize, row: &R) -> Result<Option<Measure>, Fail> {
        let field = self.table.fields()[i];
        let g = self.value(i, row)?;
        if g.is_null() {
            return Ok(None);
        }
        let v = match g {
            Got::Bool(_) | Got::Time(_) | Got::Null => return fail(field, "bad_number"),
            g => g.number().ok_or((field, "bad_number"))?,
        };
        measure_of(v).map(Some).ok_or((field, "out_of_range"))
    }

    fn plan<R: Row>(&self, i: usize, row: &R) -> Result<Plan, Fail> {
        let field = self.table.fields()[i];
        let text: String = self.req_text(i, row)?;
        Plan::parse(&text).ok_or((field, "bad_plan"))
    }

    fn event<R: Row>(&self, row: &R) -> Result<Event, Fail> {
        // Field order: event_id, user_id, ts, event_type, item_id, duration_ms, session_id,
        // value.
        let event_id = self.req_text(0, row)?;
        let user_id = self.req_text(1, row)?;
        let ts = self.req_time(2, row)?;
        let event_type = {
            let g = self.value(3, row)?;
            let t = g.text().map_or_else(Id::default, |t| event_type_of(&t));
            if t.is_empty() {
                return fail("event_type", "missing_value");
            }
            t
        };
        let item_id = self.opt_text(4, row)?;
        let duration_ms = self.opt_int(5, row)?;
        if let Some(d) = duration_ms {
            if !(0..=MAX_DURATION_MS).contains(&d) {
                return fail("duration_ms", "out_of_range");
            }
        }
        let session_id = self.opt_text(6, row)?;
        let value = self.opt_measure(7, row)?;
        Ok(Event {
            event_id,
            user_id,
            ts,
            event_type,
            item_id,
            duration_ms,
            session_id,
            value,
        })
    }

    fn user<R: Row>(&self, row: &R) -> Result<UserRow, Fail> {
        // user_id, signup_ts, country, plan
        Ok(UserRow {
            user_id: self.req_text(0, row)?,
            signup_ts: self.opt_time(1, row)?,
            country: self.opt_text(2, row)?,
            plan: self.plan(3, row)?,
            attributes: self
                .attributes
                .iter()
                .map(|(name, plan)| {
                    let g = self.value_of("attribute", plan, row)?;
                    let text = if g.is_null() {
                        None
                    } else {
                        g.text().map(|t| t.trim().to_string())
                    };
                    Ok((name.clone(), text))
                })
                .collect::<Result<_, Fail>>()?,
        })
    }

    fn subscription<R: Row>(&self, row: &R) -> Result<Subscription, Fail> {
        // user_id, ts, plan
        Ok(Subscription {
            user_id: self.req_text(0, row)?,
            ts: self.req_time(1, row)?,
            plan: self.plan(2, row)?,
        })
    }

    fn item<R: Row>(&self, row: &R) -> Result<Item, Fail> {
        // item_id, artist_id, genre, title, duration_ms
        Ok(Item {
            item_id: self.req_text(0, row)?,
            artist_id: self.opt_text(1, row)?,
            genre: self.opt_text(2, row)?,
            title: self.opt_text(3, row)?,
            duration_ms: self.opt_int(4, row)?,
        })
    }
}

fn test(t: &FilterTest, value: &Got) -> bool {
    let text = || match value {
        Got::Str(s) => Some(Cow::Borrowed(s.as_ref())),
        Got::Null => None,
        Got::Int(i) => Some(Cow::Owned(i.to_string())),
        Got::Float(f) => Some(Cow::Owned(float_text(*f))),
        Got::Bool(b) => Some(Cow::Borrowed(if *b { "true" } else { "false" })),
        Got::Time(t) => Some(Cow::Owned(t.to_string())),
    };
    match t {
        FilterTest::In(list) => text().is_some_and(|v| list.iter().any(|x| x == v.as_ref())),
        FilterTest::NotIn(list) => !text().is_some_and(|v| list.iter().any(|x| x == v.as_ref())),
        FilterTest::Prefix(p) => text().is_some_and(|v| v.starts_with(p.as_str())),
        FilterTest::NotPrefix(p) => !text().is_some_and(|v| v.starts_with(p.as_str())),
        FilterTest::Gt(x) => value.number().is_some_and(|v| v > *x),
        FilterTest::Ge(x) => value.number().is_some_and(|v| v >= *x),
        FilterTest::Lt(x) => value.number().is_some_and(|v| v < *x),
        FilterTest::Le(x) => value.number().is_some_and(|v| v <= *x),
    }
}

#[cfg(test)]
mod text_tests {
    use proptest::prelude::*;

    use super::{is_blank, trimmed};

    /// Texts mixing visible ASCII, ASCII and Unicode whitespace (vertical tab, form
    /// feed, NEL, no-break and ideographic spaces) and other non-ASCII characters.
    fn text() -> impl Strategy<Value = String> {
        prop::collection::vec(
            prop_oneof![
                Just('a'),
                Just('Z'),
                Just('7'),
                Just(':'),
                Just(' '),
                Just('\t'),
                Just('\n'),
                Just('\u{0B}'),
                Just('\u{0C}'),
                Just('\u{85}'),
                Just('\u{A0}'),
                Just('\u{3000}'),
                Just('é'),
                Just('\u{7F}'),
            ],
            0..6,
        )
        .prop_map(|chars| chars.into_iter().collect())
    }

    proptest! {
        /// The shortcuts agree with `str::trim` on every text.
        #[test]
        fn shortcuts_agree_with_trim(text in text()) {
            prop_assert_eq!(is_blank(&text), text.trim().is_empty());
            prop_assert_eq!(trimmed(&text), text.trim());
        }
    }
}
