//! Progress display for long runs: files done and events per second, drawn only on a
//! terminal (indicatif hides itself when stderr is not one).

use std::time::Instant;

use indicatif::{ProgressBar, ProgressStyle};

/// A progress bar over a run's input files.
pub struct Progress {
    bar: ProgressBar,
    started: Instant,
}

impl Progress {
    /// A bar for `total` batches (logical times).
    pub fn files(total: u64) -> Progress {
        let bar = ProgressBar::new(total);
        bar.set_style(
            ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} batches (ETA {eta})  {msg}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        Progress {
            bar,
            started: Instant::now(),
        }
    }

    /// Shows `files_done` complete logical times (batches) and the event read rate.
    pub fn update(&self, files_done: u64, events_read: u64) {
        let seconds = self.started.elapsed().as_secs_f64().max(1e-3);
        self.bar.set_position(files_done);
        self.bar.set_message(format!(
            "{events_read} events read, {:.0} events/s",
            events_read as f64 / seconds
        ));
    }

    /// Clears the bar.
    pub fn finish(self) {
        self.bar.finish_and_clear();
    }
}

/// Progress lines on stderr while a run follows live input: batches and events per
/// second, the current watermark and the last completed logical time.
pub struct FollowProgress {
    label: &'static str,
    allowed_lateness_ms: i64,
    last_print: Instant,
    last_batches: u64,
    last_events: u64,
}

/// How often a progress line is printed.
const FOLLOW_INTERVAL: std::time::Duration = std::time::Duration::from_secs(2);

impl FollowProgress {
    /// A reporter for a run with this allowed lateness.
    /// `label` starts each line (`following`, `running`).
    pub fn new(label: &'static str, allowed_lateness_ms: i64) -> FollowProgress {
        FollowProgress {
            label,
            allowed_lateness_ms,
            last_print: Instant::now(),
            last_batches: 0,
            last_events: 0,
        }
    }

    /// Prints a line if one is due: `batches` fed and `events` read by this run,
    /// `files` ingested in all, the largest event time seen and the completed time.
    pub fn update(
        &mut self,
        batches: u64,
        files: usize,
        events: u64,
        max_ts: Option<i64>,
        completed: Option<u64>,
    ) {
        let elapsed = self.last_print.elapsed();
        if elapsed < FOLLOW_INTERVAL {
            return;
        }
        let seconds = elapsed.as_secs_f64();
        let watermark = max_ts
            .and_then(|ts| chrono::DateTime::from_timestamp_millis(ts - self.allowed_lateness_ms))
            .map_or("none".to_string(), |t| {
                t.format("%Y-%m-%dT%H:%M:%SZ").to_string()
            });
        let completed = completed.map_or("none".to_string(), |t| t.to_string());
        eprintln!(
            "{}: {batches} batches ({:.1}/s), {files} files in all, {events} events ({:.0}/s), watermark {watermark}, last completed time {completed}",
            self.label,
            (batches - self.last_batches) as f64 / seconds,
            (events - self.last_events) as f64 / seconds,
        );
        self.last_print = Instant::now();
        self.last_batches = batches;
        self.last_events = events;
    }

    /// Prints the final line.
    pub fn finish(self, completed: Option<u64>) {
        match completed {
            Some(time) => eprintln!(
                "done: {} batch(es) complete, every table written through logical time {time}",
                time + 1
            ),
            None => eprintln!("done: no batch was completed"),
        }
    }
}
