//! The payload of a compressed record frame (kind `KIND_COMPRESSED`): an
//! 8-byte header naming the codec and the uncompressed length, then the
//! codec's bytes. The frame's CRC covers these stored bytes like any
//! payload; decoding the codec's bytes is the reader's business
//! (`crate::compress`), not the format's.

use super::MAX_PAYLOAD_LEN;

/// Bytes of the header that starts a compressed record's payload.
pub const COMPRESSED_HEADER_LEN: usize = 8;
/// Codec id: an LZ4 block (no LZ4 frame header, no checksum of its own).
pub const CODEC_LZ4: u8 = 1;

/// A compressed record's payload, split into its parts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Compressed<'a> {
    pub(crate) codec: u8,
    /// The record's payload length once decompressed.
    pub(crate) raw_len: usize,
    /// The codec's bytes.
    pub(crate) body: &'a [u8],
}

/// Writes the header into `dst[..COMPRESSED_HEADER_LEN]`.
#[cfg_attr(not(feature = "compression"), allow(dead_code))] // only a compressing build writes it
pub(crate) fn encode_compressed_header(dst: &mut [u8], codec: u8, raw_len: usize) {
    assert!(raw_len <= MAX_PAYLOAD_LEN, "a record's payload is bounded by the format");
    dst[0] = codec;
    dst[1..4].fill(0);
    dst[4..COMPRESSED_HEADER_LEN].copy_from_slice(&(raw_len as u32).to_le_bytes());
}

/// Splits a compressed record's payload; the reason when it is malformed.
pub(crate) fn decode_compressed(payload: &[u8]) -> Result<Compressed<'_>, &'static str> {
    let Some(header) = payload.get(..COMPRESSED_HEADER_LEN) else {
        return Err("compressed record shorter than its header");
    };
    if header[1..4].iter().any(|&b| b != 0) {
        return Err("compressed record header: non-zero reserved bytes");
    }
    let mut len = [0u8; 4];
    len.copy_from_slice(&header[4..8]);
    let raw_len = u32::from_le_bytes(len) as usize;
    if raw_len > MAX_PAYLOAD_LEN {
        return Err("compressed record header: length beyond the format's limit");
    }
    Ok(Compressed { codec: header[0], raw_len, body: &payload[COMPRESSED_HEADER_LEN..] })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trips_and_malformed_headers_are_reasons_not_panics() {
        let mut payload = vec![0u8; COMPRESSED_HEADER_LEN + 3];
        encode_compressed_header(&mut payload, CODEC_LZ4, 4096);
        payload[COMPRESSED_HEADER_LEN..].copy_from_slice(b"abc");
        assert_eq!(payload[..8], [1, 0, 0, 0, 0, 0x10, 0, 0]);
        let c = decode_compressed(&payload).unwrap();
        assert_eq!((c.codec, c.raw_len, c.body), (CODEC_LZ4, 4096, &b"abc"[..]));
        assert!(decode_compressed(&payload[..7]).is_err());
        let mut reserved = payload.clone();
        reserved[2] = 1;
        assert!(decode_compressed(&reserved).is_err());
        let mut huge = payload.clone();
        huge[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(decode_compressed(&huge).is_err());
    }
}
