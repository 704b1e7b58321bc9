//! What every reader target checks: a file is written into a one-file dataset, read
//! the way a run reads it, and the result must keep the contract's promises for bad
//! input (`../shared/CONTRACT.md` "Bad input").

use std::io::Write;
use std::path::PathBuf;

use tidemark_inputs::dataset::Dataset;
use tidemark_inputs::records::FileBatch;
use tidemark_inputs::time::in_range;

/// The text a reader panic leaves in its file's quarantine row.
const PANICKED: &str = "the reader panicked on this file";

/// A dataset directory reused by every input of one fuzzing process.
pub struct Scratch {
    dir: tempfile::TempDir,
}

impl Default for Scratch {
    fn default() -> Self {
        Scratch {
            dir: tempfile::tempdir().expect("a temporary directory"),
        }
    }
}

impl Scratch {
    /// Writes `bytes` as `events/<name>` (gzipped first when `gzip`), alone in the
    /// dataset, and reads it.
    pub fn read(&self, name: &str, bytes: &[u8], gzip: bool) -> FileBatch {
        let events = self.dir.path().join("events");
        let _ = std::fs::remove_dir_all(&events);
        std::fs::create_dir_all(&events).expect("events/");
        let path: PathBuf = events.join(name);
        let content = if gzip {
            let mut encoder =
                flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            encoder.write_all(bytes).expect("gzip in memory");
            encoder.finish().expect("gzip in memory")
        } else {
            bytes.to_vec()
        };
        std::fs::write(&path, content).expect("writing the input");
        let dataset = Dataset::open(self.dir.path(), None).expect("opening the dataset");
        let files = dataset.discover().expect("listing the dataset");
        assert_eq!(files.len(), 1, "the one input file is found");
        dataset.read(&files[0])
    }
}

thread_local! {
    static SCRATCH: Scratch = Scratch::default();
}

/// The body of the text readers' targets: the first byte's low bit says whether the
/// rest is gzipped; the rest is an `events/x.<extension>` file that must keep every
/// promise of [`check`], with no panic.
pub fn text_target(data: &[u8], extension: &str) {
    let Some((flags, bytes)) = data.split_first() else {
        return;
    };
    let gzip = flags & 1 == 1;
    let name = if gzip {
        format!("x.{extension}.gz")
    } else {
        format!("x.{extension}")
    };
    let batch = SCRATCH.with(|s| s.read(&name, bytes, gzip));
    check(&batch, false);
}

/// The promises: every row is accepted or quarantined (never both, never twice), the
/// accepted values are in range, and (unless `panics_allowed`, for third-party
/// decoders) no reader code panicked.
pub fn check(batch: &FileBatch, panics_allowed: bool) {
    assert_eq!(batch.events.len(), batch.event_rows.len());
    assert!(
        batch.event_rows.windows(2).all(|w| w[0] < w[1]),
        "accepted rows are in file order, each once"
    );
    for row in &batch.quarantine {
        assert!(!row.reason.is_empty(), "a quarantine row has a reason");
        assert!(
            row.row == 0
                || row.reason == "too_many_bad_rows"
                || batch.event_rows.binary_search(&row.row).is_err(),
            "row {} is both accepted and quarantined ({})",
            row.row,
            row.reason
        );
        if !panics_allowed {
            let panicked = row.reason == "unreadable_file" && row.raw.ends_with(PANICKED);
            assert!(!panicked, "a reader panicked: {row:?}");
        }
    }
    let mut quarantined: Vec<u64> = batch
        .quarantine
        .iter()
        .filter(|r| r.row > 0 && r.reason != "too_many_bad_rows" && r.reason != "unreadable_file")
        .map(|r| r.row)
        .collect();
    quarantined.sort_unstable();
    assert!(
        quarantined.windows(2).all(|w| w[0] < w[1]),
        "a row is quarantined once: {quarantined:?}"
    );
    for event in &batch.events {
        assert!(in_range(event.ts), "accepted ts {} out of range", event.ts);
        assert!(!event.event_id.is_empty() && !event.user_id.trim().is_empty());
        assert!(!event.event_type.is_empty());
        assert_eq!(event.event_type, event.event_type.trim().to_lowercase());
        if let Some(d) = event.duration_ms {
            assert!((0..=7_200_000).contains(&d), "accepted duration {d}");
        }
    }
}
