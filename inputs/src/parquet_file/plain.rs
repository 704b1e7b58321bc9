//! The Parquet reader's fast path for `events/` files whose mapping reads every field
//! from a column as it is ([`crate::rows::ReadPlan::plain_event_columns`]) and whose
//! columns have their natural types (text as strings, `ts` a timestamp, `duration_ms`
//! an integer, `value` a number). Such a row becomes an [`Event`] straight from the
//! typed columns, without the per-field dispatch of the general path (a tenth of a
//! backfill's instructions). A row the fast path does not take whole (a null or blank
//! required field, an out-of-range value) goes through the general path, which
//! decides it exactly as for any other file: the fast path never quarantines. Both
//! paths apply the same rules ([`event_type_of`], [`measure_of`], [`is_blank`]).

use arrow::array::{Array, Float64Array, Int64Array, StringArray};

use crate::records::{Event, Id, Measure};
use crate::rows::{event_type_of, is_blank, measure_of, MAX_DURATION_MS};

use super::{Col, Scale};

/// A record batch's event columns, in the order of `Table::Events.fields()`, each
/// resolved once per batch to its typed array (`None`: the column is not read), so
/// that a row reads its fields without a dispatch per field.
pub(super) struct PlainEvents<'a> {
    event_id: &'a StringArray,
    user_id: &'a StringArray,
    ts: (&'a Int64Array, Scale),
    event_type: &'a StringArray,
    item_id: Option<&'a StringArray>,
    duration_ms: Option<&'a Int64Array>,
    session_id: Option<&'a StringArray>,
    value: Value<'a>,
}

/// The `value` column as the fast path reads it.
enum Value<'a> {
    Absent,
    Float(&'a Float64Array),
    Int(&'a Int64Array),
}

impl<'a> PlainEvents<'a> {
    /// The columns of `cols` that `plain` names, if each has the type the fast path
    /// reads; `None` sends the whole batch through the general path.
    pub(super) fn of(cols: &'a [Col], plain: &[Option<usize>; 8]) -> Option<PlainEvents<'a>> {
        let col = |field: usize| -> Option<&'a Col> { plain[field].map(|c| &cols[c]) };
        let text = |field: usize| match col(field) {
            Some(Col::Str(a)) => Some(a),
            _ => None,
        };
        // An optional text column: absent, or read as strings.
        let optional_text = |field: usize| match col(field) {
            None | Some(Col::Absent) => Some(None),
            Some(Col::Str(a)) => Some(Some(a)),
            Some(_) => None,
        };
        let ts = match col(2) {
            Some(Col::Time(a, scale)) => (a, *scale),
            _ => return None,
        };
        let duration_ms = match col(5) {
            None | Some(Col::Absent) => None,
            Some(Col::Int(a)) => Some(a),
            Some(_) => return None,
        };
        let value = match col(7) {
            None | Some(Col::Absent) => Value::Absent,
            Some(Col::Float(a)) => Value::Float(a),
            Some(Col::Int(a)) => Value::Int(a),
            Some(_) => return None,
        };
        Some(PlainEvents {
            event_id: text(0)?,
            user_id: text(1)?,
            ts,
            event_type: text(3)?,
            item_id: optional_text(4)?,
            duration_ms,
            session_id: optional_text(6)?,
            value,
        })
    }

    /// Row `r` as an event, if it is a valid one; `None` when the general path must
    /// decide it.
    pub(super) fn event(&self, r: usize) -> Option<Event> {
        let event_id = nonblank(self.event_id, r)?;
        let user_id = nonblank(self.user_id, r)?;
        let (ts, scale) = self.ts;
        let ts = Some(ts)
            .filter(|a| a.is_valid(r))
            .map(|a| scale.millis(a.value(r)))
            .filter(|ts| crate::time::in_range(*ts))?;
        let event_type = Some(self.event_type)
            .filter(|a| a.is_valid(r))
            .map(|a| event_type_of(a.value(r)))
            .filter(|t| !t.is_empty())?;
        let duration_ms = match self.duration_ms {
            Some(a) if a.is_valid(r) => {
                let d = a.value(r);
                if !(0..=MAX_DURATION_MS).contains(&d) {
                    return None;
                }
                Some(d)
            }
            _ => None,
        };
        let value: Option<Measure> = match self.value {
            Value::Float(a) if a.is_valid(r) => Some(measure_of(a.value(r))?),
            Value::Int(a) if a.is_valid(r) => Some(measure_of(a.value(r) as f64)?),
            _ => None,
        };
        Some(Event {
            event_id,
            user_id,
            ts,
            event_type,
            item_id: self.item_id.and_then(|a| nonblank(a, r)),
            duration_ms,
            session_id: self.session_id.and_then(|a| nonblank(a, r)),
            value,
        })
    }
}

/// Row `r`'s text: `None` when null or blank (for a required field, the general path
/// then decides the row; an optional one is absent).
fn nonblank(a: &StringArray, r: usize) -> Option<Id> {
    if !a.is_valid(r) {
        return None;
    }
    let text = a.value(r);
    (!is_blank(text)).then(|| Id::from(text))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{
        ArrayRef, Float64Array, Int64Array, StringArray, TimestampMicrosecondArray,
        TimestampMillisecondArray,
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

    /// The columns of `rows`: `ts` in milliseconds, or in microseconds with
    /// `micros`; `value` as doubles, or as integers (truncated) with `int_values`.
    fn columns_as(rows: &[Row], micros: bool, int_values: bool) -> Vec<Col> {
        let texts = |f: fn(&Row) -> &Option<String>| -> ArrayRef {
            Arc::new(StringArray::from(
                rows.iter().map(|r| f(r).clone()).collect::<Vec<_>>(),
            ))
        };
        let arrays: Vec<ArrayRef> = vec![
            texts(|r| &r.0),
            texts(|r| &r.1),
            if micros {
                Arc::new(TimestampMicrosecondArray::from(
                    rows.iter()
                        .map(|r| r.2.map(|ms| ms.saturating_mul(1000).saturating_add(999)))
                        .collect::<Vec<_>>(),
                ))
            } else {
                Arc::new(TimestampMillisecondArray::from(
                    rows.iter().map(|r| r.2).collect::<Vec<_>>(),
                ))
            },
            texts(|r| &r.3),
            texts(|r| &r.4),
            Arc::new(Int64Array::from(
                rows.iter().map(|r| r.5).collect::<Vec<_>>(),
            )),
            if int_values {
                Arc::new(Int64Array::from(
                    rows.iter()
                        .map(|r| r.6.filter(|v| v.is_finite()).map(|v| v as i64))
                        .collect::<Vec<_>>(),
                ))
            } else {
                Arc::new(Float64Array::from(
                    rows.iter().map(|r| r.6).collect::<Vec<_>>(),
                ))
            },
        ];
        arrays.iter().map(Col::of).collect()
    }

    fn columns(rows: &[Row]) -> Vec<Col> {
        columns_as(rows, false, false)
    }

    proptest! {
        /// Every row the fast path takes is the one event the general path makes of it,
        /// with no quarantine row; every other row is left to the general path.
        #[test]
        fn the_fast_path_makes_the_general_paths_events(
            rows in rows(),
            micros in any::<bool>(),
            int_values in any::<bool>(),
        ) {
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
            let cols = columns_as(&rows, micros, int_values);
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
