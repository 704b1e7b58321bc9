//! Operators shared by the metrics: the watermark gate and deduplication ([`gate`]),
//! pre-aggregation before an exchange ([`combine`], [`pre_reduce`]), state retired behind
//! the watermark ([`expiry`]), the buffer that holds data until its logical time is complete
//! ([`held`]), arrangements that sort their input in long runs ([`arrange`]), and counts and
//! distincts ([`totals`]), reduces ([`reduce`]) and a semijoin ([`semijoin`]) kept in hash
//! maps, whose state sizes [`state_sizes`] prints on request.

pub mod arrange;
pub mod combine;
pub mod expiry;
pub mod gate;
pub mod held;
pub mod pre_reduce;
pub mod reduce;
pub mod semijoin;
pub mod state_sizes;
pub mod totals;
