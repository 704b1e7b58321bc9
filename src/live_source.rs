//! Live sources besides files: NDJSON event lines (contract `events/` columns) on
//! standard input or on a TCP port, cut into logical times by count or by age.
//!
//! Reader threads push lines into a bounded channel (so a fast producer waits for the
//! dataflow); worker 0 takes them with [`LiveSource::poll`]. A bad line becomes a
//! quarantine row (`file` = `stdin` or `tcp:<peer>`, `row` = its line number), never an
//! error. End of standard input ends the source after its last batch; a TCP listener
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

use crate::checkpoint::{BatchOrigin, LineRange};

/// Where live lines come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LiveInput {
    /// Standard input, until its end.
    Stdin,
    /// A TCP listener on this address; each connection sends lines.
    Listen(String),
}

/// When a batch of lines is cut into a logical time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Batching {
    /// Cut once this many lines are waiting.
    pub events: usize,
    /// Cut once the oldest waiting line is this old.
    pub interval: Duration,
}

enum Message {
    Line {
        source: Arc<str>,
        number: u64,
        bytes: Vec<u8>,
    },
    End,
}

/// A batch of lines cut into one logical time.
#[derive(Clone, Debug, PartialEq)]
pub struct LiveBatch {
    /// The parsed rows.
    pub batch: FileBatch,
    /// Which lines of which sources it holds.
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
    /// Starts reading `input`. Lines of standard input are numbered from
    /// `stdin_first_line` (a resumed run goes on numbering where the last one stopped).
    pub fn start(
        input: &LiveInput,
        mapping: &Mapping,
        batching: Batching,
        stdin_first_line: u64,
    ) -> Result<LiveSource> {
        let (sender, receiver) = bounded(batching.events.max(1024) * 2);
        let name = match input {
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

    /// Takes the lines that have arrived and returns a batch if one is due: enough
    /// lines, the oldest line old enough, or the end of the input with lines waiting.
    pub fn poll(&mut self, now: Instant) -> Option<LiveBatch> {
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

    fn cut(&mut self) -> LiveBatch {
        let mut batch = FileBatch::default();
        let mut ranges: BTreeMap<Arc<str>, (u64, u64)> = BTreeMap::new();
        for (source, number, bytes) in self.pending.drain(..) {
            self.parser.push(&bytes, number, &source, &mut batch);
            let range = ranges.entry(source).or_insert((number, number));
            range.0 = range.0.min(number);
            range.1 = range.1.max(number);
        }
        batch.close_bad_rows();
        let ranges = ranges
            .into_iter()
            .map(|(source, (first, last))| LineRange {
                source: source.to_string(),
                first,
                last,
            })
            .collect();
        LiveBatch {
            batch,
            origin: BatchOrigin::Lines(ranges),
        }
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
pub fn next_stdin_line<'a>(origins: impl IntoIterator<Item = &'a BatchOrigin>) -> u64 {
    origins
        .into_iter()
        .filter_map(|origin| match origin {
            BatchOrigin::Lines(ranges) => ranges
                .iter()
                .filter(|r| r.source == "stdin")
                .map(|r| r.last + 1)
                .max(),
            BatchOrigin::File { .. } => None,
        })
        .max()
        .unwrap_or(1)
}
