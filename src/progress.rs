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
    /// A bar for `total` files.
    pub fn files(total: u64) -> Progress {
        let bar = ProgressBar::new(total);
        bar.set_style(
            ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} files  {msg}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        Progress {
            bar,
            started: Instant::now(),
        }
    }

    /// Shows `files_done` complete logical times and the event read rate.
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
