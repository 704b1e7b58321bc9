//! `tidemark run`: feeds the dataflow one logical time per input batch (one or more
//! dataset files, or a batch of live lines) on every worker of the cluster, and writes
//! each output table's changes.
//!
//! Worker 0 decides what each logical time holds ([`crate::runtime::schedule`]) and broadcasts
//! it; worker `unit % peers` reads each input unit of the time (live batches: worker
//! 0), logs the parsed unit in the checkpoint's write-ahead log, and feeds it. A
//! resumed run replays the log to rebuild the in-memory state; sinks skip the times
//! already completed ([`crate::runtime::checkpoint`]).

use crate::error_text::one_line;
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use bytes::Bytes;
use tidemark_dataflows::dataflow::Outputs;
use tidemark_dataflows::feeds::{build_with_feeds, Feeds};
use tidemark_dataflows::model::settings::Params;
use tidemark_dataflows::operators::gate::BatchMark;
use tidemark_inputs::dataset::{Dataset, SourceFile, Table};
use tidemark_inputs::records::{FileBatch, QuarantineRow};
use tidemark_inputs::wal_entry::{self, SourceCopy};
use tidemark_inputs::Mapping;
use timely::dataflow::operators::vec::Broadcast;
use timely::dataflow::operators::{Concatenate, Input as _, Inspect, Probe};

use crate::diag::arrangement_sizes::SizeRecorder;
use crate::runtime::checkpoint::{
    read_source, BatchOrigin, Checkpoint, Logged, Recovered, RunIdentity, WalHeader, CHECKPOINT_DIR,
};
use crate::runtime::cluster::ClusterArgs;
use crate::runtime::follow::Watcher;
use crate::runtime::ingested::IngestedFiles;
use crate::runtime::progress::{FollowProgress, Progress};
use crate::runtime::schedule::{Assignment, EndReason, FileBatching, Live, Scheduler};
use crate::runtime::stop::StopFlag;
use crate::sink::object_store::{check_supported, working_copy, ObjectOutput};
use crate::sink::table_sink::{table_sink, TableSinkConfig};
use crate::sources::kafka::{resume_offsets, KafkaInput, KafkaOffsets, KafkaReader};
use crate::sources::live::{Batching, LiveInput, LiveSource};
use crate::sources::object_store::{is_object_url, local_dataset, refuse_mistyped_url};

/// The default of `--delta-retention-minutes`: an hour, for readers of older versions.
pub const DEFAULT_DELTA_RETENTION: Duration = Duration::from_secs(3600);

/// Everything `tidemark run` needs to know.
#[derive(Clone, Debug)]
pub struct RunOptions {
    /// The dataset directory (none: live lines only).
    pub dataset: Option<PathBuf>,
    /// A mapping file overriding `<dataset>/tidemark.toml`.
    pub mapping: Option<PathBuf>,
    /// The output directory.
    pub out: PathBuf,
    /// Resolved settings.
    pub params: Params,
    /// Cluster flags.
    pub cluster: ClusterArgs,
    /// Whether to show progress: a bar for a static run on a terminal, else a line on
    /// stderr every few seconds.
    pub progress: bool,
    /// Whether an existing output may be replaced (else it is resumed).
    pub overwrite: bool,
    /// Whether to write the Delta tables under `OUT/tables/` (off with `--no-delta`).
    pub delta: bool,
    /// How long a data file a Delta commit removed stays on disk for readers of older
    /// versions before a vacuum deletes it (`--delta-retention-minutes`).
    pub delta_retention: Duration,
    /// Live inputs: following the dataset, standard input, a TCP port.
    pub live: LiveOptions,
    /// Where to write the updates every arrangement holds after each logical time
    /// (`--arrangement-sizes`), to see which state grows.
    pub arrangement_sizes: Option<PathBuf>,
    /// The local working copy of an object-store `--out` (`--local-out`; none: a
    /// directory under the system's temporary directory named after the URL).
    pub local_out: Option<PathBuf>,
}

/// How a run takes input that arrives while it runs.
#[derive(Clone, Debug)]
pub struct LiveOptions {
    /// Keep watching the dataset for new files.
    pub follow: bool,
    /// How often the dataset is listed.
    pub poll: Duration,
    /// How long a new file must stay unchanged before it is taken.
    pub settle: Duration,
    /// End after this long without new input.
    pub max_idle: Option<Duration>,
    /// NDJSON event lines from standard input or a TCP port.
    pub input: Option<LiveInput>,
    /// How live lines are cut into logical times.
    pub batching: Batching,
    /// Re-ingest a changed file (retract its old rows) instead of failing.
    pub reingest_changed: bool,
    /// How many waiting files one logical time takes.
    pub file_batching: FileBatching,
    /// In a live run, events further than this ahead of the wall clock when read are
    /// quarantined `too_far_ahead` (none: no guard).
    pub max_ahead: Option<Duration>,
    /// Rule-breaking rows listed per input file (`--max-bad-rows`; 0 = all).
    pub max_bad_rows: usize,
    /// The most completed logical times one Delta commit of a table covers
    /// (`--max-commit-times`, at least 1).
    pub max_commit_times: usize,
}

impl Default for LiveOptions {
    fn default() -> Self {
        LiveOptions {
            follow: false,
            poll: Duration::from_millis(500),
            settle: Duration::from_millis(500),
            max_idle: None,
            input: None,
            batching: Batching {
                events: 10_000,
                interval: Duration::from_millis(1000),
            },
            reingest_changed: false,
            file_batching: FileBatching::default(),
            max_ahead: Some(DEFAULT_MAX_AHEAD),
            max_bad_rows: tidemark_inputs::records::DEFAULT_MAX_BAD_ROWS,
            max_commit_times: crate::sink::table_sink::DEFAULT_MAX_GROUP,
        }
    }
}

impl LiveOptions {
    fn is_live(&self) -> bool {
        self.follow || self.input.is_some()
    }
}

/// How far ahead of the wall clock a live event may be: one day. One event stamped far
/// in the future would otherwise raise the watermark and make every later event
/// `too_late` (Druid rejects such "early messages" the same way).
pub const DEFAULT_MAX_AHEAD: Duration = Duration::from_secs(24 * 3600);

/// Moves the events of `batch` stamped more than `max_ahead` after `now_ms` to its
/// quarantine as `too_far_ahead`. Done when a live unit is read, before it is logged,
/// so a replay sees the same decision.
pub fn quarantine_far_ahead(batch: &mut FileBatch, file: &str, now_ms: i64, max_ahead: Duration) {
    let limit = now_ms.saturating_add(max_ahead.as_millis().min(i64::MAX as u128) as i64);
    if batch.events.iter().all(|e| e.ts <= limit) {
        return;
    }
    let events = std::mem::take(&mut batch.events);
    let rows = std::mem::take(&mut batch.event_rows);
    for (event, row) in events.into_iter().zip(rows) {
        if event.ts > limit {
            batch.reject(QuarantineRow {
                file: file.to_string(),
                row,
                field: "ts".into(),
                reason: "too_far_ahead".into(),
                raw: event.raw_json(),
            });
        } else {
            batch.events.push(event);
            batch.event_rows.push(row);
        }
    }
    batch.close_bad_rows();
}

/// The name rows of a unit are quarantined under: the file, or the live source (a live
/// unit holds the lines of one source).
fn origin_label(origin: &BatchOrigin) -> String {
    match origin {
        BatchOrigin::File { rel, .. } => rel.clone(),
        BatchOrigin::Lines(ranges) => ranges.first().map(|r| r.source.clone()).unwrap_or_default(),
    }
}

/// The wall clock in epoch milliseconds.
fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// What a finished run did, as seen from this process.
#[derive(Clone, Debug)]
pub struct RunStats {
    /// New input batches (logical times) this run ingested.
    pub files: usize,
    /// Logical times replayed from the checkpoint of an earlier run.
    pub replayed: u64,
    /// Event rows read by this process's workers (valid rows, before lateness and dedup).
    pub event_rows_read: u64,
    /// Every row of every unit this process fed (replayed ones included, a re-ingested
    /// file's old rows taken back), by what became of it while reading.
    pub rows: RowTotals,
    /// Wall-clock time of the run.
    pub elapsed: Duration,
    /// The part of `elapsed` during which fed input was still being processed: a live
    /// run's rate is taken over this, not over its waits for input.
    pub busy: Duration,
    /// Why the run stopped taking input (process 0 only).
    pub end: Option<EndReason>,
    /// Logical times a static run had to do when it started: replayed plus new
    /// (process 0 only; 0 for live runs).
    pub planned: u64,
}

/// Runs the dataflow over a dataset and live inputs until their end, resuming the
/// output directory's checkpoint if it has one.
pub fn run(options: &RunOptions) -> Result<RunStats> {
    refuse_mistyped_url(&options.out, "--out")?;
    if let Some(dataset) = &options.dataset {
        refuse_mistyped_url(dataset, "DATASET")?;
    }
    if is_object_url(&options.out) {
        return run_into_object_store(options);
    }
    run_on(options, OutLayout::Shared)
}

/// Whether the processes of a cluster share one output directory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum OutLayout {
    /// One `OUT` that every process sees (a local disk, NFS).
    Shared,
    /// Each process writes its own working copy of an object-store output: each
    /// mirrors an object-store dataset itself, and each records the completed time in
    /// its copy, which its uploads report (see [`crate::sink::object_store`]).
    PerProcess,
}

fn run_on(options: &RunOptions, layout: OutLayout) -> Result<RunStats> {
    let started = Instant::now();
    let live = &options.live;
    if live.follow && options.dataset.is_none() {
        bail!("--follow watches a DATASET directory: give one");
    }
    // An object-store dataset is read from its mirror under OUT; a `--follow` run keeps
    // mirroring new objects while it runs.
    let mut dataset_url = None;
    let mut _following_mirror = None;
    let dataset_dir = match &options.dataset {
        Some(dataset) => {
            let mirrors = match layout {
                OutLayout::Shared => options.cluster.process,
                OutLayout::PerProcess => 0,
            };
            let (dir, url, guard) = local_dataset(
                dataset,
                &options.out,
                mirrors,
                live.follow.then_some(live.poll),
                options.progress,
            )?;
            (dataset_url, _following_mirror) = (url, guard);
            Some(dir)
        }
        None => None,
    };
    let dataset = match &dataset_dir {
        Some(path) => {
            let mut dataset = Dataset::open(path, options.mapping.as_deref())
                .map(|dataset| Dataset {
                    max_bad_rows: options.live.max_bad_rows,
                    ..dataset
                })
                .map_err(|e| anyhow!("{e}"))
                .with_context(|| format!("opening dataset {}", path.display()))?;
            read_user_attributes(&mut dataset, &options.params)?;
            Some(dataset)
        }
        None => None,
    };
    let files = match &dataset {
        Some(dataset) => dataset.discover().map_err(|e| anyhow!("{e}"))?,
        None => Vec::new(),
    };
    let root = options.cluster.process == 0;
    tidemark_dataflows::model::name::clear_collision();
    let stop = StopFlag::on_signals()?;
    let mut identity = RunIdentity::new(
        options.cluster.workers,
        options.cluster.processes,
        options.params,
    );
    identity.delta = options.delta;
    if let Some(url) = &dataset_url {
        identity.dataset = Some(url.clone());
        identity.mapping = dataset.as_ref().map(|d| d.mapping.fingerprint());
    } else if let Some(dataset) = &dataset {
        identity.dataset = Some(
            std::fs::canonicalize(&dataset.root)
                .unwrap_or_else(|_| dataset.root.clone())
                .display()
                .to_string(),
        );
        identity.mapping = Some(dataset.mapping.fingerprint());
    } else if let Some(file) = &options.mapping {
        identity.mapping = Some(
            Mapping::load(file)
                .map_err(|e| anyhow!("{e}"))?
                .fingerprint(),
        );
    }

    let (checkpoint, recovered) = if root {
        prepare_output(&options.out, options.overwrite)?;
        Checkpoint::open(&options.out, &identity)?
    } else {
        let checkpoint = match layout {
            OutLayout::Shared => Checkpoint::at(&options.out),
            OutLayout::PerProcess => Checkpoint::for_own_copy(&options.out)?,
        };
        let last_completed = if options.overwrite {
            None
        } else {
            checkpoint.read_completed()?
        };
        (
            checkpoint,
            Recovered {
                entries: Vec::new(),
                last_completed,
            },
        )
    };

    // How live lines and Kafka messages are parsed (every process parses Kafka units).
    let live_mapping = match (
        &options.mapping,
        dataset.as_ref().map(|d| d.mapping.clone()),
    ) {
        (_, Some(mapping)) => mapping,
        (Some(file), None) if live.input.is_some() => {
            Mapping::load(file).map_err(|e| anyhow!("{e}"))?
        }
        _ => Mapping::default(),
    };
    let kafka_input = match &live.input {
        Some(LiveInput::Kafka(input)) => Some(input.clone()),
        _ => None,
    };
    let mut scheduler = None;
    let mut static_total = 0;
    if root {
        let mut ingested = IngestedFiles::from_log(&recovered.entries);
        let initial = ingested.tasks(&files, live.reingest_changed)?;
        let has_events = |tables: &[Table]| tables.contains(&Table::Events);
        if !live.is_live()
            && recovered.entries.is_empty()
            && !initial.iter().any(|t| has_events(&t.file.tables))
        {
            bail!(
                "no event files found in {}: put files under events/ or map them with `[events] files = ...` in tidemark.toml",
                dataset_dir.as_deref().unwrap_or(Path::new(".")).display()
            );
        }
        if let Some(dataset) = &dataset {
            for table in Table::ALL {
                let files = initial
                    .iter()
                    .filter(|t| t.file.tables.contains(&table))
                    .map(|t| &t.file);
                check_mapping(dataset, files).map_err(|e| anyhow!("{e}"))?;
            }
        }
        let logged: Vec<_> = recovered.entries.iter().map(|e| &e.origin).collect();
        let (source, kafka) = match &live.input {
            Some(LiveInput::Kafka(input)) => {
                let resume = resume_offsets(&input.topic, logged.iter().copied());
                let mut offsets = KafkaOffsets::start(input, &resume, live.batching)?;
                for entry in &recovered.entries {
                    if let BatchOrigin::Lines(ranges) = &entry.origin {
                        offsets.note(entry.time, ranges);
                    }
                }
                if let Some(done) = recovered.last_completed {
                    offsets.completed(done);
                }
                (None, Some(offsets))
            }
            Some(input) => {
                let source = LiveSource::start(input, &live_mapping, live.batching, &logged)?;
                (Some(source), None)
            }
            None => (None, None),
        };
        let watcher = live.follow.then(|| Watcher::new(live.poll, live.settle));
        let live_inputs = Live {
            watcher,
            source,
            kafka,
            max_idle: live.max_idle,
            reingest_changed: live.reingest_changed,
        };
        let decider = Scheduler::new(
            dataset.clone(),
            ingested,
            recovered.times(),
            initial,
            live.file_batching,
            live_inputs,
            stop.clone(),
        );
        static_total = decider.queued_times();
        scheduler = Some(decider);
    }

    // A bar on a terminal; elsewhere (a log, CI) a line every few seconds.
    let terminal = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let progress = match (options.progress && root, live.is_live()) {
        (false, _) => ProgressMode::Off,
        (true, false) if terminal => ProgressMode::Bar(static_total),
        (true, live) => ProgressMode::Lines(if live { "following" } else { "running" }),
    };
    let shared = Arc::new(Shared {
        dataset,
        checkpoint,
        params: options.params,
        out: options.out.clone(),
        resume_after: recovered.last_completed,
        scheduler: Mutex::new(scheduler),
        progress,
        counters: Counters::default(),
        end: Mutex::new(None),
        kafka: kafka_input.map(|input| (input, live_mapping)),
        // The worker that records the completed time: worker 0, or with an output per
        // process the first worker of each process.
        records_completed: match layout {
            OutLayout::Shared => 0,
            OutLayout::PerProcess => options.cluster.process * options.cluster.workers,
        },
        // Process 0's workers write the tables (see `write_outputs`).
        writers: options.cluster.workers,
        fed: Arc::default(),
        delta: options.delta.then_some(options.delta_retention),
        max_group: options.live.max_commit_times,
        arrangement_sizes: options.arrangement_sizes.clone(),
        max_ahead: live.max_ahead.filter(|_| live.is_live()),
        // A resumed run replays the retractions of files re-ingested earlier, even
        // without the flag this time: it then needs the retraction-safe dedup too.
        reingest_changed: options.live.reingest_changed
            || recovered
                .entries
                .iter()
                .any(|entry| entry.retracts.is_some()),
    });
    if let Some(path) = &shared.arrangement_sizes {
        crate::diag::arrangement_sizes::create(path)?;
    }
    let config = options.cluster.timely_config()?;
    if options.cluster.processes > 1 {
        crate::runtime::cluster::exit_on_lost_peer(
            options.cluster.addresses()?,
            options.cluster.process,
        );
    }
    let worker_shared = Arc::clone(&shared);
    let guards = timely::execute(config, move |worker| run_worker(worker, &worker_shared))
        .map_err(|e| anyhow!("starting workers: {e}"))?;
    for result in guards.join() {
        result.map_err(|e| {
            anyhow!(
                "a worker failed: {}",
                crate::sink::failure(&options.out).unwrap_or(e)
            )
        })?;
    }
    let end = shared.end.lock().map(|e| e.clone()).unwrap_or(None);
    if let Some(EndReason::Failed(message)) = &end {
        bail!("{message}");
    }
    tidemark_dataflows::model::name::report_held();
    let floored = tidemark_inputs::timestamp::sub_millisecond_times();
    if floored > 0 {
        tracing::warn!(
            "{floored} of the times read had digits below the millisecond: tidemark keeps instants to \
             the millisecond, so those were floored to it (session starts and ends, windows \
             and lateness are computed on the floored times)"
        );
    }
    Ok(RunStats {
        files: shared.counters.fed.load(Ordering::Relaxed) as usize,
        replayed: shared.counters.replayed.load(Ordering::Relaxed),
        event_rows_read: shared.counters.event_rows.load(Ordering::Relaxed),
        rows: shared.counters.rows.totals(),
        elapsed: started.elapsed(),
        busy: Duration::from_nanos(shared.counters.busy_ns.load(Ordering::Relaxed)),
        end,
        planned: if live.is_live() { 0 } else { static_total },
    })
}

/// A run whose `--out` is an object-store URL: the run writes the local working copy,
/// restored from the prefix first, while [`crate::sink::object_store`] uploads it.
fn run_into_object_store(options: &RunOptions) -> Result<RunStats> {
    let url = options.out.display().to_string();
    let follow_objects =
        options.live.follow && options.dataset.as_deref().is_some_and(is_object_url);
    check_supported(
        &url,
        options.cluster.processes,
        follow_objects,
        options.overwrite,
    )?;
    let local = working_copy(&options.out, options.local_out.as_deref());
    let mut output = ObjectOutput::open(&url, &local)?
        .of_process(options.cluster.process, options.cluster.processes);
    let restored = output
        .restore(options.overwrite)
        .with_context(|| format!("restoring {url} into {}", local.display()))?;
    output.check_writable()?;
    if options.progress && restored > 0 {
        eprintln!(
            "{url}: {restored} object(s) restored into {}",
            local.display()
        );
    }
    if options.cluster.processes > 1 && options.cluster.process == 0 {
        // Log entries a resumed run drops leave the prefix now, before the cluster
        // starts: once it runs, another process may log those units anew and upload
        // them, and a later deletion by this process would remove them.
        Checkpoint::prune_uncompleted(&local)?;
        output
            .sync()
            .with_context(|| format!("uploading to {url}"))?;
    }
    let uploads = output.start(OUTPUT_SYNC_INTERVAL);
    let local_options = RunOptions {
        out: local.clone(),
        ..options.clone()
    };
    let layout = if options.cluster.processes > 1 {
        OutLayout::PerProcess
    } else {
        OutLayout::Shared
    };
    let result = run_on(&local_options, layout);
    // The last pass runs whatever the result: a failed run leaves a resumable output.
    let uploaded = uploads
        .finish()
        .with_context(|| format!("uploading the output to {url}"));
    let stats = result?;
    uploaded?;
    Ok(stats)
}

/// How often a run uploads its object-store output's new files.
const OUTPUT_SYNC_INTERVAL: Duration = Duration::from_secs(1);

/// How many readable files of a table are looked at before a column the mapping
/// names but none of them has is called a mapping error.
const MAPPING_CHECK_FILES: usize = 8;

/// Checks the mapping against a table's first files before any row is read: an error
/// when none of the first readable files has every mapped column (the mapping is
/// wrong). A file that cannot be read at all, or that alone lacks a column, is not a
/// mapping error: it is quarantined whole when its turn comes (contract "Bad input").
/// Makes the dataset read every user attribute a dimension names (from the mapped
/// column, else the `users/` column of the same name), and warns about a mapped
/// attribute no dimension uses.
fn read_user_attributes(dataset: &mut Dataset, params: &Params) -> Result<()> {
    let named = params.dimensions.attribute_names();
    for attribute in dataset.mapping.user_attributes() {
        if !named.contains(&attribute) {
            tracing::warn!(
                "[users.columns] {attribute}: no dimension uses it; add `{attribute}` to the \
                 `dimensions` setting (or --dimensions) to slice by it"
            );
        }
    }
    dataset
        .mapping
        .read_attributes(&named)
        .map_err(|e| anyhow!("setting `dimensions`: {e}"))
}

fn check_mapping<'a>(
    dataset: &Dataset,
    files: impl Iterator<Item = &'a tidemark_inputs::dataset::SourceFile>,
) -> std::result::Result<(), tidemark_inputs::InputError> {
    let mut first_error = None;
    let mut readable = 0;
    for file in files {
        match dataset.check_columns(file) {
            Ok(()) => return Ok(()),
            Err(tidemark_inputs::InputError::Unreadable { .. }) => continue,
            Err(error) => {
                first_error.get_or_insert(error);
                readable += 1;
                if readable >= MAPPING_CHECK_FILES {
                    break;
                }
            }
        }
    }
    first_error.map_or(Ok(()), Err)
}

/// How progress is shown.
#[derive(Clone, Copy, Debug)]
enum ProgressMode {
    Off,
    Bar(u64),
    /// Lines on stderr, starting with this label.
    Lines(&'static str),
}

/// What became of the rows of the units fed, as the readers counted them
/// ([`FileBatch::rows_read`] and its siblings).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RowTotals {
    /// Data rows or non-blank lines.
    pub read: i64,
    /// Rows no table's filter let through.
    pub filtered: i64,
    /// Rows that broke a rule (quarantined while reading, or as too far ahead).
    pub rejected: i64,
    /// Valid event rows (before lateness and deduplication).
    pub valid_events: i64,
}

/// [`RowTotals`] kept by every worker of the process.
#[derive(Debug, Default)]
struct RowCounters {
    read: AtomicI64,
    filtered: AtomicI64,
    rejected: AtomicI64,
    valid_events: AtomicI64,
}

impl RowCounters {
    /// Counts `batch`'s rows with `sign` (+1 fed, -1 taken back).
    fn add(&self, batch: &FileBatch, sign: i64) {
        let add = |counter: &AtomicI64, n: u64| {
            counter.fetch_add(sign * n as i64, Ordering::Relaxed);
        };
        add(&self.read, batch.rows_read);
        add(&self.filtered, batch.rows_filtered);
        add(&self.rejected, batch.rows_rejected);
        add(&self.valid_events, batch.events.len() as u64);
    }

    fn totals(&self) -> RowTotals {
        RowTotals {
            read: self.read.load(Ordering::Relaxed),
            filtered: self.filtered.load(Ordering::Relaxed),
            rejected: self.rejected.load(Ordering::Relaxed),
            valid_events: self.valid_events.load(Ordering::Relaxed),
        }
    }
}

/// Counts the workers of this process keep.
#[derive(Debug, Default)]
struct Counters {
    /// Rows of every unit fed, by fate.
    rows: RowCounters,
    /// New batches fed (not replayed).
    fed: AtomicU64,
    /// Batches replayed from the log.
    replayed: AtomicU64,
    /// Valid event rows of new batches.
    event_rows: AtomicU64,
    /// Largest event time seen in any batch.
    max_ts: AtomicI64,
    /// Nanoseconds during which a fed logical time was not yet complete (worker 0's
    /// view): the run's working time, without the waits of a live run for input.
    busy_ns: AtomicU64,
}

/// State every worker thread of this process reads.
struct Shared {
    dataset: Option<Dataset>,
    checkpoint: Checkpoint,
    params: Params,
    out: PathBuf,
    resume_after: Option<u64>,
    scheduler: Mutex<Option<Scheduler>>,
    progress: ProgressMode,
    counters: Counters,
    end: Mutex<Option<EndReason>>,
    /// The Kafka topic read and the mapping its messages are parsed with.
    kafka: Option<(KafkaInput, Mapping)>,
    /// The worker that records the completed time in this process's `OUT`.
    records_completed: usize,
    /// How many workers write tables: process 0's, workers `0..writers`.
    writers: usize,
    /// One past the last logical time this process's workers fed (0: none yet): the
    /// table sinks hold a completed time back while a later one is on its way.
    fed: Arc<AtomicU64>,
    /// The Delta tables' vacuum retention, or none with `--no-delta`.
    delta: Option<Duration>,
    /// The most completed times one Delta commit covers.
    max_group: usize,
    arrangement_sizes: Option<PathBuf>,
    reingest_changed: bool,
    /// The far-future guard of live runs.
    max_ahead: Option<Duration>,
}

/// Output directories a run writes, removed by `--overwrite`.
const OUTPUT_DIRS: &[&str] = &["changes", "tables", CHECKPOINT_DIR];

/// Replaces the output with `--overwrite`; else refuses an output that has changes
/// but no checkpoint to resume from.
fn prepare_output(out: &Path, overwrite: bool) -> Result<()> {
    let changes = out.join("changes");
    if overwrite {
        for dir in OUTPUT_DIRS {
            let dir = out.join(dir);
            if dir.exists() {
                std::fs::remove_dir_all(&dir)
                    .with_context(|| format!("removing {}", dir.display()))?;
            }
        }
    } else if changes.exists() && !out.join(CHECKPOINT_DIR).join("run.json").exists() {
        bail!(
            "{} already holds a run's output but no checkpoint to resume from: choose another --out, or pass --overwrite to replace it",
            out.display()
        );
    }
    std::fs::create_dir_all(&changes).with_context(|| format!("creating {}", changes.display()))?;
    remove_partial_files(&changes)
}

/// Removes the temporary files of change files a killed run left half-written.
fn remove_partial_files(changes: &Path) -> Result<()> {
    for table in std::fs::read_dir(changes)? {
        let table = table?.path();
        if !table.is_dir() {
            continue;
        }
        for file in std::fs::read_dir(&table)? {
            let path = file?.path();
            let name = path
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default();
            if name.starts_with('.') && name.ends_with(".tmp") {
                std::fs::remove_file(&path)
                    .with_context(|| format!("removing {}", path.display()))?;
            }
        }
    }
    Ok(())
}

/// The longest a worker parks while it waits for other workers or the sinks' threads
/// (a message or a sink's wake-up ends the wait early).
const IDLE_PARK: Duration = Duration::from_millis(1);

/// How many logical times a worker may read ahead of the slowest completed one.
const READ_AHEAD: u64 = 2;

fn run_worker(worker: &mut timely::worker::Worker, shared: &Shared) {
    let index = worker.index();
    let peers = worker.peers();
    let params = shared.params;
    let out = shared.out.clone();
    let resume_after = shared.resume_after;
    let delta = shared.delta;
    let reingest = shared.reingest_changed;
    let mut scheduler = if index == 0 {
        shared.scheduler.lock().ok().and_then(|mut s| s.take())
    } else {
        None
    };

    // The control dataflow: worker 0's decisions, broadcast to every worker.
    let decided: Rc<RefCell<BTreeMap<u64, Assignment>>> = Rc::default();
    let mut control = worker.dataflow::<u64, _, _>(|scope| {
        let (input, stream) = scope.new_input::<Vec<(u64, Assignment)>>();
        let decided = Rc::clone(&decided);
        stream.broadcast().inspect(move |(time, assignment)| {
            decided.borrow_mut().insert(*time, assignment.clone());
        });
        input
    });

    // Registered before the dataflow is built: arrangements look their logger up then.
    let mut sizes = shared.arrangement_sizes.as_deref().and_then(|path| {
        SizeRecorder::register(worker, path)
            .map_err(|error| tracing::warn!("arrangement sizes: {}", one_line(&error)))
            .ok()
    });
    // A diagnostic: it takes timely's log over, so only without the sizes file.
    let operator_times = sizes
        .is_none()
        .then(|| crate::diag::operator_times::OperatorTimes::register(worker))
        .flatten();
    let (mut feeds, probe) = worker.dataflow::<u64, _, _>(|scope| {
        let (feeds, outputs) = build_with_feeds(&scope, params, reingest);
        let sinks = TableSinkConfig {
            out: out.clone(),
            writer: 0,
            fed: Arc::clone(&shared.fed),
            delta,
            max_group: shared.max_group,
            resume_after,
        };
        let reports = write_outputs(outputs, &sinks, shared.writers);
        let (probe, _) = scope.concatenate(reports).probe();
        (feeds, probe)
    });

    let mut progress = Reporter::new(index, shared);
    // This worker's connection to the Kafka topic, made when it first reads a unit.
    let mut kafka = shared
        .kafka
        .as_ref()
        .map(|(input, mapping)| KafkaReader::new(input.clone(), mapping));
    let mut time: u64 = 0;
    loop {
        if let Some(scheduler) = scheduler.as_mut() {
            let decisions = scheduler.poll(time, READ_AHEAD * peers as u64 + 2);
            if !decisions.is_empty() {
                for decision in decisions {
                    control.send(decision);
                }
                control.flush();
            }
        }
        let Some(assignment) = decided.borrow_mut().remove(&time) else {
            worker.step_or_park(Some(Duration::from_millis(if index == 0 { 5 } else { 50 })));
            progress.tick(&probe, time, scheduler.as_mut());
            continue;
        };
        if assignment == Assignment::End {
            break;
        }
        crate::runtime::allocator::note_activity();
        if index == 0 {
            let counter = match assignment {
                Assignment::Replay { .. } => &shared.counters.replayed,
                _ => &shared.counters.fed,
            };
            counter.fetch_add(1, Ordering::Relaxed);
        }
        // The units this worker reads: all read (or replayed), then those still to log
        // (a dataset file's) logged in one file, and only then fed. A batch that cannot
        // be read, logged or replayed must not be fed: stop the run (every worker) with
        // the cause, as a failed sink does.
        let prepared: Result<Vec<Prepared>> = assignment
            .units()
            .filter(|unit| assignment.reader(*unit, peers) == index)
            .map(|unit| {
                let scheduler = scheduler.as_mut();
                prepare_unit(time, unit, &assignment, shared, scheduler, &mut kafka)
            })
            .collect();
        match prepared
            .and_then(|mut units| log_block(&shared.checkpoint, &mut units).map(|()| units))
        {
            Ok(units) => {
                for unit in units {
                    feed_prepared(unit, &shared.counters, &mut feeds);
                }
            }
            Err(error) => crate::sink::fail(
                &shared.out,
                format!("logical time {time}: {}", one_line(&error)),
            ),
        }
        feeds.advance(time);
        shared.fed.fetch_max(time + 1, Ordering::Relaxed);
        worker.step();
        let next = time + 1;
        // Wait for the slowest time by parking, not spinning: a spinning worker takes a
        // core from the other workers and the Delta commit threads. Messages from other
        // workers and the sinks' background threads wake it early.
        while probe.less_than(&next.saturating_sub(READ_AHEAD * peers as u64)) {
            worker.step_or_park(Some(IDLE_PARK));
        }
        time = next;
        progress.tick(&probe, time, scheduler.as_mut());
        if let Some(sizes) = sizes.as_mut() {
            sizes.record(worker, completed_time(&probe, time));
        }
    }
    if let Some(sizes) = sizes.as_mut() {
        // The last times, while the dataflow still holds its arrangements (shutting it
        // down drops them, and every size with them).
        while probe.less_than(&time) {
            worker.step();
        }
        sizes.record(worker, time.checked_sub(1));
    }
    drop(control);
    drop(feeds);
    while worker.step_or_park(Some(IDLE_PARK)) {
        progress.tick(&probe, time, scheduler.as_mut());
    }
    progress.finish(time, scheduler.as_mut());
    if let Some(times) = operator_times {
        times.print(worker);
    }
    if let Some(scheduler) = scheduler {
        if let Ok(mut end) = shared.end.lock() {
            *end = scheduler.end_reason().cloned();
        }
    }
}

/// Whether `error` comes from a file system with no space left.
fn disk_full(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|e| e.kind() == std::io::ErrorKind::StorageFull)
    })
}

/// Reads (or replays) input unit `unit` of logical time `time` on its reader worker,
/// for [`feed_prepared`]. A live or Kafka unit is logged here; a dataset file's entry
/// is encoded, for [`log_block`] to log with the other files the worker read.
fn prepare_unit(
    time: u64,
    unit: u64,
    assignment: &Assignment,
    shared: &Shared,
    scheduler: Option<&mut Scheduler>,
    kafka: &mut Option<KafkaReader>,
) -> Result<Prepared> {
    let counters = &shared.counters;
    // The batch a changed file replaces: its rows are retracted, and the new content
    // takes its place in arrival order (dedup, latest user row, lateness).
    let replaced = |retracts: Option<u64>| -> Result<Option<(WalHeader, FileBatch)>> {
        retracts.map(|old| logged_batch(shared, old)).transpose()
    };
    let units = assignment.units();
    let units_in_time = units.end - units.start;
    // The name too-late rows of this unit's arrival are quarantined under: its file or
    // source; for a live time of several sources (Kafka partitions, TCP peers), whose
    // units arrive together as one (the contract's lines "that arrived in an
    // interval"), every source of the time.
    let mut label = None;
    let (header, batch, old) = match assignment {
        Assignment::Replay { .. } => {
            let (header, batch) = logged_batch(shared, unit)?;
            let old = replaced(header.retracts)?;
            (header, batch, old)
        }
        Assignment::Files { first, tasks } => {
            let task = &tasks[(unit - first) as usize];
            let dataset = shared
                .dataset
                .as_ref()
                .context("a file to read but no dataset")?;
            let old = replaced(task.retracts)?;
            // The file is read into memory, parsed from those bytes and logged with
            // them, so that a replay parses the same bytes. A file that cannot be opened
            // (gone since it was listed) is read as it is: its quarantine is logged. A
            // log that cannot be written (a full disk) stops the run, as any failed log
            // write does.
            let far_ahead = shared.max_ahead.map(|max_ahead| {
                let limit = max_ahead.as_millis().min(u128::from(u64::MAX)) as u64;
                (now_ms(), limit)
            });
            let source = read_source(&task.file.path)?;
            let batch = read_unit(
                dataset,
                task.file.path.clone(),
                source.as_ref().map(|(bytes, _)| bytes),
                &task.file.rel,
                &task.file.tables,
                far_ahead,
            );
            let header = WalHeader {
                time,
                unit,
                units_in_time,
                arrival: old.as_ref().map_or(unit, |(h, _)| h.arrival),
                origin: BatchOrigin::File {
                    rel: task.file.rel.clone(),
                    size: task.size,
                    mtime_ns: task.mtime_ns,
                    hash: task.hash,
                },
                retracts: task.retracts,
                max_ts: batch.events.iter().map(|e| e.ts).max(),
            };
            let entry = match &source {
                Some((bytes, hash)) => {
                    let copy = SourceCopy {
                        len: bytes.len() as u64,
                        hash: *hash,
                        tables: task.file.tables.clone(),
                        far_ahead,
                    };
                    wal_entry::encode_inline(&header, &copy, bytes)
                }
                None => wal_entry::encode_batch(&header, &batch),
            };
            let entry = entry.with_context(|| format!("encoding the log entry of unit {unit}"))?;
            counters
                .event_rows
                .fetch_add(batch.events.len() as u64, Ordering::Relaxed);
            return Ok(Prepared {
                unit,
                header,
                batch,
                old,
                label: None,
                entry: Some(entry),
            });
        }
        Assignment::Live { first, count } => {
            let mut scheduler = scheduler;
            if unit == *first {
                let sources: Vec<String> = (*first..first + count)
                    .filter_map(|u| {
                        scheduler
                            .as_mut()?
                            .live_unit(u)
                            .map(|l| origin_label(&l.origin))
                    })
                    .collect();
                label = Some(sources.join(", "));
            }
            let live = scheduler
                .and_then(|s| s.take_live_unit(unit))
                .context("no live unit for this time")?;
            let unit_of = LiveUnit {
                time,
                unit,
                units_in_time,
                arrival: *first,
            };
            let (header, batch) = unit_of.log(live.origin, live.batch, shared)?;
            (header, batch, None)
        }
        Assignment::Kafka { first, ranges } => {
            if unit == *first {
                let sources: Vec<&str> = ranges.iter().map(|r| r.source.as_str()).collect();
                label = Some(sources.join(", "));
            }
            let range = &ranges[(unit - first) as usize];
            let batch = kafka
                .as_mut()
                .context("a Kafka unit to read but no --kafka")?
                .read(range)?;
            let origin = BatchOrigin::Lines(vec![range.clone()]);
            let unit_of = LiveUnit {
                time,
                unit,
                units_in_time,
                arrival: *first,
            };
            let (header, batch) = unit_of.log(origin, batch, shared)?;
            (header, batch, None)
        }
        Assignment::End => bail!("no unit to read at the end"),
    };
    Ok(Prepared {
        unit,
        header,
        batch,
        old,
        label,
        entry: None,
    })
}

/// Logs the entries of `units` still to log (the dataset files a worker read for one
/// logical time: consecutive units) in one file, named after the first, and lets their
/// bytes go.
fn log_block(checkpoint: &Checkpoint, units: &mut [Prepared]) -> Result<()> {
    let Some(first) = units.iter().find(|u| u.entry.is_some()).map(|u| u.unit) else {
        return Ok(());
    };
    let entries: Vec<&[u8]> = units.iter().filter_map(|u| u.entry.as_deref()).collect();
    checkpoint.log_entries(first, &entries)?;
    for unit in units {
        unit.entry = None;
    }
    Ok(())
}

/// A unit read (or replayed) by this worker, to be fed once every unit it reads for
/// the time is logged.
struct Prepared {
    unit: u64,
    header: WalHeader,
    batch: FileBatch,
    /// The earlier unit's rows it replaces (a changed file re-ingested).
    old: Option<(WalHeader, FileBatch)>,
    /// The name its too-late rows are quarantined under, if not its origin's.
    label: Option<String>,
    /// Its encoded log entry, when it is still to be logged.
    entry: Option<Vec<u8>>,
}

/// Feeds a unit that is logged: its rows (after retracting the rows it replaces) and
/// its [`BatchMark`].
fn feed_prepared(prepared: Prepared, counters: &Counters, feeds: &mut Feeds) {
    let Prepared {
        unit,
        header,
        batch,
        old,
        label,
        ..
    } = prepared;
    if let Some((old_header, old_batch)) = old {
        counters.rows.add(&old_batch, -1);
        feeds.feed(old_batch, old_header.arrival, -1);
    }
    counters.rows.add(&batch, 1);
    feeds.feed(batch, header.arrival, 1);
    let label = label.unwrap_or_else(|| origin_label(&header.origin));
    feeds.marks.send(BatchMark {
        batch: unit,
        file: label,
        max_ts: header.max_ts,
    });
    if let Some(ts) = header.max_ts {
        counters.max_ts.fetch_max(ts, Ordering::Relaxed);
    }
}

/// What the log holds for `unit`: its rows, or its file parsed again from the log's
/// copy, exactly as when it was logged (the same bytes, mapping and clock).
fn logged_batch(shared: &Shared, unit: u64) -> Result<(WalHeader, FileBatch)> {
    let (header, logged) = shared.checkpoint.read_logged(unit)?;
    let batch = match logged {
        Logged::Batch(batch) => batch,
        Logged::Copy { path, copy } => {
            let (dataset, rel) = logged_file(shared, &header, unit)?;
            read_unit(dataset, path, None, rel, &copy.tables, copy.far_ahead)
        }
        Logged::Inline { copy, bytes } => {
            let (dataset, rel) = logged_file(shared, &header, unit)?;
            let path = dataset.root.join(rel);
            let bytes = Some(&bytes);
            read_unit(dataset, path, bytes, rel, &copy.tables, copy.far_ahead)
        }
    };
    Ok((header, batch))
}

/// The dataset and file of a unit logged as a copy of its file (`header` of entry
/// `unit`).
fn logged_file<'a>(
    shared: &'a Shared,
    header: &'a WalHeader,
    unit: u64,
) -> Result<(&'a Dataset, &'a str)> {
    let BatchOrigin::File { rel, .. } = &header.origin else {
        bail!(
            "write-ahead log entry {unit} holds a file copy but names live lines: delete the output directory (or run again with --overwrite) to start over"
        );
    };
    let dataset = shared
        .dataset
        .as_ref()
        .context("the write-ahead log holds a dataset file but this run reads no dataset: give the dataset it was written from")?;
    Ok((dataset, rel))
}

/// Reads the dataset file `rel`, feeding `tables`, from `bytes` (its contents read into
/// memory, or the log's copy of them) or else from `path` (the file, or the log's copy
/// of it), and quarantines events more than `far_ahead`'s limit (ms) ahead of its
/// clock (epoch ms).
fn read_unit(
    dataset: &Dataset,
    path: PathBuf,
    bytes: Option<&Bytes>,
    rel: &str,
    tables: &[Table],
    far_ahead: Option<(i64, u64)>,
) -> FileBatch {
    let file = SourceFile {
        path,
        rel: rel.to_string(),
        tables: tables.to_vec(),
    };
    let mut batch = match bytes {
        Some(bytes) => dataset.read_bytes(&file, bytes),
        None => dataset.read(&file),
    };
    if let Some((now, limit)) = far_ahead {
        quarantine_far_ahead(&mut batch, rel, now, Duration::from_millis(limit));
    }
    batch
}

/// Where a live unit (the lines of one source, or a Kafka partition's range) goes: its
/// logical time, its number, how many units the time has, and its arrival. Every unit
/// of a live time arrives as the time's first unit: together they are the lines that
/// "arrived in an interval" (contract "Batches"), judged for lateness as one.
struct LiveUnit {
    time: u64,
    unit: u64,
    units_in_time: u64,
    arrival: u64,
}

impl LiveUnit {
    /// Quarantines events too far ahead of the clock, logs the unit, and returns it to
    /// feed.
    fn log(
        &self,
        origin: BatchOrigin,
        mut batch: FileBatch,
        shared: &Shared,
    ) -> Result<(WalHeader, FileBatch)> {
        if let Some(max_ahead) = shared.max_ahead {
            quarantine_far_ahead(&mut batch, &origin_label(&origin), now_ms(), max_ahead);
        }
        let header = WalHeader {
            time: self.time,
            unit: self.unit,
            units_in_time: self.units_in_time,
            arrival: self.arrival,
            origin,
            retracts: None,
            max_ts: batch.events.iter().map(|e| e.ts).max(),
        };
        shared.checkpoint.log_batch(&header, &batch)?;
        shared
            .counters
            .event_rows
            .fetch_add(batch.events.len() as u64, Ordering::Relaxed);
        Ok((header, batch))
    }
}

/// The newest logical time every sink has passed: one before the probe's frontier, or
/// before `time` (the next time to feed) once the frontier is empty.
fn completed_time(probe: &timely::dataflow::ProbeHandle<u64>, time: u64) -> Option<u64> {
    match probe.with_frontier(|f| f.first().copied()) {
        Some(frontier) => frontier.checked_sub(1),
        None => time.checked_sub(1),
    }
}

/// Worker 0's bookkeeping after each step: the completed time in the checkpoint, and
/// progress on stderr.
struct Reporter<'a> {
    shared: &'a Shared,
    active: bool,
    completed: Option<u64>,
    last_record: Instant,
    last_tick: Instant,
    bar: Option<Progress>,
    lines: Option<FollowProgress>,
}

/// How often the completed time is recorded (each record flushes the file system).
const RECORD_INTERVAL: Duration = Duration::from_millis(200);

impl<'a> Reporter<'a> {
    fn new(index: usize, shared: &'a Shared) -> Reporter<'a> {
        let active = shared.records_completed == index;
        let (bar, lines) = match (index == 0, shared.progress) {
            (true, ProgressMode::Bar(total)) => (Some(Progress::files(total)), None),
            (true, ProgressMode::Lines(label)) => (
                None,
                Some(FollowProgress::new(
                    label,
                    shared.params.allowed_lateness_ms,
                )),
            ),
            _ => (None, None),
        };
        Reporter {
            shared,
            active,
            completed: shared.resume_after,
            last_record: Instant::now(),
            last_tick: Instant::now(),
            bar,
            lines,
        }
    }

    /// Records the completed time (every sink passed it) and draws progress.
    fn tick(
        &mut self,
        probe: &timely::dataflow::ProbeHandle<u64>,
        time: u64,
        mut scheduler: Option<&mut Scheduler>,
    ) {
        if !self.active {
            return;
        }
        let frontier = probe.with_frontier(|f| f.first().copied());
        let now = Instant::now();
        if frontier.is_some_and(|f| f < time) {
            // A fed time is not complete yet: the interval since the last tick was work.
            let worked = now.duration_since(self.last_tick).as_nanos() as u64;
            self.shared
                .counters
                .busy_ns
                .fetch_add(worked, Ordering::Relaxed);
        }
        self.last_tick = now;
        self.record(completed_time(probe, time), false, scheduler.as_deref_mut());
        let counters = &self.shared.counters;
        let events = counters.event_rows.load(Ordering::Relaxed);
        if let Some(bar) = &self.bar {
            bar.update(frontier.unwrap_or(time), events);
        }
        if let Some(lines) = &mut self.lines {
            let max_ts = counters.max_ts.load(Ordering::Relaxed);
            let files = scheduler.map_or(0, |s| s.files_ingested());
            lines.update(
                counters.fed.load(Ordering::Relaxed),
                files,
                events,
                (max_ts != 0).then_some(max_ts),
                self.completed,
            );
        }
    }

    /// Records `done` as the completed time, at most every [`RECORD_INTERVAL`] unless
    /// `now`, and tells the scheduler (Kafka offsets go to the consumer group then).
    fn record(&mut self, done: Option<u64>, now: bool, scheduler: Option<&mut Scheduler>) {
        let Some(done) = done else { return };
        if self.completed.is_some_and(|c| c >= done)
            || (!now && self.last_record.elapsed() < RECORD_INTERVAL)
        {
            return;
        }
        self.last_record = Instant::now();
        match self.shared.checkpoint.set_completed(done) {
            Ok(()) => {
                self.completed = Some(done);
                if let Some(scheduler) = scheduler {
                    scheduler.completed(done);
                }
            }
            // A full disk stops the run here, as the next log write would: one error
            // naming the file, not a warning and then that error.
            Err(error) if disk_full(&error) => crate::sink::fail(
                &self.shared.out,
                format!("recording completed time {done}: {}", one_line(&error)),
            ),
            Err(error) => {
                tracing::warn!("recording completed time {done}: {}", one_line(&error))
            }
        }
    }

    fn finish(mut self, time: u64, scheduler: Option<&mut Scheduler>) {
        if !self.active {
            return;
        }
        self.record(time.checked_sub(1), true, scheduler);
        if let Some(bar) = self.bar.take() {
            bar.finish();
        }
        if let Some(lines) = self.lines.take() {
            lines.finish(self.completed);
        }
    }
}

/// The tables `tidemark run` writes, in the order they are attached.
pub use tidemark_dataflows::dataflow::WRITTEN_TABLES;

/// Attaches a sink to every output table, configured as `sinks`; returns their reports.
/// The tables are dealt round-robin over the first `writers` workers (process 0's), so
/// that each worker writes about as many tables and a cluster's Delta tables stay on one
/// host.
fn write_outputs<'s>(
    outputs: Outputs<'s>,
    sinks: &TableSinkConfig,
    writers: usize,
) -> Vec<timely::dataflow::StreamVec<'s, u64, crate::sink::SinkReport>> {
    let mut reports = Vec::new();
    macro_rules! sinks {
        ($($table:ident: $row:ty),*) => {$(
            let writer = reports.len() % writers.max(1);
            reports.push(table_sink(outputs.$table, TableSinkConfig { writer, ..sinks.clone() }));
        )*};
    }
    tidemark_dataflows::for_each_table!(sinks);
    reports
}

#[cfg(test)]
mod tests {
    use super::*;
    use tidemark_inputs::records::Event;

    fn event(id: &str, ts: i64) -> Event {
        Event {
            event_id: id.into(),
            user_id: "u".into(),
            ts,
            event_type: "play".into(),
            item_id: None,
            duration_ms: None,
            session_id: None,
            value: None,
        }
    }

    /// A full disk under any context is told apart from other write errors: it stops
    /// the run with one error, where another failure to record progress only warns.
    #[test]
    fn a_full_disk_is_recognised_under_its_context() {
        let full = std::io::Error::from(std::io::ErrorKind::StorageFull);
        let error = Err::<(), _>(full)
            .context("writing completed.json.tmp")
            .context("recording")
            .unwrap_err();
        assert!(disk_full(&error));
        let denied = std::io::Error::from(std::io::ErrorKind::PermissionDenied);
        let error = Err::<(), _>(denied).context("writing").unwrap_err();
        assert!(!disk_full(&error));
        assert!(!disk_full(&anyhow::anyhow!("no space left, as text only")));
    }

    /// Issue 14: one event stamped far in the future must not poison a live run.
    #[test]
    fn events_far_ahead_of_the_clock_are_quarantined_in_live_runs() {
        let now = 1_764_460_800_000; // 2025-11-30
        let mut batch = FileBatch {
            events: vec![
                event("a", now - 1),
                event("b", now + 3_600_000 * 25),
                event("c", now),
            ],
            event_rows: vec![1, 2, 3],
            ..FileBatch::default()
        };
        quarantine_far_ahead(&mut batch, "events/x.ndjson", now, DEFAULT_MAX_AHEAD);
        assert_eq!(batch.event_rows, vec![1, 3]);
        assert_eq!(batch.events.len(), 2);
        assert_eq!(batch.quarantine.len(), 1);
        let q = &batch.quarantine[0];
        assert_eq!(
            (q.file.as_str(), q.row, q.field.as_str(), q.reason.as_str()),
            ("events/x.ndjson", 2, "ts", "too_far_ahead")
        );
    }
}
