//! A semijoin over totally ordered times, kept in hash maps: the records of a large
//! collection whose key is in a small, rarely changing set.
//!
//! Differential's `semijoin` arranges both inputs: every record of the large side is
//! sorted by the batcher, sealed into a batch and merged into a spine, only so that a
//! key joining the set later can find its records. tidemark's times are totally
//! ordered, so [`semijoin_by_hash`] keeps each key's records in a vector under a hash
//! map instead, and the set's multiplicities in a second map. At each complete
//! logical time the set's changes meet the records so far, then the time's records
//! meet the set after its changes: the delta of the join, `D·ΔK + ΔD·(K + ΔK)`.

use std::collections::hash_map::Entry;
use std::hash::Hash;

use differential_dataflow::consolidation::consolidate;
use differential_dataflow::hashable::Hashable;
use differential_dataflow::{AsCollection, ExchangeData, VecCollection};
use rustc_hash::{FxHashMap, FxHashSet};
use smallvec::{smallvec, SmallVec};
use timely::dataflow::channels::pact::{Exchange, ParallelizationContract, Pipeline};
use timely::dataflow::operators::generic::Operator;

use crate::operators::gate::Time;
use crate::operators::held::{
    hold_updates, pop_complete_pair, sum_updates, HeldByTime, HeldSums, HeldUpdates,
};
use crate::operators::totals::add_to_total;

/// `data.semijoin(keys)`: every record `(key, value)` of `data` whose key has a nonzero
/// multiplicity in `keys`, the two multiplicities multiplied, the same collection as
/// differential's operator gives (see the module docs).
///
/// ```
/// use std::sync::{Arc, Mutex};
/// use differential_dataflow::input::Input;
/// use tidemark_dataflows::operators::semijoin::semijoin_by_hash;
/// use timely::dataflow::operators::Inspect;
///
/// let seen = Arc::new(Mutex::new(Vec::new()));
/// let out = Arc::clone(&seen);
/// timely::execute_directly(move |worker| {
///     let (mut data, mut keys) = worker.dataflow::<u64, _, _>(|scope| {
///         let (data_in, data) = scope.new_collection::<(u32, char), isize>();
///         let (keys_in, keys) = scope.new_collection::<u32, isize>();
///         semijoin_by_hash(data, keys, "Semijoin")
///             .inner
///             .inspect(move |update| out.lock().unwrap().push(*update));
///         (data_in, keys_in)
///     });
///     data.insert((1, 'a'));
///     data.insert((2, 'b'));
///     keys.insert(2);
///     data.advance_to(1);
///     keys.advance_to(1);
///     keys.insert(1); // key 1 joins the set later: its record follows
///     data.advance_to(2);
///     keys.advance_to(2);
/// });
/// let mut seen = seen.lock().unwrap().clone();
/// seen.sort();
/// assert_eq!(seen, [((1, 'a'), 1, 1), ((2, 'b'), 0, 1)]);
/// ```
pub fn semijoin_by_hash<'s, K, V>(
    data: VecCollection<'s, Time, (K, V)>,
    keys: VecCollection<'s, Time, K>,
    name: &str,
) -> VecCollection<'s, Time, (K, V)>
where
    K: ExchangeData + Hashable + Hash + Eq,
    V: ExchangeData + Ord,
{
    let data_route =
        Exchange::new(|((key, _), _time, _diff): &((K, V), Time, isize)| key.hashed().into());
    semijoin_core(data, keys, name, data_route, |key: &K| key.hashed().into())
}

/// [`semijoin_by_hash`] of `data` that is already partitioned by `route` of its keys
/// (every record on the worker that an exchange by `route(key)` picks): the records stay
/// where they are, only the keys move, by the same route. Accepted events come
/// partitioned by user ([`crate::model::action::ActionsByUser`]), so records keyed by
/// (user, ...) join without an exchange of every event.
pub fn semijoin_partitioned<'s, K, V>(
    data: VecCollection<'s, Time, (K, V)>,
    keys: VecCollection<'s, Time, K>,
    name: &str,
    route: impl Fn(&K) -> u64 + 'static,
) -> VecCollection<'s, Time, (K, V)>
where
    K: ExchangeData + Hash + Eq,
    V: ExchangeData + Ord,
{
    semijoin_core(data, keys, name, Pipeline, route)
}

/// The semijoin operator, its data side moved by `data_pact` and its keys by `route`.
fn semijoin_core<'s, K, V, P>(
    data: VecCollection<'s, Time, (K, V)>,
    keys: VecCollection<'s, Time, K>,
    name: &str,
    data_pact: P,
    route: impl Fn(&K) -> u64 + 'static,
) -> VecCollection<'s, Time, (K, V)>
where
    K: ExchangeData + Hash + Eq,
    V: ExchangeData + Ord,
    P: ParallelizationContract<Time, Vec<((K, V), Time, isize)>>,
{
    let keys_route = Exchange::new(move |(key, _time, _diff): &(K, Time, isize)| route(key));
    data.inner
        .binary_frontier(
            keys.inner,
            data_pact,
            keys_route,
            name,
            move |_capability, _info| {
                let mut held_data: HeldUpdates<((K, V), isize)> = HeldByTime::default();
                let mut held_keys: HeldSums<K, isize> = HeldByTime::default();
                // Each key's records so far, and every key of the set with its
                // multiplicity (never zero).
                let mut records: Records<K, V> = Records::default();
                let mut set: FxHashMap<K, isize> = FxHashMap::default();
                move |(data_in, data_frontier), (keys_in, keys_frontier), output| {
                    data_in.for_each(|cap, batch| {
                        hold_updates(&mut held_data, &cap, batch, |record, _, diff| {
                            (record, diff)
                        })
                    });
                    keys_in.for_each(|cap, batch| {
                        sum_updates(&mut held_keys, &cap, batch, FxHashMap::default)
                    });
                    let complete = |time: Time| {
                        !data_frontier.frontier().less_equal(&time)
                            && !keys_frontier.frontier().less_equal(&time)
                    };
                    while let Some((time, cap, mut data, key_changes)) =
                        pop_complete_pair(&mut held_data, &mut held_keys, complete)
                    {
                        let mut session = output.session(&cap);
                        // The set's changes meet the records so far.
                        for (key, change) in key_changes.into_iter().flatten() {
                            if change == 0 {
                                continue;
                            }
                            records.for_each(&key, |value, diff| {
                                let record = (key.clone(), value.clone());
                                session.give((record, time, diff * change));
                            });
                            add_to_total(&mut set, key, &change);
                        }
                        // The time's records meet the set after them, and are kept.
                        let held = data.as_ref().map_or(0, Vec::len);
                        for ((key, value), diff) in data.iter_mut().flat_map(|d| d.drain(..)) {
                            if diff == 0 {
                                continue;
                            }
                            if let Some(count) = set.get(&key) {
                                let record = (key.clone(), value.clone());
                                session.give((record, time, diff * count));
                            }
                            records.add(key, value, diff);
                        }
                        records.settle();
                        if let Some(data) = data {
                            held_data.recycle(data, held);
                        }
                    }
                }
            },
        )
        .as_collection()
}

/// The records of the large side so far, by key. Almost every record comes once (a
/// multiplicity of one), so those are kept as bare values, 8 bytes an event for
/// `EventsOnChangeDays`, in lists trimmed to their length once a time has grown them;
/// the few of another multiplicity (a retraction, a repeat) are kept with it, apart.
struct Records<K, V> {
    /// Each key's records of multiplicity one; the first two in place (most keys of
    /// `EventsOnChangeDays`, a user's day, have one or two events: no allocation each).
    ones: FxHashMap<K, SmallVec<[V; 2]>>,
    /// Each key's records of any other multiplicity (never zero once settled).
    others: FxHashMap<K, Vec<(V, isize)>>,
    /// The keys whose lists the time being added grew, to trim when it ends.
    grown: Vec<K>,
    /// The keys to which the time being added took a record back, to sum when it ends.
    retracted: FxHashSet<K>,
}

impl<K, V> Default for Records<K, V> {
    fn default() -> Self {
        Records {
            ones: FxHashMap::default(),
            others: FxHashMap::default(),
            grown: Vec::new(),
            retracted: FxHashSet::default(),
        }
    }
}

impl<K: Hash + Eq + Clone, V: Ord + Clone> Records<K, V> {
    /// Calls `f` with each record of `key` and its multiplicity.
    fn for_each(&self, key: &K, mut f: impl FnMut(&V, isize)) {
        for value in self.ones.get(key).into_iter().flatten() {
            f(value, 1);
        }
        for (value, diff) in self.others.get(key).into_iter().flatten() {
            f(value, *diff);
        }
    }

    /// Adds a record with a nonzero multiplicity: an insert costs a push, and a
    /// retraction is summed with the key's records when the time is settled.
    fn add(&mut self, key: K, value: V, diff: isize) {
        if diff == 1 {
            match self.ones.entry(key) {
                Entry::Occupied(mut list) => {
                    if list.get().len() == list.get().capacity() {
                        // This push moves the list into doubled room.
                        self.grown.push(list.key().clone());
                    }
                    list.get_mut().push(value);
                }
                Entry::Vacant(list) => {
                    list.insert(smallvec![value]);
                }
            }
        } else {
            if diff < 0 {
                self.retracted.insert(key.clone());
            }
            self.others.entry(key).or_default().push((value, diff));
        }
    }

    /// Ends a time: the records of each key that some were taken from are summed (a
    /// retired day costs a sort of its records), and each list the time grew gives
    /// back room beyond a quarter more than its length.
    fn settle(&mut self) {
        for key in std::mem::take(&mut self.retracted) {
            let mut all: Vec<(V, isize)> = self
                .ones
                .remove(&key)
                .into_iter()
                .flatten()
                .map(|value| (value, 1))
                .collect();
            all.extend(self.others.remove(&key).into_iter().flatten());
            consolidate(&mut all);
            let (ones, others): (Vec<_>, Vec<_>) = all.into_iter().partition(|(_, d)| *d == 1);
            if !ones.is_empty() {
                let ones = ones.into_iter().map(|(value, _)| value).collect();
                self.ones.insert(key.clone(), ones);
            }
            if !others.is_empty() {
                self.others.insert(key, others);
            }
        }
        for key in std::mem::take(&mut self.grown) {
            if let Some(list) = self.ones.get_mut(&key) {
                if list.capacity() > list.len() + list.len() / 4 {
                    list.shrink_to_fit();
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use differential_dataflow::consolidation::consolidate_updates;
    use differential_dataflow::input::Input;
    use differential_dataflow::AsCollection;
    use std::sync::{Arc, Mutex};
    use timely::dataflow::operators::{Exchange as _, Inspect};

    type Record = (u8, u8);
    type Updates = Vec<(Record, Time, isize)>;
    type Seen = Arc<Mutex<Updates>>;

    /// A route of keys that differs from their hash's: the partitioned semijoin must
    /// send the keys where this route put the records.
    fn route(key: &u8) -> u64 {
        u64::from(*key / 2)
    }

    /// What the implementations output for `data` and `keys` updates, each
    /// consolidated: (ours, ours on data partitioned by [`route`], differential's).
    fn both(
        data: &[(Record, Time, isize)],
        keys: &[(u8, Time, isize)],
        workers: usize,
    ) -> (Updates, Updates, Updates) {
        let seen: [Seen; 3] = Default::default();
        let seen_in = seen.clone();
        let (data, keys) = (data.to_vec(), keys.to_vec());
        timely::execute(timely::Config::process(workers), move |worker| {
            let seen = seen_in.clone();
            let (mut data_in, mut keys_in) = worker.dataflow::<Time, _, _>(|scope| {
                let (data_in, data) = scope.new_collection::<Record, isize>();
                let (keys_in, keys) = scope.new_collection::<u8, isize>();
                let keep = |to: &Seen| {
                    let to = to.clone();
                    move |update: &(Record, Time, isize)| to.lock().unwrap().push(*update)
                };
                semijoin_by_hash(data.clone(), keys.clone(), "Ours")
                    .inner
                    .inspect(keep(&seen[0]));
                let partitioned = data
                    .inner
                    .clone()
                    .exchange(|((key, _), _, _): &(Record, Time, isize)| route(key))
                    .as_collection();
                semijoin_partitioned(partitioned, keys.clone(), "Partitioned", route)
                    .inner
                    .inspect(keep(&seen[1]));
                data.semijoin(keys).inner.inspect(keep(&seen[2]));
                (data_in, keys_in)
            });
            if worker.index() == 0 {
                for time in 0..=8 {
                    data_in.advance_to(time);
                    keys_in.advance_to(time);
                    for &(record, _, diff) in data.iter().filter(|u| u.1 == time) {
                        data_in.update(record, diff);
                    }
                    for &(key, _, diff) in keys.iter().filter(|u| u.1 == time) {
                        keys_in.update(key, diff);
                    }
                }
            }
        })
        .expect("the dataflow runs");
        let take = |s: &Seen| {
            let mut v = std::mem::take(&mut *s.lock().unwrap());
            consolidate_updates(&mut v);
            v
        };
        (take(&seen[0]), take(&seen[1]), take(&seen[2]))
    }

    /// The hash semijoin, and its form for data already partitioned, equal
    /// differential's semijoin, time by time, for random updates on both sides
    /// (retractions, and keys whose multiplicity goes above one or below zero,
    /// included), on one, two and three workers.
    #[test]
    fn hash_semijoins_equal_differentials_semijoin() {
        let mut next = crate::test_numbers(17);
        for case in 0..60 {
            let data: Vec<(Record, Time, isize)> = (0..next(60))
                .map(|_| {
                    (
                        (next(6) as u8, next(4) as u8),
                        next(8),
                        next(5) as isize - 1,
                    )
                })
                .collect();
            let keys: Vec<(u8, Time, isize)> = (0..next(12))
                .map(|_| (next(6) as u8, next(8), next(4) as isize - 1))
                .collect();
            for workers in [1, 2, 3] {
                let (ours, partitioned, theirs) = both(&data, &keys, workers);
                assert_eq!(ours, theirs, "case {case}, {workers} workers");
                assert_eq!(
                    partitioned, theirs,
                    "partitioned: case {case}, {workers} workers"
                );
            }
        }
    }
}
