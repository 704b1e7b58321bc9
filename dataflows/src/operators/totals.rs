//! Counts, thresholds and distincts over totally ordered times, kept in hash maps.
//!
//! Differential's `count_total` and `threshold_total` read an arrangement: every update
//! is sorted by the batcher, sealed into a batch and merged into a spine, and the
//! operator then walks a cursor over the key's history. tidemark's times are totally
//! ordered and an output needs only each key's accumulated total, so
//! [`totals_by_hash`] keeps that total per key in a hash map instead: updates are
//! routed by key, summed per logical time, and once the time is complete each changed
//! key's total is updated and the change of its output is emitted. No sort, no batch,
//! no history; a key whose total returns to zero leaves the map, so state retired
//! behind the watermark goes too. The output is the same collection as differential's
//! operators produce (the property tests compare every table with an oracle, whatever
//! the batching).

use std::collections::hash_map::Entry;
use std::hash::Hash;

use differential_dataflow::difference::{IsZero, Multiply, Semigroup};
use differential_dataflow::hashable::Hashable;
use differential_dataflow::{AsCollection, ExchangeData, VecCollection};
use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::generic::Operator;

use crate::operators::gate::Time;
use crate::operators::held::{sum_updates, worth_keeping, HeldByTime, HeldSums};
use crate::operators::state_sizes::{self, ReportOnce};

/// What a key's total becomes in the output: nothing, or records with multiplicities.
pub trait TotalOutput<D, R>: 'static {
    /// The output record.
    type Out: ExchangeData;
    /// Pushes the output of `key` while its total is `total` (never zero) into `out`.
    fn output(&mut self, key: &D, total: &R, out: &mut Vec<(Self::Out, isize)>);
}

/// `count_total`: a key with a nonzero total outputs `(key, total)` once.
pub struct Count;

impl<D: ExchangeData, R: ExchangeData + Semigroup> TotalOutput<D, R> for Count {
    type Out = (D, R);
    fn output(&mut self, key: &D, total: &R, out: &mut Vec<((D, R), isize)>) {
        out.push(((key.clone(), total.clone()), 1));
    }
}

/// `threshold_total(f)`: a key with a nonzero total outputs itself `f(key, total)`
/// times.
pub struct Threshold<F>(pub F);

impl<D, R, F> TotalOutput<D, R> for Threshold<F>
where
    D: ExchangeData,
    F: FnMut(&D, &R) -> isize + 'static,
{
    type Out = D;
    fn output(&mut self, key: &D, total: &R, out: &mut Vec<(D, isize)>) {
        let times = (self.0)(key, total);
        if times != 0 {
            out.push((key.clone(), times));
        }
    }
}

/// The output of each key's total under `rule`, the same collection differential's
/// `count_total` ([`Count`]) or `threshold_total` ([`Threshold`]) make from an
/// arrangement of `data`, computed from a hash map of totals (see the module docs).
///
/// ```
/// use std::sync::{Arc, Mutex};
/// use differential_dataflow::input::Input;
/// use tidemark_dataflows::operators::totals::{totals_by_hash, Count};
/// use timely::dataflow::operators::Inspect;
///
/// let seen = Arc::new(Mutex::new(Vec::new()));
/// let out = Arc::clone(&seen);
/// timely::execute_directly(move |worker| {
///     let mut input = worker.dataflow::<u64, _, _>(|scope| {
///         let (input, days) = scope.new_collection::<i32, isize>();
///         totals_by_hash(days, Count, "CountDays")
///             .inner
///             .inspect(move |update| out.lock().unwrap().push(update.clone()));
///         input
///     });
///     input.insert(3);
///     input.insert(3);
///     input.advance_to(1);
///     input.remove(3);
///     input.advance_to(2);
/// });
/// let mut seen = seen.lock().unwrap().clone();
/// seen.sort();
/// // Day 3 is counted twice at time 0; at time 1 its count of 2 becomes 1.
/// assert_eq!(seen, [((3, 1), 1, 1), ((3, 2), 0, 1), ((3, 2), 1, -1)]);
/// ```
pub fn totals_by_hash<'s, D, R, O>(
    data: VecCollection<'s, Time, D, R>,
    mut rule: O,
    name: &str,
) -> VecCollection<'s, Time, O::Out, isize>
where
    D: ExchangeData + Hashable + Hash + Eq,
    R: ExchangeData + Semigroup,
    O: TotalOutput<D, R>,
{
    let route = Exchange::new(|(key, _time, _diff): &(D, Time, R)| key.hashed().into());
    data.inner
        .unary_frontier(route, name, move |_capability, _info| {
            let name = name.to_string();
            let mut report = ReportOnce::default();
            // Each time's updates, summed per key, until the time is complete.
            let mut pending: HeldSums<D, R> = HeldByTime::default();
            // Every key's total over the complete times; never zero.
            let mut totals: FxHashMap<D, R> = FxHashMap::default();
            // An emptied map of an earlier time, reused: a backfill's times are large,
            // and a fresh map for each would fault its pages in again.
            let mut spare: Option<FxHashMap<D, R>> = None;
            let mut before: Vec<(O::Out, isize)> = Vec::new();
            let mut after: Vec<(O::Out, isize)> = Vec::new();
            move |(input, frontier), output| {
                input.for_each(|cap, batch| {
                    sum_updates(&mut pending, &cap, batch, || {
                        spare.take().unwrap_or_default()
                    })
                });
                while let Some((time, cap, mut sums)) =
                    pending.pop_complete(|time| !frontier.frontier().less_equal(&time))
                {
                    let mut session = output.session(&cap);
                    let used = sums.len();
                    for (key, diff) in sums.drain() {
                        if diff.is_zero() {
                            continue;
                        }
                        before.clear();
                        after.clear();
                        match totals.entry(key) {
                            Entry::Occupied(mut total) => {
                                rule.output(total.key(), total.get(), &mut before);
                                total.get_mut().plus_equals(&diff);
                                if total.get().is_zero() {
                                    total.remove();
                                } else {
                                    rule.output(total.key(), total.get(), &mut after);
                                }
                            }
                            Entry::Vacant(slot) => {
                                rule.output(slot.key(), &diff, &mut after);
                                slot.insert(diff);
                            }
                        }
                        // A key whose output stays as it was (a distinct key seen again)
                        // sends nothing, not a retraction and its reinsertion.
                        if before == after {
                            continue;
                        }
                        session.give_iterator(
                            before
                                .drain(..)
                                .map(|(out, n)| (out, time, -n))
                                .chain(after.drain(..).map(|(out, n)| (out, time, n))),
                        );
                    }
                    // A map grown by a large time (a backfill) is dropped once times
                    // are small again (a live run): draining it would visit all its
                    // buckets at every time.
                    if worth_keeping(sums.capacity(), used) {
                        spare = Some(sums);
                    }
                }
                if report.due(frontier.frontier().is_empty()) {
                    let entry = std::mem::size_of::<(D, R)>();
                    state_sizes::report(&name, totals.len(), totals.capacity(), entry, None);
                }
            }
        })
        .as_collection()
}

/// Adds `diff` to `key`'s total in `totals`, a map that keeps no zero total (a key
/// whose total returns to zero leaves it); returns whether the total was nonzero
/// before, and whether it is after. The state of every operator here that sums into a
/// map goes through it.
#[inline]
pub fn add_to_total<K: Hash + Eq, R: Semigroup>(
    totals: &mut FxHashMap<K, R>,
    key: K,
    diff: &R,
) -> (bool, bool) {
    match totals.entry(key) {
        Entry::Occupied(mut total) => {
            total.get_mut().plus_equals(diff);
            if total.get().is_zero() {
                total.remove();
                (true, false)
            } else {
                (true, true)
            }
        }
        Entry::Vacant(slot) => {
            if diff.is_zero() {
                return (false, false);
            }
            slot.insert(diff.clone());
            (false, true)
        }
    }
}

/// [`add_to_total`] for a short list of `(key, total)` searched in place instead of a
/// map (a handful of keys, where a hash map's table costs more than a scan): a total
/// that returns to zero leaves the list, and the answer is the same pair.
#[inline]
pub fn add_to_list<K: Eq, R: Semigroup>(list: &mut Vec<(K, R)>, key: K, diff: &R) -> (bool, bool) {
    match list.iter().position(|(k, _)| *k == key) {
        Some(at) => {
            list[at].1.plus_equals(diff);
            if list[at].1.is_zero() {
                list.swap_remove(at);
                (true, false)
            } else {
                (true, true)
            }
        }
        None if diff.is_zero() => (false, false),
        None => {
            list.push((key, diff.clone()));
            (false, true)
        }
    }
}

/// A multiset of records as a difference: each distinct record with its multiplicity
/// (`R`, by default a count), none zero, in a short list sorted by record, so that two
/// equal bags are equal as values too. A hash total whose difference holds one (alone,
/// or in a tuple with counts: differential sums tuples field by field) keeps a key's
/// few facts (catalogue rows, plan changes, a month's days) in place, where a reduce
/// kept vectors of its inputs and of its output.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Bag<T, R = isize>(Vec<(T, R)>);

impl<T, R> Default for Bag<T, R> {
    fn default() -> Self {
        Bag(Vec::new())
    }
}

impl<T, R> Bag<T, R> {
    /// One record with multiplicity `r` (which must not be zero).
    pub fn single(record: T, r: R) -> Bag<T, R> {
        Bag(vec![(record, r)])
    }

    /// The records in order, each with its multiplicity (never zero).
    pub fn iter(&self) -> impl Iterator<Item = &(T, R)> {
        self.0.iter()
    }

    /// Whether no record is in it.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl<T> Bag<T> {
    /// One record, once.
    pub fn one(record: T) -> Bag<T> {
        Bag::single(record, 1)
    }
}

impl<T: Ord + Clone + 'static, R: Semigroup> IsZero for Bag<T, R> {
    fn is_zero(&self) -> bool {
        self.0.is_empty()
    }
}

impl<T: Ord + Clone + 'static, R: Semigroup> Semigroup for Bag<T, R> {
    fn plus_equals(&mut self, rhs: &Bag<T, R>) {
        for (record, r) in &rhs.0 {
            match self.0.binary_search_by(|(mine, _)| mine.cmp(record)) {
                Ok(at) => {
                    self.0[at].1.plus_equals(r);
                    if self.0[at].1.is_zero() {
                        self.0.remove(at);
                    }
                }
                Err(at) if !r.is_zero() => self.0.insert(at, (record.clone(), r.clone())),
                Err(_) => {}
            }
        }
    }
}

impl<T, R: Multiply<isize, Output = R> + IsZero> Multiply<isize> for Bag<T, R> {
    type Output = Bag<T, R>;
    fn multiply(self, rhs: &isize) -> Bag<T, R> {
        Bag((self.0.into_iter())
            .map(|(record, r)| (record, r.multiply(rhs)))
            .filter(|(_, r)| !r.is_zero())
            .collect())
    }
}

/// Differential's `count_total`, `threshold_total` and `distinct_total` as methods of a
/// collection, computed by [`totals_by_hash`].
pub trait HashTotals<'s, D, R> {
    /// `count_total()`: `(key, total)` for every key with a nonzero total.
    fn count_by_hash(self) -> VecCollection<'s, Time, (D, R), isize>;

    /// `threshold_total(thresh)`: every key with a nonzero total, `thresh(key, total)`
    /// times.
    fn threshold_by_hash<F>(self, thresh: F) -> VecCollection<'s, Time, D, isize>
    where
        F: FnMut(&D, &R) -> isize + 'static;

    /// `distinct_total()`: every key with a nonzero total, once.
    fn distinct_by_hash(self) -> VecCollection<'s, Time, D, isize>;
}

impl<'s, D, R> HashTotals<'s, D, R> for VecCollection<'s, Time, D, R>
where
    D: ExchangeData + Hashable + Hash + Eq,
    R: ExchangeData + Semigroup,
{
    fn count_by_hash(self) -> VecCollection<'s, Time, (D, R), isize> {
        totals_by_hash(self, Count, "CountTotal")
    }

    fn threshold_by_hash<F>(self, thresh: F) -> VecCollection<'s, Time, D, isize>
    where
        F: FnMut(&D, &R) -> isize + 'static,
    {
        totals_by_hash(self, Threshold(thresh), "ThresholdTotal")
    }

    fn distinct_by_hash(self) -> VecCollection<'s, Time, D, isize> {
        totals_by_hash(self, Threshold(|_: &D, _: &R| 1), "DistinctTotal")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use differential_dataflow::consolidation::consolidate_updates;
    use differential_dataflow::input::Input;
    use differential_dataflow::operators::{CountTotal, ThresholdTotal};
    use std::sync::{Arc, Mutex};
    use timely::dataflow::operators::Inspect;

    /// A list summed by [`add_to_list`] answers as a map summed by [`add_to_total`]
    /// does, and holds the same nonzero totals, whatever the keys and diffs (zero diffs,
    /// totals that return to zero and come back).
    #[test]
    fn a_list_sums_as_a_map_does() {
        let mut next = crate::test_numbers(17);
        for case in 0..300 {
            let mut list: Vec<(u8, i32)> = Vec::new();
            let mut map: FxHashMap<u8, i32> = FxHashMap::default();
            for _ in 0..next(40) {
                let (key, diff) = (next(6) as u8, next(5) as i32 - 2);
                let expected = add_to_total(&mut map, key, &diff);
                assert_eq!(add_to_list(&mut list, key, &diff), expected, "case {case}");
            }
            let mut held: Vec<(u8, i32)> = map.into_iter().collect();
            held.sort_unstable();
            list.sort_unstable();
            assert_eq!(list, held, "case {case}");
        }
    }

    type Key = u16;
    type Seen<D> = Arc<Mutex<Vec<(D, Time, isize)>>>;

    /// What both implementations output for `updates`, each consolidated: (ours,
    /// differential's) for the count, a threshold and the distinct.
    #[allow(clippy::type_complexity)]
    fn both(
        updates: &[(Key, Time, isize)],
        workers: usize,
    ) -> [(Vec<(Key, Time, isize)>, Vec<(Key, Time, isize)>); 3] {
        // A threshold that depends on the key and on the total's sign and size.
        fn thresh(key: &Key, total: &isize) -> isize {
            if *total > 0 {
                (*key % 3) as isize + total.min(&2)
            } else {
                -1
            }
        }
        let seen: [Seen<Key>; 4] = Default::default();
        let counts: [Seen<(Key, isize)>; 2] = Default::default();
        let (seen_in, counts_in) = (seen.clone(), counts.clone());
        let updates = updates.to_vec();
        timely::execute(timely::Config::process(workers), move |worker| {
            let (seen, counts) = (seen_in.clone(), counts_in.clone());
            let mut input = worker.dataflow::<Time, _, _>(|scope| {
                let (input, data) = scope.new_collection::<Key, isize>();
                let keep = |to: &Seen<Key>| {
                    let to = to.clone();
                    move |update: &(Key, Time, isize)| to.lock().unwrap().push(*update)
                };
                let keep_count = |to: &Seen<(Key, isize)>| {
                    let to = to.clone();
                    move |update: &((Key, isize), Time, isize)| to.lock().unwrap().push(*update)
                };
                data.clone()
                    .count_by_hash()
                    .inner
                    .inspect(keep_count(&counts[0]));
                data.clone()
                    .arrange_by_self()
                    .count_total()
                    .inner
                    .inspect(keep_count(&counts[1]));
                data.clone()
                    .threshold_by_hash(thresh)
                    .inner
                    .inspect(keep(&seen[0]));
                data.clone()
                    .arrange_by_self()
                    .threshold_total(thresh)
                    .inner
                    .inspect(keep(&seen[1]));
                data.clone()
                    .distinct_by_hash()
                    .inner
                    .inspect(keep(&seen[2]));
                data.arrange_by_self()
                    .threshold_total(|_, _| 1)
                    .inner
                    .inspect(keep(&seen[3]));
                input
            });
            if worker.index() == 0 {
                for &(key, time, diff) in &updates {
                    input.advance_to(time);
                    input.update(key, diff);
                }
            }
        })
        .expect("the dataflow runs");
        let take = |s: &Seen<Key>| {
            let mut v = std::mem::take(&mut *s.lock().unwrap());
            consolidate_updates(&mut v);
            v
        };
        // Counts as (key, count) records, flattened to compare like the others: the
        // count goes into the key's place (keys and counts stay small here).
        let take_counts = |s: &Seen<(Key, isize)>| {
            let mut v: Vec<(Key, Time, isize)> = std::mem::take(&mut *s.lock().unwrap())
                .into_iter()
                .map(|((key, count), time, diff)| (key * 1000 + (count + 500) as Key, time, diff))
                .collect();
            consolidate_updates(&mut v);
            v
        };
        [
            (take_counts(&counts[0]), take_counts(&counts[1])),
            (take(&seen[0]), take(&seen[1])),
            (take(&seen[2]), take(&seen[3])),
        ]
    }

    /// Counts, thresholds and distincts by hash equal differential's operators over an
    /// arrangement, time by time, for random updates (retractions and totals that go
    /// negative included) on one and two workers.
    #[test]
    fn hash_totals_equal_differentials_operators() {
        let mut next = crate::test_numbers(11);
        for case in 0..40 {
            let n = next(300) as usize;
            let mut updates: Vec<(Key, Time, isize)> = (0..n)
                .map(|_| (next(12) as Key, next(6), next(6) as isize - 2))
                .collect();
            updates.sort_by_key(|u| u.1);
            for workers in [1, 2] {
                for (which, (ours, theirs)) in both(&updates, workers).into_iter().enumerate() {
                    assert_eq!(
                        ours, theirs,
                        "case {case}, {workers} workers, operator {which}: {updates:?}"
                    );
                }
            }
        }
    }
}
