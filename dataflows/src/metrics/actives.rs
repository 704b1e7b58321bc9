//! Daily and monthly active users (contract `daily_active`, `monthly_active`).

use differential_dataflow::VecCollection;
use serde::{Deserialize, Serialize};
use tidemark_records::time::{month_first_day, month_of_day};

use crate::model::name::Name;
use crate::model::tables::{col, Cell, ColumnType, TableRow, TableSpec};
use crate::operators::gate::Time;
use crate::operators::reduce::HashReduce;
use crate::operators::totals::HashTotals;

/// `daily_active` from the distinct (user, day) pairs with an accepted event.
pub fn daily_active<'s>(
    user_days: VecCollection<'s, Time, (Name, i32)>,
) -> VecCollection<'s, Time, DailyActiveRow> {
    user_days
        .map(|(_user, day)| day)
        .count_by_hash()
        .map(|(day, dau)| DailyActiveRow {
            day,
            dau: dau as i64,
        })
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
enum MonthPart {
    Mau(i64),
    Day(i32, i64),
}

/// `monthly_active` from distinct (user, month) pairs and the `daily_active` rows:
/// MAU, the mean DAU over the month's active days, and stickiness.
pub fn monthly_active<'s>(
    user_months: VecCollection<'s, Time, (Name, i32)>,
    daily: VecCollection<'s, Time, DailyActiveRow>,
) -> VecCollection<'s, Time, MonthlyActiveRow> {
    let mau = user_months
        .map(|(_user, month)| month)
        .count_by_hash()
        .map(|(month, mau)| (month, MonthPart::Mau(mau as i64)));
    daily
        .map(|row| (month_of_day(row.day), MonthPart::Day(row.day, row.dau)))
        .concat(mau)
        .reduce_by_hash("MonthlyActive", |&month, parts, output| {
            let mut row = MonthlyActiveRow {
                month,
                mau: 0,
                dau_sum: 0,
                active_days: 0,
            };
            for (part, _count) in parts {
                match part {
                    MonthPart::Mau(n) => row.mau = *n,
                    MonthPart::Day(_, dau) => {
                        row.dau_sum += dau;
                        row.active_days += 1;
                    }
                }
            }
            if row.mau > 0 && row.active_days > 0 {
                output.push((row, 1isize));
            }
        })
        .map(|(_, row)| row)
}

/// `daily_active`: DAU per UTC day.
pub const DAILY_ACTIVE: TableSpec = TableSpec {
    name: "daily_active",
    columns: &[col("day", ColumnType::Date), col("dau", ColumnType::Int)],
    key_len: 1,
};

/// `monthly_active`: MAU, mean DAU and stickiness per UTC month.
pub const MONTHLY_ACTIVE: TableSpec = TableSpec {
    name: "monthly_active",
    columns: &[
        col("month", ColumnType::Date),
        col("mau", ColumnType::Int),
        col("avg_dau", ColumnType::Float),
        col("stickiness", ColumnType::Float),
    ],
    key_len: 1,
};

/// Daily active users of one UTC day.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct DailyActiveRow {
    /// Days since 1970-01-01.
    pub day: i32,
    /// Distinct active users.
    pub dau: i64,
}

impl TableRow for DailyActiveRow {
    const SPEC: TableSpec = DAILY_ACTIVE;
    fn cells(&self) -> Vec<Cell> {
        vec![Cell::Date(self.day), Cell::Int(self.dau)]
    }
}

/// Monthly actives of one UTC month.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct MonthlyActiveRow {
    /// Months since 1970-01.
    pub month: i32,
    /// Distinct active users in the month.
    pub mau: i64,
    /// Sum of `dau` over the month's days that have a `daily_active` row.
    pub dau_sum: i64,
    /// Number of such days.
    pub active_days: i64,
}

impl TableRow for MonthlyActiveRow {
    const SPEC: TableSpec = MONTHLY_ACTIVE;
    fn cells(&self) -> Vec<Cell> {
        let avg_dau = self.dau_sum as f64 / self.active_days as f64;
        vec![
            Cell::Date(month_first_day(self.month)),
            Cell::Int(self.mau),
            Cell::Float(avg_dau),
            Cell::Float(avg_dau / self.mau as f64),
        ]
    }
}
