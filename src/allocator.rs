//! Allocator settings that keep resident memory close to the live heap on long runs.
//!
//! glibc's malloc raises its mmap threshold each time a large block is freed, up to
//! 32 MiB. After that, the large batches that differential's arrangements merge and the
//! Delta sink writes come from the heap arenas instead of their own mappings, and the
//! freed space stays resident as fragmentation. A fixed threshold returns every large
//! block to the system when it is freed: on a 3M-event, 240-day stream (README "Bounded
//! state") peak resident memory fell from 599 to 418 MiB.

/// Blocks at least this large get a mapping of their own (glibc's initial threshold).
pub const MMAP_THRESHOLD_BYTES: i32 = 128 * 1024;

/// Fixes glibc's mmap threshold at [`MMAP_THRESHOLD_BYTES`] unless the user set
/// `MALLOC_MMAP_THRESHOLD_` (glibc's own knob), which then wins. No-op elsewhere.
pub fn limit_fragmentation() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if std::env::var_os("MALLOC_MMAP_THRESHOLD_").is_none() {
        // SAFETY: mallopt only changes malloc's tuning; it is called before any other
        // thread exists, and a rejected value leaves the setting as it was.
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES);
        }
    }
}
