//! Live sources besides files: NDJSON event lines (contract `events/` columns) on
//! standard input or on a TCP port, cut into logical times by count or by age (a Kafka
//! topic is read by [`crate::sources::kafka`]).
//!
//! Reader threads push lines into a bounded channel (so a fast producer waits for the
//! dataflow); worker 0 takes them with [`LiveSource::poll`]. A bad line becomes a
//! quarantine row (`file` = `stdin`, `tcp:<peer>` or `topic/partition`, `row` = its
//! line number or offset), never an error. End of standard input ends the source after its last batch; a TCP listener
//! never ends by itself.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use crossbeam_channel::{bounded, Receiver, Sender, TryRecvError};
use tidemark_inputs::records::FileBatch;
use tidemark_inputs::{Mapping, NdjsonLines};

use crate::runtime::checkpoint::{BatchOrigin, LineRange};
use crate::sources::kafka::KafkaInput;

/// Where live lines come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LiveInput {
    /// Standard input, until its end.
    Stdin,
    /// A TCP listener on this address; each connection sends lines.
    Listen(String),
    /// Every partition of a Kafka topic; a message is a line.
    Kafka(KafkaInput),
}

/// When a batch of lines is cut into a logical time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Batching {
    /// Cut once this many lines are waiting.
    pub events: usize,
    /// Cut once the oldest waiting line is this old.
    pub interval: Duration,
}

/// What a reader thread sends to the source.
enum Message {
    /// A line (a Kafka message) of `source`, numbered (its offset).
    Line {
        source: Arc<str>,
        number: u64,
        bytes: Vec<u8>,
    },
    /// The input ended.
    End,
}

/// The lines of one source cut into a logical time: one input unit.
#[derive(Clone, Debug, PartialEq)]
pub struct LiveBatch {
    /// The parsed rows.
    pub batch: FileBatch,
    /// Which lines of which source it holds.
    pub origin: BatchOrigin,
}

/// A running live source.
pub struct LiveSource {
    receiver: Receiver<Message>,
    parser: NdjsonLines,
    batching: Batching,
    pending: Vec<(Arc<str>, u64, Vec<u8>)>,
    oldest: Option<Instant>,
    ended: bool,
    /// A description for progress lines (`stdin`, `tcp 127.0.0.1:9000`).
    pub name: String,
}

impl LiveSource {
    /// Starts reading `input`, going on after the batches of the write-ahead log
    /// (`logged`): stdin lines are numbered on from the last logged one, and each Kafka
    /// partition starts one past its last logged offset.
    pub fn start(
        input: &LiveInput,
        mapping: &Mapping,
        batching: Batching,
        logged: &[&BatchOrigin],
    ) -> Result<LiveSource> {
        let (sender, receiver) = bounded(batching.events.max(1024) * 2);
        let stdin_first_line = next_stdin_line(logged.iter().copied());
        let name = match input {
            LiveInput::Kafka(kafka) => {
                anyhow::bail!(
                    "topic {}: a Kafka topic is read through kafka_source::KafkaOffsets",
                    kafka.topic
                )
            }
            LiveInput::Stdin => {
                std::thread::Builder::new()
                    .name("stdin-reader".into())
                    .spawn(move || {
                        read_lines(
                            std::io::stdin().lock(),
                            "stdin".into(),
                            stdin_first_line,
                            &sender,
                            true,
                        )
                    })
                    .context("starting the stdin reader")?;
                "stdin".to_string()
            }
            LiveInput::Listen(address) => {
                let listener = TcpListener::bind(address)
                    .with_context(|| format!("listening on {address} (--listen)"))?;
                let local = listener
                    .local_addr()
                    .map(|a| a.to_string())
                    .unwrap_or_else(|_| address.clone());
                eprintln!("listening for NDJSON events on tcp {local}");
                std::thread::Builder::new()
                    .name("tcp-listener".into())
                    .spawn(move || {
                        for stream in listener.incoming().flatten() {
                            let peer = stream
                                .peer_addr()
                                .map(|a| a.to_string())
                                .unwrap_or_else(|_| "unknown".into());
                            let sender = sender.clone();
                            std::thread::spawn(move || {
                                read_lines(
                                    BufReader::new(stream),
                                    format!("tcp:{peer}").into(),
                                    1,
                                    &sender,
                                    false,
                                )
                            });
                        }
                    })
                    .context("starting the TCP listener")?;
                format!("tcp {local}")
            }
        };
        Ok(LiveSource {
            receiver,
            parser: NdjsonLines::new(mapping),
            batching,
            pending: Vec::new(),
            oldest: None,
            ended: false,
            name,
        })
    }

    /// Takes the lines that have arrived and returns a logical time's batch if one is
    /// due (enough lines, the oldest line old enough, or the end of the input with
    /// lines waiting): one unit per source (stdin, a TCP peer, a Kafka partition), in
    /// source order, so that each row is quarantined under its own source.
    pub fn poll(&mut self, now: Instant) -> Option<Vec<LiveBatch>> {
        while self.pending.len() < self.batching.events {
            match self.receiver.try_recv() {
                Ok(Message::Line {
                    source,
                    number,
                    bytes,
                }) => {
                    self.oldest.get_or_insert(now);
                    self.pending.push((source, number, bytes));
                }
                Ok(Message::End) | Err(TryRecvError::Disconnected) => {
                    self.ended = true;
                    break;
                }
                Err(TryRecvError::Empty) => break,
            }
        }
        let full = self.pending.len() >= self.batching.events;
        let old = self
            .oldest
            .is_some_and(|t| now.duration_since(t) >= self.batching.interval);
        if self.pending.is_empty() || !(full || old || self.ended) {
            return None;
        }
        self.oldest = None;
        Some(self.cut())
    }

    /// Whether the input ended and every line was handed out.
    pub fn finished(&self) -> bool {
        self.ended && self.pending.is_empty()
    }

    fn cut(&mut self) -> Vec<LiveBatch> {
        // Sources read concurrently (TCP peers, Kafka partitions) interleave at random:
        // each source's lines become one unit, in number order, whatever the interleaving.
        self.pending.sort_by(|a, b| (&a.0, a.1).cmp(&(&b.0, b.1)));
        let mut units: Vec<LiveBatch> = Vec::new();
        let mut current: Option<(Arc<str>, u64, u64, FileBatch)> = None;
        let close = |(source, first, last, mut batch): (Arc<str>, u64, u64, FileBatch)| {
            batch.close_bad_rows();
            LiveBatch {
                batch,
                origin: BatchOrigin::Lines(vec![LineRange {
                    source: source.to_string(),
                    first,
                    last,
                }]),
            }
        };
        for (source, number, bytes) in self.pending.drain(..) {
            if current.as_ref().is_some_and(|(s, ..)| *s != source) {
                units.extend(current.take().map(close));
            }
            let unit = current
                .get_or_insert_with(|| (Arc::clone(&source), number, number, FileBatch::default()));
            unit.2 = number;
            self.parser.push(&bytes, number, &source, &mut unit.3);
        }
        units.extend(current.take().map(close));
        units
    }
}

/// Sends each line of `input` (numbered from `first`); `End` at its end if `ends`.
fn read_lines(
    mut input: impl BufRead,
    source: Arc<str>,
    first: u64,
    sender: &Sender<Message>,
    ends: bool,
) {
    let mut number = first;
    loop {
        let mut bytes = Vec::new();
        match input.read_until(b'\n', &mut bytes) {
            Ok(0) => break,
            Ok(_) => {
                if sender
                    .send(Message::Line {
                        source: Arc::clone(&source),
                        number,
                        bytes,
                    })
                    .is_err()
                {
                    return;
                }
                number += 1;
            }
            Err(error) => {
                tracing::warn!("reading {source}: {error}");
                break;
            }
        }
    }
    if ends {
        sender.send(Message::End).ok();
    }
}

/// The number the next stdin line gets after the batches of a write-ahead log.
fn next_stdin_line<'a>(origins: impl IntoIterator<Item = &'a BatchOrigin>) -> u64 {
    next_after_log(origins).get("stdin").copied().unwrap_or(1)
}

/// One past the last line (or Kafka offset) the write-ahead log holds of each live
/// source: where a resumed run goes on numbering stdin, or reading a partition.
pub fn next_after_log<'a>(
    origins: impl IntoIterator<Item = &'a BatchOrigin>,
) -> BTreeMap<String, u64> {
    let mut next: BTreeMap<String, u64> = BTreeMap::new();
    for origin in origins {
        if let BatchOrigin::Lines(ranges) = origin {
            for range in ranges {
                let after = next.entry(range.source.clone()).or_insert(0);
                *after = (*after).max(range.last + 1);
            }
        }
    }
    next
}
