//! Rows as the contract's "Serving" JSON: objects with the contract's column names,
//! instants as RFC 3339 UTC strings, dates as `YYYY-MM-DD`, counts as integers,
//! measures as numbers, nulls as `null`; and the query filters of `/api/tables/<t>`.

use chrono::{DateTime, NaiveDate, SecondsFormat};
use serde_json::{Map, Value};
use tidemark_dataflows::model::tables::{Cell, ColumnType, TableSpec};

/// One cell as JSON.
pub fn cell_json(cell: &Cell) -> Value {
    match cell {
        Cell::Null => Value::Null,
        Cell::Str(text) => Value::from(&**text),
        Cell::Int(n) => Value::from(*n),
        // Not finite (never written by tidemark) has no JSON number: null.
        Cell::Float(x) => serde_json::Number::from_f64(*x).map_or(Value::Null, Value::Number),
        Cell::Bool(b) => Value::from(*b),
        Cell::Timestamp(ms) => Value::from(instant_text(*ms)),
        Cell::Date(days) => Value::from(date_text(*days)),
    }
}

/// An instant (epoch ms) as RFC 3339 UTC, with fractions only when it has them.
pub fn instant_text(ms: i64) -> String {
    DateTime::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(SecondsFormat::AutoSi, true))
        .unwrap_or_else(|| ms.to_string())
}

/// A date (days since 1970-01-01) as `YYYY-MM-DD`.
pub fn date_text(days: i32) -> String {
    NaiveDate::from_num_days_from_ce_opt(days + 719_163)
        .map(|d| d.format("%Y-%m-%d").to_string())
        .unwrap_or_else(|| days.to_string())
}

/// A row as a JSON object, with `diff` added when given.
pub fn row_json(spec: &TableSpec, row: &[Cell], diff: Option<i64>) -> Value {
    let mut object = Map::with_capacity(spec.columns.len() + 1);
    for (column, cell) in spec.columns.iter().zip(row) {
        object.insert(column.name.to_string(), cell_json(cell));
    }
    if let Some(diff) = diff {
        object.insert("diff".to_string(), Value::from(diff));
    }
    Value::Object(object)
}

/// Which rows of a table a request wants: `from`/`to` on the table's first time
/// column (half-open, as the contract's periods) and equality on named columns.
#[derive(Debug, Default)]
pub struct Filter {
    /// `(column index, inclusive lower bound, exclusive upper bound)` in epoch ms.
    range: Option<(usize, i64, i64)>,
    /// `(column index, wanted cell)`.
    equals: Vec<(usize, Cell)>,
}

impl Filter {
    /// Parses the query parameters of a request for `spec`; the error says what is
    /// wrong and what would be accepted.
    pub fn parse(spec: &TableSpec, params: &[(String, String)]) -> Result<Filter, String> {
        let mut filter = Filter::default();
        let (mut from, mut to) = (None, None);
        for (name, value) in params {
            match name.as_str() {
                "from" => from = Some(bound(value)?),
                "to" => to = Some(bound(value)?),
                _ => {
                    let index = spec
                        .columns
                        .iter()
                        .position(|c| c.name == name)
                        .ok_or_else(|| {
                            let names: Vec<&str> = spec.columns.iter().map(|c| c.name).collect();
                            format!(
                                "table `{}` has no column `{name}` to filter on; its columns are {}, and `from`/`to` bound its time",
                                spec.name,
                                names.join(", ")
                            )
                        })?;
                    let column = spec.columns[index];
                    let cell = typed(column.ty, value).map_err(|expected| {
                        format!("filter `{name}={value}`: expected {expected} (or `null`)")
                    })?;
                    filter.equals.push((index, cell));
                }
            }
        }
        if from.is_some() || to.is_some() {
            let index = spec
                .columns
                .iter()
                .position(|c| matches!(c.ty, ColumnType::Date | ColumnType::Timestamp))
                .ok_or_else(|| {
                    format!(
                        "table `{}` has no date or time column for `from`/`to`",
                        spec.name
                    )
                })?;
            let (from, to) = (from.unwrap_or(i64::MIN), to.unwrap_or(i64::MAX));
            if from > to {
                return Err("`from` is after `to`".to_string());
            }
            filter.range = Some((index, from, to));
        }
        Ok(filter)
    }

    /// Whether `row` passes.
    pub fn keeps(&self, row: &[Cell]) -> bool {
        if let Some((index, from, to)) = self.range {
            let at = match row[index] {
                Cell::Timestamp(ms) => ms,
                Cell::Date(days) => i64::from(days) * 86_400_000,
                _ => return false,
            };
            if at < from || at >= to {
                return false;
            }
        }
        self.equals
            .iter()
            .all(|(index, wanted)| row[*index] == *wanted)
    }
}

/// A `from`/`to` bound: a date `YYYY-MM-DD` (its midnight UTC) or an RFC 3339 instant.
fn bound(text: &str) -> Result<i64, String> {
    if let Ok(date) = NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        return Ok(date
            .and_hms_opt(0, 0, 0)
            .unwrap_or_default()
            .and_utc()
            .timestamp_millis());
    }
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.timestamp_millis())
        .map_err(|_| {
            format!(
                "`{text}` is not a date (YYYY-MM-DD) or an RFC 3339 instant (2025-07-12T00:20:00Z)"
            )
        })
}

/// The cell a filter value stands for in a column of type `ty`, or what was expected.
fn typed(ty: ColumnType, text: &str) -> Result<Cell, &'static str> {
    if text == "null" {
        return Ok(Cell::Null);
    }
    match ty {
        ColumnType::Str => Ok(Cell::Str(text.into())),
        ColumnType::Int => text.parse().map(Cell::Int).map_err(|_| "an integer"),
        ColumnType::Float => text.parse().map(Cell::Float).map_err(|_| "a number"),
        ColumnType::Bool => text.parse().map(Cell::Bool).map_err(|_| "true or false"),
        ColumnType::Date => NaiveDate::parse_from_str(text, "%Y-%m-%d")
            .map(|d| {
                Cell::Date(
                    (d.and_hms_opt(0, 0, 0)
                        .unwrap_or_default()
                        .and_utc()
                        .timestamp()
                        / 86_400) as i32,
                )
            })
            .map_err(|_| "a date YYYY-MM-DD"),
        ColumnType::Timestamp => DateTime::parse_from_rfc3339(text)
            .map(|t| Cell::Timestamp(t.timestamp_millis()))
            .map_err(|_| "an RFC 3339 instant"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tidemark_dataflows::model::tables::{DAILY_ACTIVE, ENGAGEMENT_BY_SEGMENT, WINDOW_ACTIVITY};

    fn params(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn cells_render_as_the_contract_says() {
        // 2025-07-12 is day 20281 since 1970-01-01; 00:20 is 1200 s after midnight.
        let midnight_ms = 20_281i64 * 86_400_000;
        assert_eq!(cell_json(&Cell::Date(20_281)), Value::from("2025-07-12"));
        assert_eq!(
            cell_json(&Cell::Timestamp(midnight_ms + 1_200_000)),
            Value::from("2025-07-12T00:20:00Z")
        );
        assert_eq!(
            cell_json(&Cell::Timestamp(midnight_ms + 1_500)),
            Value::from("2025-07-12T00:00:01.500Z")
        );
        assert_eq!(cell_json(&Cell::Float(f64::NAN)), Value::Null);
        assert_eq!(cell_json(&Cell::Int(7)), Value::from(7));
    }

    #[test]
    fn filters_bound_time_and_match_columns() {
        let filter = Filter::parse(
            &DAILY_ACTIVE,
            &params(&[("from", "2025-07-12"), ("to", "2025-07-14")]),
        )
        .unwrap();
        assert!(!filter.keeps(&[Cell::Date(20_280), Cell::Int(1)]));
        assert!(filter.keeps(&[Cell::Date(20_281), Cell::Int(1)]));
        assert!(filter.keeps(&[Cell::Date(20_282), Cell::Int(1)]));
        assert!(!filter.keeps(&[Cell::Date(20_283), Cell::Int(1)]));

        let filter = Filter::parse(
            &ENGAGEMENT_BY_SEGMENT,
            &params(&[("country", "US"), ("plan", "null")]),
        )
        .unwrap();
        let row = |country: &str, plan: Cell| {
            vec![
                Cell::Date(20_270),
                Cell::Str(country.into()),
                plan,
                Cell::Int(1),
                Cell::Int(1),
                Cell::Int(0),
            ]
        };
        assert!(filter.keeps(&row("US", Cell::Null)));
        assert!(!filter.keeps(&row("US", Cell::Str("paid".into()))));
        assert!(!filter.keeps(&row("DE", Cell::Null)));
    }

    #[test]
    fn bad_filters_say_what_is_wrong() {
        let error = Filter::parse(&WINDOW_ACTIVITY, &params(&[("country", "US")])).unwrap_err();
        assert!(
            error.contains("no column `country`") && error.contains("window_start"),
            "{error}"
        );
        let error = Filter::parse(&WINDOW_ACTIVITY, &params(&[("from", "yesterday")])).unwrap_err();
        assert!(error.contains("not a date"), "{error}");
        let error = Filter::parse(&WINDOW_ACTIVITY, &params(&[("events", "many")])).unwrap_err();
        assert!(error.contains("an integer"), "{error}");
        let error = Filter::parse(
            &DAILY_ACTIVE,
            &params(&[("from", "2025-07-14"), ("to", "2025-07-12")]),
        )
        .unwrap_err();
        assert!(error.contains("after"), "{error}");
    }
}
