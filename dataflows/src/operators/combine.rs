//! Pre-aggregation on the worker that holds the data, before it is exchanged and
//! arranged: equal records of one logical time are summed into one update.
//!
//! Several metrics need only day or window facts of the accepted events: a (user, day)
//! pair, a (day, event type) count, a (window, user) count, a (user, type) first day. A
//! user with ten events in a day would otherwise send ten updates through the exchange,
//! the batcher and the arrangement where one update with multiplicity ten says the same.
//! This is the combiner of MapReduce and Spark's partial aggregation. The collection's
//! content is unchanged, so every table is too.

use std::hash::Hash;

use differential_dataflow::difference::Semigroup;
use differential_dataflow::{AsCollection, ExchangeData, VecCollection};
use rustc_hash::FxHashMap;
use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::operators::Capability;

use crate::operators::gate::{Time, RELEASE_CHUNK};
use crate::operators::held::{sum_mapped_updates, worth_keeping, HeldByTime, HeldSums};

/// A complete time being released: its capability and the sums not sent yet.
type Releasing<D, R> = (Time, Capability<Time>, std::vec::IntoIter<(D, R)>);

/// Sums the updates of `data` per record and logical time on each worker, releasing a
/// time once the input has passed it (when nothing downstream could complete it
/// earlier anyway), without records whose updates cancel.
///
/// ```
/// use std::sync::{Arc, Mutex};
/// use differential_dataflow::input::Input;
/// use tidemark_dataflows::operators::combine::combine;
/// use timely::dataflow::operators::Inspect;
///
/// let seen = Arc::new(Mutex::new(Vec::new()));
/// let out = Arc::clone(&seen);
/// timely::execute_directly(move |worker| {
///     let mut input = worker.dataflow::<u64, _, _>(|scope| {
///         let (input, user_days) = scope.new_collection::<(String, i32), isize>();
///         combine(user_days, "CombineUserDays")
///             .inner
///             .inspect(move |update| out.lock().unwrap().push(update.clone()));
///         input
///     });
///     // Ten events of one user on day 3 leave as one update of multiplicity ten.
///     for _ in 0..10 {
///         input.insert(("u1".to_string(), 3));
///     }
///     input.insert(("u2".to_string(), 3));
///     input.insert(("u3".to_string(), 4));
///     input.remove(("u3".to_string(), 4)); // cancels: nothing leaves
///     input.advance_to(1);
/// });
/// let mut seen = seen.lock().unwrap().clone();
/// seen.sort();
/// assert_eq!(seen, [(("u1".to_string(), 3), 0, 10), (("u2".to_string(), 3), 0, 1)]);
/// ```
pub fn combine<'s, D, R>(
    data: VecCollection<'s, Time, D, R>,
    name: &str,
) -> VecCollection<'s, Time, D, R>
where
    D: ExchangeData + Hash + Eq,
    R: Semigroup + ExchangeData,
{
    combine_map(data, name, std::iter::once)
}

/// [`combine`] of the records that `map` makes of each record of `data` (none, one or
/// several, each with the record's difference): `combine(data.flat_map(map))` in one
/// operator, without the stream in between, which would copy every record once more.
/// The accepted events feed several sums this way, each of a few of their fields.
pub fn combine_map<'s, S, D, R, I>(
    data: VecCollection<'s, Time, S, R>,
    name: &str,
    mut map: impl FnMut(S) -> I + 'static,
) -> VecCollection<'s, Time, D, R>
where
    S: ExchangeData,
    D: ExchangeData + Hash + Eq,
    R: Semigroup + ExchangeData,
    I: IntoIterator<Item = D>,
{
    let scope = data.inner.scope();
    data.inner
        .unary_frontier(Pipeline, name, |_capability, info| {
            let activator = scope.activator_for(info.address);
            let mut sums: HeldSums<D, R> = HeldByTime::default();
            // The emptied map of the time last released, for the next new time: a map
            // grown anew for each time would rehash at every doubling.
            let mut spare: Option<FxHashMap<D, R>> = None;
            // The complete time being released, a chunk per activation (see
            // [`RELEASE_CHUNK`]).
            let mut releasing: Option<Releasing<D, R>> = None;
            move |(input, frontier), output| {
                input.for_each(|cap, batch| {
                    sum_mapped_updates(&mut sums, &cap, batch, &mut map, || {
                        spare.take().unwrap_or_default()
                    })
                });
                loop {
                    if releasing.is_none() {
                        let Some((time, cap, mut time_sums)) =
                            sums.pop_complete(|time| !frontier.frontier().less_equal(&time))
                        else {
                            break;
                        };
                        let sums_of_time: Vec<(D, R)> = time_sums
                            .drain()
                            .filter(|(_, diff)| !diff.is_zero())
                            .collect();
                        if worth_keeping(time_sums.capacity(), sums_of_time.len()) {
                            spare = Some(time_sums);
                        }
                        releasing = Some((time, cap, sums_of_time.into_iter()));
                    }
                    let Some((time, cap, left)) = releasing.as_mut() else {
                        break;
                    };
                    let time = *time;
                    output.session(cap).give_iterator(
                        left.by_ref()
                            .take(RELEASE_CHUNK)
                            .map(|(record, diff)| (record, time, diff)),
                    );
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
