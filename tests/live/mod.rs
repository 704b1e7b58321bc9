//! Helpers for the tests that run `tidemark` as real processes on a live dataset:
//! generate a source dataset, feed its event files one by one (temporary name, then
//! rename), spawn and stop the binary, and inspect the output directory.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use tidemark_inputs::generator::{generate, GeneratorConfig, OutputFormat};

/// A small messy dataset (late, too late, duplicate and invalid rows) in `dir/source`.
pub fn source_dataset(dir: &Path, seed: u64, files: u32, format: OutputFormat) -> PathBuf {
    let source = dir.join("source");
    let config = GeneratorConfig {
        events: 3_000,
        users: 80,
        seed,
        days: 12,
        files,
        format,
        late_share: 0.03,
        too_late_share: 0.01,
        duplicate_share: 0.02,
        invalid_share: 0.01,
        ..GeneratorConfig::default()
    };
    generate(&source, &config).expect("the generator writes the dataset");
    source
}

/// Every line of the event files of `source` (NDJSON), in file order.
pub fn event_lines(source: &Path) -> Vec<String> {
    let mut lines = Vec::new();
    for file in event_files(source) {
        let text = std::fs::read_to_string(file).expect("an event file reads");
        lines.extend(text.lines().map(String::from));
    }
    lines
}

/// The event files of `source`, in batch (name) order.
pub fn event_files(source: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(source.join("events"))
        .expect("events/ lists")
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    files
}

/// A live dataset at `dir/data` holding the source's non-event tables and an empty events/.
pub fn live_dataset(dir: &Path, source: &Path) -> PathBuf {
    let data = dir.join("data");
    for entry in std::fs::read_dir(source).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_owned();
        if name == "events" || !path.is_dir() {
            continue;
        }
        std::fs::create_dir_all(data.join(&name)).unwrap();
        for file in std::fs::read_dir(&path).unwrap() {
            let file = file.unwrap().path();
            std::fs::copy(&file, data.join(&name).join(file.file_name().unwrap())).unwrap();
        }
    }
    std::fs::create_dir_all(data.join("events")).unwrap();
    data
}

/// Puts `file` into `data/events/` the way the contract's writers do: write a
/// temporary name, then rename.
pub fn feed(file: &Path, data: &Path) {
    let name = file.file_name().unwrap().to_str().unwrap();
    let tmp = data.join("events").join(format!(".{name}.tmp"));
    std::fs::copy(file, &tmp).unwrap();
    std::fs::rename(&tmp, data.join("events").join(name)).unwrap();
}

/// The binary under test: `TIDEMARK_TEST_BIN` if set (a build directory shared by
/// several checkouts may replace `target/debug/tidemark` under a running test), else
/// the one cargo built for these tests.
pub fn binary() -> PathBuf {
    std::env::var_os("TIDEMARK_TEST_BIN").map_or_else(
        || PathBuf::from(env!("CARGO_BIN_EXE_tidemark")),
        PathBuf::from,
    )
}

/// `tidemark run DATA --out OUT <args>`.
pub fn tidemark_run(data: Option<&Path>, out: &Path, args: &[&str]) -> Command {
    let mut command = Command::new(binary());
    command.arg("run");
    if let Some(data) = data {
        command.arg(data);
    }
    command.arg("--out").arg(out).arg("-q").args(args);
    command
}

/// The flags of a quick following run that ends after `idle` seconds without a new file.
/// Each file is its own logical time, so tests can compare the tables after each.
pub fn follow_flags(idle: &str) -> Vec<&str> {
    vec![
        "--max-batch-files",
        "1",
        "--follow",
        "--poll-ms",
        "40",
        "--settle-ms",
        "0",
        "--max-idle-secs",
        idle,
    ]
}

/// Starts a following run with its output discarded (stderr kept for failures).
pub fn spawn(command: &mut Command) -> Child {
    command
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("tidemark starts")
}

/// Waits for `child` up to `limit`; kills it and fails if it takes longer.
pub fn wait(child: &mut Child, limit: Duration) -> ExitStatus {
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if started.elapsed() > limit {
            child.kill().ok();
            let mut stderr = String::new();
            if let Some(mut pipe) = child.stderr.take() {
                std::io::Read::read_to_string(&mut pipe, &mut stderr).ok();
            }
            panic!("tidemark did not finish within {limit:?}; its stderr:\n{stderr}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits for a finished child and fails with its stderr unless it succeeded.
pub fn expect_success(mut child: Child, limit: Duration) {
    let status = wait(&mut child, limit);
    let output = child.wait_with_output().unwrap();
    assert!(
        status.success(),
        "tidemark failed ({status}): {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Runs a command to its end and returns its output.
pub fn output(command: &mut Command) -> Output {
    command.output().expect("tidemark runs")
}

/// Every change file under `out/changes/`, as (table, time, worker).
pub fn change_files(out: &Path) -> Vec<(String, u64, u64)> {
    let mut found = Vec::new();
    let Ok(tables) = std::fs::read_dir(out.join("changes")) else {
        return found;
    };
    for table in tables {
        let table = table.unwrap().path();
        let name = table.file_name().unwrap().to_str().unwrap().to_string();
        for file in std::fs::read_dir(&table).into_iter().flatten() {
            let file = file.unwrap().file_name().into_string().unwrap();
            let Some(rest) = file
                .strip_prefix("part-")
                .and_then(|r| r.strip_suffix(".parquet"))
            else {
                continue;
            };
            let (time, worker) = rest
                .split_once("-w")
                .expect("part-<time>-w<worker>.parquet");
            found.push((name.clone(), time.parse().unwrap(), worker.parse().unwrap()));
        }
    }
    found
}

/// Asserts that no (table, time, worker) has two change files.
pub fn assert_unique_change_files(out: &Path) {
    let mut files = change_files(out);
    let total = files.len();
    files.sort();
    files.dedup();
    assert_eq!(
        files.len(),
        total,
        "two change files for the same (table, time, worker)"
    );
}

/// The number of write-ahead log entries and the last completed time in `out`'s checkpoint.
pub fn checkpoint_state(out: &Path) -> (usize, Option<u64>) {
    let dir = out.join("_checkpoint");
    let entries = std::fs::read_dir(dir.join("wal"))
        .map(|d| {
            d.filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_str()
                    .unwrap()
                    .ends_with(".wal")
            })
            .count()
        })
        .unwrap_or(0);
    let completed = std::fs::read_to_string(dir.join("completed.json"))
        .ok()
        .map(|text| {
            let value: serde_json::Value = serde_json::from_str(&text).unwrap();
            value["last_completed"].as_u64().unwrap()
        });
    (entries, completed)
}

/// Waits until `condition` holds, up to `limit`; returns whether it did.
pub fn wait_until(limit: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let started = Instant::now();
    while started.elapsed() < limit {
        if condition() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    false
}

/// A small deterministic random number generator (xorshift) for crash schedules.
pub struct Rng(pub u64);

impl Rng {
    /// The next number below `n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// Starts `command`, a run with `--serve 127.0.0.1:0`, and returns it with the address
/// its first stderr line names; the rest of stderr is drained so the run never blocks.
pub fn spawn_serving(command: &mut Command) -> (Child, std::net::SocketAddr) {
    use std::io::{BufRead, BufReader};
    let mut child = command
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("tidemark starts");
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    stderr.read_line(&mut line).unwrap();
    let addr = line
        .split("http://")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|addr| addr.trim_end_matches('/').parse().ok())
        .unwrap_or_else(|| panic!("`run --serve` prints its address first: {line:?}"));
    std::thread::spawn(move || std::io::copy(&mut stderr, &mut std::io::sink()));
    (child, addr)
}

/// Waits until a following run over `data` has completed its first `count` input
/// files (one logical time each); returns the last completed time.
pub fn settle(out: &Path, count: usize) -> u64 {
    let done = wait_until(Duration::from_secs(60), || {
        let (logged, completed) = checkpoint_state(out);
        logged == count && completed.is_some_and(|c| c + 1 == logged as u64)
    });
    assert!(done, "the run completes {count} input files");
    checkpoint_state(out).1.unwrap()
}

/// The `txn` version (logical time) of each commit in the Delta log of `table_dir`, in
/// version order; empty when the table was never committed.
pub fn txn_versions(table_dir: &Path) -> Vec<u64> {
    let log = table_dir.join("_delta_log");
    if !log.exists() {
        return Vec::new();
    }
    let mut commits: Vec<(u64, Vec<u64>)> = std::fs::read_dir(&log)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .filter_map(|path| {
            let version: u64 = path.file_stem()?.to_str()?.parse().ok()?;
            let txns = std::fs::read_to_string(&path)
                .unwrap()
                .lines()
                .filter(|l| !l.trim().is_empty())
                .filter_map(|l| {
                    let action: serde_json::Value = serde_json::from_str(l).unwrap();
                    action.get("txn").map(|t| t["version"].as_u64().unwrap())
                })
                .collect();
            Some((version, txns))
        })
        .collect();
    commits.sort();
    commits.into_iter().flat_map(|(_, txns)| txns).collect()
}
