//! Checkpoint and recovery: `OUT/_checkpoint/` makes a run resumable after a crash
//! without re-reading committed source files and without writing any output twice.
//!
//! Layout:
//! - `run.json`: the run's identity (cluster shape and settings). A resumed run must
//!   match it.
//! - `wal/<unit>.wal`: the write-ahead log, one entry per input unit (a file, or a
//!   batch of live lines), numbered in arrival order. A file holds the entries of the
//!   contiguous block of units one worker read for one logical time (named after the
//!   first), so that a backfill of many small files creates a log file per time and
//!   worker; a live unit is a file of its own. Each entry holds the logical time whose batch it
//!   belongs to and how many units that batch has, where the unit came from (file
//!   path, size, mtime and xxh3 content hash, or live-source lines) and its rows: the
//!   parsed [`FileBatch`] of live lines (bincode, zstd), or for a dataset file the
//!   bytes of the file, inside the entry, that the unit was parsed from and a resume
//!   parses again (far cheaper than encoding the parsed rows). An entry is written and
//!   fsynced, under a temporary name and then renamed, *before* its unit is fed to the
//!   dataflow. (Logs written before kept the bytes beside the entry, in
//!   `wal/<unit>.src`, and a file per unit; they are still read. Fewer files: where
//!   creating a file is slow, such as ext4 without a journal after a run deleted many,
//!   the files a run creates are much of its kernel time.)
//!   Replaying the log rebuilds the in-memory differential state; a logical time is
//!   replayed only when every unit of it was logged.
//! - `completed.json`: the last logical time every sink on every worker has written.
//!   Sinks skip times at or below it on a resumed run (`resume_after`).
//!
//! Every entry ends with an xxh3 checksum; a truncated or corrupt checkpoint is an
//! error that says what to do, never a silent fresh start.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::{anyhow, bail, Context, Result};
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tidemark_dataflows::model::settings::Params;
use tidemark_inputs::records::FileBatch;
use tidemark_inputs::wal_entry::{self, Payload, SourceCopy};

/// The checkpoint directory's name under `OUT`.
pub const CHECKPOINT_DIR: &str = "_checkpoint";
/// Version of the on-disk format; a different one is refused. 5: the tables
/// `user_activity_daily` and `user_plans` were added. 6: one worker writes each table's
/// change files (the manifests and file names of 5 are per worker). 7: a dataset file is
/// logged as a byte copy of itself (beside its entry at first, inside it since: both
/// are read, so the format did not change).
const FORMAT: u32 = 7;

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
    /// The dataset directory, canonical (none for live lines only).
    #[serde(default)]
    pub dataset: Option<String>,
    /// A fingerprint of what the mapping means ([`tidemark_inputs::Mapping::fingerprint`]).
    #[serde(default)]
    pub mapping: Option<String>,
    /// Whether the Delta tables are written (off with `--no-delta`).
    #[serde(default = "delta_default")]
    pub delta: bool,
}

fn delta_default() -> bool {
    true
}

impl RunIdentity {
    /// The identity of a run with this shape and these settings, over no dataset.
    pub fn new(workers: usize, processes: usize, params: Params) -> RunIdentity {
        RunIdentity {
            format: FORMAT,
            workers,
            processes,
            params,
            dataset: None,
            mapping: None,
            delta: true,
        }
    }
}

pub use tidemark_inputs::wal_entry::{BatchOrigin, LineRange, WalHeader};

/// What a checkpoint held when the run started.
#[derive(Clone, Debug, Default)]
pub struct Recovered {
    /// The log entries, for units `0..entries.len()` (contiguous), covering whole
    /// logical times `0..next_time()`.
    pub entries: Vec<WalHeader>,
    /// The last logical time every sink completed, if any.
    pub last_completed: Option<u64>,
}

impl Recovered {
    /// The time after the last logged one: where new batches start.
    pub fn next_time(&self) -> u64 {
        self.entries.last().map_or(0, |e| e.time + 1)
    }

    /// The unit after the last logged one: where new units are numbered from.
    pub fn next_unit(&self) -> u64 {
        self.entries.len() as u64
    }

    /// The logged logical times in order, each with its first unit and unit count.
    pub fn times(&self) -> Vec<(u64, u64, u64)> {
        let mut times: Vec<(u64, u64, u64)> = Vec::new();
        for entry in &self.entries {
            match times.last_mut() {
                Some((time, _, count)) if *time == entry.time => *count += 1,
                _ => times.push((entry.time, entry.unit, 1)),
            }
        }
        times
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
    /// The log's files by the first unit each holds, as last listed or written here.
    files: Arc<Mutex<UnitFiles>>,
}

/// Advice appended to every "checkpoint is damaged" error.
const START_OVER: &str =
    "the checkpoint cannot be trusted: delete the output directory (or run again with --overwrite) to start over";

impl Checkpoint {
    /// The checkpoint of the output directory `out` (nothing is read or created).
    pub fn at(out: &Path) -> Checkpoint {
        Checkpoint {
            dir: out.join(CHECKPOINT_DIR),
            files: Arc::default(),
        }
    }

    /// The checkpoint directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Opens the checkpoint of a process other than 0 whose `OUT` no other process
    /// shares (an object-store output's working copy): it logs its own units there.
    pub fn for_own_copy(out: &Path) -> Result<Checkpoint> {
        let checkpoint = Checkpoint::at(out);
        std::fs::create_dir_all(checkpoint.wal_dir())
            .with_context(|| format!("creating {}", checkpoint.wal_dir().display()))?;
        Ok(checkpoint)
    }

    fn wal_dir(&self) -> PathBuf {
        self.dir.join("wal")
    }

    /// The log file whose first entry is unit `unit`'s.
    fn wal_file(&self, unit: u64) -> PathBuf {
        self.wal_dir().join(format!("{unit:010}.wal"))
    }

    /// Lists the log's files again, by the first unit each holds.
    fn list_files(&self) -> Result<()> {
        let mut files = BTreeMap::new();
        for entry in std::fs::read_dir(self.wal_dir())? {
            let path = entry?.path();
            if let Some(first) = first_unit(&path) {
                files.insert(first, path);
            }
        }
        *self.files.lock().unwrap_or_else(|e| e.into_inner()) = files;
        Ok(())
    }

    /// The entry of `unit`, if it is logged: the `unit - first`th of the file of the
    /// greatest first unit at or below it (a worker logs the contiguous block of units
    /// it reads for a time in one file), looked for again after listing the files when
    /// it is not there. Only that entry is read, and its header must name `unit`.
    fn find_entry(&self, unit: u64, with_payload: bool) -> Result<Option<Decoded>> {
        for listed in [false, true] {
            if listed {
                self.list_files()?;
            }
            let file = self
                .files
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .range(..=unit)
                .next_back()
                .map(|(first, path)| (*first, path.clone()));
            let Some((first, path)) = file else {
                continue;
            };
            let mut file = match File::open(&path) {
                Ok(file) => file,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e).with_context(|| format!("opening {}", path.display())),
            };
            let len = file
                .metadata()
                .with_context(|| format!("reading {}", path.display()))?
                .len();
            let spans = wal_entry::entry_spans(&mut file, len).map_err(|e| damaged(&path, e))?;
            let Some(&(at, entry_len)) = usize::try_from(unit - first)
                .ok()
                .and_then(|k| spans.get(k))
            else {
                continue;
            };
            let mut entry = vec![0u8; entry_len as usize];
            file.seek(SeekFrom::Start(at))
                .and_then(|_| file.read_exact(&mut entry))
                .with_context(|| format!("reading {}", path.display()))?;
            let decoded = decode_entry(&path, &entry, with_payload)?;
            if decoded.0.unit != unit {
                bail!(
                    "{} holds unit {} where unit {unit} belongs: {START_OVER}",
                    path.display(),
                    decoded.0.unit
                );
            }
            return Ok(Some(decoded));
        }
        Ok(None)
    }

    /// Where the byte copy of unit `unit`'s file is kept.
    fn copy_file(&self, unit: u64) -> PathBuf {
        self.wal_dir().join(format!("{unit:010}.{COPY_SUFFIX}"))
    }

    /// Opens the checkpoint for a run of `identity` (on process 0, before the workers
    /// start): creates it for a fresh output, or checks and loads it for a resumed one.
    /// Log entries past a gap, or of a logical time not every unit of which was
    /// logged, were never completed by any sink and are removed.
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
        std::fs::create_dir_all(checkpoint.wal_dir())?;
        if stored != *identity && checkpoint.wal_is_empty()? {
            // The earlier run failed before it logged any batch: nothing binds this one.
            let text = serde_json::to_vec_pretty(identity)?;
            write_atomically(&run_file, &text)?;
            return Ok((checkpoint, Recovered::default()));
        }
        check_identity(out, &stored, identity)?;

        let last_completed = checkpoint.read_completed()?;
        let (entries, units, copies) = checkpoint.logged_units()?;
        let next_time = entries.last().map_or(0, |e| e.time + 1);
        if let Some(done) = last_completed {
            if done >= next_time {
                bail!(
                    "{} says logical time {done} was completed but the write-ahead log holds only times 0..{next_time}: {START_OVER}",
                    checkpoint.dir.join("completed.json").display(),
                );
            }
        }
        // Entries after a gap or of an incomplete time: their units were logged by a
        // worker whose time never fully reached the dataflow, so no sink can have
        // written them. Drop them.
        drop_uncounted(entries.len() as u64, &units, &copies)?;
        Ok((
            checkpoint,
            Recovered {
                entries,
                last_completed,
            },
        ))
    }

    /// The log's entries that count: contiguous from unit 0, of logical times every
    /// unit of which was logged; the file of every unit logged; and every file copy by
    /// unit (half-written temporary files are removed).
    fn logged_units(&self) -> Result<(Vec<WalHeader>, UnitFiles, UnitFiles)> {
        let mut files = BTreeMap::new();
        let mut copies = BTreeMap::new();
        for entry in std::fs::read_dir(self.wal_dir())? {
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
            if let Some(unit) = name
                .strip_suffix(COPY_SUFFIX)
                .and_then(|n| n.strip_suffix('.'))
                .and_then(|t| t.parse::<u64>().ok())
            {
                copies.insert(unit, path);
                continue;
            }
            let first = first_unit(&path).ok_or_else(|| {
                anyhow!(
                    "unexpected file {} in the write-ahead log: {START_OVER}",
                    path.display()
                )
            })?;
            files.insert(first, path);
        }
        // Every file holds the entries of consecutive units from the one it is named
        // after.
        let mut headers = BTreeMap::new();
        let mut units = BTreeMap::new();
        for (first, path) in &files {
            let bytes =
                std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
            for (k, entry) in split_entries(path, &bytes)?.into_iter().enumerate() {
                let (header, _) = decode_entry(path, entry, false)?;
                if header.unit != first + k as u64 || units.contains_key(&header.unit) {
                    bail!(
                        "{} claims unit {} of logical time {}: {START_OVER}",
                        path.display(),
                        header.unit,
                        header.time
                    );
                }
                units.insert(header.unit, path.clone());
                headers.insert(header.unit, header);
            }
        }
        *self.files.lock().unwrap_or_else(|e| e.into_inner()) = files;
        let mut entries: Vec<WalHeader> = Vec::new();
        for (unit, header) in headers {
            if unit != entries.len() as u64 {
                break;
            }
            let expected_time = match entries.last() {
                None => 0,
                Some(last) if last.time == header.time => last.time,
                Some(last) => last.time + 1,
            };
            if header.time != expected_time || header.units_in_time == 0 {
                bail!(
                    "{} claims unit {} of logical time {}: {START_OVER}",
                    units[&unit].display(),
                    header.unit,
                    header.time
                );
            }
            entries.push(header);
        }
        // A logical time counts only when all its units were logged.
        while let Some(last) = entries.last() {
            let logged = entries
                .iter()
                .rev()
                .take_while(|e| e.time == last.time)
                .count() as u64;
            if logged == last.units_in_time {
                break;
            }
            let time = last.time;
            entries.retain(|e| e.time != time);
        }
        Ok((entries, units, copies))
    }

    /// Removes the log entries that [`Checkpoint::open`] would drop (after a gap, or of
    /// a logical time not every unit of which was logged), so that the copy in object
    /// storage loses them before any process of a new run logs those units again.
    /// Returns how many it removed.
    pub fn prune_uncompleted(out: &Path) -> Result<usize> {
        let checkpoint = Checkpoint::at(out);
        if !checkpoint.wal_dir().exists() {
            return Ok(0);
        }
        let (entries, units, copies) = checkpoint.logged_units()?;
        drop_uncounted(entries.len() as u64, &units, &copies)
    }

    /// Whether the write-ahead log holds no entry (ignoring half-written temporary files).
    fn wal_is_empty(&self) -> Result<bool> {
        for entry in std::fs::read_dir(self.wal_dir())? {
            let name = entry?.file_name();
            if name.to_string_lossy().ends_with(".wal") {
                return Ok(false);
            }
        }
        Ok(true)
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

    /// The identity stored by the run that writes this output, if it has started
    /// (readers such as `tidemark serve` take the settings in force from it).
    pub fn read_identity(&self) -> Result<Option<RunIdentity>> {
        let path = self.dir.join("run.json");
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| anyhow!("{} is corrupt ({e}): {START_OVER}", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
        }
    }

    /// The header of the log entry of `unit`, if it is written (readers take the
    /// largest event time of a batch from it without decoding its rows).
    pub fn read_header(&self, unit: u64) -> Result<Option<WalHeader>> {
        Ok(self.find_entry(unit, false)?.map(|(header, _)| header))
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
        self.write_entry(header, wal_entry::encode_batch(header, batch))
    }

    /// Logs a unit as the bytes of its file (read with [`read_source`], and parsed from
    /// those bytes, so that a replay parses the same ones), `copy` saying how they were
    /// read: one durable file holds both.
    pub fn log_inline(&self, header: &WalHeader, copy: &SourceCopy, bytes: &[u8]) -> Result<()> {
        self.write_entry(header, wal_entry::encode_inline(header, copy, bytes))
    }

    fn write_entry(
        &self,
        header: &WalHeader,
        bytes: Result<Vec<u8>, wal_entry::EntryError>,
    ) -> Result<()> {
        let bytes =
            bytes.with_context(|| format!("encoding the log entry of unit {}", header.unit))?;
        self.log_entries(header.unit, &[&bytes])
    }

    /// Logs the encoded entries `entries` (of consecutive units from `first`, as
    /// [`wal_entry::encode`] makes them) durably, one after the other in one file: a
    /// worker logs the block of units it read for a logical time at once, so that a
    /// backfill of many small files creates a log file per time and worker, not one per
    /// input file.
    pub fn log_entries(&self, first: u64, entries: &[&[u8]]) -> Result<()> {
        let path = self.wal_file(first);
        write_parts_atomically(&path, entries)?;
        self.files
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(first, path);
        Ok(())
    }

    /// Reads what was logged for `unit` back: its rows, or its file's copy, checked
    /// against the length and hash logged with it.
    pub fn read_logged(&self, unit: u64) -> Result<(WalHeader, Logged)> {
        let Some((header, payload)) = self.find_entry(unit, true)? else {
            bail!(
                "the write-ahead log has no entry for unit {unit} (in {}): {START_OVER}",
                self.wal_dir().display()
            );
        };
        let logged = match payload {
            Some(Payload::Copy(copy)) => {
                let path = self.copy_file(unit);
                let len = std::fs::metadata(&path).map(|m| m.len());
                let intact = matches!(len, Ok(len) if len == copy.len)
                    && hash_file(&path).is_ok_and(|hash| hash == copy.hash);
                if !intact {
                    bail!(
                        "the write-ahead log's copy {} of {} is missing or damaged (it does not match the length and hash logged with it): {START_OVER}",
                        path.display(),
                        origin_name(&header.origin),
                    );
                }
                Logged::Copy { path, copy }
            }
            Some(Payload::Inline(copy, bytes)) => Logged::Inline {
                copy,
                bytes: Bytes::from(bytes),
            },
            Some(Payload::Batch(batch)) => Logged::Batch(batch),
            None => Logged::Batch(FileBatch::default()),
        };
        Ok((header, logged))
    }
}

/// Files of the log by unit.
type UnitFiles = BTreeMap<u64, PathBuf>;

/// Removes the entries of units from `counted` on (after a gap, or of a logical time
/// not every unit of which was logged), with their files, and the file copies of those
/// units and of units a crash stopped before their entry. Returns how many entries it
/// removed. A file holds the units one worker read for one time, so it is removed
/// whole; one that also holds a unit that counts is an error.
fn drop_uncounted(counted: u64, units: &UnitFiles, copies: &UnitFiles) -> Result<usize> {
    let dropped: BTreeSet<&PathBuf> = units.range(counted..).map(|(_, path)| path).collect();
    if let Some((unit, path)) = units
        .range(..counted)
        .find(|(_, path)| dropped.contains(path))
    {
        bail!(
            "{} holds unit {unit}, which counts, with units that do not: {START_OVER}",
            path.display()
        );
    }
    for (unit, _) in units.range(counted..) {
        tracing::info!("dropping uncompleted log entry {unit}");
    }
    for path in dropped {
        std::fs::remove_file(path).with_context(|| format!("removing {}", path.display()))?;
    }
    for path in copies.range(counted..).map(|(_, path)| path) {
        std::fs::remove_file(path).with_context(|| format!("removing {}", path.display()))?;
    }
    Ok(units.range(counted..).count())
}

/// The name of a copy of a unit's file in the log: `<unit>.src`.
const COPY_SUFFIX: &str = "src";

fn origin_name(origin: &BatchOrigin) -> String {
    match origin {
        BatchOrigin::File { rel, .. } => rel.clone(),
        BatchOrigin::Lines(_) => "live lines".to_string(),
    }
}

/// What the log holds for a unit.
#[derive(Debug)]
pub enum Logged {
    /// Its rows.
    Batch(FileBatch),
    /// A checked copy of its file at `path`, to parse as `copy` says (logs of earlier
    /// versions).
    Copy {
        /// The copy.
        path: PathBuf,
        /// How it was logged.
        copy: SourceCopy,
    },
    /// The bytes of its file, checked with the entry, to parse as `copy` says.
    Inline {
        /// How it was logged.
        copy: SourceCopy,
        /// The file's bytes.
        bytes: Bytes,
    },
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
            "{} was written with other settings than this run's:\n{}\nrun with the same settings to resume it, or pass --overwrite (or another --out) to start over",
            out.display(),
            settings_diff(&stored.params, &now.params).join("\n")
        );
    }
    let none = || "none".to_string();
    if stored.dataset != now.dataset {
        bail!(
            "{} was written from dataset {} but this run reads {}: give the same dataset to resume it, or pass --overwrite (or another --out) to start over",
            out.display(),
            stored.dataset.clone().unwrap_or_else(none),
            now.dataset.clone().unwrap_or_else(none)
        );
    }
    if stored.mapping != now.mapping {
        bail!(
            "{} was written with another mapping (the dataset's tidemark.toml or --mapping changed since; fingerprint {} recorded, {} now): results would mix both mappings. Restore the mapping to resume, or pass --overwrite (or another --out) to start over with the new one",
            out.display(),
            stored.mapping.clone().unwrap_or_else(none),
            now.mapping.clone().unwrap_or_else(none)
        );
    }
    if stored.delta != now.delta {
        let with = |delta: bool| {
            if delta {
                "with Delta tables"
            } else {
                "with --no-delta"
            }
        };
        bail!(
            "{} was written {} but this run is {}: run {} to resume it, or pass --overwrite (or another --out) to start over",
            out.display(),
            with(stored.delta),
            with(now.delta),
            with(stored.delta)
        );
    }
    Ok(())
}

/// The settings that differ, one line each, by their settings key and in its units:
/// `window_minutes: 5 (recorded) vs 10 (this run)`.
pub fn settings_diff(stored: &Params, now: &Params) -> Vec<String> {
    let as_map = |params: &Params| match serde_json::to_value(params) {
        Ok(serde_json::Value::Object(map)) => map,
        _ => serde_json::Map::new(),
    };
    let (stored, now) = (as_map(stored), as_map(now));
    let mut lines = Vec::new();
    for (key, old) in &stored {
        let new = now.get(key).cloned().unwrap_or(serde_json::Value::Null);
        if *old == new {
            continue;
        }
        let (name, old) = setting_in_units(key, old);
        let (_, new) = setting_in_units(key, &new);
        lines.push(format!("  {name}: {old} (recorded) vs {new} (this run)"));
    }
    lines
}

/// A resolved setting by its settings key and in that key's units: `*_ms` values in
/// minutes, the period bounds as RFC 3339 times (`none` when unset).
fn setting_in_units(key: &str, value: &serde_json::Value) -> (String, String) {
    if let Some(stem) = key.strip_suffix("_ms") {
        let shown = value
            .as_f64()
            .map_or_else(|| value.to_string(), |ms| format!("{}", ms / 60_000.0));
        return (format!("{stem}_minutes"), shown);
    }
    if let Some(end) = key.strip_prefix("period_") {
        let shown = match value.as_i64() {
            Some(ms) if ms != i64::MIN && ms != i64::MAX => {
                chrono::DateTime::from_timestamp_millis(ms)
                    .map_or_else(|| ms.to_string(), |t| t.to_rfc3339())
            }
            _ => "none".to_string(),
        };
        return (end.to_string(), shown);
    }
    (key.to_string(), value.to_string())
}

/// A decoded log entry: its header, and its payload when asked for.
type Decoded = (WalHeader, Option<Payload>);

/// The first unit of the log file `path` (`<unit>.wal`), if it is one.
fn first_unit(path: &Path) -> Option<u64> {
    path.file_name()?
        .to_str()?
        .strip_suffix(".wal")?
        .parse()
        .ok()
}

/// The error for the damaged log file `path`.
fn damaged(path: &Path, error: wal_entry::EntryError) -> anyhow::Error {
    anyhow!(
        "write-ahead log entry {} is {error}: {START_OVER}",
        path.display()
    )
}

/// The entries of the log file `path` (its `bytes`), not yet checked.
fn split_entries<'a>(path: &Path, bytes: &'a [u8]) -> Result<Vec<&'a [u8]>> {
    wal_entry::entries(bytes).map_err(|e| damaged(path, e))
}

/// Checks and decodes one entry of the log file `path`; the payload is decoded only
/// when `with_payload`.
fn decode_entry(path: &Path, entry: &[u8], with_payload: bool) -> Result<Decoded> {
    wal_entry::decode(entry, with_payload).map_err(|e| damaged(path, e))
}

/// Writes `bytes` to `path` durably: a temporary file, fsync, rename, fsync the directory.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    write_parts_atomically(path, &[bytes])
}

/// Writes `parts`, one after the other, to `path` durably, as [`write_atomically`]
/// does: no buffer of them all is made.
pub fn write_parts_atomically(path: &Path, parts: &[&[u8]]) -> Result<()> {
    let dir = path.parent().context("a checkpoint file has a directory")?;
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("entry");
    let tmp = dir.join(format!(".{name}.tmp"));
    let mut file = File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    for bytes in parts {
        file.write_all(bytes)
            .with_context(|| format!("writing {}", tmp.display()))?;
    }
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

/// The bytes of a dataset file and their xxh3-64, read before the file is parsed from
/// them and logged with [`Checkpoint::log_inline`]; `None` when the file cannot be opened
/// (gone since it was listed: the reader then quarantines it). A failure part-way
/// through is an error.
pub fn read_source(source: &Path) -> Result<Option<(Bytes, u64)>> {
    let Ok(file) = File::open(source) else {
        return Ok(None);
    };
    let mut bytes = Vec::with_capacity(file.metadata().map_or(0, |m| m.len() as usize));
    let (_, hash) = read_hashed(file, source, |piece| {
        bytes.extend_from_slice(piece);
        Ok(())
    })?;
    Ok(Some((Bytes::from(bytes), hash)))
}

/// xxh3-64 of a file's contents.
pub fn hash_file(path: &Path) -> Result<u64> {
    let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    read_hashed(file, path, |_| Ok(())).map(|(_, hash)| hash)
}

/// Reads `file` (opened from `path`) through in 1 MiB pieces, handing each to `each`;
/// returns its length and xxh3-64.
fn read_hashed(
    mut file: File,
    path: &Path,
    mut each: impl FnMut(&[u8]) -> Result<()>,
) -> Result<(u64, u64)> {
    let mut hasher = xxhash_rust::xxh3::Xxh3::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut len = 0u64;
    loop {
        let n = file
            .read(&mut buf)
            .with_context(|| format!("reading {}", path.display()))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        each(&buf[..n])?;
        len += n as u64;
    }
    Ok((len, hasher.digest()))
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
            unit: time,
            units_in_time: 1,
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

    /// The header of unit `unit`, a dataset file `events.csv`.
    fn file_header(unit: u64) -> WalHeader {
        WalHeader {
            origin: BatchOrigin::File {
                rel: "events.csv".into(),
                size: 0,
                mtime_ns: 0,
                hash: 0,
            },
            ..header(unit)
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
        match checkpoint.read_logged(1).unwrap().1 {
            Logged::Batch(logged) => assert_eq!(logged, batch),
            other => panic!("logged as a batch, read back as {other:?}"),
        }
        assert!(!checkpoint.wal_file(3).exists());
    }

    #[test]
    fn a_worker_s_block_of_units_is_one_file_and_reads_back_by_unit() {
        let dir = tempfile::tempdir().unwrap();
        let (checkpoint, _) = Checkpoint::open(dir.path(), &identity(2)).unwrap();
        let batch = |rows: u64| FileBatch {
            rows_read: rows,
            ..FileBatch::default()
        };
        let entry = |time: u64, unit: u64, units_in_time: u64| {
            let header = WalHeader {
                unit,
                units_in_time,
                arrival: unit,
                ..header(time)
            };
            wal_entry::encode_batch(&header, &batch(unit)).unwrap()
        };
        // Time 0 has four units: two workers log two each, a file apiece.
        checkpoint
            .log_entries(0, &[&entry(0, 0, 4), &entry(0, 1, 4)])
            .unwrap();
        checkpoint
            .log_entries(2, &[&entry(0, 2, 4), &entry(0, 3, 4)])
            .unwrap();
        // Time 1 has two units; one worker's file was written before a crash.
        checkpoint.log_entries(4, &[&entry(1, 4, 2)]).unwrap();
        let (checkpoint, recovered) = Checkpoint::open(dir.path(), &identity(2)).unwrap();
        let units: Vec<u64> = recovered.entries.iter().map(|h| h.unit).collect();
        assert_eq!(units, [0, 1, 2, 3]);
        assert!(!checkpoint.wal_file(4).exists());
        assert_eq!(std::fs::read_dir(checkpoint.wal_dir()).unwrap().count(), 2);
        for unit in 0..4 {
            match checkpoint.read_logged(unit).unwrap() {
                (header, Logged::Batch(logged)) => {
                    assert_eq!((header.unit, logged.rows_read), (unit, unit))
                }
                other => panic!("logged as a batch, read back as {other:?}"),
            }
        }
        assert!(checkpoint.read_header(4).unwrap().is_none());
        assert!(checkpoint.read_logged(4).is_err());
        // Another process's handle (`tidemark serve`) finds a unit by listing the files.
        let header = Checkpoint::at(dir.path()).read_header(3).unwrap();
        assert_eq!(header.map(|h| h.unit), Some(3));
        // A file whose entries are not the consecutive units of its name is damage.
        let path = checkpoint.wal_file(0);
        std::fs::write(&path, [entry(0, 0, 4), entry(0, 2, 4)].concat()).unwrap();
        let error = Checkpoint::open(dir.path(), &identity(2)).unwrap_err();
        assert!(error.to_string().contains("start over"), "{error}");
        let error = checkpoint.read_logged(1).unwrap_err().to_string();
        assert!(
            error.contains("holds unit 2 where unit 1 belongs") && error.contains("start over"),
            "{error}"
        );
    }

    #[test]
    fn a_file_logged_inline_reads_back_as_its_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let source = dir.path().join("events.csv");
        std::fs::write(&source, "event_id,user_id\ne1,u1\n").unwrap();
        let out = dir.path().join("out");
        let (checkpoint, _) = Checkpoint::open(&out, &identity(1)).unwrap();
        let header = file_header(0);
        let (bytes, hash) = read_source(&source).unwrap().unwrap();
        assert_eq!(bytes, std::fs::read(&source).unwrap());
        assert_eq!(hash, hash_file(&source).unwrap());
        assert!(read_source(&dir.path().join("gone.csv")).unwrap().is_none());
        let copy = SourceCopy {
            len: bytes.len() as u64,
            hash,
            tables: vec![tidemark_inputs::Table::Events],
            far_ahead: None,
        };
        checkpoint.log_inline(&header, &copy, &bytes).unwrap();
        let (checkpoint, recovered) = Checkpoint::open(&out, &identity(1)).unwrap();
        assert_eq!(recovered.entries, vec![header]);
        // One file: the entry, with the bytes inside.
        assert_eq!(std::fs::read_dir(checkpoint.wal_dir()).unwrap().count(), 1);
        match checkpoint.read_logged(0).unwrap().1 {
            Logged::Inline {
                copy: logged,
                bytes: read,
            } => assert_eq!((logged, read), (copy, bytes)),
            other => panic!("logged inline, read back as {other:?}"),
        }
        // A damaged entry is an error naming it, never a silent replay.
        let path = checkpoint.wal_file(0);
        let mut damaged = std::fs::read(&path).unwrap();
        let last = damaged.len() - 10;
        damaged[last] ^= 1;
        std::fs::write(&path, damaged).unwrap();
        let error = checkpoint.read_logged(0).unwrap_err().to_string();
        assert!(
            error.contains("0000000000.wal") && error.contains("start over"),
            "{error}"
        );
    }

    /// Logs of earlier versions kept a file's copy beside its entry: still read.
    #[test]
    fn a_logged_file_copy_reads_back_checked_and_orphan_copies_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let source = dir.path().join("events.csv");
        std::fs::write(&source, "event_id,user_id\ne1,u1\n").unwrap();
        let out = dir.path().join("out");
        let (checkpoint, _) = Checkpoint::open(&out, &identity(1)).unwrap();
        // What earlier versions wrote: the copy, then the entry naming it.
        let path = checkpoint.copy_file(0);
        std::fs::copy(&source, &path).unwrap();
        let copy = SourceCopy {
            len: std::fs::metadata(&source).unwrap().len(),
            hash: hash_file(&source).unwrap(),
            tables: vec![tidemark_inputs::Table::Events],
            far_ahead: None,
        };
        let entry = wal_entry::encode_copy(&file_header(0), &copy).unwrap();
        write_atomically(&checkpoint.wal_file(0), &entry).unwrap();
        // A crash after the copy of unit 1, before its entry: the copy is an orphan.
        std::fs::copy(&source, checkpoint.copy_file(1)).unwrap();
        let (checkpoint, recovered) = Checkpoint::open(&out, &identity(1)).unwrap();
        assert_eq!(recovered.entries.len(), 1);
        assert!(!checkpoint.copy_file(1).exists());
        match checkpoint.read_logged(0).unwrap().1 {
            Logged::Copy {
                path: read,
                copy: logged,
            } => {
                assert_eq!((read, logged), (path.clone(), copy));
            }
            other => panic!("logged as a copy, read back as {other:?}"),
        }
        // A damaged copy is an error naming it and the file, never a silent replay.
        std::fs::write(&path, "event_id,user_id\ne1,u2\n").unwrap();
        let error = checkpoint.read_logged(0).unwrap_err().to_string();
        assert!(
            error.contains("0000000000.src")
                && error.contains("events.csv")
                && error.contains("start over"),
            "{error}"
        );
        std::fs::remove_file(&path).unwrap();
        assert!(checkpoint.read_logged(0).is_err());
    }

    #[test]
    fn a_time_is_replayed_only_when_all_its_units_were_logged() {
        let dir = tempfile::tempdir().unwrap();
        let (checkpoint, _) = Checkpoint::open(dir.path(), &identity(1)).unwrap();
        let unit = |time, unit, units_in_time| WalHeader {
            unit,
            units_in_time,
            arrival: unit,
            ..header(time)
        };
        let batch = FileBatch::default();
        // Time 0 has units 0 and 1, time 1 has units 2..5 of which 4 is missing.
        for header in [unit(0, 0, 2), unit(0, 1, 2), unit(1, 2, 3), unit(1, 3, 3)] {
            checkpoint.log_batch(&header, &batch).unwrap();
        }
        let (checkpoint, recovered) = Checkpoint::open(dir.path(), &identity(1)).unwrap();
        assert_eq!(recovered.next_time(), 1);
        assert_eq!(recovered.next_unit(), 2);
        assert_eq!(recovered.times(), vec![(0, 0, 2)]);
        assert!(!checkpoint.wal_file(2).exists() && !checkpoint.wal_file(3).exists());
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
