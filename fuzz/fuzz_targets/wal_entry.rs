//! Damaged write-ahead-log entries: any bytes are read back as an entry or refused
//! with a reason, never a panic. The input is tried twice: as a whole entry, and as the
//! body of one whose checksum is correct, so that the decoder behind the checksum is
//! reached too. An entry that decodes encodes again to one that decodes the same.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tidemark_inputs::wal_entry::{decode, encode, MAGIC};

fuzz_target!(|data: &[u8]| {
    let _ = decode(data, true);
    let mut entry = MAGIC.to_vec();
    entry.extend_from_slice(data);
    let checksum = xxhash_rust::xxh3::xxh3_64(&entry);
    entry.extend_from_slice(&checksum.to_le_bytes());
    if let Ok((header, Some(payload))) = decode(&entry, true) {
        let again = encode(&header, &payload).expect("a decoded entry encodes");
        let (header2, payload2) = decode(&again, true).expect("an encoded entry decodes");
        assert_eq!(header2, header);
        assert_eq!(payload2.as_ref(), Some(&payload));
    }
});
