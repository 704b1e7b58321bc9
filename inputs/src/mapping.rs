//! The mapping file (`tidemark.toml` or `--mapping FILE`): per table, where its files
//! are, how to parse them, and how source columns become contract columns. See the
//! Mapping section of CONTRACT.md. Parsing is strict: an unknown key anywhere is an
//! error that names the key and where it is.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use serde::Deserialize;

use crate::dataset::Table;
use crate::error::InputError;
use crate::timestamp::EpochUnit;

/// A file format tidemark can read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Format {
    /// Apache Parquet.
    Parquet,
    /// Delimited text with an optional header row.
    Csv,
    /// One JSON object per line.
    Ndjson,
}

impl Format {
    /// Parses the mapping's spelling (`parquet`, `csv`, `tsv`, `ndjson`, `jsonl`, `json`).
    pub fn parse(text: &str) -> Option<Format> {
        match text.to_ascii_lowercase().as_str() {
            "parquet" => Some(Format::Parquet),
            "csv" | "tsv" => Some(Format::Csv),
            "ndjson" | "jsonl" | "json" => Some(Format::Ndjson),
            _ => None,
        }
    }
}

/// How one contract column is obtained from a source row.
#[derive(Clone, Debug, PartialEq)]
pub enum ColumnSpec {
    /// A source column, by name (`user_id = "userId"`).
    Column(String),
    /// A number multiplied by `scale` (`{ column, scale }`), rounded for integer fields.
    Scaled {
        /// Source column.
        column: String,
        /// Factor.
        scale: f64,
    },
    /// An integer-valued number read as an integer id (`{ column, as = "integer" }`).
    AsInteger {
        /// Source column.
        column: String,
    },
    /// A value chosen by the prefix of a source column (`{ column, prefix = {..}, else }`).
    Prefix {
        /// Source column.
        column: String,
        /// (prefix, value) pairs, longest prefix first.
        prefixes: Vec<(String, String)>,
        /// Value when no prefix matches; `None` passes the source value through.
        otherwise: Option<String>,
    },
    /// A stable hash (xxh3_64, hex) of these source columns (`{ hash = [..] }`).
    Hash(Vec<String>),
    /// A constant (`{ value = ".." }`).
    Value(String),
}

impl ColumnSpec {
    /// The source columns this spec reads.
    pub fn source_columns(&self) -> Vec<&str> {
        match self {
            ColumnSpec::Column(c)
            | ColumnSpec::Scaled { column: c, .. }
            | ColumnSpec::AsInteger { column: c }
            | ColumnSpec::Prefix { column: c, .. } => vec![c.as_str()],
            ColumnSpec::Hash(cols) => cols.iter().map(String::as_str).collect(),
            ColumnSpec::Value(_) => Vec::new(),
        }
    }
}

/// One test of a `[T.filter]` entry; a row is kept only if every test passes.
#[derive(Clone, Debug, PartialEq)]
pub enum FilterTest {
    /// The value is one of these (a TOML list, or `in = [..]`).
    In(Vec<String>),
    /// The value is none of these (a null value passes).
    NotIn(Vec<String>),
    /// The value starts with this text.
    Prefix(String),
    /// The value does not start with this text (a null value passes).
    NotPrefix(String),
    /// Numeric: value > x (a non-numeric value fails).
    Gt(f64),
    /// Numeric: value >= x.
    Ge(f64),
    /// Numeric: value < x.
    Lt(f64),
    /// Numeric: value <= x.
    Le(f64),
}

/// A filter on one source column.
#[derive(Clone, Debug, PartialEq)]
pub struct Filter {
    /// The source column tested.
    pub column: String,
    /// All must pass.
    pub tests: Vec<FilterTest>,
}

/// The mapping of one contract table.
#[derive(Clone, Debug, PartialEq)]
pub struct TableMapping {
    /// Globs relative to the dataset directory (default `<table>/*`); empty: table not read.
    pub files: Vec<String>,
    /// Forced format; `None`: by extension.
    pub format: Option<Format>,
    /// CSV delimiter; `None`: `,` (or tab for `.tsv`).
    pub delimiter: Option<u8>,
    /// CSV header row present (default true); false names columns `c0, c1, ...`.
    pub header: bool,
    /// Contract column -> how to get it. Unlisted columns default to the same-named source column.
    pub columns: BTreeMap<String, ColumnSpec>,
    /// Unit of integer epochs in time columns (default ms).
    pub ts_unit: EpochUnit,
    /// strftime format of text times; `None`: the contract's accepted forms.
    pub ts_format: Option<String>,
    /// Contract column -> (source value -> contract value).
    pub values: BTreeMap<String, HashMap<String, String>>,
    /// Row filters on source columns.
    pub filters: Vec<Filter>,
}

impl TableMapping {
    /// The mapping of `table` when the mapping file does not mention it.
    pub fn default_for(table: Table) -> TableMapping {
        TableMapping {
            files: vec![format!("{}/*", table.name())],
            format: None,
            delimiter: None,
            header: true,
            columns: BTreeMap::new(),
            ts_unit: EpochUnit::Millis,
            ts_format: None,
            values: BTreeMap::new(),
            filters: Vec::new(),
        }
    }
}

/// A whole mapping: one [`TableMapping`] per contract table.
#[derive(Clone, Debug, PartialEq)]
pub struct Mapping {
    /// `[events]`.
    pub events: TableMapping,
    /// `[users]`.
    pub users: TableMapping,
    /// `[subscriptions]`.
    pub subscriptions: TableMapping,
    /// `[items]`.
    pub items: TableMapping,
}

pub use tidemark_records::check_attribute_name;

impl Mapping {
    /// The `users/` attributes the mapping brings in: every `[users.columns]` key that is
    /// not a contract column of `users/`, in name order.
    pub fn user_attributes(&self) -> Vec<String> {
        let fields = Table::Users.fields();
        self.users
            .columns
            .keys()
            .filter(|k| !fields.contains(&k.as_str()))
            .cloned()
            .collect()
    }

    /// Makes sure each attribute of `names` is read: one the mapping does not map is
    /// read from the `users/` column of the same name (a file without it is then an
    /// error naming the file and the column, before any row is read).
    pub fn read_attributes(&mut self, names: &[String]) -> Result<(), String> {
        for name in names {
            check_attribute_name(name)?;
            self.users
                .columns
                .entry(name.clone())
                .or_insert_with(|| ColumnSpec::Column(name.clone()));
        }
        Ok(())
    }

    /// A stable fingerprint (hex xxh3) of what the mapping means, not how it is spelled:
    /// a resumed run compares it with the one its output was written with.
    pub fn fingerprint(&self) -> String {
        use std::fmt::Write as _;
        let mut text = String::new();
        for table in Table::ALL {
            let m = self.table(table);
            let values: BTreeMap<&String, BTreeMap<&String, &String>> = m
                .values
                .iter()
                .map(|(column, map)| (column, map.iter().collect()))
                .collect();
            let _ = write!(
                text,
                "{table:?}|{:?}|{:?}|{:?}|{:?}|{:?}|{:?}|{:?}|{values:?}|{:?};",
                m.files,
                m.format,
                m.delimiter,
                m.header,
                m.columns,
                m.ts_unit,
                m.ts_format,
                m.filters
            );
        }
        format!("{:016x}", xxhash_rust::xxh3::xxh3_64(text.as_bytes()))
    }
}

impl Default for Mapping {
    fn default() -> Self {
        Mapping {
            events: TableMapping::default_for(Table::Events),
            users: TableMapping::default_for(Table::Users),
            subscriptions: TableMapping::default_for(Table::Subscriptions),
            items: TableMapping::default_for(Table::Items),
        }
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawMapping {
    events: Option<RawTable>,
    users: Option<RawTable>,
    subscriptions: Option<RawTable>,
    items: Option<RawTable>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum RawFiles {
    One(String),
    Many(Vec<String>),
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawTable {
    files: Option<RawFiles>,
    format: Option<String>,
    delimiter: Option<String>,
    header: Option<bool>,
    columns: Option<BTreeMap<String, toml::Value>>,
    ts: Option<RawTs>,
    values: Option<BTreeMap<String, BTreeMap<String, toml::Value>>>,
    filter: Option<BTreeMap<String, toml::Value>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawTs {
    unit: Option<String>,
    format: Option<String>,
}

impl Mapping {
    /// The mapping of one table.
    pub fn table(&self, table: Table) -> &TableMapping {
        match table {
            Table::Events => &self.events,
            Table::Users => &self.users,
            Table::Subscriptions => &self.subscriptions,
            Table::Items => &self.items,
        }
    }

    /// Reads and checks a mapping file.
    pub fn load(path: &Path) -> Result<Mapping, InputError> {
        let text =
            std::fs::read_to_string(path).map_err(|source| InputError::MappingUnreadable {
                path: path.to_path_buf(),
                source,
            })?;
        Mapping::parse(&text, &path.display().to_string())
    }

    /// Parses and checks mapping text; `origin` names it in error messages.
    pub fn parse(text: &str, origin: &str) -> Result<Mapping, InputError> {
        let err = |message: String| InputError::Mapping {
            path: origin.to_string(),
            message,
        };
        let raw: RawMapping = toml::from_str(text).map_err(|e| {
            err(format!(
                "{} (allowed tables: [events], [users], [subscriptions], [items]; allowed keys: files, \
                 format, delimiter, header, columns, ts, values, filter)",
                e.to_string().trim_end()
            ))
        })?;
        let mut mapping = Mapping::default();
        for (table, raw_table) in [
            (Table::Events, raw.events),
            (Table::Users, raw.users),
            (Table::Subscriptions, raw.subscriptions),
            (Table::Items, raw.items),
        ] {
            if let Some(raw_table) = raw_table {
                let resolved = table_mapping(table, raw_table).map_err(err)?;
                match table {
                    Table::Events => mapping.events = resolved,
                    Table::Users => mapping.users = resolved,
                    Table::Subscriptions => mapping.subscriptions = resolved,
                    Table::Items => mapping.items = resolved,
                }
            }
        }
        Ok(mapping)
    }
}

fn scalar_text(value: &toml::Value) -> Option<String> {
    match value {
        toml::Value::String(s) => Some(s.clone()),
        toml::Value::Integer(i) => Some(i.to_string()),
        toml::Value::Float(f) => Some(f.to_string()),
        toml::Value::Boolean(b) => Some(b.to_string()),
        _ => None,
    }
}

fn number(value: &toml::Value) -> Option<f64> {
    match value {
        toml::Value::Integer(i) => Some(*i as f64),
        toml::Value::Float(f) => Some(*f),
        _ => None,
    }
}

fn text_list(value: &toml::Value, place: &str) -> Result<Vec<String>, String> {
    let toml::Value::Array(items) = value else {
        return Err(format!("{place} must be a list of values"));
    };
    items
        .iter()
        .map(|v| {
            scalar_text(v)
                .ok_or_else(|| format!("{place} must hold plain values (text or numbers)"))
        })
        .collect()
}

fn table_mapping(table: Table, raw: RawTable) -> Result<TableMapping, String> {
    let name = table.name();
    let mut out = TableMapping::default_for(table);
    if let Some(files) = raw.files {
        out.files = match files {
            RawFiles::One(f) => vec![f],
            RawFiles::Many(v) => v,
        };
        for pattern in &out.files {
            glob::Pattern::new(pattern)
                .map_err(|e| format!("[{name}] files: `{pattern}` is not a valid glob ({e})"))?;
        }
    }
    if let Some(format) = raw.format {
        out.format = Some(Format::parse(&format).ok_or_else(|| {
            format!("[{name}] format: unknown format `{format}` (use parquet, csv or ndjson)")
        })?);
        if format.eq_ignore_ascii_case("tsv") && raw.delimiter.is_none() {
            out.delimiter = Some(b'\t');
        }
    }
    if let Some(delimiter) = raw.delimiter {
        let bytes = delimiter.as_bytes();
        if bytes.len() != 1 {
            return Err(format!(
                "[{name}] delimiter: `{}` must be exactly one ASCII character (write a tab as \"\\t\")",
                delimiter.escape_default()
            ));
        }
        out.delimiter = Some(bytes[0]);
    }
    if let Some(header) = raw.header {
        out.header = header;
    }
    let fields = table.fields();
    if let Some(columns) = raw.columns {
        for (field, value) in columns {
            if !fields.contains(&field.as_str()) && table != Table::Users {
                return Err(format!(
                    "unknown key `{field}` in [{name}.columns]; the contract columns of {name} are: {}",
                    fields.join(", ")
                ));
            }
            if !fields.contains(&field.as_str()) {
                check_attribute_name(&field)?;
            }
            let spec = column_spec(&value).map_err(|m| format!("[{name}.columns] {field}: {m}"))?;
            out.columns.insert(field, spec);
        }
    }
    if let Some(ts) = raw.ts {
        if let Some(unit) = ts.unit {
            out.ts_unit = EpochUnit::parse(&unit).ok_or_else(|| {
                format!("[{name}.ts] unit: unknown unit `{unit}` (use s, ms, us or ns)")
            })?;
        }
        out.ts_format = ts.format;
    }
    if let Some(values) = raw.values {
        for (field, map) in values {
            let attribute = table == Table::Users && out.columns.contains_key(&field);
            if !(fields.contains(&field.as_str()) || attribute) {
                return Err(format!(
                    "unknown key `{field}` in [{name}.values]; the contract columns of {name} are: {}",
                    fields.join(", ")
                ));
            }
            let mut resolved = HashMap::with_capacity(map.len());
            for (from, to) in map {
                let to = scalar_text(&to).ok_or_else(|| {
                    format!("[{name}.values.{field}] {from}: the contract value must be text")
                })?;
                resolved.insert(from, to);
            }
            out.values.insert(field, resolved);
        }
    }
    if let Some(filter) = raw.filter {
        for (column, value) in filter {
            let tests =
                filter_tests(&value).map_err(|m| format!("[{name}.filter] {column}: {m}"))?;
            out.filters.push(Filter { column, tests });
        }
    }
    Ok(out)
}

fn column_spec(value: &toml::Value) -> Result<ColumnSpec, String> {
    let table = match value {
        toml::Value::String(s) => return Ok(ColumnSpec::Column(s.clone())),
        toml::Value::Table(t) => t,
        _ => {
            return Err(
                "expected a source column name or a table such as { column = .., scale = .. }"
                    .into(),
            )
        }
    };
    const KEYS: [&str; 7] = ["column", "scale", "as", "prefix", "else", "hash", "value"];
    for key in table.keys() {
        if !KEYS.contains(&key.as_str()) {
            return Err(format!(
                "unknown key `{key}` (allowed: {})",
                KEYS.join(", ")
            ));
        }
    }
    let text = |key: &str| -> Result<Option<String>, String> {
        match table.get(key) {
            None => Ok(None),
            Some(toml::Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(format!("`{key}` must be text")),
        }
    };
    if let Some(hash) = table.get("hash") {
        if table.len() != 1 {
            return Err("`hash` cannot be combined with other keys".into());
        }
        let cols = text_list(hash, "`hash`")?;
        if cols.is_empty() {
            return Err("`hash` needs at least one column".into());
        }
        return Ok(ColumnSpec::Hash(cols));
    }
    if table.contains_key("value") {
        if table.len() != 1 {
            return Err("`value` cannot be combined with other keys".into());
        }
        let v = scalar_text(&table["value"]).ok_or("`value` must be a plain value")?;
        return Ok(ColumnSpec::Value(v));
    }
    let column = text("column")?.ok_or("needs `column`, `hash` or `value`")?;
    let transforms = ["scale", "as", "prefix"]
        .iter()
        .filter(|k| table.contains_key(**k))
        .count();
    if transforms > 1 {
        return Err("use only one of `scale`, `as` and `prefix`".into());
    }
    if table.contains_key("else") && !table.contains_key("prefix") {
        return Err("`else` only goes with `prefix`".into());
    }
    if let Some(scale) = table.get("scale") {
        let scale = number(scale).ok_or("`scale` must be a number")?;
        if !scale.is_finite() {
            return Err("`scale` must be finite".into());
        }
        return Ok(ColumnSpec::Scaled { column, scale });
    }
    if let Some(as_) = text("as")? {
        if as_ != "integer" {
            return Err(format!(
                "`as = \"{as_}\"` is not supported (only \"integer\")"
            ));
        }
        return Ok(ColumnSpec::AsInteger { column });
    }
    if let Some(prefix) = table.get("prefix") {
        let toml::Value::Table(rules) = prefix else {
            return Err("`prefix` must be a table such as { C = \"cancel\" }".into());
        };
        let mut prefixes = Vec::with_capacity(rules.len());
        for (p, v) in rules {
            let v = scalar_text(v).ok_or_else(|| format!("prefix `{p}` must map to text"))?;
            prefixes.push((p.clone(), v));
        }
        prefixes.sort_by(|a, b| b.0.len().cmp(&a.0.len()).then(a.0.cmp(&b.0)));
        let otherwise = text("else")?;
        return Ok(ColumnSpec::Prefix {
            column,
            prefixes,
            otherwise,
        });
    }
    Ok(ColumnSpec::Column(column))
}

fn filter_tests(value: &toml::Value) -> Result<Vec<FilterTest>, String> {
    match value {
        toml::Value::Array(_) => Ok(vec![FilterTest::In(text_list(value, "the list")?)]),
        toml::Value::Table(table) => {
            if table.is_empty() {
                return Err("empty test table".into());
            }
            let mut tests = Vec::new();
            for (key, v) in table {
                let numeric = || {
                    number(v)
                        .filter(|n| n.is_finite())
                        .ok_or_else(|| format!("`{key}` needs a finite number"))
                };
                let textual = || match v {
                    toml::Value::String(s) => Ok(s.clone()),
                    _ => Err(format!("`{key}` needs text")),
                };
                tests.push(match key.as_str() {
                    "gt" => FilterTest::Gt(numeric()?),
                    "ge" => FilterTest::Ge(numeric()?),
                    "lt" => FilterTest::Lt(numeric()?),
                    "le" => FilterTest::Le(numeric()?),
                    "prefix" => FilterTest::Prefix(textual()?),
                    "not_prefix" => FilterTest::NotPrefix(textual()?),
                    "in" => FilterTest::In(text_list(v, "`in`")?),
                    "not_in" => FilterTest::NotIn(text_list(v, "`not_in`")?),
                    _ => {
                        return Err(format!(
                            "unknown key `{key}` (allowed: gt, ge, lt, le, prefix, not_prefix, in, not_in)"
                        ))
                    }
                });
            }
            Ok(tests)
        }
        _ => Err("expected a list of values or a table of tests such as { gt = 0 }".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_key() {
        let m = Mapping::parse(
            r#"
[events]
files = "ratings/*.tsv"
format = "csv"
delimiter = "\t"
header = false
[events.columns]
user_id = "c0"
ts = "c3"
item_id = { column = "c1", as = "integer" }
event_type = { column = "InvoiceNo", prefix = { C = "cancel", CX = "x" }, else = "purchase" }
duration_ms = { column = "length", scale = 1000.0 }
event_id = { hash = ["c0", "c1"] }
session_id = { value = "s" }
[events.ts]
unit = "s"
format = "%Y%m%d"
[events.values.event_type]
NextSong = "play"
[events.filter]
auth = ["Logged In"]
Quantity = { gt = 0, le = 10 }
InvoiceNo = { not_prefix = "C" }
[users]
files = ["a.csv", "b.csv"]
"#,
            "t",
        )
        .unwrap();
        assert_eq!(m.events.delimiter, Some(b'\t'));
        assert!(!m.events.header);
        assert_eq!(m.events.ts_unit, EpochUnit::Seconds);
        assert_eq!(m.users.files, vec!["a.csv", "b.csv"]);
        assert_eq!(m.items.files, vec!["items/*"]);
        match &m.events.columns["event_type"] {
            ColumnSpec::Prefix {
                prefixes,
                otherwise,
                ..
            } => {
                assert_eq!(prefixes[0].0, "CX");
                assert_eq!(otherwise.as_deref(), Some("purchase"));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(m.events.filters.len(), 3);
    }

    #[test]
    fn unknown_keys_are_named() {
        for (text, key) in [
            ("[events]\nfoo = 1", "foo"),
            ("[evnts]\nfiles = \"x\"", "evnts"),
            ("[events.columns]\nfoo = \"x\"", "foo"),
            (
                "[events.columns]\nuser_id = { column = \"a\", scael = 2 }",
                "scael",
            ),
            ("[events.ts]\nunits = \"s\"", "units"),
            ("[events.filter]\nx = { greater = 1 }", "greater"),
            ("[events.values.plan]\na = \"b\"", "plan"),
        ] {
            let e = Mapping::parse(text, "m.toml").unwrap_err().to_string();
            assert!(e.contains(key), "{e}");
            assert!(e.contains("m.toml"), "{e}");
        }
    }

    /// Regression (issue 14): `{ gt = nan }` was accepted and filtered every row.
    #[test]
    fn non_finite_filter_thresholds_are_refused() {
        for text in [
            "[events.filter]\nx = { gt = nan }",
            "[events.filter]\nx = { le = inf }",
            "[events.filter]\nx = { ge = -inf }",
        ] {
            let e = Mapping::parse(text, "m.toml").unwrap_err().to_string();
            assert!(e.contains("finite") && e.contains("m.toml"), "{e}");
        }
    }

    /// The fingerprint follows what a mapping means, not how it is written.
    #[test]
    fn fingerprints_follow_meaning() {
        let a = Mapping::parse("[events.columns]\nuser_id = \"u\"\n", "a").unwrap();
        let b = Mapping::parse("# same\n[events.columns]\nuser_id   =   \"u\"", "b").unwrap();
        let c = Mapping::parse("[events.columns]\nuser_id = \"v\"\n", "c").unwrap();
        assert_eq!(a.fingerprint(), b.fingerprint());
        assert_ne!(a.fingerprint(), c.fingerprint());
        assert_ne!(a.fingerprint(), Mapping::default().fingerprint());
    }
}
