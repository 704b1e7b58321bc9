//! Checkpoint and recovery: `OUT/_checkpoint/` makes a run resumable after a crash
//! without re-reading committed source files and without writing any output twice.
//!
//! Layout:
//! - `run.json`: the run's identity (cluster shape and settings). A resumed run must
//!   match it.
//! - `wal/<time>.wal`: the write-ahead log, one entry per logical time: where the
//!   batch came from (file path, size, mtime and xxh3 content hash, or live-source
//!   lines) and the parsed [`FileBatch`] itself (bincode, zstd). An entry is written
//!   and fsynced, under a temporary name and then renamed, *before* its batch is fed
//!   to the dataflow. Replaying the log rebuilds the in-memory differential state.
//! - `completed.json`: the last logical time every sink on every worker has written.
//!   Sinks skip times at or below it on a resumed run (`resume_after`).
//!
//! Every entry ends with an xxh3 checksum; a truncated or corrupt checkpoint is an
//! error that says what to do, never a silent fresh start.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use serde::{Deserialize, Serialize};
use tidemark_dataflows::settings::Params;
use tidemark_inputs::records::FileBatch;

/// The checkpoint directory's name under `OUT`.
pub const CHECKPOINT_DIR: &str = "_checkpoint";
/// Version of the on-disk format; a different one is refused.
const FORMAT: u32 = 1;
/// First bytes of every log entry.
const MAGIC: &[u8; 8] = b"TMWAL001";

/// What a resumed run must share with the run that wrote the checkpoint.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunIdentity {
    /// On-disk format version.
    pub format: u32,
    /// Worker threads per process (`-w`).
    pub workers: usize,
    /// Processes (`-n`).
    pub processes: usize,
    /// The resolved settings.
    pub params: Params,
}

impl RunIdentity {
    /// The identity of a run with this shape and these settings.
    pub fn new(workers: usize, processes: usize, params: Params) -> RunIdentity {
        RunIdentity {
            format: FORMAT,
            workers,
            processes,
            params,
        }
    }
}

/// Where a logged batch came from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum BatchOrigin {
    /// A dataset file.
    File {
        /// Path relative to the dataset directory.
        rel: String,
        /// Size in bytes when read.
        size: u64,
        /// Modification time (ns since the epoch) when read, 0 if unknown.
        mtime_ns: u128,
        /// xxh3-64 of the file's bytes.
        hash: u64,
    },
    /// Lines of live sources (standard input, TCP peers).
    Lines(Vec<LineRange>),
}

/// Consecutive lines of one live source in a batch.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LineRange {
    /// `stdin` or `tcp:<peer>`: the quarantine `file` of its bad lines.
    pub source: String,
    /// Number of the first line (1-based).
    pub first: u64,
    /// Number of the last line.
    pub last: u64,
}

/// The small part of a log entry read at start-up: what the batch was.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WalHeader {
    /// The logical time of the batch.
    pub time: u64,
    /// Its place in arrival order: `time`, or for a changed file re-ingested, the
    /// arrival of the batch it replaces (its rows are fed as arriving there).
    pub arrival: u64,
    /// Its origin.
    pub origin: BatchOrigin,
    /// A logical time whose batch this one retracts before adding its own (a changed
    /// file re-ingested with `--reingest-changed`).
    pub retracts: Option<u64>,
    /// Largest event time of the batch's valid events (for progress lines).
    pub max_ts: Option<i64>,
}

/// What a checkpoint held when the run started.
#[derive(Clone, Debug, Default)]
pub struct Recovered {
    /// The log entries, for times `0..entries.len()` (contiguous).
    pub entries: Vec<WalHeader>,
    /// The last logical time every sink completed, if any.
    pub last_completed: Option<u64>,
}

impl Recovered {
    /// The time after the last logged one: where new batches start.
    pub fn next_time(&self) -> u64 {
        self.entries.len() as u64
    }
}

#[derive(Serialize, Deserialize)]
struct Completed {
    last_completed: u64,
}

/// A run's checkpoint directory.
#[derive(Clone, Debug)]
pub struct Checkpoint {
    dir: PathBuf,
}

/// Advice appended to every "checkpoint is damaged" error.
const START_OVER: &str =
    "the checkpoint cannot be trusted: delete the output directory (or run again with --overwrite) to start over";

impl Checkpoint {
    /// The checkpoint of the output directory `out` (nothing is read or created).
    pub fn at(out: &Path) -> Checkpoint {
        Checkpoint {
            dir: out.join(CHECKPOINT_DIR),
        }
    }

    /// The checkpoint directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn wal_dir(&self) -> PathBuf {
        self.dir.join("wal")
    }

    fn wal_file(&self, time: u64) -> PathBuf {
        self.wal_dir().join(format!("{time:010}.wal"))
    }

    /// Opens the checkpoint for a run of `identity` (on process 0, before the workers
    /// start): creates it for a fresh output, or checks and loads it for a resumed one.
    /// Log entries past a gap were never completed by any sink and are removed.
    pub fn open(out: &Path, identity: &RunIdentity) -> Result<(Checkpoint, Recovered)> {
        let checkpoint = Checkpoint::at(out);
        let run_file = checkpoint.dir.join("run.json");
        if !run_file.exists() {
            if checkpoint.wal_dir().exists()
                && std::fs::read_dir(checkpoint.wal_dir())?.next().is_some()
            {
                bail!(
                    "{} holds a write-ahead log but no run.json: {START_OVER}",
                    checkpoint.dir.display()
                );
            }
            std::fs::create_dir_all(checkpoint.wal_dir())
                .with_context(|| format!("creating {}", checkpoint.wal_dir().display()))?;
            let text = serde_json::to_vec_pretty(identity)?;
            write_atomically(&run_file, &text)?;
            return Ok((checkpoint, Recovered::default()));
        }
        let text =
            std::fs::read(&run_file).with_context(|| format!("reading {}", run_file.display()))?;
        let stored: RunIdentity = serde_json::from_slice(&text)
            .map_err(|e| anyhow!("{} is corrupt ({e}): {START_OVER}", run_file.display()))?;
        check_identity(out, &stored, identity)?;
        std::fs::create_dir_all(checkpoint.wal_dir())?;

        let mut times = BTreeMap::new();
        for entry in std::fs::read_dir(checkpoint.wal_dir())? {
            let path = entry?.path();
            let name = path
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default()
                .to_string();
            if name.starts_with('.') && name.ends_with(".tmp") {
                std::fs::remove_file(&path).ok(); // an entry a crash left half-written
                continue;
            }
            let time = name
                .strip_suffix(".wal")
                .and_then(|t| t.parse::<u64>().ok())
                .ok_or_else(|| {
                    anyhow!(
                        "unexpected file {} in the write-ahead log: {START_OVER}",
                        path.display()
                    )
                })?;
            times.insert(time, path);
        }
        let last_completed = checkpoint.read_completed()?;
        let mut entries = Vec::new();
        for (time, path) in &times {
            if *time != entries.len() as u64 {
                break;
            }
            let (header, _) = read_entry(path, false)?;
            if header.time != *time {
                bail!(
                    "{} claims logical time {}: {START_OVER}",
                    path.display(),
                    header.time
                );
            }
            entries.push(header);
        }
        if let Some(done) = last_completed {
            if done >= entries.len() as u64 {
                bail!(
                    "{} says logical time {done} was completed but the write-ahead log holds only times 0..{}: {START_OVER}",
                    checkpoint.dir.join("completed.json").display(),
                    entries.len()
                );
            }
        }
        // Entries after a gap: their batches were logged by a worker whose earlier times
        // never reached the dataflow, so no sink can have written them. Drop them.
        for (time, path) in times.range(entries.len() as u64..) {
            tracing::info!("dropping uncompleted log entry {time} after a gap");
            std::fs::remove_file(path).with_context(|| format!("removing {}", path.display()))?;
        }
        Ok((
            checkpoint,
            Recovered {
                entries,
                last_completed,
            },
        ))
    }

    /// The last completed logical time recorded, if any (any process may read it).
    pub fn read_completed(&self) -> Result<Option<u64>> {
        let path = self.dir.join("completed.json");
        match std::fs::read(&path) {
            Ok(bytes) => {
                let completed: Completed = serde_json::from_slice(&bytes)
                    .map_err(|e| anyhow!("{} is corrupt ({e}): {START_OVER}", path.display()))?;
                Ok(Some(completed.last_completed))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
        }
    }

    /// Records that every sink has written every time up to `time`, after flushing
    /// the file system that holds the output so that their files are durable.
    pub fn set_completed(&self, time: u64) -> Result<()> {
        sync_filesystem(&self.dir)?;
        let text = serde_json::to_vec(&Completed {
            last_completed: time,
        })?;
        write_atomically(&self.dir.join("completed.json"), &text)
    }

    /// Logs a batch durably (fsynced) before it is fed to the dataflow.
    pub fn log_batch(&self, header: &WalHeader, batch: &FileBatch) -> Result<()> {
        let header_bytes = bincode::serialize(header)?;
        let payload = zstd::encode_all(&bincode::serialize(batch)?[..], 1)?;
        let mut bytes = Vec::with_capacity(payload.len() + header_bytes.len() + 40);
        bytes.extend_from_slice(MAGIC);
        bytes.extend_from_slice(&(header_bytes.len() as u64).to_le_bytes());
        bytes.extend_from_slice(&header_bytes);
        bytes.extend_from_slice(&(payload.len() as u64).to_le_bytes());
        bytes.extend_from_slice(&payload);
        let checksum = xxhash_rust::xxh3::xxh3_64(&bytes);
        bytes.extend_from_slice(&checksum.to_le_bytes());
        write_atomically(&self.wal_file(header.time), &bytes)
    }

    /// Reads the logged batch of `time` back.
    pub fn read_batch(&self, time: u64) -> Result<(WalHeader, FileBatch)> {
        let (header, batch) = read_entry(&self.wal_file(time), true)?;
        Ok((header, batch.unwrap_or_default()))
    }
}

/// Refuses to resume with another cluster shape or other settings.
fn check_identity(out: &Path, stored: &RunIdentity, now: &RunIdentity) -> Result<()> {
    if stored.format != now.format {
        bail!(
            "{} was written by another version of tidemark (checkpoint format {}, this one reads {}): pass --overwrite or another --out to start over",
            out.display(),
            stored.format,
            now.format
        );
    }
    if (stored.workers, stored.processes) != (now.workers, now.processes) {
        bail!(
            "{} was written by a cluster of -w {} -n {} but this run is -w {} -n {}: run with -w {} -n {} to resume it, or pass --overwrite (or another --out) to start over",
            out.display(),
            stored.workers,
            stored.processes,
            now.workers,
            now.processes,
            stored.workers,
            stored.processes
        );
    }
    if stored.params != now.params {
        bail!(
            "{} was written with other settings ({:?}) than this run's ({:?}): run with the same settings to resume it, or pass --overwrite (or another --out) to start over",
            out.display(),
            stored.params,
            now.params
        );
    }
    Ok(())
}

/// Reads and checks one log entry; the batch is decoded only when `with_batch`.
fn read_entry(path: &Path, with_batch: bool) -> Result<(WalHeader, Option<FileBatch>)> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let damaged = |what: &str| {
        anyhow!(
            "write-ahead log entry {} is {what}: {START_OVER}",
            path.display()
        )
    };
    if bytes.len() < MAGIC.len() + 24 || &bytes[..MAGIC.len()] != MAGIC {
        return Err(damaged("truncated or not a log entry"));
    }
    let (body, tail) = bytes.split_at(bytes.len() - 8);
    let checksum = u64::from_le_bytes(tail.try_into().expect("8 bytes"));
    if xxhash_rust::xxh3::xxh3_64(body) != checksum {
        return Err(damaged("corrupt or truncated (checksum mismatch)"));
    }
    let mut at = MAGIC.len();
    let mut take = |n: usize| -> Result<&[u8]> {
        let slice = body.get(at..at + n).ok_or_else(|| damaged("truncated"))?;
        at += n;
        Ok(slice)
    };
    let header_len = u64::from_le_bytes(take(8)?.try_into().expect("8 bytes")) as usize;
    let header: WalHeader = bincode::deserialize(take(header_len)?)
        .map_err(|e| damaged(&format!("unreadable ({e})")))?;
    if !with_batch {
        return Ok((header, None));
    }
    let payload_len = u64::from_le_bytes(take(8)?.try_into().expect("8 bytes")) as usize;
    let payload = take(payload_len)?;
    let raw = zstd::decode_all(payload).map_err(|e| damaged(&format!("unreadable ({e})")))?;
    let batch: FileBatch =
        bincode::deserialize(&raw).map_err(|e| damaged(&format!("unreadable ({e})")))?;
    Ok((header, Some(batch)))
}

/// Writes `bytes` to `path` durably: a temporary file, fsync, rename, fsync the directory.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().context("a checkpoint file has a directory")?;
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("entry");
    let tmp = dir.join(format!(".{name}.tmp"));
    let mut file = File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    file.write_all(bytes)
        .with_context(|| format!("writing {}", tmp.display()))?;
    file.sync_all()
        .with_context(|| format!("syncing {}", tmp.display()))?;
    drop(file);
    std::fs::rename(&tmp, path).with_context(|| format!("renaming into {}", path.display()))?;
    File::open(dir).and_then(|d| d.sync_all()).ok();
    Ok(())
}

/// Flushes every written file of the file system holding `dir` to disk (one call
/// instead of an fsync per change file).
fn sync_filesystem(dir: &Path) -> Result<()> {
    let handle = File::open(dir).with_context(|| format!("opening {}", dir.display()))?;
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        // SAFETY: syncfs only reads the descriptor, which `handle` keeps open.
        if unsafe { libc::syncfs(handle.as_raw_fd()) } != 0 {
            return Err(std::io::Error::last_os_error())
                .with_context(|| format!("syncing {}", dir.display()));
        }
    }
    #[cfg(not(target_os = "linux"))]
    {
        drop(handle);
        // SAFETY: sync takes no arguments and cannot fail.
        unsafe { libc::sync() };
    }
    Ok(())
}

/// xxh3-64 of a file's contents.
pub fn hash_file(path: &Path) -> Result<u64> {
    let mut hasher = xxhash_rust::xxh3::Xxh3::new();
    let mut file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = std::io::Read::read(&mut file, &mut buf)
            .with_context(|| format!("reading {}", path.display()))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hasher.digest())
}

/// A file's size and modification time (ns since the epoch, 0 if unknown).
pub fn file_stamp(path: &Path) -> Result<(u64, u128)> {
    let meta = std::fs::metadata(path)
        .with_context(|| format!("reading metadata of {}", path.display()))?;
    let mtime = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos());
    Ok((meta.len(), mtime))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tidemark_inputs::records::QuarantineRow;

    fn identity(workers: usize) -> RunIdentity {
        RunIdentity::new(workers, 1, Params::default())
    }

    fn header(time: u64) -> WalHeader {
        WalHeader {
            time,
            arrival: time,
            origin: BatchOrigin::Lines(vec![LineRange {
                source: "stdin".into(),
                first: 1,
                last: 1,
            }]),
            retracts: None,
            max_ts: None,
        }
    }

    #[test]
    fn a_logged_batch_reads_back_and_the_checkpoint_resumes() {
        let dir = tempfile::tempdir().unwrap();
        let (checkpoint, recovered) = Checkpoint::open(dir.path(), &identity(1)).unwrap();
        assert!(recovered.entries.is_empty());
        let mut batch = FileBatch::default();
        batch.quarantine.push(QuarantineRow {
            file: "stdin".into(),
            row: 1,
            field: String::new(),
            reason: "bad_json".into(),
            raw: "x".into(),
        });
        checkpoint.log_batch(&header(0), &batch).unwrap();
        checkpoint.log_batch(&header(1), &batch).unwrap();
        checkpoint.log_batch(&header(3), &batch).unwrap(); // after a gap: dropped
        checkpoint.set_completed(0).unwrap();
        let (checkpoint, recovered) = Checkpoint::open(dir.path(), &identity(1)).unwrap();
        assert_eq!(recovered.entries.len(), 2);
        assert_eq!(recovered.last_completed, Some(0));
        assert_eq!(checkpoint.read_batch(1).unwrap().1, batch);
        assert!(!checkpoint.wal_file(3).exists());
    }

    #[test]
    fn damage_and_a_different_shape_are_errors_that_say_what_to_do() {
        let dir = tempfile::tempdir().unwrap();
        let (checkpoint, _) = Checkpoint::open(dir.path(), &identity(1)).unwrap();
        checkpoint
            .log_batch(&header(0), &FileBatch::default())
            .unwrap();
        let error = Checkpoint::open(dir.path(), &identity(2))
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("-w 1 -n 1") && error.contains("--overwrite"),
            "{error}"
        );

        let file = checkpoint.wal_file(0);
        let bytes = std::fs::read(&file).unwrap();
        std::fs::write(&file, &bytes[..bytes.len() - 3]).unwrap();
        let error = Checkpoint::open(dir.path(), &identity(1))
            .unwrap_err()
            .to_string();
        assert!(error.contains("start over"), "{error}");

        std::fs::write(checkpoint.dir().join("run.json"), b"{").unwrap();
        let error = Checkpoint::open(dir.path(), &identity(1))
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("corrupt") && error.contains("start over"),
            "{error}"
        );
    }
}
