//! `tidemark run`: reads a dataset file by file (one logical time per file), feeds the
//! dataflow on every worker of the cluster, and writes each output table's changes.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use differential_dataflow::input::Input as _;
use tidemark_dataflows::dataflow::{build, Inputs, Outputs};
use tidemark_dataflows::ingest::{BatchMark, RawEvent};
use tidemark_dataflows::settings::Params;
use tidemark_dataflows::tables;
use tidemark_inputs::dataset::{Dataset, SourceFile, Table};
use timely::dataflow::operators::{Concatenate, Input as _, Probe};

use crate::cluster::ClusterArgs;
use crate::progress::Progress;
use crate::sink::changes::change_stream_sink;
use crate::sink::delta::delta_sink;

/// Everything `tidemark run` needs to know.
#[derive(Clone, Debug)]
pub struct RunOptions {
    /// The dataset directory.
    pub dataset: PathBuf,
    /// A mapping file overriding `<dataset>/tidemark.toml`.
    pub mapping: Option<PathBuf>,
    /// The output directory.
    pub out: PathBuf,
    /// Resolved settings.
    pub params: Params,
    /// Cluster flags.
    pub cluster: ClusterArgs,
    /// Whether to draw a progress bar on the terminal.
    pub progress: bool,
    /// Whether an existing output may be replaced.
    pub overwrite: bool,
    /// Whether to write the Delta tables under `OUT/tables/` (off with `--no-delta`).
    pub delta: bool,
}

/// What a finished run did, as seen from this process.
#[derive(Clone, Debug)]
pub struct RunStats {
    /// Input files (logical times) in the run.
    pub files: usize,
    /// Event rows read by this process's workers (valid rows, before lateness and dedup).
    pub event_rows_read: u64,
    /// Wall-clock time of the run.
    pub elapsed: Duration,
}

/// Runs the dataflow over a static dataset to completion.
pub fn run(options: &RunOptions) -> Result<RunStats> {
    let started = Instant::now();
    let dataset = Dataset::open(&options.dataset, options.mapping.as_deref())
        .map_err(|e| anyhow!("{e}"))
        .with_context(|| format!("opening dataset {}", options.dataset.display()))?;
    let files = dataset.discover().map_err(|e| anyhow!("{e}"))?;
    if !files.iter().any(|f| f.tables.contains(&Table::Events)) {
        bail!(
            "no event files found in {}: put files under events/ or map them with `[events] files = ...` in tidemark.toml",
            options.dataset.display()
        );
    }
    for table in [
        Table::Events,
        Table::Users,
        Table::Subscriptions,
        Table::Items,
    ] {
        if let Some(first) = files.iter().find(|f| f.tables.contains(&table)) {
            dataset.check_columns(first).map_err(|e| anyhow!("{e}"))?;
        }
    }
    if options.cluster.process == 0 {
        prepare_output(&options.out, options.overwrite)?;
    }

    let config = options.cluster.timely_config()?;
    let shared = Arc::new(Shared {
        dataset,
        files,
        params: options.params,
        out: options.out.clone(),
        event_rows_read: AtomicU64::new(0),
        progress: options.progress && options.cluster.process == 0,
        delta: options.delta,
    });
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
    Ok(RunStats {
        files: shared.files.len(),
        event_rows_read: shared.event_rows_read.load(Ordering::Relaxed),
        elapsed: started.elapsed(),
    })
}

/// State every worker thread of this process reads.
struct Shared {
    dataset: Dataset,
    files: Vec<SourceFile>,
    params: Params,
    out: PathBuf,
    event_rows_read: AtomicU64,
    progress: bool,
    delta: bool,
}

/// Refuses to mix a new run into an old output unless asked to replace it.
fn prepare_output(out: &Path, overwrite: bool) -> Result<()> {
    let changes = out.join("changes");
    if changes.exists() {
        if !overwrite {
            bail!(
                "{} already holds a run's output: choose another --out, or pass --overwrite to replace it",
                out.display()
            );
        }
        std::fs::remove_dir_all(&changes)
            .with_context(|| format!("removing {}", changes.display()))?;
        let tables = out.join("tables");
        if tables.exists() {
            std::fs::remove_dir_all(&tables)
                .with_context(|| format!("removing {}", tables.display()))?;
        }
    }
    std::fs::create_dir_all(&changes).with_context(|| format!("creating {}", changes.display()))?;
    Ok(())
}

/// How many logical times a worker may read ahead of the slowest completed one.
const READ_AHEAD: u64 = 2;

fn run_worker(worker: &mut timely::worker::Worker, shared: &Shared) {
    let index = worker.index();
    let peers = worker.peers();
    let params = shared.params;
    let out = shared.out.clone();
    let delta = shared.delta;

    let (mut rows_in, mut marks_in, mut users_in, mut subs_in, mut errors_in, probe) = worker
        .dataflow::<u64, _, _>(|scope| {
            let (rows_in, event_rows) = scope.new_input::<Vec<RawEvent>>();
            let (marks_in, batch_marks) = scope.new_input::<Vec<BatchMark>>();
            let (users_in, users) = scope.new_collection();
            let (subs_in, subscriptions) = scope.new_collection();
            let (errors_in, read_errors) = scope.new_collection();
            let outputs = build(
                Inputs {
                    event_rows,
                    batch_marks,
                    users,
                    subscriptions,
                    read_errors,
                },
                params,
            );
            let reports = write_outputs(outputs, &out, index, delta);
            let (probe, _) = scope.concatenate(reports).probe();
            (rows_in, marks_in, users_in, subs_in, errors_in, probe)
        });

    let progress =
        (index == 0 && shared.progress).then(|| Progress::files(shared.files.len() as u64));
    for (position, file) in shared.files.iter().enumerate() {
        let time = position as u64;
        if position % peers == index {
            let batch = shared.dataset.read(file);
            let max_ts = batch.events.iter().map(|e| e.ts).max();
            shared
                .event_rows_read
                .fetch_add(batch.events.len() as u64, Ordering::Relaxed);
            for (event, row) in batch.events.into_iter().zip(batch.event_rows) {
                rows_in.send(RawEvent {
                    batch: time,
                    row,
                    event,
                });
            }
            marks_in.send(BatchMark {
                batch: time,
                file: file.rel.clone(),
                max_ts,
            });
            for (position, user) in batch.users.into_iter().enumerate() {
                users_in.insert((user, (time, position as u64)));
            }
            for (position, change) in batch.subscriptions.into_iter().enumerate() {
                subs_in.insert((change, (time, position as u64)));
            }
            for row in batch.quarantine {
                errors_in.insert(row);
            }
        }
        let next = time + 1;
        rows_in.advance_to(next);
        marks_in.advance_to(next);
        users_in.advance_to(next);
        subs_in.advance_to(next);
        errors_in.advance_to(next);
        users_in.flush();
        subs_in.flush();
        errors_in.flush();
        worker.step();
        while probe.less_than(&next.saturating_sub(READ_AHEAD * peers as u64)) {
            worker.step();
        }
        if let Some(progress) = &progress {
            let done = probe.with_frontier(|f| f.first().copied().unwrap_or(next));
            progress.update(done, shared.event_rows_read.load(Ordering::Relaxed));
        }
    }
    drop((rows_in, marks_in, users_in, subs_in, errors_in));
    while worker.step() {
        if let Some(progress) = &progress {
            let done =
                probe.with_frontier(|f| f.first().copied().unwrap_or(shared.files.len() as u64));
            progress.update(done, shared.event_rows_read.load(Ordering::Relaxed));
        }
    }
    if let Some(progress) = progress {
        progress.finish();
    }
}

/// The tables `tidemark run` writes, in the order they are attached.
pub const WRITTEN_TABLES: &[tidemark_dataflows::tables::TableSpec] = &[
    tables::SESSIONS,
    tables::WINDOW_ACTIVITY,
    tables::DAILY_ACTIVE,
    tables::MONTHLY_ACTIVE,
    tables::RETENTION_COHORTS,
    tables::KPIS,
    tables::SPIKE_ALERTS,
    tables::SESSION_METRICS_DAILY,
    tables::EVENT_MIX_DAILY,
    tables::SKIP_RATE_DAILY,
    tables::FEATURE_ADOPTION,
    tables::ENGAGEMENT_BY_SEGMENT,
    tables::QUARANTINE,
];

/// Attaches a change-stream sink and (with `delta`) a Delta Lake sink to every output
/// table; returns their reports.
fn write_outputs<'s>(
    outputs: Outputs<'s>,
    out: &Path,
    worker: usize,
    delta: bool,
) -> Vec<timely::dataflow::StreamVec<'s, u64, crate::sink::SinkReport>> {
    let mut reports = Vec::new();
    macro_rules! sinks {
        ($($table:ident),*) => {$(
            if delta {
                reports.push(delta_sink(outputs.$table.clone(), out));
            }
            reports.push(change_stream_sink(outputs.$table, out.to_path_buf(), worker));
        )*};
    }
    sinks!(
        sessions,
        window_activity,
        daily_active,
        monthly_active,
        retention_cohorts,
        kpis,
        spike_alerts,
        session_metrics_daily,
        event_mix_daily,
        skip_rate_daily,
        feature_adoption,
        engagement_by_segment,
        quarantine
    );
    reports
}
