//! Deciding what each logical time holds. Worker 0 alone decides (replay the logged
//! batches, then the dataset's new files, then, when following, the new files or live
//! batch as they come) and broadcasts its decisions through a small control dataflow,
//! so every worker of every process agrees on the same sequence of logical times
//! however the directory listing looks from where it runs.
//!
//! A logical time holds one or more input units (files, or a batch of live lines),
//! numbered in arrival order across times. Files waiting together are grouped into one
//! time, bounded by [`FileBatching`], so a backlog costs few logical times (contract
//! "Batches"); lateness is still judged per unit, so the grouping changes no table.

use crate::error_text::one_line;
use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tidemark_inputs::dataset::Dataset;

use crate::runtime::checkpoint::LineRange;
use crate::runtime::follow::Watcher;
use crate::runtime::ingested::{changed_error, FileState, FileTask, IngestedFiles};
use crate::runtime::stop::StopFlag;
use crate::sources::kafka::KafkaOffsets;
use crate::sources::live::{LiveBatch, LiveSource};

/// What the workers do at one logical time.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Assignment {
    /// Feed the units `first..first + count` the write-ahead log holds (recovery).
    Replay {
        /// The first unit of the time.
        first: u64,
        /// How many units the time has.
        count: u64,
    },
    /// Read these files as units `first, first + 1, ...`, log them, feed them.
    Files {
        /// The unit of the first file.
        first: u64,
        /// The files, in arrival order.
        tasks: Vec<FileTask>,
    },
    /// Log and feed the live units worker 0 holds for this time (one per source), as
    /// units `first, first + 1, ...`.
    Live {
        /// The unit of the first source's lines.
        first: u64,
        /// How many units the time has.
        count: u64,
    },
    /// Fetch, log and feed these offset ranges of a Kafka topic's partitions, one per
    /// partition, as units `first, first + 1, ...`; each unit's reader worker fetches
    /// its range itself.
    Kafka {
        /// The unit of the first range.
        first: u64,
        /// `topic/partition` and the first and last offset, in partition order.
        ranges: Vec<LineRange>,
    },
    /// No more logical times: close the inputs and finish.
    End,
}

impl Assignment {
    /// The units of this time.
    pub fn units(&self) -> std::ops::Range<u64> {
        match self {
            Assignment::Replay { first, count } => *first..first + count,
            Assignment::Files { first, tasks } => *first..first + tasks.len() as u64,
            Assignment::Live { first, count } => *first..first + count,
            Assignment::Kafka { first, ranges } => *first..first + ranges.len() as u64,
            Assignment::End => 0..0,
        }
    }

    /// The worker that reads, logs and feeds `unit` of this time: units are spread
    /// over the workers in contiguous blocks, so a time's files are read in parallel
    /// and each worker logs its block in one write-ahead-log file (named after the
    /// block's first unit). The blocks start at a worker that turns with the time's
    /// first unit, so times of one unit each go round the workers.
    pub fn reader(&self, unit: u64, peers: usize) -> usize {
        if let Assignment::Live { .. } = self {
            return 0;
        }
        let units = self.units();
        let count = u128::from((units.end - units.start).max(1));
        let block = u128::from(unit.saturating_sub(units.start)) * peers as u128 / count;
        ((block as u64 + units.start) % peers as u64) as usize
    }
}

/// Bounds on how many waiting files one logical time takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileBatching {
    /// At most this many files a time.
    pub max_files: usize,
    /// At most this many bytes of files a time (a larger file is a time of its own).
    pub max_bytes: u64,
}

impl Default for FileBatching {
    fn default() -> Self {
        FileBatching {
            max_files: 64,
            max_bytes: 4 << 20,
        }
    }
}

impl FileBatching {
    /// Cuts files waiting in arrival order into groups, one logical time each.
    pub fn group(&self, tasks: Vec<FileTask>) -> Vec<Vec<FileTask>> {
        let mut groups: Vec<Vec<FileTask>> = Vec::new();
        let mut bytes = 0;
        for task in tasks {
            match groups.last_mut() {
                Some(group)
                    if group.len() < self.max_files.max(1)
                        && bytes + task.size <= self.max_bytes =>
                {
                    bytes += task.size;
                    group.push(task);
                }
                _ => {
                    bytes = task.size;
                    groups.push(vec![task]);
                }
            }
        }
        groups
    }
}

/// What one queued logical time will hold.
enum Queued {
    Replay { first: u64, count: u64 },
    Files(Vec<FileTask>),
    Live(Vec<LiveBatch>),
    Kafka(Vec<LineRange>),
}

/// Why a run stops taking new logical times.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EndReason {
    /// A static run ingested everything present.
    Done,
    /// Standard input ended.
    InputEnded,
    /// No new input for `--max-idle-secs`.
    Idle,
    /// SIGINT or SIGTERM.
    Signal,
    /// An error (its message).
    Failed(String),
}

/// Live inputs of a following run.
pub struct Live {
    /// The dataset watcher, when following a directory.
    pub watcher: Option<Watcher>,
    /// The live line source (stdin, TCP), if any.
    pub source: Option<LiveSource>,
    /// The Kafka topic's offsets, if one is read.
    pub kafka: Option<KafkaOffsets>,
    /// Stop after this long with no new input.
    pub max_idle: Option<Duration>,
    /// Re-ingest changed files instead of failing.
    pub reingest_changed: bool,
}

/// Worker 0's decider.
pub struct Scheduler {
    dataset: Option<Dataset>,
    ingested: IngestedFiles,
    queue: VecDeque<Queued>,
    live: Live,
    stop: StopFlag,
    batching: FileBatching,
    next_time: u64,
    next_unit: u64,
    last_input: Instant,
    /// Live units decided but not yet fed, by unit number.
    live_units: BTreeMap<u64, LiveBatch>,
    end: Option<EndReason>,
}

impl Scheduler {
    /// A decider that first replays the logged `replayed` times (each `(time, first
    /// unit, unit count)`), then ingests `initial` in groups cut by `batching`, then
    /// follows `live` (if any of its inputs is set) until its end.
    pub fn new(
        dataset: Option<Dataset>,
        ingested: IngestedFiles,
        replayed: Vec<(u64, u64, u64)>,
        initial: Vec<FileTask>,
        batching: FileBatching,
        live: Live,
        stop: StopFlag,
    ) -> Scheduler {
        let next_unit = replayed.last().map_or(0, |(_, first, count)| first + count);
        let mut queue: VecDeque<Queued> = replayed
            .into_iter()
            .map(|(_, first, count)| Queued::Replay { first, count })
            .collect();
        queue.extend(batching.group(initial).into_iter().map(Queued::Files));
        Scheduler {
            dataset,
            ingested,
            queue,
            live,
            stop,
            batching,
            next_time: 0,
            next_unit,
            last_input: Instant::now(),
            live_units: BTreeMap::new(),
            end: None,
        }
    }

    /// Every sink has completed the logical times up to `done`: commits a Kafka
    /// topic's offsets to its consumer group (`--group`).
    pub fn completed(&mut self, done: u64) {
        if let Some(kafka) = self.live.kafka.as_mut() {
            kafka.completed(done);
        }
    }

    /// Decides what it can now without blocking: the next logical times and their
    /// assignments, at most `lookahead` times past `position` (the time worker 0 feeds
    /// next), so that a stop takes effect soon. The last one handed out is
    /// [`Assignment::End`].
    pub fn poll(&mut self, position: u64, lookahead: u64) -> Vec<(u64, Assignment)> {
        if self.end.is_some() {
            return Vec::new();
        }
        let now = Instant::now();
        if self.queue.is_empty() && !self.stop.raised() {
            self.watch(now);
        }
        let mut out = Vec::new();
        while self.next_time < position + lookahead && !self.stop.raised() {
            let Some(queued) = self.queue.pop_front() else {
                break;
            };
            let first = self.next_unit;
            let assignment = match queued {
                Queued::Replay { first, count } => Assignment::Replay { first, count },
                Queued::Files(tasks) => {
                    for (offset, task) in tasks.iter().enumerate() {
                        self.ingested.record(task, first + offset as u64);
                    }
                    Assignment::Files { first, tasks }
                }
                Queued::Live(units) => {
                    let count = units.len() as u64;
                    self.live_units.extend((first..).zip(units));
                    Assignment::Live { first, count }
                }
                Queued::Kafka(ranges) => {
                    if let Some(kafka) = self.live.kafka.as_mut() {
                        kafka.note(self.next_time, &ranges);
                    }
                    Assignment::Kafka { first, ranges }
                }
            };
            self.next_unit = assignment.units().end;
            out.push((self.next_time, assignment));
            self.next_time += 1;
            self.last_input = now;
        }
        if !self.queue.is_empty() && !self.stop.raised() {
            return out;
        }
        if let Some(reason) = self.should_end(now) {
            out.push((self.next_time, Assignment::End));
            self.end = Some(reason);
        }
        out
    }

    /// Looks at the live inputs for new batches.
    fn watch(&mut self, now: Instant) {
        if let (Some(watcher), Some(dataset)) = (self.live.watcher.as_mut(), self.dataset.as_ref())
        {
            match watcher.poll(dataset, &mut self.ingested, now) {
                Ok(found) => {
                    let mut tasks = Vec::new();
                    for found in found {
                        let retracts = match found.state {
                            FileState::Changed { unit } if !self.live.reingest_changed => {
                                self.end = self.end.take().or(Some(EndReason::Failed(
                                    changed_error(&found.file.rel, unit),
                                )));
                                return;
                            }
                            FileState::Changed { unit } => Some(unit),
                            _ => None,
                        };
                        match FileTask::look(&found.file, retracts) {
                            Ok(task) => tasks.push(task),
                            Err(error) => {
                                tracing::warn!(
                                    "{}: {}; will look again",
                                    found.file.rel,
                                    one_line(&error)
                                )
                            }
                        }
                    }
                    let groups = self.batching.group(tasks);
                    self.queue.extend(groups.into_iter().map(Queued::Files));
                }
                Err(error) => tracing::warn!("{}; will list again", one_line(&error)),
            }
        }
        if let Some(source) = self.live.source.as_mut() {
            while let Some(units) = source.poll(now) {
                self.queue.push_back(Queued::Live(units));
            }
        }
        if let Some(kafka) = self.live.kafka.as_mut() {
            match kafka.poll(now) {
                Ok(Some(ranges)) => self.queue.push_back(Queued::Kafka(ranges)),
                Ok(None) => {}
                Err(error) => {
                    self.end = self
                        .end
                        .take()
                        .or(Some(EndReason::Failed(one_line(&error))))
                }
            }
        }
        if !self.queue.is_empty() {
            self.last_input = now;
        }
    }

    fn should_end(&mut self, now: Instant) -> Option<EndReason> {
        if let Some(reason) = self.end.take() {
            return Some(reason);
        }
        if self.stop.raised() {
            return Some(EndReason::Signal);
        }
        let following =
            self.live.watcher.is_some() || self.live.source.is_some() || self.live.kafka.is_some();
        if !following {
            return Some(EndReason::Done);
        }
        if self.live.source.as_ref().is_some_and(LiveSource::finished) {
            return Some(EndReason::InputEnded);
        }
        if self
            .live
            .max_idle
            .is_some_and(|idle| now.duration_since(self.last_input) >= idle)
        {
            return Some(EndReason::Idle);
        }
        None
    }

    /// The live unit decided as `unit`, not taken yet.
    pub fn live_unit(&self, unit: u64) -> Option<&LiveBatch> {
        self.live_units.get(&unit)
    }

    /// The live unit decided as `unit`, taken by worker 0 when it feeds it.
    pub fn take_live_unit(&mut self, unit: u64) -> Option<LiveBatch> {
        self.live_units.remove(&unit)
    }

    /// Why the run ended, once it has.
    pub fn end_reason(&self) -> Option<&EndReason> {
        self.end.as_ref()
    }

    /// Logical times queued but not yet handed out (a static run's remaining plan).
    pub fn queued_times(&self) -> u64 {
        self.queue.len() as u64
    }

    /// Number of distinct files ingested so far (this run and earlier ones).
    pub fn files_ingested(&self) -> usize {
        self.ingested.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn readers(first: u64, count: u64, peers: usize) -> Vec<usize> {
        let assignment = Assignment::Replay { first, count };
        assignment
            .units()
            .map(|unit| assignment.reader(unit, peers))
            .collect()
    }

    #[test]
    fn each_worker_reads_one_contiguous_block_of_a_time_and_single_units_go_round() {
        assert_eq!(readers(0, 6, 2), [0, 0, 0, 1, 1, 1]);
        assert_eq!(readers(1, 6, 2), [1, 1, 1, 0, 0, 0]);
        assert_eq!(readers(0, 7, 3), [0, 0, 0, 1, 1, 2, 2]);
        assert_eq!(readers(0, 2, 4), [0, 2]);
        let singles: Vec<usize> = (0..4).flat_map(|first| readers(first, 1, 2)).collect();
        assert_eq!(singles, [0, 1, 0, 1]);
        let live = Assignment::Live { first: 5, count: 3 };
        assert!(live.units().all(|unit| live.reader(unit, 4) == 0));
    }
}
