//! Kafka source (`tidemark run --kafka BROKERS --topic T`): every partition of the
//! topic is followed from an offset that tidemark chooses, and each message becomes a
//! live line numbered by its offset.
//!
//! Worker 0 watches each partition's end offset ([`KafkaOffsets`]) and decides which
//! offset range of each partition a logical time holds: one input unit per partition.
//! The unit's reader worker (units are spread over every worker of every process, as
//! files are) fetches that range itself and parses it ([`KafkaReader`]), so partitions
//! are read in parallel, each host fetching its own share.
//!
//! Exactly once comes from the write-ahead log, as Spark's Kafka source gets it from
//! its checkpoint: a live batch logs the offset range it holds per partition
//! (`LineRange { source: "topic/partition", first, last }`), so a resumed run starts
//! each partition one past its last logged offset and replays the logged batches
//! themselves from the log. No consumer group is joined; with `--group`, completed
//! offsets are also committed to a group for lag monitors ([`crate::sources::kafka_group`]).
//!
//! The client is `rskafka` (pure Rust, no C library to install): it speaks the plain
//! fetch and list-offsets requests this needs, and tidemark keeps its own offsets.

use crate::error_text::one_line;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use rskafka::client::partition::{OffsetAt, PartitionClient, UnknownTopicHandling};
use rskafka::client::{Client, ClientBuilder};
use rskafka::BackoffConfig;
use tidemark_inputs::records::FileBatch;
use tidemark_inputs::{Mapping, NdjsonLines};

use crate::runtime::checkpoint::{BatchOrigin, LineRange};
use crate::sources::kafka_group::{take_through, Group, GroupCommitter, NextByTime};
use crate::sources::live::{next_after_log, Batching};

/// Where a new output starts reading each partition.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum StartOffset {
    /// The oldest message the broker still keeps.
    #[default]
    Earliest,
    /// Only messages produced after the run starts.
    Latest,
    /// The offsets `--group` has committed; the earliest where it has none.
    Committed,
}

/// A topic to follow.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KafkaInput {
    /// Bootstrap brokers, `host:port`.
    pub brokers: Vec<String>,
    /// The topic.
    pub topic: String,
    /// Where partitions without a logged offset start.
    pub start: StartOffset,
    /// The consumer group completed offsets are committed to (`--group`).
    pub group: Option<String>,
}

impl KafkaInput {
    /// The consumer group `--group` names, if any.
    pub fn group(&self) -> Option<Group> {
        self.group.as_ref().map(|group| Group {
            brokers: self.brokers.clone(),
            group: group.clone(),
            topic: self.topic.clone(),
        })
    }
}

/// At most this many bytes of one partition per fetch request.
const FETCH_BYTES: i32 = 4 << 20;
/// How long the broker may hold a fetch that finds no new message.
const FETCH_WAIT_MS: i32 = 200;
/// How long worker 0 keeps asking brokers that do not answer before the run fails
/// (with a warning at every try; the run is resumable).
const GIVE_UP_AFTER: Duration = Duration::from_secs(60);
/// How far back from a range's first offset a fetch may start to find the record batch
/// holding it.
const MAX_STEP_BACK: i64 = 1 << 20;
/// How long one request (with its retries) may take before it is an error.
const REQUEST_DEADLINE: Duration = Duration::from_secs(10);
/// How long worker 0 waits for a partition's end offset at one poll.
const POLL_TIMEOUT: Duration = Duration::from_secs(5);

/// The name a partition's messages are logged and quarantined under.
pub fn partition_label(topic: &str, partition: i32) -> String {
    format!("{topic}/{partition}")
}

/// The topic and partition a `topic/partition` label names.
fn parse_partition_label(label: &str) -> Option<(&str, i32)> {
    let (topic, partition) = label.rsplit_once('/')?;
    Some((topic, partition.parse().ok()?))
}

/// The offset each partition of `topic` resumes from: one past the last offset the
/// write-ahead log holds for it. Partitions with nothing logged are absent.
pub fn resume_offsets<'a>(
    topic: &str,
    origins: impl IntoIterator<Item = &'a BatchOrigin>,
) -> BTreeMap<i32, i64> {
    next_after_log(origins)
        .iter()
        .filter_map(|(source, next)| match parse_partition_label(source) {
            Some((logged, partition)) if logged == topic => Some((partition, *next as i64)),
            _ => None,
        })
        .collect()
}

/// Connects to the brokers (at most [`REQUEST_DEADLINE`]) and builds a single-threaded
/// runtime for the client's requests.
fn connect(input: &KafkaInput) -> Result<(tokio::runtime::Runtime, Client)> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the Kafka client's runtime")?;
    let brokers = input.brokers.join(",");
    // rskafka retries a failed request with backoff, by default for ever and silently:
    // bound it, so that a broker that is down ends in an error or a warning, not a hang.
    let backoff = BackoffConfig {
        max_backoff: Duration::from_secs(2),
        deadline: Some(REQUEST_DEADLINE),
        ..BackoffConfig::default()
    };
    let client = runtime.block_on(async {
        tokio::time::timeout(
            REQUEST_DEADLINE,
            ClientBuilder::new(input.brokers.clone())
                .client_id("tidemark")
                .backoff_config(backoff)
                .build(),
        )
        .await
        .map_err(|_| anyhow!("no answer within {} s", REQUEST_DEADLINE.as_secs()))
        .and_then(|c| c.map_err(anyhow::Error::from))
        .with_context(|| {
            format!("connecting to Kafka at {brokers} failed; check --kafka (host:port,...)")
        })
    })?;
    Ok((runtime, client))
}

/// Worker 0's view of the topic: each partition's next offset to take and its high
/// watermark, polled every `--batch-ms / 4` (at least 20 ms). It decides which offset
/// range of each partition a logical time holds, as it decides which files a time
/// holds; the workers fetch the messages themselves.
pub struct KafkaOffsets {
    runtime: tokio::runtime::Runtime,
    /// (client, next offset to take) per partition, in partition order.
    partitions: Vec<(PartitionClient, i64)>,
    batching: Batching,
    last_poll: Option<Instant>,
    /// Since when messages have been waiting to be taken.
    waiting_since: Option<Instant>,
    /// Since when asking the brokers has failed.
    failing_since: Option<Instant>,
    /// A description for progress lines.
    pub name: String,
    /// The consumer group completed offsets go to (`--group`), with the next offset of
    /// each partition after each logical time not yet committed.
    group: Option<(GroupCommitter, NextByTime)>,
}

impl KafkaOffsets {
    /// Connects, finds the topic's partitions and where each starts: one past its last
    /// logged offset (`resume`), else `input.start`. Says where on stderr.
    pub fn start(
        input: &KafkaInput,
        resume: &BTreeMap<i32, i64>,
        batching: Batching,
    ) -> Result<KafkaOffsets> {
        let (runtime, client) = connect(input)?;
        let brokers = input.brokers.join(",");
        let group = input.group();
        let partition_ids = runtime.block_on(topic_partitions(&client, &input.topic, &brokers))?;
        let committed = match (input.start, &group) {
            (StartOffset::Committed, None) => {
                bail!(
                    "--start-offset committed reads a consumer group's offsets: add --group GROUP"
                )
            }
            (StartOffset::Committed, Some(group))
                if partition_ids.iter().any(|p| !resume.contains_key(p)) =>
            {
                runtime
                    .block_on(within(group.committed(&partition_ids)))
                    .with_context(|| {
                        format!(
                            "reading the offsets consumer group `{}` committed on {brokers}",
                            group.group
                        )
                    })?
            }
            _ => BTreeMap::new(),
        };
        let partitions = runtime.block_on(async {
            let mut clients = Vec::new();
            for partition in partition_ids.iter().copied() {
                let pc = partition_client(&client, &input.topic, partition).await?;
                let label = partition_label(&input.topic, partition);
                if let (None, Some(offset)) = (resume.get(&partition), committed.get(&partition)) {
                    check_committed(&pc, &label, *offset).await?;
                }
                let offset = match resume.get(&partition).or(committed.get(&partition)) {
                    Some(offset) => *offset,
                    None => within(pc.get_offset(match input.start {
                        StartOffset::Earliest | StartOffset::Committed => OffsetAt::Earliest,
                        StartOffset::Latest => OffsetAt::Latest,
                    }))
                    .await
                    .with_context(|| {
                        format!(
                            "asking for the start offset of {}",
                            partition_label(&input.topic, partition)
                        )
                    })?,
                };
                clients.push((pc, offset));
            }
            anyhow::Ok(clients)
        })?;
        let starts: Vec<String> = partitions
            .iter()
            .map(|(pc, offset)| {
                let why = if resume.contains_key(&pc.partition()) {
                    "after the log"
                } else if committed.contains_key(&pc.partition()) {
                    "committed by the group"
                } else {
                    match input.start {
                        StartOffset::Earliest => "earliest",
                        StartOffset::Latest => "latest",
                        StartOffset::Committed => "earliest: the group committed none",
                    }
                };
                format!("{} from offset {offset} ({why})", pc.partition())
            })
            .collect();
        eprintln!(
            "reading Kafka topic {} on {brokers}, partitions {}",
            input.topic,
            starts.join(", ")
        );
        Ok(KafkaOffsets {
            runtime,
            name: format!(
                "kafka {brokers} topic {} ({} partitions)",
                input.topic,
                partitions.len()
            ),
            partitions,
            batching,
            last_poll: None,
            waiting_since: None,
            failing_since: None,
            group: group.map(|group| (GroupCommitter::start(group), BTreeMap::new())),
        })
    }

    /// Notes the offset ranges logical time `time` holds, to commit them to the
    /// consumer group once the time is completed. No-op without `--group`.
    pub fn note(&mut self, time: u64, ranges: &[LineRange]) {
        let Some((_, times)) = self.group.as_mut() else {
            return;
        };
        let next = times.entry(time).or_default();
        for range in ranges {
            if let Some((_, partition)) = parse_partition_label(&range.source) {
                next.push((partition, range.last as i64 + 1));
            }
        }
    }

    /// Commits the offsets of every noted time up to `done` (every sink has completed
    /// it) to the consumer group, from the committing thread.
    pub fn completed(&mut self, done: u64) {
        let Some((committer, times)) = self.group.as_mut() else {
            return;
        };
        let next = take_through(times, done);
        if !next.is_empty() {
            committer.commit(next);
        }
    }

    /// The offset ranges of the next logical time, one per partition with messages
    /// (a unit each, in partition order, read by different workers and judged as one
    /// arrival), when one is due: at least `--batch-events` offsets waiting, or the
    /// oldest waiting `--batch-ms`. About `--batch-events` offsets a time at most.
    pub fn poll(&mut self, now: Instant) -> Result<Option<Vec<LineRange>>> {
        match self.try_poll(now) {
            Ok(ranges) => {
                self.failing_since = None;
                Ok(ranges)
            }
            Err(error) => {
                let since = *self.failing_since.get_or_insert(now);
                if now.duration_since(since) >= GIVE_UP_AFTER {
                    return Err(error.context(format!(
                        "the Kafka brokers did not answer for {} s; the run stops (what \
                         was logged is kept: run the same command again once they are up)",
                        GIVE_UP_AFTER.as_secs()
                    )));
                }
                tracing::warn!(
                    "the Kafka brokers do not answer: {}; asking again",
                    one_line(&error)
                );
                Ok(None)
            }
        }
    }

    fn try_poll(&mut self, now: Instant) -> Result<Option<Vec<LineRange>>> {
        let every = (self.batching.interval / 4).max(Duration::from_millis(20));
        if self
            .last_poll
            .is_some_and(|at| now.duration_since(at) < every)
        {
            return Ok(None);
        }
        self.last_poll = Some(now);
        let ends = self.runtime.block_on(async {
            let mut ends = Vec::new();
            for (pc, _) in &self.partitions {
                let label = partition_label(pc.topic(), pc.partition());
                let end = tokio::time::timeout(POLL_TIMEOUT, pc.get_offset(OffsetAt::Latest))
                    .await
                    .map_err(|_| anyhow!("no answer within {} s", POLL_TIMEOUT.as_secs()))
                    .and_then(|end| end.map_err(anyhow::Error::from))
                    .with_context(|| format!("asking for the end of {label}"))?;
                ends.push(end);
            }
            anyhow::Ok(ends)
        })?;
        let waiting: i64 = self
            .partitions
            .iter()
            .zip(&ends)
            .map(|((_, next), end)| (end - next).max(0))
            .sum();
        if waiting == 0 {
            self.waiting_since = None;
            return Ok(None);
        }
        let since = *self.waiting_since.get_or_insert(now);
        let full = waiting >= self.batching.events as i64;
        if !full && now.duration_since(since) < self.batching.interval {
            return Ok(None);
        }
        // A backlog is taken from every partition in proportion to what waits there (as
        // Spark's maxOffsetsPerTrigger splits it), so that a time covers about the same
        // span of event time in each partition: the time's ranges are judged for lateness
        // together, and the next time's against all of them.
        let cap = self.batching.events.max(1) as i64;
        let mut ranges = Vec::new();
        for ((pc, next), end) in self.partitions.iter_mut().zip(ends) {
            let here = (end - *next).max(0);
            let take = if waiting <= cap {
                here
            } else {
                (here * cap / waiting).max(1).min(here)
            };
            if take == 0 {
                continue;
            }
            ranges.push(LineRange {
                source: partition_label(pc.topic(), pc.partition()),
                first: *next as u64,
                last: (*next + take - 1) as u64,
            });
            *next += take;
        }
        self.waiting_since = (waiting > self.batching.events as i64).then_some(now);
        Ok(Some(ranges))
    }
}

/// Checks that a group's committed `offset` of a partition is one the broker still
/// holds or the next to come: an error otherwise, saying what happened and what to do.
async fn check_committed(pc: &PartitionClient, label: &str, offset: i64) -> Result<()> {
    let earliest = within(pc.get_offset(OffsetAt::Earliest))
        .await
        .with_context(|| format!("asking for the earliest offset of {label}"))?;
    let end = within(pc.get_offset(OffsetAt::Latest))
        .await
        .with_context(|| format!("asking for the end of {label}"))?;
    if offset < earliest {
        bail!(
            "the group's committed offset of {label} is {offset}, but the broker keeps only \
             offsets {earliest} and later: the messages between were deleted (retention) \
             before anyone read them. Start with --start-offset earliest to take what is kept"
        );
    }
    if offset > end {
        bail!(
            "the group's committed offset of {label} is {offset}, past the partition's end \
             {end}: the topic was probably deleted and made again. Start with \
             --start-offset earliest or latest"
        );
    }
    Ok(())
}

/// A worker's connection to the topic, made when it first reads a unit: fetches the
/// messages of an offset range and parses them (contract columns or the `[events]`
/// mapping), each numbered by its offset.
pub struct KafkaReader {
    input: KafkaInput,
    connection: Option<(tokio::runtime::Runtime, Client)>,
    partitions: BTreeMap<i32, PartitionClient>,
    parser: NdjsonLines,
}

impl KafkaReader {
    /// A reader of `input` that parses with `mapping`; it connects on first use.
    pub fn new(input: KafkaInput, mapping: &Mapping) -> KafkaReader {
        KafkaReader {
            input,
            connection: None,
            partitions: BTreeMap::new(),
            parser: NdjsonLines::new(mapping),
        }
    }

    /// The messages of `range` (`topic/partition`, first and last offset), parsed. An
    /// offset that holds no message (a transaction marker, a compacted record) is
    /// skipped; a message the broker no longer keeps is an error.
    pub fn read(&mut self, range: &LineRange) -> Result<FileBatch> {
        let (_, partition) = parse_partition_label(&range.source)
            .with_context(|| format!("`{}` is not a topic/partition", range.source))?;
        if self.connection.is_none() {
            self.connection = Some(connect(&self.input)?);
        }
        let (runtime, client) = self.connection.as_ref().expect("connected above");
        if !self.partitions.contains_key(&partition) {
            let pc = runtime.block_on(partition_client(client, &self.input.topic, partition))?;
            self.partitions.insert(partition, pc);
        }
        let pc = &self.partitions[&partition];
        let (first, last) = (range.first as i64, range.last as i64);
        let mut messages: Vec<(i64, Vec<u8>)> = Vec::new();
        // `wanted`: the next offset of the range to take; `cursor`: where to fetch.
        let (mut wanted, mut cursor) = (first, first);
        // A broker should answer a fetch from the middle of a record batch with that
        // whole batch; one that answers with the next batch (tansu 0.6 does) would skip
        // the rest of it. So while no answer has reached back to `first`, fetch from
        // further back (1, 4, 16, ... offsets), and skip what comes before `first`.
        let mut back: i64 = 1;
        let mut reached_first = false;
        let mut empty_answers = 0;
        runtime.block_on(async {
            while wanted <= last {
                let fetch = pc.fetch_records(cursor, 1..FETCH_BYTES, FETCH_WAIT_MS);
                let (records, high_watermark) = tokio::time::timeout(REQUEST_DEADLINE, fetch)
                    .await
                    .map_err(|_| {
                        anyhow!(
                            "fetching {} at offset {cursor} failed: no answer within {} s",
                            range.source,
                            REQUEST_DEADLINE.as_secs()
                        )
                    })?
                    .map_err(|error| fetch_error(&range.source, cursor, &error))?;
                if !reached_first {
                    let after_first = records.first().is_some_and(|r| r.offset > first);
                    if after_first && first > 0 && back <= MAX_STEP_BACK {
                        cursor = (first - back).max(0);
                        back *= 4;
                        continue;
                    }
                    reached_first = true;
                    if let Some(next) = records.first().map(|r| r.offset).filter(|o| *o > first) {
                        tracing::warn!(
                            "{}: the broker's first message at or after offset {first} is at \
                             {next}; offsets {first}..{next} hold no message (transaction \
                             markers or compacted records)",
                            range.source
                        );
                    }
                }
                let before = wanted;
                let answered_nothing = records.is_empty();
                if let Some(last_seen) = records.last() {
                    cursor = cursor.max(last_seen.offset + 1);
                }
                for record in records {
                    if record.offset < wanted || record.offset > last {
                        continue;
                    }
                    wanted = record.offset + 1;
                    messages.push((record.offset, record.record.value.unwrap_or_default()));
                }
                if wanted == before {
                    if high_watermark > last && (answered_nothing || cursor > last) {
                        // Nothing more in the range: the rest are offsets without messages.
                        break;
                    }
                    empty_answers += 1;
                    if empty_answers > 100 {
                        bail!(
                            "{}: no message between offsets {wanted} and {last} after 100 \
                             fetches, though the broker listed them",
                            range.source
                        );
                    }
                } else {
                    empty_answers = 0;
                }
            }
            anyhow::Ok(())
        })?;
        let mut batch = FileBatch::default();
        for (offset, bytes) in messages {
            self.parser
                .push(&bytes, offset as u64, &range.source, &mut batch);
        }
        batch.close_bad_rows();
        Ok(batch)
    }
}

async fn partition_client(client: &Client, topic: &str, partition: i32) -> Result<PartitionClient> {
    within(client.partition_client(topic.to_string(), partition, UnknownTopicHandling::Retry))
        .await
        .with_context(|| format!("opening {}", partition_label(topic, partition)))
}

/// `request`, or an error once it has had no answer for [`REQUEST_DEADLINE`]. rskafka's
/// own deadline bounds its retries; this bounds everything, so that a broker that goes
/// away mid-request ends in an error, never a silent hang.
pub(crate) async fn within<T, E>(
    request: impl std::future::Future<Output = Result<T, E>>,
) -> Result<T>
where
    E: Into<anyhow::Error>,
{
    tokio::time::timeout(REQUEST_DEADLINE, request)
        .await
        .map_err(|_| anyhow!("no answer within {} s", REQUEST_DEADLINE.as_secs()))?
        .map_err(Into::into)
}

/// A fetch that failed, with what it means when the broker no longer keeps the offset.
fn fetch_error(source: &str, offset: i64, error: &rskafka::client::error::Error) -> anyhow::Error {
    let hint = if error.to_string().contains("OffsetOutOfRange") {
        " (the broker no longer keeps that offset: its messages were deleted, for example \
         by retention, before this run read them)"
    } else {
        ""
    };
    anyhow!("fetching {source} at offset {offset} failed{hint}: {error}")
}

/// The partitions of `topic`, or an error listing the topics there are.
async fn topic_partitions(client: &Client, topic: &str, brokers: &str) -> Result<Vec<i32>> {
    let topics = within(client.list_topics())
        .await
        .with_context(|| format!("listing the topics of {brokers}"))?;
    match topics.iter().find(|t| t.name == topic) {
        Some(found) if !found.partitions.is_empty() => {
            Ok(found.partitions.iter().copied().collect())
        }
        Some(_) => bail!("topic `{topic}` on {brokers} has no partitions"),
        None => {
            let mut names: Vec<&str> = topics.iter().map(|t| t.name.as_str()).collect();
            names.sort_unstable();
            bail!(
                "topic `{topic}` does not exist on {brokers} (topics there: {}); create it or fix --topic",
                if names.is_empty() {
                    "none".to_string()
                } else {
                    names.join(", ")
                }
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(ranges: &[(&str, u64, u64)]) -> BatchOrigin {
        BatchOrigin::Lines(
            ranges
                .iter()
                .map(|(source, first, last)| LineRange {
                    source: source.to_string(),
                    first: *first,
                    last: *last,
                })
                .collect(),
        )
    }

    #[test]
    fn a_partition_resumes_one_past_its_last_logged_offset() {
        let log = [
            lines(&[("events/0", 0, 9), ("events/1", 3, 4)]),
            lines(&[("events/0", 10, 19), ("other/2", 0, 99), ("stdin", 1, 5)]),
        ];
        let resume = resume_offsets("events", log.iter());
        assert_eq!(resume, BTreeMap::from([(0, 20), (1, 5)]));
        assert!(resume_offsets("missing", log.iter()).is_empty());
    }
}
