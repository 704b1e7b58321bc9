//! Opening text inputs (plain or gzip) and telling binary junk from text.

use std::fs::File;
use std::io::{BufRead, BufReader, Cursor, Read};
use std::path::Path;

use bytes::Bytes;
use flate2::read::MultiGzDecoder;

/// Where a reader takes a file's bytes from: the file itself, or a copy of its bytes
/// held in memory (the write-ahead log's copy, parsed exactly as it is logged without
/// writing it out a second time).
#[derive(Clone, Copy, Debug)]
pub enum Content<'a> {
    /// The file at this path.
    Path(&'a Path),
    /// These bytes.
    Bytes(&'a Bytes),
}

/// Buffer size of text readers.
const BUFFER: usize = 1 << 16;

/// Opens a text file, decompressing gzip (all members) when `gzip`, and checks that
/// its first bytes look like text. Errors are messages for an `unreadable_file` row.
pub(crate) fn open(content: Content, gzip: bool) -> Result<Box<dyn BufRead>, String> {
    let mut reader: Box<dyn BufRead> = match content {
        Content::Path(path) => {
            let file = File::open(path).map_err(|e| format!("cannot open: {e}"))?;
            buffered(file, gzip)
        }
        Content::Bytes(bytes) if gzip => buffered(Cursor::new(bytes.clone()), gzip),
        Content::Bytes(bytes) => Box::new(Cursor::new(bytes.clone())),
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

/// A buffered reader of `input`, decompressed when `gzip`.
fn buffered(input: impl Read + 'static, gzip: bool) -> Box<dyn BufRead> {
    if gzip {
        Box::new(BufReader::with_capacity(BUFFER, MultiGzDecoder::new(input)))
    } else {
        Box::new(BufReader::with_capacity(BUFFER, input))
    }
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
