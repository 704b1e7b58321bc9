//! A reduce on each worker's own updates of one logical time, before they are exchanged
//! and arranged: for reductions whose partial results compose, so that the arrangement
//! downstream holds one partial result where it would hold every input record.
//!
//! [`combine`](crate::operators::combine::combine) is the special case that sums equal
//! records. Sessions use the general one: a worker cuts its own events of a (user, day)
//! into runs with gaps below the session gap, and the session reduce cuts the runs of
//! every worker and every time as it would cut the events (see
//! [`crate::metrics::sessions`]).

use std::hash::Hash;

use differential_dataflow::{AsCollection, ExchangeData, VecCollection};
use rustc_hash::FxHashMap;
use std::collections::hash_map::IntoIter;
use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::operators::Capability;

use crate::operators::gate::{Time, RELEASE_CHUNK};
use crate::operators::held::HeldByTime;

/// Groups the updates of `data` per key and logical time on each worker and, once the
/// input has passed the time, replaces each key's group by what `logic` makes of it:
/// `logic(key, values, output)` gets the key's values with their differences (in
/// arrival order) and pushes the records to send for the key, with differences.
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
///         pre_reduce(values, "Largest", |_key, values, output| {
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
pub fn pre_reduce<'s, K, V, O, L>(
    data: VecCollection<'s, Time, (K, V)>,
    name: &str,
    mut logic: L,
) -> VecCollection<'s, Time, (K, O)>
where
    K: ExchangeData + Hash + Eq,
    V: ExchangeData,
    O: ExchangeData,
    L: FnMut(&K, &mut Vec<(V, isize)>, &mut Vec<(O, isize)>) + 'static,
{
    type Groups<K, V> = FxHashMap<K, Vec<(V, isize)>>;
    type Releasing<K, V> = (Time, Capability<Time>, IntoIter<K, Vec<(V, isize)>>);
    let scope = data.inner.scope();
    data.inner
        .unary_frontier(Pipeline, name, |_capability, info| {
            let activator = scope.activator_for(info.address);
            let mut groups: HeldByTime<Capability<Time>, Groups<K, V>> = HeldByTime::default();
            // The complete time being released, a chunk of keys per activation (see
            // [`RELEASE_CHUNK`]).
            let mut releasing: Option<Releasing<K, V>> = None;
            let mut made: Vec<(O, isize)> = Vec::new();
            move |(input, frontier), output| {
                input.for_each(|cap, batch| {
                    // A batch's updates mostly share one time: look it up once per run.
                    let mut updates = batch.drain(..).peekable();
                    while let Some(&(_, time, _)) = updates.peek() {
                        let time_groups = groups.at(time, || cap.delayed(&time, 0));
                        while let Some(((key, value), _, diff)) = updates.next_if(|u| u.1 == time) {
                            time_groups.entry(key).or_default().push((value, diff));
                        }
                    }
                });
                loop {
                    if releasing.is_none() {
                        let Some((time, cap, time_groups)) =
                            groups.pop_complete(|time| !frontier.frontier().less_equal(&time))
                        else {
                            break;
                        };
                        releasing = Some((time, cap, time_groups.into_iter()));
                    }
                    let Some((time, cap, left)) = releasing.as_mut() else {
                        break;
                    };
                    let time = *time;
                    let mut session = output.session(cap);
                    for (key, mut values) in left.by_ref().take(RELEASE_CHUNK) {
                        logic(&key, &mut values, &mut made);
                        for (record, diff) in made.drain(..) {
                            session.give(((key.clone(), record), time, diff));
                        }
                    }
                    drop(session);
                    if left.len() > 0 {
                        activator.activate();
                        break;
                    }
                    releasing = None;
                }
            }
        })
        .as_collection()
}
