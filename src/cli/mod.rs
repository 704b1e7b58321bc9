//! The command line: `tidemark run`, `generate`, `report`, `predict` and `serve`.

pub mod settings;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::cli::settings::SettingsArgs;
use crate::runtime::cluster::ClusterArgs;

/// tidemark: incremental user-engagement analytics. Sessions, windows, exact distinct
/// users, DAU/MAU, retention cohorts and KPIs, corrected incrementally as data arrives.
/// With no command, generates a demo data set (1M events) and runs on it.
#[derive(Debug, Parser)]
#[command(name = "tidemark", version)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// tidemark's commands.
#[derive(Debug, Subcommand)]
#[allow(clippy::large_enum_variant)] // parsed once; boxing would buy nothing
pub enum Command {
    /// Compute every output table over a dataset and write their change streams.
    Run(RunArgs),
    /// Write a realistic synthetic dataset in the contract's layout.
    Generate(GenerateArgs),
    /// Print the results of a finished (or running) output directory.
    Report(ReportArgs),
    /// Predict who comes back: train a logistic regression on the users active before a
    /// cutoff, judge it beside a session-count baseline, and score the users active in
    /// the last 28 days. Writes OUT/predictions/.
    Predict(PredictArgs),
    /// Serve an output directory's current tables over HTTP, following new commits: a
    /// live dashboard at `/` and the JSON API (/api/tables, /api/tables/<table>,
    /// /api/status, /api/changes).
    Serve(ServeArgs),
}

/// Arguments of `tidemark run`.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// Dataset directory (events/, users/, subscriptions/, items/, optional tidemark.toml),
    /// or an s3://bucket/prefix URL laid out the same way (AWS_* environment variables;
    /// objects are mirrored into OUT/source/). Needed unless --stdin, --listen or --kafka
    /// is given;
    /// for the demo (one million generated events), run `tidemark` with no command.
    pub dataset: Option<PathBuf>,
    /// Output directory: changes/<table>/ holds each table's change stream, tables/<table>/
    /// its Delta Lake table. May be an s3://bucket/prefix URL (AWS_* environment
    /// variables): the run writes a local working copy (--local-out) and uploads it as it
    /// goes, each object in one put.
    #[arg(long, default_value = "tidemark-out")]
    pub out: PathBuf,
    /// The local working copy of an s3:// --out (emptied and downloaded from the prefix
    /// at the start of every run). Default: a directory under the system's temporary
    /// directory named after the URL.
    #[arg(long, value_name = "DIR")]
    pub local_out: Option<PathBuf>,
    /// Mapping file for a source not in contract column names (overrides <dataset>/tidemark.toml).
    #[arg(long, value_name = "FILE")]
    pub mapping: Option<PathBuf>,
    /// Replace an existing output directory's contents (without it, a run on an
    /// existing output resumes from its checkpoint).
    #[arg(long)]
    pub overwrite: bool,
    /// Skip the Delta Lake tables under OUT/tables/ (faster; change streams only).
    #[arg(long)]
    pub no_delta: bool,
    /// Keep the data files a Delta commit removed this many minutes for readers of
    /// older versions, then vacuum them (every 20 commits of a table and when the run
    /// ends). 0 keeps only the current version's files.
    #[arg(long, value_name = "MINUTES", default_value_t = 60.0, value_parser = retention_minutes)]
    pub delta_retention_minutes: f64,
    /// Write the updates every arrangement (differential state) holds after each
    /// logical time to FILE as CSV: logical_time, worker, operator, name, records,
    /// batcher_records. For finding which state grows on a long run.
    #[arg(long, value_name = "FILE")]
    pub arrangement_sizes: Option<PathBuf>,
    /// Live inputs: --follow, --stdin, --listen and their batching.
    #[command(flatten)]
    pub live: LiveArgs,
    /// Serve the output while the run goes on (the dashboard and JSON API of `tidemark
    /// serve`) at this address, e.g. 127.0.0.1:8080; after the run ends it keeps
    /// serving until Ctrl-C.
    #[arg(long, value_name = "ADDR")]
    pub serve: Option<std::net::SocketAddr>,
    /// Print the settings in force and exit.
    #[arg(long)]
    pub print_settings: bool,
    /// Print no progress and no summary.
    #[arg(long, short = 'q')]
    pub quiet: bool,
    /// Settings (flags win over --settings FILE).
    #[command(flatten)]
    pub settings: SettingsArgs,
    /// Cluster: timely's -w/-n/-p/-h flags.
    #[command(flatten)]
    pub cluster: ClusterArgs,
}

/// Flags for input that arrives while the run is live.
#[derive(Debug, Default, clap::Args)]
pub struct LiveArgs {
    /// After the files present, keep watching the dataset and ingest each new file
    /// once, as the next logical time. SIGINT/SIGTERM stop cleanly. Not with --stdin or
    /// --listen, whose end ends the run (the files present are still read first).
    #[arg(long, conflicts_with_all = ["stdin", "listen"])]
    pub follow: bool,
    /// How often to list the dataset when following, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 500)]
    pub poll_ms: u64,
    /// A new file is taken once its size and mtime have not changed for this long: at
    /// the first listing when its mtime is already that old (a file moved in from
    /// elsewhere), else once two listings this far apart agree [default: --poll-ms].
    #[arg(long, value_name = "MS")]
    pub settle_ms: Option<u64>,
    /// Stop after this many seconds without new input (for scripts and tests).
    #[arg(long, value_name = "SECS")]
    pub max_idle_secs: Option<f64>,
    /// Read NDJSON events (contract events/ columns) from standard input; its end ends the run.
    #[arg(long, conflicts_with = "listen")]
    pub stdin: bool,
    /// Listen on this TCP address (e.g. 127.0.0.1:9000) for NDJSON event lines.
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<String>,
    /// Read NDJSON events from a Kafka topic (needs --topic): comma-separated bootstrap
    /// brokers, e.g. 127.0.0.1:9092. Offsets are kept in OUT's write-ahead log, so a
    /// resumed run goes on after the last logged message of each partition, exactly once.
    #[arg(long, value_name = "BROKERS", conflicts_with_all = ["stdin", "listen", "follow"], requires = "topic")]
    pub kafka: Option<String>,
    /// The Kafka topic to read (with --kafka); every partition is read.
    #[arg(long, value_name = "TOPIC", requires = "kafka")]
    pub topic: Option<String>,
    /// Where a new OUT starts reading each partition of --topic: earliest (every message
    /// the broker keeps), latest (messages produced from now on) or committed (the
    /// offsets --group has committed; earliest where it has none). A resumed OUT starts
    /// where its write-ahead log says, whatever this says.
    #[arg(long, value_name = "WHERE", value_enum, default_value_t = crate::sources::kafka::StartOffset::Earliest, requires = "kafka")]
    pub start_offset: crate::sources::kafka::StartOffset,
    /// Commit each completed logical time's offsets to this Kafka consumer group, so
    /// that lag monitors (kafka-consumer-groups.sh, Burrow) see how far tidemark is.
    /// No group is joined; OUT's write-ahead log still decides where a run resumes.
    #[arg(long, value_name = "GROUP", requires = "kafka")]
    pub group: Option<String>,
    /// List at most this many rule-breaking rows of one file in `quarantine`; the rest
    /// are counted in one `too_many_bad_rows` row, so a file of junk cannot flood
    /// memory. 0 lists every row.
    #[arg(long, value_name = "N", default_value_t = tidemark_inputs::records::DEFAULT_MAX_BAD_ROWS)]
    pub max_bad_rows: usize,
    /// Take at most this many waiting files (a backlog, or files arriving together)
    /// as one logical time. Results do not depend on it; 1 gives a time per file.
    #[arg(long, value_name = "N", default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_batch_files: u64,
    /// Take at most this many MiB of waiting files as one logical time (a larger file
    /// is a time of its own).
    #[arg(long, value_name = "MIB", default_value_t = 4, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_batch_mib: u64,
    /// Let one Delta commit of a table cover at most this many completed logical
    /// times. Times that complete together (a backlog being caught up) share a commit,
    /// since each commit costs milliseconds whatever its size; a live run's lone time
    /// commits at once. 1 gives a commit per time. Results do not depend on it.
    #[arg(long, value_name = "N", default_value_t = crate::sink::table_sink::DEFAULT_MAX_GROUP as u64, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_commit_times: u64,
    /// Live runs only: quarantine events stamped more than this many minutes ahead of
    /// the wall clock when read (`too_far_ahead`), so one bad clock cannot make every
    /// later event too late. 0 turns the guard off.
    #[arg(long, value_name = "MIN", default_value_t = 1440.0)]
    pub max_ahead_minutes: f64,
    /// Cut live lines into a logical time once this many are waiting.
    #[arg(long, value_name = "N", default_value_t = 10_000)]
    pub batch_events: usize,
    /// Cut live lines into a logical time once the oldest has waited this long (ms).
    #[arg(long, value_name = "MS", default_value_t = 1000)]
    pub batch_ms: u64,
    /// Re-ingest an input file that changed after it was ingested: its old rows are
    /// retracted and the new content added at a new logical time (default: an error).
    #[arg(long)]
    pub reingest_changed: bool,
}

/// Arguments of `tidemark generate`.
#[derive(Debug, clap::Args)]
pub struct GenerateArgs {
    /// Directory to write the dataset into.
    pub out_dir: PathBuf,
    /// Number of events.
    #[arg(long, default_value_t = 1_000_000)]
    pub events: u64,
    /// Number of users.
    #[arg(long, default_value_t = 20_000)]
    pub users: u64,
    /// Random seed: the same seed writes the same bytes.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// File format of the tables: parquet, csv or ndjson.
    #[arg(long, default_value = "parquet")]
    pub format: String,
    /// Gzip text formats.
    #[arg(long)]
    pub gzip: bool,
    /// Number of event files (default: chosen from the event count).
    #[arg(long)]
    pub files: Option<u32>,
    /// Days of event time (default: chosen from the event count).
    #[arg(long)]
    pub days: Option<u32>,
    /// First day of event time (UTC).
    #[arg(long, default_value = "2025-01-01")]
    pub start_day: String,
    /// Share of rows that arrive late, within the allowed lateness.
    #[arg(long)]
    pub late_share: Option<f64>,
    /// Share of rows that arrive later than the allowed lateness (quarantined as too_late).
    #[arg(long)]
    pub too_late_share: Option<f64>,
    /// Share of rows replayed as exact duplicates in a later file.
    #[arg(long)]
    pub duplicate_share: Option<f64>,
    /// Share of rows breaking a contract rule.
    #[arg(long)]
    pub invalid_share: Option<f64>,
    /// Share of customers who sign up during the span (default 0.6); 0 makes the
    /// customer base complete from the first day, for flat-memory experiments.
    #[arg(long)]
    pub new_user_share: Option<f64>,
}

/// Arguments of `tidemark report`.
#[derive(Debug, clap::Args)]
pub struct ReportArgs {
    /// An output directory written by `tidemark run --out`, or an s3://bucket/prefix
    /// output (downloaded into a temporary directory first; AWS_* environment variables).
    pub out_dir: PathBuf,
}

/// Arguments of `tidemark serve`.
#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// An output directory written by `tidemark run --out` (finished, running, or not
    /// there yet: the page fills in once a run writes it), or an s3://bucket/prefix
    /// output (AWS_* environment variables), mirrored into a temporary directory and
    /// followed as its run commits.
    pub out_dir: PathBuf,
    /// Address to listen on (port 0 picks a free port, printed at start).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8080")]
    pub listen: std::net::SocketAddr,
}

/// Arguments of `tidemark predict`.
#[derive(Debug, clap::Args)]
pub struct PredictArgs {
    /// An output directory written by `tidemark run --out` (finished or running), or an
    /// s3://bucket/prefix output (AWS_* environment variables): read from a downloaded
    /// copy, with the predictions put under the prefix.
    pub out_dir: PathBuf,
    /// The cutoff, a UTC date (YYYY-MM-DD): features from the 28 days before it, labels
    /// from the 28 days from it [default: 28 days before the data ends].
    #[arg(long, value_name = "DATE", value_parser = utc_date)]
    pub cutoff: Option<i32>,
    /// Seed of the random 80/20 split of users into training and test.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// How many of the users most at risk to print.
    #[arg(long, default_value_t = 10)]
    pub top: usize,
}

/// Parses a UTC date `YYYY-MM-DD` into days since 1970-01-01.
fn utc_date(text: &str) -> Result<i32, String> {
    let bad = || format!("expected a date as YYYY-MM-DD, got {text:?}");
    let parts: Vec<&str> = text.trim().split('-').collect();
    let [y, m, d] = parts[..] else {
        return Err(bad());
    };
    let (y, m, d): (i32, u32, u32) = (
        y.parse().map_err(|_| bad())?,
        m.parse().map_err(|_| bad())?,
        d.parse().map_err(|_| bad())?,
    );
    if !(1970..2200).contains(&y) {
        return Err(bad());
    }
    let day = tidemark_inputs::time::days_from_civil(y, m, d);
    if tidemark_inputs::time::civil_from_days(day) != (y, m, d) {
        return Err(format!("{text:?} is not a calendar date"));
    }
    Ok(day)
}

/// Parses `--delta-retention-minutes`: a number of minutes, 0 or more (at most a year).
fn retention_minutes(text: &str) -> Result<f64, String> {
    let minutes: f64 = text
        .parse()
        .map_err(|_| format!("expected a number of minutes, got {text:?}"))?;
    if !(0.0..=525_600.0).contains(&minutes) {
        return Err(format!(
            "must be from 0 to 525600 minutes (a year), got {minutes}"
        ));
    }
    Ok(minutes)
}
