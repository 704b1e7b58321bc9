//! What flows through the dataflow and what comes out of it: accepted events as
//! [`action::Action`]s with interned [`name::Name`]s, plan histories, the settings, and
//! the output tables' row types ([`rows`]) and specs ([`tables`]).

pub mod action;
pub mod name;
pub mod plans;
pub mod rows;
pub mod settings;
pub mod tables;
