//! The byte format of one write-ahead-log entry: what a run logs durably before it
//! feeds a unit of input to the dataflow, and reads back on resume.
//!
//! An entry is `MAGIC`, the header's length and bincode bytes, the payload's kind (one
//! byte), length and bytes, then an xxh3-64 checksum of everything before it. The
//! payload is either the parsed [`FileBatch`] (bincode, zstd-compressed: live lines,
//! which exist nowhere else) or a dataset file's bytes with a [`SourceCopy`] saying how
//! it was read, which a resume parses again with the same mapping. Copying a file costs
//! a fraction of encoding and compressing its parsed rows, and the copy of a Parquet
//! file is half the size. The bytes are inside the entry, so that logging a file
//! creates one file, not two: on a file system where creating files is slow (ext4
//! without a journal after many deletions), files created are much of a run's kernel
//! time. Logs written before kept the copy beside the entry (payload kind 1); they are
//! still read. The codec lives here, beside [`FileBatch`],
//! so that the fuzz target for damaged entries needs the input crate only.

use std::io::{Read, Seek, SeekFrom};

use serde::{Deserialize, Serialize};

use crate::dataset::Table;
use crate::records::FileBatch;

/// First bytes of every log entry.
pub const MAGIC: &[u8; 8] = b"TMWAL002";
/// zstd level of the payload: a fast negative level, since entries are written on the
/// hot path and read only on resume.
const LEVEL: i32 = -3;

/// Where a logged batch came from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum BatchOrigin {
    /// A dataset file.
    File {
        /// Path relative to the dataset directory.
        rel: String,
        /// Size in bytes when read.
        size: u64,
        /// Modification time (ns since the epoch) when read, 0 if unknown.
        mtime_ns: u128,
        /// xxh3-64 of the file's bytes.
        hash: u64,
    },
    /// Lines of live sources (standard input, TCP peers).
    Lines(Vec<LineRange>),
}

/// Consecutive lines of one live source in a batch.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LineRange {
    /// `stdin` or `tcp:<peer>`: the quarantine `file` of its bad lines.
    pub source: String,
    /// Number of the first line (1-based).
    pub first: u64,
    /// Number of the last line.
    pub last: u64,
}

/// The small part of a log entry read at start-up: what the unit was.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WalHeader {
    /// The logical time of the batch the unit belongs to.
    pub time: u64,
    /// The unit's number in arrival order (units are numbered 0, 1, ... across times).
    pub unit: u64,
    /// How many units the batch of `time` has.
    pub units_in_time: u64,
    /// Its place in arrival order: `unit`, or for a changed file re-ingested, the
    /// arrival of the unit it replaces (its rows are fed as arriving there).
    pub arrival: u64,
    /// Its origin.
    pub origin: BatchOrigin,
    /// A unit whose rows this one retracts before adding its own (a changed file
    /// re-ingested with `--reingest-changed`).
    pub retracts: Option<u64>,
    /// Largest event time of the batch's valid events (for progress lines).
    pub max_ts: Option<i64>,
}

/// A dataset file logged as a byte copy of itself (the entry's sibling file): what a
/// resume needs to check the copy and parse it exactly as the unit was parsed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceCopy {
    /// Length of the copy in bytes.
    pub len: u64,
    /// xxh3-64 of the copy's bytes.
    pub hash: u64,
    /// The tables the file feeds (its mapping globs that matched).
    pub tables: Vec<Table>,
    /// For a live run's file, the clock (epoch ms) and the limit (ms) that events too
    /// far ahead were judged by, so that a replay quarantines the same rows.
    pub far_ahead: Option<(i64, u64)>,
}

/// What an entry logs: the parsed rows, or a copy of the file they are parsed from.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Payload {
    /// The rows themselves.
    Batch(FileBatch),
    /// A byte copy of the file, beside the entry (logs of earlier versions).
    Copy(SourceCopy),
    /// A byte copy of the file, inside the entry.
    Inline(SourceCopy, Vec<u8>),
}

/// Payload kinds, the byte before the payload's length.
const KIND_BATCH: u8 = 0;
const KIND_COPY: u8 = 1;
const KIND_INLINE: u8 = 2;

/// Why bytes are not a readable log entry; the caller names the file and says what
/// to do.
#[derive(Debug, thiserror::Error)]
pub enum EntryError {
    /// Too short, or not starting with [`MAGIC`].
    #[error("truncated or not a log entry")]
    NotAnEntry,
    /// The checksum does not match the bytes.
    #[error("corrupt or truncated (checksum mismatch)")]
    Checksum,
    /// A length points past the end of the entry.
    #[error("truncated")]
    Truncated,
    /// The checksum matches but a part does not decode.
    #[error("unreadable ({0})")]
    Unreadable(String),
}

fn unreadable(e: &dyn std::fmt::Display) -> EntryError {
    EntryError::Unreadable(e.to_string())
}

/// Encodes one entry.
pub fn encode(header: &WalHeader, payload: &Payload) -> Result<Vec<u8>, EntryError> {
    match payload {
        Payload::Batch(batch) => encode_batch(header, batch),
        Payload::Copy(copy) => encode_copy(header, copy),
        Payload::Inline(copy, bytes) => encode_inline(header, copy, bytes),
    }
}

/// Encodes the entry of a unit logged as its rows.
pub fn encode_batch(header: &WalHeader, batch: &FileBatch) -> Result<Vec<u8>, EntryError> {
    let batch_bytes = bincode::serialize(batch).map_err(|e| unreadable(&e))?;
    let packed = zstd::encode_all(&batch_bytes[..], LEVEL).map_err(|e| unreadable(&e))?;
    frame(header, KIND_BATCH, &[&packed])
}

/// Encodes the entry of a unit logged as a copy of its file beside the entry (as logs
/// of earlier versions did; kept for their tests).
pub fn encode_copy(header: &WalHeader, copy: &SourceCopy) -> Result<Vec<u8>, EntryError> {
    let copy_bytes = bincode::serialize(copy).map_err(|e| unreadable(&e))?;
    frame(header, KIND_COPY, &[&copy_bytes])
}

/// Encodes the entry of a unit logged as the bytes of its file, `copy` saying how they
/// were read: the payload is the length of `copy`'s encoding, that encoding, then the
/// bytes.
pub fn encode_inline(
    header: &WalHeader,
    copy: &SourceCopy,
    file_bytes: &[u8],
) -> Result<Vec<u8>, EntryError> {
    let copy_bytes = bincode::serialize(copy).map_err(|e| unreadable(&e))?;
    let copy_len = (copy_bytes.len() as u64).to_le_bytes();
    frame(header, KIND_INLINE, &[&copy_len, &copy_bytes, file_bytes])
}

/// The entry's bytes around a payload of `kind`, made of `parts`.
fn frame(header: &WalHeader, kind: u8, parts: &[&[u8]]) -> Result<Vec<u8>, EntryError> {
    let header_bytes = bincode::serialize(header).map_err(|e| unreadable(&e))?;
    let payload_len: usize = parts.iter().map(|part| part.len()).sum();
    let mut bytes = Vec::with_capacity(payload_len + header_bytes.len() + 41);
    bytes.extend_from_slice(MAGIC);
    bytes.extend_from_slice(&(header_bytes.len() as u64).to_le_bytes());
    bytes.extend_from_slice(&header_bytes);
    bytes.push(kind);
    bytes.extend_from_slice(&(payload_len as u64).to_le_bytes());
    for part in parts {
        bytes.extend_from_slice(part);
    }
    let checksum = xxhash_rust::xxh3::xxh3_64(&bytes);
    bytes.extend_from_slice(&checksum.to_le_bytes());
    Ok(bytes)
}

/// Where the entries of a log file of `len` bytes lie (a file holds one or more, one
/// after the other): the offset and length of each, found by reading `file` at their
/// length fields alone, so a reader can take one entry of a file without reading the
/// others. Each is checked when it is decoded. A file that does not split into whole
/// entries gives an [`EntryError`].
pub fn entry_spans<R: Read + Seek>(file: &mut R, len: u64) -> Result<Vec<(u64, u64)>, EntryError> {
    // Reads the 8 bytes at `at`; what lies past the end is a truncated entry.
    let mut field = |at: u64| -> Result<[u8; 8], EntryError> {
        let mut bytes = [0u8; 8];
        if at.checked_add(8).is_none_or(|end| end > len) {
            return Err(EntryError::Truncated);
        }
        file.seek(SeekFrom::Start(at))
            .and_then(|_| file.read_exact(&mut bytes))
            .map_err(|_| EntryError::Truncated)?;
        Ok(bytes)
    };
    if len == 0 {
        return Err(EntryError::NotAnEntry);
    }
    let mut spans = Vec::new();
    let mut at = 0u64;
    while at < len {
        if field(at).map_or(true, |magic| &magic != MAGIC) {
            return Err(EntryError::NotAnEntry);
        }
        let header_len = u64::from_le_bytes(field(at + 8)?);
        // The payload's length follows the header and the payload's kind.
        let kind_at = (at + 16)
            .checked_add(header_len)
            .ok_or(EntryError::Truncated)?;
        let payload_len = u64::from_le_bytes(field(kind_at.saturating_add(1))?);
        let end = (kind_at + 9)
            .checked_add(payload_len)
            .and_then(|end| end.checked_add(8))
            .filter(|end| *end <= len)
            .ok_or(EntryError::Truncated)?;
        spans.push((at, end - at));
        at = end;
    }
    Ok(spans)
}

/// The entries of a log file held in memory (see [`entry_spans`]).
pub fn entries(bytes: &[u8]) -> Result<Vec<&[u8]>, EntryError> {
    let spans = entry_spans(&mut std::io::Cursor::new(bytes), bytes.len() as u64)?;
    Ok(spans
        .into_iter()
        .map(|(at, len)| &bytes[at as usize..(at + len) as usize])
        .collect())
}

/// Decodes and checks one entry; the payload is decoded only when `with_payload`.
/// Damaged bytes of any kind give an [`EntryError`], never a panic.
pub fn decode(
    bytes: &[u8],
    with_payload: bool,
) -> Result<(WalHeader, Option<Payload>), EntryError> {
    if bytes.len() < MAGIC.len() + 24 || &bytes[..MAGIC.len()] != MAGIC {
        return Err(EntryError::NotAnEntry);
    }
    let (body, tail) = bytes.split_at(bytes.len() - 8);
    let mut checksum = [0u8; 8];
    checksum.copy_from_slice(tail);
    if xxhash_rust::xxh3::xxh3_64(body) != u64::from_le_bytes(checksum) {
        return Err(EntryError::Checksum);
    }
    let mut at = MAGIC.len();
    let mut take = |n: u64| -> Result<&[u8], EntryError> {
        let end = usize::try_from(n)
            .ok()
            .and_then(|n| at.checked_add(n))
            .ok_or(EntryError::Truncated)?;
        let slice = body.get(at..end).ok_or(EntryError::Truncated)?;
        at = end;
        Ok(slice)
    };
    let length = |bytes: &[u8]| {
        let mut le = [0u8; 8];
        le.copy_from_slice(bytes);
        u64::from_le_bytes(le)
    };
    let header_len = length(take(8)?);
    let header: WalHeader = bincode::deserialize(take(header_len)?).map_err(|e| unreadable(&e))?;
    if !with_payload {
        return Ok((header, None));
    }
    let kind = take(1)?[0];
    let payload_len = length(take(8)?);
    let payload = take(payload_len)?;
    let payload = match kind {
        KIND_BATCH => {
            let raw = zstd::decode_all(payload).map_err(|e| unreadable(&e))?;
            Payload::Batch(bincode::deserialize(&raw).map_err(|e| unreadable(&e))?)
        }
        KIND_COPY => Payload::Copy(bincode::deserialize(payload).map_err(|e| unreadable(&e))?),
        KIND_INLINE => {
            let (copy_len, rest) = payload.split_at_checked(8).ok_or(EntryError::Truncated)?;
            let copy_len = usize::try_from(length(copy_len)).map_err(|_| EntryError::Truncated)?;
            let (copy, file_bytes) = rest
                .split_at_checked(copy_len)
                .ok_or(EntryError::Truncated)?;
            let copy: SourceCopy = bincode::deserialize(copy).map_err(|e| unreadable(&e))?;
            if copy.len != file_bytes.len() as u64 {
                return Err(EntryError::Unreadable(format!(
                    "a copy of {} bytes logged as {}",
                    file_bytes.len(),
                    copy.len
                )));
            }
            Payload::Inline(copy, file_bytes.to_vec())
        }
        other => return Err(EntryError::Unreadable(format!("payload kind {other}"))),
    };
    Ok((header, Some(payload)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header() -> WalHeader {
        WalHeader {
            time: 3,
            unit: 7,
            units_in_time: 2,
            arrival: 7,
            origin: BatchOrigin::Lines(vec![LineRange {
                source: "stdin".into(),
                first: 1,
                last: 9,
            }]),
            retracts: None,
            max_ts: Some(42),
        }
    }

    fn source_copy(len: u64) -> SourceCopy {
        SourceCopy {
            len,
            hash: 0xfeed,
            tables: vec![Table::Events, Table::Items],
            far_ahead: Some((1_700_000_000_000, 86_400_000)),
        }
    }

    fn copy() -> Payload {
        Payload::Copy(source_copy(1234))
    }

    fn inline() -> Payload {
        Payload::Inline(source_copy(5), b"PAR1x".to_vec())
    }

    #[test]
    fn an_entry_reads_back_as_written() {
        let batch = Payload::Batch(FileBatch {
            rows_read: 5,
            ..FileBatch::default()
        });
        for payload in [batch, copy(), inline()] {
            let bytes = encode(&header(), &payload).unwrap();
            let (h, p) = decode(&bytes, true).unwrap();
            assert_eq!((h, p), (header(), Some(payload)));
            assert_eq!(decode(&bytes, false).unwrap(), (header(), None));
        }
    }

    #[test]
    fn every_damaged_entry_is_an_error() {
        for payload in [Payload::Batch(FileBatch::default()), copy(), inline()] {
            let bytes = encode(&header(), &payload).unwrap();
            for cut in 0..bytes.len() {
                assert!(decode(&bytes[..cut], true).is_err(), "cut at {cut}");
            }
            for at in 0..bytes.len() {
                let mut damaged = bytes.clone();
                damaged[at] ^= 0x5a;
                assert!(decode(&damaged, true).is_err(), "flip at {at}");
            }
        }
    }

    #[test]
    fn an_inline_copy_whose_length_disagrees_with_its_bytes_is_an_error() {
        let bytes = encode(
            &header(),
            &Payload::Inline(source_copy(6), b"PAR1x".to_vec()),
        )
        .unwrap();
        assert!(matches!(
            decode(&bytes, true),
            Err(EntryError::Unreadable(_))
        ));
    }

    #[test]
    fn a_file_of_several_entries_splits_into_them_and_a_cut_one_is_an_error() {
        let one = encode(&header(), &inline()).unwrap();
        let two = encode(&header(), &copy()).unwrap();
        let file = [one.clone(), two.clone()].concat();
        assert_eq!(entries(&file).unwrap(), vec![&one[..], &two[..]]);
        for cut in 0..file.len() {
            if cut == one.len() {
                continue; // the first entry alone is a whole file
            }
            let split = entries(&file[..cut]);
            assert!(split.is_err(), "cut at {cut}: {split:?}");
        }
    }
}
