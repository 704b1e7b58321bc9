//! Any text as a mapping file: parsed or refused with an error, never a panic, and a
//! parsed mapping has a stable fingerprint.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tidemark_inputs::mapping::Mapping;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(mapping) = Mapping::parse(text, "fuzz.toml") {
        assert_eq!(mapping.fingerprint(), mapping.fingerprint());
    }
});
