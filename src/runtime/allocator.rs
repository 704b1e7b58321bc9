//! Allocator settings that keep resident memory close to the live heap on long runs.
//!
//! The `tidemark` binary allocates through jemalloc (`tikv-jemallocator`, as Materialize
//! and TiKV do) with [`JEMALLOC_CONF`]: freed pages go back to the system a second
//! after they fall idle, from jemalloc's own background thread. Measured against glibc
//! with the settings below (README "Performance"): the same peak memory at 10M events
//! and 14% less time, because glibc's fixed mmap threshold made every large batch fault
//! in fresh zeroed pages. What follows still applies to glibc's heap, which the C
//! libraries linked in (zstd) and test binaries use.
//!
//! glibc's malloc raises its mmap threshold each time a large block is freed, up to
//! 32 MiB. After that, the large batches that differential's arrangements merge and the
//! Delta sink writes come from the heap arenas instead of their own mappings, and the
//! freed space stays resident as fragmentation. A fixed threshold returns every large
//! block to the system when it is freed: on a 3M-event, 240-day stream (README "Bounded
//! state") peak resident memory fell from 599 to 418 MiB.
//!
//! Small blocks freed by many threads (the Delta commit threads and delta-rs's blocking
//! pool) stay in glibc's per-thread arenas, which glibc shrinks only from their top, so
//! resident memory drifts upwards while the live heap stays flat. A background thread
//! hands the free pages of every arena back with `malloc_trim`: within a second of the
//! workers going idle (a live run between inputs), and at most every
//! [`BUSY_TRIM_INTERVAL`] while they are busy. Trimming every second during a backfill
//! cost a fifth of the run: the workers faulted the returned pages straight back in.

/// jemalloc's options (a NUL-terminated `malloc_conf` string): background purging, dirty
/// pages returned after one second, and no muzzy stage (pages go straight back).
pub const JEMALLOC_CONF: &[u8; 60] =
    b"background_thread:true,dirty_decay_ms:1000,muzzy_decay_ms:0\0";

/// Blocks at least this large get a mapping of their own (glibc's initial threshold).
pub const MMAP_THRESHOLD_BYTES: i32 = 128 * 1024;

/// Fixes glibc's mmap threshold at [`MMAP_THRESHOLD_BYTES`] unless the user set
/// `MALLOC_MMAP_THRESHOLD_` (glibc's own knob), which then wins. No-op elsewhere.
/// Also starts the trimming thread (see [`start_trimming`]).
pub fn limit_fragmentation() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if std::env::var_os("MALLOC_MMAP_THRESHOLD_").is_none() {
        // SAFETY: mallopt only changes malloc's tuning; it is called before any other
        // thread exists, and a rejected value leaves the setting as it was.
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES);
        }
    }
    start_trimming();
}

/// How often free arena pages go back to the system, unless `TIDEMARK_TRIM_MS` says
/// otherwise (0 turns trimming off).
pub const TRIM_INTERVAL_MS: u64 = 1000;

/// While the workers are busy, free pages go back at most this often.
pub const BUSY_TRIM_INTERVAL: std::time::Duration = std::time::Duration::from_secs(30);

/// Counts logical times fed; the trimming thread looks whether it moved.
static ACTIVITY: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Notes that a worker fed input, so the trimming thread waits for a quiet moment.
pub fn note_activity() {
    ACTIVITY.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
}

/// Whether to trim now: after a tick without activity, or when busy for long.
pub fn should_trim(active_since_last_tick: bool, since_last_trim: std::time::Duration) -> bool {
    !active_since_last_tick || since_last_trim >= BUSY_TRIM_INTERVAL
}

/// Starts a thread that looks every [`TRIM_INTERVAL_MS`] (or `TIDEMARK_TRIM_MS`)
/// milliseconds whether to call glibc's `malloc_trim(0)` ([`should_trim`]): it
/// returns the free pages inside every arena, not only at their tops. No-op elsewhere
/// than glibc.
pub fn start_trimming() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let Some(interval) = trim_interval(std::env::var("TIDEMARK_TRIM_MS").ok().as_deref())
        else {
            return;
        };
        // A failure to start the thread only leaves memory untrimmed.
        let _ = std::thread::Builder::new()
            .name("malloc-trim".into())
            .spawn(move || {
                let mut seen = ACTIVITY.load(std::sync::atomic::Ordering::Relaxed);
                let mut last_trim = std::time::Instant::now();
                let mut trimmed_idle = false;
                loop {
                    std::thread::sleep(interval);
                    let now = ACTIVITY.load(std::sync::atomic::Ordering::Relaxed);
                    let active = now != seen;
                    seen = now;
                    // One trim per quiet spell is enough: nothing new was freed since.
                    if !active && trimmed_idle {
                        continue;
                    }
                    if should_trim(active, last_trim.elapsed()) {
                        // SAFETY: malloc_trim only releases free memory; it is thread-safe.
                        unsafe {
                            libc::malloc_trim(0);
                        }
                        last_trim = std::time::Instant::now();
                        trimmed_idle = !active;
                    }
                }
            });
    }
}

/// The trimming interval for a `TIDEMARK_TRIM_MS` value: [`TRIM_INTERVAL_MS`] when unset
/// or not a number, none (no trimming) for 0.
pub fn trim_interval(setting: Option<&str>) -> Option<std::time::Duration> {
    let ms = setting
        .and_then(|value| value.trim().parse::<u64>().ok())
        .unwrap_or(TRIM_INTERVAL_MS);
    (ms > 0).then(|| std::time::Duration::from_millis(ms))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn trim_interval_defaults_parses_and_turns_off_at_zero() {
        let default = Some(Duration::from_millis(TRIM_INTERVAL_MS));
        assert_eq!(trim_interval(None), default);
        assert_eq!(trim_interval(Some("soon")), default);
        assert_eq!(
            trim_interval(Some(" 250 ")),
            Some(Duration::from_millis(250))
        );
        assert_eq!(trim_interval(Some("0")), None);
    }

    #[test]
    fn trims_when_quiet_or_after_a_long_busy_spell() {
        assert!(should_trim(false, Duration::ZERO));
        assert!(!should_trim(true, Duration::from_secs(1)));
        assert!(should_trim(true, BUSY_TRIM_INTERVAL));
    }
}
