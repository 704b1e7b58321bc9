//! The differential dataflows of tidemark. Each module is one metric family: a
//! function from collections to collections. [`dataflow::build`] composes them.

pub mod action;
pub mod actives;
pub mod adoption;
pub mod combine;
pub mod dataflow;
pub mod dimensions;
pub mod event_mix;
pub mod expiry;
pub mod feeds;
pub mod held;
pub mod ingest;
pub mod kpis;
pub mod name;
pub mod plans;
pub mod retention;
pub mod rows;
pub mod segments;
pub mod session_metrics;
pub mod sessions;
pub mod settings;
pub mod spikes;
pub mod tables;
pub mod user_facts;
pub mod windows;
