//! Frames: a 24-byte header, the payload, zero padding to 8 bytes.
//!
//! A frame is self-identifying: its CRC covers the header fields (including
//! its own start LSN) and the payload, so zero fill, stale bytes of a
//! recycled file, a torn write or a frame copied to another position never
//! validate.

/// Bytes of the fixed frame header.
pub const FRAME_HEADER_LEN: usize = 24;
/// Frames start and end on multiples of this many bytes.
pub const FRAME_ALIGN: usize = 8;
/// The format's hard limit on one payload.
pub const MAX_PAYLOAD_LEN: usize = 1 << 30;
/// Kind bit: a reader that does not know this kind must stop with an error.
pub const KIND_REQUIRED: u8 = 0x80;
/// A user record (required).
pub const KIND_RECORD: u8 = KIND_REQUIRED | 0x01;
/// A user record whose payload is compressed (required): readers that do
/// not know it stop instead of handing out compressed bytes as a record.
/// Its payload is laid out in `format::compressed`.
pub const KIND_COMPRESSED: u8 = KIND_REQUIRED | 0x03;
/// An entry of one stream (required): see `format::stream`. Plain
/// readers skip it; a reader from before streams stops at it.
pub const KIND_STREAM_ENTRY: u8 = KIND_REQUIRED | 0x04;
/// An operation on one stream (required): see `format::stream`.
pub const KIND_STREAM_CONTROL: u8 = KIND_REQUIRED | 0x05;
/// Filler that readers skip (optional), used to pad direct-I/O blocks.
pub const KIND_PADDING: u8 = 0x02;
/// Flag: more frames of the same atomic batch follow.
pub const FLAG_BATCH_CONTINUES: u8 = 0x01;
const KNOWN_FLAGS: u8 = FLAG_BATCH_CONTINUES;

const _: () = assert!(FRAME_HEADER_LEN % FRAME_ALIGN == 0);
const _: () = assert!(MAX_PAYLOAD_LEN <= u32::MAX as usize);

/// Bytes a frame carrying `payload_len` bytes occupies (header + payload + padding).
pub const fn frame_len(payload_len: usize) -> usize {
    (FRAME_HEADER_LEN + payload_len).div_ceil(FRAME_ALIGN) * FRAME_ALIGN
}

/// A decoded, checksum-verified frame borrowed from its buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FrameView<'a> {
    pub(crate) start_lsn: u64,
    pub(crate) kind: u8,
    pub(crate) flags: u8,
    pub(crate) payload: &'a [u8],
}

impl FrameView<'_> {
    /// Total bytes of the frame on disk.
    pub(crate) fn len(&self) -> usize {
        frame_len(self.payload.len())
    }

    pub(crate) fn end_lsn(&self) -> u64 {
        self.start_lsn + self.len() as u64
    }
}

/// Why bytes are not a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FrameError {
    /// The buffer ends before the frame does (it may be complete on disk).
    Truncated { needed: usize },
    /// The bytes are not a valid frame at this LSN.
    Invalid(&'static str),
}

/// Writes a frame into `dst`, which must be exactly `frame_len(payload.len())` long.
pub(crate) fn encode_frame(dst: &mut [u8], start_lsn: u64, kind: u8, flags: u8, payload: &[u8]) {
    assert_eq!(dst.len(), frame_len(payload.len()), "frame buffer of the wrong size");
    assert!(payload.len() <= MAX_PAYLOAD_LEN);
    assert_eq!(start_lsn % FRAME_ALIGN as u64, 0, "frames start aligned");
    dst[4..8].copy_from_slice(&(payload.len() as u32).to_le_bytes());
    dst[8..16].copy_from_slice(&start_lsn.to_le_bytes());
    dst[16] = kind;
    dst[17] = flags;
    dst[18..FRAME_HEADER_LEN].fill(0);
    let body_end = FRAME_HEADER_LEN + payload.len();
    dst[FRAME_HEADER_LEN..body_end].copy_from_slice(payload);
    dst[body_end..].fill(0);
    let crc = checksum(&dst[4..FRAME_HEADER_LEN], payload);
    dst[0..4].copy_from_slice(&crc.to_le_bytes());
}

/// The header of a frame whose payload, `payload_len` bytes, goes to the
/// file from a buffer of its own: `payload_crc` is a hasher fed exactly
/// those bytes (so the payload is hashed before the log buffer's lock,
/// and never copied). The frame on disk is this header, the payload,
/// then `frame_len(payload_len) - FRAME_HEADER_LEN - payload_len` zeros:
/// byte for byte what [`encode_frame`] writes.
pub(crate) fn encode_frame_header(
    start_lsn: u64,
    kind: u8,
    flags: u8,
    payload_len: usize,
    payload_crc: &crc32fast::Hasher,
) -> [u8; FRAME_HEADER_LEN] {
    assert!(payload_len <= MAX_PAYLOAD_LEN);
    assert_eq!(start_lsn % FRAME_ALIGN as u64, 0, "frames start aligned");
    let mut h = [0u8; FRAME_HEADER_LEN];
    h[4..8].copy_from_slice(&(payload_len as u32).to_le_bytes());
    h[8..16].copy_from_slice(&start_lsn.to_le_bytes());
    h[16] = kind;
    h[17] = flags;
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&h[4..FRAME_HEADER_LEN]);
    hasher.combine(payload_crc);
    h[0..4].copy_from_slice(&hasher.finalize().to_le_bytes());
    h
}

fn checksum(header_fields: &[u8], payload: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(header_fields);
    hasher.update(payload);
    hasher.finalize()
}

fn le_u32(b: &[u8]) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[..4]);
    u32::from_le_bytes(a)
}

fn le_u64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    u64::from_le_bytes(a)
}

/// Decodes the frame at the start of `buf`, which must start at `expected_lsn`.
///
/// Cheap checks come first (LSN, length, reserved bytes) so that scanning
/// garbage rarely computes a CRC.
pub(crate) fn decode_frame(buf: &[u8], expected_lsn: u64) -> Result<FrameView<'_>, FrameError> {
    if buf.len() < FRAME_HEADER_LEN {
        return Err(FrameError::Truncated { needed: FRAME_HEADER_LEN });
    }
    if le_u64(&buf[8..16]) != expected_lsn {
        return Err(FrameError::Invalid("start LSN does not match the frame's position"));
    }
    let payload_len = le_u32(&buf[4..8]) as usize;
    if payload_len > MAX_PAYLOAD_LEN {
        return Err(FrameError::Invalid("payload length beyond the format's limit"));
    }
    let (kind, flags) = (buf[16], buf[17]);
    if kind & !KIND_REQUIRED == 0 {
        return Err(FrameError::Invalid("kind zero"));
    }
    if flags & !KNOWN_FLAGS != 0 || buf[18..FRAME_HEADER_LEN].iter().any(|&b| b != 0) {
        return Err(FrameError::Invalid("unknown flags or non-zero reserved bytes"));
    }
    let total = frame_len(payload_len);
    if buf.len() < total {
        return Err(FrameError::Truncated { needed: total });
    }
    let body_end = FRAME_HEADER_LEN + payload_len;
    let payload = &buf[FRAME_HEADER_LEN..body_end];
    if checksum(&buf[4..FRAME_HEADER_LEN], payload) != le_u32(&buf[0..4]) {
        return Err(FrameError::Invalid("checksum mismatch"));
    }
    if buf[body_end..total].iter().any(|&b| b != 0) {
        return Err(FrameError::Invalid("non-zero padding"));
    }
    Ok(FrameView { start_lsn: expected_lsn, kind, flags, payload })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(lsn: u64, payload: &[u8]) -> Vec<u8> {
        let mut buf = vec![0u8; frame_len(payload.len())];
        encode_frame(&mut buf, lsn, KIND_RECORD, 0, payload);
        buf
    }

    #[test]
    fn a_header_over_a_separate_payload_is_the_frame_encode_frame_writes() {
        for len in [0usize, 1, 7, 8, 100_003, 1 << 20] {
            let payload: Vec<u8> = (0..len).map(|i| (i * 31 % 251) as u8).collect();
            let mut crc = crc32fast::Hasher::new();
            crc.update(&payload);
            let mut split = encode_frame_header(4096, KIND_RECORD, FLAG_BATCH_CONTINUES, len, &crc).to_vec();
            split.extend_from_slice(&payload);
            split.resize(frame_len(len), 0);
            let mut whole = vec![0xAAu8; frame_len(len)];
            encode_frame(&mut whole, 4096, KIND_RECORD, FLAG_BATCH_CONTINUES, &payload);
            assert_eq!(split, whole, "payload of {len} bytes");
        }
    }

    #[test]
    fn frame_len_is_aligned_and_covers_header() {
        assert_eq!(frame_len(0), 24);
        assert_eq!(frame_len(1), 32);
        assert_eq!(frame_len(8), 32);
        assert_eq!(frame_len(9), 40);
        assert_eq!(frame_len(128), 152);
    }

    #[test]
    fn round_trip() {
        let buf = frame(4096, b"hello");
        let view = decode_frame(&buf, 4096).expect("valid");
        assert_eq!(view.payload, b"hello");
        assert_eq!(view.kind, KIND_RECORD);
        assert_eq!(view.end_lsn(), 4096 + 32);
    }

    #[test]
    fn every_single_byte_corruption_is_detected() {
        let buf = frame(8, b"tidelog frame corruption");
        for i in 0..buf.len() {
            for bit in 0..8 {
                let mut bad = buf.clone();
                bad[i] ^= 1 << bit;
                assert!(decode_frame(&bad, 8).is_err(), "flip of bit {bit} in byte {i} went unnoticed");
            }
        }
    }

    #[test]
    fn zero_fill_never_parses() {
        let zeros = vec![0u8; 4096];
        for lsn in (0..4096).step_by(8) {
            assert!(decode_frame(&zeros[..], lsn).is_err());
        }
    }

    #[test]
    fn a_frame_at_the_wrong_lsn_never_parses() {
        let buf = frame(64, b"moved");
        assert!(decode_frame(&buf, 72).is_err());
        assert!(decode_frame(&buf, 64 + (1 << 32)).is_err());
    }

    #[test]
    fn truncated_buffers_say_how_much_they_need() {
        let buf = frame(0, &[7u8; 100]);
        assert_eq!(decode_frame(&buf[..10], 0), Err(FrameError::Truncated { needed: 24 }));
        assert_eq!(decode_frame(&buf[..50], 0), Err(FrameError::Truncated { needed: frame_len(100) }));
    }
}
