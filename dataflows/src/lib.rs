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
