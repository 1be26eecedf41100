//! The hot tail's file format: rows of the open segment, durable before it is sealed.
//!
//! In: Arrow batches. Out: append-only frames the reader (and crash recovery) can
//! read back up to the last complete one. Invariant: a frame is either whole and
//! checksummed or ignored; a torn final frame (crash mid-write) never yields rows,
//! and its header, when intact, tells how many rows were lost.
//!
//! ```text
//! file  := MAGIC frame*
//! frame := body_len:u32le rows:u32le crc32(body):u32le body
//! body  := one Arrow IPC stream (schema + batch + end marker)
//! ```

use std::io::Cursor;

use arrow::ipc::reader::StreamReader;
use arrow::ipc::writer::StreamWriter;
use arrow::record_batch::RecordBatch;

pub const MAGIC: &[u8; 16] = b"PODTRAIL-HOT-v1\n";
const HEADER: usize = 12;

#[derive(Debug, thiserror::Error)]
pub enum HotError {
    #[error("not a podtrail hot file (bad magic)")]
    BadMagic,
    #[error("encoding hot frame: {0}")]
    Encode(#[source] arrow::error::ArrowError),
}

/// Serialize one batch as a frame.
pub fn encode_frame(batch: &RecordBatch) -> Result<Vec<u8>, HotError> {
    let mut frame = Vec::new();
    encode_frame_into(batch, &mut frame)?;
    Ok(frame)
}

/// Serialize one batch as a frame into `frame` (cleared first). A writer that
/// keeps one buffer across flushes writes into memory already faulted in: with
/// a fresh buffer per flush, page faults were a third of the hot tail's cost.
pub fn encode_frame_into(batch: &RecordBatch, frame: &mut Vec<u8>) -> Result<(), HotError> {
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
    let body_len = (frame.len() - HEADER) as u32;
    let crc = crc32fast::hash(&frame[HEADER..]);
    frame[0..4].copy_from_slice(&body_len.to_le_bytes());
    frame[4..8].copy_from_slice(&(batch.num_rows() as u32).to_le_bytes());
    frame[8..12].copy_from_slice(&crc.to_le_bytes());
    Ok(())
}

/// What was found after the last complete frame.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Tail {
    /// Bytes after the last good frame (0 for a cleanly written file).
    pub torn_bytes: usize,
    /// Rows the torn frame's header announced, when the header itself was intact.
    pub torn_rows: Option<u32>,
    /// Why reading stopped early, if it did.
    pub reason: Option<String>,
}

/// Read every complete frame. `bytes` is the whole file as read at some instant;
/// a writer may be appending concurrently, so an incomplete last frame is normal.
pub fn read_frames(bytes: &[u8]) -> Result<(Vec<RecordBatch>, Tail), HotError> {
    if bytes.len() < MAGIC.len() {
        // Created but the magic not yet written: an empty file, not a corrupt one.
        return if MAGIC.starts_with(bytes) { Ok((vec![], Tail::default())) } else { Err(HotError::BadMagic) };
    }
    if &bytes[..MAGIC.len()] != MAGIC {
        return Err(HotError::BadMagic);
    }
    let mut pos = MAGIC.len();
    let mut batches = Vec::new();
    while pos < bytes.len() {
        let rest = &bytes[pos..];
        let torn = |rows: Option<u32>, reason: String| Tail { torn_bytes: rest.len(), torn_rows: rows, reason: Some(reason) };
        if rest.len() < HEADER {
            return Ok((batches, torn(None, format!("{} header bytes of a frame", rest.len()))));
        }
        let len = u32::from_le_bytes(rest[0..4].try_into().expect("4 bytes")) as usize;
        let rows = u32::from_le_bytes(rest[4..8].try_into().expect("4 bytes"));
        let crc = u32::from_le_bytes(rest[8..12].try_into().expect("4 bytes"));
        if rest.len() < HEADER + len {
            return Ok((batches, torn(Some(rows), format!("frame of {len} bytes cut at {}", rest.len() - HEADER))));
        }
        let body = &rest[HEADER..HEADER + len];
        if crc32fast::hash(body) != crc {
            return Ok((batches, torn(Some(rows), "frame checksum mismatch".into())));
        }
        let decoded: Result<Vec<RecordBatch>, _> =
            StreamReader::try_new(Cursor::new(body), None).and_then(|r| r.collect());
        match decoded {
            Ok(mut b) => batches.append(&mut b),
            Err(e) => return Ok((batches, torn(Some(rows), format!("undecodable frame: {e}")))),
        }
        pos += HEADER + len;
    }
    Ok((batches, Tail::default()))
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

    #[test]
    fn frames_round_trip_and_torn_tail_is_counted() {
        let mut file = MAGIC.to_vec();
        file.extend(encode_frame(&batch(3)).unwrap());
        file.extend(encode_frame(&batch(5)).unwrap());
        let (b, tail) = read_frames(&file).unwrap();
        assert_eq!(b.iter().map(|b| b.num_rows()).sum::<usize>(), 8);
        assert_eq!(tail, Tail::default());

        // A crash halfway through the third frame: the two whole frames survive and
        // the header of the torn one says 7 rows were lost.
        let third = encode_frame(&batch(7)).unwrap();
        file.extend(&third[..third.len() / 2]);
        let (b, tail) = read_frames(&file).unwrap();
        assert_eq!(b.len(), 2);
        assert_eq!(tail.torn_rows, Some(7));
        assert_eq!(tail.torn_bytes, third.len() / 2);
    }

    #[test]
    fn flipped_byte_stops_at_the_bad_frame() {
        let mut file = MAGIC.to_vec();
        file.extend(encode_frame(&batch(3)).unwrap());
        let second_at = file.len();
        file.extend(encode_frame(&batch(4)).unwrap());
        let last = file.len() - 1;
        file[last] ^= 0x40;
        let (b, tail) = read_frames(&file).unwrap();
        assert_eq!(b.len(), 1);
        assert_eq!(tail.torn_rows, Some(4));
        assert_eq!(tail.torn_bytes, file.len() - second_at);
        assert!(matches!(read_frames(b"not a hot file at all"), Err(HotError::BadMagic)));
        assert_eq!(read_frames(b"PODTRAIL").unwrap().0.len(), 0);
    }
}
