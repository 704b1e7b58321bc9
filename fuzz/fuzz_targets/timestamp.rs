//! Any text as a timestamp, with every epoch unit and as a strftime format: parsed or
//! refused, never a panic or an overflow.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tidemark_inputs::timestamp::{parse_event_time, parse_instant, parse_with_format, EpochUnit};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = parse_instant(text);
    for unit in ["s", "ms", "us", "ns"] {
        if let Some(unit) = EpochUnit::parse(unit) {
            let _ = parse_event_time(text, unit);
            if let Ok(value) = text.trim().parse::<i64>() {
                let _ = unit.to_millis(value);
            }
        }
    }
    if let Some((value, format)) = text.split_once('|') {
        let _ = parse_with_format(value, format);
    }
});
