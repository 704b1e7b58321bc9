//! The differential dataflows of tidemark. Each module is one metric family: a
//! function from collections to collections. [`dataflow::build`] composes them.

pub mod settings;
pub mod tables;
