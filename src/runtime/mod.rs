//! A run: what each logical time holds and who reads it ([`schedule`], [`follow`],
//! [`ingested`]), feeding the workers and reporting ([`run`], [`progress`], [`stop`]),
//! the cluster's processes ([`cluster`]), the write-ahead log and recovery
//! ([`checkpoint`]), and the memory allocator ([`allocator`]).

pub mod allocator;
pub mod checkpoint;
pub mod cluster;
pub mod follow;
pub mod ingested;
pub mod progress;
pub mod run;
pub mod schedule;
pub mod stop;
