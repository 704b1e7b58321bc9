//! Opening text inputs (plain or gzip) and telling binary junk from text.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::Path;

use flate2::read::MultiGzDecoder;

/// Buffer size of text readers.
const BUFFER: usize = 1 << 16;

/// Opens a text file, decompressing gzip (all members) when `gzip`, and checks that
/// its first bytes look like text. Errors are messages for an `unreadable_file` row.
pub(crate) fn open(path: &Path, gzip: bool) -> Result<Box<dyn BufRead>, String> {
    let file = File::open(path).map_err(|e| format!("cannot open: {e}"))?;
    let mut reader: Box<dyn BufRead> = if gzip {
        Box::new(BufReader::with_capacity(BUFFER, MultiGzDecoder::new(file)))
    } else {
        Box::new(BufReader::with_capacity(BUFFER, file))
    };
    let head = reader.fill_buf().map_err(|e| {
        if gzip {
            format!("invalid gzip: {e}")
        } else {
            format!("read error: {e}")
        }
    })?;
    if looks_binary(head) {
        return Err("binary content in a text file (NUL or control bytes)".to_string());
    }
    Ok(reader)
}

/// True when a text file's first bytes hold a NUL byte or mostly control bytes.
pub(crate) fn looks_binary(head: &[u8]) -> bool {
    if head.contains(&0) {
        return true;
    }
    let control = head
        .iter()
        .filter(|&&b| b < 0x20 && !matches!(b, b'\t' | b'\n' | b'\r' | 0x0c))
        .count();
    control * 10 > head.len()
}

/// Strips a UTF-8 byte order mark.
pub(crate) fn strip_bom(bytes: &[u8]) -> &[u8] {
    bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes)
}
