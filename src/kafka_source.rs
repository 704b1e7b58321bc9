//! Kafka source (`tidemark run --kafka BROKERS --topic T`): every partition of the
//! topic is followed from an offset that tidemark chooses, and each message becomes a
//! live line numbered by its offset.
//!
//! Exactly once comes from the write-ahead log, as Spark's Kafka source gets it from
//! its checkpoint: a live batch logs the offset range it holds per partition
//! (`LineRange { source: "topic/partition", first, last }`), so a resumed run starts
//! each partition one past its last logged offset and replays the logged batches
//! themselves from the log. No consumer group is used and no offset is committed to
//! the broker.
//!
//! The client is `rskafka` (pure Rust, no C library to install): it speaks the plain
//! fetch and list-offsets requests this needs, and tidemark keeps its own offsets.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use crossbeam_channel::{Sender, TrySendError};
use rskafka::client::partition::{OffsetAt, PartitionClient, UnknownTopicHandling};
use rskafka::client::{Client, ClientBuilder};

use crate::checkpoint::BatchOrigin;
use crate::live_source::Message;

/// Where a new output starts reading each partition.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum StartOffset {
    /// The oldest message the broker still keeps.
    #[default]
    Earliest,
    /// Only messages produced after the run starts.
    Latest,
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
}

/// At most this many bytes of one partition per fetch request.
const FETCH_BYTES: i32 = 4 << 20;
/// How long the broker may hold a fetch that finds no new message.
const FETCH_WAIT_MS: i32 = 200;

/// The name a partition's messages are logged and quarantined under.
pub fn partition_label(topic: &str, partition: i32) -> String {
    format!("{topic}/{partition}")
}

/// The offset each partition of `topic` resumes from: one past the last offset the
/// write-ahead log holds for it. Partitions with nothing logged are absent.
pub fn resume_offsets<'a>(
    topic: &str,
    origins: impl IntoIterator<Item = &'a BatchOrigin>,
) -> BTreeMap<i32, i64> {
    let mut next = BTreeMap::new();
    for origin in origins {
        let BatchOrigin::Lines(ranges) = origin else {
            continue;
        };
        for range in ranges {
            let partition = range
                .source
                .rsplit_once('/')
                .filter(|(t, _)| *t == topic)
                .and_then(|(_, p)| p.parse::<i32>().ok());
            if let Some(partition) = partition {
                let after = range.last as i64 + 1;
                let entry = next.entry(partition).or_insert(after);
                *entry = (*entry).max(after);
            }
        }
    }
    next
}

/// Connects, finds the topic's partitions and their start offsets, and starts a
/// thread that sends every message, in offset order per partition, to `sender`. A
/// fetch that fails for good (the broker lost, an offset deleted by retention) sends
/// [`Message::Failed`], which ends the run with that error; what was logged stays.
/// Returns a description for progress lines.
pub(crate) fn start(
    input: &KafkaInput,
    resume: &BTreeMap<i32, i64>,
    sender: Sender<Message>,
) -> Result<String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the Kafka client's runtime")?;
    let brokers = input.brokers.join(",");
    let partitions = runtime.block_on(async {
        let client = tokio::time::timeout(
            Duration::from_secs(30),
            ClientBuilder::new(input.brokers.clone())
                .client_id("tidemark")
                .build(),
        )
        .await
        .map_err(|_| anyhow!("no answer within 30 s"))
        .and_then(|c| c.map_err(anyhow::Error::from))
        .with_context(|| {
            format!("connecting to Kafka at {brokers} failed; check --kafka (host:port,...)")
        })?;
        let partitions = topic_partitions(&client, &input.topic, &brokers).await?;
        let mut clients = Vec::new();
        for partition in partitions {
            let pc = client
                .partition_client(input.topic.clone(), partition, UnknownTopicHandling::Retry)
                .await
                .with_context(|| format!("opening {}", partition_label(&input.topic, partition)))?;
            let offset = match resume.get(&partition) {
                Some(offset) => *offset,
                None => pc
                    .get_offset(match input.start {
                        StartOffset::Earliest => OffsetAt::Earliest,
                        StartOffset::Latest => OffsetAt::Latest,
                    })
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
            } else {
                match input.start {
                    StartOffset::Earliest => "earliest",
                    StartOffset::Latest => "latest",
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
    let name = format!(
        "kafka {brokers} topic {} ({} partitions)",
        input.topic,
        partitions.len()
    );
    std::thread::Builder::new()
        .name("kafka-reader".into())
        .spawn(move || {
            runtime.block_on(async move {
                let mut tasks = tokio::task::JoinSet::new();
                for (pc, offset) in partitions {
                    tasks.spawn(follow_partition(pc, offset, sender.clone()));
                }
                while let Some(done) = tasks.join_next().await {
                    let failure = match done {
                        Ok(Ok(())) => continue,
                        Ok(Err(error)) => format!("{error:#}"),
                        Err(panic) => format!("a Kafka reader task failed: {panic}"),
                    };
                    sender.send(Message::Failed(failure)).ok();
                    return;
                }
            })
        })
        .context("starting the Kafka reader")?;
    Ok(name)
}

/// The partitions of `topic`, or an error listing the topics there are.
async fn topic_partitions(client: &Client, topic: &str, brokers: &str) -> Result<Vec<i32>> {
    let topics = client
        .list_topics()
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

/// Sends every message of one partition from `offset` on, until the run ends (the
/// channel closes) or a fetch fails for good.
async fn follow_partition(
    pc: PartitionClient,
    mut offset: i64,
    sender: Sender<Message>,
) -> Result<()> {
    let label: Arc<str> = partition_label(pc.topic(), pc.partition()).into();
    let mut first_fetch = true;
    loop {
        let (records, _high_watermark) = pc
            .fetch_records(offset, 1..FETCH_BYTES, FETCH_WAIT_MS)
            .await
            .map_err(|error| {
                let hint = if error.to_string().contains("OffsetOutOfRange") {
                    " (the broker no longer keeps that offset: its messages were deleted, \
                     for example by retention, before this run read them)"
                } else {
                    ""
                };
                anyhow!("fetching {label} at offset {offset} failed{hint}: {error}")
            })?;
        // Where the run starts (a resumed one: one past the last logged offset), a gap
        // would hide lost messages: say so. Later gaps are ordinary in Kafka (compacted
        // topics, transaction markers).
        if let Some(next) = records.iter().map(|r| r.offset).find(|o| *o >= offset) {
            if first_fetch && next > offset {
                tracing::warn!(
                    "{label}: asked for offset {offset}, the broker's next message is at {next}; \
                     offsets {offset}..{next} are not read (compacted or transaction markers, \
                     or a broker that skips the rest of a record batch)"
                );
            }
            first_fetch = false;
        }
        for record in records {
            if record.offset < offset {
                continue;
            }
            offset = record.offset + 1;
            let mut message = Message::Line {
                source: Arc::clone(&label),
                number: record.offset as u64,
                bytes: record.record.value.unwrap_or_default(),
            };
            // Wait for room without blocking the other partitions' fetches.
            loop {
                match sender.try_send(message) {
                    Ok(()) => break,
                    Err(TrySendError::Full(back)) => {
                        message = back;
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                    Err(TrySendError::Disconnected(_)) => return Ok(()),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::LineRange;

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
