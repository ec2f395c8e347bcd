//! The on-disk format: segment header blocks and frames.
//!
//! Pure functions over byte slices, no I/O. `docs/format.md` draws every byte
//! and carries test vectors checked by `tests/format_vectors.rs`. All integers
//! are little-endian.

mod compressed;
mod frame;
mod frontier;
mod header;
mod stream;
mod units;

#[cfg(feature = "compression")]
pub(crate) use compressed::encode_compressed_header;
pub(crate) use compressed::{decode_compressed, Compressed};
pub use compressed::{CODEC_LZ4, COMPRESSED_HEADER_LEN};
pub(crate) use frame::{decode_frame, encode_frame, encode_frame_header, FrameError, FrameView};
pub use frame::{
    frame_len, FLAG_BATCH_CONTINUES, FRAME_ALIGN, FRAME_HEADER_LEN, KIND_COMPRESSED, KIND_PADDING, KIND_RECORD,
    KIND_REQUIRED, KIND_STREAM_CONTROL, KIND_STREAM_ENTRY, MAX_PAYLOAD_LEN,
};
pub(crate) use frontier::{decode_frontier, encode_frontier, Frontier};
pub use frontier::{FRONTIER_FILE_NAME, FRONTIER_LEN, FRONTIER_MAGIC};
pub use stream::STREAM_ENTRY_HEADER_LEN;
pub(crate) use stream::{decode_stream, encode_control, entry_header, StreamFrame, StreamOp};

/// The lock file's name in the journal directory: `flock`ed exclusively by
/// the live journal that owns the directory.
pub(crate) const LOCK_FILE_NAME: &str = "LOCK";
/// The stream index checkpoint's name in the journal directory (written by
/// `Streams`; recovery deletes it when it cuts the log, which it may
/// describe frames of).
pub(crate) const STREAMS_CHECKPOINT_FILE_NAME: &str = "STREAMS";
pub(crate) use header::{decode_segment_header, encode_segment_header, SegmentHeader};
pub use header::{FORMAT_VERSION, SEGMENT_HEADER_LEN, SEGMENT_MAGIC};
pub(crate) use units::{Units, UnknownRequired};

/// The file offset of the frame that starts at `lsn` in the segment based at `base`.
pub(crate) fn file_offset(base: u64, lsn: u64) -> u64 {
    debug_assert!(lsn >= base);
    SEGMENT_HEADER_LEN as u64 + (lsn - base)
}

/// A segment's file name: its base LSN in 20 decimal digits plus `.tlog`.
pub(crate) fn segment_file_name(base: u64) -> String {
    format!("{base:020}.tlog")
}

/// The base LSN of a segment file name, or `None` for any other file.
pub(crate) fn parse_segment_file_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(".tlog")?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segment_names_round_trip_and_reject_strangers() {
        assert_eq!(segment_file_name(42), "00000000000000000042.tlog");
        assert_eq!(parse_segment_file_name("00000000000000000042.tlog"), Some(42));
        assert_eq!(parse_segment_file_name("42.tlog"), None);
        assert_eq!(parse_segment_file_name("0000000000000000004x.tlog"), None);
        assert_eq!(parse_segment_file_name("00000000000000000042.tlog.corrupt-7"), None);
        assert_eq!(parse_segment_file_name("LOCK"), None);
        // 20 digits that overflow u64 are not a segment either.
        assert_eq!(parse_segment_file_name("99999999999999999999.tlog"), None);
    }
}
