//! The contract's output tables as code: names, key columns, column types, and a
//! dynamically typed cell so that sinks, readers and oracles share one row shape.

use serde::{Deserialize, Serialize};

/// The logical type of an output column, mapped to Arrow/Parquet by the sinks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ColumnType {
    /// UTF-8 string.
    Str,
    /// int64 (counts).
    Int,
    /// double (measures, percentages, rates).
    Float,
    /// boolean.
    Bool,
    /// TIMESTAMP(ms, UTC) (instants).
    Timestamp,
    /// DATE (days; a month is its first day).
    Date,
}

/// One column of an output table.
#[derive(Clone, Copy, Debug)]
pub struct Column {
    /// Contract name.
    pub name: &'static str,
    /// Logical type.
    pub ty: ColumnType,
    /// Whether null is allowed.
    pub nullable: bool,
}

/// A column that is never null.
pub const fn col(name: &'static str, ty: ColumnType) -> Column {
    Column {
        name,
        ty,
        nullable: false,
    }
}

/// A nullable column.
pub const fn opt(name: &'static str, ty: ColumnType) -> Column {
    Column {
        name,
        ty,
        nullable: true,
    }
}

/// An output table: its name, its columns (key columns first) and how many form the key.
#[derive(Clone, Copy, Debug)]
pub struct TableSpec {
    /// Directory name under `OUT/changes/` and `OUT/tables/`.
    pub name: &'static str,
    /// Columns in contract order, key columns first.
    pub columns: &'static [Column],
    /// The first `key_len` columns form the table's key.
    pub key_len: usize,
}

use ColumnType::*;

/// `sessions`: one row per session.
pub const SESSIONS: TableSpec = TableSpec {
    name: "sessions",
    columns: &[
        col("user_id", Str),
        col("session_start", Timestamp),
        opt("session_id", Str),
        col("session_end", Timestamp),
        col("duration_s", Float),
        col("actions", Int),
    ],
    key_len: 2,
};

/// `window_activity`: one row per window with at least one accepted event.
pub const WINDOW_ACTIVITY: TableSpec = TableSpec {
    name: "window_activity",
    columns: &[
        col("window_start", Timestamp),
        col("window_end", Timestamp),
        col("events", Int),
        col("active_users", Int),
        col("sessions_started", Int),
        col("sessions_per_min", Float),
    ],
    key_len: 1,
};

/// `spike_alerts`: one row per `window_activity` row.
pub const SPIKE_ALERTS: TableSpec = TableSpec {
    name: "spike_alerts",
    columns: &[
        col("window_start", Timestamp),
        col("sessions_started", Int),
        opt("recent_avg", Float),
        opt("recent_p95", Float),
        col("spike", Bool),
        opt("alert", Bool),
        opt("alert_baseline", Float),
        opt("alert_threshold", Float),
    ],
    key_len: 1,
};

/// `daily_active`: DAU per UTC day.
pub const DAILY_ACTIVE: TableSpec = TableSpec {
    name: "daily_active",
    columns: &[col("day", Date), col("dau", Int)],
    key_len: 1,
};

/// `monthly_active`: MAU, mean DAU and stickiness per UTC month.
pub const MONTHLY_ACTIVE: TableSpec = TableSpec {
    name: "monthly_active",
    columns: &[
        col("month", Date),
        col("mau", Int),
        col("avg_dau", Float),
        col("stickiness", Float),
    ],
    key_len: 1,
};

/// `retention_cohorts`: cohort month x months since first activity.
pub const RETENTION_COHORTS: TableSpec = TableSpec {
    name: "retention_cohorts",
    columns: &[
        col("cohort_month", Date),
        col("months_since", Int),
        col("cohort_size", Int),
        col("active_users", Int),
        col("retention", Float),
    ],
    key_len: 2,
};

/// `kpis`: one row per metric.
pub const KPIS: TableSpec = TableSpec {
    name: "kpis",
    columns: &[col("metric", Str), col("value", Float)],
    key_len: 1,
};

/// `session_metrics_daily`: per day of session start.
pub const SESSION_METRICS_DAILY: TableSpec = TableSpec {
    name: "session_metrics_daily",
    columns: &[
        col("day", Date),
        col("sessions", Int),
        col("avg_duration_s", Float),
        col("avg_actions", Float),
    ],
    key_len: 1,
};

/// `event_mix_daily`: events per type per day and their share.
pub const EVENT_MIX_DAILY: TableSpec = TableSpec {
    name: "event_mix_daily",
    columns: &[
        col("day", Date),
        col("event_type", Str),
        col("events", Int),
        col("share", Float),
    ],
    key_len: 2,
};

/// `skip_rate_daily` (beyond the contract): skips per play per day, a row for each day
/// with plays. Not in [`ALL_TABLES`], which lists the contract's tables; see
/// [`EXTRA_TABLES`].
pub const SKIP_RATE_DAILY: TableSpec = TableSpec {
    name: "skip_rate_daily",
    columns: &[
        col("day", Date),
        col("skips", Int),
        col("plays", Int),
        col("skip_rate", Float),
    ],
    key_len: 1,
};

/// `engagement_by_dimension`: day x dimension x member (contract "Dimensions"), with
/// `value_count` (how many events had a value) beyond the contract, so that means
/// re-aggregate exactly over several days.
pub const ENGAGEMENT_BY_DIMENSION: TableSpec = TableSpec {
    name: "engagement_by_dimension",
    columns: &[
        col("day", Date),
        col("dimension", Str),
        opt("member", Str),
        col("active_users", Int),
        col("events", Int),
        col("total_duration_ms", Int),
        opt("avg_value", Float),
        col("value_count", Int),
    ],
    key_len: 3,
};

/// `user_activity_daily` (beyond the contract): one row per user and UTC day with
/// accepted events; `tidemark predict` reads its features and labels from it. See
/// [`EXTRA_TABLES`].
pub const USER_ACTIVITY_DAILY: TableSpec = TableSpec {
    name: "user_activity_daily",
    columns: &[
        col("user_id", Str),
        col("day", Date),
        col("events", Int),
        col("plays", Int),
        col("skips", Int),
        col("sessions", Int),
        col("session_duration_s", Float),
    ],
    key_len: 2,
};

/// `user_plans` (beyond the contract): each user's plan history, the `users/` row's
/// plan with a null `valid_from`, then every instant the plan in force changes;
/// `tidemark predict` reads "paid at the cutoff" from it. See [`EXTRA_TABLES`].
pub const USER_PLANS: TableSpec = TableSpec {
    name: "user_plans",
    columns: &[
        col("user_id", Str),
        opt("valid_from", Timestamp),
        col("plan", Str),
    ],
    key_len: 2,
};

/// `feature_adoption`: per day and event type.
pub const FEATURE_ADOPTION: TableSpec = TableSpec {
    name: "feature_adoption",
    columns: &[
        col("day", Date),
        col("event_type", Str),
        col("new_adopters", Int),
        col("adopters_to_date", Int),
        col("adoption_pct", Float),
    ],
    key_len: 2,
};

/// `engagement_by_segment`: month x country x plan.
pub const ENGAGEMENT_BY_SEGMENT: TableSpec = TableSpec {
    name: "engagement_by_segment",
    columns: &[
        col("month", Date),
        opt("country", Str),
        opt("plan", Str),
        col("active_users", Int),
        col("events", Int),
        col("total_duration_ms", Int),
    ],
    key_len: 3,
};

/// `quarantine`: rows and files that broke a rule.
pub const QUARANTINE: TableSpec = TableSpec {
    name: "quarantine",
    columns: &[
        col("file", Str),
        col("row", Int),
        col("field", Str),
        col("reason", Str),
        col("raw", Str),
    ],
    key_len: 2,
};

/// Every table of the contract, in the order a person reads them.
pub const ALL_TABLES: &[TableSpec] = &[
    SESSIONS,
    WINDOW_ACTIVITY,
    SPIKE_ALERTS,
    DAILY_ACTIVE,
    MONTHLY_ACTIVE,
    RETENTION_COHORTS,
    KPIS,
    SESSION_METRICS_DAILY,
    EVENT_MIX_DAILY,
    FEATURE_ADOPTION,
    ENGAGEMENT_BY_SEGMENT,
    ENGAGEMENT_BY_DIMENSION,
    QUARANTINE,
];

/// Tables tidemark writes beyond the contract's (not in [`ALL_TABLES`]).
pub const EXTRA_TABLES: &[TableSpec] = &[SKIP_RATE_DAILY, USER_ACTIVITY_DAILY, USER_PLANS];

/// Looks a table up by name, among the contract's tables and the extra ones.
pub fn table_spec(name: &str) -> Option<TableSpec> {
    ALL_TABLES
        .iter()
        .chain(EXTRA_TABLES)
        .copied()
        .find(|t| t.name == name)
}

/// One value of an output row. Floats compare by bit pattern so rows can be keys;
/// use [`Cell::approx_eq`] to compare computed measures.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum Cell {
    /// SQL NULL.
    Null,
    /// A string.
    Str(String),
    /// An int64.
    Int(i64),
    /// A double.
    Float(f64),
    /// A boolean.
    Bool(bool),
    /// An instant, epoch milliseconds UTC.
    Timestamp(i64),
    /// A date, days since 1970-01-01.
    Date(i32),
}

impl Cell {
    fn rank(&self) -> u8 {
        match self {
            Cell::Null => 0,
            Cell::Str(_) => 1,
            Cell::Int(_) => 2,
            Cell::Float(_) => 3,
            Cell::Bool(_) => 4,
            Cell::Timestamp(_) => 5,
            Cell::Date(_) => 6,
        }
    }

    /// Equality with a relative tolerance of 1e-9 on floats (measures are computed
    /// in different orders by different engines).
    pub fn approx_eq(&self, other: &Cell) -> bool {
        match (self, other) {
            (Cell::Float(a), Cell::Float(b)) => {
                a == b || (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0)
            }
            _ => self == other,
        }
    }

    /// An optional string as a cell.
    pub fn opt_str(value: Option<&str>) -> Cell {
        value.map_or(Cell::Null, |s| Cell::Str(s.to_string()))
    }

    /// An optional double as a cell.
    pub fn opt_float(value: Option<f64>) -> Cell {
        value.map_or(Cell::Null, Cell::Float)
    }
}

impl PartialEq for Cell {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == std::cmp::Ordering::Equal
    }
}

impl Eq for Cell {}

impl PartialOrd for Cell {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Cell {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        use Cell::*;
        match (self, other) {
            (Str(a), Str(b)) => a.cmp(b),
            (Int(a), Int(b)) => a.cmp(b),
            (Float(a), Float(b)) => a.total_cmp(b),
            (Bool(a), Bool(b)) => a.cmp(b),
            (Timestamp(a), Timestamp(b)) => a.cmp(b),
            (Date(a), Date(b)) => a.cmp(b),
            _ => self.rank().cmp(&other.rank()),
        }
    }
}

impl std::fmt::Display for Cell {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Cell::Null => write!(f, "null"),
            Cell::Str(s) => write!(f, "{s}"),
            Cell::Int(v) => write!(f, "{v}"),
            Cell::Float(v) => write!(f, "{v:.4}"),
            Cell::Bool(v) => write!(f, "{v}"),
            Cell::Timestamp(ms) => {
                let day = ms.div_euclid(86_400_000);
                let rest = ms.rem_euclid(86_400_000) / 1000;
                let (y, m, d) = tidemark_inputs::time::civil_from_days(day as i32);
                write!(
                    f,
                    "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}",
                    rest / 3600,
                    rest / 60 % 60,
                    rest % 60
                )
            }
            Cell::Date(day) => {
                let (y, m, d) = tidemark_inputs::time::civil_from_days(*day);
                write!(f, "{y:04}-{m:02}-{d:02}")
            }
        }
    }
}

/// A typed output row that knows its table and can be written as cells.
pub trait TableRow {
    /// The table this row belongs to.
    const SPEC: TableSpec;
    /// The row's values in the spec's column order.
    fn cells(&self) -> Vec<Cell>;
}
