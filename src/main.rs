//! The `tidemark` binary: parses the command line and dispatches.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Parser;
use tidemark::cli::{Cli, Command, GenerateArgs, LiveArgs, RunArgs};
use tidemark::runtime::run::{run, LiveOptions, RunOptions};
use tidemark::sources::kafka::KafkaInput;
use tidemark::sources::live::{Batching, LiveInput};
use tidemark_inputs::generator::{self, GeneratorConfig, OutputFormat};

/// jemalloc serves the binary's Rust allocations: it reuses freed blocks per thread
/// without the page faults that glibc's fixed mmap threshold costs on every large
/// batch, and its background thread hands dirty pages back. See `tidemark::runtime::allocator`.
/// Built with `--features system-alloc` (for heaptrack, which sees only the system
/// allocator: `scripts/heap-profile`) the binary uses glibc's malloc instead.
#[cfg(all(
    target_os = "linux",
    not(target_env = "msvc"),
    not(feature = "system-alloc")
))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's options, read before `main` (the `_RJEM_MALLOC_CONF` environment
/// variable still overrides them): see [`tidemark::runtime::allocator::JEMALLOC_CONF`].
#[cfg(all(
    target_os = "linux",
    not(target_env = "msvc"),
    not(feature = "system-alloc")
))]
#[export_name = "_rjem_malloc_conf"]
pub static JEMALLOC_CONF: &[u8; tidemark::runtime::allocator::JEMALLOC_CONF.len()] =
    tidemark::runtime::allocator::JEMALLOC_CONF;

fn main() {
    tidemark::runtime::allocator::limit_fragmentation();
    log_warnings();
    quiet_known_library_panics();
    let cli = Cli::parse();
    let result = match cli.command {
        Some(Command::Run(args)) => run_command(args),
        Some(Command::Generate(args)) => generate_command(&args).map(|_| ()),
        Some(Command::Report(args)) => report_command(&args.out_dir),
        Some(Command::Predict(args)) => predict_command(&args),
        Some(Command::Serve(args)) => tidemark::serve::serve(&args.out_dir, args.listen),
        None => demo(),
    };
    if let Err(error) = result {
        eprintln!("error: {}", tidemark::error_text::one_line(&error));
        std::process::exit(1);
    }
}

/// `tidemark report`: prints the results of an output directory, or of an `s3://`
/// output (downloaded into a temporary directory first).
fn report_command(out: &std::path::Path) -> anyhow::Result<()> {
    let (dir, _copy) = tidemark::sink::object_store::readable_copy(out)?;
    print!("{}", tidemark::report::render_with_rows(&dir, out, None)?);
    Ok(())
}

/// `tidemark predict`: fits, judges, writes `OUT/predictions/` and prints the summary.
/// An `s3://` output is read from a downloaded copy and gets its predictions put under
/// the prefix.
fn predict_command(args: &tidemark::cli::PredictArgs) -> anyhow::Result<()> {
    let options = tidemark::predict::PredictOptions {
        cutoff: args.cutoff,
        seed: args.seed,
        top: args.top,
    };
    // An s3:// output is downloaded, predicted on, and its predictions put back.
    let (dir, _copy) = tidemark::sink::object_store::readable_copy(&args.out_dir)?;
    let prediction = tidemark::predict::predict(&dir, options)?;
    if tidemark::sources::object_store::is_object_url(&args.out_dir) {
        let url = args.out_dir.display().to_string();
        tidemark::sink::object_store::ObjectOutput::open(&url, &dir)?
            .put_tree("predictions")
            .with_context(|| format!("writing the predictions under {url}"))?;
    }
    print!("{}", prediction.render(&args.out_dir, args.top));
    Ok(())
}

/// object_store (0.13) panics with "Already shut down" inside delta-rs's tokio tasks
/// when a Delta write fails midway (a full disk): the failed write still reaches us as
/// an error, and the run ends with one line naming the file and the OS error. Its
/// panic report is noise on top of that line, so it is logged at debug level instead.
/// Every other panic is reported as usual.
fn quiet_known_library_panics() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let on_delta_thread = std::thread::current()
            .name()
            .is_some_and(|name| name.starts_with("tidemark-delta"));
        let message = info
            .payload()
            .downcast_ref::<&str>()
            .copied()
            .or_else(|| info.payload().downcast_ref::<String>().map(String::as_str));
        if on_delta_thread && message == Some("Already shut down") {
            tracing::debug!("object_store panicked in a failed Delta write: {info}");
            return;
        }
        default(info);
    }));
}

/// Prints tidemark's own warnings (a repaired change stream, a file it could not
/// record) on stderr, even with `-q`. Other crates' logs stay off: their failures
/// reach us as errors, and some log expected conditions (delta-rs opening a table
/// that does not exist yet). `RUST_LOG` overrides the filter.
fn log_warnings() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        EnvFilter::new("off,tidemark=warn,tidemark_inputs=warn,tidemark_dataflows=warn")
    });
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .without_time()
        .with_level(true)
        .init();
}

/// `tidemark` with no command: generate the demo dataset once, then run on it.
/// Both steps are parsed from command lines, so they use the CLI's own defaults.
fn demo() -> Result<()> {
    const DATA: &str = "tidemark-demo/data";
    const OUT: &str = "tidemark-demo/out";
    if !PathBuf::from(DATA).join("events").exists() {
        eprintln!("Generating the demo dataset (1M events, seed 42) into {DATA} ...");
        if let Some(Command::Generate(args)) =
            Cli::parse_from(["tidemark", "generate", DATA]).command
        {
            generate_command(&args)?;
        }
    }
    match Cli::parse_from(["tidemark", "run", DATA, "--out", OUT, "--overwrite"]).command {
        Some(Command::Run(args)) => run_command(args),
        _ => unreachable!("a run command line parses as a run command"),
    }
}

fn run_command(args: RunArgs) -> Result<()> {
    let (settings, params) = args.settings.params()?;
    if args.print_settings {
        print!(
            "{}",
            toml::to_string(&settings).context("printing settings")?
        );
        // TOML has no null: say so for the unset period bounds rather than omit them.
        if settings.from.is_none() {
            println!("# from: unset (the analysis period starts with the data)");
        }
        if settings.to.is_none() {
            println!("# to: unset (the analysis period ends with the data)");
        }
        return Ok(());
    }
    let live = live_options(&args.live);
    if args.dataset.is_none() && live.input.is_none() {
        bail!("tidemark run needs a DATASET directory, --stdin, --listen or --kafka with --topic (or run `tidemark` with no command for the demo)");
    }
    let following = live.follow || live.input.is_some();
    let options = RunOptions {
        dataset: args.dataset.clone(),
        mapping: args.mapping.clone(),
        out: args.out.clone(),
        params,
        cluster: args.cluster.clone(),
        progress: !args.quiet,
        overwrite: args.overwrite,
        delta: !args.no_delta,
        delta_retention: std::time::Duration::from_secs_f64(args.delta_retention_minutes * 60.0),
        live,
        arrangement_sizes: args.arrangement_sizes.clone(),
        local_out: args.local_out.clone(),
    };
    // The report and the dashboard read the local output (an s3:// output's working copy).
    let local_out =
        tidemark::sink::object_store::working_copy(&args.out, args.local_out.as_deref());
    // Bound before the run starts, so a taken port fails at once.
    let server = match args.serve {
        Some(listen) if args.cluster.process == 0 => {
            let server = tidemark::serve::Server::start(&local_out, listen)?;
            eprintln!(
                "serving {} at http://{}/",
                local_out.display(),
                server.addr()
            );
            Some(server)
        }
        _ => None,
    };
    let stats = run(&options)?;
    if !following
        && args.cluster.process == 0
        && stats.end == Some(tidemark::runtime::schedule::EndReason::Signal)
    {
        eprintln!(
            "interrupted after batch {} of {}; run the same command again to resume",
            stats.replayed + stats.files as u64,
            stats.planned
        );
        std::process::exit(130);
    }
    if !args.quiet && args.cluster.process == 0 {
        let seconds = stats.elapsed.as_secs_f64();
        let replayed = match stats.replayed {
            0 => String::new(),
            n => format!(" after replaying {n} from the checkpoint"),
        };
        // A live run's rate is over its working time, not its waits for input.
        let (rate_seconds, waiting) = if following {
            let busy = stats.busy.as_secs_f64().min(seconds);
            (
                busy,
                format!(" ({:.2}s of it waiting for input)", seconds - busy),
            )
        } else {
            (seconds, String::new())
        };
        println!(
            "Ran {} new batches{replayed} ({} event rows read) in {:.2}s{waiting}: {:.0} events/s with {} worker(s)",
            stats.files,
            stats.event_rows_read,
            seconds,
            stats.event_rows_read as f64 / rate_seconds.max(1e-9),
            args.cluster.total_workers()
        );
        // With several processes, each one's readers count only their own files.
        let rows = (args.cluster.processes <= 1).then_some(&stats.rows);
        print!(
            "{}",
            tidemark::report::render_with_rows(&local_out, &args.out, rows)?
        );
    }
    // A run stopped by a signal stops serving too; one that ended on its own goes on
    // serving its output until a signal.
    let signalled = stats.end == Some(tidemark::runtime::schedule::EndReason::Signal);
    if let Some(server) = server.filter(|_| !signalled) {
        eprintln!(
            "the run has ended; still serving {} at http://{}/ (Ctrl-C to stop)",
            local_out.display(),
            server.addr()
        );
        let stop = tidemark::runtime::stop::StopFlag::on_signals()?;
        while !stop.raised() {
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    Ok(())
}

/// The live options the flags describe.
fn live_options(args: &LiveArgs) -> LiveOptions {
    let input = if args.stdin {
        Some(LiveInput::Stdin)
    } else if let (Some(brokers), Some(topic)) = (&args.kafka, &args.topic) {
        Some(LiveInput::Kafka(KafkaInput {
            brokers: brokers
                .split(',')
                .map(str::trim)
                .filter(|b| !b.is_empty())
                .map(String::from)
                .collect(),
            topic: topic.clone(),
            start: args.start_offset,
            group: args.group.clone(),
        }))
    } else {
        args.listen.clone().map(LiveInput::Listen)
    };
    LiveOptions {
        follow: args.follow,
        poll: Duration::from_millis(args.poll_ms.max(1)),
        settle: Duration::from_millis(args.settle_ms.unwrap_or(args.poll_ms)),
        max_idle: args
            .max_idle_secs
            .map(|s| Duration::from_secs_f64(s.max(0.0))),
        input,
        batching: Batching {
            events: args.batch_events.max(1),
            interval: Duration::from_millis(args.batch_ms),
        },
        reingest_changed: args.reingest_changed,
        max_ahead: (args.max_ahead_minutes.is_finite() && args.max_ahead_minutes > 0.0)
            .then(|| Duration::from_secs_f64(args.max_ahead_minutes.min(1e9) * 60.0)),
        file_batching: tidemark::runtime::schedule::FileBatching {
            max_files: args.max_batch_files as usize,
            max_bytes: args.max_batch_mib << 20,
        },
        max_bad_rows: args.max_bad_rows,
        max_commit_times: args.max_commit_times as usize,
    }
}

fn generate_command(args: &GenerateArgs) -> Result<()> {
    let format = match args.format.as_str() {
        "parquet" => OutputFormat::Parquet,
        "csv" => OutputFormat::Csv,
        "ndjson" | "jsonl" => OutputFormat::Ndjson,
        other => bail!("unknown --format {other:?}: use parquet, csv or ndjson"),
    };
    let mut config = GeneratorConfig {
        events: args.events,
        users: args.users,
        seed: args.seed,
        format,
        gzip: args.gzip,
        ..GeneratorConfig::default()
    };
    config.start_day = args.start_day.clone();
    if let Some(files) = args.files {
        config.files = files;
    }
    if let Some(days) = args.days {
        config.days = days;
    }
    if let Some(v) = args.late_share {
        config.late_share = v;
    }
    if let Some(v) = args.too_late_share {
        config.too_late_share = v;
    }
    if let Some(v) = args.duplicate_share {
        config.duplicate_share = v;
    }
    if let Some(v) = args.invalid_share {
        config.invalid_share = v;
    }
    if let Some(v) = args.new_user_share {
        config.new_user_share = v;
    }
    let started = std::time::Instant::now();
    let summary = generator::generate(&args.out_dir, &config)
        .with_context(|| format!("generating into {}", args.out_dir.display()))?;
    println!(
        "Wrote {} events ({} late, {} too late, {} duplicates, {} invalid) for {} users in {} files to {} in {:.1}s",
        summary.events_written,
        summary.late,
        summary.too_late,
        summary.duplicates,
        summary.invalid,
        summary.users,
        summary.files.len(),
        args.out_dir.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
