//! Any bytes as an `events/` ndjson file, plain or gzipped (first byte's low bit).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| tidemark_fuzz::text_target(data, "ndjson"));
