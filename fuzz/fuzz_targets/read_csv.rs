//! Any bytes as an `events/` csv file, plain or gzipped (first byte's low bit).
#![no_main]

use libfuzzer_sys::fuzz_target;
use tidemark_fuzz::{check, Scratch};

thread_local! {
    static SCRATCH: Scratch = Scratch::default();
}

fuzz_target!(|data: &[u8]| {
    let Some((flags, bytes)) = data.split_first() else {
        return;
    };
    let gzip = flags & 1 == 1;
    let name = if gzip { "x.csv.gz" } else { "x.csv" };
    let batch = SCRATCH.with(|s| s.read(name, bytes, gzip));
    check(&batch, false);
});
