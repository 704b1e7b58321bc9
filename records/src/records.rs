//! The typed rows of the contract's input tables, as tidemark holds them after
//! mapping and validation. Every reader produces these; every dataflow consumes them.

use serde::{Deserialize, Serialize};

/// An identifier's text as readers produce it: held in place up to 24 bytes (every id
/// of the data sets tidemark has seen), so reading an event allocates nothing for its
/// ids, and moving it moves no pointer to chase.
pub type Id = compact_str::CompactString;

/// Milliseconds since the Unix epoch, UTC. All instants inside tidemark use it.
pub type Millis = i64;

/// One accepted-or-candidate user action (`events/`), after mapping and validation.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Event {
    /// Unique per action; repeats are duplicates and count once.
    pub event_id: Id,
    /// Non-empty user key.
    pub user_id: Id,
    /// Event time.
    pub ts: Millis,
    /// Lower-cased, trimmed action name (`play`, `skip`, ...).
    pub event_type: Id,
    /// The track, show or page acted on.
    pub item_id: Option<Id>,
    /// Time spent, 0..=7_200_000 when present.
    pub duration_ms: Option<i64>,
    /// A session given by the source, if any.
    pub session_id: Option<Id>,
    /// A measure of the action given by the source (a rating, a score), if any.
    pub value: Option<Measure>,
}

/// A finite double that is `Eq`, `Ord` and `Hash` (by `total_cmp` and its bits), so
/// that rows holding one can be keys. Readers accept only finite values.
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
pub struct Measure(pub f64);

impl PartialEq for Measure {
    fn eq(&self, other: &Self) -> bool {
        self.0.to_bits() == other.0.to_bits()
    }
}

impl Eq for Measure {}

impl PartialOrd for Measure {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Measure {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.total_cmp(&other.0)
    }
}

impl std::hash::Hash for Measure {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.0.to_bits().hash(state)
    }
}

/// The largest magnitude of a valid event `value`.
pub const MAX_VALUE: f64 = 1.0e9;

impl Event {
    /// The event as a one-line JSON object in contract column names: the `raw` text of
    /// a quarantine row for an event rejected after parsing (e.g. `too_late`).
    pub fn raw_json(&self) -> String {
        let ts = chrono::DateTime::from_timestamp_millis(self.ts)
            .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
            .unwrap_or_else(|| self.ts.to_string());
        serde_json::json!({
            "event_id": self.event_id,
            "user_id": self.user_id,
            "ts": ts,
            "event_type": self.event_type,
            "item_id": self.item_id,
            "duration_ms": self.duration_ms,
            "session_id": self.session_id,
            "value": self.value.map(|v| v.0),
        })
        .to_string()
    }
}

/// A customer's plan after mapping: the contract allows exactly these two.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Plan {
    /// The free tier.
    Free,
    /// Any paying tier.
    Paid,
}

impl Plan {
    /// Parses a mapped plan value; only `free` and `paid` (any case, trimmed) are valid.
    pub fn parse(text: &str) -> Option<Plan> {
        match text.trim().to_ascii_lowercase().as_str() {
            "free" => Some(Plan::Free),
            "paid" => Some(Plan::Paid),
            _ => None,
        }
    }

    /// The contract's spelling of the plan.
    pub fn as_str(self) -> &'static str {
        match self {
            Plan::Free => "free",
            Plan::Paid => "paid",
        }
    }
}

/// One customer (`users/`); a later file's row for the same user replaces the earlier one.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct UserRow {
    /// Key.
    pub user_id: String,
    /// When the customer signed up, if known.
    pub signup_ts: Option<Millis>,
    /// Country, if known.
    pub country: Option<String>,
    /// Plan in the users table (overridden by `subscriptions/` where present).
    pub plan: Plan,
    /// User attributes brought in by the mapping (`[users.columns] age_group = ...`),
    /// by name in name order; a null value is `None`.
    #[serde(default)]
    pub attributes: Vec<(String, Option<String>)>,
}

/// A plan change (`subscriptions/`): `plan` is in force for `user_id` from `ts` on.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Subscription {
    /// The customer.
    pub user_id: String,
    /// From when the plan is in force.
    pub ts: Millis,
    /// The plan in force from `ts`.
    pub plan: Plan,
}

/// A catalogue entry (`items/`).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Item {
    /// Key.
    pub item_id: String,
    /// Artist, if known.
    pub artist_id: Option<String>,
    /// Genre, if known.
    pub genre: Option<String>,
    /// Title, if known.
    pub title: Option<String>,
    /// Length of the item, if known.
    pub duration_ms: Option<i64>,
}

/// A row (or whole file, with `row == 0`) that broke a rule of the contract.
/// Rows are numbered from 1 in the order the file holds them (header excluded).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct QuarantineRow {
    /// The file, as a path relative to the dataset directory.
    pub file: String,
    /// 1-based data row number; 0 when the whole file was quarantined.
    pub row: u64,
    /// The offending contract field (or source column), empty when not one field.
    pub field: String,
    /// Short machine-readable reason, e.g. `missing_value`, `bad_timestamp`, `too_late`.
    pub reason: String,
    /// The raw row text (or an error message for a whole file).
    pub raw: String,
}

/// Everything one input file contributed: one logical time's worth of rows.
/// A file may feed several tables (e.g. events and subscriptions from one log).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct FileBatch {
    /// Valid event rows in file order (not yet checked for lateness or duplicates).
    pub events: Vec<Event>,
    /// The 1-based file row number of each entry of `events` (same length).
    pub event_rows: Vec<u64>,
    /// Valid users rows in file order.
    pub users: Vec<UserRow>,
    /// Valid subscription rows in file order.
    pub subscriptions: Vec<Subscription>,
    /// Valid items rows in file order.
    pub items: Vec<Item>,
    /// Rows (or the whole file) that broke a rule.
    pub quarantine: Vec<QuarantineRow>,
    /// Data rows (or non-blank lines) the file held, whatever became of them: the
    /// total the run's summary accounts for.
    pub rows_read: u64,
    /// Rows that no table's `[<table>.filter]` of the mapping let through.
    pub rows_filtered: u64,
    /// Rows that broke a rule: listed in `quarantine` or counted past the cap.
    pub rows_rejected: u64,
    /// How many rule-breaking rows are listed before the rest are only counted.
    #[serde(skip)]
    pub bad_rows: BadRows,
}

/// The default of `--max-bad-rows`: rule-breaking rows listed per file.
pub const DEFAULT_MAX_BAD_ROWS: usize = 1_000_000;

/// The cap on the quarantine rows one file lists, so that a small file of junk (8 MB
/// of gzip can hold millions of bad lines) cannot flood memory, as Spark's
/// `maxBadRecords` and Flink's error limits bound it. Rows beyond the cap are counted
/// and reported by one `too_many_bad_rows` row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BadRows {
    /// Rows listed at most (`usize::MAX`: no cap).
    pub limit: usize,
    /// Rows counted beyond the cap.
    pub beyond: u64,
    /// The file (or live source) and row of the first of them.
    pub first_beyond: Option<(String, u64)>,
}

impl Default for BadRows {
    fn default() -> BadRows {
        BadRows::with_limit(DEFAULT_MAX_BAD_ROWS)
    }
}

impl BadRows {
    /// A cap of `limit` rows; 0 means no cap.
    pub fn with_limit(limit: usize) -> BadRows {
        BadRows {
            limit: if limit == 0 { usize::MAX } else { limit },
            beyond: 0,
            first_beyond: None,
        }
    }
}

impl FileBatch {
    /// Quarantines a row that broke a rule: listed while the file is under its cap of
    /// listed rows (see [`BadRows`]), counted after that.
    pub fn reject(&mut self, row: QuarantineRow) {
        self.rows_rejected += 1;
        if self.quarantine.len() < self.bad_rows.limit {
            self.quarantine.push(row);
        } else {
            self.bad_rows.beyond += 1;
            self.bad_rows
                .first_beyond
                .get_or_insert((row.file, row.row));
        }
    }

    /// Adds the one row that stands for the rows counted beyond the cap, if any.
    pub fn close_bad_rows(&mut self) {
        let Some((file, first)) = self.bad_rows.first_beyond.take() else {
            return;
        };
        let beyond = std::mem::take(&mut self.bad_rows.beyond);
        self.quarantine.push(QuarantineRow {
            file,
            row: first,
            field: String::new(),
            reason: "too_many_bad_rows".to_string(),
            raw: format!(
                "{beyond} more rows of this file, from row {first} on, broke a rule after {} were listed; they are counted here, not listed (raise --max-bad-rows to list more)",
                self.bad_rows.limit
            ),
        });
    }
}
