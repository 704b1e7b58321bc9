//! Where a table's Delta table lives and how its rows are laid out in buckets, one
//! bucket a data file: the part of the Delta sink that neither delta-rs nor the
//! dataflow needs to know about.

use std::path::{Path, PathBuf};

use deltalake::kernel::DataType as DeltaType;
use tidemark_dataflows::model::tables::{
    Cell, ColumnType, TableSpec, ENGAGEMENT_BY_DIMENSION, SESSIONS, USER_ACTIVITY_DAILY,
};

pub const HASH_BUCKETS: u64 = 16;

/// Width of a bucket of a time-keyed table, in days (see [`bucket_days`]).
pub const DATE_BUCKET_DAYS: i32 = 31;

/// The time-keyed tables with a row per day (or session) *and* user or member: laid
/// out a day a bucket, so that a commit of recent days rewrites those days, not the
/// 31-day blocks around them (at 1M events, `engagement_by_dimension` has about 3,000
/// rows a day, `sessions` about 2,000). The other time-keyed tables have few rows a
/// day (`window_activity` and `spike_alerts` one per 5-minute window, whatever the
/// number of events; `user_plans` one per plan change) and keep the blocks, which
/// spares them a tiny file a day: fewer files to create, list and read.
const DAY_BUCKETED: [&str; 3] = [
    USER_ACTIVITY_DAILY.name,
    ENGAGEMENT_BY_DIMENSION.name,
    SESSIONS.name,
];

/// Width of the buckets of a time-keyed table, in days: 1 for the tables of
/// [`DAY_BUCKETED`], else [`DATE_BUCKET_DAYS`].
pub fn bucket_days(spec: &TableSpec) -> i32 {
    if DAY_BUCKETED.contains(&spec.name) {
        1
    } else {
        DATE_BUCKET_DAYS
    }
}

/// The directory of a table's Delta table.
pub fn delta_dir(out: &Path, table: &str) -> PathBuf {
    out.join("tables").join(table)
}

/// The Delta `txn` application id of a table's commits.
pub fn app_id(table: &str) -> String {
    format!("tidemark-{table}")
}

/// The Delta type of a contract column type.
pub fn delta_type(ty: ColumnType) -> DeltaType {
    match ty {
        ColumnType::Str => DeltaType::STRING,
        ColumnType::Int => DeltaType::LONG,
        ColumnType::Float => DeltaType::DOUBLE,
        ColumnType::Bool => DeltaType::BOOLEAN,
        ColumnType::Timestamp => DeltaType::TIMESTAMP,
        ColumnType::Date => DeltaType::DATE,
    }
}

/// The bucket of a row, the same in every run and process: the [`bucket_days`]-day
/// block (of UTC days) of the table's first instant or date key column, or else a hash of its first key column into [`HASH_BUCKETS`] (so all rows of
/// one quarantined file share a bucket).
pub fn bucket_of(spec: &TableSpec, row: &[Cell]) -> i64 {
    let key = &spec.columns[..spec.key_len.min(spec.columns.len())];
    let time_key = key
        .iter()
        .position(|c| matches!(c.ty, ColumnType::Timestamp | ColumnType::Date));
    match time_key.map(|index| &row[index]) {
        Some(Cell::Timestamp(ms)) => ms
            .div_euclid(86_400_000)
            .div_euclid(i64::from(bucket_days(spec))),
        Some(Cell::Date(day)) => i64::from(day.div_euclid(bucket_days(spec))),
        Some(_) => i64::MIN,
        None => {
            let mut bytes = Vec::with_capacity(32);
            match row.first() {
                Some(Cell::Str(s)) => bytes.extend_from_slice(s.as_bytes()),
                Some(Cell::Int(v)) => bytes.extend_from_slice(&v.to_le_bytes()),
                Some(Cell::Float(v)) => bytes.extend_from_slice(&v.to_bits().to_le_bytes()),
                Some(Cell::Bool(v)) => bytes.push(u8::from(*v)),
                Some(Cell::Timestamp(v)) => bytes.extend_from_slice(&v.to_le_bytes()),
                Some(Cell::Date(v)) => bytes.extend_from_slice(&v.to_le_bytes()),
                Some(Cell::Null) | None => {}
            }
            (xxhash_rust::xxh3::xxh3_64(&bytes) % HASH_BUCKETS) as i64
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use tidemark_dataflows::model::tables::{DAILY_ACTIVE, QUARANTINE, WINDOW_ACTIVITY};

    #[test]
    fn buckets_follow_time_keys_else_a_hash_of_the_first_key_column() {
        let day_ms = 86_400_000;
        let day = |d: i32, n: i64| vec![Cell::Date(d), Cell::Int(n)];
        let s = |start: i64| vec![Cell::Str("u".into()), Cell::Timestamp(start)];
        assert_eq!(bucket_of(&SESSIONS, &s(3 * day_ms)), 3);
        assert_eq!(bucket_of(&SESSIONS, &s(4 * day_ms - 1)), 3);
        assert_eq!(bucket_of(&SESSIONS, &s(-1)), -1);
        assert_eq!(bucket_of(&DAILY_ACTIVE, &day(30, 1)), 0);
        assert_eq!(bucket_of(&DAILY_ACTIVE, &day(31, 1)), 1);
        let user_day = |d: i32| vec![Cell::Str("u".into()), Cell::Date(d), Cell::Int(1)];
        assert_eq!(bucket_of(&USER_ACTIVITY_DAILY, &user_day(30)), 30);
        assert_eq!(bucket_of(&USER_ACTIVITY_DAILY, &user_day(-1)), -1);
        let window = |start: i64| vec![Cell::Timestamp(start)];
        assert_eq!(bucket_of(&WINDOW_ACTIVITY, &window(30 * day_ms)), 0);
        assert_eq!(bucket_of(&WINDOW_ACTIVITY, &window(31 * day_ms)), 1);
        assert_eq!(bucket_of(&WINDOW_ACTIVITY, &window(-1)), -1);
        let q = |file: &str, row: i64| vec![Cell::Str(file.into()), Cell::Int(row)];
        assert_eq!(
            bucket_of(&QUARANTINE, &q("a.csv", 1)),
            bucket_of(&QUARANTINE, &q("a.csv", 9))
        );
        let hashed: BTreeSet<i64> = (0..100)
            .map(|i| bucket_of(&QUARANTINE, &q(&format!("f{i}"), 0)))
            .collect();
        assert!(hashed.len() > 8 && hashed.iter().all(|b| (0..HASH_BUCKETS as i64).contains(b)));
    }
}
