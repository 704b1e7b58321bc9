//! Bounded state: what lies behind the watermark can never change again (contract
//! "Lateness": an event below the watermark is quarantined as `too_late`), so the
//! state that only such events could touch is dropped.
//!
//! The pattern, for a reduce whose every key covers a bounded stretch of event time
//! (a day, a window, a month):
//! 1. [`retire_behind`] on the reduce's input retracts each input record at the first
//!    logical time whose watermark has passed its key's end, so the reduce's input and
//!    output arrangements empty out for closed keys and compact away;
//! 2. [`drop_closed`] on the reduce's output removes every change to a closed key at
//!    the time it closed: those are exactly the retirement's retractions (no accepted
//!    event can reach a closed key), so the table keeps its final rows.
//!
//! A key's end (its "bound") must be the same function of the key on both sides, and
//! must lie after every event time that can still change the key. When the two steps
//! bracket one reduce, [`reduce_until_closed`] takes the bound once and applies it to
//! the key on both sides. Keys with no bound
//! (for example a source session, which any later event may extend) are kept.
//!
//! [`earliest_per_key`] keeps, per key, only the least value seen (a user's first day,
//! first use of a feature), which needs O(keys) state where a reduce would keep every
//! value.

use std::collections::BTreeMap;
use std::hash::Hash;

use differential_dataflow::consolidation::consolidate_updates;
use differential_dataflow::{AsCollection, ExchangeData, Hashable, VecCollection};
use rustc_hash::FxHashMap;
use tidemark_records::records::Millis;
use tidemark_records::time::{day_start, month_first_day};
use timely::dataflow::channels::pact::{Exchange, Pipeline};
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::operators::{Capability, InputCapability};
use timely::dataflow::StreamVec;

use crate::operators::gate::Time;
use crate::operators::held::{hold_updates, HeldByTime, HeldUpdates};
use crate::operators::reduce::HashReduce;
use crate::operators::totals::HashTotals;

/// An update as held: the record with its time and multiplicity.
fn update<D>(record: D, time: Time, diff: isize) -> (D, Time, isize) {
    (record, time, diff)
}

/// The watermark of each logical time, one record at that time, the same on every
/// worker (each worker's watermark gate computes it from the broadcast batch marks).
/// Times without a record retire nothing.
pub type Watermarks<'s> = StreamVec<'s, Time, Millis>;

/// Records the watermarks of a message at `cap`'s time in `known` (the largest wins).
pub fn note_watermarks(
    known: &mut BTreeMap<Time, Millis>,
    cap: &InputCapability<Time>,
    marks: &mut Vec<Millis>,
) {
    if let Some(&time) = cap.least() {
        for watermark in marks.drain(..) {
            let entry = known.entry(time).or_insert(watermark);
            *entry = (*entry).max(watermark);
        }
    }
}

/// Takes the watermarks noted at `time` and before out of `known`: the largest of them,
/// if any. An operator that handles its complete times in order calls it once per
/// time; a watermark of a time it had nothing to do at still counts at the next.
pub fn take_watermark_through(known: &mut BTreeMap<Time, Millis>, time: Time) -> Option<Millis> {
    let later = known.split_off(&time.saturating_add(1));
    std::mem::replace(known, later).into_values().max()
}

/// The instant a UTC day ends (exclusive): the bound of a per-day key.
///
/// ```
/// use tidemark_dataflows::operators::expiry::{day_end, month_end};
/// // Day 0 is 1970-01-01; month 0 is January 1970.
/// assert_eq!(day_end(0), 86_400_000);
/// assert_eq!(month_end(0), 31 * 86_400_000);
/// assert_eq!(month_end(1), 59 * 86_400_000); // February 1970 had 28 days
/// ```
pub fn day_end(day: i32) -> Millis {
    day_start(day + 1)
}

/// The instant a month ends (exclusive): the bound of a per-month key.
pub fn month_end(month: i32) -> Millis {
    day_start(month_first_day(month + 1))
}

/// Passes `data` through and, at the first logical time whose watermark is at or past a
/// record's `bound`, retracts the record again. Only records with a bound are held
/// (until they retire), so this operator's own state is the open records.
///
/// ```
/// use std::sync::{Arc, Mutex};
/// use differential_dataflow::input::Input as _;
/// use tidemark_dataflows::operators::expiry::{day_end, retire_behind};
/// use timely::dataflow::operators::{Input as _, Inspect};
///
/// let seen = Arc::new(Mutex::new(Vec::new()));
/// let out = Arc::clone(&seen);
/// timely::execute_directly(move |worker| {
///     let (mut days, mut marks) = worker.dataflow::<u64, _, _>(|scope| {
///         let (days_in, days) = scope.new_collection::<i32, isize>();
///         let (marks_in, watermarks) = scope.new_input::<Vec<i64>>();
///         retire_behind(days, &watermarks, |day: &i32| Some(day_end(*day)))
///             .inner
///             .inspect(move |update| out.lock().unwrap().push(*update));
///         (days_in, marks_in)
///     });
///     days.insert(0);
///     days.insert(1);
///     days.advance_to(1);
///     marks.advance_to(1);
///     marks.send(day_end(0)); // time 1's watermark closes day 0, not day 1
///     days.advance_to(2);
///     marks.advance_to(2);
/// });
/// let mut seen = seen.lock().unwrap().clone();
/// seen.sort();
/// // Day 0 passes through at time 0 and retires at time 1; day 1 stays.
/// assert_eq!(seen, [(0, 0, 1), (0, 1, -1), (1, 0, 1)]);
/// ```
pub fn retire_behind<'s, D, B>(
    data: VecCollection<'s, Time, D>,
    watermarks: &Watermarks<'s>,
    bound: B,
) -> VecCollection<'s, Time, D>
where
    D: ExchangeData + Ord,
    B: Fn(&D) -> Option<Millis> + 'static,
{
    data.inner
        .binary_frontier(
            watermarks.clone(),
            Pipeline,
            Pipeline,
            "RetireBehindWatermark",
            move |_capability, _info| {
                let mut open: BTreeMap<Millis, Vec<(D, Time, isize)>> = BTreeMap::new();
                let mut retirements: HeldByTime<Capability<Time>, Option<Millis>> =
                    HeldByTime::default();
                move |(data_in, data_frontier), (marks_in, marks_frontier), output| {
                    data_in.for_each(|cap, batch| {
                        for (record, time, diff) in batch.iter() {
                            if let Some(end) = bound(record) {
                                open.entry(end)
                                    .or_default()
                                    .push((record.clone(), *time, *diff));
                            }
                        }
                        output.session(&cap).give_container(batch);
                    });
                    marks_in.for_each(|cap, marks| {
                        let Some(cap) = cap.retain_least(0) else {
                            return;
                        };
                        for watermark in marks.drain(..) {
                            let largest = retirements.at(*cap.time(), || cap.clone());
                            *largest =
                                Some(largest.map_or(watermark, |m: Millis| m.max(watermark)));
                        }
                    });
                    // Retire at time `t` once every record up to `t` is in.
                    while let Some((time, cap, watermark)) = retirements.pop_complete(|time| {
                        !data_frontier.frontier().less_equal(&time)
                            && !marks_frontier.frontier().less_equal(&time)
                    }) {
                        let Some(watermark) = watermark else {
                            continue;
                        };
                        let still_open = open.split_off(&watermark.saturating_add(1));
                        let closed = std::mem::replace(&mut open, still_open);
                        let mut retired: Vec<(D, isize)> = Vec::new();
                        for (end, records) in closed {
                            for (record, fed, diff) in records {
                                if fed <= time {
                                    retired.push((record, diff));
                                } else {
                                    // Fed after this time (never behind its watermark in
                                    // practice): it retires at a later time.
                                    open.entry(end).or_default().push((record, fed, diff));
                                }
                            }
                        }
                        // Not consolidated: every consumer arranges (and so sorts) its
                        // input anyway, and sorting here too cost as much again.
                        output
                            .session(&cap)
                            .give_iterator(retired.into_iter().map(|(d, r)| (d, time, -r)));
                    }
                }
            },
        )
        .as_collection()
}

/// Removes every change to a closed record: one whose `bound` is at or behind the
/// watermark of the change's logical time. Paired with [`retire_behind`] upstream, it
/// keeps a table's final rows once their inputs are retired.
///
/// ```
/// use std::sync::{Arc, Mutex};
/// use differential_dataflow::input::Input as _;
/// use tidemark_dataflows::operators::expiry::{day_end, drop_closed};
/// use timely::dataflow::operators::{Input as _, Inspect};
///
/// let seen = Arc::new(Mutex::new(Vec::new()));
/// let out = Arc::clone(&seen);
/// timely::execute_directly(move |worker| {
///     let (mut days, mut marks) = worker.dataflow::<u64, _, _>(|scope| {
///         let (days_in, days) = scope.new_collection::<i32, isize>();
///         let (marks_in, watermarks) = scope.new_input::<Vec<i64>>();
///         drop_closed(days, &watermarks, |day: &i32| Some(day_end(*day)))
///             .inner
///             .inspect(move |update| out.lock().unwrap().push(*update));
///         (days_in, marks_in)
///     });
///     days.insert(0);
///     days.advance_to(1);
///     marks.advance_to(1);
///     marks.send(day_end(0)); // time 1's watermark closes day 0
///     days.remove(0); // a retirement upstream: dropped, the row stays
///     days.insert(1); // day 1 is still open: passes
///     days.advance_to(2);
///     marks.advance_to(2);
/// });
/// let mut seen = seen.lock().unwrap().clone();
/// seen.sort();
/// assert_eq!(seen, [(0, 0, 1), (1, 1, 1)]);
/// ```
pub fn drop_closed<'s, D, B>(
    data: VecCollection<'s, Time, D>,
    watermarks: &Watermarks<'s>,
    bound: B,
) -> VecCollection<'s, Time, D>
where
    D: ExchangeData,
    B: Fn(&D) -> Option<Millis> + 'static,
{
    data.inner
        .binary_frontier(
            watermarks.clone(),
            Pipeline,
            Pipeline,
            "DropClosed",
            move |_capability, _info| {
                let mut pending: HeldUpdates<(D, Time, isize)> = HeldByTime::default();
                let mut known: BTreeMap<Time, Millis> = BTreeMap::new();
                move |(data_in, data_frontier), (marks_in, marks_frontier), output| {
                    data_in.for_each(|cap, batch| hold_updates(&mut pending, &cap, batch, update));
                    marks_in.for_each(|cap, marks| note_watermarks(&mut known, &cap, marks));
                    // A time's changes go out once its watermark (if any) is known.
                    while let Some((time, cap, mut records)) =
                        pending.pop_complete(|time| !marks_frontier.frontier().less_equal(&time))
                    {
                        let watermark = known.get(&time).copied();
                        let held = records.len();
                        let mut session = output.session(&cap);
                        session.give_iterator(records.drain(..).filter(|(record, _, _)| {
                            match (watermark, bound(record)) {
                                (Some(watermark), Some(end)) => end > watermark,
                                _ => true,
                            }
                        }));
                        drop(session);
                        pending.recycle(records, held);
                    }
                    // Watermarks of times no further change can arrive at are not needed.
                    if let Some(&oldest) = data_frontier.frontier().iter().min() {
                        let oldest = pending.first_time().map_or(oldest, |t| t.min(oldest));
                        known = known.split_off(&oldest);
                    } else if pending.is_empty() {
                        known.clear();
                    }
                }
            },
        )
        .as_collection()
}

/// A reduce over keys that close: `logic` per key of `input` (as
/// `reduce_named(name, logic)`), with steps 1 and 2 of the pattern above around it.
/// Each key's input is retired at the first logical time whose watermark has passed
/// `bound(key)`, so the reduce's state for it empties, and the retirement's changes are
/// dropped from the output, which keeps the key's final rows. The bound is given once
/// and read from the key on both sides, so the two cannot disagree. Keys with no bound
/// are kept.
///
/// ```
/// use std::sync::{Arc, Mutex};
/// use differential_dataflow::input::Input as _;
/// use tidemark_dataflows::operators::expiry::{day_end, reduce_until_closed};
/// use timely::dataflow::operators::{Input as _, Inspect};
///
/// // Events per day; day 0 closes at time 1, and its count stays 2.
/// let seen = Arc::new(Mutex::new(Vec::new()));
/// let out = Arc::clone(&seen);
/// timely::execute_directly(move |worker| {
///     let (mut events, mut marks) = worker.dataflow::<u64, _, _>(|scope| {
///         let (events_in, events) = scope.new_collection::<(i32, u32), isize>();
///         let (marks_in, watermarks) = scope.new_input::<Vec<i64>>();
///         let count = |_day: &i32, input: &[(u32, isize)], output: &mut Vec<(isize, isize)>| {
///             output.push((input.iter().map(|(_, n)| n).sum(), 1))
///         };
///         reduce_until_closed(events, &watermarks, |day: &i32| Some(day_end(*day)), "PerDay", count)
///             .inner
///             .inspect(move |update| out.lock().unwrap().push(*update));
///         (events_in, marks_in)
///     });
///     events.insert((0, 1));
///     events.insert((0, 2));
///     events.advance_to(1);
///     marks.advance_to(1);
///     marks.send(day_end(0));
///     events.insert((1, 3));
///     events.advance_to(2);
///     marks.advance_to(2);
/// });
/// let mut seen = seen.lock().unwrap().clone();
/// seen.sort();
/// assert_eq!(seen, [((0, 2), 0, 1), ((1, 1), 1, 1)]);
/// ```
pub fn reduce_until_closed<'s, K, V, O, B, L>(
    input: VecCollection<'s, Time, (K, V)>,
    watermarks: &Watermarks<'s>,
    bound: B,
    name: &str,
    logic: L,
) -> VecCollection<'s, Time, (K, O)>
where
    K: ExchangeData + Hashable + Hash,
    V: ExchangeData,
    O: ExchangeData,
    B: Fn(&K) -> Option<Millis> + Clone + 'static,
    L: FnMut(&K, &[(V, isize)], &mut Vec<(O, isize)>) + 'static,
{
    let retire = bound.clone();
    let output =
        retire_behind(input, watermarks, move |(key, _)| retire(key)).reduce_by_hash(name, logic);
    drop_closed(output, watermarks, move |(key, _)| bound(key))
}

/// The distinct records of `data`, each kept until its `bound` is behind the watermark
/// and then retired from the arrangement while the output keeps it.
///
/// ```
/// use std::sync::{Arc, Mutex};
/// use differential_dataflow::input::Input as _;
/// use tidemark_dataflows::operators::expiry::{day_end, distinct_until_closed};
/// use timely::dataflow::operators::{Input as _, Inspect};
///
/// // Distinct (user, day) pairs; day 0 closes when the watermark reaches its end.
/// let seen = Arc::new(Mutex::new(Vec::new()));
/// let out = Arc::clone(&seen);
/// timely::execute_directly(move |worker| {
///     let (mut pairs, mut marks) = worker.dataflow::<u64, _, _>(|scope| {
///         let (pairs_in, pairs) = scope.new_collection::<(String, i32), isize>();
///         let (marks_in, watermarks) = scope.new_input::<Vec<i64>>();
///         distinct_until_closed(pairs, &watermarks, |(_, day): &(String, i32)| {
///             Some(day_end(*day))
///         })
///         .inner
///         .inspect(move |update| out.lock().unwrap().push(update.clone()));
///         (pairs_in, marks_in)
///     });
///     pairs.insert(("u1".to_string(), 0));
///     pairs.insert(("u1".to_string(), 0));
///     pairs.advance_to(1);
///     marks.advance_to(1);
///     marks.send(day_end(0)); // from time 1 on, day 0 is closed
///     pairs.insert(("u1".to_string(), 0)); // a repeat of a closed day: no change
///     pairs.insert(("u2".to_string(), 1));
///     pairs.advance_to(2);
///     marks.advance_to(2);
/// });
/// let mut seen = seen.lock().unwrap().clone();
/// seen.sort();
/// // (u1, 0) once and never retracted, though its state was retired; (u2, 1) at time 1.
/// assert_eq!(seen, [(("u1".to_string(), 0), 0, 1), (("u2".to_string(), 1), 1, 1)]);
/// ```
pub fn distinct_until_closed<'s, D, B>(
    data: VecCollection<'s, Time, D>,
    watermarks: &Watermarks<'s>,
    bound: B,
) -> VecCollection<'s, Time, D>
where
    D: ExchangeData + Hashable + Ord + std::hash::Hash,
    B: Fn(&D) -> Option<Millis> + Clone + 'static,
{
    let live = retire_behind(data, watermarks, bound.clone()).distinct_by_hash();
    drop_closed(live, watermarks, bound)
}

/// The least value of each key, as a collection of `(key, value)`.
///
/// With `insert_only` (the input never retracts, as when no re-ingested file can take
/// rows back), a streaming operator keeps just the current least value per key. Otherwise a
/// differential `reduce` keeps every value, so that a retraction can promote the next.
///
/// ```
/// use std::collections::BTreeMap;
/// use std::sync::{Arc, Mutex};
/// use differential_dataflow::input::Input;
/// use tidemark_dataflows::operators::expiry::earliest_per_key;
/// use timely::dataflow::operators::Inspect;
///
/// // A user's first active day: a later, earlier day (a late event) replaces it.
/// let seen = Arc::new(Mutex::new(Vec::new()));
/// let out = Arc::clone(&seen);
/// timely::execute_directly(move |worker| {
///     let mut input = worker.dataflow::<u64, _, _>(|scope| {
///         let (input, user_days) = scope.new_collection::<(String, i32), isize>();
///         earliest_per_key(user_days, true, "FirstActiveDay")
///             .inner
///             .inspect(move |update| out.lock().unwrap().push(update.clone()));
///         input
///     });
///     input.insert(("u1".to_string(), 5));
///     input.insert(("u2".to_string(), 7));
///     input.advance_to(1);
///     input.insert(("u1".to_string(), 3)); // late: u1 was active earlier
///     input.insert(("u2".to_string(), 9)); // not earlier: no change
///     input.advance_to(2);
/// });
/// // The first days after each time, from the updates.
/// let mut first_days = BTreeMap::new();
/// for ((user, day), time, diff) in seen.lock().unwrap().iter() {
///     *first_days.entry((*time, user.clone(), *day)).or_insert(0) += diff;
/// }
/// first_days.retain(|_, diff| *diff != 0);
/// assert_eq!(
///     first_days.into_iter().collect::<Vec<_>>(),
///     [
///         ((0, "u1".to_string(), 5), 1),
///         ((0, "u2".to_string(), 7), 1),
///         ((1, "u1".to_string(), 3), 1),
///         ((1, "u1".to_string(), 5), -1),
///     ]
/// );
/// ```
pub fn earliest_per_key<'s, K, V>(
    pairs: VecCollection<'s, Time, (K, V)>,
    insert_only: bool,
    name: &str,
) -> VecCollection<'s, Time, (K, V)>
where
    K: ExchangeData + Hashable<Output = u64> + Hash + Eq,
    V: ExchangeData + Ord,
{
    if !insert_only {
        return pairs.reduce_by_hash(name, |_key, values, output| {
            output.push((values[0].0.clone(), 1isize))
        });
    }
    let route = Exchange::new(|((key, _), _, _): &((K, V), Time, isize)| key.hashed());
    pairs
        .inner
        .unary_frontier(route, name, |_capability, _info| {
            let mut pending: HeldUpdates<((K, V), Time, isize)> = HeldByTime::default();
            let mut least: FxHashMap<K, V> = FxHashMap::default();
            move |(input, frontier), output| {
                input.for_each(|cap, batch| hold_updates(&mut pending, &cap, batch, update));
                while let Some((time, cap, mut updates)) =
                    pending.pop_complete(|time| !frontier.frontier().less_equal(&time))
                {
                    let held = updates.len();
                    consolidate_updates(&mut updates);
                    let mut session = output.session(&cap);
                    for ((key, value), _, diff) in updates.drain(..) {
                        // Insert-only input: a net retraction cannot occur.
                        debug_assert!(diff > 0, "earliest_per_key: input retracted a value");
                        if diff <= 0 {
                            continue;
                        }
                        match least.get_mut(&key) {
                            Some(current) if *current <= value => {}
                            Some(current) => {
                                let old = std::mem::replace(current, value.clone());
                                session.give(((key.clone(), old), time, -1isize));
                                session.give(((key, value), time, 1isize));
                            }
                            None => {
                                least.insert(key.clone(), value.clone());
                                session.give(((key, value), time, 1isize));
                            }
                        }
                    }
                    drop(session);
                    pending.recycle(updates, held);
                }
            }
        })
        .as_collection()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The watermark taken at a time is the largest noted at it or before, whichever
    /// times had one; those go, later ones stay for their own time.
    #[test]
    fn a_time_takes_the_largest_watermark_up_to_it() {
        let mut next = crate::test_numbers(23);
        for case in 0..200 {
            let noted: BTreeMap<Time, Millis> = (0..next(6))
                .map(|_| (next(10), next(1000) as Millis))
                .collect();
            let time = next(10);
            let mut known = noted.clone();
            let taken = take_watermark_through(&mut known, time);
            let expected = noted
                .iter()
                .filter(|(t, _)| **t <= time)
                .map(|(_, w)| *w)
                .max();
            assert_eq!(taken, expected, "case {case}");
            let left: BTreeMap<Time, Millis> =
                noted.into_iter().filter(|(t, _)| *t > time).collect();
            assert_eq!(known, left, "case {case}");
        }
    }
}
