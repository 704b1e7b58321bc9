//! Sinks: where finished logical times of each output table are written.

pub mod changes;

/// What a sink reports for each logical time it has made durable on this worker.
#[derive(
    Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
pub struct SinkReport {
    /// The table.
    pub table: String,
    /// The logical time written.
    pub time: u64,
    /// Number of change rows written.
    pub rows: u64,
}
