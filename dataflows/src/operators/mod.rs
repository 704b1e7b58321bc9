//! Operators shared by the metrics: the watermark gate and deduplication ([`gate`]),
//! pre-aggregation before an exchange ([`combine`], [`pre_reduce`]), state retired behind
//! the watermark ([`expiry`]), and the buffer that holds data until its logical time is complete
//! ([`held`]).

pub mod combine;
pub mod expiry;
pub mod gate;
pub mod held;
pub mod pre_reduce;
