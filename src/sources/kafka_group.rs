//! A Kafka consumer group's committed offsets (`--group G`): what lag monitors
//! (`kafka-consumer-groups.sh`, Burrow, Kafka UI) read to see how far a consumer is.
//!
//! tidemark's own truth stays the write-ahead log: a resumed `OUT` starts after its
//! last logged offset whatever the group says. With `--group`, each completed logical
//! time's offsets (one past the last message of each partition it holds) are also
//! committed to the group, as Flink's Kafka source commits on checkpoint completion
//! and as a consumer with manually assigned partitions does: generation -1, no member,
//! so no group membership or rebalance is involved. `--start-offset committed` makes a
//! *new* `OUT` start where the group's commits say.
//!
//! rskafka has no consumer-group requests, so the three this needs (find the group
//! coordinator, commit, fetch committed offsets) are sent with the `kafka-protocol`
//! crate's message types over a plain TCP connection, at versions agreed with the
//! broker through `ApiVersions`.

use crate::error_text::one_line;
use std::collections::BTreeMap;
use std::sync::mpsc::{Receiver, Sender};
use std::thread::JoinHandle;

use anyhow::{anyhow, bail, Context, Result};
use bytes::{Buf, BufMut, BytesMut};
use kafka_protocol::error::{ParseResponseErrorCode, ResponseError};
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, FindCoordinatorRequest, GroupId, OffsetCommitRequest,
    OffsetFetchRequest, RequestHeader, ResponseHeader, TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Request, StrBytes};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::sources::kafka::within;

/// The largest answer accepted (a committed-offsets answer for a few thousand
/// partitions is far smaller).
const MAX_RESPONSE_BYTES: usize = 64 << 20;

/// A Kafka error code in words (`UnknownMemberId (25): The coordinator is not aware
/// of this member.`).
fn error_text(code: i16) -> String {
    match code.err() {
        Some(ResponseError::Unknown(_)) | None => format!("error code {code}"),
        Some(error) => format!("{error:?} ({code}): {error}"),
    }
}

/// A consumer group of a topic on some brokers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Group {
    /// Bootstrap brokers, `host:port`.
    pub brokers: Vec<String>,
    /// The group id.
    pub group: String,
    /// The topic whose offsets are committed.
    pub topic: String,
}

/// One connection to a broker, with the request versions it and we both speak.
struct Connection {
    stream: TcpStream,
    correlation: i32,
    /// The (lowest, highest) version of each API key the broker supports.
    versions: BTreeMap<i16, (i16, i16)>,
}

impl Connection {
    async fn open(address: &str) -> Result<Connection> {
        let stream = TcpStream::connect(address)
            .await
            .with_context(|| format!("connecting to {address}"))?;
        let mut connection = Connection {
            stream,
            correlation: 0,
            versions: BTreeMap::new(),
        };
        // Version 0 of ApiVersions is answered by every broker (an older or newer one
        // answers with what it supports).
        let answer = connection
            .send(&ApiVersionsRequest::default(), 0)
            .await
            .with_context(|| format!("asking {address} which requests it supports"))?;
        if answer.error_code != 0 {
            bail!(
                "{address} refused ApiVersions: {}",
                error_text(answer.error_code)
            );
        }
        connection.versions = answer
            .api_keys
            .iter()
            .map(|key| (key.api_key, (key.min_version, key.max_version)))
            .collect();
        Ok(connection)
    }

    /// The highest version of `R` in `ours` that the broker supports.
    fn version<R: Request>(&self, ours: std::ops::RangeInclusive<i16>) -> Result<i16> {
        let (low, high) = self.versions.get(&R::KEY).copied().unwrap_or((-1, -1));
        let version = high.min(*ours.end());
        if version < low.max(*ours.start()) {
            let name = ApiKey::try_from(R::KEY)
                .map_or_else(|_| format!("{}", R::KEY), |k| format!("{k:?}"));
            bail!(
                "the broker supports {name} versions {low}..={high}; tidemark speaks {}..={}",
                ours.start(),
                ours.end()
            );
        }
        Ok(version)
    }

    /// Sends one request at `version` and reads its answer.
    async fn send<R: Request>(&mut self, request: &R, version: i16) -> Result<R::Response> {
        self.correlation += 1;
        let header = RequestHeader::default()
            .with_request_api_key(R::KEY)
            .with_request_api_version(version)
            .with_correlation_id(self.correlation)
            .with_client_id(Some(StrBytes::from_static_str("tidemark")));
        let mut body = BytesMut::new();
        header.encode(&mut body, R::header_version(version))?;
        request.encode(&mut body, version)?;
        let mut frame = BytesMut::with_capacity(body.len() + 4);
        frame.put_i32(i32::try_from(body.len()).context("request too large")?);
        frame.extend_from_slice(&body);
        self.stream.write_all(&frame).await?;
        let length = self.stream.read_i32().await?;
        let length = usize::try_from(length)
            .ok()
            .filter(|n| *n <= MAX_RESPONSE_BYTES && *n >= 4)
            .ok_or_else(|| anyhow!("an answer of {length} bytes"))?;
        let mut answer = vec![0u8; length];
        self.stream.read_exact(&mut answer).await?;
        let mut answer = bytes::Bytes::from(answer);
        let header = ResponseHeader::decode(&mut answer, R::Response::header_version(version))?;
        if header.correlation_id != self.correlation {
            bail!(
                "an answer to request {} where {} was asked",
                header.correlation_id,
                self.correlation
            );
        }
        let response = R::Response::decode(&mut answer, version)?;
        if answer.has_remaining() {
            tracing::debug!("{} bytes after a Kafka answer", answer.remaining());
        }
        Ok(response)
    }
}

impl Group {
    /// A connection to the group's coordinator, found through the first bootstrap
    /// broker that answers.
    async fn coordinator(&self) -> Result<Connection> {
        let mut failures = Vec::new();
        for broker in &self.brokers {
            match self.coordinator_via(broker).await {
                Ok(connection) => return Ok(connection),
                Err(error) => failures.push(format!("{broker}: {}", one_line(&error))),
            }
        }
        bail!(
            "no broker found the coordinator of consumer group `{}` ({})",
            self.group,
            failures.join("; ")
        )
    }

    async fn coordinator_via(&self, broker: &str) -> Result<Connection> {
        let mut connection = Connection::open(broker).await?;
        // Versions 4 and later ask for several keys at once; 1 is the oldest Kafka 4
        // still answers.
        let version = connection.version::<FindCoordinatorRequest>(1..=3)?;
        let request = FindCoordinatorRequest::default()
            .with_key(StrBytes::from_string(self.group.clone()))
            .with_key_type(0);
        let answer = connection.send(&request, version).await?;
        if answer.error_code != 0 {
            bail!(
                "FindCoordinator: {}{}",
                error_text(answer.error_code),
                answer
                    .error_message
                    .as_ref()
                    .map(|m| format!(": {}", m.as_str()))
                    .unwrap_or_default()
            );
        }
        let address = format!("{}:{}", answer.host.as_str(), answer.port);
        if address == broker {
            return Ok(connection);
        }
        Connection::open(&address).await
    }

    /// Commits `next` (partition -> the offset of the next message to read, Kafka's
    /// convention) to the group, through a connection to its coordinator.
    async fn commit(&self, connection: &mut Connection, next: &BTreeMap<i32, i64>) -> Result<()> {
        // Version 9 and later belong to the new consumer protocol (member epochs).
        let version = connection.version::<OffsetCommitRequest>(2..=8)?;
        let partitions = next
            .iter()
            .map(|(partition, offset)| {
                OffsetCommitRequestPartition::default()
                    .with_partition_index(*partition)
                    .with_committed_offset(*offset)
                    .with_committed_leader_epoch(-1)
                    .with_committed_metadata(Some(StrBytes::from_static_str("tidemark")))
            })
            .collect();
        let request = OffsetCommitRequest::default()
            .with_group_id(GroupId(StrBytes::from_string(self.group.clone())))
            .with_generation_id_or_member_epoch(-1)
            .with_member_id(StrBytes::from_static_str(""))
            .with_retention_time_ms(-1)
            .with_topics(vec![OffsetCommitRequestTopic::default()
                .with_name(TopicName(StrBytes::from_string(self.topic.clone())))
                .with_partitions(partitions)]);
        let answer = connection.send(&request, version).await?;
        let refused: Vec<String> = answer
            .topics
            .iter()
            .flat_map(|topic| &topic.partitions)
            .filter(|partition| partition.error_code != 0)
            .map(|partition| {
                format!(
                    "partition {}: {}",
                    partition.partition_index,
                    error_text(partition.error_code)
                )
            })
            .collect();
        if !refused.is_empty() {
            // A group with members of its own (a running consumer application) refuses
            // commits from outside it.
            bail!(
                "the coordinator refused the commit ({}); if other consumers are members of `{}`, give tidemark a group of its own",
                refused.join(", "),
                self.group
            );
        }
        Ok(())
    }

    /// The group's committed offsets of `partitions` (the next offset to read); a
    /// partition the group has committed nothing for is absent.
    pub async fn committed(&self, partitions: &[i32]) -> Result<BTreeMap<i32, i64>> {
        let mut connection = self.coordinator().await?;
        // Version 8 and later ask for several groups at once.
        let version = connection.version::<OffsetFetchRequest>(1..=7)?;
        let request = OffsetFetchRequest::default()
            .with_group_id(GroupId(StrBytes::from_string(self.group.clone())))
            .with_topics(Some(vec![OffsetFetchRequestTopic::default()
                .with_name(TopicName(StrBytes::from_string(self.topic.clone())))
                .with_partition_indexes(partitions.to_vec())]));
        let answer = connection.send(&request, version).await?;
        if answer.error_code != 0 {
            bail!("OffsetFetch: {}", error_text(answer.error_code));
        }
        let mut committed = BTreeMap::new();
        for topic in answer
            .topics
            .iter()
            .filter(|t| t.name.0.as_str() == self.topic)
        {
            for partition in &topic.partitions {
                if partition.error_code != 0 {
                    bail!(
                        "OffsetFetch, partition {}: {}",
                        partition.partition_index,
                        error_text(partition.error_code)
                    );
                }
                if partition.committed_offset >= 0 {
                    committed.insert(partition.partition_index, partition.committed_offset);
                }
            }
        }
        Ok(committed)
    }
}

/// Per logical time not yet committed, the next offset of each partition it holds.
pub type NextByTime = BTreeMap<u64, Vec<(i32, i64)>>;

/// Takes the times up to `done` out of `times` and returns each partition's next
/// offset after them (the latest time's, as offsets only grow).
pub fn take_through(times: &mut NextByTime, done: u64) -> BTreeMap<i32, i64> {
    let later = times.split_off(&(done + 1));
    std::mem::replace(times, later)
        .into_values()
        .flatten()
        .collect()
}

/// Commits offsets to a group from a thread of its own, so that a slow or absent
/// coordinator never holds up the dataflow. Offsets sent while a commit is under way
/// are merged; only the newest is committed. A failed commit is a warning (the next
/// completed time tries again); dropping the committer waits for the last commit.
pub struct GroupCommitter {
    sender: Option<Sender<BTreeMap<i32, i64>>>,
    thread: Option<JoinHandle<()>>,
}

impl GroupCommitter {
    /// Starts the committing thread.
    pub fn start(group: Group) -> GroupCommitter {
        let (sender, receiver) = std::sync::mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("kafka-group".into())
            .spawn(move || commit_loop(&group, &receiver))
            .ok();
        GroupCommitter {
            sender: Some(sender),
            thread,
        }
    }

    /// Asks for `next` to be committed.
    pub fn commit(&self, next: BTreeMap<i32, i64>) {
        if let Some(sender) = &self.sender {
            let _ = sender.send(next);
        }
    }
}

impl Drop for GroupCommitter {
    fn drop(&mut self) {
        self.sender = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Commits what arrives on `receiver`, keeping one connection to the coordinator
/// between commits (a failure drops it: the coordinator may have moved).
fn commit_loop(group: &Group, receiver: &Receiver<BTreeMap<i32, i64>>) {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            tracing::warn!(
                "no offsets are committed to consumer group `{}`: starting a runtime failed: {error}",
                group.group
            );
            return;
        }
    };
    let mut connection: Option<Connection> = None;
    let mut failing = false;
    while let Ok(mut next) = receiver.recv() {
        // Offsets only grow: take the newest of what waits.
        while let Ok(newer) = receiver.try_recv() {
            next.extend(newer);
        }
        let result = runtime.block_on(within(async {
            let coordinator = match connection.take() {
                Some(coordinator) => coordinator,
                None => group.coordinator().await?,
            };
            group.commit(connection.insert(coordinator), &next).await
        }));
        if result.is_err() {
            connection = None;
        }
        match result {
            Ok(()) => {
                if failing {
                    tracing::info!(
                        "offsets are committed to consumer group `{}` again",
                        group.group
                    );
                }
                failing = false;
            }
            Err(error) => {
                if !failing {
                    tracing::warn!(
                        "committing offsets to consumer group `{}` failed: {}; tidemark's own log keeps them, and the next completed time tries again",
                        group.group,
                        one_line(&error)
                    );
                }
                failing = true;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn completed_times_give_each_partition_its_latest_next_offset() {
        let mut times = NextByTime::new();
        times.insert(1, vec![(0, 10), (1, 4)]);
        times.insert(2, vec![(0, 17)]);
        times.insert(3, vec![(1, 9), (2, 3)]);
        assert_eq!(
            take_through(&mut times, 2),
            BTreeMap::from([(0, 17), (1, 4)])
        );
        assert_eq!(times.keys().copied().collect::<Vec<_>>(), vec![3]);
        assert!(take_through(&mut times, 2).is_empty(), "nothing twice");
        assert_eq!(
            take_through(&mut times, 9),
            BTreeMap::from([(1, 9), (2, 3)])
        );
    }

    #[test]
    fn error_codes_are_named() {
        assert!(
            error_text(25).starts_with("UnknownMemberId (25)"),
            "{}",
            error_text(25)
        );
        assert_eq!(error_text(12345), "error code 12345");
    }
}
