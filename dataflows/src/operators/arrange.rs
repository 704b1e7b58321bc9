//! Arrangements of the per-event collections with a batcher that sorts its input in
//! large runs.
//!
//! Differential's default batcher sorts each arriving 8 KB container (about 128 to 256
//! records) and then merges these runs geometrically, so a logical time of `n` records
//! copies each record about `log2(n / 200)` times, through a `VecDeque` per merge; on
//! a backfill that merging is the largest single cost of the run. [`SortedRuns`] gathers
//! [`RUN_BYTES`] of records first and sorts and consolidates them at once (an in-place
//! sort, far cheaper per record than a merge pass), so the ladder starts from runs a
//! hundred times longer and merges each record a few times only. The merging, sealing
//! and traces are differential's own.

use std::collections::VecDeque;

use differential_dataflow::batcher::merge::vec::VecMerger;
use differential_dataflow::batcher::merge::MergeBatcher;
use differential_dataflow::consolidation::consolidate_updates;
use differential_dataflow::difference::Semigroup;
use differential_dataflow::hashable::Hashable;
use differential_dataflow::operators::arrange::{Arranged, TraceAgent};
use differential_dataflow::trace::implementations::ord_neu::{VecOrdKeyBuilder, VecOrdValBuilder};
use differential_dataflow::trace::implementations::{KeySpine, ValSpine};
use differential_dataflow::{ExchangeData, VecCollection};
use timely::container::{ContainerBuilder, PushInto};

use crate::operators::gate::Time;

/// How many bytes of updates a run gathers before it is sorted.
pub const RUN_BYTES: usize = 1 << 20;

/// A chunker that sorts and consolidates its input in runs of about [`RUN_BYTES`].
pub struct SortedRuns<U> {
    pending: Vec<U>,
    ready: VecDeque<Vec<U>>,
    out: Vec<U>,
}

impl<U> Default for SortedRuns<U> {
    fn default() -> Self {
        SortedRuns {
            pending: Vec::new(),
            ready: VecDeque::new(),
            out: Vec::new(),
        }
    }
}

impl<U> SortedRuns<U> {
    /// Records per run: [`RUN_BYTES`] of them, at least 1024.
    fn run_len() -> usize {
        (RUN_BYTES / std::mem::size_of::<U>().max(1)).max(1024)
    }
}

impl<D: Ord, T: Ord, R: Semigroup> SortedRuns<(D, T, R)> {
    /// Sorts and consolidates the pending records; ships them once at least half a run
    /// is left (updates that cancel keep gathering).
    fn seal(&mut self, at_end: bool) {
        consolidate_updates(&mut self.pending);
        if self.pending.len() >= Self::run_len() / 2 || (at_end && !self.pending.is_empty()) {
            // An arrangement that just filled a run will fill the next: room for it at
            // once, not a copy each time the run doubles.
            let next = if at_end {
                Vec::new()
            } else {
                Vec::with_capacity(Self::run_len())
            };
            self.ready
                .push_back(std::mem::replace(&mut self.pending, next));
        }
    }
}

impl<D: Ord, T: Ord, R: Semigroup> PushInto<&mut Vec<(D, T, R)>> for SortedRuns<(D, T, R)> {
    fn push_into(&mut self, container: &mut Vec<(D, T, R)>) {
        // Grown as records come: most arrangements see far less than a run per time.
        self.pending.append(container);
        if self.pending.len() >= Self::run_len() {
            self.seal(false);
        }
    }
}

impl<D, T, R> ContainerBuilder for SortedRuns<(D, T, R)>
where
    D: Ord + Clone + 'static,
    T: Ord + Clone + 'static,
    R: Semigroup + Clone + 'static,
{
    type Container = Vec<(D, T, R)>;

    fn extract(&mut self) -> Option<&mut Self::Container> {
        self.out = self.ready.pop_front()?;
        Some(&mut self.out)
    }

    fn finish(&mut self) -> Option<&mut Self::Container> {
        if !self.pending.is_empty() {
            self.seal(true);
        }
        self.extract()
    }
}

/// Differential's value batcher with [`SortedRuns`] as its chunker.
pub type RunValBatcher<K, V, R> = MergeBatcher<
    SortedRuns<((K, V), Time, R)>,
    VecMerger<(K, V), Time, R>,
    VecOrdValBuilder<K, V, Time, R>,
>;
/// Differential's key batcher with [`SortedRuns`] as its chunker.
pub type RunKeyBatcher<K, R> = MergeBatcher<
    SortedRuns<((K, ()), Time, R)>,
    VecMerger<(K, ()), Time, R>,
    VecOrdKeyBuilder<K, Time, R>,
>;

/// `collection.arrange_by_key_named(name)`, sorting its input in long runs.
pub fn arrange_by_key<'s, K, V, R>(
    collection: VecCollection<'s, Time, (K, V), R>,
    name: &str,
) -> Arranged<'s, TraceAgent<ValSpine<K, V, Time, R>>>
where
    K: ExchangeData + Hashable,
    V: ExchangeData,
    R: ExchangeData + Semigroup,
{
    collection.arrange_named::<RunValBatcher<K, V, R>, _>(name, RunValBatcher::new)
}

/// `collection.arrange_by_self_named(name)`, sorting its input in long runs.
pub fn arrange_by_self<'s, K, R>(
    collection: VecCollection<'s, Time, K, R>,
    name: &str,
) -> Arranged<'s, TraceAgent<KeySpine<K, Time, R>>>
where
    K: ExchangeData + Hashable,
    R: ExchangeData + Semigroup,
{
    collection
        .map(|key| (key, ()))
        .arrange_named::<RunKeyBatcher<K, R>, _>(name, RunKeyBatcher::new)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every run is sorted and consolidated, and the runs hold exactly the input's
    /// updates (summed), whatever the containers' sizes and order.
    #[test]
    fn runs_are_sorted_consolidated_and_lose_nothing() {
        type U = (u64, u64, isize);
        let mut chunker = SortedRuns::<U>::default();
        let mut expected: Vec<U> = Vec::new();
        let mut runs: Vec<Vec<U>> = Vec::new();
        let mut x: u64 = 7;
        for size in [1usize, 5_000, 40_000, 70_000, 3, 90_000] {
            let mut container: Vec<U> = (0..size)
                .map(|i| {
                    x = x
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    // Keys repeat, so that some updates meet and some cancel.
                    let diff = if i % 3 == 0 { -1 } else { 1 };
                    ((x >> 40) % 100_000, (x >> 20) % 3, diff)
                })
                .collect();
            expected.extend(container.iter().copied());
            chunker.push_into(&mut container);
            assert!(container.is_empty(), "the container is taken whole");
            while let Some(run) = chunker.extract() {
                runs.push(std::mem::take(run));
            }
        }
        while let Some(run) = chunker.finish() {
            runs.push(std::mem::take(run));
        }
        assert!(runs.len() > 1, "the input spans several runs");
        let mut got = Vec::new();
        for run in &runs {
            assert!(run.windows(2).all(|w| (w[0].0, w[0].1) < (w[1].0, w[1].1)));
            assert!(run.iter().all(|u| u.2 != 0));
            got.extend(run.iter().copied());
        }
        consolidate_updates(&mut got);
        consolidate_updates(&mut expected);
        assert_eq!(got, expected);
    }
}
