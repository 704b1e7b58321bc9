//! The rows of the most recently committed buckets, kept in memory so that the next
//! commit to touch them need not read their data files back.

use std::collections::HashMap;

use arrow::array::RecordBatch;

/// Number of buckets whose rows the committing worker keeps in memory: the most recently
/// committed ones. The rows of any other bucket are read back from its data files when a
/// commit touches it.
pub const CACHED_BUCKETS: usize = 32;

/// The rows of the [`CACHED_BUCKETS`] most recently committed buckets.
#[derive(Default)]
pub(super) struct RowCache {
    /// By bucket: when it was last committed (a tick of `clock`) and its rows (sorted,
    /// repeated by multiplicity; never empty).
    pub(super) entries: HashMap<i64, (u64, RecordBatch)>,
    clock: u64,
}

impl RowCache {
    /// The rows of `bucket`, if cached.
    pub(super) fn get(&self, bucket: i64) -> Option<&RecordBatch> {
        self.entries.get(&bucket).map(|(_, rows)| rows)
    }

    /// Records the rows of a bucket just committed (`None`: it is now empty), evicting
    /// the least recently committed buckets beyond [`CACHED_BUCKETS`].
    pub(super) fn put(&mut self, bucket: i64, rows: Option<RecordBatch>) {
        let Some(rows) = rows else {
            self.entries.remove(&bucket);
            return;
        };
        self.clock += 1;
        self.entries.insert(bucket, (self.clock, rows));
        while self.entries.len() > CACHED_BUCKETS {
            let oldest = self
                .entries
                .iter()
                .min_by_key(|(_, (used, _))| *used)
                .map(|(bucket, _)| *bucket)
                .expect("the cache is not empty");
            self.entries.remove(&oldest);
        }
    }
}
