//! Following a live dataset directory: list it every poll interval and hand out each
//! file that is new (or changed) once it is complete. Writers are meant to write
//! under a temporary name and rename (the listing ignores `.*`, `_*` and `*.tmp`), so
//! a file that appears is complete; a file written in place is taken once its size and
//! modification time have not changed for the settle time. A file whose modification
//! time is already the settle time old when it is listed (one moved in from elsewhere:
//! `mv` from a staging directory, `cp -p`, `rsync -t`) has not changed for that long:
//! it is taken at that first listing, not after a second one.

use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, Result};
use tidemark_inputs::dataset::{Dataset, SourceFile};

use crate::runtime::checkpoint::file_stamp;
use crate::runtime::ingested::{FileState, IngestedFiles};

/// A file seen in a listing but not yet taken.
#[derive(Clone, Debug)]
struct Candidate {
    stamp: (u64, u128),
    since: Instant,
}

/// Watches a dataset directory for new and changed files.
#[derive(Debug)]
pub struct Watcher {
    poll: Duration,
    settle: Duration,
    last_poll: Option<Instant>,
    candidates: HashMap<String, Candidate>,
}

/// A complete file found by [`Watcher::poll`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Found {
    /// The file.
    pub file: SourceFile,
    /// Whether it is new or changed since it was ingested.
    pub state: FileState,
}

impl Watcher {
    /// A watcher that lists the directory every `poll` and takes a file once it has
    /// been unchanged for `settle`.
    pub fn new(poll: Duration, settle: Duration) -> Watcher {
        Watcher {
            poll,
            settle,
            last_poll: None,
            candidates: HashMap::new(),
        }
    }

    /// Whether a listing is due at `now`.
    pub fn due(&self, now: Instant) -> bool {
        self.last_poll
            .is_none_or(|last| now.duration_since(last) >= self.poll)
    }

    /// Lists the dataset if a listing is due and returns the files, in batch order,
    /// that are new or changed and have settled. A file that vanished is forgotten.
    pub fn poll(
        &mut self,
        dataset: &Dataset,
        ingested: &mut IngestedFiles,
        now: Instant,
    ) -> Result<Vec<Found>> {
        if !self.due(now) {
            return Ok(Vec::new());
        }
        self.last_poll = Some(now);
        let listing = dataset
            .discover()
            .map_err(|e| anyhow!("listing the dataset: {e}"))?;
        let mut found = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for file in listing {
            // A file may vanish between the listing and the look: skip it this time.
            let Ok(state) = ingested.state(&file) else {
                continue;
            };
            if state == FileState::Unchanged {
                continue;
            }
            let Ok(stamp) = file_stamp(&file.path) else {
                continue;
            };
            seen.insert(file.rel.clone());
            let candidate = self
                .candidates
                .entry(file.rel.clone())
                .or_insert(Candidate { stamp, since: now });
            if candidate.stamp != stamp {
                *candidate = Candidate { stamp, since: now };
            }
            if now.duration_since(candidate.since) >= self.settle
                || unchanged_for(stamp.1, SystemTime::now()) >= self.settle
            {
                self.candidates.remove(&file.rel);
                found.push(Found { file, state });
            }
        }
        self.candidates.retain(|rel, _| seen.contains(rel));
        Ok(found)
    }
}

/// How long ago, by the system clock at `now`, a file was last modified (its mtime in
/// ns since the epoch); zero for an mtime in the future or unknown (0).
fn unchanged_for(mtime_ns: u128, now: SystemTime) -> Duration {
    let since_epoch = now.duration_since(UNIX_EPOCH).unwrap_or_default();
    match u64::try_from(mtime_ns) {
        Ok(ns) if ns > 0 => since_epoch.saturating_sub(Duration::from_nanos(ns)),
        _ => Duration::ZERO,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An empty dataset directory with `events/`, nothing ingested, and a watcher that
    /// lists at every call and settles in 30 s.
    fn followed() -> (tempfile::TempDir, Dataset, IngestedFiles, Watcher) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("events")).unwrap();
        let dataset = Dataset::open(dir.path(), None).unwrap();
        let watcher = Watcher::new(Duration::ZERO, Duration::from_secs(30));
        (dir, dataset, IngestedFiles::default(), watcher)
    }

    #[test]
    fn a_new_file_is_taken_once_settled_and_never_again() {
        let (dir, dataset, mut ingested, mut watcher) = followed();
        std::fs::write(dir.path().join("events/a.ndjson"), "{}\n").unwrap();
        std::fs::write(dir.path().join("events/.b.ndjson.tmp"), "{}\n").unwrap();
        let start = Instant::now();
        assert!(
            watcher
                .poll(&dataset, &mut ingested, start)
                .unwrap()
                .is_empty(),
            "not settled yet"
        );
        let found = watcher
            .poll(&dataset, &mut ingested, start + Duration::from_secs(31))
            .unwrap();
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].file.rel, "events/a.ndjson");
        assert_eq!(found[0].state, FileState::New);
        let task = crate::runtime::ingested::FileTask::look(&found[0].file, None).unwrap();
        ingested.record(&task, 0);
        assert!(watcher
            .poll(&dataset, &mut ingested, start + Duration::from_secs(40))
            .unwrap()
            .is_empty());
    }

    /// A file last modified longer ago than the settle time (written, then renamed in)
    /// is taken at the first listing; one modified just now still waits.
    #[test]
    fn a_file_already_unchanged_for_the_settle_time_is_taken_at_once() {
        let (dir, dataset, mut ingested, mut watcher) = followed();
        let old = dir.path().join("events/old.ndjson");
        std::fs::write(&old, "{}\n").unwrap();
        std::fs::File::options()
            .write(true)
            .open(&old)
            .unwrap()
            .set_modified(SystemTime::now() - Duration::from_secs(60))
            .unwrap();
        std::fs::write(dir.path().join("events/new.ndjson"), "{}\n").unwrap();
        let found = watcher
            .poll(&dataset, &mut ingested, Instant::now())
            .unwrap();
        let taken: Vec<&str> = found.iter().map(|f| f.file.rel.as_str()).collect();
        assert_eq!(taken, vec!["events/old.ndjson"]);
    }

    #[test]
    fn the_age_of_an_mtime_is_zero_in_the_future_or_unknown() {
        let now = UNIX_EPOCH + Duration::from_secs(100);
        assert_eq!(unchanged_for(90_000_000_000, now), Duration::from_secs(10));
        assert_eq!(unchanged_for(110_000_000_000, now), Duration::ZERO);
        assert_eq!(unchanged_for(0, now), Duration::ZERO);
    }
}
