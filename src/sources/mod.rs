//! Inputs besides a local dataset directory: NDJSON lines on stdin or a TCP port
//! ([`live`]), a Kafka topic ([`kafka`], with
//! consumer-group offsets in [`kafka_group`]), and datasets in object storage mirrored to
//! a local directory ([`object_store`]).

pub mod kafka;
pub mod kafka_group;
pub mod live;
pub mod object_store;
