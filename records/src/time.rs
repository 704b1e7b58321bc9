//! Calendar helpers over epoch milliseconds: UTC days and months as the contract defines them.

use crate::records::Millis;

/// Milliseconds in one UTC day.
pub const DAY_MS: Millis = 86_400_000;

/// The earliest accepted instant: 1970-01-01T00:00:00Z.
pub const MIN_TS: Millis = 0;
/// The first instant past the accepted range: 2200-01-01T00:00:00Z. Event times
/// outside `[MIN_TS, MAX_TS)` are quarantined as `out_of_range`, so every derived day,
/// month and window fits its type without overflow.
pub const MAX_TS: Millis = 7_258_118_400_000;

/// Whether an instant read from input lies in the accepted range `[MIN_TS, MAX_TS)`.
pub fn in_range(ts: Millis) -> bool {
    (MIN_TS..MAX_TS).contains(&ts)
}

/// The UTC day of an instant, as days since 1970-01-01 (Arrow/Parquet DATE32).
pub fn day_of(ts: Millis) -> i32 {
    ts.div_euclid(DAY_MS) as i32
}

/// The first instant of a UTC day.
pub fn day_start(day: i32) -> Millis {
    day as Millis * DAY_MS
}

/// The UTC month of an instant, as months since 1970-01 (0 = January 1970).
pub fn month_of(ts: Millis) -> i32 {
    month_of_day(day_of(ts))
}

/// The month index (months since 1970-01) of a day.
pub fn month_of_day(day: i32) -> i32 {
    let (y, m, _) = civil_from_days(day);
    (y - 1970) * 12 + (m as i32 - 1)
}

/// The first day (DATE32) of a month index, which is how the contract writes a month.
pub fn month_first_day(month: i32) -> i32 {
    let y = 1970 + month.div_euclid(12);
    let m = month.rem_euclid(12) as u32 + 1;
    days_from_civil(y, m, 1)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
pub fn days_from_civil(y: i32, m: u32, d: u32) -> i32 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = (y - era * 400) as u32;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe as i32 - 719_468
}

/// The (year, month, day) of a day number (inverse of [`days_from_civil`]).
pub fn civil_from_days(z: i32) -> (i32, u32, u32) {
    let z = z + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = (z - era * 146_097) as u32;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe as i32 + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_and_months_round_trip() {
        for day in -800..30_000 {
            let (y, m, d) = civil_from_days(day);
            assert_eq!(days_from_civil(y, m, d), day);
            let month = month_of_day(day);
            let first = month_first_day(month);
            assert!(first <= day && day - first < 31);
            assert_eq!(civil_from_days(first).2, 1);
        }
        assert_eq!(days_from_civil(2025, 7, 12), 20_281);
        assert_eq!(month_of(day_start(20_281) + 5), (2025 - 1970) * 12 + 6);
        assert_eq!(day_of(-1), -1);
    }

    #[test]
    fn accepted_range_is_1970_to_2199() {
        assert_eq!(MAX_TS, day_start(days_from_civil(2200, 1, 1)));
        assert!(in_range(0) && in_range(MAX_TS - 1));
        assert!(!in_range(-1) && !in_range(MAX_TS) && !in_range(i64::MAX) && !in_range(i64::MIN));
    }
}
