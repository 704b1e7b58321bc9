//! Deciding what each logical time holds. Worker 0 alone decides (replay the logged
//! batches, then the dataset's new files, then, when following, each new file or live
//! batch as it comes) and broadcasts its decisions through a small control dataflow,
//! so every worker of every process agrees on the same sequence of logical times
//! however the directory listing looks from where it runs.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tidemark_inputs::dataset::Dataset;

use crate::follow::Watcher;
use crate::ingested::{changed_error, FileState, FileTask, IngestedFiles};
use crate::live_source::{LiveBatch, LiveSource};
use crate::stop::StopFlag;

/// What the workers do at one logical time.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Assignment {
    /// Feed the batch the write-ahead log holds for this time (recovery).
    Replay,
    /// Read this file, log it, feed it.
    File(FileTask),
    /// Log and feed the live batch worker 0 holds for this time.
    Live,
    /// No more logical times: close the inputs and finish.
    End,
}

impl Assignment {
    /// The worker that reads, logs and feeds this time's batch.
    pub fn reader(&self, time: u64, peers: usize) -> usize {
        match self {
            Assignment::Live => 0,
            _ => (time % peers as u64) as usize,
        }
    }
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
    /// Stop after this long with no new input.
    pub max_idle: Option<Duration>,
    /// Re-ingest changed files instead of failing.
    pub reingest_changed: bool,
}

/// Worker 0's decider.
pub struct Scheduler {
    dataset: Option<Dataset>,
    ingested: IngestedFiles,
    queue: VecDeque<Assignment>,
    live: Live,
    stop: StopFlag,
    next_time: u64,
    last_input: Instant,
    live_batches: BTreeMap<u64, LiveBatch>,
    end: Option<EndReason>,
}

impl Scheduler {
    /// A decider that first replays times `0..replayed`, then ingests `initial`, then
    /// follows `live` (if any of its inputs is set) until its end.
    pub fn new(
        dataset: Option<Dataset>,
        ingested: IngestedFiles,
        replayed: u64,
        initial: Vec<FileTask>,
        live: Live,
        stop: StopFlag,
    ) -> Scheduler {
        let mut queue: VecDeque<Assignment> = (0..replayed).map(|_| Assignment::Replay).collect();
        queue.extend(initial.into_iter().map(Assignment::File));
        Scheduler {
            dataset,
            ingested,
            queue,
            live,
            stop,
            next_time: 0,
            last_input: Instant::now(),
            live_batches: BTreeMap::new(),
            end: None,
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
            let Some(assignment) = self.queue.pop_front() else {
                break;
            };
            if let Assignment::File(task) = &assignment {
                self.ingested.record(task, self.next_time);
            }
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
                    for found in found {
                        let retracts = match found.state {
                            FileState::Changed { time } if !self.live.reingest_changed => {
                                self.end = self.end.take().or(Some(EndReason::Failed(
                                    changed_error(&found.file.rel, time),
                                )));
                                return;
                            }
                            FileState::Changed { time } => Some(time),
                            _ => None,
                        };
                        match FileTask::look(&found.file, retracts) {
                            Ok(task) => self.queue.push_back(Assignment::File(task)),
                            Err(error) => {
                                tracing::warn!("{}: {error:#}; will look again", found.file.rel)
                            }
                        }
                    }
                }
                Err(error) => tracing::warn!("{error:#}; will list again"),
            }
        }
        if let Some(source) = self.live.source.as_mut() {
            while let Some(batch) = source.poll(now) {
                self.live_batches
                    .insert(self.next_time + self.queue.len() as u64, batch);
                self.queue.push_back(Assignment::Live);
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
        let following = self.live.watcher.is_some() || self.live.source.is_some();
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

    /// The live batch decided for `time`, taken by worker 0 when it feeds that time.
    pub fn take_live_batch(&mut self, time: u64) -> Option<LiveBatch> {
        self.live_batches.remove(&time)
    }

    /// Why the run ended, once it has.
    pub fn end_reason(&self) -> Option<&EndReason> {
        self.end.as_ref()
    }

    /// Number of distinct files ingested so far (this run and earlier ones).
    pub fn files_ingested(&self) -> usize {
        self.ingested.len()
    }
}
