//! Parsing of event times in the forms the contract accepts, into epoch milliseconds.

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};

use chrono::{DateTime, NaiveDate, NaiveDateTime, Timelike};

use crate::records::Millis;

/// How many times read in this process had digits below the millisecond. tidemark
/// keeps instants to the millisecond (the contract's text and integer forms carry no
/// more), so a microsecond or nanosecond part is floored; a run says how often, rather
/// than do it silently.
static SUB_MILLISECOND: AtomicU64 = AtomicU64::new(0);

/// A thread's floored times not yet added to [`SUB_MILLISECOND`]: on data with
/// microseconds every row counts, and one shared counter bumped by every reading
/// thread per row would bounce between cores. Added when it reaches
/// [`FLUSH_EVERY`] and when the thread ends.
struct Unflushed(Cell<u64>);

impl Drop for Unflushed {
    fn drop(&mut self) {
        SUB_MILLISECOND.fetch_add(self.0.get(), Ordering::Relaxed);
    }
}

thread_local! {
    static UNFLUSHED: Unflushed = const { Unflushed(Cell::new(0)) };
}

/// How many floored times a thread counts before adding them to the shared count.
const FLUSH_EVERY: u64 = 4096;

/// Counts one time floored to the millisecond (see [`sub_millisecond_times`]). The
/// process's first one reaches the shared count at once, so a run can never miss that
/// there were some.
fn note_sub_millisecond() {
    let first = SUB_MILLISECOND.load(Ordering::Relaxed) == 0;
    UNFLUSHED.with(|unflushed| {
        let count = unflushed.0.get() + 1;
        if first || count >= FLUSH_EVERY {
            SUB_MILLISECOND.fetch_add(count, Ordering::Relaxed);
            unflushed.0.set(0);
        } else {
            unflushed.0.set(count);
        }
    });
}

/// How many times read so far in this process had digits below the millisecond,
/// which were floored: every ended thread's, and this thread's. (A thread still
/// running may hold up to [`FLUSH_EVERY`] more.)
pub fn sub_millisecond_times() -> u64 {
    SUB_MILLISECOND.load(Ordering::Relaxed) + UNFLUSHED.with(|unflushed| unflushed.0.get())
}

/// Floors `value` (in units of `1 / per_milli` millisecond, e.g. 1000 for
/// microseconds) to milliseconds, counting a dropped remainder (see
/// [`sub_millisecond_times`]). Every reader of finer times goes through it.
pub fn floor_to_millis(value: i64, per_milli: i64) -> Millis {
    if value.rem_euclid(per_milli) != 0 {
        note_sub_millisecond();
    }
    value.div_euclid(per_milli)
}

/// Counts a parsed time whose nanoseconds go below the millisecond.
fn note_if_sub_millisecond(nanos_of_second: u32) {
    if !nanos_of_second.is_multiple_of(1_000_000) {
        note_sub_millisecond();
    }
}

/// How integer epochs in a source are scaled (`[events.ts] unit`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum EpochUnit {
    /// Seconds.
    Seconds,
    /// Milliseconds (the default).
    #[default]
    Millis,
    /// Microseconds.
    Micros,
    /// Nanoseconds.
    Nanos,
}

impl EpochUnit {
    /// Parses the mapping file's spelling: `s`, `ms`, `us`, `ns`.
    pub fn parse(text: &str) -> Option<EpochUnit> {
        match text {
            "s" => Some(EpochUnit::Seconds),
            "ms" => Some(EpochUnit::Millis),
            "us" => Some(EpochUnit::Micros),
            "ns" => Some(EpochUnit::Nanos),
            _ => None,
        }
    }

    /// Converts an integer epoch in this unit to milliseconds (floor). An overflow
    /// saturates, so it is later quarantined as `out_of_range`.
    pub fn to_millis(self, value: i64) -> Option<Millis> {
        match self {
            EpochUnit::Seconds => Some(value.saturating_mul(1000)),
            EpochUnit::Millis => Some(value),
            EpochUnit::Micros => Some(floor_to_millis(value, 1000)),
            EpochUnit::Nanos => Some(floor_to_millis(value, 1_000_000)),
        }
    }
}

/// Parses a text time in one of the contract's accepted forms: RFC 3339 (offsets
/// allowed), `YYYY-MM-DD HH:MM:SS[.fff]` (UTC), or an integer epoch in `unit`.
/// Returns `None` when the text is none of these.
pub fn parse_event_time(text: &str, unit: EpochUnit) -> Option<Millis> {
    let text = text.trim();
    if text.is_empty() {
        return None;
    }
    if let Ok(epoch) = text.parse::<i64>() {
        return unit.to_millis(epoch);
    }
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        note_if_sub_millisecond(t.nanosecond());
        return Some(t.timestamp_millis());
    }
    for format in ["%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S%.f"] {
        if let Ok(t) = NaiveDateTime::parse_from_str(text, format) {
            note_if_sub_millisecond(t.nanosecond());
            return Some(t.and_utc().timestamp_millis());
        }
    }
    None
}

/// Parses a text time with an explicit strftime `format` (`[events.ts] format`),
/// read as UTC unless the format carries an offset. A date-only format means midnight.
pub fn parse_with_format(text: &str, format: &str) -> Option<Millis> {
    let text = text.trim();
    if let Ok(t) = DateTime::parse_from_str(text, format) {
        note_if_sub_millisecond(t.nanosecond());
        return Some(t.timestamp_millis());
    }
    if let Ok(t) = NaiveDateTime::parse_from_str(text, format) {
        note_if_sub_millisecond(t.nanosecond());
        return Some(t.and_utc().timestamp_millis());
    }
    if let Ok(d) = NaiveDate::parse_from_str(text, format) {
        return d
            .and_hms_opt(0, 0, 0)
            .map(|t| t.and_utc().timestamp_millis());
    }
    None
}

/// Parses an instant given by a person (settings, CLI): any event-time form, or a
/// bare `YYYY-MM-DD` meaning that day's UTC midnight.
pub fn parse_instant(text: &str) -> Option<Millis> {
    parse_event_time(text, EpochUnit::Millis).or_else(|| parse_with_format(text, "%Y-%m-%d"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_every_contract_form() {
        let expected = 1_752_279_600_000; // 2025-07-12T00:20:00Z
        assert_eq!(
            parse_event_time("2025-07-12T00:20:00Z", EpochUnit::Millis),
            Some(expected)
        );
        assert_eq!(
            parse_event_time("2025-07-12T02:20:00+02:00", EpochUnit::Millis),
            Some(expected)
        );
        assert_eq!(
            parse_event_time("2025-07-12 00:20:00", EpochUnit::Millis),
            Some(expected)
        );
        assert_eq!(
            parse_event_time("2025-07-12 00:20:00.250", EpochUnit::Millis),
            Some(expected + 250)
        );
        assert_eq!(
            parse_event_time("1752279600000", EpochUnit::Millis),
            Some(expected)
        );
        assert_eq!(
            parse_event_time("1752279600", EpochUnit::Seconds),
            Some(expected)
        );
        assert_eq!(parse_event_time("yesterday", EpochUnit::Millis), None);
        assert_eq!(parse_event_time("", EpochUnit::Millis), None);
        assert_eq!(
            parse_with_format("20250712", "%Y%m%d"),
            Some(expected - 20 * 60_000)
        );
        assert_eq!(parse_instant("2025-07-12"), Some(expected - 20 * 60_000));
    }

    #[test]
    fn digits_below_the_millisecond_are_floored_and_counted() {
        let expected = 1_752_279_600_250; // 2025-07-12T00:20:00.250Z
        type Parse = fn() -> Option<Millis>;
        let cases: [(&str, Parse); 5] = [
            ("RFC 3339 with µs", || {
                parse_event_time("2025-07-12T00:20:00.250999Z", EpochUnit::Millis)
            }),
            ("text with ns", || {
                parse_event_time("2025-07-12 00:20:00.250000001", EpochUnit::Millis)
            }),
            ("epoch µs", || {
                parse_event_time("1752279600250999", EpochUnit::Micros)
            }),
            ("epoch ns", || {
                parse_event_time("1752279600250999999", EpochUnit::Nanos)
            }),
            ("a format with µs", || {
                parse_with_format("2025-07-12 00:20:00.250999", "%Y-%m-%d %H:%M:%S%.f")
            }),
        ];
        // Only this test reads times finer than a millisecond in this test binary, and
        // the count includes this thread's own, so it moves only with these parses.
        for (what, parse) in cases {
            let before = sub_millisecond_times();
            assert_eq!(parse(), Some(expected), "{what} is floored");
            assert_eq!(
                sub_millisecond_times(),
                before + 1,
                "{what} is counted once"
            );
        }
        let before = sub_millisecond_times();
        assert_eq!(
            parse_event_time("1752279600250000", EpochUnit::Micros),
            Some(expected),
            "whole milliseconds in microseconds"
        );
        assert_eq!(
            sub_millisecond_times(),
            before,
            "nothing floored, nothing counted"
        );
    }
}
