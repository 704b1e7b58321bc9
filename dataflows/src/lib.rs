//! The differential dataflows of tidemark, in three folders:
//! - [`model`]: what flows and what comes out: records, names, plans, settings, and the
//!   output tables' rows and specs.
//! - [`operators`]: the building blocks every metric uses: the watermark gate and
//!   deduplication, the combiner, expiry behind the watermark, the hold-by-time buffer.
//! - [`metrics`]: one module per output table (or per pair of tables computed together),
//!   named after it, each a function from collections to collections.
//!
//! [`dataflow::build`] composes the metrics in one readable definition; [`feeds`] makes
//! a worker's inputs.

pub mod dataflow;
pub mod feeds;
pub mod metrics;
pub mod model;
pub mod operators;

/// A small linear congruential generator for the unit tests' random cases (many varied
/// cases, no dependency): each call gives a number below its bound.
#[cfg(test)]
pub(crate) fn test_numbers(seed: u64) -> impl FnMut(u64) -> u64 {
    let mut state = seed;
    move |bound| {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (state >> 33) % bound
    }
}
