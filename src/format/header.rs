//! The segment header block: the first 4096 bytes of every segment file.
//!
//! Only the first 64 bytes carry fields; the rest is zero so that the first
//! frame starts on a 4096-byte boundary and direct I/O stays aligned.

/// Bytes reserved for the header block at the start of each segment.
pub const SEGMENT_HEADER_LEN: usize = 4096;
/// The first eight bytes of every segment.
pub const SEGMENT_MAGIC: [u8; 8] = *b"TIDELOG\x01";
/// The format version this build writes and reads.
pub const FORMAT_VERSION: u32 = 1;
const FIELDS_LEN: usize = 60;

/// The decoded fields of a segment header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SegmentHeader {
    pub(crate) base_lsn: u64,
    pub(crate) journal_id: u64,
    pub(crate) flags: u32,
}

/// Encodes a header block of `SEGMENT_HEADER_LEN` bytes.
pub(crate) fn encode_segment_header(header: &SegmentHeader) -> Vec<u8> {
    let mut block = vec![0u8; SEGMENT_HEADER_LEN];
    block[0..8].copy_from_slice(&SEGMENT_MAGIC);
    block[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    block[12..16].copy_from_slice(&(SEGMENT_HEADER_LEN as u32).to_le_bytes());
    block[16..24].copy_from_slice(&header.base_lsn.to_le_bytes());
    block[24..32].copy_from_slice(&header.journal_id.to_le_bytes());
    block[32..36].copy_from_slice(&header.flags.to_le_bytes());
    let crc = crc32fast::hash(&block[..FIELDS_LEN]);
    block[FIELDS_LEN..FIELDS_LEN + 4].copy_from_slice(&crc.to_le_bytes());
    block
}

/// Decodes a header block; the error says what is wrong.
pub(crate) fn decode_segment_header(block: &[u8]) -> Result<SegmentHeader, &'static str> {
    if block.len() < FIELDS_LEN + 4 {
        return Err("file shorter than a segment header");
    }
    if block[0..8] != SEGMENT_MAGIC {
        return Err("bad magic: not a tidelog segment");
    }
    let u32_at = |i: usize| u32::from_le_bytes([block[i], block[i + 1], block[i + 2], block[i + 3]]);
    let u64_at = |i: usize| {
        let mut a = [0u8; 8];
        a.copy_from_slice(&block[i..i + 8]);
        u64::from_le_bytes(a)
    };
    if crc32fast::hash(&block[..FIELDS_LEN]) != u32_at(FIELDS_LEN) {
        return Err("segment header checksum mismatch");
    }
    if u32_at(8) != FORMAT_VERSION {
        return Err("unsupported format version");
    }
    if u32_at(12) as usize != SEGMENT_HEADER_LEN {
        return Err("unexpected header length");
    }
    Ok(SegmentHeader { base_lsn: u64_at(16), journal_id: u64_at(24), flags: u32_at(32) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_every_field_byte_is_checked() {
        let h = SegmentHeader { base_lsn: 1 << 33, journal_id: 0xDEAD_BEEF, flags: 1 };
        let block = encode_segment_header(&h);
        assert_eq!(block.len(), SEGMENT_HEADER_LEN);
        assert_eq!(decode_segment_header(&block), Ok(h));
        for i in 0..FIELDS_LEN + 4 {
            let mut bad = block.clone();
            bad[i] ^= 0x10;
            assert!(decode_segment_header(&bad).is_err(), "byte {i} unchecked");
        }
        assert!(decode_segment_header(&vec![0u8; SEGMENT_HEADER_LEN]).is_err());
    }
}
