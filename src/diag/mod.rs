//! Diagnostics for finding where time and memory go: per-operator times
//! ([`operator_times`]) and the records every arrangement holds ([`arrangement_sizes`]).

pub mod arrangement_sizes;
pub mod operator_times;
