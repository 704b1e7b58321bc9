//! The change-stream manifest: every change file a sink wrote, with its size and
//! content hash, one list per table and worker under `OUT/_checkpoint/changes/`.
//!
//! A resumed run checks its change files against it before writing anything: a file
//! that is missing, truncated or altered, or a stray file the list does not name, would
//! otherwise make the diffs of a table sum to a wrong answer with exit code 0. The
//! repair is exact because every logical time is in the write-ahead log: the damaged
//! time and all later ones are written again from the replay, byte for byte as before.
//! A manifest line is appended after its file is renamed into place, and the
//! checkpoint flushes the file system before it records a time as completed, so every
//! file of a completed time has its line.

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::runtime::checkpoint::CHECKPOINT_DIR;

/// One written change file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Written {
    /// The logical time it holds.
    pub time: u64,
    /// Its size in bytes.
    pub size: u64,
    /// `xxh3_64` of its bytes.
    pub hash: u64,
}

/// The manifest of one table's change files, kept by the worker that writes them.
pub fn manifest_file(out: &Path, table: &str, worker: usize) -> PathBuf {
    out.join(CHECKPOINT_DIR)
        .join("changes")
        .join(table)
        .join(format!("w{worker:04}.manifest"))
}

/// Appends one written file to the manifest (no fsync: see the module comment).
pub fn record(out: &Path, table: &str, worker: usize, file: &str, written: &Written) -> Result<()> {
    let path = manifest_file(out, table, worker);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let mut manifest = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .with_context(|| format!("opening {}", path.display()))?;
    writeln!(
        manifest,
        "{} {file} {} {:016x}",
        written.time, written.size, written.hash
    )
    .with_context(|| format!("writing {}", path.display()))
}

/// The files a manifest lists, by file name (a later line for the same name wins: a
/// time written again after a crash). A torn last line, from a crash mid-append, is
/// ignored: its file then counts as unlisted, which a check repairs.
fn read_manifest(path: &Path) -> Result<BTreeMap<String, Written>> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeMap::new()),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let mut files = BTreeMap::new();
    for line in text.lines() {
        let fields: Vec<&str> = line.split(' ').collect();
        let [time, file, size, hash] = fields[..] else {
            continue;
        };
        let (Ok(time), Ok(size), Ok(hash)) =
            (time.parse(), size.parse(), u64::from_str_radix(hash, 16))
        else {
            continue;
        };
        files.insert(file.to_string(), Written { time, size, hash });
    }
    Ok(files)
}

/// The logical time and worker a change file's name gives (`part-TTTTTTTTTT-wWWWW.parquet`).
pub fn parse_change_file(name: &str) -> Option<(u64, usize)> {
    let rest = name.strip_prefix("part-")?.strip_suffix(".parquet")?;
    let (time, worker) = rest.split_once("-w")?;
    Some((time.parse().ok()?, worker.parse().ok()?))
}

/// What a check found and did for one table and worker.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Check {
    /// The first logical time whose change files must be written again, if any.
    pub rewrite_from: Option<u64>,
    /// Listed files of completed times that are missing.
    pub missing: usize,
    /// Listed files of completed times whose size or content differ.
    pub damaged: usize,
    /// Files of completed times the manifest does not list (removed).
    pub strays: usize,
}

impl Check {
    fn note(&mut self, time: u64) {
        self.rewrite_from = Some(self.rewrite_from.map_or(time, |t| t.min(time)));
    }
}

/// Checks the change files of `table` in `dir` against the manifest of `writer`, the
/// one worker that writes them, for the logical times up to `completed`, and prepares
/// the repair: removes unlisted and damaged files and the files of times after
/// `completed` (a resumed run writes those again in any case), and files whose name is
/// no change file of `writer` (they would add to the table's sums).
pub fn check(
    out: &Path,
    dir: &Path,
    table: &str,
    writer: usize,
    completed: Option<u64>,
) -> Result<Check> {
    let listed = read_manifest(&manifest_file(out, table, writer))?;
    let mut check = Check::default();
    let mut seen = std::collections::BTreeSet::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries.collect::<std::io::Result<Vec<_>>>()?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(e).with_context(|| format!("listing {}", dir.display())),
    };
    let remove = |path: &Path| {
        std::fs::remove_file(path).with_context(|| format!("removing {}", path.display()))
    };
    for entry in entries {
        let path = entry.path();
        let Some(name) = path
            .file_name()
            .and_then(|n| n.to_str())
            .map(str::to_string)
        else {
            continue;
        };
        if name.starts_with('.') || !name.ends_with(".parquet") {
            continue;
        }
        let parsed = parse_change_file(&name).filter(|(_, owner)| *owner == writer);
        let Some((time, _)) = parsed else {
            tracing::warn!(
                "removing {}: not a change file tidemark wrote",
                path.display()
            );
            remove(&path)?;
            check.strays += 1;
            continue;
        };
        if completed.is_none_or(|done| time > done) {
            remove(&path)?;
            continue;
        }
        seen.insert(name.clone());
        let Some(written) = listed.get(&name) else {
            remove(&path)?;
            check.strays += 1;
            check.note(time);
            continue;
        };
        let bytes = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
        if bytes.len() as u64 != written.size
            || xxhash_rust::xxh3::xxh3_64(&bytes) != written.hash
            || written.time != time
        {
            remove(&path)?;
            check.damaged += 1;
            check.note(time);
        }
    }
    for (name, written) in &listed {
        if completed.is_some_and(|done| written.time <= done) && !seen.contains(name) {
            check.missing += 1;
            check.note(written.time);
        }
    }
    Ok(check)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn change_file_names_give_time_and_worker() {
        assert_eq!(
            parse_change_file("part-0000000012-w0003.parquet"),
            Some((12, 3))
        );
        assert_eq!(parse_change_file("part-12.parquet"), None);
        assert_eq!(parse_change_file("copy.parquet"), None);
    }

    #[test]
    fn a_check_finds_missing_damaged_and_stray_files_and_the_first_time_to_rewrite() {
        let out = tempfile::tempdir().unwrap();
        let dir = out.path().join("changes/t");
        std::fs::create_dir_all(&dir).unwrap();
        let write = |time: u64, bytes: &[u8]| {
            let name = format!("part-{time:010}-w0000.parquet");
            std::fs::write(dir.join(&name), bytes).unwrap();
            let written = Written {
                time,
                size: bytes.len() as u64,
                hash: xxhash_rust::xxh3::xxh3_64(bytes),
            };
            record(out.path(), "t", 0, &name, &written).unwrap();
        };
        for time in 0..6 {
            write(time, format!("changes of {time}").as_bytes());
        }
        let dir = out.path().join("changes/t");
        let file = |time: u64| dir.join(format!("part-{time:010}-w0000.parquet"));
        // Intact up to time 5: nothing to do.
        let clean = check(out.path(), &dir, "t", 0, Some(5)).unwrap();
        assert_eq!(clean, Check::default());
        // Time 4 truncated, time 3 removed, a stray copy at time 2, one file of a time
        // after the completed one.
        std::fs::write(file(4), b"chan").unwrap();
        std::fs::remove_file(file(3)).unwrap();
        std::fs::copy(file(1), dir.join("part-0000000002-w0000.parquet.copy")).unwrap();
        std::fs::copy(file(1), dir.join("part-0000000002-w0001.parquet")).unwrap();
        std::fs::copy(file(1), dir.join("other.parquet")).unwrap();
        std::fs::copy(file(1), dir.join("part-0000000001-w0009.parquet")).unwrap();
        let found = check(out.path(), &dir, "t", 0, Some(4)).unwrap();
        assert_eq!(
            found,
            Check {
                rewrite_from: Some(3),
                missing: 1,
                damaged: 1,
                strays: 3,
            }
        );
        assert!(
            !file(4).exists() && !file(5).exists(),
            "damaged and uncompleted removed"
        );
        assert!(file(2).exists() && !dir.join("other.parquet").exists());
        // Files naming another worker are strays: only the writer writes the table.
        assert!(!dir.join("part-0000000002-w0001.parquet").exists());
        assert!(!dir.join("part-0000000001-w0009.parquet").exists());
        // The copy with another suffix is no Parquet file: left alone.
        assert!(dir.join("part-0000000002-w0000.parquet.copy").exists());
    }
}
