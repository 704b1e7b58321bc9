//! Inputs besides a local dataset directory: NDJSON lines on stdin or a TCP port
//! ([`live`]), a Kafka topic ([`kafka`]), and datasets in object storage mirrored to
//! a local directory ([`object_store`]).

pub mod kafka;
pub mod live;
pub mod object_store;
