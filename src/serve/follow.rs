//! Follows an output directory as a run writes it: reads each new change file once,
//! holds its rows until their logical time is completed (`completed.json`), then hands
//! them over one completed time at a time, so a reader never sees half a time.
//!
//! Change files are renamed into place whole, and a time is recorded as completed only
//! after every sink wrote it, so listing the files *after* reading the completed time
//! finds every file of every completed time.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

use anyhow::Result;
use tidemark_dataflows::model::tables::Cell;

use crate::runtime::checkpoint::Checkpoint;
use crate::runtime::run::WRITTEN_TABLES;
use crate::sink::reader::{change_files, read_parquet};

/// The changes of one completed logical time: per table (index into
/// [`WRITTEN_TABLES`], the tables a run writes), rows with their diff.
#[derive(Debug, Default)]
pub struct TimeChanges {
    /// The logical time.
    pub time: u64,
    /// `(table index, row, diff)`, in file order.
    pub rows: Vec<(usize, Vec<Cell>, i64)>,
}

/// What one look at the output found.
#[derive(Debug, Default)]
pub struct Found {
    /// The last completed logical time, if any.
    pub completed: Option<u64>,
    /// The largest event time of the completed batches (epoch ms).
    pub max_ts: Option<i64>,
    /// The run's allowed lateness (ms), once its settings are readable.
    pub allowed_lateness_ms: Option<i64>,
    /// Newly completed times, in order.
    pub times: Vec<TimeChanges>,
    /// The output was written anew (`--overwrite`): everything read before is void and
    /// `times` starts from time 0.
    pub reset: bool,
}

/// Reading state of one output directory.
pub struct Follower {
    out: PathBuf,
    read: HashSet<PathBuf>,
    pending: BTreeMap<u64, Vec<(usize, Vec<Cell>, i64)>>,
    handed_over: Option<u64>,
    next_unit: u64,
    max_ts: Option<i64>,
    allowed_lateness_ms: Option<i64>,
}

impl Follower {
    /// A follower of `out`, which need not exist yet.
    pub fn new(out: &Path) -> Follower {
        Follower {
            out: out.to_path_buf(),
            read: HashSet::new(),
            pending: BTreeMap::new(),
            handed_over: None,
            next_unit: 0,
            max_ts: None,
            allowed_lateness_ms: None,
        }
    }

    /// Reads what is new and returns the times completed since the last call.
    pub fn poll(&mut self) -> Result<Found> {
        let checkpoint = Checkpoint::at(&self.out);
        let completed = checkpoint.read_completed()?;
        let reset = self
            .handed_over
            .is_some_and(|handed| completed.is_none_or(|c| c < handed));
        if reset {
            *self = Follower::new(&self.out);
        }
        if self.allowed_lateness_ms.is_none() {
            // Only the status line's watermark needs the settings: an unreadable
            // run.json (an older format) leaves it out rather than the tables.
            self.allowed_lateness_ms = checkpoint
                .read_identity()
                .ok()
                .flatten()
                .map(|identity| identity.params.allowed_lateness_ms);
        }
        let Some(completed) = completed else {
            return Ok(Found {
                reset,
                ..Found::default()
            });
        };
        for (index, spec) in WRITTEN_TABLES.iter().enumerate() {
            for path in change_files(&self.out, spec)? {
                if self.read.contains(&path) {
                    continue;
                }
                for (row, time, diff) in read_parquet(&path, spec, true)? {
                    self.pending
                        .entry(time)
                        .or_default()
                        .push((index, row, diff));
                }
                self.read.insert(path);
            }
        }
        // The largest event time of every batch up to the completed one.
        while let Some(header) = checkpoint.read_header(self.next_unit)? {
            if header.time > completed {
                break;
            }
            self.max_ts = self.max_ts.max(header.max_ts);
            self.next_unit += 1;
        }
        let mut times = Vec::new();
        let first = self.handed_over.map_or(0, |t| t + 1);
        for time in first..=completed {
            let rows = self.pending.remove(&time).unwrap_or_default();
            times.push(TimeChanges { time, rows });
        }
        self.handed_over = Some(completed);
        Ok(Found {
            completed: Some(completed),
            max_ts: self.max_ts,
            allowed_lateness_ms: self.allowed_lateness_ms,
            times,
            reset,
        })
    }
}
