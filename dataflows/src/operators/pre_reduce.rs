//! A reduce on each worker's own updates of one logical time, before they are exchanged
//! and arranged: for reductions whose partial results compose, so that the arrangement
//! downstream holds one partial result where it would hold every input record.
//!
//! [`combine`](crate::operators::combine::combine) is the special case that sums equal
//! records. Sessions use the general one: a worker cuts its own events of a (user, day)
//! into runs with gaps below the session gap, and the session reduce cuts the runs of
//! every worker and every time as it would cut the events (see
//! [`crate::metrics::sessions`]).

use std::collections::hash_map::Entry;
use std::hash::Hash;

use differential_dataflow::{AsCollection, ExchangeData, VecCollection};
use rustc_hash::FxHashMap;
use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::operators::Capability;

use crate::operators::gate::{Time, RELEASE_CHUNK};
use crate::operators::held::{worth_keeping, HeldByTime};

/// Groups the updates of `data` per key and logical time on each worker and, once the
/// input has passed the time, replaces each key's group by what `logic` makes of it:
/// `logic(key, values, output)` gets the key's values with their differences (in
/// arrival order) and pushes the records to send for the key, with differences. Each
/// record of `data` becomes its `(key, value)` through `map`, in this operator: a map
/// operator ahead of it would copy every record once more (the sessions' runs are cut
/// this way straight from the accepted events).
///
/// ```
/// use std::sync::{Arc, Mutex};
/// use differential_dataflow::input::Input;
/// use tidemark_dataflows::operators::pre_reduce::pre_reduce;
/// use timely::dataflow::operators::Inspect;
///
/// let seen = Arc::new(Mutex::new(Vec::new()));
/// let out = Arc::clone(&seen);
/// timely::execute_directly(move |worker| {
///     let mut input = worker.dataflow::<u64, _, _>(|scope| {
///         let (input, values) = scope.new_collection::<(char, u32), isize>();
///         // The largest value of each key, per worker and time.
///         pre_reduce(values, "Largest", |record| record, |_key, values, output| {
///             let largest = values.iter().map(|(v, _)| *v).max();
///             output.extend(largest.map(|v| (v, 1)));
///         })
///         .inner
///         .inspect(move |update| out.lock().unwrap().push(update.clone()));
///         input
///     });
///     input.insert(('a', 3));
///     input.insert(('a', 7));
///     input.insert(('b', 1));
///     input.advance_to(1);
///     input.insert(('a', 2));
/// });
/// let mut seen = seen.lock().unwrap().clone();
/// seen.sort();
/// assert_eq!(seen, [(('a', 2), 1, 1), (('a', 7), 0, 1), (('b', 1), 0, 1)]);
/// ```
pub fn pre_reduce<'s, S, K, V, O, L>(
    data: VecCollection<'s, Time, S>,
    name: &str,
    mut map: impl FnMut(S) -> (K, V) + 'static,
    mut logic: L,
) -> VecCollection<'s, Time, (K, O)>
where
    S: ExchangeData,
    K: ExchangeData + Hash + Eq,
    V: ExchangeData,
    O: ExchangeData,
    L: FnMut(&K, &mut [(V, isize)], &mut Vec<(O, isize)>) + 'static,
{
    type Releasing<K, V> = (Time, Capability<Time>, Grouped<K, V>);
    let scope = data.inner.scope();
    data.inner
        .unary_frontier(Pipeline, name, |_capability, info| {
            let activator = scope.activator_for(info.address);
            let mut groups: HeldByTime<Capability<Time>, Groups<K, V>> = HeldByTime::default();
            // The complete time being released, a chunk of keys per activation (see
            // [`RELEASE_CHUNK`]).
            let mut releasing: Option<Releasing<K, V>> = None;
            let mut made: Vec<(O, isize)> = Vec::new();
            // The emptied groups of the time last released, whose room the next new
            // time takes: a backfill's times are large, and a vector grown anew for
            // each would copy its updates at every doubling.
            let mut spare: Option<Groups<K, V>> = None;
            move |(input, frontier), output| {
                input.for_each(|cap, batch| {
                    // A batch's updates mostly share one time: look it up once per run.
                    let mut updates = batch.drain(..).peekable();
                    while let Some(&(_, time, _)) = updates.peek() {
                        let time_groups = groups.at_with(
                            time,
                            || cap.delayed(&time, 0),
                            || spare.take().unwrap_or_default(),
                        );
                        while let Some((record, _, diff)) = updates.next_if(|u| u.1 == time) {
                            let (key, value) = map(record);
                            time_groups.push(key, value, diff);
                        }
                    }
                });
                loop {
                    if releasing.is_none() {
                        let Some((time, cap, mut time_groups)) =
                            groups.pop_complete(|time| !frontier.frontier().less_equal(&time))
                        else {
                            break;
                        };
                        let grouped = time_groups.grouped();
                        if worth_keeping(time_groups.updates.capacity(), grouped.values.len()) {
                            spare = Some(time_groups);
                        }
                        releasing = Some((time, cap, grouped));
                    }
                    let Some((time, cap, left)) = releasing.as_mut() else {
                        break;
                    };
                    let time = *time;
                    let mut session = output.session(cap);
                    for _ in 0..RELEASE_CHUNK {
                        let Some((key, values)) = left.next_group() else {
                            break;
                        };
                        logic(key, values, &mut made);
                        for (record, diff) in made.drain(..) {
                            session.give(((key.clone(), record), time, diff));
                        }
                    }
                    drop(session);
                    if !left.is_done() {
                        activator.activate();
                        break;
                    }
                    releasing = None;
                }
            }
        })
        .as_collection()
}

/// One logical time's updates on one worker, by key: each key gets a group number as
/// it first comes, and the updates are kept in one vector with their group's number,
/// not in a vector per key that grows by doubling (an allocation and a copy each time
/// it fills, for every key).
struct Groups<K, V> {
    number: FxHashMap<K, u32>,
    keys: Vec<K>,
    updates: Vec<(u32, V, isize)>,
}

impl<K, V> Default for Groups<K, V> {
    fn default() -> Self {
        Groups {
            number: FxHashMap::default(),
            keys: Vec::new(),
            updates: Vec::new(),
        }
    }
}

impl<K: Clone + Hash + Eq, V> Groups<K, V> {
    /// Adds an update of `key`.
    fn push(&mut self, key: K, value: V, diff: isize) {
        let group = match self.number.entry(key) {
            Entry::Occupied(number) => *number.get(),
            Entry::Vacant(slot) => {
                let group = self.keys.len() as u32;
                self.keys.push(slot.key().clone());
                *slot.insert(group)
            }
        };
        self.updates.push((group, value, diff));
    }

    /// The updates sorted by group (a counting sort: stable, so each key's values stay
    /// in arrival order), to be taken a key at a time. Leaves the groups empty, with
    /// their room.
    fn grouped(&mut self) -> Grouped<K, V> {
        self.number.clear();
        let keys = std::mem::take(&mut self.keys);
        let updates = &mut self.updates;
        // `next[g]`: where group g's next value goes; it starts where the group
        // begins and ends where it ends.
        let mut next = vec![0usize; keys.len() + 1];
        for (group, _, _) in updates.iter() {
            next[*group as usize + 1] += 1;
        }
        for g in 1..next.len() {
            next[g] += next[g - 1];
        }
        let mut slots: Vec<Option<(V, isize)>> = Vec::with_capacity(updates.len());
        slots.resize_with(updates.len(), || None);
        for (group, value, diff) in updates.drain(..) {
            let at = &mut next[group as usize];
            slots[*at] = Some((value, diff));
            *at += 1;
        }
        let values = slots
            .into_iter()
            .map(|slot| slot.expect("every slot is filled"))
            .collect();
        let mut ends = next;
        ends.truncate(keys.len());
        Grouped {
            keys,
            ends,
            values,
            group: 0,
        }
    }
}

/// One time's values sorted by key (see [`Groups::grouped`]), taken a key at a time.
struct Grouped<K, V> {
    keys: Vec<K>,
    /// Where each key's values end in `values`.
    ends: Vec<usize>,
    values: Vec<(V, isize)>,
    /// The next key to take.
    group: usize,
}

impl<K, V> Grouped<K, V> {
    /// The next key with its values, in the order the keys first came.
    fn next_group(&mut self) -> Option<(&K, &mut [(V, isize)])> {
        let g = self.group;
        let key = self.keys.get(g)?;
        let start = if g == 0 { 0 } else { self.ends[g - 1] };
        self.group += 1;
        Some((key, &mut self.values[start..self.ends[g]]))
    }

    /// Whether every key was taken.
    fn is_done(&self) -> bool {
        self.group >= self.keys.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each key's values come out together, in arrival order, keys in the order they
    /// first came, whatever the interleaving; emptied groups take a new time's updates
    /// as a fresh one would.
    #[test]
    fn groups_keep_each_keys_values_in_arrival_order() {
        let mut next = crate::test_numbers(5);
        let mut groups: Groups<u8, u64> = Groups::default();
        for _case in 0..50 {
            let updates: Vec<(u8, u64, isize)> = (0..next(40))
                .map(|_| (next(5) as u8, next(100), next(3) as isize - 1))
                .collect();
            for &(key, value, diff) in &updates {
                groups.push(key, value, diff);
            }
            let mut expected: Vec<(u8, Vec<(u64, isize)>)> = Vec::new();
            for &(key, value, diff) in &updates {
                match expected.iter_mut().find(|(k, _)| *k == key) {
                    Some((_, values)) => values.push((value, diff)),
                    None => expected.push((key, vec![(value, diff)])),
                }
            }
            let mut grouped = groups.grouped();
            let mut got = Vec::new();
            while let Some((key, values)) = grouped.next_group() {
                got.push((*key, values.to_vec()));
            }
            assert!(grouped.is_done());
            assert_eq!(got, expected);
        }
    }
}
