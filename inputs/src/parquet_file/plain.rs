//! The Parquet reader's fast path for `events/` files whose mapping reads every field
//! from a column as it is ([`crate::rows::ReadPlan::plain_event_columns`]) and whose
//! columns have their natural types (text as strings, `ts` a timestamp, `duration_ms`
//! an integer, `value` a number). Such a row becomes an [`Event`] straight from the
//! typed columns, without the per-field dispatch of the general path (a tenth of a
//! backfill's instructions). A row the fast path does not take whole (a null or blank
//! required field, an out-of-range value) goes through the general path, which
//! decides it exactly as for any other file: the fast path never quarantines. Both
//! paths apply the same rules ([`event_type_of`], [`measure_of`], [`Got::is_null`]).

use crate::records::{Event, Id};
use crate::rows::{event_type_of, measure_of, Got, MAX_DURATION_MS};

use super::Col;

/// A record batch's event columns, in the order of `Table::Events.fields()`, when
/// their types suit the fast path.
pub(super) struct PlainEvents<'a> {
    event_id: &'a Col,
    user_id: &'a Col,
    ts: &'a Col,
    event_type: &'a Col,
    item_id: &'a Col,
    duration_ms: &'a Col,
    session_id: &'a Col,
    value: &'a Col,
}

const ABSENT: Col = Col::Absent;

impl<'a> PlainEvents<'a> {
    /// The columns of `cols` that `plain` names, if each has the type the fast path
    /// reads; `None` sends the whole batch through the general path.
    pub(super) fn of(cols: &'a [Col], plain: &[Option<usize>; 8]) -> Option<PlainEvents<'a>> {
        let col = |field: usize| -> &'a Col { plain[field].map_or(&ABSENT, |c| &cols[c]) };
        let text = |c: &Col| matches!(c, Col::Str(_) | Col::Absent);
        let events = PlainEvents {
            event_id: col(0),
            user_id: col(1),
            ts: col(2),
            event_type: col(3),
            item_id: col(4),
            duration_ms: col(5),
            session_id: col(6),
            value: col(7),
        };
        let suits = [events.event_id, events.user_id, events.event_type]
            .iter()
            .all(|c| matches!(c, Col::Str(_)))
            && text(events.item_id)
            && text(events.session_id)
            && matches!(events.ts, Col::Time(..))
            && matches!(events.duration_ms, Col::Int(_) | Col::Absent)
            && matches!(events.value, Col::Float(_) | Col::Int(_) | Col::Absent);
        suits.then_some(events)
    }

    /// Row `r` as an event, if it is a valid one; `None` when the general path must
    /// decide it.
    pub(super) fn event(&self, r: usize) -> Option<Event> {
        let event_id = required(self.event_id.get(r))?;
        let user_id = required(self.user_id.get(r))?;
        let ts = match self.ts.get(r) {
            Got::Time(ts) if crate::time::in_range(ts) => ts,
            _ => return None,
        };
        let event_type = match self.event_type.get(r) {
            Got::Str(s) => Some(event_type_of(&s)).filter(|t| !t.is_empty())?,
            _ => return None,
        };
        let duration_ms = match self.duration_ms.get(r) {
            Got::Null => None,
            Got::Int(d) if (0..=MAX_DURATION_MS).contains(&d) => Some(d),
            _ => return None,
        };
        let value = match self.value.get(r) {
            Got::Null => None,
            Got::Float(v) => Some(measure_of(v)?),
            Got::Int(v) => Some(measure_of(v as f64)?),
            _ => return None,
        };
        Some(Event {
            event_id,
            user_id,
            ts,
            event_type,
            item_id: optional(self.item_id.get(r))?,
            duration_ms,
            session_id: optional(self.session_id.get(r))?,
            value,
        })
    }
}

/// A required text: `None` (the general path decides) when null or blank.
fn required(got: Got) -> Option<Id> {
    optional(got).flatten()
}

/// An optional text: `Some(None)` when null or blank, `None` for a value that is not
/// text.
fn optional(got: Got) -> Option<Option<Id>> {
    if got.is_null() {
        return Some(None);
    }
    match got {
        Got::Str(s) => Some(Some(Id::from(s.as_ref()))),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{
        ArrayRef, Float64Array, Int64Array, StringArray, TimestampMillisecondArray,
    };
    use proptest::prelude::*;

    use super::*;
    use crate::dataset::Table;
    use crate::mapping::Mapping;
    use crate::records::FileBatch;
    use crate::rows::ReadPlan;

    /// Texts that the general path treats in every way it can: blank, padded,
    /// upper-case, non-ASCII, long (kept on the heap by `Id`).
    fn text() -> impl Strategy<Value = Option<String>> {
        prop::option::weighted(
            0.9,
            prop_oneof![
                Just(String::new()),
                Just("  ".to_string()),
                Just(" play ".to_string()),
                Just("Play".to_string()),
                Just("écoute".to_string()),
                Just("play".to_string()),
                Just("x".repeat(40)),
                "[a-z0-9:]{1,12}",
            ],
        )
    }

    fn rows() -> impl Strategy<Value = Vec<Row>> {
        prop::collection::vec(
            (
                text(),
                text(),
                prop::option::weighted(
                    0.9,
                    prop_oneof![Just(-1i64), Just(i64::MAX), 0i64..4_000_000_000_000],
                ),
                text(),
                text(),
                prop::option::weighted(
                    0.7,
                    prop_oneof![Just(-1i64), Just(7_200_001), 0i64..7_200_001],
                ),
                prop::option::weighted(
                    0.7,
                    prop_oneof![
                        Just(f64::NAN),
                        Just(-0.0),
                        Just(f64::INFINITY),
                        Just(2.0e9),
                        -1.0e9f64..1.0e9
                    ],
                ),
            ),
            0..60,
        )
    }

    type Row = (
        Option<String>,
        Option<String>,
        Option<i64>,
        Option<String>,
        Option<String>,
        Option<i64>,
        Option<f64>,
    );

    fn columns(rows: &[Row]) -> Vec<Col> {
        let texts = |f: fn(&Row) -> &Option<String>| -> ArrayRef {
            Arc::new(StringArray::from(
                rows.iter().map(|r| f(r).clone()).collect::<Vec<_>>(),
            ))
        };
        let arrays: Vec<ArrayRef> = vec![
            texts(|r| &r.0),
            texts(|r| &r.1),
            Arc::new(TimestampMillisecondArray::from(
                rows.iter().map(|r| r.2).collect::<Vec<_>>(),
            )),
            texts(|r| &r.3),
            texts(|r| &r.4),
            Arc::new(Int64Array::from(
                rows.iter().map(|r| r.5).collect::<Vec<_>>(),
            )),
            Arc::new(Float64Array::from(
                rows.iter().map(|r| r.6).collect::<Vec<_>>(),
            )),
        ];
        arrays.iter().map(Col::of).collect()
    }

    proptest! {
        /// Every row the fast path takes is the one event the general path makes of it,
        /// with no quarantine row; every other row is left to the general path.
        #[test]
        fn the_fast_path_makes_the_general_paths_events(rows in rows()) {
            let mapping = Mapping::default();
            // The test file's columns: every event field but `session_id`, in order.
            let names: Vec<String> = Table::Events
                .fields()
                .iter()
                .filter(|field| **field != "session_id")
                .map(|field| field.to_string())
                .collect();
            let plan = ReadPlan::resolve(&mapping, &[Table::Events], false, &mut |name| {
                names.iter().position(|c| c == name)
            })
            .expect("every column is there");
            let plain = plan.plain_event_columns().expect("the default mapping is plain");
            let cols = columns(&rows);
            let fast = PlainEvents::of(&cols, &plain).expect("natural types");
            for r in 0..rows.len() {
                let mut general = FileBatch::default();
                let row = super::super::ParquetRow { cols: &cols, names: &names, row: r };
                plan.apply(&row, r as u64 + 1, "f.parquet", &mut general);
                if let Some(event) = fast.event(r) {
                    prop_assert_eq!(&general.events, &vec![event], "row {}", r);
                    prop_assert!(general.quarantine.is_empty());
                }
            }
        }
    }

    /// The common rows of a clean file take the fast path.
    #[test]
    fn clean_rows_take_the_fast_path() {
        let rows: Vec<Row> = vec![(
            Some("e1".into()),
            Some("u1".into()),
            Some(1_735_689_600_000),
            Some("play".into()),
            None,
            Some(1000),
            Some(2.5),
        )];
        let cols = columns(&rows);
        let plain = [
            Some(0),
            Some(1),
            Some(2),
            Some(3),
            Some(4),
            Some(5),
            None,
            Some(6),
        ];
        let event = PlainEvents::of(&cols, &plain).and_then(|p| p.event(0));
        assert_eq!(
            event.map(|e| (e.ts, e.duration_ms)),
            Some((1_735_689_600_000, Some(1000)))
        );
    }
}
