//! Any bytes as an `events/` Parquet file. Panics inside arrow and parquet on a
//! damaged file are allowed: the reader catches them and quarantines the file whole,
//! so this target lets them unwind to that catch instead of aborting at the panic
//! (libFuzzer's hook). Every other promise holds, and a panic that escapes the reader
//! still aborts.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tidemark_fuzz::{check, Scratch};

thread_local! {
    static SCRATCH: Scratch = Scratch::default();
}

static QUIET_PANICS: std::sync::Once = std::sync::Once::new();

fuzz_target!(|data: &[u8]| {
    QUIET_PANICS.call_once(|| std::panic::set_hook(Box::new(|_| {})));
    let batch = SCRATCH.with(|s| s.read("x.parquet", data, false));
    check(&batch, true);
});
