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

/// Each table's spec lives beside its row type in its metric module (`crate::metrics`);
/// the quarantine's is below. Re-exported here so that sinks, readers and oracles
/// name every table in one place.
pub use crate::metrics::{
    actives::DAILY_ACTIVE, actives::MONTHLY_ACTIVE,
    engagement_by_dimension::ENGAGEMENT_BY_DIMENSION, engagement_by_segment::ENGAGEMENT_BY_SEGMENT,
    event_mix::EVENT_MIX_DAILY, event_mix::SKIP_RATE_DAILY, feature_adoption::FEATURE_ADOPTION,
    kpis::KPIS, retention_cohorts::RETENTION_COHORTS, session_metrics_daily::SESSION_METRICS_DAILY,
    sessions::SESSIONS, spike_alerts::SPIKE_ALERTS, user_facts::USER_ACTIVITY_DAILY,
    user_facts::USER_PLANS, window_activity::WINDOW_ACTIVITY,
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

/// Looks a written table up by name (the list is [`crate::for_each_table!`]).
pub fn table_spec(name: &str) -> Option<TableSpec> {
    crate::dataflow::WRITTEN_TABLES
        .iter()
        .copied()
        .find(|t| t.name == name)
}

/// One value of an output row. Floats compare by bit pattern so rows can be keys;
/// use [`Cell::approx_eq`] to compare computed measures.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum Cell {
    /// SQL NULL.
    Null,
    /// A string: an id's text is the [`crate::model::name::Name`] registry's own,
    /// borrowed (not a copy per output row, nor a shared reference count).
    Str(crate::model::name::Text),
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
        value.map_or(Cell::Null, |s| Cell::Str(s.into()))
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

/// Hashes what [`Ord`] compares: the variant and its value, floats by their bits (equal
/// floats under `total_cmp` have equal bits), so equal cells hash alike.
impl std::hash::Hash for Cell {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.rank().hash(state);
        match self {
            Cell::Null => {}
            Cell::Str(s) => s.hash(state),
            Cell::Int(v) | Cell::Timestamp(v) => v.hash(state),
            Cell::Float(v) => v.to_bits().hash(state),
            Cell::Bool(v) => v.hash(state),
            Cell::Date(v) => v.hash(state),
        }
    }
}

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
                let (y, m, d) = tidemark_records::time::civil_from_days(day as i32);
                write!(
                    f,
                    "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}",
                    rest / 3600,
                    rest / 60 % 60,
                    rest % 60
                )
            }
            Cell::Date(day) => {
                let (y, m, d) = tidemark_records::time::civil_from_days(*day);
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
