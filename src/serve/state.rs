//! The served tables held in memory: current rows per table, kept current by applying
//! each completed logical time's changes, and the status line's facts.

use std::collections::BTreeMap;
use std::time::Instant;

use serde_json::{json, Map, Value};
use tidemark_dataflows::model::tables::{Cell, TableSpec, WINDOW_ACTIVITY};

use super::follow::Found;
use super::json::{instant_text, row_json};
use crate::runtime::run::WRITTEN_TABLES;

/// Current contents of every served table and what the status line shows.
pub struct Tables {
    /// Per table of [`WRITTEN_TABLES`], row -> multiplicity.
    rows: Vec<BTreeMap<Vec<Cell>, i64>>,
    completed: Option<u64>,
    max_ts: Option<i64>,
    allowed_lateness_ms: Option<i64>,
    /// Accepted events: the sum of `window_activity.events`.
    events: i64,
    last_advance: Option<Instant>,
    /// The last error met while reading the output, until a later read succeeds.
    pub error: Option<String>,
}

impl Default for Tables {
    fn default() -> Tables {
        Tables {
            rows: vec![BTreeMap::new(); WRITTEN_TABLES.len()],
            completed: None,
            max_ts: None,
            allowed_lateness_ms: None,
            events: 0,
            last_advance: None,
            error: None,
        }
    }
}

/// The column index of `events` in `window_activity`.
fn events_column() -> usize {
    WINDOW_ACTIVITY
        .columns
        .iter()
        .position(|c| c.name == "events")
        .unwrap_or(2)
}

impl Tables {
    /// Applies what a look at the output found; with `messages` (someone listens to
    /// `/api/changes`), returns one message (JSON) per newly completed time.
    pub fn apply(&mut self, found: Found, messages: bool) -> Vec<String> {
        if found.reset {
            *self = Tables::default();
        }
        self.allowed_lateness_ms = found.allowed_lateness_ms.or(self.allowed_lateness_ms);
        self.max_ts = found.max_ts.or(self.max_ts);
        if found.completed.is_some() && found.completed != self.completed {
            self.completed = found.completed;
            self.last_advance = Some(Instant::now());
        }
        let events = events_column();
        let wanted = messages;
        let mut messages = Vec::with_capacity(found.times.len());
        for time in found.times {
            let mut changed: BTreeMap<&'static str, Vec<Value>> = BTreeMap::new();
            for (index, row, diff) in time.rows {
                let spec = WRITTEN_TABLES[index];
                if spec.name == WINDOW_ACTIVITY.name {
                    if let Cell::Int(n) = row[events] {
                        self.events += n * diff;
                    }
                }
                if wanted {
                    changed
                        .entry(spec.name)
                        .or_default()
                        .push(row_json(&spec, &row, Some(diff)));
                }
                let table = &mut self.rows[index];
                match table.get_mut(&row) {
                    Some(count) => {
                        *count += diff;
                        if *count == 0 {
                            table.remove(&row);
                        }
                    }
                    None => {
                        table.insert(row, diff);
                    }
                }
            }
            let tables: Map<String, Value> = changed
                .into_iter()
                .map(|(name, rows)| (name.to_string(), Value::Array(rows)))
                .collect();
            if wanted {
                messages.push(json!({ "time": time.time, "tables": tables }).to_string());
            }
        }
        messages
    }

    /// The spec of a served table.
    pub fn spec(&self, name: &str) -> Option<(usize, TableSpec)> {
        WRITTEN_TABLES
            .iter()
            .position(|s| s.name == name)
            .map(|i| (i, WRITTEN_TABLES[i]))
    }

    /// Names of every served table.
    pub fn names(&self) -> Vec<&'static str> {
        WRITTEN_TABLES.iter().map(|s| s.name).collect()
    }

    /// Current rows of table `index` (a row with multiplicity n appears n times).
    pub fn rows(&self, index: usize) -> impl Iterator<Item = &Vec<Cell>> {
        self.rows[index]
            .iter()
            .flat_map(|(row, count)| std::iter::repeat_n(row, (*count).max(0) as usize))
    }

    /// `/api/tables`: name, rows and last completed time of every table.
    pub fn list(&self) -> Value {
        Value::Array(
            WRITTEN_TABLES
                .iter()
                .zip(&self.rows)
                .map(|(spec, rows)| {
                    let count: i64 = rows.values().map(|c| (*c).max(0)).sum();
                    json!({ "name": spec.name, "rows": count, "time": self.completed })
                })
                .collect(),
        )
    }

    /// `/api/status`: last completed time, watermark, accepted events, whether the
    /// output advanced in the last minute, and the last read error.
    pub fn status(&self, out: &std::path::Path) -> Value {
        let watermark = self
            .max_ts
            .zip(self.allowed_lateness_ms)
            .map(|(ts, lateness)| instant_text(ts - lateness));
        let running = self
            .last_advance
            .is_some_and(|at| at.elapsed().as_secs() < 60);
        let message = if self.completed.is_none() && self.error.is_none() {
            Some(format!(
                "no completed logical time in {} yet: start `tidemark run ... --out {}` and this page fills in as it writes",
                out.display(),
                out.display()
            ))
        } else {
            None
        };
        json!({
            "time": self.completed,
            "watermark": watermark,
            "events": self.events,
            "running": running,
            "out": out.display().to_string(),
            "message": message,
            "error": self.error,
        })
    }
}
