//! Data held per logical time until the time is complete: the one buffer behind every
//! operator that must see all of a time's input before it acts on it (the watermark
//! gate, deduplication, the combiner, expiry, the sinks).
//!
//! Each held time keeps what it needs to send its output later (a capability, or one
//! per output) and its data. Times are released in order, and only when the caller's
//! `complete` test says no more input can arrive for them.
//!
//! ```
//! use tidemark_dataflows::operators::held::HeldByTime;
//!
//! let mut held: HeldByTime<&str, Vec<u32>> = HeldByTime::default();
//! held.at(5, || "cap 5").push(1);
//! held.at(3, || "cap 3").push(2);
//! held.at(5, || "unused").push(3);
//! // Input frontier at 5: time 3 is complete, time 5 is not.
//! assert_eq!(held.pop_complete(|t| t < 5), Some((3, "cap 3", vec![2])));
//! assert_eq!(held.pop_complete(|t| t < 5), None);
//! assert_eq!(held.pop_complete(|_| true), Some((5, "cap 5", vec![1, 3])));
//! assert!(held.is_empty());
//! ```

use std::collections::hash_map::Entry;
use std::collections::BTreeMap;
use std::hash::Hash;

use differential_dataflow::difference::Semigroup;
use rustc_hash::FxHashMap;
use timely::dataflow::operators::{Capability, InputCapability};

use crate::operators::gate::Time;

/// Per logical time: a token to send that time's output with (`C`, usually a
/// [`Capability`]) and the data held for it (`B`, a `Vec` or a map).
#[derive(Debug)]
pub struct HeldByTime<C, B> {
    times: BTreeMap<Time, (C, B)>,
    /// The emptied buffer of a time already used (see [`HeldByTime::recycle`]), which
    /// the next new time takes.
    spare: Option<B>,
}

impl<C, B> Default for HeldByTime<C, B> {
    fn default() -> Self {
        HeldByTime {
            times: BTreeMap::new(),
            spare: None,
        }
    }
}

impl<C, B: Default> HeldByTime<C, B> {
    /// The data held for `time`; a new time takes its token from `token()`, and the
    /// recycled buffer if there is one.
    pub fn at(&mut self, time: Time, token: impl FnOnce() -> C) -> &mut B {
        let spare = &mut self.spare;
        &mut self
            .times
            .entry(time)
            .or_insert_with(|| (token(), spare.take().unwrap_or_default()))
            .1
    }
}

/// A recycled buffer is let go when it has room for more than this many times what its
/// time held (and more than [`KEPT_ROOM`] records): after a backfill's large times, a
/// live run's small ones do not keep the backfill's buffers.
const ROOM_FACTOR: usize = 4;

/// Buffers with room for at most this many records are always kept.
const KEPT_ROOM: usize = 4096;

/// Whether an emptied buffer with room for `room` records, which held `used` of them
/// for its time, is kept for the next time: not when it has far more room than it used
/// (see [`ROOM_FACTOR`]). Every operator that reuses a time's buffer or map decides
/// with it.
pub fn worth_keeping(room: usize, used: usize) -> bool {
    room <= ROOM_FACTOR * used.max(KEPT_ROOM / ROOM_FACTOR)
}

impl<C, D> HeldByTime<C, Vec<D>> {
    /// Takes back the buffer of a time whose data is used up (`held` records were in
    /// it), emptied, for the next new time: its pages stay mapped, so the next time's
    /// records go into memory already touched, instead of a vector that grows by
    /// doubling, copying its records into fresh pages each time (half the page faults
    /// of a backfill, which cost more than the copies).
    pub fn recycle(&mut self, mut buffer: Vec<D>, held: usize) {
        if !worth_keeping(buffer.capacity(), held) {
            return;
        }
        buffer.clear();
        if self
            .spare
            .as_ref()
            .is_none_or(|spare| spare.capacity() < buffer.capacity())
        {
            self.spare = Some(buffer);
        }
    }
}

impl<C, B> HeldByTime<C, B> {
    /// The data held for `time`; a new time takes its token from `token()` and its
    /// (empty) data from `data()`, e.g. a buffer kept from an earlier time.
    pub fn at_with(
        &mut self,
        time: Time,
        token: impl FnOnce() -> C,
        data: impl FnOnce() -> B,
    ) -> &mut B {
        &mut self
            .times
            .entry(time)
            .or_insert_with(|| (token(), data()))
            .1
    }

    /// The earliest held time, if any.
    pub fn first_time(&self) -> Option<Time> {
        self.times.keys().next().copied()
    }

    /// Removes `time` with its token and data.
    pub fn take(&mut self, time: Time) -> Option<(C, B)> {
        self.times.remove(&time)
    }

    /// Removes and returns the earliest held time if `complete(time)`; call it in a
    /// loop to release every complete time, in time order.
    pub fn pop_complete(&mut self, complete: impl Fn(Time) -> bool) -> Option<(Time, C, B)> {
        let entry = self.times.first_entry()?;
        if !complete(*entry.key()) {
            return None;
        }
        let time = *entry.key();
        let (token, data) = entry.remove();
        Some((time, token, data))
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.times.is_empty()
    }
}

/// The earliest time held by either of two buffers (an operator's two inputs), once
/// `complete(time)`: removed from both, with the first buffer's token for it (else the
/// second's) and each buffer's data, if it held any. Call it in a loop to release every
/// complete time, in time order.
///
/// ```
/// use tidemark_dataflows::operators::held::{pop_complete_pair, HeldByTime};
///
/// let mut events: HeldByTime<&str, Vec<u32>> = HeldByTime::default();
/// let mut members: HeldByTime<&str, Vec<char>> = HeldByTime::default();
/// events.at(4, || "events 4").push(1);
/// members.at(2, || "members 2").push('a');
/// members.at(4, || "members 4").push('b');
/// // Time 2 has only members; time 4 has both, and takes the events' token.
/// assert_eq!(
///     pop_complete_pair(&mut events, &mut members, |t| t < 5),
///     Some((2, "members 2", None, Some(vec!['a'])))
/// );
/// assert_eq!(pop_complete_pair(&mut events, &mut members, |t| t < 4), None);
/// assert_eq!(
///     pop_complete_pair(&mut events, &mut members, |t| t < 5),
///     Some((4, "events 4", Some(vec![1]), Some(vec!['b'])))
/// );
/// ```
pub fn pop_complete_pair<C, A, B>(
    first: &mut HeldByTime<C, A>,
    second: &mut HeldByTime<C, B>,
    complete: impl Fn(Time) -> bool,
) -> Option<(Time, C, Option<A>, Option<B>)> {
    let time = [first.first_time(), second.first_time()]
        .into_iter()
        .flatten()
        .min()
        .filter(|time| complete(*time))?;
    let (first_token, first_data) = first.take(time).unzip();
    let (second_token, second_data) = second.take(time).unzip();
    let token = first_token.or(second_token)?;
    Some((time, token, first_data, second_data))
}

/// Containers received for one time, kept as they came: appending each to one vector
/// would copy every record again each time the vector doubles (hundreds of MB for a
/// large time), and fault in fresh pages for each copy.
pub type Chunks<T> = Vec<Vec<T>>;

/// Updates held by time with a capability each, the common case.
pub type HeldUpdates<D> = HeldByTime<Capability<Time>, Vec<D>>;

/// Holds every update `(record, time, diff)` of `batch` under its own time, as
/// `item(record, diff)`, with a capability for the time delayed from `cap`.
pub fn hold_updates<D, I>(
    held: &mut HeldUpdates<I>,
    cap: &InputCapability<Time>,
    batch: &mut Vec<(D, Time, isize)>,
    item: impl Fn(D, Time, isize) -> I,
) {
    // A batch's updates mostly share one time: look it up once per run.
    let mut updates = batch.drain(..).peekable();
    while let Some(&(_, time, _)) = updates.peek() {
        let held = held.at(time, || cap.delayed(&time, 0));
        while let Some((record, time, diff)) = updates.next_if(|u| u.1 == time) {
            held.push(item(record, time, diff));
        }
    }
}

/// Updates held by time in the containers they came in, with a capability each.
pub type HeldChunks<D> = HeldByTime<Capability<Time>, Chunks<(D, Time, isize)>>;

/// Holds every update of `batch` under its own time, with a capability for the time
/// delayed from `cap`. A batch whose updates share one time (the usual case) is held
/// as it came, without copying a record: appending to one vector per time would copy
/// each record once more, and again each time the vector doubles, faulting in fresh
/// pages for every copy. Take a time's updates out with [`flatten`].
pub fn hold_chunks<D>(
    held: &mut HeldChunks<D>,
    cap: &InputCapability<Time>,
    batch: &mut Vec<(D, Time, isize)>,
) {
    let Some(&(_, first, _)) = batch.first() else {
        return;
    };
    if batch.iter().all(|(_, time, _)| *time == first) {
        held.at(first, || cap.delayed(&first, 0))
            .push(std::mem::take(batch));
        return;
    }
    let mut updates = batch.drain(..).peekable();
    while let Some(&(_, time, _)) = updates.peek() {
        let mut run = Vec::new();
        while let Some(update) = updates.next_if(|u| u.1 == time) {
            run.push(update);
        }
        held.at(time, || cap.delayed(&time, 0)).push(run);
    }
}

/// A time's updates held by [`hold_chunks`], in arrival order, in one vector of
/// exactly their number, each as `item(record, diff)`.
pub fn flatten<D, I>(chunks: Chunks<(D, Time, isize)>, item: impl Fn(D, isize) -> I) -> Vec<I> {
    let mut all = Vec::with_capacity(chunks.iter().map(Vec::len).sum());
    for chunk in chunks {
        all.extend(
            chunk
                .into_iter()
                .map(|(record, _, diff)| item(record, diff)),
        );
    }
    all
}

/// Updates summed per record and time, with a capability for each time.
pub type HeldSums<D, R> = HeldByTime<Capability<Time>, FxHashMap<D, R>>;

/// Adds every update `(record, time, diff)` of `batch` to its time's sum of `record`,
/// with a capability for the time delayed from `cap`. A new time takes its (empty) map
/// from `fresh()`, e.g. one kept from an earlier time.
pub fn sum_updates<D: Hash + Eq, R: Semigroup>(
    held: &mut HeldSums<D, R>,
    cap: &InputCapability<Time>,
    batch: &mut Vec<(D, Time, R)>,
    fresh: impl FnMut() -> FxHashMap<D, R>,
) {
    sum_mapped_updates(held, cap, batch, std::iter::once, fresh)
}

/// [`sum_updates`] of the records that `map` makes of each record of `batch` (each
/// with the record's difference), without a stream of them in between: a map ahead of
/// a sum would copy every record of the stream once more.
pub fn sum_mapped_updates<S, D, R, I>(
    held: &mut HeldSums<D, R>,
    cap: &InputCapability<Time>,
    batch: &mut Vec<(S, Time, R)>,
    mut map: impl FnMut(S) -> I,
    mut fresh: impl FnMut() -> FxHashMap<D, R>,
) where
    D: Hash + Eq,
    R: Semigroup,
    I: IntoIterator<Item = D>,
{
    // A batch's updates mostly share one time: look it up once per run.
    let mut updates = batch.drain(..).peekable();
    while let Some(&(_, time, _)) = updates.peek() {
        let sums = held.at_with(time, || cap.delayed(&time, 0), &mut fresh);
        while let Some((record, _, diff)) = updates.next_if(|u| u.1 == time) {
            for record in map(record) {
                match sums.entry(record) {
                    Entry::Occupied(mut sum) => sum.get_mut().plus_equals(&diff),
                    Entry::Vacant(slot) => {
                        slot.insert(diff.clone());
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};
    use timely::container::CapacityContainerBuilder;
    use timely::dataflow::channels::pact::Pipeline;
    use timely::dataflow::operators::generic::Operator;
    use timely::dataflow::operators::Input as _;

    /// Containers of one time are held as they came, a container of several times is
    /// split, and each complete time comes out with exactly its updates, in arrival
    /// order, as a plain list of them says.
    #[test]
    fn held_chunks_give_each_time_its_updates_in_arrival_order() {
        let containers: Vec<Vec<(u32, Time, isize)>> = vec![
            vec![(1, 0, 1), (2, 0, 1)],
            vec![(3, 1, 1), (4, 0, -1), (5, 2, 1), (6, 1, 1)],
            vec![(7, 2, 2)],
        ];
        let expected: BTreeMap<Time, Vec<(u32, isize)>> = containers.iter().flatten().fold(
            BTreeMap::new(),
            |mut by_time, &(record, time, diff)| {
                by_time
                    .entry(time)
                    .or_insert_with(Vec::new)
                    .push((record, diff));
                by_time
            },
        );
        let seen = Arc::new(Mutex::new(BTreeMap::new()));
        let out = Arc::clone(&seen);
        timely::execute_directly(move |worker| {
            let mut input = worker.dataflow::<Time, _, _>(|scope| {
                let (input, stream) = scope.new_input::<Vec<(u32, Time, isize)>>();
                stream.unary_frontier::<CapacityContainerBuilder<Vec<()>>, _, _, _>(
                    Pipeline,
                    "Held",
                    |_, _| {
                        let mut held: HeldChunks<u32> = HeldByTime::default();
                        move |(input, frontier), _output| {
                            input.for_each(|cap, data| hold_chunks(&mut held, &cap, data));
                            while let Some((time, _cap, chunks)) =
                                held.pop_complete(|t| !frontier.less_equal(&t))
                            {
                                let updates = flatten(chunks, |record, diff| (record, diff));
                                out.lock().unwrap().insert(time, updates);
                            }
                        }
                    },
                );
                input
            });
            for mut container in containers {
                input.send_batch(&mut container);
            }
        });
        assert_eq!(*seen.lock().unwrap(), expected);
    }

    #[test]
    fn a_buffer_is_kept_unless_it_has_far_more_room_than_its_time_used() {
        // Small buffers are always kept, whatever their time used.
        assert!(worth_keeping(KEPT_ROOM, 0));
        assert!(!worth_keeping(KEPT_ROOM + 1, 0));
        // A large one is kept while its time used at least 1 / ROOM_FACTOR of it: a
        // backfill's buffer goes once the times are small again.
        let room = 1 << 20;
        assert!(worth_keeping(room, room / ROOM_FACTOR));
        assert!(!worth_keeping(room, room / ROOM_FACTOR - 1));
        assert!(!worth_keeping(room, 10));
    }

    #[test]
    fn times_come_out_in_order_and_only_when_complete() {
        let mut held: HeldByTime<u64, Vec<char>> = HeldByTime::default();
        for (time, c) in [(7, 'a'), (2, 'b'), (7, 'c'), (4, 'd')] {
            held.at(time, || time * 10).push(c);
        }
        assert_eq!(held.first_time(), Some(2));
        assert_eq!(held.pop_complete(|t| t < 2), None);
        assert_eq!(held.pop_complete(|t| t < 5), Some((2, 20, vec!['b'])));
        assert_eq!(held.pop_complete(|t| t < 5), Some((4, 40, vec!['d'])));
        assert_eq!(held.pop_complete(|t| t < 5), None);
        assert_eq!(held.take(7), Some((70, vec!['a', 'c'])));
        assert!(held.is_empty());
    }

    #[test]
    fn a_recycled_buffer_is_the_next_new_time_s_unless_it_is_far_too_large() {
        let mut held: HeldByTime<u64, Vec<u32>> = HeldByTime::default();
        held.at(1, || 1).extend(0..10_000);
        let (_, _, mut data) = held.pop_complete(|_| true).unwrap();
        let (room, len) = (data.capacity(), data.len());
        data.truncate(3);
        held.recycle(data, len);
        // The next new time takes it, emptied; a time already held keeps its own.
        held.at(2, || 2).push(7);
        held.at(2, || 2).push(8);
        let (_, _, data) = held.pop_complete(|_| true).unwrap();
        assert_eq!((data.capacity(), data.as_slice()), (room, &[7, 8][..]));
        // Four times as much room as its time held: let go.
        held.recycle(data, room / 5);
        assert_eq!(held.at(3, || 3).capacity(), 0);
    }
}
