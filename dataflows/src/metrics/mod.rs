//! One module per output table, named after it (a module computing two tables together
//! is named after what they share). Each quotes the contract sentence it implements and
//! exposes a function from collections to collections.

pub mod actives;
pub mod engagement_by_dimension;
pub mod engagement_by_segment;
pub mod event_mix;
pub mod feature_adoption;
pub mod kpis;
pub mod retention_cohorts;
pub mod session_metrics_daily;
pub mod sessions;
pub mod spike_alerts;
pub mod user_facts;
pub mod window_activity;
