//! The hot tail's file format: rows of the open segment, durable before it is sealed.
//!
//! In: Arrow batches. Out: append-only frames the reader (and crash recovery) can
//! read back up to the last complete one. Invariant: a frame is either whole and
//! checksummed or yields no rows; what comes after the last whole frame is
//! classified, never guessed: a frame whose header checksum holds tells exactly
//! how many rows (and which time range) were lost with it; bytes without such a
//! header are junk whose row count is unknown, never read from the bytes.
//!
//! ```text
//! file    := MAGIC frame*
//! frame   := header body
//! header  := "PTF2" body_len:u32le rows:u32le crc32(body):u32le
//!            time_min:i64le time_max:i64le crc32(header[0..32]):u32le
//! body    := one Arrow IPC stream (schema + batch + end marker)
//! ```
//!
//! Version 1 files (`PODTRAIL-HOT-v1`, written before the header was
//! checksummed) are still read: their frames are the same without the marker,
//! times and header checksum, so the row count of a torn v1 frame is unknown.

use std::io::Cursor;

use arrow::ipc::reader::StreamReader;
use arrow::ipc::writer::StreamWriter;
use arrow::record_batch::RecordBatch;

/// The magic of the files written now.
pub const MAGIC: &[u8; 16] = b"PODTRAIL-HOT-v2\n";
/// The magic of files written before frame headers were checksummed.
pub const MAGIC_V1: &[u8; 16] = b"PODTRAIL-HOT-v1\n";
const FRAME_MARKER: &[u8; 4] = b"PTF2";
/// Bytes of a v2 frame header.
pub const HEADER: usize = 36;
const HEADER_V1: usize = 12;

#[derive(Debug, thiserror::Error)]
pub enum HotError {
    #[error("not a podtrail hot file (bad magic)")]
    BadMagic,
    #[error("encoding hot frame: {0}")]
    Encode(#[source] arrow::error::ArrowError),
}

/// Serialize one batch as a frame; `time` is the batch's (min, max) `time`.
pub fn encode_frame(batch: &RecordBatch, time: (i64, i64)) -> Result<Vec<u8>, HotError> {
    let mut frame = Vec::new();
    encode_frame_into(batch, time, &mut frame)?;
    Ok(frame)
}

/// Serialize one batch as a frame into `frame` (cleared first). A writer that
/// keeps one buffer across flushes writes into memory already faulted in
/// (a fresh buffer per flush pays page faults on every flush; BENCHMARKS.md).
pub fn encode_frame_into(batch: &RecordBatch, time: (i64, i64), frame: &mut Vec<u8>) -> Result<(), HotError> {
    // The body is written in place after a header filled in last: no second
    // copy of a storm's flush.
    frame.clear();
    frame.reserve(HEADER + batch.get_array_memory_size() / 2 + 256);
    frame.extend_from_slice(&[0u8; HEADER]);
    {
        let mut w = StreamWriter::try_new(&mut *frame, &batch.schema()).map_err(HotError::Encode)?;
        w.write(batch).map_err(HotError::Encode)?;
        w.finish().map_err(HotError::Encode)?;
    }
    let body_len = u32::try_from(frame.len() - HEADER).map_err(|_| HotError::Encode(arrow::error::ArrowError::MemoryError("a hot frame body over 4 GiB".into())))?;
    let rows = u32::try_from(batch.num_rows()).map_err(|_| HotError::Encode(arrow::error::ArrowError::MemoryError("a hot frame over 4 billion rows".into())))?;
    let crc = crc32fast::hash(&frame[HEADER..]);
    frame[0..4].copy_from_slice(FRAME_MARKER);
    frame[4..8].copy_from_slice(&body_len.to_le_bytes());
    frame[8..12].copy_from_slice(&rows.to_le_bytes());
    frame[12..16].copy_from_slice(&crc.to_le_bytes());
    frame[16..24].copy_from_slice(&time.0.to_le_bytes());
    frame[24..32].copy_from_slice(&time.1.to_le_bytes());
    let header_crc = crc32fast::hash(&frame[0..32]);
    frame[32..36].copy_from_slice(&header_crc.to_le_bytes());
    Ok(())
}

/// What follows the last complete frame of a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Torn {
    /// A frame whose header is intact (its checksum holds) but whose body is
    /// cut short or damaged: exactly these rows, of this time range, are lost.
    Frame { rows: u32, time_min: i64, time_max: i64 },
    /// Bytes that do not start with a header podtrail wrote (junk, a header cut
    /// short, or a v1 frame, whose header has no checksum): whether they held
    /// rows, and how many, is unknown.
    Junk,
}

/// What was found after the last complete frame.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Tail {
    /// Offset of the first byte after the last complete frame (the file's
    /// length for a cleanly written file).
    pub good_len: usize,
    /// Bytes after the last complete frame (0 for a cleanly written file).
    pub torn_bytes: usize,
    /// What those bytes are; `None` when there are none.
    pub torn: Option<Torn>,
    /// Why reading stopped early, if it did.
    pub reason: Option<String>,
}

/// Read every complete frame. `bytes` is the whole file as read at some instant;
/// a writer may be appending concurrently, so an incomplete last frame is normal.
/// A file shorter than the magic is an error: the writer creates it with its
/// magic under a temporary name and renames it, so no such file is its own.
pub fn read_frames(bytes: &[u8]) -> Result<(Vec<RecordBatch>, Tail), HotError> {
    let v2 = match bytes.get(..MAGIC.len()) {
        Some(m) if m == MAGIC => true,
        Some(m) if m == MAGIC_V1 => false,
        _ => return Err(HotError::BadMagic),
    };
    let mut pos = MAGIC.len();
    let mut batches = Vec::new();
    while pos < bytes.len() {
        let rest = &bytes[pos..];
        let stop = |torn: Torn, reason: String| Tail { good_len: pos, torn_bytes: rest.len(), torn: Some(torn), reason: Some(reason) };
        let (header, len, torn_frame) = if v2 {
            match parse_header(rest) {
                Ok(h) => (HEADER, h.body_len, Torn::Frame { rows: h.rows, time_min: h.time_min, time_max: h.time_max }),
                Err(why) => return Ok((batches, stop(Torn::Junk, why))),
            }
        } else {
            if rest.len() < HEADER_V1 {
                return Ok((batches, stop(Torn::Junk, format!("{} header bytes of a frame", rest.len()))));
            }
            (HEADER_V1, u32::from_le_bytes(rest[0..4].try_into().expect("4 bytes")) as usize, Torn::Junk)
        };
        let body_crc = if v2 { &rest[12..16] } else { &rest[8..12] };
        let body_crc = u32::from_le_bytes(body_crc.try_into().expect("4 bytes"));
        if rest.len() - header < len {
            return Ok((batches, stop(torn_frame, format!("frame of {len} bytes cut at {}", rest.len() - header))));
        }
        let body = &rest[header..header + len];
        if crc32fast::hash(body) != body_crc {
            return Ok((batches, stop(torn_frame, "frame checksum mismatch".into())));
        }
        let decoded: Result<Vec<RecordBatch>, _> = StreamReader::try_new(Cursor::new(body), None).and_then(|r| r.collect());
        match decoded {
            Ok(mut b) => batches.append(&mut b),
            Err(e) => return Ok((batches, stop(torn_frame, format!("undecodable frame: {e}")))),
        }
        pos += header + len;
    }
    Ok((batches, Tail { good_len: pos, ..Tail::default() }))
}

struct Header {
    body_len: usize,
    rows: u32,
    time_min: i64,
    time_max: i64,
}

/// A v2 frame header at the start of `b`, only when its checksum holds.
fn parse_header(b: &[u8]) -> Result<Header, String> {
    if b.len() < HEADER {
        return Err(format!("{} bytes, shorter than a frame header", b.len()));
    }
    if &b[0..4] != FRAME_MARKER {
        return Err("no frame marker where a frame should start".into());
    }
    let crc = u32::from_le_bytes(b[32..36].try_into().expect("4 bytes"));
    if crc32fast::hash(&b[0..32]) != crc {
        return Err("frame header checksum mismatch".into());
    }
    let u32_at = |o: usize| u32::from_le_bytes(b[o..o + 4].try_into().expect("4 bytes"));
    let i64_at = |o: usize| i64::from_le_bytes(b[o..o + 8].try_into().expect("8 bytes"));
    Ok(Header { body_len: u32_at(4) as usize, rows: u32_at(8), time_min: i64_at(16), time_max: i64_at(24) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::UInt64Array;
    use arrow::datatypes::{DataType, Field, Schema};
    use std::sync::Arc;

    fn batch(n: u64) -> RecordBatch {
        let s = Arc::new(Schema::new(vec![Field::new("v", DataType::UInt64, false)]));
        RecordBatch::try_new(s, vec![Arc::new(UInt64Array::from_iter_values(0..n))]).unwrap()
    }

    fn frame(n: u64) -> Vec<u8> {
        encode_frame(&batch(n), (n as i64 * 10, n as i64 * 10 + 5)).unwrap()
    }

    fn rows(b: &[RecordBatch]) -> usize {
        b.iter().map(|b| b.num_rows()).sum()
    }

    #[test]
    fn frames_round_trip_and_a_torn_frame_with_an_intact_header_is_counted_exactly() {
        let mut file = MAGIC.to_vec();
        file.extend(frame(3));
        file.extend(frame(5));
        let whole = file.len();
        let (b, tail) = read_frames(&file).unwrap();
        assert_eq!(rows(&b), 8);
        assert_eq!(tail, Tail { good_len: whole, ..Tail::default() });

        // A crash halfway through the third frame: the two whole frames survive and
        // the torn one's header says 7 rows of times 70..75 were lost.
        let third = frame(7);
        file.extend(&third[..third.len() / 2]);
        let (b, tail) = read_frames(&file).unwrap();
        assert_eq!(b.len(), 2);
        assert_eq!(tail.torn, Some(Torn::Frame { rows: 7, time_min: 70, time_max: 75 }));
        assert_eq!((tail.good_len, tail.torn_bytes), (whole, third.len() / 2));
    }

    #[test]
    fn a_flipped_body_byte_stops_at_that_frame_with_its_rows_counted() {
        let mut file = MAGIC.to_vec();
        file.extend(frame(3));
        let second_at = file.len();
        file.extend(frame(4));
        let last = file.len() - 1;
        file[last] ^= 0x40;
        let (b, tail) = read_frames(&file).unwrap();
        assert_eq!(b.len(), 1);
        assert_eq!(tail.torn, Some(Torn::Frame { rows: 4, time_min: 40, time_max: 45 }));
        assert_eq!((tail.good_len, tail.torn_bytes), (second_at, file.len() - second_at));
    }

    // Regression: garbage appended to a hot file made recovery count a loss of
    // 2,416,152,939 rows, read from the garbage as if it were a frame header.
    #[test]
    fn garbage_after_the_last_frame_is_junk_of_unknown_count_never_a_number_read_from_it() {
        let mut file = MAGIC.to_vec();
        file.extend(frame(3));
        let good = file.len();
        // Deterministic "random" bytes, including a fake marker with a bad checksum.
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        file.extend_from_slice(b"PTF2");
        for _ in 0..5000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            file.push(x as u8);
        }
        let (b, tail) = read_frames(&file).unwrap();
        assert_eq!(rows(&b), 3);
        assert_eq!(tail.torn, Some(Torn::Junk));
        assert_eq!((tail.good_len, tail.torn_bytes), (good, file.len() - good));
        // A header cut short is junk too.
        let mut short = MAGIC.to_vec();
        short.extend(&frame(2)[..20]);
        assert_eq!(read_frames(&short).unwrap().1.torn, Some(Torn::Junk));
    }

    #[test]
    fn files_shorter_than_the_magic_or_with_another_magic_are_errors() {
        for bad in [&b""[..], b"POD", b"PODTRAIL", b"not a hot file at all"] {
            assert!(matches!(read_frames(bad), Err(HotError::BadMagic)), "{bad:?}");
        }
        let (b, tail) = read_frames(MAGIC).unwrap();
        assert!(b.is_empty());
        assert_eq!(tail, Tail { good_len: MAGIC.len(), ..Tail::default() });
    }

    #[test]
    fn version_1_files_are_read_and_their_torn_frames_are_of_unknown_count() {
        // A v1 frame: body_len, rows, crc(body), body.
        let v1 = |n: u64| {
            let f = frame(n);
            let body = &f[HEADER..];
            let mut out = Vec::new();
            out.extend((body.len() as u32).to_le_bytes());
            out.extend((n as u32).to_le_bytes());
            out.extend(crc32fast::hash(body).to_le_bytes());
            out.extend(body);
            out
        };
        let mut file = MAGIC_V1.to_vec();
        file.extend(v1(3));
        let good = file.len();
        let second = v1(6);
        file.extend(&second[..second.len() - 3]);
        let (b, tail) = read_frames(&file).unwrap();
        assert_eq!(rows(&b), 3);
        assert_eq!((tail.good_len, tail.torn), (good, Some(Torn::Junk)));
    }
}
