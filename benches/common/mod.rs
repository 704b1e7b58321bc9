//! Shared set-up of the benches: generated data sets, read once, and the test-mode switch.
//!
//! Under `cargo bench` (the harness is given `--bench`) the benches use realistic sizes;
//! under `cargo test --all-targets` (no `--bench`) criterion runs each bench once, and
//! the data here shrinks so the whole run takes seconds even in a debug build.

#![allow(dead_code)]

use std::path::Path;

use tidemark_dataflows::model::action::{Action, ActionMaker};
use tidemark_dataflows::model::plans::Arrival;
use tidemark_dataflows::operators::gate::{RawEvent, UnitRows};
use tidemark_inputs::dataset::{Dataset, SourceFile, Table};
use tidemark_inputs::generator::{self, GeneratorConfig, OutputFormat};
use tidemark_inputs::records::{FileBatch, Subscription, UserRow};

/// Whether this is a real benchmark run (`cargo bench`), not `cargo test`'s single pass.
pub fn bench_mode() -> bool {
    std::env::args().any(|a| a == "--bench")
}

/// Events to generate: `TIDEMARK_BENCH_EVENTS` if set, else `bench` under `cargo bench`
/// and `test` under `cargo test`.
pub fn events(bench: u64, test: u64) -> u64 {
    if let Some(n) = std::env::var("TIDEMARK_BENCH_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        return n;
    }
    if bench_mode() {
        bench
    } else {
        test
    }
}

/// A generated data set on disk, with its files in order.
pub struct Generated {
    /// Keeps the directory alive.
    pub dir: tempfile::TempDir,
    /// The opened dataset.
    pub dataset: Dataset,
    /// Every file, in the order `tidemark run` reads them.
    pub files: Vec<SourceFile>,
}

impl Generated {
    /// The event files only.
    pub fn event_files(&self) -> Vec<&SourceFile> {
        self.files
            .iter()
            .filter(|f| f.tables.contains(&Table::Events))
            .collect()
    }

    /// Reads every file (events, users, subscriptions), in order.
    pub fn read_all(&self) -> Vec<FileBatch> {
        self.files.iter().map(|f| self.dataset.read(f)).collect()
    }
}

/// The generator config the benches use: the defaults with `events` and `format`.
pub fn config(events: u64, format: OutputFormat, gzip: bool, clean: bool) -> GeneratorConfig {
    let mut cfg = GeneratorConfig {
        events,
        users: (events / 50).clamp(100, 200_000),
        seed: 7,
        format,
        gzip,
        ..GeneratorConfig::default()
    };
    if clean {
        cfg.late_share = 0.0;
        cfg.duplicate_share = 0.0;
        cfg.invalid_share = 0.0;
    }
    cfg
}

/// Generates a data set into a fresh temporary directory and opens it.
pub fn generate(cfg: &GeneratorConfig) -> Generated {
    let dir = tempfile::tempdir().expect("temporary directory");
    generator::generate(dir.path(), cfg).expect("generating the bench data set");
    open(dir)
}

fn open(dir: tempfile::TempDir) -> Generated {
    let dataset = Dataset::open(dir.path(), None).expect("opening the generated data set");
    let files = dataset.discover().expect("listing the generated data set");
    Generated {
        dir,
        dataset,
        files,
    }
}

/// Opens an existing data set directory (no temporary directory is kept).
pub fn open_existing(path: &Path) -> (Dataset, Vec<SourceFile>) {
    let dataset = Dataset::open(path, None).expect("opening the data set");
    let files = dataset.discover().expect("listing the data set");
    (dataset, files)
}

/// The inputs of the dataflow, pre-parsed, one entry per logical time (file).
#[derive(Clone, Default)]
pub struct Parsed {
    /// Event rows of each time, as `tidemark run` feeds them.
    pub rows: Vec<Vec<RawEvent>>,
    /// Largest event time of each time's rows.
    pub max_ts: Vec<Option<i64>>,
    /// File name of each time.
    pub names: Vec<String>,
    /// users/ rows of each time.
    pub users: Vec<Vec<(UserRow, Arrival)>>,
    /// subscriptions/ rows of each time.
    pub subscriptions: Vec<Vec<(Subscription, Arrival)>>,
}

impl Parsed {
    /// Parses batches read from `files` (same order).
    pub fn new(files: &[SourceFile], batches: Vec<FileBatch>) -> Parsed {
        let mut parsed = Parsed::default();
        for (time, (file, batch)) in files.iter().zip(batches).enumerate() {
            let time = time as u64;
            parsed.max_ts.push(batch.events.iter().map(|e| e.ts).max());
            parsed.names.push(file.rel.clone());
            parsed.rows.push(
                batch
                    .events
                    .into_iter()
                    .zip(batch.event_rows)
                    .map(|(event, row)| RawEvent {
                        batch: time,
                        row,
                        event,
                    })
                    .collect(),
            );
            parsed.users.push(
                batch
                    .users
                    .into_iter()
                    .enumerate()
                    .map(|(i, u)| (u, (time, i as u64)))
                    .collect(),
            );
            parsed.subscriptions.push(
                batch
                    .subscriptions
                    .into_iter()
                    .enumerate()
                    .map(|(i, s)| (s, (time, i as u64)))
                    .collect(),
            );
        }
        parsed
    }

    /// Number of event rows.
    pub fn event_count(&self) -> u64 {
        self.rows.iter().map(|r| r.len() as u64).sum()
    }

    /// The events as [`Action`]s per time (no dedup: use a clean data set).
    pub fn actions(&self) -> Vec<Vec<Action>> {
        let mut maker = ActionMaker;
        self.rows
            .iter()
            .map(|rows| rows.iter().map(|r| maker.make(&r.event)).collect())
            .collect()
    }
}

/// Rows of one logical time as the gate takes them: one run of unit `batch`, whatever
/// unit the rows name themselves.
pub fn unit_rows(batch: u64, rows: Vec<RawEvent>) -> UnitRows {
    let (rows, events) = rows.into_iter().map(|raw| (raw.row, raw.event)).unzip();
    UnitRows {
        batch,
        rows,
        events,
    }
}
