//! Which dataset files a run has ingested, at which logical time and with which
//! content, and how a file found in the dataset compares: new, unchanged, or changed
//! since it was ingested (contract: a file, once fully written, never changes).

use std::collections::HashMap;

use anyhow::{bail, Result};
use tidemark_inputs::dataset::SourceFile;

use crate::runtime::checkpoint::{file_stamp, hash_file, BatchOrigin, WalHeader};

/// What is known of one ingested file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IngestedFile {
    /// The input unit (in arrival order) that ingested it (the latest, if re-ingested).
    pub unit: u64,
    /// Size in bytes.
    pub size: u64,
    /// Modification time (ns since the epoch).
    pub mtime_ns: u128,
    /// xxh3-64 of its bytes.
    pub hash: u64,
}

/// How a file found in the dataset compares with what was ingested.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FileState {
    /// Never ingested.
    New,
    /// Ingested with the same content.
    Unchanged,
    /// Ingested as `unit` with other content.
    Changed {
        /// The input unit that holds the old content.
        unit: u64,
    },
}

/// A file about to be ingested, with its identity when it was looked at.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FileTask {
    /// The file.
    pub file: SourceFile,
    /// Size in bytes.
    pub size: u64,
    /// Modification time (ns since the epoch).
    pub mtime_ns: u128,
    /// xxh3-64 of its bytes.
    pub hash: u64,
    /// The input unit of the old content to retract first (a changed file).
    pub retracts: Option<u64>,
}

impl FileTask {
    /// Looks at `file` now: size, mtime and content hash.
    pub fn look(file: &SourceFile, retracts: Option<u64>) -> Result<FileTask> {
        let (size, mtime_ns) = file_stamp(&file.path)?;
        let hash = hash_file(&file.path)?;
        Ok(FileTask {
            file: file.clone(),
            size,
            mtime_ns,
            hash,
            retracts,
        })
    }
}

/// Every file ingested so far, by relative path.
#[derive(Clone, Debug, Default)]
pub struct IngestedFiles {
    by_rel: HashMap<String, IngestedFile>,
}

impl IngestedFiles {
    /// The files named by a write-ahead log (later entries win).
    pub fn from_log(entries: &[WalHeader]) -> IngestedFiles {
        let mut files = IngestedFiles::default();
        for entry in entries {
            if let BatchOrigin::File {
                rel,
                size,
                mtime_ns,
                hash,
            } = &entry.origin
            {
                files.by_rel.insert(
                    rel.clone(),
                    IngestedFile {
                        unit: entry.unit,
                        size: *size,
                        mtime_ns: *mtime_ns,
                        hash: *hash,
                    },
                );
            }
        }
        files
    }

    /// Records that `task` is ingested as `unit`.
    pub fn record(&mut self, task: &FileTask, unit: u64) {
        self.by_rel.insert(
            task.file.rel.clone(),
            IngestedFile {
                unit,
                size: task.size,
                mtime_ns: task.mtime_ns,
                hash: task.hash,
            },
        );
    }

    /// Whether `rel` was ingested.
    pub fn contains(&self, rel: &str) -> bool {
        self.by_rel.contains_key(rel)
    }

    /// Number of distinct files ingested.
    pub fn len(&self) -> usize {
        self.by_rel.len()
    }

    /// Whether no file was ingested.
    pub fn is_empty(&self) -> bool {
        self.by_rel.is_empty()
    }

    /// Compares `file` as it is now with what was ingested. Size and mtime decide
    /// quickly; when they differ the content hash decides (a `touch` changes nothing).
    pub fn state(&mut self, file: &SourceFile) -> Result<FileState> {
        let Some(known) = self.by_rel.get_mut(&file.rel) else {
            return Ok(FileState::New);
        };
        let (size, mtime_ns) = file_stamp(&file.path)?;
        if (size, mtime_ns) == (known.size, known.mtime_ns) {
            return Ok(FileState::Unchanged);
        }
        if size == known.size && hash_file(&file.path)? == known.hash {
            known.mtime_ns = mtime_ns;
            return Ok(FileState::Unchanged);
        }
        Ok(FileState::Changed { unit: known.unit })
    }

    /// The tasks for `files` that need ingesting: new files, and changed ones when
    /// `reingest_changed` (else a changed file is an error naming it).
    pub fn tasks(&mut self, files: &[SourceFile], reingest_changed: bool) -> Result<Vec<FileTask>> {
        let mut tasks = Vec::new();
        for file in files {
            match self.state(file)? {
                FileState::Unchanged => {}
                FileState::New => tasks.push(FileTask::look(file, None)?),
                FileState::Changed { unit } if reingest_changed => {
                    tasks.push(FileTask::look(file, Some(unit))?)
                }
                FileState::Changed { unit } => bail!(changed_error(&file.rel, unit)),
            }
        }
        Ok(tasks)
    }
}

/// The error for a file that changed after it was ingested.
pub fn changed_error(rel: &str, unit: u64) -> String {
    format!(
        "input file {rel} changed after it was ingested (as input unit {unit}); input files must never change once written. \
         Restore the original file, or run with --reingest-changed to retract its old rows and ingest the new content"
    )
}
