//! A clean stop on SIGINT or SIGTERM: the signal only raises a flag; the run then
//! finishes the logical time in progress, lets every sink write it, records it in the
//! checkpoint and exits.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::{Context, Result};

/// Raised when the process is asked to stop.
#[derive(Clone, Debug, Default)]
pub struct StopFlag(Arc<AtomicBool>);

impl StopFlag {
    /// A flag that SIGINT and SIGTERM raise. A second signal while stopping ends the
    /// process at once with status 130 (the checkpoint still makes the next run resume correctly).
    pub fn on_signals() -> Result<StopFlag> {
        let flag = StopFlag::default();
        for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
            signal_hook::flag::register_conditional_shutdown(signal, 130, Arc::clone(&flag.0))
                .context("installing a signal handler")?;
            signal_hook::flag::register(signal, Arc::clone(&flag.0))
                .context("installing a signal handler")?;
        }
        Ok(flag)
    }

    /// Whether a stop was asked for.
    pub fn raised(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }

    /// Asks for a stop (as a signal would).
    pub fn raise(&self) {
        self.0.store(true, Ordering::Relaxed);
    }
}
